#!/usr/bin/env python3
"""Side-by-side comparison: uringtls vs nginx, one core each, same run.

Both servers get the same ECDSA P-256 certificate and the same response body,
run pinned to the server CPU (default 1) with one worker / one shard; the
clients run pinned to the client CPU (default 0). Workloads run interleaved
(A B A B ...) for --rounds rounds, and each figure is the median over rounds.

Server CPU per operation = (utime + stime of the server process from
/proc/PID/stat, delta over the run) / operations completed by the client.

Nothing is installed: missing tools are named and the script exits 2.
Usage: tuning/compare/compare.py [--rounds 3] [--duration 10] [--json FILE]
See docs/benchmarks.md.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY = "hello world\n"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[11], fields[12] are utime, stime (14th, 15th of the full line)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(self, name, cmd, port, pid_of=None, cwd=None):
        self.name, self.port = name, port
        # Logs go to a file: an unread pipe would fill and stall the server.
        self.log = open(f"{tempfile.gettempdir()}/compare-{name}-{port}.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log, cwd=cwd)
        wait_port(port)
        self.pid = pid_of() if pid_of else self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def nginx_worker_pid(master_pid):
    deadline = time.time() + 10
    while time.time() < deadline:
        out = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.05)
    raise RuntimeError("nginx worker did not start")


NGINX_CONF = """
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid {dir}/nginx-{port}.pid;
error_log {dir}/error.log error;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
{session}
    ssl_protocols TLSv1.2 TLSv1.3;
    client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;
    server {{
        listen 127.0.0.1:{port} ssl reuseport backlog=4096;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
        location = /big {{ default_type text/plain; alias {dir}/big.txt; }}
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
}}
"""


RESUME_ON = "    ssl_session_cache shared:SSL:64m;\n    ssl_session_tickets on;"
# h2load resumes TLS sessions whenever the server offers it, so the full-
# handshake workload runs against servers that offer no resumption.
RESUME_OFF = "    ssl_session_cache off;\n    ssl_session_tickets off;"


def start_nginx(tmp, cpu, resumption=True):
    port = free_port()
    os.makedirs(f"{tmp}/tmp", exist_ok=True)
    conf = f"{tmp}/nginx-{port}.conf"
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(dir=tmp, port=port, body=BODY.replace("\n", "\\n"),
                                  session=RESUME_ON if resumption else RESUME_OFF))
    cmd = ["taskset", "-c", str(cpu), "nginx", "-c", conf, "-p", tmp]
    holder = {}

    def pid_of():
        return nginx_worker_pid(holder["p"].proc.pid)

    s = Server.__new__(Server)
    s.name, s.port = "nginx", port
    s.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    holder["p"] = s
    wait_port(port)
    s.pid = pid_of()
    return s


def start_uringtls(binary, tmp, cpu, body_size=None, extra=()):
    port = free_port()
    cmd = ["taskset", "-c", str(cpu), binary, "--listen", f"127.0.0.1:{port}", "--shards", "1",
           "--cpus", str(cpu), "--cert", f"{tmp}/cert.pem", "--key", f"{tmp}/key.pem",
           "--log-level", "warn,uringtls::shard=info,rustls=error", "--max-conns", "100000"]
    if body_size:
        cmd += ["--body-size", str(body_size)]
    cmd += list(extra)
    return Server("uringtls", cmd, port)


def check_no_resumption(server):
    """The full-handshake server must not have resumed anything: its stop
    line counts resumed handshakes."""
    server.stop()
    server.log.flush()
    with open(server.log.name) as f:
        text = f.read()
    resumed = sum(int(m) for m in re.findall(r"resumed=(\d+)", text))
    if resumed:
        print(f"WARNING: the no-resumption uringtls resumed {resumed} handshakes", file=sys.stderr)


def run_client(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {p.stderr[-500:]}")
    return p.stdout


def wrk(client_cpu, url, duration, conns, headers=()):
    cmd = ["taskset", "-c", str(client_cpu), "wrk", "-t1", f"-c{conns}", f"-d{duration}s"]
    for h in headers:
        cmd += ["-H", h]
    out = run_client(cmd + [url])
    m = re.search(r"(\d+) requests in", out)
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"ops": int(m.group(1)) if m else 0,
            "errors": (int(errs.group(1)) if errs else 0) + (sum(map(int, sock.groups())) if sock else 0)}


def h2load_full(client_cpu, url, duration, conns):
    # One request per connection: each client connects, sends one request
    # with `Connection: close`, and h2load reconnects; no resumption.
    n = 0
    total_ops = 0
    errors = 0
    deadline = time.time() + duration
    while time.time() < deadline:
        count = 2000
        out = run_client(["taskset", "-c", str(client_cpu), "h2load", "--h1", "-n", str(count), "-c", str(conns),
                          "-H", "Connection: close", url])
        m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
        if m:
            total_ops += int(m.group(2))
            errors += int(m.group(3)) + int(m.group(4))
        n += 1
    return {"ops": total_ops, "errors": errors}


def bench_client_open_loop(bc, client_cpu, url, duration, rate, conns=64):
    """Open loop at `rate` req/s with bench-client (latency from the intended
    send time, coordinated omission corrected). Returns ops, errors and the
    total-latency percentiles in microseconds."""
    out = run_client(["taskset", "-c", str(client_cpu), bc, "http", url, "--insecure", "--rate", str(int(rate)),
                      "--connections", str(conns), "--duration", f"{duration}s", "--quiet", "--json", "-"])
    doc = json.loads(out)
    lat = doc.get("latency_us", {}).get("total", {})
    return {"ops": doc.get("ops", 0), "errors": doc.get("errors", {}).get("total", 0),
            "p50_us": lat.get("p50_us"), "p99_us": lat.get("p99_us"), "p99_9_us": lat.get("p99_9_us")}


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


def measure(server, fn):
    c0 = cpu_seconds(server.pid)
    t0 = time.time()
    r = fn()
    wall = time.time() - t0
    cpu = cpu_seconds(server.pid) - c0
    r["wall_s"] = wall
    r["cpu_s"] = cpu
    r["rate"] = r["ops"] / wall if wall else 0
    r["cpu_us_per_op"] = cpu * 1e6 / r["ops"] if r["ops"] else None
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per run")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--uringtls", default="target/release/uringtls")
    ap.add_argument("--workloads", default="keepalive,full,resumed,bulk,openloop,idle")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--bench-client", default="target/release/bench-client",
                    help="bench-client binary for the open-loop run")
    ap.add_argument("--idle-conns", type=int, default=10000, help="connections for the idle workload")
    ap.add_argument("--openloop-rate", type=float,
                    help="open-loop rate; default 50%% of nginx's median keep-alive rate in this run")
    ap.add_argument("--uringtls-args", default="", help="extra flags for uringtls, e.g. '--coop-taskrun false'")
    a = ap.parse_args()

    missing = [t for t in ("nginx", "wrk", "h2load", "taskset", "openssl", "pgrep") if not shutil.which(t)]
    if not os.path.exists(a.uringtls):
        missing.append(f"{a.uringtls} (cargo build --release --bin uringtls)")
    if "openloop" in a.workloads and not os.path.exists(a.bench_client):
        missing.append(f"{a.bench_client} (cargo build --release -p bench-client)")
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
        print("install: apt-get install nginx wrk nghttp2-client procps util-linux openssl", file=sys.stderr)
        sys.exit(2)

    tmp = tempfile.mkdtemp(prefix="uringtls-compare-")
    os.chmod(tmp, 0o755)  # nginx workers run as an unprivileged user
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/cert.pem", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2"],
                   check=True, capture_output=True)
    os.chmod(f"{tmp}/key.pem", 0o600)
    big = (BODY * (1048576 // len(BODY) + 1))[:1048576]
    with open(f"{tmp}/big.txt", "w") as f:
        f.write(big)
    os.chmod(f"{tmp}/big.txt", 0o644)

    workloads = a.workloads.split(",")
    servers = {"nginx": start_nginx(tmp, a.server_cpu),
               "uringtls": start_uringtls(a.uringtls, tmp, a.server_cpu, extra=a.uringtls_args.split())}
    if "full" in workloads:
        servers["nginx-noresume"] = start_nginx(tmp, a.server_cpu, resumption=False)
        servers["uringtls-noresume"] = start_uringtls(a.uringtls, tmp, a.server_cpu,
                                                      extra=["--tls13-tickets", "0", "--tls12", "false"]
                                                      + a.uringtls_args.split())
    bulk_u = start_uringtls(a.uringtls, tmp, a.server_cpu, body_size=1048576,
                            extra=a.uringtls_args.split()) if "bulk" in workloads else None
    cc, d = a.client_cpu, a.duration

    def runner(name, wl):
        s = servers[name]
        base = f"https://127.0.0.1:{s.port}"
        if wl == "keepalive":
            return s, lambda: wrk(cc, base + "/", d, 64)
        if wl == "resumed":
            return s, lambda: wrk(cc, base + "/", d, 16, headers=["Connection: close"])
        if wl == "full":
            s = servers[name + "-noresume"]
            base = f"https://127.0.0.1:{s.port}"
            return s, lambda: h2load_full(cc, base + "/", d, 16)
        if wl == "bulk":
            if name == "uringtls":
                s = bulk_u
                base = f"https://127.0.0.1:{s.port}"
            return s, lambda: wrk(cc, base + "/big", d, 8)
        if wl == "openloop":
            return s, lambda: bench_client_open_loop(a.bench_client, cc, base + "/", d, openloop_rate())
        raise ValueError(wl)

    def openloop_rate():
        if a.openloop_rate:
            return a.openloop_rate
        ka = [r["rate"] for r in results.get("keepalive", {}).get("nginx", [])]
        if not ka:
            raise RuntimeError("open loop needs --openloop-rate or the keepalive workload before it")
        return 0.5 * statistics.median(ka)

    results = {wl: {"nginx": [], "uringtls": []} for wl in workloads}
    try:
        for rnd in range(a.rounds):
            for wl in workloads:
                for name in ("nginx", "uringtls") if rnd % 2 == 0 else ("uringtls", "nginx"):
                    if wl == "idle":
                        # A fresh server each time: freed memory stays in the
                        # process's heap, so a reused server would look free.
                        fresh = (start_nginx(tmp, a.server_cpu) if name == "nginx"
                                 else start_uringtls(a.uringtls, tmp, a.server_cpu, extra=a.uringtls_args.split()))
                        try:
                            r = measure_idle(fresh, a.idle_conns)
                        finally:
                            fresh.stop()
                        results[wl][name].append(r)
                        print(f"round {rnd + 1}/{a.rounds} {wl:9} {name:8} {r['kib_per_conn']:8.2f} KiB RSS per "
                              f"connection ({a.idle_conns} connections)", flush=True)
                        continue
                    s, fn = runner(name, wl)
                    r = measure(s, fn)
                    results[wl][name].append(r)
                    if wl == "openloop":
                        print(f"round {rnd + 1}/{a.rounds} {wl:9} {name:8} p50 {r['p50_us']} us  p99 {r['p99_us']} us  "
                              f"p99.9 {r['p99_9_us']} us  errors {r['errors']}", flush=True)
                        continue
                    print(f"round {rnd + 1}/{a.rounds} {wl:9} {name:8} {r['rate']:10.0f} ops/s "
                          f"{(r['cpu_us_per_op'] or 0):8.1f} us CPU/op  errors {r['errors']}", flush=True)
        rss = {n: rss_kib(s.pid) for n, s in servers.items()}
        if "full" in workloads:
            check_no_resumption(servers["uringtls-noresume"])
    finally:
        for s in list(servers.values()) + ([bulk_u] if bulk_u else []):
            s.stop()

    def med(rs, k):
        vals = [r[k] for r in rs if r[k] is not None]
        return statistics.median(vals) if vals else None

    summary = {}
    print()
    print(f"{'workload':10} {'nginx ops/s':>12} {'uringtls ops/s':>15} {'nginx us/op':>12} {'uringtls us/op':>15} {'CPU ratio':>10}")
    for wl in workloads:
        n, u = results[wl]["nginx"], results[wl]["uringtls"]
        if wl == "idle":
            row = {"nginx_kib_per_conn": med(n, "kib_per_conn"), "uringtls_kib_per_conn": med(u, "kib_per_conn")}
            row["rss_ratio"] = (row["uringtls_kib_per_conn"] / row["nginx_kib_per_conn"]
                                if row["nginx_kib_per_conn"] else None)
            summary[wl] = row
            print(f"{wl:10} RSS per connection: nginx {row['nginx_kib_per_conn']:.2f} KiB, "
                  f"uringtls {row['uringtls_kib_per_conn']:.2f} KiB, ratio {row['rss_ratio'] or 0:.2f}")
            continue
        if wl == "openloop":
            row = {}
            for k in ("p50_us", "p99_us", "p99_9_us"):
                row[f"nginx_{k}"], row[f"uringtls_{k}"] = med(n, k), med(u, k)
                row[f"{k}_ratio"] = (row[f"uringtls_{k}"] / row[f"nginx_{k}"] if row[f"nginx_{k}"] else None)
            summary[wl] = row
            print(f"{wl:10} p50 {row['nginx_p50_us']}/{row['uringtls_p50_us']} us, "
                  f"p99 {row['nginx_p99_us']}/{row['uringtls_p99_us']} us (ratio {row['p99_us_ratio'] or 0:.2f}), "
                  f"p99.9 {row['nginx_p99_9_us']}/{row['uringtls_p99_9_us']} us (ratio {row['p99_9_us_ratio'] or 0:.2f})"
                  "  [nginx/uringtls]")
            continue
        row = {"nginx_rate": med(n, "rate"), "uringtls_rate": med(u, "rate"),
               "nginx_cpu_us_per_op": med(n, "cpu_us_per_op"), "uringtls_cpu_us_per_op": med(u, "cpu_us_per_op")}
        row["cpu_ratio"] = (row["uringtls_cpu_us_per_op"] / row["nginx_cpu_us_per_op"]
                            if row["nginx_cpu_us_per_op"] and row["uringtls_cpu_us_per_op"] else None)
        summary[wl] = row
        print(f"{wl:10} {row['nginx_rate']:12.0f} {row['uringtls_rate']:15.0f} {row['nginx_cpu_us_per_op'] or 0:12.1f} "
              f"{row['uringtls_cpu_us_per_op'] or 0:15.1f} {row['cpu_ratio'] or 0:10.2f}")
    machine = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "kernel": platform.release(), "cpus": os.cpu_count(),
               "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
               "rounds": a.rounds, "uringtls_args": a.uringtls_args, "duration_s": d, "server_cpu": a.server_cpu, "client_cpu": cc}
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine, "summary": summary, "runs": results, "rss_kib_end": rss}, f, indent=2)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
