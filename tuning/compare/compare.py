#!/usr/bin/env python3
"""Side-by-side comparison: uringtls vs nginx, one core each, same run.

Both servers get the same ECDSA P-256 certificate and the same response body,
run pinned to the server CPU (default 1) with one worker / one shard; the
clients run pinned to the client CPU (default 0). Each workload runs with an
independent client (wrk, h2load or oha) and with bench-client, so that a
client artefact cannot flatter either server. Servers run interleaved
(A B, then B A) for --rounds rounds; each figure is the median over rounds.

Server CPU per operation = (utime + stime of the server process from
/proc/PID/stat, delta over the run) / operations completed by the client;
the "kernel floor" is uringtls's stime per operation over nginx's CPU per
operation. Open-loop runs count from the end of a 1 s warm-up.

Nothing is installed: missing tools are named and the script exits 2.
Usage: tuning/compare/compare.py [--rounds 3] [--duration 10] [--clients LIST] [--json FILE]
See docs/benchmarks.md.
"""

import argparse
import json
import os
import platform
import re
import socket
import shutil
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clients as C  # noqa: E402
from servers import (BIG_SIZE, cpu_split, make_workdir, missing_tools, rss_kib, start_nginx,  # noqa: E402
                     start_uringtls, write_big)

# Per workload, the clients that can run it: the independent one first.
CLIENTS = {
    "keepalive": ("wrk", "bench-client"),
    "full": ("h2load", "bench-client"),
    "resumed": ("wrk", "bench-client"),
    "bulk": ("wrk", "bench-client"),
    "openloop": ("oha", "bench-client"),
    "idle": ("python-ssl",),
}
# Seconds each open-loop run runs before it counts: the clients open their 64
# connections then, and the requests scheduled meanwhile wait (see
# clients.oha_open_loop); tails and CPU per operation are from after it.
OPENLOOP_WARMUP = 1
INSTALL = {"nginx": "apt-get install nginx", "wrk": "apt-get install wrk", "h2load": "apt-get install nghttp2-client",
           "oha": "cargo install oha --locked", "taskset": "apt-get install util-linux",
           "pgrep": "apt-get install procps", "openssl": "apt-get install openssl"}


def check_no_resumption(server):
    """The full-handshake server must not have resumed anything: its stop
    line counts resumed handshakes."""
    server.stop()
    with open(server.log.name) as f:
        text = f.read()
    resumed = sum(int(m) for m in re.findall(r"resumed=(\d+)", text))
    if resumed:
        print(f"WARNING: the no-resumption uringtls resumed {resumed} handshakes", file=sys.stderr)


def check_same_bodies(servers, workloads):
    """Both servers must send the same bytes: / for every workload, /big for
    bulk. Fails the run otherwise."""
    import hashlib
    import http.client
    import ssl
    ctx = ssl._create_unverified_context()
    pairs = [("nginx", "uringtls", "/")] + ([("nginx-bulk", "uringtls-bulk", "/big")] if "bulk" in workloads else [])
    for n, u, path in pairs:
        got = []
        for name in (n, u):
            c = http.client.HTTPSConnection("127.0.0.1", servers[name].port, context=ctx, timeout=30)
            c.request("GET", path)
            body = c.getresponse().read()
            c.close()
            got.append((len(body), hashlib.sha1(body).hexdigest()))
        if got[0] != got[1]:
            raise RuntimeError(f"{path}: nginx sends {got[0]}, uringtls {got[1]} (bytes, SHA-1)")


def idle_connections(port, count):
    """Opens `count` TLS connections (full handshakes) and holds them.
    Returns the list of sockets; the caller closes them."""
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    socks = []
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port), timeout=30)
        socks.append(ctx.wrap_socket(raw, server_hostname="localhost"))
    return socks


def measure_idle(server, count):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, count + 1024)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    before = rss_kib(server.pid)
    t0 = time.time()
    socks = idle_connections(server.port, count)
    # Let the server finish post-handshake work (tickets) before reading RSS.
    time.sleep(1.0)
    after = rss_kib(server.pid)
    wall = time.time() - t0
    for s in socks:
        s.close()
    return {"ops": count, "errors": 0, "wall_s": wall, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_conn": (after - before) / count}


def measure(server, fn, warmup=0):
    """Runs the client call `fn` and adds the server's CPU over it. With
    `warmup` (seconds the client runs before it counts), CPU and wall time
    are taken from that point on, to match the operations counted."""
    start = {}

    def mark():
        start["cpu"], start["t"] = cpu_split(server.pid), time.time()

    mark()
    timer = None
    if warmup:
        timer = threading.Timer(warmup, mark)
        timer.start()
    try:
        r = fn()
    finally:
        if timer:
            timer.cancel()
            timer.join()
    wall = time.time() - start["t"]
    user, sys_ = (b - a for a, b in zip(start["cpu"], cpu_split(server.pid)))
    cpu = user + sys_
    r["wall_s"] = wall
    r["cpu_s"] = cpu
    # A client that reports its measured window (open loop) gives the rate
    # over it: the wall time here also holds the client's start and exit.
    span = r.get("measured_s") or wall
    r["rate"] = r["ops"] / span if span else 0
    r["cpu_us_per_op"] = cpu * 1e6 / r["ops"] if r["ops"] else None
    r["sys_us_per_op"] = sys_ * 1e6 / r["ops"] if r["ops"] else None
    return r


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per run")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--uringtls", default="target/release/uringtls")
    ap.add_argument("--workloads", default="keepalive,full,resumed,bulk,openloop,idle")
    ap.add_argument("--clients", default="wrk,h2load,oha,bench-client",
                    help="clients to run (each workload runs with those of its clients that are listed: "
                         "keepalive/resumed/bulk wrk, full h2load, openloop oha; all bench-client); "
                         "e.g. --clients wrk,h2load,oha for the independent clients only")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--bench-client", default="target/release/bench-client")
    ap.add_argument("--idle-conns", type=int, default=10000, help="connections for the idle workload")
    ap.add_argument("--openloop-rate", type=float,
                    help="open-loop rate; default 50%% of nginx's keep-alive rate (wrk, else bench-client) "
                         "in the first round of this run")
    ap.add_argument("--uringtls-args", default="", help="extra flags for uringtls, e.g. '--coop-taskrun false'")
    ap.add_argument("--nginx-bulk", default="tuned", choices=["tuned", "default"],
                    help="nginx's /big setup (tuning/compare/servers.py NGINX_BULK)")
    ap.add_argument("--nginx-suites", default="as-uringtls", choices=["as-uringtls", "client-order"],
                    help="nginx's TLS 1.3 suite choice: AES-128-GCM first like uringtls, or the client's order")
    return ap.parse_args()


def check_tools(a, workloads, clients):
    """Names every missing tool with how to get it; exits 2 if any."""
    need = ["nginx", "taskset", "openssl", "pgrep"]
    need += [c for wl in workloads for c in CLIENTS[wl] if c in clients and c in INSTALL and c not in need]
    missing = [f"{t} ({INSTALL[t]})" for t in missing_tools(dict.fromkeys(need))]
    if not os.path.exists(a.uringtls):
        missing.append(f"{a.uringtls} (cargo build --release -p uringtls)")
    if "bench-client" in clients and not os.path.exists(a.bench_client):
        missing.append(f"{a.bench_client} (cargo build --release -p bench-client)")
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
        sys.exit(2)


def start_servers(a, tmp, big, workloads):
    """nginx and uringtls for the keep-alive, resumed and open-loop runs (and
    nginx's /big), plus a pair without resumption for `full` and a uringtls
    with the 1 MiB body for `bulk`."""
    ux = a.uringtls_args.split()
    ngx = dict(big=big, bulk=a.nginx_bulk, suites=a.nginx_suites == "as-uringtls")
    servers = {"nginx": start_nginx(tmp, a.server_cpu, **ngx),
               "uringtls": start_uringtls(a.uringtls, tmp, a.server_cpu, extra=ux)}
    if "full" in workloads:
        servers["nginx-noresume"] = start_nginx(tmp, a.server_cpu, resumption=False, **ngx)
        servers["uringtls-noresume"] = start_uringtls(a.uringtls, tmp, a.server_cpu,
                                                      extra=["--tls13-tickets", "0", "--tls12", "false"] + ux)
    if "bulk" in workloads:
        servers["nginx-bulk"] = servers["nginx"]
        servers["uringtls-bulk"] = start_uringtls(a.uringtls, tmp, a.server_cpu, body_size=BIG_SIZE, extra=ux)
    return servers


def job(a, servers, name, wl, client, rate):
    """The server a run measures, the client call that runs it, and the
    seconds of warm-up the client runs before it counts."""
    s = servers[{"full": f"{name}-noresume", "bulk": f"{name}-bulk"}.get(wl, name)]
    url = f"https://127.0.0.1:{s.port}" + ("/big" if wl == "bulk" else "/")
    cc, d, bc = a.client_cpu, a.duration, a.bench_client
    calls = {
        ("keepalive", "wrk"): lambda: C.wrk(cc, url, d, 64),
        ("keepalive", "bench-client"): lambda: C.bench_client(bc, cc, "http", url, d, 64),
        ("full", "h2load"): lambda: C.h2load_full(cc, url, d, 16),
        ("full", "bench-client"): lambda: C.bench_client(bc, cc, "handshake", url, d, 16, ["--request", "http"]),
        ("resumed", "wrk"): lambda: C.wrk(cc, url, d, 16, headers=["Connection: close"]),
        ("resumed", "bench-client"): lambda: C.bench_client(bc, cc, "resume", url, d, 16, ["--request", "http"]),
        ("bulk", "wrk"): lambda: C.wrk(cc, url, d, 8),
        ("bulk", "bench-client"): lambda: C.bench_client(bc, cc, "bulk", url, d, 8),
        ("openloop", "oha"): lambda: C.oha_open_loop(cc, url, d, rate(), 64, OPENLOOP_WARMUP),
        ("openloop", "bench-client"): lambda: C.bench_client(bc, cc, "http", url, d, 64,
                                                             ["--rate", str(int(rate()))], OPENLOOP_WARMUP),
    }
    return s, calls[(wl, client)], OPENLOOP_WARMUP if wl == "openloop" else 0


def run_idle(a, tmp, big, name):
    # A fresh server each time: freed memory stays in the process's heap, so
    # a reused server would look free.
    fresh = (start_nginx(tmp, a.server_cpu, big=big) if name == "nginx"
             else start_uringtls(a.uringtls, tmp, a.server_cpu, extra=a.uringtls_args.split()))
    try:
        return measure_idle(fresh, a.idle_conns)
    finally:
        fresh.stop()


def show_run(rnd, a, wl, client, name, r):
    where = f"round {rnd + 1}/{a.rounds} {wl:9} {client:12} {name:8}"
    if wl == "idle":
        print(f"{where} {r['kib_per_conn']:8.2f} KiB RSS per connection ({a.idle_conns} connections)  "
              f"load {r['load1']:.1f}", flush=True)
        return
    line = f"{where} {r['rate']:10.0f} ops/s {(r['cpu_us_per_op'] or 0):8.1f} us CPU/op  errors {r['errors']}"
    if wl == "openloop":
        line += f"  p50 {r['p50_us']} us  p99 {r['p99_us']} us  p99.9 {r['p99_9_us']} us"
    if wl in ("full", "resumed") and r.get("resumed_share") is not None:
        line += f"  resumed {r['resumed_share']:.0%}"
    print(f"{line}  load {r['load1']:.1f}", flush=True)


def med(rs, k):
    vals = [r[k] for r in rs if r.get(k) is not None]
    return statistics.median(vals) if vals else None


def ratio(u, n):
    return u / n if u is not None and n else None


def summarize(wl, n, u):
    """Medians over rounds for one workload and client, and the ratios
    uringtls/nginx."""
    if wl == "idle":
        row = {"nginx_kib_per_conn": med(n, "kib_per_conn"), "uringtls_kib_per_conn": med(u, "kib_per_conn")}
        row["rss_ratio"] = ratio(row["uringtls_kib_per_conn"], row["nginx_kib_per_conn"])
        return row
    row = {}
    for k in ("rate", "cpu_us_per_op", "sys_us_per_op") + (("p50_us", "p99_us", "p99_9_us") if wl == "openloop" else ()):
        row[f"nginx_{k}"], row[f"uringtls_{k}"] = med(n, k), med(u, k)
    row["cpu_ratio"] = ratio(row["uringtls_cpu_us_per_op"], row["nginx_cpu_us_per_op"])
    # uringtls's kernel time per operation alone, over nginx's total: the CPU
    # ratio cannot fall below it unless the kernel's share of the work does.
    row["sys_floor_ratio"] = ratio(row["uringtls_sys_us_per_op"], row["nginx_cpu_us_per_op"])
    paired(row, "cpu_ratio", n, u, "cpu_us_per_op")
    if wl == "openloop":
        for k in ("p50_us", "p99_us", "p99_9_us"):
            row[f"{k}_ratio"] = ratio(row[f"uringtls_{k}"], row[f"nginx_{k}"])
            paired(row, f"{k}_ratio", n, u, k)
    return row


def paired(row, name, n, u, k):
    """The same ratio per round (the two servers ran back to back in each)
    and its median: a second view of the ratio of medians that one noisy
    round of either server cannot move on its own."""
    per = [ratio(b.get(k), a.get(k)) for a, b in zip(n, u)]
    per = [r for r in per if r is not None]
    row[f"{name}_rounds"] = per
    row[f"{name}_paired_median"] = statistics.median(per) if per else None


def print_table(summary):
    f = lambda v, spec: format(v, spec) if v is not None else "-"
    print()
    print(f"{'workload':10} {'client':12} {'nginx ops/s':>12} {'uringtls ops/s':>15} {'nginx us/op':>12} "
          f"{'uringtls us/op':>15} {'CPU ratio':>10} {'kernel floor':>13}  per round (median)")
    for wl, by_client in summary.items():
        for client, row in by_client.items():
            if wl == "idle":
                print(f"{wl:10} {client:12} RSS per connection: nginx {f(row['nginx_kib_per_conn'], '.2f')} KiB, "
                      f"uringtls {f(row['uringtls_kib_per_conn'], '.2f')} KiB, ratio {f(row['rss_ratio'], '.2f')}")
                continue
            print(f"{wl:10} {client:12} {f(row['nginx_rate'], '12.0f')} {f(row['uringtls_rate'], '15.0f')} "
                  f"{f(row['nginx_cpu_us_per_op'], '12.1f')} {f(row['uringtls_cpu_us_per_op'], '15.1f')} "
                  f"{f(row['cpu_ratio'], '10.2f')} {f(row['sys_floor_ratio'], '13.2f')}  {rounds(row, 'cpu_ratio')}")
            if wl == "openloop":
                print(" " * 23 + "  ".join(
                    f"{k[:-3].replace('_', '.')} {f(row[f'nginx_{k}'], '.0f')}/{f(row[f'uringtls_{k}'], '.0f')} us "
                    f"(ratio {f(row[f'{k}_ratio'], '.2f')}; {rounds(row, f'{k}_ratio')})"
                    for k in ("p50_us", "p99_us", "p99_9_us"))
                      + "  [nginx/uringtls]")


def rounds(row, name):
    """Per-round ratios and their median, e.g. `0.45/0.42/0.37 (0.42)`."""
    per = row.get(f"{name}_rounds") or []
    m = row.get(f"{name}_paired_median")
    return "/".join(format(r, ".2f") for r in per) + (f" ({m:.2f})" if m is not None else "")


def version(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return ((p.stdout or p.stderr).strip().splitlines() or [None])[0]


def main():
    a = parse_args()
    workloads = a.workloads.split(",")
    clients = a.clients.split(",") + ["python-ssl"]
    unknown = [c for c in clients if not any(c in cs for cs in CLIENTS.values())]
    unknown += [wl for wl in workloads if wl not in CLIENTS]
    if unknown:
        sys.exit(f"unknown client(s) or workload(s): {', '.join(unknown)} (see --help)")
    check_tools(a, workloads, clients)
    load_start = os.getloadavg()
    tmp = make_workdir("uringtls-compare-")
    big = write_big(tmp)
    servers = start_servers(a, tmp, big, workloads)
    results = {wl: {c: {"nginx": [], "uringtls": []} for c in CLIENTS[wl] if c in clients} for wl in workloads}
    fixed = {}

    def openloop_rate():
        # Fixed at first use, so that every round and client runs the same rate.
        if "rate" not in fixed:
            ka = results.get("keepalive", {})
            runs = (ka.get("wrk") or ka.get("bench-client") or {}).get("nginx", [])
            if not a.openloop_rate and not runs:
                raise RuntimeError("open loop needs --openloop-rate or the keepalive workload before it")
            fixed["rate"] = a.openloop_rate or 0.5 * statistics.median(r["rate"] for r in runs)
        return fixed["rate"]

    try:
        check_same_bodies(servers, workloads)
        for rnd in range(a.rounds):
            order = ("nginx", "uringtls") if rnd % 2 == 0 else ("uringtls", "nginx")
            for wl in workloads:
                for client in results[wl] if rnd % 2 == 0 else reversed(list(results[wl])):
                    for name in order:
                        if wl == "idle":
                            r = run_idle(a, tmp, big, name)
                        else:
                            r = measure(*job(a, servers, name, wl, client, openloop_rate))
                        r["load1"] = os.getloadavg()[0]
                        results[wl][client][name].append(r)
                        show_run(rnd, a, wl, client, name, r)
        rss = {n: rss_kib(s.pid) for n, s in servers.items()}
        if "full" in workloads:
            check_no_resumption(servers["uringtls-noresume"])
    finally:
        for s in servers.values():
            s.stop()
        os.unlink(big)
        shutil.rmtree(tmp, ignore_errors=True)

    summary = {wl: {c: summarize(wl, rs["nginx"], rs["uringtls"]) for c, rs in by_client.items()}
               for wl, by_client in results.items()}
    print_table(summary)
    machine = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "kernel": platform.release(), "cpus": os.cpu_count(),
               "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "nginx": version(["nginx", "-v"]),
               "wrk": version(["wrk", "-v"]), "h2load": version(["h2load", "--version"]),
               "oha": version(["oha", "--version"]), "bench_client": version([a.bench_client, "--version"]),
               "rounds": a.rounds, "duration_s": a.duration, "server_cpu": a.server_cpu,
               "client_cpu": a.client_cpu, "clients": a.clients, "uringtls_args": a.uringtls_args,
               "nginx_bulk": a.nginx_bulk, "nginx_suites": a.nginx_suites, "openloop_rate": fixed.get("rate")}
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine, "summary": summary, "runs": results, "rss_kib_end": rss}, f, indent=2)


if __name__ == "__main__":
    main()
