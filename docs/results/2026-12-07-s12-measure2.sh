#!/bin/bash
# Session 12, second run: both peers (nginx, tokio) in the same run as uringtls, and the direct-send experiment.
set -x
OUT=/work/results12; B=/work/bin12
cd /work/main
date; uptime
python3 tuning/compare/ab.py --rounds 3 --duration 5 --workloads keepalive,resumed,full,bulk --clients wrk,h2load \
  --bench-client $B/bench-client \
  --variant nginx=nginx --variant tokio=peer:$B/peer-tokio \
  --variant new=$B/uringtls-new --variant directsend=$B/uringtls-directsend > $OUT/ab2.txt 2>&1
date; uptime
