# usage: ka.sh name port cmd...   -> keep-alive wrk -c64 5s, prints cpu/req, ctxsw/req, util
name=$1; port=$2; shift 2
(taskset -c 1 "$@" > $name.log 2>&1 &)
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
sp=$(pgrep -f -- "^$1 --listen 127.0.0.1:$port" | head -1)
taskset -c 0 wrk -t1 -c64 -d2 https://127.0.0.1:$port/ >/dev/null
read u0 s0 <<<$(awk '{print $14, $15}' /proc/$sp/stat)
v0=$(awk '/^voluntary/{print $2}' /proc/$sp/status); n0=$(awk '/^nonvoluntary/{print $2}' /proc/$sp/status)
t0=$(date +%s.%N)
out=$(taskset -c 0 wrk -t1 -c64 -d5 https://127.0.0.1:$port/)
t1=$(date +%s.%N)
read u1 s1 <<<$(awk '{print $14, $15}' /proc/$sp/stat)
v1=$(awk '/^voluntary/{print $2}' /proc/$sp/status); n1=$(awk '/^nonvoluntary/{print $2}' /proc/$sp/status)
req=$(echo "$out" | awk '/requests in/{print $1}')
python3 - <<PY
req=$req; u=($u1-$u0)/100; s=($s1-$s0)/100; el=$t1-$t0
print(f"$name req/s {req/el:.0f} user {u/req*1e6:.2f}us sys {s/req*1e6:.2f}us total {(u+s)/req*1e6:.2f}us util {(u+s)/el:.2f} vol/req {($v1-$v0)/req:.4f} invol/req {($n1-$n0)/req:.4f}")
PY
kill $sp; while kill -0 $sp 2>/dev/null; do sleep 0.05; done
