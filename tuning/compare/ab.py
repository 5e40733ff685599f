#!/usr/bin/env python3
"""Paired A/B of server variants, interleaved, same run: CPU per operation
(median of rounds) and each variant's ratio to the first variant.

A variant is `name=nginx[:deferred]`, `name=PATH[:ARGS...]` (a uringtls
binary and extra flags, space-separated after the colon), or a same-library
peer (tuning/compare/peers): `name=peer-tokio[:ARGS]` or
`name=peer-monoio[:ARGS]` (the release build in $CARGO_TARGET_DIR or
target/), `name=peer:PATH[:ARGS]` (a peer binary elsewhere). Example:

    python3 tuning/compare/ab.py --rounds 5 --workloads full,resumed \\
        --variant nginx=nginx --variant tokio=peer-tokio \\
        --variant on=target/release/uringtls \\
        --variant off="target/release/uringtls:--defer-accept 0"

Servers on CPU 1, clients on CPU 0; the order of variants rotates every two
rounds and reverses every other round (compare.round_order) so that drift
in the machine's load does not favour one. Full-handshake workloads run against a second instance of each
variant that offers no resumption (h2load and bench-client would resume).
"""
import argparse, os, shutil, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as K  # noqa: E402
import clients as C  # noqa: E402
from servers import (BIG_SIZE, PEERS, make_workdir, missing_binary, parse_variant, release_binary,  # noqa: E402
                     start_nginx, start_peer, start_uringtls, write_big)

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--variant", action="append", required=True,
                help="name=nginx[:deferred], name=PATH[:ARGS] (uringtls), name=peer-tokio[:ARGS], "
                     "name=peer-monoio[:ARGS] or name=peer:PATH[:ARGS]")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--duration", type=int, default=8)
ap.add_argument("--workloads", default="full,resumed", help="full,resumed,keepalive,bulk,openloop")
ap.add_argument("--openloop-rate", type=float,
                help="requests/s of the openloop workload (oha, 64 connections, latency from the intended "
                     "send time); required with it. Reported: p99 and p99.9 besides CPU per request")
ap.add_argument("--clients", default="h2load,wrk,bench-client")
ap.add_argument("--bench-client", default=release_binary("bench-client"))
a = ap.parse_args()
if "openloop" in a.workloads.split(",") and not a.openloop_rate:
    ap.error("the openloop workload needs --openloop-rate (e.g. half of nginx's keep-alive rate)")


variants = [parse_variant(v) for v in a.variant]
missing = [missing_binary(path, PEERS.get(os.path.basename(path), "peers") if kind == "peer" else "uringtls")
           for _, kind, path, _ in variants if kind != "nginx"]
missing = [m for m in missing if m]
if missing:
    print("missing: " + ", ".join(missing), file=sys.stderr)
    sys.exit(2)
tmp = make_workdir("uringtls-ab-")
big = write_big(tmp)
NOTICKETS = K.NOTICKETS
S = {}
wls = a.workloads.split(",")
try:
    for name, kind, path, args in variants:
        if kind == "nginx":
            d = "deferred" in args
            S[name] = start_nginx(tmp, 1, big=big, deferred=d)
            if "full" in wls:
                S[name + "-noresume"] = start_nginx(tmp, 1, resumption=False, big=big, deferred=d)
            S[name + "-bulk"] = S[name]
        elif kind == "peer":
            S[name] = start_peer(path, tmp, 1, extra=args)
            if "full" in wls:
                S[name + "-noresume"] = start_peer(path, tmp, 1, resumption=False, extra=args)
            if "bulk" in wls:
                S[name + "-bulk"] = start_peer(path, tmp, 1, body_size=BIG_SIZE, extra=args)
        else:
            S[name] = start_uringtls(path, tmp, 1, extra=args)
            if "full" in wls:
                S[name + "-noresume"] = start_uringtls(path, tmp, 1, extra=args + NOTICKETS)
            if "bulk" in wls:
                S[name + "-bulk"] = start_uringtls(path, tmp, 1, body_size=BIG_SIZE, extra=args)
    bc = a.bench_client
    calls = {("full", "h2load"): lambda u: C.h2load_full(0, u, a.duration, 16),
             ("full", "bench-client"): lambda u: C.bench_client(bc, 0, "handshake", u, a.duration, 16, ["--request", "http"]),
             ("resumed", "wrk"): lambda u: C.wrk(0, u, a.duration, 16, headers=["Connection: close"]),
             ("resumed", "bench-client"): lambda u: C.bench_client(bc, 0, "resume", u, a.duration, 16, ["--request", "http"]),
             ("keepalive", "wrk"): lambda u: C.wrk(0, u, a.duration, 64),
             ("keepalive", "bench-client"): lambda u: C.bench_client(bc, 0, "http", u, a.duration, 64),
             ("bulk", "wrk"): lambda u: C.wrk(0, u, a.duration, 8),
             ("bulk", "bench-client"): lambda u: C.bench_client(bc, 0, "bulk", u, a.duration, 8),
             ("openloop", "oha"): lambda u: C.oha_open_loop(0, u, a.duration, a.openloop_rate, 64,
                                                            K.OPENLOOP_WARMUP)}
    cl = a.clients.split(",") + (["oha"] if "openloop" in wls else [])
    res = {}
    print("load at start", os.getloadavg(), flush=True)
    names = [n for n, _, _, _ in variants]
    for rnd in range(a.rounds):
        # (Rotating by one each round and reversing every other round gave
        # two variants the same order in every round.)
        order = K.round_order(names, rnd)
        for wl in wls:
            for c in [c for (w, c) in calls if w == wl and c in cl]:
                for n in order:
                    s = S[n + {"full": "-noresume", "bulk": "-bulk"}.get(wl, "")]
                    path = "/big" if wl == "bulk" else "/"
                    r = K.measure(s, lambda: calls[(wl, c)](f"https://127.0.0.1:{s.port}{path}"),
                                  K.OPENLOOP_WARMUP if wl == "openloop" else 0)
                    r["load1"] = os.getloadavg()[0]
                    res.setdefault((wl, c), {}).setdefault(n, []).append(r)
                    tail = (f" p99 {r['p99_us']} us p99.9 {r['p99_9_us']} us" if wl == "openloop" else "")
                    print(f"r{rnd+1} {wl:9} {c:12} {n:10} {r['rate']:8.0f} ops/s {r['cpu_us_per_op'] or 0:7.1f} us/op "
                          f"err {r['errors']} load {r['load1']:.1f}{tail}", flush=True)
finally:
    for s in S.values():
        s.stop()
    shutil.rmtree(tmp, ignore_errors=True)

base = names[0]
print(f"\nmedian server CPU us/op; (ratio to {base}: of medians / median of per-round ratios)")
for (wl, c), d in res.items():
    m = {n: statistics.median(r["cpu_us_per_op"] for r in d[n] if r["cpu_us_per_op"]) for n in d}
    line = f"{wl:9} {c:12} {base} {m[base]:6.1f}"
    for n in names[1:]:
        row = {}
        K.paired(row, "r", d[base], d[n], "cpu_us_per_op")
        rr = row["r_paired_median"] or float("nan")
        line += f" | {n} {m[n]:6.1f} ({m[n]/m[base]:.3f}/{rr:.3f})"
    print(line)
    if wl == "openloop":
        for q in ("p99_us", "p99_9_us"):
            mq = {n: statistics.median(r[q] for r in d[n] if r[q]) for n in d}
            line = f"{'':9} {q:12} {base} {mq[base]:6.0f}"
            for n in names[1:]:
                row = {}
                K.paired(row, "r", d[base], d[n], q)
                rr = row["r_paired_median"] or float("nan")
                line += f" | {n} {mq[n]:6.0f} ({mq[n]/mq[base]:.3f}/{rr:.3f})"
            print(line)
print("load at end", os.getloadavg())
