import re,sys
# usage: stalls.py TRACE.txt SERVER_PORT THRESHOLD_US: requests slower than the threshold (server residence, from perf script of tcp:tcp_probe) and how they cluster in time
EVENT = re.compile(r"\s(\d+\.\d+): tcp:tcp_probe: .*?src=[^ ]+:(\d+) dest=[^ ]+:(\d+) .*?data_len=(\d+)")
port=int(sys.argv[2]); pending={}; out=[]
for line in open(sys.argv[1]):
    m=EVENT.search(line)
    if not m or m.group(4)=="0": continue
    t,src,dst=float(m.group(1)),int(m.group(2)),int(m.group(3))
    if src==port: pending.setdefault(dst,t)
    elif dst==port:
        t0=pending.pop(src,None)
        if t0 is not None: out.append((t0,(t-t0)*1e6,src))
out.sort(); t00=out[0][0]
slow=[(round(t-t00,4),round(d),p) for t,d,p in out if d>float(sys.argv[3])]
print(len(out), "requests;", len(slow), "slower than", sys.argv[3], "us")
# cluster slow ones within 5 ms
cl=[]; 
for s in slow:
    if cl and s[0]-cl[-1][-1][0] < 0.005: cl[-1].append(s)
    else: cl.append([s])
print(len(cl), "clusters; sizes:", [len(c) for c in cl][:60])
print("cluster starts (s) and max us:", [(c[0][0], max(x[1] for x in c)) for c in cl][:40])
