"""Starting the servers the benchmarks compare: nginx (one worker),
uringtls (one shard) and the same-library peers (tuning/compare/peers:
peer-tokio, peer-monoio), pinned to one CPU, with one shared ECDSA P-256
certificate. Shared by tuning/compare/compare.py, ab.py, floors.py and
bench-client/bench/efficiency.py.

Also the /proc readings these scripts take: CPU seconds and RSS of a PID,
and where the workspace's release binaries are ($CARGO_TARGET_DIR, else
target/ at the root).
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The same-library peers: name -> cargo package that builds it.
PEERS = {"peer-tokio": "peers", "peer-monoio": "peers"}
BODY = "hello world\n"
BIG_SIZE = 1048576  # bytes of the bulk body (/big on nginx, --body-size on uringtls)

# One worker, pinned by taskset; resumption on or off; /big is a static file
# (see NGINX_BULK and docs/benchmarks.md for why this setup).
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
{suites}
    client_body_temp_path {dir}/tmp; proxy_temp_path {dir}/tmp; fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp; scgi_temp_path {dir}/tmp;
    server {{
        listen 127.0.0.1:{port} ssl reuseport backlog=4096{listen_opts};
{server_bulk}
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location = /big {{
            default_type text/plain;
            alias {big};
{bulk}
        }}
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
}}
"""

RESUME_ON = "    ssl_session_cache shared:SSL:64m;\n    ssl_session_tickets on;"
# h2load resumes TLS sessions whenever the server offers it, so full-
# handshake workloads run against servers that offer no resumption.
RESUME_OFF = "    ssl_session_cache off;\n    ssl_session_tickets off;"

# The suite uringtls prefers (it ignores the client's order): AES-128-GCM
# first. Without this, nginx follows the client's order, and wrk (OpenSSL's
# default order) puts AES-256-GCM first: ~15% more cipher work per byte.
SUITES_AS_URINGTLS = ("    ssl_prefer_server_ciphers on;\n"
                      "    ssl_conf_command Ciphersuites "
                      "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;\n"
                      "    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
                      "ECDHE-ECDSA-CHACHA20-POLY1305;")

# How /big is served: a static file through `alias` (a 1 MiB `return 200`
# body is not possible: nginx's config parser refuses tokens over 4 KiB).
# Under TLS without kTLS (this kernel has no `tls` module) nginx cannot
# sendfile: it preads the file into output_buffers and SSL_writes it,
# ssl_buffer_size (16k) bytes per record, one write() per record.
# `output_buffers 2 512k` cuts its syscalls per 1 MiB response from ~103
# to ~73 (2 preads instead of 32); ssl_buffer_size 4k costs ~1.6x the CPU,
# 64k changes nothing (OpenSSL still writes 16 KiB records one by one).
# Measured variants: docs/benchmarks.md, "nginx's 1 MiB setup".
# Each entry: (server-level lines, /big location lines).
NGINX_BULK = {
    "default": ("", ""),  # sendfile off, output_buffers 2 32k, ssl_buffer_size 16k
    "tuned": ("", "            output_buffers 2 512k;"),
}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=30.0, proc=None):
    """Waits until something accepts on 127.0.0.1:port; fails early if
    `proc` exits first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def cpu_seconds(pid):
    """utime + stime of `pid`, seconds."""
    return sum(cpu_split(pid))


def cpu_split(pid):
    """(utime, stime) of `pid`, seconds: user space, and the kernel on the
    process's behalf (syscalls, io_uring, and on loopback the softirq work
    of what it sends, the peer's receive path included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[11], fields[12] are utime, stime (14th, 15th of the full line)
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def make_workdir(prefix):
    """A temporary folder with cert.pem/key.pem (ECDSA P-256, CN and SAN
    localhost/127.0.0.1), readable by nginx's unprivileged worker."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    os.chmod(tmp, 0o755)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/cert.pem", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2"],
                   check=True, capture_output=True)
    os.chmod(f"{tmp}/key.pem", 0o600)
    return tmp


def write_big(tmp, size=BIG_SIZE):
    """The bulk body as a file, on tmpfs (/dev/shm) when there is one: the
    same bytes uringtls sends for --body-size (`hello world\\n` repeated,
    cut at `size`). Returns its path; the caller deletes it."""
    where = "/dev/shm" if os.path.isdir("/dev/shm") else tmp
    fd, path = tempfile.mkstemp(prefix="uringtls-big-", suffix=".txt", dir=where)
    with os.fdopen(fd, "w") as f:
        f.write((BODY * (size // len(BODY) + 1))[:size])
    os.chmod(path, 0o644)
    return path


class Server:
    """A started server: `pid` is the process whose CPU and RSS we read
    (nginx's worker, uringtls itself), `port` where it listens."""

    def __init__(self, name, proc, port, pid, log=None):
        self.name, self.proc, self.port, self.pid, self.log = name, proc, port, pid, log

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log:
            self.log.close()


def nginx_worker_pid(master_pid):
    deadline = time.time() + 10
    while time.time() < deadline:
        out = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.05)
    raise RuntimeError("nginx worker did not start")


def start_nginx(tmp, cpu, resumption=True, big=None, bulk="tuned", suites=True, deferred=False):
    """nginx, one worker, under `taskset -c cpu`; `big` is the file served
    at /big (default {tmp}/big.txt); `deferred` adds `deferred` to its
    `listen` (TCP_DEFER_ACCEPT, off in nginx by default)."""
    port = free_port()
    os.makedirs(f"{tmp}/tmp", exist_ok=True)
    conf = f"{tmp}/nginx-{port}.conf"
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(dir=tmp, port=port, body=BODY.replace("\n", "\\n"),
                                  cert=f"{tmp}/cert.pem", key=f"{tmp}/key.pem", big=big or f"{tmp}/big.txt",
                                  session=RESUME_ON if resumption else RESUME_OFF,
                                  suites=SUITES_AS_URINGTLS if suites else "",
                                  server_bulk=NGINX_BULK[bulk][0], bulk=NGINX_BULK[bulk][1],
                                  listen_opts=" deferred" if deferred else ""))
    err = f"{tmp}/nginx-{port}.stderr"
    with open(err, "w") as log:
        proc = subprocess.Popen(["taskset", "-c", str(cpu), "nginx", "-c", conf, "-p", tmp],
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_port(port, proc=proc)
    except RuntimeError as e:
        with open(err) as f:
            raise RuntimeError(f"nginx ({conf}): {e}: {f.read()[-500:]}") from None
    return Server("nginx", proc, port, nginx_worker_pid(proc.pid))


def start_uringtls(binary, tmp, cpu, body_size=None, extra=(), log_level="warn,uringtls::shard=info,rustls=error"):
    """uringtls, one shard on `cpu`, http service. Its stderr goes to a file
    (Server.log): an unread pipe would fill and stall the server."""
    port = free_port()
    cmd = ["taskset", "-c", str(cpu), binary, "--listen", f"127.0.0.1:{port}", "--shards", "1",
           "--cpus", str(cpu), "--cert", f"{tmp}/cert.pem", "--key", f"{tmp}/key.pem",
           "--log-level", log_level, "--max-conns", "100000"]
    if body_size:
        cmd += ["--body-size", str(body_size)]
    cmd += list(extra)
    log = open(f"{tmp}/uringtls-{port}.log", "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    wait_port(port, proc=proc)
    return Server("uringtls", proc, port, proc.pid, log)


def release_binary(name):
    """Where `cargo build --release` puts binary `name`: under
    $CARGO_TARGET_DIR when set (relative to the current directory, as cargo
    reads it), else under the workspace's target/."""
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    return os.path.join(os.path.abspath(target), "release", name)


def missing_binary(path, package):
    """`None` if `path` exists, else what to tell the user (path and the
    command that builds it)."""
    return None if os.path.exists(path) else f"{path} (cargo build --release -p {package})"


def start_peer(binary, tmp, cpu, body_size=None, resumption=True, extra=()):
    """A same-library peer (tuning/compare/peers) under `taskset -c cpu`,
    configured like uringtls: `--body-size` for the bulk body, and without
    `resumption` no tickets, no session cache, TLS 1.3 only (as uringtls
    with `--tls13-tickets 0 --tls12 false`). Named after its binary
    (peer-tokio, peer-monoio); its stderr goes to a file (Server.log)."""
    port = free_port()
    cmd = ["taskset", "-c", str(cpu), binary, "--listen", f"127.0.0.1:{port}",
           "--cert", f"{tmp}/cert.pem", "--key", f"{tmp}/key.pem"]
    if body_size:
        cmd += ["--body-size", str(body_size)]
    if not resumption:
        cmd.append("--no-resumption")
    cmd += list(extra)
    name = os.path.basename(binary)
    log = open(f"{tmp}/{name}-{port}.log", "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_port(port, proc=proc)
    except RuntimeError as e:
        log.close()
        with open(log.name) as f:
            raise RuntimeError(f"{name}: {e}: {f.read()[-500:]}") from None
    return Server(name, proc, port, proc.pid, log)


def missing_tools(tools):
    return [t for t in tools if not shutil.which(t)]


def parse_variant(v):
    """A server variant of ab.py and residence.py: `name=nginx[:ARGS]`,
    `name=peer-tokio[:ARGS]` / `name=peer-monoio[:ARGS]` (the release
    build), `name=peer:PATH[:ARGS]` (a peer binary elsewhere) or
    `name=PATH[:ARGS]` (a uringtls binary), ARGS space-separated. Returns
    (name, kind, path, args), kind one of nginx, peer, uringtls."""
    name, spec = v.split("=", 1)
    if spec.startswith("peer:"):
        path, _, args = spec[len("peer:"):].partition(":")
        return name, "peer", path, args.split()
    path, _, args = spec.partition(":")
    if path == "nginx":
        return name, "nginx", path, args.split()
    if path in PEERS:
        return name, "peer", release_binary(path), args.split()
    return name, "uringtls", path, args.split()
