#!/usr/bin/env python3
"""A/B/nginx interleaved: nginx, uringtls base, uringtls new; same run; medians; ratios to nginx."""
import os, sys, statistics, shutil, time, argparse
sys.path.insert(0, "/work/main/tuning/compare")
import compare as K
import clients as C
from servers import make_workdir, start_nginx, start_uringtls, write_big

ap = argparse.ArgumentParser()
ap.add_argument("--bin", action="append", help="name=path (first is the baseline)")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--duration", type=int, default=8)
ap.add_argument("--workloads", default="full,resumed")
ap.add_argument("--clients", default="h2load,wrk,bench-client")
a = ap.parse_args()
bc = "/work/main/target/release/bench-client"
tmp = make_workdir("uringtls-ab-")
big = write_big(tmp)
ngx = dict(big=big, bulk="tuned", suites=True)
noresume = ["--tls13-tickets", "0", "--tls12", "false"]
bins = [b.split("=", 1) for b in a.bin]
S = {"nginx": start_nginx(tmp, 1, **ngx), "nginx-noresume": start_nginx(tmp, 1, resumption=False, **ngx)}
for n, p in bins:
    S[n] = start_uringtls(p, tmp, 1)
    S[n + "-noresume"] = start_uringtls(p, tmp, 1, extra=noresume)
calls = {("full", "h2load"): lambda u: C.h2load_full(0, u, a.duration, 16),
         ("full", "bench-client"): lambda u: C.bench_client(bc, 0, "handshake", u, a.duration, 16, ["--request", "http"]),
         ("resumed", "wrk"): lambda u: C.wrk(0, u, a.duration, 16, headers=["Connection: close"]),
         ("resumed", "bench-client"): lambda u: C.bench_client(bc, 0, "resume", u, a.duration, 16, ["--request", "http"])}
cl = a.clients.split(",")
res = {}
print("load at start", os.getloadavg(), flush=True)
try:
    names = ["nginx"] + [n for n, _ in bins]
    for rnd in range(a.rounds):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        if rnd % 2: order = order[::-1]
        for wl in a.workloads.split(","):
            for c in [c for (w, c) in calls if w == wl and c in cl]:
                for n in order:
                    s = S[n + ("-noresume" if wl == "full" else "")]
                    r = K.measure(s, lambda: calls[(wl, c)](f"https://127.0.0.1:{s.port}/"))
                    r["load1"] = os.getloadavg()[0]
                    res.setdefault((wl, c), {}).setdefault(n, []).append(r)
                    print(f"r{rnd+1} {wl:8} {c:12} {n:6} {r['rate']:8.0f} ops/s {r['cpu_us_per_op'] or 0:7.1f} us/op err {r['errors']} load {r['load1']:.1f}", flush=True)
finally:
    for s in S.values(): s.stop()
    shutil.rmtree(tmp, ignore_errors=True)
base = bins[0][0]
print("\nmedian server CPU us/op; (ratio to nginx: of medians / median of per-round ratios); vs " + base)
for (wl, c), d in res.items():
    m = {n: statistics.median(r["cpu_us_per_op"] for r in d[n] if r["cpu_us_per_op"]) for n in d}
    line = f"{wl:8} {c:12} nginx {m['nginx']:6.1f}"
    for n, _ in bins:
        rr = statistics.median(x["cpu_us_per_op"] / y["cpu_us_per_op"] for x, y in zip(d[n], d["nginx"]))
        line += f" | {n} {m[n]:6.1f} ({m[n]/m['nginx']:.3f}/{rr:.3f}) x{m[n]/m[base]:.3f}"
    print(line)
print("load at end", os.getloadavg())
