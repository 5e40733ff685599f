#!/bin/bash
# usage: segs.sh NAME KIND BIN PORT [extra]: TCP segments and ACK kinds per request during wrk -t1 -c64 keep-alive (nstat deltas)
name=$1; kind=$2; bin=$3; port=$4; shift 4
# run in a directory holding cert.pem and key.pem (not one a running uringtls watches)
if [ $kind = uringtls ]; then
  taskset -c 1 $bin --listen 127.0.0.1:$port --shards 1 --cpus 1 --cert cert.pem --key key.pem --log-level warn --max-conns 100000 --sandbox false "$@" > $name.log 2>&1 &
else
  taskset -c 1 $bin --listen 127.0.0.1:$port --cert cert.pem --key key.pem "$@" > $name.log 2>&1 &
fi
sp=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
nstat -n >/dev/null
read -r u0 s0 < <(awk '{print $14, $15}' /proc/$sp/stat)
taskset -c 0 wrk -t1 -c64 -d5 https://127.0.0.1:$port/ > $name.wrk
read -r u1 s1 < <(awk '{print $14, $15}' /proc/$sp/stat)
n=$(grep -oE '^ +[0-9]+ requests' $name.wrk | awk '{print $1}')
nstat -z 2>/dev/null | awk -v n=$n -v name=$name -v ut=$((u1-u0)) -v st=$((s1-s0)) 'BEGIN{printf "%s: %d requests, user %.2f us/req sys %.2f us/req\n", name, n, ut*1e4/n, st*1e4/n} /TcpInSegs|TcpOutSegs|TcpExtDelayedACKs|TcpExtTCPPureAcks|TcpExtTCPHPAcks|TcpExtTCPHPHits|TcpExtTCPAutoCorking|TcpExtTCPOrigDataSent|TcpExtTCPDelivered |TcpExtTCPRcvCoalesce|TcpExtTCPBacklogCoalesce|TcpExtTCPWantZeroWindowAdv|TcpExtTCPToZeroWindowAdv|TcpExtTCPFromZeroWindowAdv/ {printf "  %-28s %8.3f\n", $1, $2/n}'
kill $sp; wait $sp 2>/dev/null
