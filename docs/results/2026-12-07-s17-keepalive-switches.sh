# usage: ka2.sh name port cmd...  -> per-thread ctx switches per request
name=$1; port=$2; shift 2
(taskset -c 1 "$@" > $name.log 2>&1 &)
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
sp=$(pgrep -f -- "^$1 --listen 127.0.0.1:$port" | head -1)
taskset -c 0 wrk -t1 -c64 -d2 https://127.0.0.1:$port/ >/dev/null
snap() { for t in /proc/$sp/task/*; do echo "$(basename $t) $(cat $t/comm | tr ' ' _) $(awk '/^voluntary/{print $2}' $t/status) $(awk '/^nonvoluntary/{print $2}' $t/status) $(awk '{print $14+$15}' $t/stat)"; done; }
snap > /tmp/s0
out=$(taskset -c 0 wrk -t1 -c64 -d5 https://127.0.0.1:$port/)
snap > /tmp/s1
req=$(echo "$out" | awk '/requests in/{print $1}')
join /tmp/s0 /tmp/s1 | awk -v r=$req -v n=$name '{printf "%s %s vol/req %.4f invol/req %.4f cpu_ticks %d\n", n, $2, ($7-$3)/r, ($8-$4)/r, $9-$5}'
kill $sp; while [ -e /proc/$sp/status ] && ! grep -q zombie /proc/$sp/status; do sleep 0.05; done
