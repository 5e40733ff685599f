//! Fault runs on loopback: resets at every stage, a client that never
//! reads, a renegotiation flood and a panicking service. Each test asserts
//! counts and states (metrics, fds, RSS, answers), never times; waits are
//! bounded polls of the metrics endpoint.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use uringtls_tests::{
    any_cert_client_config, client_config, connect, read_response, require_tool, start_engine,
    test_bin, test_certs, Client, EngineProc, TestCerts, WAIT,
};

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("metrics connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("metrics write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("metrics read");
    text
}

/// Sum of `name` over label sets containing every `labels` fragment.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls the metrics until `cond` holds; panics with the last scrape after
/// [`WAIT`]. (Metrics have no change notification, so this polls.)
fn wait_metrics(addr: SocketAddr, what: &str, mut cond: impl FnMut(&str) -> bool) -> String {
    let end = Instant::now() + WAIT;
    loop {
        let text = scrape(addr);
        if cond(&text) {
            return text;
        }
        assert!(Instant::now() < end, "never reached: {what}\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn active(text: &str) -> f64 {
    metric(text, "uringtls_connections_active", &[])
}

fn metrics_addr(stdout: &str) -> SocketAddr {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("uringtls: metrics at http://"))
        .and_then(|a| a.trim_end_matches("/metrics").parse().ok())
        .unwrap_or_else(|| panic!("no metrics line in:\n{stdout}"))
}

fn engine(extra: &[&str]) -> (EngineProc, TestCerts, SocketAddr) {
    let certs = test_certs();
    let mut args = vec![
        "--shards",
        "1",
        "--metrics-listen",
        "127.0.0.1:0",
        "--cert",
        certs.cert.to_str().expect("path"),
        "--key",
        certs.key.to_str().expect("path"),
    ];
    args.extend_from_slice(extra);
    let e = start_engine(&args);
    let m = metrics_addr(&e.stdout());
    (e, certs, m)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Makes the next close of `s` send RST instead of FIN.
fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(s);
}

fn get(c: &mut Client) -> String {
    c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    c.flush().expect("flush");
    read_response(c).expect("response").0
}

#[test]
fn resets_mid_handshake_mid_request_and_mid_response_leave_nothing_behind() {
    let (e, certs, m) = engine(&["--body-size", "1048576"]);
    let cfg = client_config(&certs.ca_der, BOTH);
    let mut healthy = connect(e.addr(), &cfg).expect("connect");
    assert_eq!(get(&mut healthy).len(), "HTTP/1.1 200 OK".len());
    wait_metrics(m, "one connection open", |t| active(t) == 1.0);
    let base_fds = fds(e.pid());
    let mut hello = Vec::new();
    let name = "localhost".try_into().expect("name");
    rustls::ClientConnection::new(cfg.clone(), name)
        .expect("client")
        .write_tls(&mut hello)
        .expect("hello");
    const ROUNDS: usize = 20;
    for _ in 0..ROUNDS {
        // Mid-handshake: half a ClientHello, then RST.
        let mut s = TcpStream::connect(e.addr()).expect("connect");
        s.write_all(&hello[..hello.len() / 2]).expect("write");
        reset(s);
        // Mid-request: handshake done, half a request, then RST.
        let mut c = connect(e.addr(), &cfg).expect("connect");
        c.write_all(b"GET / HTTP/1.1\r\nHo").expect("write");
        c.flush().expect("flush");
        reset(c.sock);
        // Mid-response: 1 MiB answer under way, read 1 KiB of it, RST.
        let mut c = connect(e.addr(), &cfg).expect("connect");
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
        c.flush().expect("flush");
        let mut buf = [0u8; 1024];
        c.read_exact(&mut buf).expect("part of the response");
        reset(c.sock);
    }
    let text = wait_metrics(m, "only the healthy connection left", |t| {
        active(t) == 1.0 && metric(t, "uringtls_connections_accepted_total", &[]) >= 61.0
    });
    assert_eq!(
        metric(&text, "uringtls_connections_accepted_total", &[]),
        (3 * ROUNDS + 1) as f64
    );
    assert_eq!(metric(&text, "uringtls_service_panics_total", &[]), 0.0);
    assert_eq!(fds(e.pid()), base_fds, "fds leaked after resets");
    assert_eq!(get(&mut healthy), "HTTP/1.1 200 OK");
    let mut fresh = connect(e.addr(), &cfg).expect("connect after resets");
    assert_eq!(get(&mut fresh), "HTTP/1.1 200 OK");
}

/// A TLS client whose receive buffer is small and which never reads.
fn stalled_client(e: &EngineProc, certs: &TestCerts) -> Client {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    sock.connect(&e.addr().into()).expect("connect");
    let sock: TcpStream = sock.into();
    sock.set_read_timeout(Some(WAIT)).expect("timeout");
    let cfg = client_config(&certs.ca_der, BOTH);
    let name = "localhost".try_into().expect("name");
    let conn = rustls::ClientConnection::new(cfg, name).expect("client");
    let mut c = rustls::StreamOwned::new(conn, sock);
    while c.conn.is_handshaking() {
        c.conn.complete_io(&mut c.sock).expect("handshake");
    }
    c
}

/// Reads raw bytes until the server's close; returns how many arrived.
fn drain_raw(s: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return total,
            Err(e) => panic!("server did not close: {e}"),
        }
    }
}

#[test]
fn a_client_that_never_reads_is_closed_at_the_write_timeout() {
    const BODY: usize = 8 << 20;
    let body = BODY.to_string();
    let (e, certs, m) = engine(&["--write-timeout", "300ms", "--body-size", &body]);
    let mut c = stalled_client(&e, &certs);
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    c.flush().expect("flush");
    let text = wait_metrics(m, "closed by the write timeout", |t| {
        metric(t, "uringtls_connections_closed_total", &["write_timeout"]) == 1.0
    });
    assert_eq!(active(&text), 0.0);
    let got = drain_raw(&mut c.sock);
    assert!(
        got < BODY / 2,
        "{got} bytes reached a client that never read"
    );
    let cfg = client_config(&certs.ca_der, BOTH);
    assert_eq!(
        get(&mut connect(e.addr(), &cfg).expect("connect")),
        "HTTP/1.1 200 OK"
    );
}

/// Pipelined requests for a large body are answered in bounded batches
/// (`http::MAX_OUT`), not all rendered at once: 64 pipelined GETs for a
/// 1 MiB body must not hold 64 MiB for a client that does not read.
#[test]
fn pipelined_requests_to_a_stalled_client_do_not_grow_memory_without_bound() {
    let (e, certs, m) = engine(&["--write-timeout", "2s", "--body-size", "1048576"]);
    let before = rss_kib(e.pid());
    let mut c = stalled_client(&e, &certs);
    c.write_all(&b"GET / HTTP/1.1\r\n\r\n".repeat(64))
        .expect("write");
    c.flush().expect("flush");
    let mut peak = before;
    wait_metrics(m, "closed by the write timeout", |t| {
        peak = peak.max(rss_kib(e.pid()));
        metric(t, "uringtls_connections_closed_total", &["write_timeout"]) == 1.0
    });
    let growth = peak.saturating_sub(before);
    assert!(
        growth < 16 * 1024,
        "RSS grew {growth} KiB for one stalled client"
    );
}

#[test]
fn a_renegotiation_flood_is_refused_and_others_are_served_throughout() {
    if !require_tool("openssl") {
        return;
    }
    let (e, certs, m) = engine(&[]);
    let cfg = client_config(&certs.ca_der, BOTH);
    let mut healthy = connect(e.addr(), &cfg).expect("connect");
    const FLOOD: usize = 16;
    let mut clients: Vec<Child> = (0..FLOOD)
        .map(|_| {
            // `R` on stdin makes s_client send a ClientHello on the
            // established TLS 1.2 connection; stdin stays open so a
            // successful renegotiation would leave it waiting (and fail).
            let mut c = Command::new("openssl")
                .args(["s_client", "-tls1_2", "-connect", &e.addr().to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("openssl s_client");
            c.stdin
                .as_mut()
                .expect("stdin")
                .write_all(b"R\n")
                .expect("send R");
            c
        })
        .collect();
    let mut answered = 0;
    for _ in 0..50 {
        answered += usize::from(get(&mut healthy) == "HTTP/1.1 200 OK");
    }
    assert_eq!(answered, 50, "the healthy client was not served throughout");
    let end = Instant::now() + WAIT;
    for c in &mut clients {
        while c.try_wait().expect("try_wait").is_none() {
            if Instant::now() > end {
                let _ = c.kill();
                panic!("an s_client renegotiation was not refused");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for c in clients {
        let out = c.wait_with_output().expect("output");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "renegotiation went through: {err}");
        assert!(err.contains("no renegotiation"), "unexpected end: {err}");
    }
    let text = wait_metrics(m, "flood connections closed", |t| active(t) == 1.0);
    assert_eq!(metric(&text, "uringtls_service_panics_total", &[]), 0.0);
    assert_eq!(get(&mut healthy), "HTTP/1.1 200 OK");
}

/// The panicking test engine (`tests/src/bin/panicky-under-test.rs`).
struct Panicky {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for Panicky {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_panicky() -> Panicky {
    use std::io::BufRead;
    let mut child = Command::new(test_bin("panicky-under-test"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn panicky-under-test");
    let out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let (mut metrics, mut addr) = (None, None);
    for line in out.lines().map_while(Result::ok) {
        if let Some(a) = line.strip_prefix("uringtls: metrics at http://") {
            metrics = a.trim_end_matches("/metrics").parse().ok();
        }
        if let Some(rest) = line.strip_prefix("uringtls: serving panicky at https://") {
            addr = rest.split('/').next().and_then(|a| a.parse().ok());
            break;
        }
    }
    Panicky {
        child,
        addr: addr.expect("ready line"),
        metrics: metrics.expect("metrics line"),
    }
}

fn echo(c: &mut Client, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    c.write_all(msg)?;
    c.flush()?;
    let mut got = vec![0u8; msg.len()];
    c.read_exact(&mut got)?;
    Ok(got)
}

#[test]
fn a_panicking_service_takes_down_only_its_own_connection() {
    let p = start_panicky();
    // The self-signed default certificate: verify against it directly.
    // The panicky engine serves a fresh self-signed certificate; what is
    // under test here is not TLS.
    let cfg = any_cert_client_config();
    let mut bystander = connect(p.addr, &cfg).expect("connect");
    assert_eq!(echo(&mut bystander, b"hello").expect("echo"), b"hello");
    const PANICS: usize = 5;
    for i in 1..=PANICS {
        let mut victim = connect(p.addr, &cfg).expect("connect");
        assert!(
            echo(&mut victim, b"panic").is_err(),
            "the panicking connection answered"
        );
        let text = wait_metrics(p.metrics, "panic counted and connection gone", |t| {
            metric(t, "uringtls_service_panics_total", &[]) == i as f64 && active(t) == 1.0
        });
        assert_eq!(
            metric(&text, "uringtls_connections_closed_total", &["panic"]),
            i as f64
        );
        assert_eq!(echo(&mut bystander, b"still").expect("echo"), b"still");
    }
    let mut fresh = connect(p.addr, &cfg).expect("connect after panics");
    assert_eq!(echo(&mut fresh, b"fresh").expect("echo"), b"fresh");
}
