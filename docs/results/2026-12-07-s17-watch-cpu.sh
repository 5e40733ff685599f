# usage: watchcpu.sh BINARY MODE(close|open) -> process CPU (schedstat, all threads) over 300 log lines beside cert.pem, 10 ms apart
bin=$1; mode=$2; dir=/work/s17/wd; port=9451
rm -f $dir/access.log; touch $dir/access.log
($bin --listen 127.0.0.1:$port --shards 1 --cpus 1 --cert $dir/cert.pem --key $dir/key.pem --log-level warn --sandbox false > /work/s17/watchcpu.log 2>&1 &)
for i in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
sp=$(pgrep -f -- "^$bin --listen 127.0.0.1:$port" | head -1)
sum() { cat /proc/$sp/task/*/schedstat | awk '{s+=$1} END {print s}'; }
sleep 0.5; a=$(sum)
if [ $mode = close ]; then for i in $(seq 300); do echo "line $i" >> $dir/access.log; sleep 0.01; done
else exec 3>>$dir/access.log; for i in $(seq 300); do echo "line $i" >&3; sleep 0.01; done; exec 3>&-; fi
sleep 0.3; b=$(sum)
echo "$(basename $bin) $mode $(( (b-a)/1000 )) us over 300 lines; threads: $(cat /proc/$sp/task/*/comm | tr '\n' ' ')"
kill $sp; while [ -e /proc/$sp/status ] && ! grep -q zombie /proc/$sp/status; do sleep 0.05; done
