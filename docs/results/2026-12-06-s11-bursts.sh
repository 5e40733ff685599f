#!/bin/bash
# CPU per full handshake (schedstat, all threads), bursts (h2load -n300 -c300) vs steady (-n300 -c16), Connection: close, no resumption; 3 alternations
cd /tmp
cpu() { cat /proc/$1/task/*/schedstat | awk '{s+=$1} END {print int(s/1000)}'; }
for round in 1 2 3; do
for who in uringtls tokio; do
  if [ $who = uringtls ]; then
    taskset -c 1 /work/bin/uringtls-new --listen 127.0.0.1:18460 --shards 1 --cpus 1 --log-level error --tls13-tickets 0 --tls12 false --max-conns 100000 > /dev/null 2>&1 &
  else
    taskset -c 1 /work/bin/peer-tokio --listen 127.0.0.1:18460 --cert /tmp/c.pem --key /tmp/k.pem --no-resumption > /dev/null 2>&1 &
  fi
  SP=$!; sleep 1.2
  for shape in "-c300" "-c16"; do
    a=$(cpu $SP)
    for i in $(seq 10); do taskset -c 0 h2load --h1 -n300 $shape -H "Connection: close" https://127.0.0.1:18460/ > /tmp/h2l.out 2>&1; done
    b=$(cpu $SP)
    echo "round $round $who $shape: $(( (b-a)/3000 )) us/handshake ($(grep -o '[0-9]* succeeded' /tmp/h2l.out | head -1) in the last run)"
  done
  kill $SP; wait $SP 2>/dev/null
done
done
