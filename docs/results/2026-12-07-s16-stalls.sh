#!/bin/bash
# usage: slowrun.sh NAME KIND BIN PORT THRESH_US: oha open loop 49k, tcp_probe trace 4 s, slow-request clusters, thread context switches
name=$1; kind=$2; bin=$3; port=$4; th=$5
# run in a directory holding cert.pem and key.pem (not one a running uringtls watches)
if [ $kind = uringtls ]; then
  (taskset -c 1 $bin --listen 127.0.0.1:$port --shards 1 --cpus 1 --cert cert.pem --key key.pem --log-level warn --max-conns 100000 --sandbox false > $name.log 2>&1 &)
else
  (taskset -c 1 $bin --listen 127.0.0.1:$port --cert cert.pem --key key.pem > $name.log 2>&1 &)
fi
sleep 1; sp=$(pgrep -f -- "--listen 127.0.0.1:$port")
(taskset -c 0 oha --no-tui --insecure --worker-threads 1 -z 7s -c 64 -q ${RATE:-49000} --latency-correction https://127.0.0.1:$port/ > $name.oha 2>&1 &); sleep 1.5
taskset -c 0 perf record -q -m 16M -e tcp:tcp_probe ${EXTRA_EV} -a -o $name.perf -- sleep 4 >/dev/null 2>&1; sleep 2
for t in /proc/$sp/task/*; do echo "  $(cat $t/comm): $(awk '{print $14+$15}' $t/stat) ticks, $(grep ctxt $t/status | tr '\n' ' ')"; done
kill $sp
perf script -i $name.perf > $name.txt 2>/dev/null; python3 "$(dirname "$0")/2026-12-07-s16-stalls.py" $name.txt $port $th
