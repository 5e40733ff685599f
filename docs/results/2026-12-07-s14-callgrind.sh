#!/bin/bash
# usage: cg.sh NAME BINARY KIND(uringtls|peer) PORT
name=$1; bin=$2; kind=$3; port=$4
if [ $kind = uringtls ]; then
  args="--listen 127.0.0.1:$port --shards 1 --cpus 1 --cert cert.pem --key key.pem --log-level warn --max-conns 100000 --sandbox false"
else
  args="--listen 127.0.0.1:$port --cert cert.pem --key key.pem"
fi
taskset -c 1 valgrind --tool=callgrind --callgrind-out-file=$name.cg.out --dump-instr=no $bin $args > $name.log 2>&1 &
vp=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
# warm-up
taskset -c 0 h2load --h1 -n 2000 -c 16 https://127.0.0.1:$port/ >/dev/null
callgrind_control -z $vp >/dev/null
taskset -c 0 h2load --h1 -n 20000 -c 16 https://127.0.0.1:$port/ | grep -E 'requests:|finished in'
callgrind_control -d $vp >/dev/null
kill $vp; sleep 3; kill -9 $vp 2>/dev/null; wait $vp
