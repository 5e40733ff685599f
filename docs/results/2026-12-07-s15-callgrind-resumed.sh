#!/bin/bash
# usage: cgres.sh NAME BINARY PORT [ARGS]: callgrind over wrk -c16 'Connection: close' (resumed handshakes)
name=$1; bin=$2; port=$3; shift 3
args="--listen 127.0.0.1:$port --shards 1 --cpus 1 --cert cert.pem --key key.pem --log-level warn --max-conns 100000 --sandbox false $*"
taskset -c 1 valgrind --tool=callgrind --callgrind-out-file=$name.cg.out --dump-instr=no $bin $args > $name.log 2>&1 &
vp=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
taskset -c 0 wrk -t1 -c16 -d2 -H 'Connection: close' https://127.0.0.1:$port/ >/dev/null
callgrind_control -z $vp >/dev/null
taskset -c 0 wrk -t1 -c16 -d5 -H 'Connection: close' https://127.0.0.1:$port/ | grep -E 'requests in'
callgrind_control -d $vp >/dev/null
kill $vp; sleep 3; kill -9 $vp 2>/dev/null; wait $vp 2>/dev/null
