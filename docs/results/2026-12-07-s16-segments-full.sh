#!/bin/bash
# usage: segsfull.sh NAME KIND BIN PORT [extra]: TCP segments per full TLS 1.3 handshake (h2load --h1 -n N -c16, Connection: close, no resumption), nstat deltas
name=$1; kind=$2; bin=$3; port=$4; shift 4
# run in a directory holding cert.pem and key.pem (not one a running uringtls watches)
N=${N:-4000}
if [ $kind = uringtls ]; then
  taskset -c 1 $bin --listen 127.0.0.1:$port --shards 1 --cpus 1 --cert cert.pem --key key.pem --log-level warn --max-conns 100000 --sandbox false --tls13-tickets 0 --tls12 false "$@" > $name.log 2>&1 &
else
  taskset -c 1 $bin --listen 127.0.0.1:$port --cert cert.pem --key key.pem --no-resumption "$@" > $name.log 2>&1 &
fi
sp=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
taskset -c 0 h2load --h1 -n 200 -c 16 -H "Connection: close" https://127.0.0.1:$port/ >/dev/null
nstat -n >/dev/null
read -r u0 s0 < <(awk '{print $14, $15}' /proc/$sp/stat)
taskset -c 0 h2load --h1 -n $N -c 16 -H "Connection: close" https://127.0.0.1:$port/ > $name.h2
read -r u1 s1 < <(awk '{print $14, $15}' /proc/$sp/stat)
n=$(grep -oE 'requests: .* ([0-9]+) succeeded' $name.h2 | grep -oE '[0-9]+ succeeded' | awk '{print $1}')
nstat -z 2>/dev/null | awk -v n=$n -v name=$name -v ut=$((u1-u0)) -v st=$((s1-s0)) 'BEGIN{printf "%s: %d handshakes, user %.1f us sys %.1f us each\n", name, n, ut*1e4/n, st*1e4/n} /TcpInSegs|TcpOutSegs|TcpExtDelayedACKs|TcpExtTCPPureAcks|TcpExtTCPHPAcks|TcpExtTCPOrigDataSent|TcpActiveOpens|TcpPassiveOpens|TcpExtTCPAbortOnData|TcpExtTCPAbortOnClose|TcpOutRsts|TcpEstabResets|TcpExtTW |TcpExtTCPAutoCorking|TcpExtListenDrops/ {printf "  %-28s %8.3f\n", $1, $2/n}'
kill $sp; wait $sp 2>/dev/null
