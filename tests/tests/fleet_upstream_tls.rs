//! The proxy service speaking TLS to its upstream (`--upstream-tls`):
//! client → TLS → uringtls → TLS → a rustls upstream with a private CA.
//! Run on another backend with `URINGTLS_TEST_IO_BACKEND=epoll`.

use rand::RngCore;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{HandshakeKind, ServerConfig, ServerConnection, StreamOwned};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{mpsc, Arc};
use uringtls_tests::{
    client_config, connect, engine_fails, eventually, start_engine, test_certs, Client, EngineProc,
    TestCerts, WAIT,
};

mod operations_common;

/// What the upstream saw of one connection.
#[derive(Debug)]
struct Seen {
    /// `Err`: the handshake failed (rustls's error).
    handshake: Result<HandshakeKind, String>,
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    client_cert: Option<CertificateDer<'static>>,
    /// Bytes received before the client's end, and whether that end was a
    /// `close_notify` (else a FIN alone or an error).
    received: u64,
    clean_end: bool,
}

/// A TLS upstream on 127.0.0.1: echoes every byte; at the client's clean
/// end (`close_notify`) answers `bye N CHECKSUM` and ends with its own
/// `close_notify`. Each connection is reported on `seen`.
struct TlsUpstream {
    addr: SocketAddr,
    seen: mpsc::Receiver<Seen>,
}

impl TlsUpstream {
    fn next(&self) -> Seen {
        self.seen
            .recv_timeout(WAIT)
            .expect("the upstream saw a connection")
    }
}

fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn load_chain(path: &Path) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .expect("pem")
        .collect::<Result<_, _>>()
        .expect("certs")
}

fn load_key(path: &Path) -> rustls::pki_types::PrivateKeyDer<'static> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_file(path).expect("key")
}

/// Starts an upstream serving `cert`/`key`; with `client_ca`, it requires
/// a client certificate issued by it; `alpn` is what it accepts.
fn tls_upstream(
    cert: &Path,
    key: &Path,
    client_ca: Option<&TestCerts>,
    alpn: &[&str],
) -> TlsUpstream {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.ca_der.clone()).expect("root");
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("verifier");
            builder.with_client_cert_verifier(v)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(load_chain(cert), load_key(key))
        .expect("server cert");
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let cfg = Arc::new(cfg);
    let l = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = l.local_addr().expect("addr");
    let (tx, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let (cfg, tx) = (cfg.clone(), tx.clone());
            std::thread::spawn(move || {
                let _ = tx.send(serve(s, cfg));
            });
        }
    });
    TlsUpstream { addr, seen }
}

fn serve(sock: TcpStream, cfg: Arc<ServerConfig>) -> Seen {
    sock.set_read_timeout(Some(WAIT)).expect("timeout");
    let conn = ServerConnection::new(cfg).expect("conn");
    let mut s = StreamOwned::new(conn, sock);
    let mut seen = Seen {
        handshake: Ok(HandshakeKind::Full),
        sni: None,
        alpn: None,
        client_cert: None,
        received: 0,
        clean_end: false,
    };
    while s.conn.is_handshaking() {
        if let Err(e) = s.conn.complete_io(&mut s.sock) {
            seen.handshake = Err(e.to_string());
            return seen;
        }
    }
    seen.handshake = Ok(s.conn.handshake_kind().expect("kind"));
    seen.sni = s.conn.server_name().map(str::to_owned);
    seen.alpn = s.conn.alpn_protocol().map(<[u8]>::to_vec);
    seen.client_cert = s
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned());
    let mut buf = vec![0u8; 64 * 1024];
    let mut all = Vec::new();
    loop {
        match s.read(&mut buf) {
            Ok(0) => {
                seen.clean_end = true;
                break;
            }
            Ok(n) => {
                all.extend_from_slice(&buf[..n]);
                if s.write_all(&buf[..n]).and_then(|()| s.flush()).is_err() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    seen.received = all.len() as u64;
    if seen.clean_end {
        let bye = format!("bye {} {:016x}", all.len(), checksum(&all));
        let _ = s.write_all(bye.as_bytes());
        s.conn.send_close_notify();
        let _ = s.flush();
        let _ = s.sock.shutdown(std::net::Shutdown::Write);
    }
    seen
}

/// The engine proxying to `up` over TLS, trusting `ca` (its file), with
/// `extra` flags.
fn engine(certs: &TestCerts, up: SocketAddr, ca: &Path, extra: &[&str]) -> EngineProc {
    let upstream = up.to_string();
    let mut args = vec![
        "--service",
        "proxy",
        "--cert",
        certs.cert.to_str().expect("utf8"),
        "--key",
        certs.key.to_str().expect("utf8"),
        "--upstream",
        &upstream,
        "--upstream-tls",
        "true",
        "--upstream-ca",
        ca.to_str().expect("utf8"),
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    start_engine(&args)
}

/// A CA of another name (a same-named CA fails on the signature instead,
/// `tls_verify_bad_signature`) and a leaf it issued for 127.0.0.1 and
/// localhost, written to `dir`: (CA file, leaf chain, leaf key).
fn foreign_ca(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "some other CA");
    let ca = params.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("leaf");
    let w = |name: &str, text: &str| uringtls_tests::write(dir, name, text);
    (
        w("foreign-ca.pem", &ca.pem()),
        w("foreign.pem", &leaf.pem()),
        w("foreign.key", &key.serialize_pem()),
    )
}

fn client(certs: &TestCerts) -> Arc<rustls::ClientConfig> {
    client_config(
        &certs.ca_der,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
    )
}

/// Sends `payload` in `chunk`s reading the echo back as it goes, then
/// `close_notify`; returns the echo and the upstream's answer after the
/// half-close (read up to the proxy's clean close).
fn exchange(c: &mut Client, payload: &[u8], chunk: usize) -> (Vec<u8>, String) {
    let mut back = Vec::with_capacity(payload.len());
    let mut buf = vec![0u8; 64 * 1024];
    for piece in payload.chunks(chunk) {
        c.write_all(piece).expect("write");
        c.flush().expect("flush");
        let want = back.len() + piece.len();
        while back.len() < want {
            let n = c.read(&mut buf).expect("read echo");
            assert!(n > 0, "proxy closed early after {} bytes", back.len());
            back.extend_from_slice(&buf[..n]);
        }
    }
    c.conn.send_close_notify();
    c.flush().expect("flush close_notify");
    let mut answer = Vec::new();
    c.read_to_end(&mut answer)
        .expect("the upstream's answer, then a clean close");
    (back, String::from_utf8_lossy(&answer).into_owned())
}

/// The count of `uringtls_upstream_errors_total{kind}` once it reaches
/// `want` (the shards publish their counts on their own schedule).
fn upstream_errors_reach(e: &EngineProc, kind: &str, want: f64) {
    let m = operations_common::metrics_addr(e);
    eventually(&format!("upstream_errors{{kind={kind}}} = {want}"), || {
        let text = operations_common::scrape(m);
        let n =
            operations_common::value(&text, "uringtls_upstream_errors_total", &[("kind", kind)]);
        (n == want).then_some(())
    });
}

/// The client gets no byte through, only the proxy's close.
fn refused_through(e: &EngineProc, cfg: &Arc<rustls::ClientConfig>) {
    let mut c = connect(e.addr(), cfg).expect("the client's own handshake succeeds");
    let _ = c.write_all(b"hello");
    let _ = c.flush();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.is_empty(), "bytes came back: {got:?}");
}

#[test]
fn a_verified_upstream_gets_the_configured_server_name_and_the_bytes() {
    let certs = test_certs();
    let up = tls_upstream(&certs.cert, &certs.key, None, &[]);
    let e = engine(&certs, up.addr, &certs.ca, &["--upstream-sni", "localhost"]);
    let mut c = connect(e.addr(), &client(&certs)).expect("connect");
    let (back, answer) = exchange(&mut c, b"ping through two TLS hops", 1000);
    assert_eq!(back, b"ping through two TLS hops");
    assert_eq!(
        answer,
        format!("bye 25 {:016x}", checksum(b"ping through two TLS hops"))
    );
    let seen = up.next();
    assert_eq!(seen.handshake, Ok(HandshakeKind::Full));
    assert_eq!(seen.sni.as_deref(), Some("localhost"));
    assert!(seen.clean_end, "{seen:?}");
}

#[test]
fn an_upstream_certificate_from_another_ca_is_refused_and_counted() {
    let certs = test_certs();
    let (_, cert, key) = foreign_ca(certs.dir.path());
    let up = tls_upstream(&cert, &key, None, &[]);
    let e = engine(&certs, up.addr, &certs.ca, &[]);
    refused_through(&e, &client(&certs));
    let seen = up.next();
    assert!(seen.handshake.is_err(), "{seen:?}");
    upstream_errors_reach(&e, "tls_verify_unknown_issuer", 1.0);
    // And per upstream.
    let text = operations_common::scrape(operations_common::metrics_addr(&e));
    let name = up.addr.to_string();
    let per_upstream = operations_common::value(
        &text,
        "uringtls_upstream_tls_failures_total",
        &[("pool", "default"), ("upstream", &name)],
    );
    assert_eq!(per_upstream, 1.0, "{text}");
}

#[test]
fn an_upstream_certificate_for_another_name_is_refused_and_counted() {
    let certs = test_certs();
    // Valid for localhost only; the upstream is written as 127.0.0.1, which
    // is verified as an IP SAN (and sends no SNI).
    let leaf = certs.issue(&["localhost"], "localhost", "named", false);
    let up = tls_upstream(&leaf.cert, &leaf.key, None, &[]);
    let e = engine(&certs, up.addr, &certs.ca, &[]);
    refused_through(&e, &client(&certs));
    let seen = up.next();
    assert!(seen.handshake.is_err(), "{seen:?}");
    upstream_errors_reach(&e, "tls_verify_bad_name", 1.0);
    // A name given with --upstream-sni that the certificate lacks, too.
    let up2 = tls_upstream(&certs.cert, &certs.key, None, &[]);
    let e2 = engine(
        &certs,
        up2.addr,
        &certs.ca,
        &["--upstream-sni", "other.test"],
    );
    refused_through(&e2, &client(&certs));
    assert!(up2.next().handshake.is_err());
    upstream_errors_reach(&e2, "tls_verify_bad_name", 1.0);
}

#[test]
fn an_ip_upstream_is_verified_against_its_ip_san_without_sni() {
    let certs = test_certs(); // the leaf names 127.0.0.1 too
    let up = tls_upstream(&certs.cert, &certs.key, None, &[]);
    let e = engine(&certs, up.addr, &certs.ca, &[]);
    let mut c = connect(e.addr(), &client(&certs)).expect("connect");
    let (back, _) = exchange(&mut c, b"by address", 100);
    assert_eq!(back, b"by address");
    let seen = up.next();
    assert_eq!(seen.sni, None, "no SNI for an IP address");
}

#[test]
fn mtls_to_the_upstream_presents_the_configured_client_certificate() {
    let certs = test_certs();
    let ours = certs.issue(&["uringtls.test"], "uringtls", "to-upstream", false);
    let up = tls_upstream(&certs.cert, &certs.key, Some(&certs), &[]);
    let e = engine(
        &certs,
        up.addr,
        &certs.ca,
        &[
            "--upstream-cert",
            ours.cert.to_str().expect("utf8"),
            "--upstream-key",
            ours.key.to_str().expect("utf8"),
        ],
    );
    let mut c = connect(e.addr(), &client(&certs)).expect("connect");
    let (back, _) = exchange(&mut c, b"with a client certificate", 7);
    assert_eq!(back, b"with a client certificate");
    let seen = up.next();
    assert_eq!(seen.client_cert.as_ref(), Some(&ours.der));
    // Without one, the upstream refuses: nothing gets through.
    let e = engine(&certs, up.addr, &certs.ca, &[]);
    refused_through(&e, &client(&certs));
    let seen = up.next();
    assert!(seen.handshake.is_err() || seen.received == 0, "{seen:?}");
}

#[test]
fn reconnects_to_the_upstream_resume_from_any_shard() {
    let certs = test_certs();
    let up = tls_upstream(&certs.cert, &certs.key, None, &[]);
    let e = engine(&certs, up.addr, &certs.ca, &["--shards", "2"]);
    let cfg = client(&certs);
    let mut kinds = Vec::new();
    for i in 0..6 {
        let mut c = connect(e.addr(), &cfg).expect("connect");
        let msg = format!("connection {i}");
        let (back, _) = exchange(&mut c, msg.as_bytes(), 100);
        assert_eq!(back, msg.as_bytes());
        kinds.push(up.next().handshake.expect("handshake"));
    }
    assert_eq!(kinds[0], HandshakeKind::Full);
    assert!(
        kinds[1..].iter().all(|k| *k == HandshakeKind::Resumed),
        "{kinds:?}"
    );
}

#[test]
fn alpn_is_passed_through_or_fixed() {
    let certs = test_certs();
    let up = tls_upstream(&certs.cert, &certs.key, None, &["h2", "http/1.1"]);
    let e = engine(
        &certs,
        up.addr,
        &certs.ca,
        &["--alpn", "h2,http/1.1", "--upstream-alpn", "passthrough"],
    );
    for want in ["h2", "http/1.1"] {
        let mut cfg = (*client(&certs)).clone();
        cfg.alpn_protocols = vec![want.as_bytes().to_vec()];
        let mut c = connect(e.addr(), &Arc::new(cfg)).expect("connect");
        exchange(&mut c, b"x", 1);
        assert_eq!(up.next().alpn.as_deref(), Some(want.as_bytes()));
    }
    let e = engine(&certs, up.addr, &certs.ca, &["--upstream-alpn", "http/1.1"]);
    let mut c = connect(e.addr(), &client(&certs)).expect("connect");
    exchange(&mut c, b"x", 1);
    assert_eq!(up.next().alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[test]
fn twenty_mib_cross_both_tls_hops_byte_exact_and_the_half_close_is_carried() {
    let certs = test_certs();
    let up = tls_upstream(&certs.cert, &certs.key, None, &[]);
    let e = engine(&certs, up.addr, &certs.ca, &["--shards", "2"]);
    let mut payload = vec![0u8; 20 << 20];
    rand::rng().fill_bytes(&mut payload);
    let mut c = connect(e.addr(), &client(&certs)).expect("connect");
    let (back, answer) = exchange(&mut c, &payload, 1 << 20);
    assert_eq!(back.len(), payload.len());
    assert!(back == payload, "the echo differs");
    // The upstream saw the client's close_notify after every byte, and its
    // answer after that came back, then its own clean end.
    let seen = up.next();
    assert!(
        seen.clean_end && seen.received == payload.len() as u64,
        "{seen:?}"
    );
    assert_eq!(
        answer,
        format!("bye {} {:016x}", payload.len(), checksum(&payload))
    );
}

#[test]
fn a_bad_upstream_ca_stops_the_start_and_a_reload_keeps_the_old_one() {
    let certs = test_certs();
    let dir = tempfile::tempdir().expect("dir");
    let junk = uringtls_tests::write(dir.path(), "junk.pem", "not a certificate\n");
    let (code, err) = engine_fails(&[
        "--service",
        "proxy",
        "--upstream",
        "127.0.0.1:9",
        "--upstream-tls",
        "true",
        "--upstream-ca",
        junk.to_str().expect("utf8"),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--upstream-ca") && err.contains("junk.pem"),
        "{err}"
    );
    // A client key others may read is refused like the listener's.
    let ours = certs.issue(&["uringtls.test"], "uringtls", "loose", false);
    uringtls_tests::set_mode(&ours.key, 0o644);
    let (code, err) = engine_fails(&[
        "--service",
        "proxy",
        "--upstream",
        "127.0.0.1:9",
        "--upstream-tls",
        "true",
        "--upstream-cert",
        ours.cert.to_str().expect("utf8"),
        "--upstream-key",
        ours.key.to_str().expect("utf8"),
    ]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("loose.key"), "{err}");

    let ca = uringtls_tests::write(
        dir.path(),
        "upstream-ca.pem",
        &std::fs::read_to_string(&certs.ca).expect("ca"),
    );
    let up = tls_upstream(&certs.cert, &certs.key, None, &[]);
    let e = engine(&certs, up.addr, &ca, &[]);
    let cfg = client(&certs);
    let mut c = connect(e.addr(), &cfg).expect("connect");
    assert_eq!(exchange(&mut c, b"before", 10).0, b"before");
    up.next();
    // A broken file at reload: refused, the old trust keeps serving.
    std::fs::write(&ca, "garbage\n").expect("write");
    assert!(!e.reload(1), "a bad upstream_ca must be refused");
    assert!(e.stdout().contains("upstream-ca"), "{}", e.stdout());
    let mut c = connect(e.addr(), &cfg).expect("connect");
    assert_eq!(exchange(&mut c, b"still", 10).0, b"still");
    up.next();
    // Another CA at reload: applied, the upstream is no longer trusted.
    let (foreign, _, _) = foreign_ca(dir.path());
    std::fs::copy(&foreign, &ca).expect("copy");
    assert!(e.reload(2), "a good upstream_ca is applied");
    refused_through(&e, &cfg);
    assert!(up.next().handshake.is_err());
    upstream_errors_reach(&e, "tls_verify_unknown_issuer", 1.0);
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_client_that_stops_reading_stalls_the_tls_upstream_instead_of_growing_memory() {
    // The upstream writes as fast as it can while the client reads
    // nothing: its writes must block (a write timeout tells us when), the
    // engine's memory must not follow, and every byte must arrive later.
    let certs = test_certs();
    let cfg = Arc::new(
        ServerConfig::builder_with_provider(
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(load_chain(&certs.cert), load_key(&certs.key))
        .expect("cert"),
    );
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = l.local_addr().expect("addr");
    let (blocked_tx, blocked) = mpsc::channel();
    let (resume_tx, resume) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Some(Ok(sock)) = l.incoming().next() else {
            return;
        };
        let mut s = StreamOwned::new(ServerConnection::new(cfg).expect("conn"), sock);
        while s.conn.is_handshaking() {
            if s.conn.complete_io(&mut s.sock).is_err() {
                return;
            }
        }
        s.sock
            .set_write_timeout(Some(std::time::Duration::from_millis(300)))
            .expect("timeout");
        let chunk = vec![7u8; 64 * 1024];
        // Handed to rustls; what a timed-out flush left stays queued in it.
        let mut sent = 0u64;
        loop {
            s.conn.writer().write_all(&chunk).expect("queue");
            sent += chunk.len() as u64;
            if s.flush().is_err() {
                break;
            }
        }
        let _ = blocked_tx.send(sent);
        let _ = resume.recv();
        s.sock.set_write_timeout(None).expect("timeout");
        s.conn.send_close_notify();
        let _ = s.flush();
        let _ = s.sock.shutdown(std::net::Shutdown::Write);
        let _ = s.read(&mut [0u8; 16]);
    });
    let e = engine(&certs, up, &certs.ca, &["--shards", "1"]);
    let before = rss_kib(e.pid());
    let mut c = connect(e.addr(), &client(&certs)).expect("connect");
    let sent = blocked
        .recv_timeout(WAIT)
        .expect("the upstream blocks once buffers are full");
    let grown = rss_kib(e.pid()).saturating_sub(before);
    eprintln!("upstream queued {sent} bytes before blocking; engine RSS grew {grown} KiB");
    assert!(
        grown < 32 * 1024,
        "engine RSS grew {grown} KiB while the client did not read"
    );
    resume_tx.send(()).expect("resume");
    let mut got = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = c.read(&mut buf).expect("read up to the clean end");
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&b| b == 7));
        got += n as u64;
    }
    assert_eq!(got, sent, "every byte the upstream wrote arrives");
}

/// `uringtls_upstream_up` of `upstream` in the default pool reaches `want`.
fn upstream_up_reaches(e: &EngineProc, upstream: &str, want: f64) {
    let m = operations_common::metrics_addr(e);
    eventually(
        &format!("upstream_up{{upstream={upstream}}} = {want}"),
        || {
            let text = operations_common::scrape(m);
            let n = operations_common::value(
                &text,
                "uringtls_upstream_up",
                &[("pool", "default"), ("upstream", upstream)],
            );
            (n == want).then_some(())
        },
    );
}

#[test]
fn health_checks_over_tls_take_out_an_upstream_whose_certificate_is_refused() {
    let certs = test_certs();
    let good = tls_upstream(&certs.cert, &certs.key, None, &[]);
    let (_, cert, key) = foreign_ca(certs.dir.path());
    let bad = tls_upstream(&cert, &key, None, &[]);
    let (good_name, bad_name) = (good.addr.to_string(), bad.addr.to_string());
    // `--upstream` repeats: the pool is the good upstream, then the bad.
    let e = engine(
        &certs,
        good.addr,
        &certs.ca,
        &[
            "--upstream",
            &bad_name,
            "--upstream-sni",
            "localhost",
            "--health-interval",
            "100ms",
            "--health-fails",
            "2",
        ],
    );
    // The checks' handshakes reach both upstreams; only the foreign
    // certificate is refused, so only that upstream leaves the pool.
    assert!(
        bad.next().handshake.is_err(),
        "the check's handshake with the foreign certificate fails"
    );
    upstream_up_reaches(&e, &bad_name, 0.0);
    upstream_up_reaches(&e, &good_name, 1.0);
    let m = operations_common::metrics_addr(&e);
    let text = operations_common::scrape(m);
    let passed = operations_common::value(
        &text,
        "uringtls_upstream_health_checks_total",
        &[
            ("pool", "default"),
            ("upstream", &good_name),
            ("result", "pass"),
        ],
    );
    assert!(
        passed >= 1.0,
        "the good upstream passed its TLS checks: {passed}"
    );
    // Client connections now all go to the good upstream.
    let cfg = client(&certs);
    for _ in 0..4 {
        let mut c = connect(e.addr(), &cfg).expect("connect");
        let (back, _) = exchange(&mut c, b"ping", 4);
        assert_eq!(back, b"ping");
    }
}
