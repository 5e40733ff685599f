#!/bin/bash
# Session 13 measurement run: quiet machine only. Output in /work/results13/
set -x
OUT=/work/results13; mkdir -p $OUT
B=/work/bin13
cd /work/main
date; uptime
python3 tuning/compare/ab.py --rounds 3 --duration 5 --workloads keepalive,resumed,full,bulk --clients wrk,h2load \
  --bench-client $B/bench-client \
  --variant tokio=peer:$B/peer-tokio --variant base=/work/bin12/uringtls-directsend \
  --variant new=$B/uringtls-new > $OUT/ab.txt 2>&1
date; uptime
python3 tuning/compare/compare.py --rounds 2 --duration 5 --workloads idle --idle-conns 10000 \
  --uringtls /work/bin12/uringtls-directsend --bench-client $B/bench-client --peers $B/peer-tokio \
  --json $OUT/idle-base.json > $OUT/idle-base.txt 2>&1
python3 tuning/compare/compare.py --rounds 2 --duration 5 --workloads idle --idle-conns 10000 \
  --uringtls $B/uringtls-new --bench-client $B/bench-client --peers $B/peer-tokio \
  --json $OUT/idle-new.json > $OUT/idle-new.txt 2>&1
date; uptime
#!/bin/bash
set -x
OUT=/work/results13; B=/work/bin13
cd /work/main
date; uptime
python3 tuning/compare/compare.py --rounds 2 --duration 5 --workloads idle --idle-conns 10000 \
  --uringtls $B/uringtls-new2 --bench-client $B/bench-client --peers $B/peer-tokio \
  --json $OUT/idle-new2.json > $OUT/idle-new2.txt 2>&1
python3 tuning/compare/ab.py --rounds 6 --duration 5 --workloads keepalive,resumed --clients wrk \
  --bench-client $B/bench-client \
  --variant tokio=peer:$B/peer-tokio --variant base=/work/bin12/uringtls-directsend \
  --variant new=$B/uringtls-new2 > $OUT/ab-ka.txt 2>&1
date; uptime
#!/bin/bash
set -x
cd /work/main
date; uptime
python3 tuning/compare/ab.py --rounds 6 --duration 5 --workloads keepalive --clients wrk \
  --bench-client /work/bin13/bench-client \
  --variant s12=/work/bin12/uringtls-directsend --variant base=/work/bin13/uringtls-ae0afb3 \
  --variant pp=/work/bin13/uringtls-0d0f086 --variant utls=/work/bin13/uringtls-336bdb6 \
  --variant listen=/work/bin13/uringtls-ed80437 --variant head=/work/bin13/uringtls-new2 > /work/results13/ab-bisect.txt 2>&1
date; uptime
#!/bin/bash
# Build release engines of several commits in one target dir, one at a time (same artifact names), copy each out.
set -e
export CARGO_TARGET_DIR=/work/tgt-lead CARGO_INCREMENTAL=0
cd /work/wt/bis
for c in ae0afb3 0d0f086 336bdb6 ed80437; do
  git checkout -q --detach $c
  find runtime engine/src -name "*.rs" -exec touch {} +
  cargo build --release -p uringtls 2>&1 | tail -1
  cp $CARGO_TARGET_DIR/release/uringtls /work/bin13/uringtls-$c
done
date
#!/bin/bash
set -x
cd /work/main
date; uptime
python3 tuning/compare/ab.py --rounds 3 --duration 5 --workloads keepalive,resumed,full,bulk --clients wrk,h2load \
  --bench-client /work/bin13/bench-client \
  --variant nginx=nginx --variant tokio=peer:/work/bin13/peer-tokio --variant new2=/work/bin13/uringtls-new2 > /work/results13/ab-peers.txt 2>&1
date; uptime
