#!/usr/bin/env python3
"""Where each server's CPU per operation goes, and the floor that puts
under uringtls's ratio to nginx and to each same-library peer (peer-tokio,
peer-monoio: tuning/compare/peers). Same machine, same run, interleaved.

For each workload (by default keep-alive with wrk, full TLS 1.3 handshakes
with h2load, resumed ones with wrk, 1 MiB responses with wrk: the
independent clients of compare.py, at the same settings) and each server,
every round makes two runs:

- one without a profiler: CPU per operation from /proc, as compare.py;
- one under `perf record -e cpu-clock -C <server cpu>`: the server's
  samples split into classes (below). perf slows the server, so only the
  shares are used, applied to the first run's CPU per operation.

Classes: `kernel` (syscalls, io_uring, TCP; on loopback this includes the
client's receive path for what the server sends), `crypto` (the crypto
library: aws-lc for uringtls and the peers, OpenSSL's libcrypto for nginx),
`tls` (rustls / OpenSSL's libssl), `server` (uringtls's own code and its
Rust dependencies; the peers' runtime, hyper and the tokio-rustls /
monoio-rustls glue; nginx), `libc` (malloc, memcpy, ...), `other`.
"user space" below is everything but kernel and crypto: the part an engine
can change, side by side for every server.

floor = (uringtls's kernel + crypto per operation) / the other server's
total: the ratio uringtls would reach if everything else it does cost
nothing. When the floor is above a target, no engine change can meet that
target on this machine; the kernel or the crypto would have to cost less.

Needs perf (linux-perf) and what compare.py needs; installs nothing.
Usage: tuning/compare/floors.py [--rounds 3] [--duration 6] [--peers LIST] [--json FILE]
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
from servers import PEERS, make_workdir, missing_binary, missing_tools, release_binary, write_big  # noqa: E402

CLIENT = {"keepalive": "wrk", "full": "h2load", "resumed": "wrk", "bulk": "wrk"}
# uringtls's CPU per operation over the other server's (issue 18).
TARGET = {"nginx": {"keepalive": 0.65, "full": 0.4, "resumed": 0.35, "bulk": 0.6},
          "peer-tokio": {"keepalive": 0.85, "full": 0.9, "resumed": 0.65, "bulk": 0.7}}
CLASSES = ("kernel", "crypto", "tls", "server", "libc", "other")
# s2n-bignum's local labels (aws-lc's X25519, P-256 inversion, ...) carry
# no prefix; everything else of aws-lc's is in its archive's symbol table.
# The peers' adapters between their runtime and rustls (tokio_rustls::...,
# <tokio_rustls::server::TlsStream<..> as ..>::poll_write, ...): the
# peer's I/O code, as uringtls's own glue is; rustls's functions they
# instantiate (rustls::...<tokio_rustls::...>) stay `tls`.
GLUE = re.compile(r"^[<&_]*(tokio_rustls|monoio_rustls)::")
S2N_LABEL = re.compile(r"^L(curve25519|bignum|p256|p384|p521|edwards25519|sm2)")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6, help="seconds per run")
    ap.add_argument("--workloads", default="keepalive,full,resumed,bulk")
    ap.add_argument("--freq", type=int, default=2000, help="perf samples per second")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--uringtls", default=release_binary("uringtls"))
    ap.add_argument("--uringtls-args", default="")
    ap.add_argument("--peers", default=",".join(PEERS),
                    help="same-library peers to profile too: names (release builds) or paths; '' for none")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--summarize", metavar="JSON", help="print the tables of an earlier run's JSON and exit")
    a = ap.parse_args()
    # What compare.start_servers and compare.job read.
    a.nginx_bulk, a.nginx_suites, a.bench_client = "tuned", "as-uringtls", release_binary("bench-client")
    a.peer_paths = K.peer_paths(a.peers)
    return a


def aws_lc_symbols():
    """Every symbol name in the aws-lc archive the build linked (local ones
    too), or an empty set when it cannot be read."""
    names = set()
    release = os.path.dirname(release_binary("uringtls"))
    for ar in glob.glob(f"{release}/build/aws-lc-sys-*/out/*.a"):
        p = subprocess.run(["nm", ar], capture_output=True, text=True)
        for line in p.stdout.splitlines():
            parts = line.split()
            if len(parts) == 3:
                names.add(parts[2])
    return names


def classify(server, dso, sym, awslc, binary=None):
    if dso.startswith("[kernel"):
        return "kernel"
    if dso.startswith("libc.") or dso.startswith("ld-linux"):
        return "libc"
    if server == "nginx":
        return {"libcrypto": "crypto", "libssl": "tls", "nginx": "server"}.get(dso.split(".")[0], "other")
    if dso != (binary or server):  # the server's binary: uringtls, peer-tokio, ...
        return "other"
    if sym in awslc or sym.startswith("aws_lc") or "aws_lc_rs::" in sym or S2N_LABEL.match(sym):
        return "crypto"
    if GLUE.match(sym):
        return "server"
    if "rustls" in sym:
        return "tls"
    return "server"


def shares(data, comm, server, awslc, binary=None):
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
            by[classify(server, m.group(3), m.group(4).strip(), awslc, binary)] += int(m.group(1))
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
    """Medians over rounds per server and class, and for each server other
    than uringtls: uringtls's ratio to it, the floor (also per round: the
    servers ran in the same round), the user-space cost of both (all but
    kernel and crypto), and the budget the rest would have at the target.
    Prints the tables."""
    summary = {}
    print()
    print(f"{'workload':10} {'server':11} {'us/op':>7}  " + " ".join(f"{c:>7}" for c in CLASSES) + "  user space")
    for wl in wls:
        row = {}
        for name, rs in runs[wl].items():
            row[name] = {c: statistics.median(r["us_per_op"][c] for r in rs) for c in CLASSES}
            row[name]["total"] = statistics.median(r["cpu_us_per_op"] for r in rs)
            row[name]["user_space"] = statistics.median(
                r["cpu_us_per_op"] - r["us_per_op"]["kernel"] - r["us_per_op"]["crypto"] for r in rs)
            print(f"{wl:10} {name:11} {row[name]['total']:7.1f}  " + " ".join(
                f"{row[name][c]:7.1f}" for c in CLASSES) + f"  {row[name]['user_space']:10.2f}")
        u = row["uringtls"]
        row["vs"] = {}
        for other in (n for n in runs[wl] if n != "uringtls"):
            o = row[other]["total"]
            v = {"ratio": u["total"] / o, "floor": (u["kernel"] + u["crypto"]) / o,
                 "floor_rounds": [(b["us_per_op"]["kernel"] + b["us_per_op"]["crypto"]) / a["cpu_us_per_op"]
                                  for a, b in zip(runs[wl][other], runs[wl]["uringtls"])],
                 "user_space_ratio": u["user_space"] / row[other]["user_space"],
                 "rest_us": u["total"] - u["kernel"] - u["crypto"]}
            target = TARGET.get(other, {}).get(wl)
            if target is not None:
                # What everything but the kernel and the crypto may cost at the target.
                v["target"], v["budget_us"] = target, target * o - u["kernel"] - u["crypto"]
            row["vs"][other] = v
        summary[wl] = row
    print()
    for wl, row in summary.items():
        for other, v in row["vs"].items():
            per = "/".join(f"{f:.2f}" for f in v["floor_rounds"])
            line = (f"{wl:10} uringtls / {other:11} ratio {v['ratio']:.2f}  floor (kernel + crypto) {v['floor']:.2f} "
                    f"[per round {per}]  user space {row['uringtls']['user_space']:.2f} vs "
                    f"{row[other]['user_space']:.2f} us/op ({v['user_space_ratio']:.2f})")
            if "target" in v:
                line += f"  target {v['target']}: the rest may cost {v['budget_us']:.1f} us/op, costs {v['rest_us']:.1f}"
            print(line)
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
    missing += [missing_binary(a.uringtls, "uringtls")]
    missing += [missing_binary(path, PEERS.get(name, "peers")) for name, path in a.peer_paths.items()]
    missing = [m for m in missing if m]
    if missing:
        print("missing: " + ", ".join(missing), file=sys.stderr)
        sys.exit(2)
    awslc = aws_lc_symbols()
    if not awslc:
        print(f"note: aws-lc's archive not found under {os.path.dirname(release_binary('uringtls'))}/build; "
              "crypto is matched by name only",
              file=sys.stderr)
    tmp = make_workdir("uringtls-floors-")
    big = write_big(tmp)
    servers = K.start_servers(a, tmp, big, wls)
    names = K.server_names(a)
    runs = {w: {n: [] for n in names} for w in wls}
    # The thread that serves: uringtls's shard, a peer's main thread (its
    # runtime's; comm is the binary's name, cut at 15 bytes), nginx's worker.
    comm = {n: n[:15] for n in names}
    comm["uringtls"] = "shard-0"
    # perf names a binary's samples after its file (`--uringtls PATH` need
    # not be called `uringtls`).
    binary = {n: os.path.basename(p) for n, p in a.peer_paths.items()}
    binary["uringtls"] = os.path.basename(a.uringtls)
    try:
        for rnd in range(a.rounds):
            order = K.round_order(names, rnd)
            for wl in wls:
                for name in order:
                    s, fn, _ = K.job(a, servers, name, wl, CLIENT[wl], None)
                    plain = K.measure(s, fn)
                    data = f"{tmp}/{wl}-{name}-{rnd}.data"
                    prof = profiled(a, fn, data)
                    by, total = shares(data, comm[name], name, awslc, binary.get(name))
                    os.unlink(data)
                    r = {"ops": plain["ops"], "rate": plain["rate"], "cpu_us_per_op": plain["cpu_us_per_op"],
                         "sys_us_per_op": plain["sys_us_per_op"], "samples": total, "profiled_ops": prof["ops"],
                         "us_per_op": {c: by[c] / total * plain["cpu_us_per_op"] for c in CLASSES}, "load1": os.getloadavg()[0]}
                    runs[wl][name].append(r)
                    print(f"round {rnd + 1}/{a.rounds} {wl:9} {name:11} {r['rate']:9.0f} ops/s "
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
