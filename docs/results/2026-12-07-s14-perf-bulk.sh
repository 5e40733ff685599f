#!/bin/bash
name=$1; bin=$2; kind=$3; port=$4
head -c 1048576 /dev/zero | tr '\0' 'x' > /dev/null
if [ $kind = uringtls ]; then
  args="--listen 127.0.0.1:$port --shards 1 --cpus 1 --cert cert.pem --key key.pem --log-level warn --max-conns 100000 --body-size 1048576"
else
  args="--listen 127.0.0.1:$port --cert cert.pem --key key.pem --body-size 1048576"
fi
taskset -c 1 $bin $args > $name.plog 2>&1 &
sp=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
taskset -c 0 wrk -t1 -c8 -d8s https://127.0.0.1:$port/big > $name.wrk &
wp=$!
sleep 2
perf record -e cpu-clock -F 4000 -p $sp -o $name.perf -- sleep 4 2>/dev/null >/dev/null
wait $wp
kill $sp; wait $sp 2>/dev/null
grep Requests/sec $name.wrk
perf report -i $name.perf --no-children --sort dso,sym 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25
