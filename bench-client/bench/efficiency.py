#!/usr/bin/env python3
"""bench-client efficiency: does bench-client drive at least what wrk
(keep-alive requests) and h2load (full TLS handshakes) drive against the
same server, with the same client CPU?

Server pinned to CPU 1 (nginx: one worker; uringtls: --shards 1 --cpus 1),
every client pinned to CPU 0 with one thread. Clients alternate
(A B, then B A) within each round; medians over rounds. Server CPU per
operation (from /proc/PID/stat) is reported too: the same server work per
operation means the clients are compared like for like.

Usage: python3 bench-client/bench/efficiency.py [--rounds 3] [--duration 10]
Needs: nginx, wrk, h2load (apt-get install nginx wrk nghttp2-client), openssl,
and release builds: cargo build --release -p bench-client -p uringtls
"""
import argparse, json, os, re, resource, shutil, socket, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tuning", "compare"))
import servers  # noqa: E402  (shared with tuning/compare/compare.py)
from servers import cpu_seconds  # noqa: E402


def start_nginx(tmp, resumption=True):
    # One TLS 1.3 suite for every client (AES-128-GCM, as uringtls): nginx
    # otherwise follows the client's order, and wrk gets AES-256-GCM.
    s = servers.start_nginx(tmp, 1, resumption=resumption)
    return s.proc, s.pid, s.port


def start_uringtls(binary, tmp, resumption=True):
    extra = [] if resumption else ["--tls13-tickets", "0"]
    s = servers.start_uringtls(binary, tmp, 1, extra=extra, log_level="error")
    return s.proc, s.pid, s.port


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-800:]}")
    return p.stdout + p.stderr


H2_COUNT = {}
RESUMED_SHARE = {}


def client(kind, name, url, dur, bc):
    """Runs one client; returns (ops, wall seconds, command)."""
    pin = ["taskset", "-c", "0"]
    if kind == "keepalive" and name == "wrk":
        cmd = pin + ["wrk", "-t1", "-c64", f"-d{dur}s", url]
        out = run(cmd)
        return int(re.search(r"(\d+) requests in", out).group(1)), float(re.search(r"requests in ([\d.]+)s", out).group(1)), cmd
    if kind in ("full", "resumed") and name == "h2load":
        # h2load's -D (timed mode) hangs at the end with `Connection: close`
        # (1.52), so run a request count sized from a short calibration.
        def h2(n):
            cmd = pin + ["h2load", "--h1", "-c16", "-n", str(n), "-H", "Connection: close", url]
            out = run(cmd)
            m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
            t = re.search(r"finished in ([\d.]+)(ms|s),", out)
            secs = float(t.group(1)) / (1000.0 if t.group(2) == "ms" else 1.0)
            return int(m.group(1)), secs, cmd
        if url not in H2_COUNT:
            ops, secs, _ = h2(1000)
            H2_COUNT[url] = max(1000, int(ops / secs * dur))
        return h2(H2_COUNT[url])
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    if kind == "keepalive":
        cmd = pin + [bc, "http", url, "-k", "-c64", "-t1", "-d", f"{dur}s", "-q", "--json", path]
    else:
        sub = "handshake" if kind == "full" else "resume"
        cmd = pin + [bc, sub, url, "-k", "-c16", "-t1", "--request", "http", "-d", f"{dur}s", "-q", "--json", path]
    run(cmd)
    with open(path) as f:
        j = json.load(f)
    os.unlink(path)
    RESUMED_SHARE.setdefault(f"{kind}/{url}", []).append(j["handshakes"]["resumed_share"])
    return j["ops"], j["load"]["duration_s"], cmd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--servers", default="nginx,uringtls")
    ap.add_argument("--workloads", default="keepalive,full,resumed")
    ap.add_argument("--bench-client", default=servers.release_binary("bench-client"))
    ap.add_argument("--uringtls", default=servers.release_binary("uringtls"))
    ap.add_argument("--json", help="write raw results here")
    a = ap.parse_args()
    missing = [t for t in ("nginx", "wrk", "h2load", "taskset", "openssl", "pgrep") if not shutil.which(t)]
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (apt-get install -y nginx wrk nghttp2-client)")
    tmp = servers.make_workdir("bench-client-eff-")
    procs = {}
    cases = [("nginx", "keepalive"), ("uringtls", "keepalive"), ("nginx-nores", "full"),
             ("uringtls-nores", "full"), ("nginx", "resumed"), ("uringtls", "resumed")]
    cases = [c for c in cases if c[1] in a.workloads.split(",") and c[0].split("-")[0] in a.servers.split(",")]
    try:
        for s, _ in cases:
            if s not in procs:
                res_on = not s.endswith("-nores")
                procs[s] = (start_nginx(tmp, res_on) if s.startswith("nginx")
                            else start_uringtls(a.uringtls, tmp, res_on))
        peers = {"keepalive": "wrk", "full": "h2load", "resumed": "h2load"}
        res = {}
        for rnd in range(a.rounds):
            for s, wl in cases:
                _, pid, port = procs[s]
                url = f"https://127.0.0.1:{port}/"
                order = [peers[wl], "bench-client"] if rnd % 2 == 0 else ["bench-client", peers[wl]]
                for c in order:
                    c0, w0 = cpu_seconds(pid), time.monotonic()
                    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    ops, secs, cmd = client(wl, c, url, a.duration, a.bench_client)
                    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    cpu, wall = cpu_seconds(pid) - c0, time.monotonic() - w0
                    ccpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
                    # server_busy: share of its one core the server used while
                    # the client ran (near 1.0: the server is the bottleneck,
                    # and the rate is 1 / its CPU per operation).
                    r = {"rate": ops / secs, "server_us_per_op": cpu * 1e6 / max(ops, 1),
                         "client_us_per_op": ccpu * 1e6 / max(ops, 1), "server_busy": cpu / wall,
                         "load1": os.getloadavg()[0], "cmd": " ".join(cmd)}
                    res.setdefault(f"{s}/{wl}/{c}", []).append(r)
                    print(f"round {rnd} {s:14} {wl:9} {c:12} {r['rate']:10.0f}/s  server {r['server_us_per_op']:7.1f} us/op"
                          f" busy {r['server_busy']:4.0%}  client {r['client_us_per_op']:7.1f} us/op"
                          f"  load {r['load1']:.1f}", flush=True)
        print()
        print(f"{'server':14} {'workload':9} {'peer':7} {'peer/s':>9} {'bench-client/s':>15} {'ratio':>6} "
              f"{'srv us/op peer':>15} {'srv us/op bc':>13} {'client us/op peer':>18} {'client us/op bc':>16}")
        summary = []
        for s, wl in cases:
            p, b = res[f"{s}/{wl}/{peers[wl]}"], res[f"{s}/{wl}/bench-client"]
            med = lambda rs, k: statistics.median(r[k] for r in rs)
            row = {"server": s, "workload": wl, "peer": peers[wl], "peer_rate": med(p, "rate"),
                   "bench_client_rate": med(b, "rate"), "peer_server_us_per_op": med(p, "server_us_per_op"),
                   "bench_client_server_us_per_op": med(b, "server_us_per_op"),
                   "peer_client_us_per_op": med(p, "client_us_per_op"),
                   "bench_client_client_us_per_op": med(b, "client_us_per_op")}
            row["ratio"] = row["bench_client_rate"] / row["peer_rate"]
            row["round_ratios"] = [bb["rate"] / pp["rate"] for pp, bb in zip(p, b)]
            summary.append(row)
            print(f"{s:14} {wl:9} {peers[wl]:7} {row['peer_rate']:9.0f} {row['bench_client_rate']:15.0f} {row['ratio']:6.2f} "
                  f"{row['peer_server_us_per_op']:15.1f} {row['bench_client_server_us_per_op']:13.1f} "
                  f"{row['peer_client_us_per_op']:18.1f} {row['bench_client_client_us_per_op']:16.1f}")
        for row in summary:
            rr = row["round_ratios"]
            print(f"{row['server']} {row['workload']}: per-round ratios "
                  f"{', '.join(f'{x:.2f}' for x in rr)} (bench-client ahead in {sum(x >= 1 for x in rr)} of {len(rr)})")
        print("bench-client resumed share per case:", {k: v for k, v in RESUMED_SHARE.items()})
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"summary": summary, "runs": res, "rounds": a.rounds, "duration_s": a.duration,
                           "bench_client_resumed_share": RESUMED_SHARE}, f, indent=1)
    finally:
        for p, _, _ in procs.values():
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
