import re,sys,collections
def parse(path):
    names={}; self_=collections.Counter(); fn=None; fl=None; skip=False
    files={}; ob=None; obs={}
    cur_file=None
    for line in open(path):
        line=line.rstrip('\n')
        if skip: skip=False; continue
        m=re.match(r'^(ob|fl|fi|fe|fn|cfn|cfi|cfl|cob)=\((\d+)\)(?: (.*))?$',line)
        if m:
            kind,id_,name=m.groups()
            table={'ob':obs,'cob':obs,'fl':files,'fi':files,'fe':files,'cfi':files,'cfl':files,'fn':names,'cfn':names}[kind]
            if name is not None: table[id_]=name
            if kind=='fn': fn=names[id_]; 
            if kind=='fl': fl=files[id_]; cur_file=fl
            if kind in('fi','fe'): cur_file=files[id_]
            if kind=='ob': ob=obs[id_]
            continue
        if line.startswith('calls='): skip=True; continue
        m=re.match(r'^[+-]?\d+ (\d+)$',line) or re.match(r'^\* (\d+)$',line)
        if m and fn is not None:
            self_[(fn,cur_file,ob)]+=int(m.group(1))
    return self_
s=parse(sys.argv[1]); n=int(sys.argv[2]) if len(sys.argv)>2 else 20000
tot=sum(s.values())
def cat(fn,fl,ob):
    t=f"{fn} {fl} {ob}"
    if 'aws-lc' in t or 'aws_lc' in t: return 'crypto'
    if 'tokio-rustls' in t or 'tokio_rustls' in fl: return 'tokio-rustls'
    if 'rustls-0' in fl: return 'rustls'
    if 'libc.so' in (ob or ''):
        if 'malloc' in fl or 'free' in fn or 'malloc' in fn: return 'malloc'
        if 'mem' in fn: return 'mem*'
        return 'libc other'
    if 'httparse' in fl: return 'httparse'
    if '/work/main/engine' in fl: return 'engine'
    if '/work/main/runtime' in fl: return 'runtime'
    if 'hyper' in fl or 'http-1' in fl: return 'hyper/http'
    if 'tokio-1' in fl: return 'tokio'
    if '/rustc/' in fl: return 'std/core'
    if 'ld-linux' in (ob or ''): return 'ld.so'
    return 'other:'+fl.split('/')[-3] if fl.count('/')>3 else 'other'
g=collections.Counter()
for (fn,fl,ob),v in s.items(): g[cat(fn,fl or '',ob)]+=v
print(f"{sys.argv[1]}: total {tot/n:.0f} instr/req")
for k,v in g.most_common(14): print(f"  {k:24s} {v/n:7.0f}")
if len(sys.argv)>3:
    for (fn,fl,ob),v in s.most_common(int(sys.argv[3])): print(f"{v/n:7.0f} {fn[:110]}  [{(fl or '').split('/')[-1]}]")
