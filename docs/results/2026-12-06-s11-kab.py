#!/usr/bin/env python3
"""Keep-alive user/sys us per request (wrk -t1 -c64, 6 s after 1 s warm-up), base vs new uringtls vs peer-tokio vs nginx, interleaved, ROUNDS rounds.
Usage: BIN=DIR python3 docs/results/2026-12-06-s11-kab.py ROUNDS  (DIR holds uringtls-base, uringtls-new, peer-tokio)"""
import os, re, subprocess, sys, time, signal, statistics
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tuning", "compare"))
from servers import make_workdir, start_uringtls, start_peer, start_nginx, cpu_split, write_big
R = int(sys.argv[1])
tmp = make_workdir("kab-")
big = write_big(tmp)
B = os.environ.get("BIN", "/work/bin")  # uringtls-base, uringtls-new, peer-tokio live here
mk = {"base": lambda: start_uringtls(f"{B}/uringtls-base", tmp, 1),
      "new": lambda: start_uringtls(f"{B}/uringtls-new", tmp, 1),
      "tokio": lambda: start_peer(f"{B}/peer-tokio", tmp, 1),
      "nginx": lambda: start_nginx(tmp, 1, big=big)}
names = list(mk)
res = {n: [] for n in names}
for r in range(R):
    order = names[r % len(names):] + names[:r % len(names)]
    if r % 2: order = order[::-1]
    for n in order:
        s = mk[n]()
        try:
            subprocess.run(["taskset", "-c", "0", "wrk", "-t1", "-c64", "-d1s", f"https://127.0.0.1:{s.port}/"], capture_output=True)
            u0, k0 = cpu_split(s.pid)
            out = subprocess.run(["taskset", "-c", "0", "wrk", "-t1", "-c64", "-d6s", f"https://127.0.0.1:{s.port}/"], capture_output=True, text=True).stdout
            u1, k1 = cpu_split(s.pid)
        finally:
            s.stop()
        n_req = int(re.search(r"(\d+) requests in", out).group(1))
        u, k = (u1 - u0) * 1e6 / n_req, (k1 - k0) * 1e6 / n_req
        res[n].append((u, k, n_req / 6))
        print(f"r{r+1} {n:6} {n_req/6:8.0f}/s user {u:5.2f} sys {k:5.2f} total {u+k:5.2f} us/req", flush=True)
print("\nmedians (user / sys / total us per request):")
for n in names:
    us = statistics.median(x[0] for x in res[n]); ks = statistics.median(x[1] for x in res[n])
    ts = statistics.median(x[0] + x[1] for x in res[n])
    print(f"{n:6} {us:5.2f} / {ks:5.2f} / {ts:5.2f}")
for a in ("base", "new"):
    print(f"{a}/tokio: user {statistics.median(x[0] for x in res[a]) / statistics.median(x[0] for x in res['tokio']):.2f}, "
          f"total {statistics.median(x[0]+x[1] for x in res[a]) / statistics.median(x[0]+x[1] for x in res['tokio']):.2f}; "
          f"per-round total ratios {[round((x[0]+x[1])/(y[0]+y[1]),2) for x, y in zip(res[a], res['tokio'])]}")
print(f"new/base per-round total: {[round((x[0]+x[1])/(y[0]+y[1]),2) for x, y in zip(res['new'], res['base'])]}; user: {[round(x[0]/y[0],2) for x, y in zip(res['new'], res['base'])]}")
