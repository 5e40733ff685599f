//! Ticket keys derived from a shared secret (`--ticket-secret-file`): two
//! processes resume each other's sessions, keys change at the period
//! boundary with no reload, and a ticket older than the window (periods
//! n-1, n, n+1) gets a full handshake, counted as a rejected ticket.

use rand::RngCore;
use rustls::pki_types::UnixTime;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uringtls_tests::{
    client_config, connect, engine_fails, set_mode, start_engine, test_certs, write, EngineProc,
    TestCerts, WAIT,
};

const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// A fresh random secret (96 hex digits, as `openssl rand -hex 48` makes).
fn secret_file(dir: &Path, name: &str) -> PathBuf {
    let mut k = [0u8; 48];
    rand::rng().fill_bytes(&mut k);
    let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
    let p = write(dir, name, &format!("{hex}\n"));
    set_mode(&p, 0o600);
    p
}

fn instance(certs: &TestCerts, secret: &Path, period: &str) -> EngineProc {
    start_engine(&[
        "--shards",
        "1",
        "--service",
        "echo",
        "--cert",
        certs.cert.to_str().unwrap(),
        "--key",
        certs.key.to_str().unwrap(),
        "--ticket-secret-file",
        secret.to_str().unwrap(),
        "--ticket-rotate",
        period,
        "--metrics-listen",
        "127.0.0.1:0",
    ])
}

/// Connects, exchanges a message (which also delivers the server's
/// tickets to the client's store) and reports whether it resumed.
fn visit(e: &EngineProc, cfg: &Arc<rustls::ClientConfig>) -> bool {
    let mut c = connect(e.addr(), cfg).expect("handshake");
    c.write_all(b"x").unwrap();
    c.flush().unwrap();
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
    c.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Waits until the wall clock reads `t` (Unix seconds) or later: the
/// period boundary is the event. Bounded by `t` plus [`WAIT`].
fn wait_until_unix(t: u64) {
    let limit =
        std::time::Instant::now() + Duration::from_secs(t.saturating_sub(unix_now())) + WAIT;
    while unix_now() < t {
        assert!(std::time::Instant::now() < limit, "clock never reached {t}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client whose clock stands still: rustls's client drops a ticket once
/// its lifetime hint (one period) has passed, so to see what the server
/// does with an old ticket the client must believe no time has passed (as
/// a client with a wrong clock, or one ignoring the hint, would).
#[derive(Debug)]
struct Frozen(UnixTime);

impl rustls::time_provider::TimeProvider for Frozen {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

fn frozen_client(certs: &TestCerts) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.ca_der.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg =
        rustls::ClientConfig::builder_with_details(provider, Arc::new(Frozen(UnixTime::now())))
            .with_protocol_versions(TLS13)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    Arc::new(cfg)
}

fn metrics_addr(e: &EngineProc) -> SocketAddr {
    let out = e.wait_for_stdout("uringtls: metrics at http://");
    out.lines()
        .find_map(|l| l.strip_prefix("uringtls: metrics at http://"))
        .and_then(|a| a.trim_end_matches("/metrics").parse().ok())
        .expect("metrics address")
}

/// `uringtls_tickets_total{event=EVENT}` summed over shards.
fn tickets(e: &EngineProc, event: &str) -> f64 {
    let mut s = TcpStream::connect(metrics_addr(e)).expect("metrics");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let label = format!("event=\"{event}\"");
    text.lines()
        .filter(|l| l.starts_with("uringtls_tickets_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn two_processes_sharing_a_ticket_secret_resume_each_others_sessions() {
    let certs = test_certs();
    let secret = secret_file(certs.dir.path(), "tickets.secret");
    let (a, b) = (
        instance(&certs, &secret, "12h"),
        instance(&certs, &secret, "12h"),
    );
    for versions in [TLS13, TLS12] {
        let mut resumed = 0;
        for _ in 0..10 {
            let cfg = client_config(&certs.ca_der, versions);
            assert!(!visit(&a, &cfg), "first visit is a full handshake");
            resumed += visit(&b, &cfg) as usize;
        }
        assert_eq!(resumed, 10, "{versions:?}: resumed on B {resumed}/10");
    }
    // Another secret: nothing in common.
    let other = secret_file(certs.dir.path(), "other.secret");
    let c = instance(&certs, &other, "12h");
    let cfg = client_config(&certs.ca_der, TLS13);
    visit(&a, &cfg);
    assert!(!visit(&c, &cfg), "a ticket under another secret");
}

#[test]
fn a_ticket_resumes_across_the_next_boundary_and_is_refused_after_the_window() {
    const PERIOD: u64 = 3;
    let certs = test_certs();
    let secret = secret_file(certs.dir.path(), "tickets.secret");
    let (a, b) = (
        instance(&certs, &secret, "3s"),
        instance(&certs, &secret, "3s"),
    );
    // Two clients get tickets from A, both within one period n.
    let (early, late) = (frozen_client(&certs), frozen_client(&certs));
    let n = (0..5)
        .find_map(|_| {
            let n = unix_now() / PERIOD;
            visit(&a, &early);
            visit(&a, &late);
            (unix_now() / PERIOD == n).then_some(n)
        })
        .expect("two visits within one 3s period");

    // Period n+1: B (no reload, no restart) has moved on to the next key
    // and still accepts period n's ticket.
    wait_until_unix((n + 1) * PERIOD);
    assert!(visit(&b, &early), "period n's ticket resumes in period n+1");
    let rejected = tickets(&b, "rejected");

    // Period n+2: period n's ticket is out of the window: a clean full
    // handshake (the connection works), counted as a rejected ticket.
    wait_until_unix((n + 2) * PERIOD);
    assert!(
        !visit(&b, &late),
        "period n's ticket is refused in period n+2"
    );
    assert_eq!(tickets(&b, "rejected"), rejected + 1.0);
    // ... and the ticket B issued in period n+1 resumes on A in n+2.
    assert!(visit(&a, &early), "period n+1's ticket resumes in n+2 on A");
}

#[test]
fn a_ticket_secret_with_a_ticket_key_file_or_too_short_or_readable_is_refused_at_start() {
    let certs = test_certs();
    let dir = certs.dir.path();
    let secret = secret_file(dir, "tickets.secret");
    let keys = secret_file(dir, "tickets.keys");
    let err = refused_at_start(&[
        "--ticket-secret-file",
        secret.to_str().unwrap(),
        "--ticket-key-file",
        keys.to_str().unwrap(),
    ]);
    assert!(
        err.contains("flag --ticket-secret-file") && err.contains("not both"),
        "{err}"
    );

    let short = write(dir, "short.secret", "too short\n");
    set_mode(&short, 0o600);
    let err = refused_at_start(&["--ticket-secret-file", short.to_str().unwrap()]);
    assert!(
        err.contains("9 bytes, fewer than 32") && !err.contains("too short"),
        "{err}"
    );

    set_mode(&secret, 0o640);
    let err = refused_at_start(&["--ticket-secret-file", secret.to_str().unwrap()]);
    assert!(err.contains("chmod 600"), "{err}");
}

/// Runs the engine with `args` (on 127.0.0.1:0), which it must refuse at
/// start (status 2); returns what it printed.
fn refused_at_start(args: &[&str]) -> String {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let (code, err) = engine_fails(&all);
    assert_eq!(code, Some(2), "{err}");
    err
}
