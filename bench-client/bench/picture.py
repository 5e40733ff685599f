#!/usr/bin/env python3
"""The latency picture of docs/bench-client.md ("Pictures") and the README:
uringtls and nginx under the same open-loop load, one percentile curve each,
drawn by `bench-client plot`.

The method of docs/benchmarks.md: the server pinned to CPU 1 (uringtls one
shard; nginx one worker, same ECDSA P-256 certificate, same response, from
tuning/compare/servers.py), bench-client pinned to CPU 0 with one thread;
the servers take turns (nginx, uringtls, then uringtls, nginx in the next
round). Each run writes NAME-rI.hlog and NAME-rI.json into --dir; the
picture draws every run, labelled.

Usage (a quiet machine; release builds):
  cargo build --release -p uringtls -p bench-client
  python3 bench-client/bench/picture.py --rate 30000 --duration 30 \\
      -o docs/results/uringtls-vs-nginx-latency.svg
Needs: nginx, openssl, taskset.
"""
import argparse, os, shutil, subprocess, sys, tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tuning", "compare"))
import servers  # noqa: E402  (shared with tuning/compare/compare.py)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=30000, help="requests/s, open loop, the same for both servers")
    ap.add_argument("--duration", type=int, default=30, help="measured seconds per run")
    ap.add_argument("--warmup", type=int, default=5, help="seconds of load before measuring")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=1, help="runs per server, alternating")
    ap.add_argument("--dir", help="where the .hlog/.json files go [default: a new temporary folder, kept]")
    ap.add_argument("-o", "--output", required=True, help="the SVG to write")
    ap.add_argument("--html", help="also write bench-client plot's HTML page here")
    ap.add_argument("--uringtls", default=servers.release_binary("uringtls"))
    ap.add_argument("--bench-client", default=servers.release_binary("bench-client"))
    a = ap.parse_args()
    for path, pkg in [(a.uringtls, "uringtls"), (a.bench_client, "bench-client")]:
        missing = servers.missing_binary(path, pkg)
        if missing:
            sys.exit(f"picture.py: missing {missing}")
    out_dir = a.dir or tempfile.mkdtemp(prefix="bench-picture-")
    os.makedirs(out_dir, exist_ok=True)
    tmp = servers.make_workdir("bench-picture-certs-")
    starts = {
        "nginx": lambda: servers.start_nginx(tmp, 1),
        "uringtls": lambda: servers.start_uringtls(a.uringtls, tmp, 1, log_level="error"),
    }
    files, labels = [], []
    try:
        run_all(a, starts, out_dir, files, labels)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    plot = [a.bench_client, "plot", *files, "-o", a.output,
            "--title", f"HTTPS keep-alive, open loop at {a.rate:g} req/s, server on one core"]
    for label in labels:
        plot += ["--label", label]
    if a.html:
        plot += ["--html", a.html]
    print(" ".join(plot), flush=True)
    subprocess.run(plot, check=True)
    print(f"runs in {out_dir}; picture {a.output}")


def run_all(a, starts, out_dir, files, labels):
    """Each round: both servers in turn, one bench-client run each."""
    for r in range(1, a.rounds + 1):
        order = ["nginx", "uringtls"] if r % 2 else ["uringtls", "nginx"]
        for name in order:
            stem = os.path.join(out_dir, f"{name}-r{r}")
            server = starts[name]()
            try:
                cmd = ["taskset", "-c", "0", a.bench_client, "http", f"https://127.0.0.1:{server.port}/",
                       "-k", "-q", "--cpus", "0", "--threads", "1", "-c", str(a.connections),
                       "--rate", str(a.rate), "-d", f"{a.duration}s", "-w", f"{a.warmup}s",
                       "--hlog", stem + ".hlog", "--json", stem + ".json"]
                print(" ".join(cmd), flush=True)
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=a.duration + a.warmup + 120)
            finally:
                server.stop()
            files.append(stem + ".hlog")
            labels.append(name if a.rounds == 1 else f"{name} (round {r})")


if __name__ == "__main__":
    main()
