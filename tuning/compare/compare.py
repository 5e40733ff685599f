#!/usr/bin/env python3
"""Side-by-side comparison: uringtls vs nginx and vs the same-library peers
(peer-tokio: tokio + tokio-rustls + hyper; peer-monoio: monoio +
monoio-rustls; tuning/compare/peers), one core each, same run.

All servers get the same ECDSA P-256 certificate and the same response body,
run pinned to the server CPU (default 1) with one worker / one shard / one
runtime thread; the clients run pinned to the client CPU (default 0). Each
workload runs with an independent client (wrk, h2load or oha) and with
bench-client, so that a client artefact cannot flatter any server. Servers
run interleaved (the order rotates and reverses from round to round) for
--rounds rounds; each figure is the median over rounds, and every ratio
(uringtls over each other server) is from the same run.

Server CPU per operation = (utime + stime of the server process from
/proc/PID/stat, delta over the run) / operations completed by the client;
the "kernel floor" is uringtls's stime per operation over the other
server's CPU per operation. Open-loop runs count from the end of a 1 s
warm-up.

Nothing is installed: missing tools and binaries are named (with the command
that builds them) and the script exits 2.
Usage: tuning/compare/compare.py [--rounds 3] [--duration 10] [--clients LIST] [--peers LIST] [--json FILE]
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
import targets  # noqa: E402
from targets import summary_key as key  # noqa: E402
from servers import (BIG_SIZE, PEERS, cpu_split, make_workdir, missing_binary, missing_tools,  # noqa: E402
                     release_binary, rss_kib, start_nginx, start_peer, start_uringtls, write_big)

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
# uringtls without resumption, for the full-handshake workload.
NOTICKETS = ["--tls13-tickets", "0", "--tls12", "false"]
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


def check_same_bodies(servers, workloads, names):
    """Every server must send nginx's bytes: / for every workload, /big for
    bulk. Fails the run otherwise."""
    import hashlib
    import http.client
    import ssl
    ctx = ssl._create_unverified_context()
    for suffix, path in [("", "/")] + ([("-bulk", "/big")] if "bulk" in workloads else []):
        got = {}
        for name in names:
            c = http.client.HTTPSConnection("127.0.0.1", servers[name + suffix].port, context=ctx, timeout=30)
            c.request("GET", path)
            body = c.getresponse().read()
            c.close()
            got[name] = (len(body), hashlib.sha1(body).hexdigest())
        for name, g in got.items():
            if g != got["nginx"]:
                raise RuntimeError(f"{path}: nginx sends {got['nginx']}, {name} {g} (bytes, SHA-1)")


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
    r["user_us_per_op"] = user * 1e6 / r["ops"] if r["ops"] else None
    return r


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per run")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--uringtls", default=release_binary("uringtls"))
    ap.add_argument("--workloads", default="keepalive,full,resumed,bulk,openloop,idle")
    ap.add_argument("--clients", default="wrk,h2load,oha,bench-client",
                    help="clients to run (each workload runs with those of its clients that are listed: "
                         "keepalive/resumed/bulk wrk, full h2load, openloop oha; all bench-client); "
                         "e.g. --clients wrk,h2load,oha for the independent clients only")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--bench-client", default=release_binary("bench-client"))
    ap.add_argument("--peers", default=",".join(PEERS),
                    help="same-library peers to run beside nginx and uringtls: names (built in $CARGO_TARGET_DIR "
                         "or target/, release) or paths to their binaries; '' for none")
    ap.add_argument("--idle-conns", type=int, default=10000, help="connections for the idle workload")
    ap.add_argument("--openloop-rate", type=float,
                    help="open-loop rate; default 50%% of nginx's keep-alive rate (wrk, else bench-client) "
                         "in the first round of this run")
    ap.add_argument("--uringtls-args", default="", help="extra flags for uringtls, e.g. '--coop-taskrun false'")
    ap.add_argument("--nginx-bulk", default="tuned", choices=["tuned", "default"],
                    help="nginx's /big setup (tuning/compare/servers.py NGINX_BULK)")
    ap.add_argument("--nginx-suites", default="as-uringtls", choices=["as-uringtls", "client-order"],
                    help="nginx's TLS 1.3 suite choice: AES-128-GCM first like uringtls, or the client's order")
    a = ap.parse_args()
    a.peer_paths = peer_paths(a.peers)
    return a


def peer_paths(spec):
    """`--peers` as {name: binary}: a known name means its release build, a
    path is taken as is (named after its file)."""
    out = {}
    for p in filter(None, spec.split(",")):
        path = release_binary(p) if p in PEERS else p
        out[os.path.basename(path)] = path
    return out


def server_names(a):
    """Every server of the run; uringtls's ratios are to each of the others."""
    return ["nginx", "uringtls"] + list(a.peer_paths)


def check_tools(a, workloads, clients):
    """Names every missing tool with how to get it; exits 2 if any."""
    need = ["nginx", "taskset", "openssl", "pgrep"]
    need += [c for wl in workloads for c in CLIENTS[wl] if c in clients and c in INSTALL and c not in need]
    missing = [f"{t} ({INSTALL[t]})" for t in missing_tools(dict.fromkeys(need))]
    missing.append(missing_binary(a.uringtls, "uringtls"))
    if "bench-client" in clients:
        missing.append(missing_binary(a.bench_client, "bench-client"))
    missing += [missing_binary(path, PEERS.get(name, "peers")) for name, path in a.peer_paths.items()]
    missing = [m for m in missing if m]
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
        sys.exit(2)


def start_one(a, tmp, big, name, variant=""):
    """Server `name` as `variant` needs it: "" (resumption on, the 12-byte
    body), "noresume" (no tickets, no cache: full handshakes) or "bulk"
    (the 1 MiB body; nginx serves it at /big from the file `big`)."""
    resumption = variant != "noresume"
    if name == "nginx":
        return start_nginx(tmp, a.server_cpu, resumption=resumption, big=big, bulk=a.nginx_bulk,
                           suites=a.nginx_suites == "as-uringtls")
    body = BIG_SIZE if variant == "bulk" else None
    if name == "uringtls":
        extra = ([] if resumption else NOTICKETS) + a.uringtls_args.split()
        return start_uringtls(a.uringtls, tmp, a.server_cpu, body_size=body, extra=extra)
    return start_peer(a.peer_paths[name], tmp, a.server_cpu, body_size=body, resumption=resumption)


def start_servers(a, tmp, big, workloads):
    """Every server for the keep-alive, resumed and open-loop runs (and
    nginx's /big), plus one without resumption each for `full` and one with
    the 1 MiB body each for `bulk`."""
    servers = {}
    try:
        for name in server_names(a):
            servers[name] = start_one(a, tmp, big, name)
            if "full" in workloads:
                servers[f"{name}-noresume"] = start_one(a, tmp, big, name, "noresume")
            if "bulk" in workloads:
                servers[f"{name}-bulk"] = servers[name] if name == "nginx" else start_one(a, tmp, big, name, "bulk")
    except BaseException:
        for s in servers.values():
            s.stop()
        raise
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
    fresh = start_one(a, tmp, big, name)
    try:
        return measure_idle(fresh, a.idle_conns)
    finally:
        fresh.stop()


def show_run(rnd, a, wl, client, name, r):
    where = f"round {rnd + 1}/{a.rounds} {wl:9} {client:12} {name:11}"
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


def summarize(wl, rs):
    """Medians over rounds for one workload and client, per server (`rs`:
    name -> runs), and uringtls's ratios to each other server."""
    u = rs["uringtls"]
    others = [n for n in rs if n != "uringtls"]
    if wl == "idle":
        row = {f"{n}_kib_per_conn": med(r, "kib_per_conn") for n, r in rs.items()}
        for o in others:
            row[key("rss_ratio", o)] = ratio(row["uringtls_kib_per_conn"], row[f"{o}_kib_per_conn"])
            paired(row, key("rss_ratio", o), rs[o], u, "kib_per_conn")
        return row
    row = {}
    ks = ("rate", "cpu_us_per_op", "sys_us_per_op", "user_us_per_op")
    ks += ("p50_us", "p99_us", "p99_9_us") if wl == "openloop" else ()
    for n, r in rs.items():
        for k in ks:
            row[f"{n}_{k}"] = med(r, k)
    for o in others:
        row[key("cpu_ratio", o)] = ratio(row["uringtls_cpu_us_per_op"], row[f"{o}_cpu_us_per_op"])
        # uringtls's kernel time per operation alone, over the other's total:
        # the CPU ratio cannot fall below it unless the kernel's share of the
        # work does.
        row[key("sys_floor_ratio", o)] = ratio(row["uringtls_sys_us_per_op"], row[f"{o}_cpu_us_per_op"])
        row[key("user_ratio", o)] = ratio(row["uringtls_user_us_per_op"], row[f"{o}_user_us_per_op"])
        paired(row, key("cpu_ratio", o), rs[o], u, "cpu_us_per_op")
        paired(row, key("user_ratio", o), rs[o], u, "user_us_per_op")
        if wl == "openloop":
            for k in ("p50_us", "p99_us", "p99_9_us"):
                row[key(f"{k}_ratio", o)] = ratio(row[f"uringtls_{k}"], row[f"{o}_{k}"])
                paired(row, key(f"{k}_ratio", o), rs[o], u, k)
    return row


def paired(row, name, n, u, k):
    """The same ratio per round (the two servers ran in the same round)
    and its median: a second view of the ratio of medians that one noisy
    round of either server cannot move on its own."""
    per = [ratio(b.get(k), a.get(k)) for a, b in zip(n, u)]
    per = [r for r in per if r is not None]
    row[f"{name}_rounds"] = per
    row[f"{name}_paired_median"] = statistics.median(per) if per else None


def print_table(summary, names):
    """One line per workload, client and server; on each other server's
    line, uringtls's CPU per operation over that server's (ratio of medians,
    then per round and their median), and the kernel floor."""
    f = lambda v, spec: format(v, spec) if v is not None else "-"
    print()
    print(f"{'workload':10} {'client':12} {'server':11} {'ops/s':>9} {'us/op':>8} {'user':>7} {'kernel':>7}  "
          f"uringtls / this: CPU ratio, per round (median), kernel floor")
    for wl, by_client in summary.items():
        for client, row in by_client.items():
            for n in names:
                where = f"{wl:10} {client:12} {n:11}"
                if wl == "idle":
                    line = f"{where} RSS per connection {f(row[f'{n}_kib_per_conn'], '.2f')} KiB"
                    if n != "uringtls":
                        line += f"  uringtls / this {f(row[key('rss_ratio', n)], '.2f')}"
                    print(line)
                    continue
                line = (f"{where} {f(row[f'{n}_rate'], '9.0f')} {f(row[f'{n}_cpu_us_per_op'], '8.1f')} "
                        f"{f(row[f'{n}_user_us_per_op'], '7.2f')} {f(row[f'{n}_sys_us_per_op'], '7.2f')}")
                if n != "uringtls":
                    line += (f"  {f(row[key('cpu_ratio', n)], '.2f')}  {rounds(row, key('cpu_ratio', n))}  "
                             f"floor {f(row[key('sys_floor_ratio', n)], '.2f')}")
                print(line)
                if wl == "openloop":
                    print(" " * 36 + "  ".join(
                        f"{k[:-3].replace('_', '.')} {f(row[f'{n}_{k}'], '.0f')} us"
                        + ("" if n == "uringtls" else
                           f" (uringtls / this {f(row[key(f'{k}_ratio', n)], '.2f')}; "
                           f"{rounds(row, key(f'{k}_ratio', n))})")
                        for k in ("p50_us", "p99_us", "p99_9_us")))


def rounds(row, name):
    """Per-round ratios and their median, e.g. `0.45/0.42/0.37 (0.42)`."""
    per = row.get(f"{name}_rounds") or []
    m = row.get(f"{name}_paired_median")
    return "/".join(format(r, ".2f") for r in per) + (f" ({m:.2f})" if m is not None else "")


def round_order(names, rnd):
    """The order servers run in round `rnd`: rotated by one every two
    rounds, reversed every other round (A B, B A for two servers), so that
    drift in the machine's load favours none."""
    shift = (rnd // 2) % len(names)
    order = names[shift:] + names[:shift]
    return order[::-1] if rnd % 2 else order


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
    names = server_names(a)
    results = {wl: {c: {n: [] for n in names} for c in CLIENTS[wl] if c in clients} for wl in workloads}
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
        check_same_bodies(servers, workloads, names)
        for rnd in range(a.rounds):
            order = round_order(names, rnd)
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

    summary = {wl: {c: summarize(wl, rs) for c, rs in by_client.items()} for wl, by_client in results.items()}
    print_table(summary, names)
    verdicts = targets.judge(summary)
    targets.print_targets(verdicts)
    machine = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "kernel": platform.release(), "cpus": os.cpu_count(),
               "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "nginx": version(["nginx", "-v"]),
               "wrk": version(["wrk", "-v"]), "h2load": version(["h2load", "--version"]),
               "oha": version(["oha", "--version"]), "bench_client": version([a.bench_client, "--version"]),
               "rounds": a.rounds, "duration_s": a.duration, "server_cpu": a.server_cpu,
               "client_cpu": a.client_cpu, "clients": a.clients, "uringtls_args": a.uringtls_args,
               "nginx_bulk": a.nginx_bulk, "nginx_suites": a.nginx_suites, "openloop_rate": fixed.get("rate"),
               "peers": a.peer_paths}
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine, "summary": summary, "targets": verdicts, "runs": results,
                       "rss_kib_end": rss}, f, indent=2)


if __name__ == "__main__":
    main()
