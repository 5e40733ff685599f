import re,sys,collections
path,want=sys.argv[1],sys.argv[2]; n=20000
names={};files={};fn=None;cur=None;skip=False;last=0
c=collections.Counter()
for line in open(path):
    line=line.rstrip('\n')
    if skip: skip=False; continue
    m=re.match(r'^(ob|fl|fi|fe|fn|cfn|cfi|cfl|cob)=\((\d+)\)(?: (.*))?$',line)
    if m:
        k,i,nm=m.groups()
        t={'fl':files,'fi':files,'fe':files,'cfi':files,'cfl':files,'fn':names,'cfn':names}.get(k)
        if t is not None and nm is not None: t[i]=nm
        if k=='fn': fn=names[i]
        if k in('fl','fi','fe'): cur=files[i]
        continue
    if line.startswith('calls='): skip=True; continue
    m=re.match(r'^([+-]?)(\d+|\*) (\d+)$',line)
    if m:
        s,p,v=m.groups()
        if p=='*': ln=last
        elif s=='+': ln=last+int(p)
        elif s=='-': ln=last-int(p)
        else: ln=int(p)
        last=ln
        if cur and want in cur: c[(cur.split('/')[-1],ln)]+=int(v)
for (f,l),v in sorted(c.items(), key=lambda x:-x[1])[:int(sys.argv[3]) if len(sys.argv)>3 else 30]:
    print(f"{v/n:7.1f} {f}:{l}")
