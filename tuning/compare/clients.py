"""The load clients compare.py drives, one function per client and workload,
each pinned with `taskset -c CPU`. Every function returns a dict with at
least `ops` (operations completed) and `errors`, plus `cmd` (what ran);
open-loop clients add `p50_us`, `p99_us`, `p99_9_us`; bench-client adds
`resumed_share` and the negotiated `cipher_suite`.

Independent clients: wrk and h2load (Debian), oha (crates.io). bench-client
is ours: each workload runs with both, so a client artefact cannot flatter
either server.
"""

import json
import math
import re
import subprocess
import time


def run_client(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-500:]}")
    return p.stdout


def pin(cpu):
    return ["taskset", "-c", str(cpu)]


def wrk(cpu, url, duration, conns, headers=()):
    cmd = pin(cpu) + ["wrk", "-t1", f"-c{conns}", f"-d{duration}s"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    out = run_client(cmd)
    m = re.search(r"(\d+) requests in", out)
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"ops": int(m.group(1)) if m else 0, "cmd": " ".join(cmd),
            "errors": (int(errs.group(1)) if errs else 0) + (sum(map(int, sock.groups())) if sock else 0)}


def h2load_full(cpu, url, duration, conns):
    """One request per connection (`Connection: close`), repeated in batches
    of 2000 until `duration` has passed: h2load's timed mode (-D) hangs at
    the end with `Connection: close` (1.52). h2load resumes whenever the
    server offers it, so point it at a server without resumption."""
    cmd = pin(cpu) + ["h2load", "--h1", "-n", "2000", "-c", str(conns), "-H", "Connection: close", url]
    ops = errors = 0
    deadline = time.time() + duration
    while time.time() < deadline:
        out = run_client(cmd)
        m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
        if m:
            ops += int(m.group(2))
            errors += int(m.group(3)) + int(m.group(4))
    return {"ops": ops, "errors": errors, "cmd": " ".join(cmd) + " (repeated)"}


def bench_client(bc, cpu, sub, url, duration, conns, extra=(), warmup=0):
    """bench-client `sub` (http, handshake, resume, bulk), one thread,
    certificate not verified (-k), JSON summary on stdout; with `warmup`,
    that many seconds run first and are not counted (`-w`)."""
    cmd = pin(cpu) + [bc, sub, url, "-k", "-t1", "-c", str(conns), "-d", f"{duration}s", "-q",
                      "--json", "-"] + (["-w", f"{warmup}s"] if warmup else []) + list(extra)
    doc = json.loads(run_client(cmd))
    lat = doc.get("latency_us", {}).get("total", {})
    return {"ops": doc.get("ops", 0), "errors": doc.get("errors", {}).get("total", 0), "cmd": " ".join(cmd),
            "resumed_share": doc.get("handshakes", {}).get("resumed_share"),
            "cipher_suite": (doc.get("tls") or {}).get("cipher_suite"),
            "p50_us": lat.get("p50_us"), "p99_us": lat.get("p99_us"), "p99_9_us": lat.get("p99_9_us"),
            "warmup_s": warmup, "measured_s": doc.get("load", {}).get("duration_s") if warmup else None}


def oha_open_loop(cpu, url, duration, rate, conns, warmup=0):
    """oha at a fixed `rate` (req/s over all connections) for `warmup` +
    `duration` seconds, latency measured from the intended send time
    (--latency-correction), one runtime thread, certificate not verified
    (--insecure). One CSV row per completed request; only requests scheduled
    after the warm-up count. Without it the tails measure the start: while
    oha opens its connections, the requests scheduled meanwhile wait, and
    at ~40k req/s the first ~0.25 s set p99 and p99.9 (tens of ms, against
    ~2 ms after). Requests cut off by the end of the run are not errors;
    requests that never completed show as `missing` (beyond one per
    connection in flight at the end)."""
    cmd = pin(cpu) + ["oha", "--no-tui", "--insecure", "--worker-threads", "1", "-z", f"{warmup + duration}s",
                      "-c", str(conns), "-q", str(int(rate)), "--latency-correction", "--output-format", "csv", url]
    out = run_client(cmd)
    lat, errors = [], 0
    lines = out.splitlines()
    head = lines[0].split(",") if lines else []
    try:
        i_start, i_dur, i_status = head.index("request-start"), head.index("request-duration"), head.index("status")
    except ValueError:
        raise RuntimeError(f"{' '.join(cmd)}: unexpected CSV header {lines[:1]}") from None
    for line in lines[1:]:
        f = line.split(",")
        if float(f[i_start]) < warmup:
            continue
        if f[i_status].startswith("2"):
            lat.append(float(f[i_dur]))
        else:
            errors += 1
    lat.sort()
    missing = max(0, int(rate * duration) - len(lat) - errors - conns)
    return {"ops": len(lat), "errors": errors + missing, "missing": missing, "warmup_s": warmup,
            "measured_s": duration,
            "cmd": " ".join(cmd), **{k: round(percentile(lat, q) * 1e6) if lat else None
                                     for k, q in (("p50_us", 0.5), ("p99_us", 0.99), ("p99_9_us", 0.999))}}


def percentile(sorted_vals, q):
    """Nearest-rank percentile of a sorted list."""
    return sorted_vals[min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))]
