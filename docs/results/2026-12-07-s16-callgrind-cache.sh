#!/bin/bash
# usage: cgfull.sh NAME BINARY KIND(uringtls|peer) PORT: callgrind over 2000 full TLS 1.3 handshakes (h2load -n2000 -c16, one request each... as compare's full workload)
name=$1; bin=$2; kind=$3; port=$4
if [ $kind = uringtls ]; then
  args="--listen 127.0.0.1:$port --shards 1 --cpus 1 --cert cert.pem --key key.pem --log-level warn --max-conns 100000 --sandbox false --tls13-tickets 0 --tls12 false"
else
  args="--listen 127.0.0.1:$port --cert cert.pem --key key.pem --no-resumption"
fi
taskset -c 1 valgrind --tool=callgrind --callgrind-out-file=$name.cg.out --dump-instr=no --cache-sim=yes --D1=32768,8,64 --I1=32768,8,64 --LL=1048576,8,64 $bin $args > $name.log 2>&1 &
vp=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
taskset -c 0 h2load --h1 -n 200 -c 16 -H "Connection: close" https://127.0.0.1:$port/ >/dev/null
callgrind_control -z $vp >/dev/null
taskset -c 0 h2load --h1 -n 1000 -c 16 -H "Connection: close" https://127.0.0.1:$port/ | grep -E 'requests:|finished in'
callgrind_control -d $vp >/dev/null
kill $vp; sleep 3; kill -9 $vp 2>/dev/null; wait $vp 2>/dev/null
