#!/usr/bin/env python3
"""Paired A/B: nginx, an old and a new uringtls, keep-alive (wrk -c64) and 1 MiB (wrk -c8), interleaved.
Usage: python3 docs/results/2026-11-23-s3-ab-keepalive-bulk.py ROUNDS OLD_BINARY NEW_BINARY"""
import os, sys, statistics, shutil
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tuning", "compare"))
import compare as K, clients as C
from servers import make_workdir, start_uringtls, start_nginx, write_big
bins = [("base", sys.argv[2]), ("new", sys.argv[3])]
tmp = make_workdir("ab-ka-")
big = write_big(tmp)
S = {"nginx": start_nginx(tmp, 1, big=big, bulk="tuned", suites=True)}
for n, p in bins:
    S[n] = start_uringtls(p, tmp, 1)
    S[n + "-bulk"] = start_uringtls(p, tmp, 1, body_size=1 << 20)
res = {}
try:
    names = ["nginx", "base", "new"]
    for rnd in range(int(sys.argv[1])):
        order = names[rnd % 3:] + names[:rnd % 3]
        for wl in ["keepalive", "bulk"]:
            for n in order:
                s = S[n + ("-bulk" if wl == "bulk" and n != "nginx" else "")]
                url = f"https://127.0.0.1:{s.port}" + ("/big" if wl == "bulk" else "/")
                r = K.measure(s, lambda: C.wrk(0, url, 5, 64 if wl == "keepalive" else 8))
                res.setdefault(wl, {}).setdefault(n, []).append(r["cpu_us_per_op"])
                print(f"r{rnd+1} {wl} {n} {r['cpu_us_per_op']:.1f} us/op load {os.getloadavg()[0]:.1f}", flush=True)
finally:
    for s in S.values(): s.stop()
for wl, d in res.items():
    m = {n: statistics.median(v) for n, v in d.items()}
    pr = statistics.median(x / y for x, y in zip(d["new"], d["base"]))
    print(wl, {k: round(v, 1) for k, v in m.items()}, f"new/base paired median {pr:.3f}")
