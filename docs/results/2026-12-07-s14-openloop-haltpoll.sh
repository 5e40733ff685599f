#!/bin/bash
# Open loop with the guest's halt polling on (200 us) and off (the machine's default, 0), interleaved per block.
OUT=/work/results14; B=/work/bin13
cd /work/main
P=/sys/module/haltpoll/parameters/guest_halt_poll_ns
orig=$(cat $P)
trap "echo $orig > $P" EXIT
for blk in 1 2; do
for hp in 0 200000; do
  echo $hp > $P
  echo "== block $blk guest_halt_poll_ns=$(cat $P) $(date +%T)"
  python3 tuning/compare/ab.py --rounds 3 --duration 5 --workloads openloop --openloop-rate 39000 --clients none \
    --variant tokio=peer:$B/peer-tokio --variant base=$B/uringtls-new2
done
done
