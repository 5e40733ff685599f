#!/usr/bin/env python3
"""Server CPU per operation of one uringtls run (tenth session, low-load
comparison in docs/benchmarks.md).

    python3 docs/results/2026-12-03-s10-load.py BIN "SERVER FLAGS" CLIENT ARGS...

Starts BIN on CPU 1 (one shard, a fresh ECDSA P-256 certificate), runs the
client on CPU 0 with PORT in its arguments replaced by the server's port,
and prints operations (bench-client's JSON `ops`, h2load's succeeded
requests or wrk's requests) and the server's CPU per operation from
/proc/PID/stat. SRVENV="K=V ..." sets environment variables for the server
only (e.g. GLIBC_TUNABLES=glibc.malloc.hugetlb=1).
"""
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tuning", "compare"))
from servers import cpu_split, free_port, make_workdir, wait_port  # noqa: E402


def main():
    binary, flags, client = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
    tmp = make_workdir("uringtls-load-")
    port = free_port()
    env = dict(os.environ, **dict(kv.split("=", 1) for kv in os.environ.get("SRVENV", "").split()))
    p = subprocess.Popen(["taskset", "-c", "1", binary, "--listen", f"127.0.0.1:{port}", "--shards", "1",
                          "--cpus", "1", "--cert", f"{tmp}/cert.pem", "--key", f"{tmp}/key.pem",
                          "--log-level", "warn", "--max-conns", "100000"] + flags,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_port(port, proc=p)
        c0 = cpu_split(p.pid)
        cmd = [x.replace("PORT", str(port)) for x in client]
        out = subprocess.run(["taskset", "-c", "0"] + cmd, capture_output=True, text=True).stdout
        c1 = cpu_split(p.pid)
    finally:
        p.kill()
        p.wait()
    if os.path.basename(cmd[0]) == "bench-client":
        ops = json.loads(out)["ops"]
    elif os.path.basename(cmd[0]) == "h2load":
        ops = int(re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out).group(1))
    else:
        ops = int(re.search(r"(\d+) requests in", out).group(1))
    user, sys_ = (b - a for a, b in zip(c0, c1))
    print(f"ops {ops} cpu/op {(user + sys_) / ops * 1e6:.1f} us (user {user / ops * 1e6:.1f} sys {sys_ / ops * 1e6:.1f})")


if __name__ == "__main__":
    main()
