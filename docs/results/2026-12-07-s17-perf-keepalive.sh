# usage: prof.sh name port cmd... -> perf of the server during wrk -c64 keep-alive; prints requests
name=$1; port=$2; shift 2
(taskset -c 1 "$@" > $name.log 2>&1 &)
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
sp=$(pgrep -f -- "^$1 --listen 127.0.0.1:$port" | head -1)
taskset -c 0 wrk -t1 -c64 -d7 https://127.0.0.1:$port/ > $name.wrk &
wp=$!
sleep 1.5
perf record -e cpu-clock -F 9999 -g -p $sp -o $name.perf -- sleep 4 2>/dev/null >/dev/null
wait $wp
kill $sp; while [ -e /proc/$sp/status ] && ! grep -q zombie /proc/$sp/status; do sleep 0.05; done
grep "Requests/sec" $name.wrk
