#!/usr/bin/env python3
"""Where each server's CPU per operation goes, and the floor that puts
under the uringtls/nginx ratio. Same machine, same run, interleaved.

For each workload (by default keep-alive with wrk, full TLS 1.3 handshakes
with h2load, resumed ones with wrk: the independent clients of compare.py,
at the same settings) and each server, every round makes two runs:

- one without a profiler: CPU per operation from /proc, as compare.py;
- one under `perf record -e cpu-clock -C <server cpu>`: the server's
  samples split into classes (below). perf slows the server, so only the
  shares are used, applied to the first run's CPU per operation.

Classes: `kernel` (syscalls, io_uring, TCP; on loopback this includes the
peer's receive path for what the server sends), `crypto` (the crypto
library: aws-lc for uringtls, OpenSSL's libcrypto for nginx), `tls`
(rustls / OpenSSL's libssl), `server` (uringtls's own code and its Rust
dependencies / nginx), `libc` (malloc, memcpy, ...), `other`.

floor = (uringtls's kernel + crypto per operation) / nginx's total: the
ratio uringtls would reach if everything else it does cost nothing. When
the floor is above a target, no engine change can meet that target on this
machine; the kernel or the crypto would have to cost less.

Needs perf (linux-perf) and what compare.py needs; installs nothing.
Usage: tuning/compare/floors.py [--rounds 3] [--duration 6] [--json FILE]
See docs/benchmarks.md.
"""

import argparse
import glob
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare as K  # noqa: E402
from servers import make_workdir, missing_tools, write_big  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIENT = {"keepalive": "wrk", "full": "h2load", "resumed": "wrk"}
TARGET = {"keepalive": 0.5, "full": 0.4, "resumed": 0.4}
CLASSES = ("kernel", "crypto", "tls", "server", "libc", "other")
# s2n-bignum's local labels (aws-lc's X25519, P-256 inversion, ...) carry
# no prefix; everything else of aws-lc's is in its archive's symbol table.
S2N_LABEL = re.compile(r"^L(curve25519|bignum|p256|p384|p521|edwards25519|sm2)")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6, help="seconds per run")
    ap.add_argument("--workloads", default="keepalive,full,resumed")
    ap.add_argument("--freq", type=int, default=2000, help="perf samples per second")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--uringtls", default="target/release/uringtls")
    ap.add_argument("--uringtls-args", default="")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--summarize", metavar="JSON", help="print the tables of an earlier run's JSON and exit")
    a = ap.parse_args()
    # What compare.start_servers and compare.job read.
    a.nginx_bulk, a.nginx_suites, a.bench_client = "tuned", "as-uringtls", "target/release/bench-client"
    return a


def aws_lc_symbols():
    """Every symbol name in the aws-lc archive the build linked (local ones
    too), or an empty set when it cannot be read."""
    names = set()
    for ar in glob.glob(f"{ROOT}/target/release/build/aws-lc-sys-*/out/*.a"):
        p = subprocess.run(["nm", ar], capture_output=True, text=True)
        for line in p.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3:
                names.add(parts[2])
    return names


def classify(server, dso, sym, awslc):
    if dso.startswith("[kernel"):
        return "kernel"
    if dso.startswith("libc.") or dso.startswith("ld-linux"):
        return "libc"
    if server == "nginx":
        return {"libcrypto": "crypto", "libssl": "tls", "nginx": "server"}.get(dso.split(".")[0], "other")
    if dso != "uringtls":
        return "other"
    if sym in awslc or sym.startswith("aws_lc") or "aws_lc_rs::" in sym or S2N_LABEL.match(sym):
        return "crypto"
    if "rustls" in sym:
        return "tls"
    return "server"


def shares(data, comm, server, awslc):
    """Samples of `comm` in the perf file by class, and their total."""
    p = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "comm,dso,sym", "--stdio",
                        "-g", "none", "--percent-limit", "0", "-F", "sample,comm,dso,sym"],
                       capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"perf report -i {data}: {p.stderr.strip()[-300:]}")
    by = dict.fromkeys(CLASSES, 0)
    for line in p.stdout.splitlines():
        m = re.match(r"\s*(\d+)\s+(\S+)\s+(\S+)\s+\[[.k]\]\s+(.*)$", line)
        if m and m.group(2) == comm:
            by[classify(server, m.group(3), m.group(4).strip(), awslc)] += int(m.group(1))
    if not sum(by.values()):
        raise RuntimeError(f"{data}: no samples of {comm} (is the server on the profiled CPU?)")
    return by, sum(by.values())


def profiled(a, fn, data):
    """Runs the client call `fn` with perf recording the server's CPU."""
    perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(a.freq), "-C",
                             str(a.server_cpu), "-o", data], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        r = fn()
    finally:
        perf.send_signal(signal.SIGINT)
        if perf.wait(timeout=60) not in (0, -signal.SIGINT):
            raise RuntimeError(f"perf record exited with {perf.returncode} (root is needed for -C)")
    return r


def summarize(runs, wls):
    """Medians over rounds per server and class, the ratio, the floor (also
    per round: the two servers ran back to back), and the budget the rest
    would have at the target. Prints the tables."""
    summary = {}
    print()
    print(f"{'workload':10} {'server':9} {'us/op':>7}  " + " ".join(f"{c:>7}" for c in CLASSES))
    for wl in wls:
        row = {}
        for name in ("nginx", "uringtls"):
            rs = runs[wl][name]
            row[name] = {c: statistics.median(r["us_per_op"][c] for r in rs) for c in CLASSES}
            row[name]["total"] = statistics.median(r["cpu_us_per_op"] for r in rs)
            print(f"{wl:10} {name:9} {row[name]['total']:7.1f}  " + " ".join(
                f"{row[name][c]:7.1f}" for c in CLASSES))
        n, u = row["nginx"]["total"], row["uringtls"]
        row["ratio"] = u["total"] / n
        row["floor"] = (u["kernel"] + u["crypto"]) / n
        row["floor_rounds"] = [(b["us_per_op"]["kernel"] + b["us_per_op"]["crypto"]) / a["cpu_us_per_op"]
                               for a, b in zip(runs[wl]["nginx"], runs[wl]["uringtls"])]
        row["target"] = TARGET[wl]
        # What everything but the kernel and the crypto may cost at the target.
        row["budget_us"] = TARGET[wl] * n - u["kernel"] - u["crypto"]
        row["rest_us"] = u["total"] - u["kernel"] - u["crypto"]
        summary[wl] = row
    print()
    for wl, row in summary.items():
        per = "/".join(f"{f:.2f}" for f in row["floor_rounds"])
        print(f"{wl:10} ratio {row['ratio']:.2f}  floor (kernel + crypto) {row['floor']:.2f} [per round {per}]  "
              f"target {row['target']}: the rest may cost {row['budget_us']:.1f} us/op, costs {row['rest_us']:.1f}")
    return summary


def main():
    a = parse_args()
    if a.summarize:
        with open(a.summarize) as f:
            doc = json.load(f)
        summarize(doc["runs"], list(doc["runs"]))
        return
    wls = a.workloads.split(",")
    if any(w not in CLIENT for w in wls):
        sys.exit(f"workloads: {', '.join(CLIENT)}")
    missing = missing_tools(["nginx", "perf", "nm", "taskset"] + [CLIENT[w] for w in wls])
    if not os.path.exists(a.uringtls):
        missing.append(f"{a.uringtls} (cargo build --release -p uringtls)")
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
        sys.exit(2)
    awslc = aws_lc_symbols()
    if not awslc:
        print("note: aws-lc's archive not found under target/release/build; crypto is matched by name only",
              file=sys.stderr)
    tmp = make_workdir("uringtls-floors-")
    big = write_big(tmp)
    servers = K.start_servers(a, tmp, big, wls)
    runs = {w: {"nginx": [], "uringtls": []} for w in wls}
    comm = {"nginx": "nginx", "uringtls": "shard-0"}
    try:
        for rnd in range(a.rounds):
            order = ("nginx", "uringtls") if rnd % 2 == 0 else ("uringtls", "nginx")
            for wl in wls:
                for name in order:
                    s, fn, _ = K.job(a, servers, name, wl, CLIENT[wl], None)
                    plain = K.measure(s, fn)
                    data = f"{tmp}/{wl}-{name}-{rnd}.data"
                    prof = profiled(a, fn, data)
                    by, total = shares(data, comm[name], name, awslc)
                    os.unlink(data)
                    r = {"ops": plain["ops"], "rate": plain["rate"], "cpu_us_per_op": plain["cpu_us_per_op"],
                         "sys_us_per_op": plain["sys_us_per_op"], "samples": total, "profiled_ops": prof["ops"],
                         "us_per_op": {c: by[c] / total * plain["cpu_us_per_op"] for c in CLASSES}, "load1": os.getloadavg()[0]}
                    runs[wl][name].append(r)
                    print(f"round {rnd + 1}/{a.rounds} {wl:9} {name:8} {r['rate']:9.0f} ops/s "
                          f"{r['cpu_us_per_op']:7.1f} us/op  " + " ".join(
                              f"{c} {r['us_per_op'][c]:.1f}" for c in CLASSES)
                          + f"  ({total} samples)  load {r['load1']:.1f}", flush=True)
    finally:
        for s in servers.values():
            s.stop()
        os.unlink(big)
        shutil.rmtree(tmp, ignore_errors=True)

    summary = summarize(runs, wls)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "rounds": a.rounds, "duration_s": a.duration,
                       "summary": summary, "runs": runs}, f, indent=2)


if __name__ == "__main__":
    main()
