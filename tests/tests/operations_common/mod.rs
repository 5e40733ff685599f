//! Helpers shared by the `operations_*` tests: connecting from a chosen
//! loopback address, scraping `/metrics`, reading one value out of it.

#![allow(dead_code)] // each test file uses a different subset

use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use uringtls_tests::{Client, EngineProc, WAIT};

/// The certificates, engine args for them, and a client trusting them.
pub struct Setup {
    pub certs: uringtls_tests::TestCerts,
    pub client: Arc<rustls::ClientConfig>,
}

impl Setup {
    pub fn new() -> Setup {
        let certs = uringtls_tests::test_certs();
        let client = uringtls_tests::client_config(
            &certs.ca_der,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        );
        Setup { certs, client }
    }

    /// `--cert C --key K` followed by `more`.
    pub fn args<'a>(&'a self, more: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![
            "--cert",
            self.certs.cert.to_str().expect("utf8"),
            "--key",
            self.certs.key.to_str().expect("utf8"),
        ];
        v.extend_from_slice(more);
        v
    }
}

/// A TCP connection to `to` from the local address `from` (e.g. 127.0.0.2).
pub fn tcp_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let from: IpAddr = from.parse().expect("ip");
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&SocketAddr::new(from, 0).into())?;
    s.connect(&to.into())?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(WAIT))?;
    s.set_write_timeout(Some(WAIT))?;
    Ok(s)
}

/// A completed TLS handshake from `from`; `Err` if the engine closed it.
pub fn tls_from(
    from: &str,
    to: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
) -> std::io::Result<Client> {
    let sock = tcp_from(from, to)?;
    let name = ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// One keep-alive GET on `c`; returns the status line.
pub fn get(c: &mut Client) -> std::io::Result<String> {
    c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    c.flush()?;
    let (status, _, _) = uringtls_tests::read_response(c)?;
    Ok(status)
}

/// Sends close_notify and closes the socket.
pub fn close(mut c: Client) {
    c.conn.send_close_notify();
    let _ = c.conn.complete_io(&mut c.sock);
}

/// The metrics address printed at start-up (`--metrics-listen 127.0.0.1:0`).
pub fn metrics_addr(e: &EngineProc) -> SocketAddr {
    let out = e.stdout();
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("uringtls: metrics at http://"))
        .unwrap_or_else(|| panic!("no metrics line in stdout:\n{out}"));
    line.trim_end_matches("/metrics")
        .parse()
        .expect("metrics addr")
}

/// GET /metrics.
pub fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect metrics");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read metrics");
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    out
}

/// Sum of every series of `name` whose labels include all of `labels`.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, r)) => (n, r.trim_end_matches('}')),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let have: Vec<(&str, &str)> = rest
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k, v.trim_matches('"')))
                .collect();
            labels
                .iter()
                .all(|want| have.contains(want))
                .then(|| v.parse::<f64>().ok())?
        })
        .sum()
}

#[allow(unused_imports)] // each test file uses a different subset
pub use uringtls_tests::eventually;

/// Fails if `logs` hold a private key's DER (`der`) as hex or as a Rust
/// byte list, or any PEM block or key marker.
pub fn assert_no_key_bytes(logs: &str, der: &[u8]) {
    assert!(!logs.contains("-----BEGIN"), "PEM header in the logs");
    assert!(!logs.contains("PRIVATE KEY"), "key marker in the logs");
    let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
    let lower = logs.to_lowercase();
    for i in (0..hex.len().saturating_sub(24)).step_by(8) {
        assert!(
            !lower.contains(&hex[i..i + 24]),
            "key material (hex) in the logs"
        );
    }
    let list = format!("{:?}", &der[der.len().saturating_sub(8)..]);
    assert!(
        !logs.contains(list.trim_matches(['[', ']'])),
        "key material (byte list) in the logs"
    );
}

/// Makes sure this test process may open `n` descriptors (raises the soft
/// RLIMIT_NOFILE toward the hard limit; never lowers anything).
pub fn ensure_nofile(n: u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
    if l.rlim_cur >= n {
        return;
    }
    assert!(
        l.rlim_max >= n,
        "hard RLIMIT_NOFILE {} is below the {n} this test needs",
        l.rlim_max
    );
    l.rlim_cur = n;
    // SAFETY: valid pointer; raising the soft limit up to the hard one needs no privilege.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) }, 0);
}
