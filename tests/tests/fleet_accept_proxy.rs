//! A load balancer in front (`--accept-proxy`): Debian's HAProxy in TCP
//! mode sends a PROXY header (`send-proxy-v2`, and `send-proxy` for v1) to
//! uringtls, which must take the client's address from it everywhere: the
//! per-address limits, and its own PROXY header to the upstream. A header
//! from an address not in the list, and a listed address without a
//! header, are refused and counted (`limit="proxy_header"`).
//!
//! Needs `haproxy` (Debian package `haproxy`): skipped with a reason
//! outside CI, a failure inside it (`CI=true`).

mod operations_common;

use operations_common::{metrics_addr, scrape, tcp_from, tls_from, value, Setup};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use uringtls_tests::{echo_upstream, eventually, in_ci, start_engine, tls_over, Client, WAIT};

/// HAProxy's binary, or `None` (with the reason printed) where it is not
/// installed outside CI.
fn haproxy_bin() -> Option<PathBuf> {
    let on_path = Command::new("sh")
        .args(["-c", "command -v haproxy"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let found = on_path.or_else(|| {
        let p = PathBuf::from("/usr/sbin/haproxy");
        p.exists().then_some(p)
    });
    if found.is_none() {
        assert!(
            !in_ci(),
            "haproxy is required in CI (install it in .ci/run)"
        );
        eprintln!("skipping: haproxy is not installed (apt-get install haproxy)");
    }
    found
}

/// A running HAProxy (TCP mode) relaying to one server; killed on drop.
struct Haproxy {
    child: Child,
    /// Where clients connect.
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy in front of `server`, sending PROXY headers as
    /// `send` says (`send-proxy-v2` or `send-proxy`). Its listening socket
    /// is ours, bound to 127.0.0.1:0 and handed over as fd 3
    /// (`bind fd@3`): no port to guess, and connections queue in its
    /// backlog until HAProxy accepts them.
    fn start(bin: &PathBuf, server: SocketAddr, send: &str) -> Haproxy {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cfg = uringtls_tests::write(
            dir.path(),
            "haproxy.cfg",
            &format!(
                "global\n    maxconn 64\n\
                 defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    \
                 timeout server 30s\n\
                 frontend fe\n    bind fd@3\n    default_backend be\n\
                 backend be\n    server uringtls {server} {send} source 127.0.0.1\n"
            ),
        );
        let fd = listener.as_raw_fd();
        let mut cmd = Command::new(bin);
        cmd.args(["-db", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the child between fork and exec and
        // calls only dup2, which is async-signal-safe; `fd` is open (the
        // listener lives until after `spawn` returns).
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn haproxy");
        // HAProxy holds the socket now; if it exits, connections are refused.
        drop(listener);
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let out = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = out.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        Haproxy {
            child,
            addr,
            stderr,
            _dir: dir,
        }
    }

    /// What HAProxy logged, and whether it still runs (for failure messages).
    fn report(&mut self) -> String {
        let status = self.child.try_wait().ok().flatten();
        let err = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        format!("haproxy exit status {status:?}; stderr:\n{err}")
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `msg` and reads back as many bytes (the upstream echoes).
fn echo(c: &mut Client, msg: &[u8]) -> Vec<u8> {
    c.write_all(msg).expect("write");
    c.flush().expect("flush");
    let mut back = vec![0u8; msg.len()];
    c.read_exact(&mut back).expect("echo");
    back
}

/// The source address of a PROXY header (v1 or v2) uringtls sent upstream.
fn header_source(raw: &[u8]) -> SocketAddr {
    match ppp::HeaderResult::parse(raw) {
        ppp::HeaderResult::V2(Ok(h)) => match h.addresses {
            ppp::v2::Addresses::IPv4(a) => (a.source_address, a.source_port).into(),
            other => panic!("not IPv4: {other:?}"),
        },
        ppp::HeaderResult::V1(Ok(h)) => match h.addresses {
            ppp::v1::Addresses::Tcp4(a) => (a.source_address, a.source_port).into(),
            other => panic!("not TCP4: {other:?}"),
        },
        other => panic!("not a PROXY header: {other:?} ({raw:?})"),
    }
}

/// A v2 `LOCAL` header as a balancer's health check sends it.
fn v2_local() -> Vec<u8> {
    let mut h = ppp::v2::PROTOCOL_PREFIX.to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    h
}

/// A v2 `PROXY` header naming `client` (and a made-up destination).
fn v2_proxy(client: &str) -> Vec<u8> {
    ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (
            client.parse::<SocketAddr>().expect("client"),
            "198.51.100.1:443".parse::<SocketAddr>().expect("dst"),
        ),
    )
    .build()
    .expect("v2 header")
}

/// A TLS handshake after `header`, the header and the ClientHello sent
/// in one write (so that they arrive in one segment and the engine reads
/// both at once: the hello must still reach the TLS session).
fn tls_after_header(
    mut sock: TcpStream,
    header: &[u8],
    cfg: &Arc<rustls::ClientConfig>,
) -> std::io::Result<Client> {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn =
        rustls::ClientConnection::new(cfg.clone(), name).map_err(std::io::Error::other)?;
    let mut first = header.to_vec();
    conn.write_tls(&mut first)?;
    sock.write_all(&first)?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

fn refused(text: &str, limit: &str) -> f64 {
    value(
        text,
        "uringtls_connections_refused_total",
        &[("limit", limit)],
    )
}

/// The whole check with HAProxy sending `send` (`send-proxy-v2` or
/// `send-proxy`).
fn through_haproxy(send: &str) {
    let Some(bin) = haproxy_bin() else { return };
    let s = Setup::new();
    let up = echo_upstream(true);
    let upstream = up.addr.to_string();
    let e = start_engine(&s.args(&[
        "--shards",
        "1",
        "--service",
        "proxy",
        "--upstream",
        &upstream,
        "--proxy-protocol",
        "v2",
        "--accept-proxy",
        "127.0.0.1/32",
        "--max-conns-per-ip",
        "1",
        "--metrics-listen",
        "127.0.0.1:0",
        "--access-log",
        "true",
    ]));
    let mut lb = Haproxy::start(&bin, e.addr(), send);

    // A client at 127.0.0.2 through the balancer: the upstream sees its
    // address and port in uringtls's header, not HAProxy's.
    let mut a = tls_from("127.0.0.2", lb.addr, &s.client)
        .unwrap_or_else(|err| panic!("first client through haproxy: {err}; {}", lb.report()));
    assert_eq!(echo(&mut a, b"from .2"), b"from .2");
    let raw = up.headers.recv_timeout(WAIT).expect("upstream header");
    let client_a = a.sock.local_addr().expect("addr");
    assert_eq!(header_source(&raw), client_a, "the original client");
    let h = ppp::v2::Header::try_from(&raw[..]).expect("uringtls sends v2");
    assert_eq!(
        h.addresses,
        ppp::v2::Addresses::from((client_a, lb.addr)),
        "and the address it connected to (the balancer's)"
    );

    // Per-address cap 1 on the original address: a second connection
    // from .2 is refused while .3 is served, all through one balancer.
    assert!(
        tls_from("127.0.0.2", lb.addr, &s.client).is_err(),
        "a second connection from 127.0.0.2 is over its cap"
    );
    let mut b = tls_from("127.0.0.3", lb.addr, &s.client).expect("127.0.0.3 is served");
    assert_eq!(echo(&mut b, b"from .3"), b"from .3");
    let raw = up.headers.recv_timeout(WAIT).expect("upstream header");
    assert_eq!(header_source(&raw), b.sock.local_addr().expect("addr"));
    assert_eq!(echo(&mut a, b"still"), b"still", "the first is unaffected");

    // A PROXY header from an address not in the list (127.0.0.4 straight
    // to uringtls), and a listed address (127.0.0.1) without one.
    let mut spoof = tcp_from("127.0.0.4", e.addr()).expect("connect");
    let header = match send {
        "send-proxy" => b"PROXY TCP4 192.0.2.9 198.51.100.1 4000 443\r\n".to_vec(),
        _ => v2_proxy("192.0.2.9:4000"),
    };
    spoof.write_all(&header).expect("write");
    assert!(
        tls_over(spoof, &s.client, "localhost").is_err(),
        "a header from an unlisted address is refused"
    );
    assert!(
        tls_from("127.0.0.1", e.addr(), &s.client).is_err(),
        "a listed address without a header is refused"
    );

    // A LOCAL header (the balancer's own health check) is served, with
    // the balancer's own address.
    let local = tcp_from("127.0.0.1", e.addr()).expect("connect");
    let own = local.local_addr().expect("addr");
    let mut c = tls_after_header(local, &v2_local(), &s.client).expect("LOCAL is served");
    assert_eq!(echo(&mut c, b"check"), b"check");
    let raw = up.headers.recv_timeout(WAIT).expect("upstream header");
    assert_eq!(header_source(&raw), own, "the balancer's own address");

    let text = eventually("both refusals counted", || {
        let t = scrape(metrics_addr(&e));
        (refused(&t, "proxy_header") >= 2.0).then_some(t)
    });
    assert_eq!(refused(&text, "proxy_header"), 2.0, "{text}");
    assert_eq!(refused(&text, "per_ip_conns"), 1.0, "{text}");
    assert_eq!(
        value(&text, "uringtls_handshakes_failed_total", &[]),
        0.0,
        "refusals are not failed handshakes: {text}"
    );
    // The access log names the client, not the balancer.
    operations_common::close(a);
    e.wait_for_stderr(&format!("client={client_a}"));
    drop(lb);
}

#[test]
fn haproxy_send_proxy_v2_in_front_gives_uringtls_the_clients_address() {
    through_haproxy("send-proxy-v2");
}

#[test]
fn haproxy_send_proxy_v1_in_front_gives_uringtls_the_clients_address() {
    through_haproxy("send-proxy");
}

#[test]
fn accept_proxy_changes_on_reload() {
    let s = Setup::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = uringtls_tests::write(dir.path(), "u.toml", "accept_proxy = []\n");
    let cfg_s = cfg.to_str().expect("utf8");
    let e = start_engine(&s.args(&[
        "--shards",
        "1",
        "--config",
        cfg_s,
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    let with_local_header = || {
        let mut sock = tcp_from("127.0.0.1", e.addr()).expect("connect");
        sock.write_all(&v2_local()).expect("write");
        tls_over(sock, &s.client, "localhost")
    };
    assert!(with_local_header().is_err(), "not a listed balancer yet");
    uringtls_tests::write(dir.path(), "u.toml", "accept_proxy = [\"127.0.0.1/32\"]\n");
    assert!(e.reload(1), "reload applied");
    let mut c = with_local_header().expect("a listed balancer now");
    assert!(operations_common::get(&mut c)
        .expect("served")
        .contains("200"));
    // The header and the ClientHello in one segment.
    let sock = tcp_from("127.0.0.1", e.addr()).expect("connect");
    let mut c = tls_after_header(sock, &v2_proxy("192.0.2.9:4000"), &s.client)
        .expect("a client's hello right after the header");
    assert!(operations_common::get(&mut c)
        .expect("served")
        .contains("200"));
    assert!(
        tls_from("127.0.0.1", e.addr(), &s.client).is_err(),
        "and a header is required from it"
    );
    let text = scrape(metrics_addr(&e));
    assert_eq!(refused(&text, "proxy_header"), 2.0, "{text}");
}

#[test]
fn a_silent_balancer_connection_ends_at_the_handshake_timeout() {
    let s = Setup::new();
    let e = start_engine(&s.args(&[
        "--shards",
        "1",
        "--accept-proxy",
        "127.0.0.1",
        "--handshake-timeout",
        "1s",
        "--defer-accept",
        "0",
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    let mut sock: TcpStream = tcp_from("127.0.0.1", e.addr()).expect("connect");
    let mut buf = [0u8; 16];
    // The engine closes it (EOF or reset) once the timeout passes; the
    // socket's own read timeout (WAIT) bounds the wait.
    let r = sock.read(&mut buf);
    assert!(
        matches!(r, Ok(0))
            || r.as_ref()
                .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock),
        "closed by the engine: {r:?}"
    );
    let text = eventually("the timeout counted", || {
        let t = scrape(metrics_addr(&e));
        (value(
            &t,
            "uringtls_handshakes_failed_total",
            &[("reason", "timeout")],
        ) >= 1.0)
            .then_some(t)
    });
    assert_eq!(refused(&text, "proxy_header"), 0.0, "{text}");
}

#[test]
fn the_lists_judge_the_address_in_the_header_not_the_balancers() {
    let s = Setup::new();
    let e = start_engine(&s.args(&[
        "--shards",
        "1",
        "--accept-proxy",
        "127.0.0.1",
        "--deny",
        "192.0.2.9",
        "--allow",
        "192.0.2.0/24",
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    let via_balancer = |client: &str| {
        let sock = tcp_from("127.0.0.1", e.addr()).expect("connect");
        tls_after_header(sock, &v2_proxy(client), &s.client)
    };
    assert!(
        via_balancer("192.0.2.9:4000").is_err(),
        "a denied client behind an allowed balancer"
    );
    let mut c = via_balancer("192.0.2.10:4000").expect("an allowed client");
    assert!(operations_common::get(&mut c)
        .expect("served")
        .contains("200"));
    assert!(
        via_balancer("198.51.100.7:4000").is_err(),
        "a client outside the allow list (the balancer, 127.0.0.1, is outside it too but is not judged)"
    );
    let text = scrape(metrics_addr(&e));
    assert_eq!(refused(&text, "deny_list"), 1.0, "{text}");
    assert_eq!(refused(&text, "allow_list"), 1.0, "{text}");
}
