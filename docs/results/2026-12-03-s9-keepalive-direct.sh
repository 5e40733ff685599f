#!/bin/bash
# ka.sh BIN "FLAGS" WRKARGS... : one server run; prints CPU/op and SQEs/op
BIN=$1; FL=$2; shift 2
cd /tmp/prof
taskset -c 1 $BIN --cert cert.pem --key key.pem --shards 1 --cpus 1 --listen 127.0.0.1:9443 --log-level warn $FL > /tmp/s9/srv.log 2>&1 &
P=$!
for i in $(seq 50); do curl -sk https://127.0.0.1:9443/ >/dev/null && break; sleep 0.1; done
perf stat -e io_uring:io_uring_submit_req,sched:sched_switch -p $P -o /tmp/s9/pstat.txt -- sleep 6 &
PS=$!
a=($(awk '{print $14, $15}' /proc/$P/stat))
n=$(taskset -c 0 wrk -t1 "$@" -d5s https://127.0.0.1:9443/ | awk '/requests in/ {print $1}')
b=($(awk '{print $14, $15}' /proc/$P/stat))
wait $PS
kill $P; wait $P 2>/dev/null
sq=$(awk '/io_uring_submit_req/ {gsub(",","",$1); print $1}' /tmp/s9/pstat.txt)
sw=$(awk '/sched_switch/ {gsub(",","",$1); print $1}' /tmp/s9/pstat.txt)
python3 -c "n=$n; u=($((${b[0]}-${a[0]})))*1e4/n; s=($((${b[1]}-${a[1]})))*1e4/n; print(f'{n} req user {u:.2f} sys {s:.2f} total {u+s:.2f} us/op  sqe/op {$sq/n:.3f} switch/op {$sw/n:.3f}')"
