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


def bench_client(bc, cpu, sub, url, duration, conns, extra=()):
    """bench-client `sub` (http, handshake, resume, bulk), one thread,
    certificate not verified (-k), JSON summary on stdout."""
    cmd = pin(cpu) + [bc, sub, url, "-k", "-t1", "-c", str(conns), "-d", f"{duration}s", "-q",
                      "--json", "-"] + list(extra)
    doc = json.loads(run_client(cmd))
    lat = doc.get("latency_us", {}).get("total", {})
    return {"ops": doc.get("ops", 0), "errors": doc.get("errors", {}).get("total", 0), "cmd": " ".join(cmd),
            "resumed_share": doc.get("handshakes", {}).get("resumed_share"),
            "cipher_suite": (doc.get("tls") or {}).get("cipher_suite"),
            "p50_us": lat.get("p50_us"), "p99_us": lat.get("p99_us"), "p99_9_us": lat.get("p99_9_us")}


def oha_open_loop(cpu, url, duration, rate, conns):
    """oha at a fixed `rate` (req/s over all connections), latency measured
    from the intended send time (--latency-correction), one runtime thread,
    certificate not verified (--insecure), JSON summary. Requests cut off by
    the end of the run (`aborted due to deadline`) are not errors."""
    cmd = pin(cpu) + ["oha", "--no-tui", "--insecure", "--worker-threads", "1", "-z", f"{duration}s",
                      "-c", str(conns), "-q", str(int(rate)), "--latency-correction", "--output-format", "json", url]
    doc = json.loads(run_client(cmd))
    pct = doc.get("latencyPercentiles", {})
    codes = doc.get("statusCodeDistribution", {})
    failures = {k: n for k, n in doc.get("errorDistribution", {}).items() if "deadline" not in k}
    return {"ops": sum(n for c, n in codes.items() if c.startswith("2")), "cmd": " ".join(cmd),
            "errors": sum(n for c, n in codes.items() if not c.startswith("2")) + sum(failures.values()),
            **{k: round(pct[p] * 1e6) if pct.get(p) is not None else None
               for k, p in (("p50_us", "p50"), ("p99_us", "p99"), ("p99_9_us", "p99.9"))}}
