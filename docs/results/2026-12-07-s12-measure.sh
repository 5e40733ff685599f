#!/bin/bash
# Session 12 measurement run: quiet machine only. Output in /work/results12/
set -x
OUT=/work/results12; mkdir -p $OUT
B=/work/bin12
cd /work/main
date; uptime
# 1. paired A/B: session start vs now (issue 20 moves + features), sandbox off, epoll backend, tokio peer
python3 tuning/compare/ab.py --rounds 3 --duration 5 --workloads keepalive,resumed,full,bulk --clients wrk,h2load \
  --bench-client $B/bench-client \
  --variant tokio=peer:$B/peer-tokio --variant base=$B/uringtls-base \
  --variant new=$B/uringtls-new --variant nosandbox="$B/uringtls-new:--sandbox false" \
  --variant epoll="$B/uringtls-new:--io-backend epoll" > $OUT/ab.txt 2>&1
date; uptime
# 2. idle memory, base and new, with nginx and the tokio peer in each run
python3 tuning/compare/compare.py --rounds 2 --duration 5 --workloads idle --idle-conns 10000 \
  --uringtls $B/uringtls-base --bench-client $B/bench-client --peers $B/peer-tokio \
  --json $OUT/idle-base.json > $OUT/idle-base.txt 2>&1
python3 tuning/compare/compare.py --rounds 2 --duration 5 --workloads idle --idle-conns 10000 \
  --uringtls $B/uringtls-new --bench-client $B/bench-client --peers $B/peer-tokio \
  --json $OUT/idle-new.json > $OUT/idle-new.txt 2>&1
date; uptime
# 3. the latency picture (bench-client plot), uringtls vs nginx
python3 bench-client/bench/picture.py --rate 30000 --duration 20 --rounds 1 \
  --uringtls $B/uringtls-new --bench-client $B/bench-client \
  --dir $OUT/picture -o docs/results/uringtls-vs-nginx-latency.svg > $OUT/picture.txt 2>&1
date; uptime
