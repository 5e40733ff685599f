#!/bin/bash
# Session 14 end: all workloads, both peers, base (s13 end) and new; then open loop 10 rounds.
OUT=/work/results14; B=/work/bin13
cd /work/main
date; uptime
python3 tuning/compare/ab.py --rounds 3 --duration 5 --workloads keepalive,resumed,full,bulk --clients wrk,h2load \
  --variant nginx=nginx --variant tokio=peer:$B/peer-tokio --variant base=$B/uringtls-new2 \
  --variant task=/work/bin14/uringtls-task --variant new=/work/bin14/uringtls-skip > $OUT/ab-end.txt 2>&1
date; uptime
python3 tuning/compare/ab.py --rounds 10 --duration 5 --workloads openloop --openloop-rate 39000 --clients none \
  --variant tokio=peer:$B/peer-tokio --variant base=$B/uringtls-new2 --variant new=/work/bin14/uringtls-skip > $OUT/ab-openloop.txt 2>&1
date; uptime
#!/bin/bash
OUT=/work/results14; B=/work/bin13
cd /work/main
while pgrep -f m14d.sh > /dev/null; do sleep 2; done
date; uptime
python3 tuning/compare/ab.py --rounds 6 --duration 5 --workloads keepalive,bulk --clients wrk \
  --variant tokio=peer:$B/peer-tokio --variant base=$B/uringtls-new2 \
  --variant task=/work/bin14/uringtls-task --variant new=/work/bin14/uringtls-skip > $OUT/ab-kb.txt 2>&1
date; uptime
#!/bin/bash
OUT=/work/results14; B=/work/bin13
cd /work/main
for v in base:$B/uringtls-new2 task:/work/bin14/uringtls-task; do
  n=${v%%:*}; p=${v#*:}
  python3 tuning/compare/compare.py --rounds 2 --duration 5 --workloads idle --idle-conns 10000 \
    --uringtls $p --bench-client $B/bench-client --peers $B/peer-tokio --json $OUT/idle-$n.json > $OUT/idle-$n.txt 2>&1
done
