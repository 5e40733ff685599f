#!/bin/bash
# usage: prof.sh NAME BINARY KIND PORT
name=$1; bin=$2; kind=$3; port=$4
if [ $kind = uringtls ]; then
  args="--listen 127.0.0.1:$port --shards 1 --cpus 1 --cert cert.pem --key key.pem --log-level warn --max-conns 100000"
else
  args="--listen 127.0.0.1:$port --cert cert.pem --key key.pem"
fi
taskset -c 1 $bin $args > $name.plog 2>&1 &
sp=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
taskset -c 0 wrk -t1 -c64 -d9s https://127.0.0.1:$port/ > $name.wrk &
wp=$!
sleep 2
s0=$(awk '{print $14, $15}' /proc/$sp/stat)
perf record -e cpu-clock -F 4000 -g -p $sp -o $name.perf -- sleep 5 2>/dev/null >/dev/null
s1=$(awk '{print $14, $15}' /proc/$sp/stat)
wait $wp
kill $sp; wait $sp 2>/dev/null
echo "$name: stat0 $s0 stat1 $s1"; grep -E 'Requests/sec' $name.wrk
