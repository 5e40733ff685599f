name=$1; bin=$2; port=$3; shift 3
taskset -c 1 $bin --listen 127.0.0.1:$port --shards 1 --cpus 1 --cert cert.pem --key key.pem --log-level warn --max-conns 100000 --sandbox false "$@" > $name.log 2>&1 &
sp=$!
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
taskset -c 0 wrk -t1 -c64 -d7 https://127.0.0.1:$port/ > $name.wrk &
wp=$!
sleep 2
perf record -e cpu-clock -F 4999 -p $sp -o $name.perf -- sleep 4 2>/dev/null >/dev/null
wait $wp
kill $sp; wait $sp 2>/dev/null
perf report -i $name.perf --no-children --sort symbol --stdio 2>/dev/null | grep -E "^ +[0-9]" | head -60
