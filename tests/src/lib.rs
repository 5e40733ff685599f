//! Test harness for uringtls and bench-client.
//!
//! - [`start_engine`]: runs the engine binary on `127.0.0.1:0` and waits for
//!   its readiness line (no sleeps); the process is killed on drop.
//! - [`test_certs`]: a CA and a leaf for `localhost`/`127.0.0.1`, as files.
//! - [`client_config`] / [`connect`]: a blocking rustls client.
//!
//! Waits are bounded (`WAIT`) so a broken engine fails a test instead of
//! hanging it.

#![forbid(unsafe_code)]

pub mod seccomp_profile;

use bench_client::tls::insecure::AcceptAnyCert;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bound for any wait on the engine (start, stop, a reply).
pub const WAIT: Duration = Duration::from_secs(30);

/// Path of the engine binary built for tests (cargo builds the test crate's
/// binaries before its integration tests, next to the `deps/` folder the
/// test executable runs from).
pub fn engine_bin() -> PathBuf {
    test_bin("uringtls-under-test")
}

/// Path of a binary of this test crate, e.g. `bench-client-under-test`.
pub fn test_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built (run the tests through cargo)",
        p.display()
    );
    p
}

/// A running engine process.
pub struct EngineProc {
    child: Child,
    addr: SocketAddr,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

/// Starts the engine with `args` (plus `--listen 127.0.0.1:0` unless a
/// `--listen` is given) and waits until it prints its readiness line.
///
/// File watching is off (`--watch-files false`) unless the test passes
/// `--watch-files`: tests that rewrite files and send SIGHUP count on
/// reload N being their Nth signal, which a watcher-triggered reload in
/// between would shift.
///
/// Panics with the engine's output if it exits or does not get ready.
pub fn start_engine(args: &[&str]) -> EngineProc {
    start_engine_with(args, |_| {})
}

/// Like [`start_engine`], with a hook to adjust the command (env, pre-exec).
pub fn start_engine_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> EngineProc {
    launch(Command::new(engine_bin()), args, adjust)
}

/// Like [`start_engine`], run by `wrapper` (`wrapper ENGINE ARGS...`), e.g.
/// `no-io-uring`, which execs the engine under a seccomp policy.
pub fn start_engine_under(wrapper: &Path, args: &[&str]) -> EngineProc {
    let mut cmd = Command::new(wrapper);
    cmd.arg(engine_bin());
    launch(cmd, args, |_| {})
}

/// The I/O backend the harness asks for when a test names none
/// (`URINGTLS_TEST_IO_BACKEND`, e.g. `epoll`: the suite on another backend).
fn test_io_backend() -> Option<String> {
    std::env::var("URINGTLS_TEST_IO_BACKEND")
        .ok()
        .filter(|b| !b.is_empty())
}

fn launch(mut cmd: Command, args: &[&str], adjust: impl FnOnce(&mut Command)) -> EngineProc {
    if let Some(b) = test_io_backend() {
        if !args
            .iter()
            .any(|a| *a == "--io-backend" || a.starts_with("--io-backend="))
        {
            cmd.args(["--io-backend", &b]);
        }
    }
    if !args
        .iter()
        .any(|a| *a == "--listen" || a.starts_with("--listen="))
    {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    if !args.iter().any(|a| a.starts_with("--watch-files")) {
        cmd.args(["--watch-files", "false"]);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    adjust(&mut cmd);
    let mut child = cmd.spawn().expect("spawn engine");
    let stdout_pipe = child.stdout.take().expect("stdout");
    let stderr_pipe = child.stderr.take().expect("stderr");
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = collect(stderr_pipe);
    let (tx, rx) = mpsc::channel();
    {
        let stdout = stdout.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout_pipe).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = ready_addr(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                if let Ok(mut s) = stdout.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
    }
    match rx.recv_timeout(WAIT) {
        Ok(addr) => EngineProc {
            child,
            addr,
            stdout,
            stderr,
        },
        Err(_) => {
            let _ = child.kill();
            let status = child.wait().ok();
            let err = stderr.lock().map(|s| s.clone()).unwrap_or_default();
            panic!("engine did not get ready ({status:?}); stderr:\n{err}");
        }
    }
}

fn collect(pipe: ChildStderr) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let o = out.clone();
    std::thread::spawn(move || {
        let mut r = BufReader::new(pipe);
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = o.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    out
}

/// Parses `uringtls: serving X at https://ADDR/ ...`.
fn ready_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("uringtls: serving ")?;
    let url = rest.split("https://").nth(1)?;
    url.split('/').next()?.parse().ok()
}

impl EngineProc {
    /// The address the engine listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (e.g. `libc::SIGTERM`, `libc::SIGHUP`).
    pub fn signal(&self, sig: i32) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit, up to [`WAIT`].
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "engine did not exit within {WAIT:?}"
            );
            // Polling the child's exit; there is no portable exit event to wait on.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait for exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait()
    }

    /// Everything the engine printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Everything the engine logged on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for EngineProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Every test also checks that the sandbox (on by default) refused
        // no system call the engine made: a call missing from the seccomp
        // allow-list shows here, in the test that made it, not in a user's
        // log.
        if !std::thread::panicking() {
            let err = self.stderr();
            assert!(
                !err.contains("seccomp denied a system call"),
                "the sandbox refused a system call the engine made:\n{err}"
            );
        }
    }
}

/// Runs the engine expecting it to fail at start; returns (exit code, stderr).
pub fn engine_fails(args: &[&str]) -> (Option<i32>, String) {
    fails(Command::new(engine_bin()), args)
}

/// [`engine_fails`], run by `wrapper` (see [`start_engine_under`]).
pub fn engine_fails_under(wrapper: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(wrapper);
    cmd.arg(engine_bin());
    fails(cmd, args)
}

fn fails(mut cmd: Command, args: &[&str]) -> (Option<i32>, String) {
    let child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run engine");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    // Bounded: an engine that starts after all must not hang the test.
    let out = match rx.recv_timeout(WAIT) {
        Ok(out) => out.expect("wait for engine"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("engine did not exit within {WAIT:?} (it should have refused to start)");
        }
    };
    assert!(
        !out.status.success(),
        "engine unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A CA and a leaf certificate for `localhost`, `127.0.0.1` and `::1`, as
/// PEM files in a temporary directory (removed on drop).
pub struct TestCerts {
    /// The directory holding the files.
    pub dir: tempfile::TempDir,
    /// CA certificate (PEM).
    pub ca: PathBuf,
    /// Leaf chain (PEM).
    pub cert: PathBuf,
    /// Leaf key (PEM, mode 0600).
    pub key: PathBuf,
    /// CA certificate (DER).
    pub ca_der: CertificateDer<'static>,
    /// The CA itself, to issue more certificates in a test.
    pub issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// Makes a fresh CA + leaf (ECDSA P-256).
pub fn test_certs() -> TestCerts {
    test_certs_for(&["localhost", "127.0.0.1", "::1"])
}

/// Makes a fresh CA + leaf for the given names.
pub fn test_certs_for(names: &[&str]) -> TestCerts {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "uringtls test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    let ca_pem = ca_cert.pem();
    let ca_der = ca_cert.der().clone();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let leaf = rcgen::CertificateParams::new(names)
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    let ca = write(dir.path(), "ca.pem", &ca_pem);
    let cert = write(dir.path(), "cert.pem", &leaf.pem());
    let key = write(dir.path(), "key.pem", &leaf_key.serialize_pem());
    set_mode(&key, 0o600);
    TestCerts {
        dir,
        ca,
        cert,
        key,
        ca_der,
        issuer,
    }
}

/// Writes `text` to `dir/name`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}

/// chmod.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A rustls client config trusting `ca` (TLS 1.2 and 1.3 unless `versions`).
pub fn client_config(
    ca: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("add root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

/// A blocking TLS connection to the engine.
pub type Client = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects and completes the handshake with server name `localhost`.
pub fn connect(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> std::io::Result<Client> {
    tls_over(TcpStream::connect(addr)?, cfg, "localhost")
}

/// Reads one HTTP/1.1 response with a Content-Length body; returns
/// (status line, headers, body).
pub fn read_response<R: Read>(r: &mut R) -> std::io::Result<(String, String, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if r.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let (status, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    let len = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok((status.to_string(), headers.to_string(), body))
}

/// True when running in CI (`CI=true`): missing tools fail instead of skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether `tool` is on PATH; outside CI a missing tool prints why the test
/// is skipped, inside CI it fails the test.
/// Asserts that Prometheus's `promtool check metrics` accepts `text` (a
/// `/metrics` page) with nothing to say; the caller checked the tool with
/// [`require_tool`].
pub fn promtool_check(text: &str) {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    p.stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = p.wait_with_output().expect("promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics:\n{said}\n{text}"
    );
}

pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(!in_ci(), "{tool} is required in CI (install it in .ci/run)");
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

// ---------------------------------------------------------------------------
// TLS termination helpers (SNI, mTLS, proxy upstreams, reload).

/// A leaf certificate issued by a [`TestCerts`] CA, written to its directory.
pub struct Leaf {
    /// Chain (PEM).
    pub cert: PathBuf,
    /// Key (PEM, mode 0600).
    pub key: PathBuf,
    /// The leaf (DER), to compare with what a server presented.
    pub der: CertificateDer<'static>,
    /// The key (DER), for a client certificate.
    pub key_der: rustls::pki_types::PrivateKeyDer<'static>,
}

impl TestCerts {
    /// Issues a leaf for `names` (ECDSA P-256, or RSA 2048 with `rsa`) with
    /// common name `cn`, written as `stem.pem` / `stem.key`.
    pub fn issue(&self, names: &[&str], cn: &str, stem: &str, rsa: bool) -> Leaf {
        let key = if rsa {
            rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rsa key")
        } else {
            rcgen::KeyPair::generate().expect("key")
        };
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        let cert_path = write(self.dir.path(), &format!("{stem}.pem"), &cert.pem());
        let key_path = write(
            self.dir.path(),
            &format!("{stem}.key"),
            &key.serialize_pem(),
        );
        set_mode(&key_path, 0o600);
        let key_der =
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key der");
        Leaf {
            cert: cert_path,
            key: key_path,
            der: cert.der().clone(),
            key_der,
        }
    }
}

/// A client config that accepts any server certificate (bench-client's
/// `--insecure` verifier): for tests that look at *which* certificate was
/// served rather than whether it verifies.
pub fn any_cert_client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert::new(provider)))
        .with_no_client_auth();
    Arc::new(cfg)
}

/// Connects with SNI `name` (a DNS name, or an IP address: then no SNI).
pub fn connect_to(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    name: &str,
) -> std::io::Result<Client> {
    tls_over(TcpStream::connect(addr)?, cfg, name)
}

/// Completes a TLS handshake for `name` over an already connected socket
/// (for tests that need the TCP step and the handshake apart).
pub fn tls_over(
    sock: TcpStream,
    cfg: &Arc<rustls::ClientConfig>,
    name: &str,
) -> std::io::Result<Client> {
    sock.set_read_timeout(Some(WAIT))?;
    sock.set_write_timeout(Some(WAIT))?;
    let name = ServerName::try_from(name.to_string()).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// The leaf certificate a connection's server presented.
pub fn served_leaf(c: &Client) -> CertificateDer<'static> {
    c.conn
        .peer_certificates()
        .and_then(|p| p.first())
        .expect("server certificate")
        .clone()
        .into_owned()
}

impl EngineProc {
    /// Waits (up to [`WAIT`]) until stdout contains `needle`; returns stdout.
    /// Polls the collected output every few milliseconds: the engine prints
    /// one line per event (ready, reload applied/refused), and this is the
    /// event wait.
    pub fn wait_for_stdout(&self, needle: &str) -> String {
        eventually(&format!("engine printing `{needle}`"), || {
            let out = self.stdout();
            out.contains(needle).then_some(out)
        })
    }

    /// Waits (up to [`WAIT`]) until stderr (the log, written by a background
    /// thread, so it may lag the event) contains `needle`; returns stderr.
    pub fn wait_for_stderr(&self, needle: &str) -> String {
        eventually(&format!("engine logging `{needle}`"), || {
            let err = self.stderr();
            err.contains(needle).then_some(err)
        })
    }

    /// Sends SIGHUP and waits for the engine to report reload number `n`
    /// (1 for the first); returns whether it was applied.
    pub fn reload(&self, n: u64) -> bool {
        self.signal(libc::SIGHUP);
        let out = self.wait_for_stdout(&format!("uringtls: reload {n} "));
        out.contains(&format!("uringtls: reload {n} applied"))
    }
}

/// A plain TCP upstream on `127.0.0.1:0` for the proxy service: echoes
/// every byte, and half-closes its side once the client's side is closed.
/// With `proxy_header`, it first reads a PROXY v1/v2 header and sends its
/// bytes on `headers`.
pub struct EchoUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Raw PROXY headers received, one per connection (when enabled).
    pub headers: mpsc::Receiver<Vec<u8>>,
}

/// Starts an [`EchoUpstream`] (its thread ends with the test process).
pub fn echo_upstream(proxy_header: bool) -> EchoUpstream {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = l.local_addr().expect("addr");
    let (tx, headers) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || echo_conn(s, proxy_header, tx));
        }
    });
    EchoUpstream { addr, headers }
}

fn echo_conn(mut s: TcpStream, proxy_header: bool, tx: mpsc::Sender<Vec<u8>>) {
    use std::io::Write;
    let mut pending = Vec::new();
    if proxy_header {
        match read_proxy_header(&mut s) {
            Some((h, rest)) => {
                let _ = tx.send(h);
                pending = rest;
            }
            None => return,
        }
    }
    if s.write_all(&pending).is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                let _ = s.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Reads a PROXY v1 (`PROXY ...\r\n`) or v2 header; returns it and any
/// bytes read past it.
pub fn read_proxy_header(s: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        if got.starts_with(b"PROXY ") {
            if let Some(end) = got.windows(2).position(|w| w == b"\r\n") {
                let rest = got.split_off(end + 2);
                return Some((got, rest));
            }
        } else if got.len() >= 16 {
            let len = 16 + u16::from_be_bytes([got[14], got[15]]) as usize;
            if got.len() >= len {
                let rest = got.split_off(len);
                return Some((got, rest));
            }
        }
    }
}

/// A TCP port on 127.0.0.1 where nothing listens (connections are refused).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// Starts the engine serving `certs`' leaf, with `extra` flags.
pub fn start_engine_with_certs(certs: &TestCerts, extra: &[&str]) -> EngineProc {
    let (cert, key) = (
        certs.cert.to_str().expect("utf8"),
        certs.key.to_str().expect("utf8"),
    );
    let mut args = vec!["--cert", cert, "--key", key];
    args.extend_from_slice(extra);
    start_engine(&args)
}

/// Polls `f` until it returns `Some`, up to [`WAIT`]; for conditions that
/// have no event to wait on (a log line written by a background thread, a
/// counter). Panics naming `what` when the time is up.
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Connects once (a full handshake) and reconnects 20 times to a 2-shard
/// engine `e` serving `certs`: every reconnect must resume (TLS 1.3 or 1.2
/// tickets, or TLS 1.2 session IDs without `tickets`), and both shards must
/// have resumed sessions (the chance that 21 connections all land on one
/// shard by the kernel's hash is about 1 in a million). Stops `e`.
pub fn assert_resumes_across_two_shards(
    e: EngineProc,
    certs: &TestCerts,
    versions: &[&'static rustls::SupportedProtocolVersion],
    tickets: bool,
) {
    let mut cfg = (*client_config(&certs.ca_der, versions)).clone();
    cfg.resumption = if tickets {
        rustls::client::Resumption::in_memory_sessions(64)
    } else {
        rustls::client::Resumption::in_memory_sessions(64)
            .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly)
    };
    cfg.enable_sni = true;
    let cfg = Arc::new(cfg);
    // First connection: full handshake, saves the session.
    let mut e = e;
    let mut first = connect(e.addr(), &cfg).expect("first");
    exchange(&mut first);
    assert_eq!(
        first.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    let mut resumed = 0;
    for _ in 0..20 {
        let mut c = connect(e.addr(), &cfg).expect("reconnect");
        // TLS 1.3 tickets arrive after the handshake; read a response so the
        // next ticket is stored before reconnecting.
        exchange(&mut c);
        if c.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            resumed += 1;
        }
    }
    assert_eq!(resumed, 20, "resumed {resumed}/20");
    assert!(e.stop().success());
    let log = e.stderr();
    for shard in 0..2 {
        let line = log
            .lines()
            .find(|l| l.contains("shard stopped") && l.contains(&format!("shard={shard} ")))
            .unwrap_or_else(|| panic!("no stop line for shard {shard}:\n{log}"));
        assert!(
            !line.contains(" resumed=0 "),
            "shard {shard} resumed nothing: {line}"
        );
    }
}

fn exchange(c: &mut Client) {
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    c.flush().expect("flush");
    assert_eq!(read_response(c).expect("response").0, "HTTP/1.1 200 OK");
}
