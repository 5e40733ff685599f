//! peer-tokio and peer-monoio on loopback: one TLS request per body size, uringtls's bytes
//! back, the settings tuning/compare relies on (ALPN, suite, resumption or
//! not), and exit status 0 on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The started binary; killed if a test fails before stopping it.
struct Peer {
    child: Child,
    addr: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &str, dir: &std::path::Path, extra: &[&str]) -> Peer {
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--cert"])
        .arg(dir.join("cert.pem"))
        .arg("--key")
        .arg(dir.join("key.pem"))
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
    // The first line says where it listens (EOF if it exits first).
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read stdout");
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{bin} did not start: {line:?}"))
        .trim()
        .to_string();
    Peer { child, addr }
}

fn certs() -> (tempfile::TempDir, rustls_pki_types::CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).expect("write cert");
    std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem()).expect("write key");
    (dir, ck.cert.der().clone())
}

/// A client trusting `ca`, offering http/1.1; its session store lets a
/// second connection resume.
fn client(ca: &rustls_pki_types::CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// One `GET /path` with `Connection: close`; the whole response, and the
/// client connection (for its negotiated parameters).
fn get(
    addr: &str,
    cfg: &Arc<rustls::ClientConfig>,
    path: &str,
) -> (String, rustls::ClientConnection) {
    let name = "localhost".try_into().expect("name");
    let conn = rustls::ClientConnection::new(cfg.clone(), name).expect("client");
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = Vec::new();
    // hyper closes without close_notify after `Connection: close`: keep
    // what arrived before the EOF.
    if let Err(e) = tls.read_to_end(&mut out) {
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "read: {e}");
    }
    (String::from_utf8(out).expect("utf-8"), tls.conn)
}

fn serves_uringtls_bodies_and_exits_0_on_sigterm(bin: &str) {
    let (dir, ca) = certs();
    let peer = start(bin, dir.path(), &[]);
    let cfg = client(&ca);
    let (resp, conn) = get(&peer.addr, &cfg, "/");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nhello world\n"), "{resp}");
    assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let suite = conn.negotiated_cipher_suite().expect("suite").suite();
    assert_eq!(
        suite,
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
        "server order wins"
    );
    let (_, again) = get(&peer.addr, &cfg, "/");
    assert_eq!(again.handshake_kind(), Some(rustls::HandshakeKind::Resumed));

    let mut peer = peer;
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    let rc = unsafe { libc::kill(peer.child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = peer.child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{status}");
}

fn body_size_is_hello_world_repeated_for_every_path_and_never_resumes(bin: &str) {
    let (dir, ca) = certs();
    let peer = start(bin, dir.path(), &["--body-size", "30", "--no-resumption"]);
    let want = "hello world\nhello world\nhello ";
    let cfg = client(&ca);
    for path in ["/", "/big"] {
        let (resp, conn) = get(&peer.addr, &cfg, path);
        assert_eq!(
            conn.handshake_kind(),
            Some(rustls::HandshakeKind::Full),
            "{path}: no resumption"
        );
        let (head, body) = resp.split_once("\r\n\r\n").expect("head");
        assert_eq!(body, want, "{path}");
        assert!(
            head.to_ascii_lowercase().contains("content-length: 30"),
            "{head}"
        );
    }
}

#[test]
fn peer_tokio_serves_uringtls_bodies_and_exits_0_on_sigterm() {
    serves_uringtls_bodies_and_exits_0_on_sigterm(env!("CARGO_BIN_EXE_peer-tokio"));
}

#[test]
fn peer_tokio_body_size_is_hello_world_repeated_for_every_path_and_never_resumes() {
    body_size_is_hello_world_repeated_for_every_path_and_never_resumes(env!(
        "CARGO_BIN_EXE_peer-tokio"
    ));
}

#[test]
fn peer_monoio_serves_uringtls_bodies_and_exits_0_on_sigterm() {
    serves_uringtls_bodies_and_exits_0_on_sigterm(env!("CARGO_BIN_EXE_peer-monoio"));
}

#[test]
fn peer_monoio_body_size_is_hello_world_repeated_for_every_path_and_never_resumes() {
    body_size_is_hello_world_repeated_for_every_path_and_never_resumes(env!(
        "CARGO_BIN_EXE_peer-monoio"
    ));
}
