#!/usr/bin/env python3
"""Server residence time under an open loop, seen from the kernel, for
every server in the same interleaved run.

The client's tail (oha's p99, compare.py's openloop workload) mixes what
the server does with what the client and the machine do. This measures the
server's part alone, the same way for every server: the kernel's
`tcp:tcp_probe` tracepoint fires for each segment a socket receives, so a
request's arrival in the server's socket and the response's arrival in the
client's socket are two events of the same trace, whatever the server's
I/O model (io_uring, epoll, workers). A request's **residence time** is
the time between them: waking the server (and waiting for its CPU), its
turn of work, sealing, and the send through loopback to the client. Each
of oha's connections has one request in flight, so the events pair up per
connection.

    python3 tuning/compare/residence.py --rounds 5 --rate 49000 \\
        --variant nginx=nginx --variant tokio=peer-tokio \\
        --variant uringtls=target/release/uringtls

Variants as in ab.py (nginx, peer-tokio/peer-monoio, a uringtls binary
with extra flags after a colon). Servers on CPU 1, oha on CPU 0, `perf
record -e tcp:tcp_probe -a` (also on CPU 0) during the measured seconds
(root, or `perf_event_paranoid` ≤ -1). The trace costs CPU on both sides:
oha's own latencies are worse while it runs than in compare.py, and are
shown only beside the residence times of the same requests. Reported per server, medians of the rounds:
residence p50/p99/p99.9/max, oha's own p99/p99.9 of the same requests, and
server CPU per request; ratios of uringtls (the last variant) to each.
"""
import argparse, os, re, shutil, statistics, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as K  # noqa: E402
import clients as C  # noqa: E402
from servers import make_workdir, parse_variant, start_nginx, start_peer, start_uringtls  # noqa: E402

EVENT = re.compile(r"\s(\d+\.\d+): tcp:tcp_probe: .*?src=[^ ]+:(\d+) dest=[^ ]+:(\d+) .*?data_len=(\d+)")


def residence_us(trace, port):
    """Residence times (µs) of the requests in `trace` (perf script text)
    on server port `port`: from a data segment arriving in a server socket
    (the probe's src is the receiving socket: the server's port) to the
    next data segment arriving in the client's socket of that connection
    (dest is the server's port)."""
    pending, out = {}, []
    for line in trace.splitlines():
        m = EVENT.search(line)
        if not m or m.group(4) == "0":
            continue
        t, src, dst = float(m.group(1)), int(m.group(2)), int(m.group(3))
        if src == port:
            pending.setdefault(dst, t)
        elif dst == port:
            t0 = pending.pop(src, None)
            if t0 is not None:
                out.append((t - t0) * 1e6)
    out.sort()
    return out


def one(server, a, tmp):
    """One open-loop run against `server` with the trace recorded over the
    measured seconds (after oha's warm-up); returns the row."""
    url = f"https://127.0.0.1:{server.port}/"
    res = {}

    def load():
        res.update(K.measure(server, lambda: C.oha_open_loop(0, url, a.duration, a.rate, 64, K.OPENLOOP_WARMUP),
                             K.OPENLOOP_WARMUP))

    th = threading.Thread(target=load)
    th.start()
    time.sleep(K.OPENLOOP_WARMUP + 0.2)
    # The trace goes to its own directory: a file written beside the
    # certificates wakes uringtls's file watcher for every write.
    data = os.path.join(tmp, "tp.perf")
    subprocess.run(C.pin(0) + ["perf", "record", "-q", "-m", "16M", "-e", "tcp:tcp_probe", "-a", "-o", data, "--",
                    "sleep", str(max(1.0, a.duration - 0.5))],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    th.join()
    trace = subprocess.run(["perf", "script", "-i", data], capture_output=True, text=True).stdout
    os.unlink(data)
    r = residence_us(trace, server.port)
    q = {k: (C.percentile(r, p) if r else None) for k, p in (("p50", 0.5), ("p99", 0.99), ("p99_9", 0.999))}
    return {"n": len(r), "res_p50": q["p50"], "res_p99": q["p99"], "res_p99_9": q["p99_9"],
            "res_max": r[-1] if r else None, "oha_p99": res.get("p99_us"), "oha_p99_9": res.get("p99_9_us"),
            "cpu": res.get("cpu_us_per_op"), "errors": res.get("errors")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", action="append", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rate", type=float, required=True, help="requests/s, all 64 connections together")
    a = ap.parse_args()
    if not shutil.which("perf") or not shutil.which("oha"):
        sys.exit("needs perf (linux-perf) and oha (cargo install --locked oha)")
    variants = [parse_variant(v) for v in a.variant]
    tmp = make_workdir("uringtls-residence-")
    trace_dir = tempfile.mkdtemp(prefix="uringtls-residence-trace-")
    S = {}
    rows = {}
    try:
        for name, kind, path, args in variants:
            S[name] = (start_nginx(tmp, 1) if kind == "nginx" else
                       start_peer(path, tmp, 1, extra=args) if kind == "peer" else
                       start_uringtls(path, tmp, 1, extra=args))
        names = [v[0] for v in variants]
        for rnd in range(a.rounds):
            for n in K.round_order(names, rnd):
                row = one(S[n], a, trace_dir)
                rows.setdefault(n, []).append(row)
                print(f"r{rnd + 1} {n:10} n {row['n']:7d}  residence us p50 {row['res_p50']:7.1f} p99 "
                      f"{row['res_p99']:8.1f} p99.9 {row['res_p99_9']:8.1f} max {row['res_max']:8.1f}  "
                      f"oha p99 {row['oha_p99']} p99.9 {row['oha_p99_9']}  cpu {row['cpu'] or 0:.1f} us/req  "
                      f"err {row['errors']}", flush=True)
    finally:
        for s in S.values():
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(trace_dir, ignore_errors=True)
    keys = ("res_p50", "res_p99", "res_p99_9", "res_max", "oha_p99", "oha_p99_9", "cpu")
    med = {n: {k: statistics.median(r[k] for r in rows[n] if r[k] is not None) for k in keys} for n in rows}
    last = names[-1]
    print(f"\nmedians of {a.rounds} rounds at {a.rate:.0f} req/s (residence from the kernel's tcp_probe; "
          f"oha's latency from the intended send time), and {last} / each")
    print(f"{'server':10} " + " ".join(f"{k:>10}" for k in keys))
    for n in names:
        print(f"{n:10} " + " ".join(f"{med[n][k]:10.1f}" for k in keys))
        if n != last:
            print(f"{'  ratio':10} " + " ".join(f"{med[last][k] / med[n][k]:10.2f}" for k in keys))


if __name__ == "__main__":
    main()
