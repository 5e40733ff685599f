//! The proxy service: TLS in front of a plain TCP upstream.

use rand::RngCore;
use std::io::{Read, Write};
use uringtls_tests::{
    client_config, closed_port, connect, echo_upstream, read_response, start_engine, test_certs,
    Client, EngineProc, TestCerts, WAIT,
};

mod operations_common;

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn proxy(certs: &TestCerts, shards: &str, extra: &[&str]) -> EngineProc {
    let mut args = vec![
        "--shards",
        shards,
        "--service",
        "proxy",
        "--cert",
        certs.cert.to_str().expect("utf8"),
        "--key",
        certs.key.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    start_engine(&args)
}

fn checksum(data: &[u8]) -> u64 {
    // FNV-1a: enough to tell payloads apart in failure messages.
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Sends `payload` in chunks, reading the echo back as it goes (a blocking
/// rustls client cannot read and write at once), then closes its sending
/// side and expects the proxy's clean close after the last byte.
fn round_trip(c: &mut Client, payload: &[u8], chunk: usize) -> Vec<u8> {
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
    let n = c.read(&mut buf).expect("clean close expected");
    assert_eq!(n, 0, "no bytes expected after the echo");
    back
}

#[test]
fn payloads_up_to_tens_of_mib_come_back_byte_identical_through_the_proxy() {
    let certs = test_certs();
    let up = echo_upstream(false);
    let e = proxy(&certs, "2", &["--upstream", &up.addr.to_string()]);
    let cfg = client_config(&certs.ca_der, BOTH);
    let mut rng = rand::rng();
    for (size, chunk) in [
        (1usize, 1usize),
        (1000, 1000),
        (16 * 1024 + 1, 4096),
        (1 << 20, 256 * 1024),
        (24 << 20, 1 << 20),
    ] {
        let mut payload = vec![0u8; size];
        rng.fill_bytes(&mut payload);
        let mut c = connect(e.addr(), &cfg).expect("connect");
        let back = round_trip(&mut c, &payload, chunk);
        assert_eq!(back.len(), payload.len(), "size {size}");
        assert_eq!(
            checksum(&back),
            checksum(&payload),
            "size {size}: bytes differ"
        );
    }
}

#[test]
fn tls12_clients_are_proxied_too() {
    let certs = test_certs();
    let up = echo_upstream(false);
    let e = proxy(&certs, "1", &["--upstream", &up.addr.to_string()]);
    let cfg = client_config(&certs.ca_der, &[&rustls::version::TLS12]);
    let mut payload = vec![0u8; 3 << 20];
    rand::rng().fill_bytes(&mut payload);
    let mut c = connect(e.addr(), &cfg).expect("connect");
    assert_eq!(
        c.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let back = round_trip(&mut c, &payload, 128 * 1024);
    assert_eq!(checksum(&back), checksum(&payload));
}

#[test]
fn client_half_close_reaches_the_upstream_which_can_still_answer() {
    // The upstream reads to EOF, then answers with the byte count: only a
    // proxy that propagates the client's half-close (and keeps the other
    // direction open) lets the answer through.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut all = Vec::new();
            if s.read_to_end(&mut all).is_ok() {
                let _ = s.write_all(
                    format!("got {} bytes {:016x}", all.len(), checksum(&all)).as_bytes(),
                );
            }
        }
    });
    let certs = test_certs();
    let e = proxy(&certs, "1", &["--upstream", &up.to_string()]);
    let cfg = client_config(&certs.ca_der, BOTH);
    let mut payload = vec![0u8; 300_000];
    rand::rng().fill_bytes(&mut payload);
    let mut c = connect(e.addr(), &cfg).expect("connect");
    c.write_all(&payload).expect("write");
    c.conn.send_close_notify();
    c.flush().expect("flush");
    let mut answer = Vec::new();
    c.read_to_end(&mut answer)
        .expect("answer, then a clean close");
    let want = format!("got {} bytes {:016x}", payload.len(), checksum(&payload));
    assert_eq!(String::from_utf8_lossy(&answer), want);
}

#[test]
fn upstream_down_gives_every_client_a_clean_close_and_is_logged_once() {
    let certs = test_certs();
    let down = closed_port();
    let e = proxy(
        &certs,
        "1",
        &[
            "--upstream",
            &down.to_string(),
            "--upstream-connect-timeout",
            "2s",
        ],
    );
    let cfg = client_config(&certs.ca_der, BOTH);
    for _ in 0..3 {
        let mut c =
            connect(e.addr(), &cfg).expect("handshake completes before the upstream is tried");
        let started = std::time::Instant::now();
        let mut buf = [0u8; 16];
        let n = c.read(&mut buf).expect("close_notify, not a reset");
        assert_eq!(n, 0);
        assert!(started.elapsed() < WAIT);
    }
    let log = e.wait_for_stderr("upstream connect failed");
    assert_eq!(
        log.matches("upstream connect failed").count(),
        1,
        "a down upstream is logged once, not per client: {log}"
    );
}

#[test]
fn with_upstream_http_an_http_client_gets_502_bad_gateway_when_the_upstream_is_down() {
    let certs = test_certs();
    let down = closed_port().to_string();
    let e = proxy(
        &certs,
        "1",
        &[
            "--upstream",
            &down,
            "--upstream-http",
            "true",
            "--alpn",
            "h2,http/1.1",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let with_alpn = |alpn: &[&[u8]]| {
        let mut cfg = (*client_config(&certs.ca_der, BOTH)).clone();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        std::sync::Arc::new(cfg)
    };
    // ALPN http/1.1, or none: a 502 answer, then close_notify.
    for cfg in [with_alpn(&[b"http/1.1"]), with_alpn(&[])] {
        let mut c = connect(e.addr(), &cfg).expect("handshake");
        c.write_all(b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n")
            .expect("request");
        let (status, headers, body) = read_response(&mut c).expect("an HTTP answer");
        assert_eq!(status, "HTTP/1.1 502 Bad Gateway");
        assert!(
            headers.to_ascii_lowercase().contains("connection: close"),
            "{headers}"
        );
        assert_eq!(body, b"no upstream is reachable\n");
        let mut rest = Vec::new();
        c.read_to_end(&mut rest)
            .expect("close_notify after the answer, not a reset");
        assert!(rest.is_empty());
    }
    // Another protocol (h2): no HTTP/1.1 text, just the clean close.
    let mut c = connect(e.addr(), &with_alpn(&[b"h2"])).expect("handshake");
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).expect("clean close");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    // Every one counted as an unavailable upstream.
    let text = operations_common::scrape(operations_common::metrics_addr(&e));
    let kind = [("kind", "unavailable")];
    let n = operations_common::value(&text, "uringtls_upstream_errors_total", &kind);
    assert_eq!(n, 3.0, "{text}");
}

#[test]
fn a_refusing_upstream_is_skipped_and_the_healthy_one_serves() {
    let certs = test_certs();
    let up = echo_upstream(false);
    let down = closed_port();
    let e = proxy(&certs, "1", &["--upstream", &format!("{down},{}", up.addr)]);
    let cfg = client_config(&certs.ca_der, BOTH);
    for i in 0..6 {
        let mut c = connect(e.addr(), &cfg).expect("connect");
        let msg = format!("hello {i}");
        let back = round_trip(&mut c, msg.as_bytes(), 64);
        assert_eq!(back, msg.as_bytes(), "connection {i}");
    }
}

#[test]
fn proxy_protocol_v1_header_carries_the_client_address() {
    let certs = test_certs();
    let up = echo_upstream(true);
    let e = proxy(
        &certs,
        "1",
        &["--upstream", &up.addr.to_string(), "--proxy-protocol", "v1"],
    );
    let cfg = client_config(&certs.ca_der, BOTH);
    let mut c = connect(e.addr(), &cfg).expect("connect");
    assert_eq!(round_trip(&mut c, b"ping", 64), b"ping");
    let h = up.headers.recv_timeout(WAIT).expect("header");
    let client = c.sock.local_addr().expect("client addr");
    let want = format!(
        "PROXY TCP4 {} {} {} {}\r\n",
        client.ip(),
        e.addr().ip(),
        client.port(),
        e.addr().port()
    );
    assert_eq!(String::from_utf8_lossy(&h), want);
}

#[test]
fn proxy_protocol_v2_header_carries_address_sni_and_alpn() {
    let certs = test_certs();
    let up = echo_upstream(true);
    let e = proxy(
        &certs,
        "1",
        &["--upstream", &up.addr.to_string(), "--proxy-protocol", "v2"],
    );
    let mut cfg = (*client_config(&certs.ca_der, BOTH)).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let cfg = std::sync::Arc::new(cfg);
    let mut c = connect(e.addr(), &cfg).expect("connect");
    assert_eq!(round_trip(&mut c, b"ping", 64), b"ping");
    let raw = up.headers.recv_timeout(WAIT).expect("header");
    let h = ppp::v2::Header::try_from(&raw[..]).expect("valid v2 header");
    let client = c.sock.local_addr().expect("client addr");
    assert_eq!(h.addresses, ppp::v2::Addresses::from((client, e.addr())));
    let tlvs: Vec<(u8, Vec<u8>)> = h
        .tlvs()
        .map(|t| t.expect("tlv"))
        .map(|t| (t.kind, t.value.to_vec()))
        .collect();
    assert!(
        tlvs.contains(&(0x01, b"http/1.1".to_vec())),
        "ALPN TLV: {tlvs:?}"
    );
    assert!(
        tlvs.contains(&(0x02, b"localhost".to_vec())),
        "authority (SNI) TLV: {tlvs:?}"
    );
    let ssl = &tlvs.iter().find(|t| t.0 == 0x20).expect("SSL TLV").1;
    assert_eq!(ssl[0] & 0x01, 0x01, "PP2_CLIENT_SSL set");
}

#[test]
fn upstream_half_close_reaches_the_client_which_can_still_send() {
    // The upstream greets, closes its sending side at once, then reads what
    // the client still sends: the client must see the greeting and a clean
    // TLS end, and its later bytes must still arrive upstream.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = l.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(Ok(mut s)) = l.incoming().next() {
            let _ = s.write_all(b"hello");
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut all = Vec::new();
            let _ = s.read_to_end(&mut all);
            let _ = tx.send(all);
        }
    });
    let certs = test_certs();
    let e = proxy(&certs, "1", &["--upstream", &up.to_string()]);
    let cfg = client_config(&certs.ca_der, BOTH);
    let mut c = connect(e.addr(), &cfg).expect("connect");
    let mut got = Vec::new();
    c.read_to_end(&mut got)
        .expect("greeting, then close_notify");
    assert_eq!(got, b"hello");
    c.write_all(b"still talking")
        .expect("write after the server's close");
    c.conn.send_close_notify();
    c.flush().expect("flush");
    assert_eq!(
        rx.recv_timeout(WAIT).expect("upstream saw EOF"),
        b"still talking"
    );
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
fn a_client_that_stops_reading_stalls_the_upstream_instead_of_growing_memory() {
    // The upstream writes as fast as it can; the client reads nothing for a
    // while. The upstream's writes must block (a write timeout tells us when),
    // the engine's memory must not follow, and every byte must arrive later.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = l.local_addr().expect("addr");
    let (blocked_tx, blocked) = std::sync::mpsc::channel();
    let (resume_tx, resume) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Some(Ok(mut s)) = l.incoming().next() else {
            return;
        };
        s.set_write_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        let chunk = vec![7u8; 64 * 1024];
        let mut sent = 0u64;
        while let Ok(n) = s.write(&chunk) {
            sent += n as u64;
        }
        let _ = blocked_tx.send(sent);
        let _ = resume.recv();
        s.set_write_timeout(None).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Write);
    });
    let certs = test_certs();
    let e = proxy(&certs, "1", &["--upstream", &up.to_string()]);
    let before = rss_kib(e.pid());
    let cfg = client_config(&certs.ca_der, BOTH);
    let mut c = connect(e.addr(), &cfg).expect("connect");
    let sent = blocked
        .recv_timeout(WAIT)
        .expect("the upstream blocks once buffers are full");
    let grown = rss_kib(e.pid()).saturating_sub(before);
    eprintln!("upstream wrote {sent} bytes before blocking; engine RSS grew {grown} KiB");
    assert!(
        grown < 32 * 1024,
        "engine RSS grew {grown} KiB while the client did not read"
    );
    resume_tx.send(()).unwrap();
    let mut got = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = c.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&b| b == 7));
        got += n as u64;
    }
    assert_eq!(got, sent, "every byte the upstream wrote arrives");
}

#[test]
fn an_upstream_that_stops_reading_stalls_the_client_instead_of_growing_memory() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let up = l.local_addr().expect("addr");
    let (go_tx, go) = std::sync::mpsc::channel::<()>();
    let (count_tx, count) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Some(Ok(mut s)) = l.incoming().next() else {
            return;
        };
        let _ = go.recv();
        let mut all = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            all += n as u64;
        }
        let _ = count_tx.send(all);
    });
    let certs = test_certs();
    let e = proxy(&certs, "1", &["--upstream", &up.to_string()]);
    let before = rss_kib(e.pid());
    let cfg = client_config(&certs.ca_der, BOTH);
    let mut c = connect(e.addr(), &cfg).expect("connect");
    // Short socket timeouts for the flood (rustls's stream also tries to read
    // while it writes).
    let short = Some(std::time::Duration::from_millis(300));
    c.sock.set_write_timeout(short).unwrap();
    c.sock.set_read_timeout(short).unwrap();
    let chunk = vec![9u8; 64 * 1024];
    let mut accepted = 0u64;
    // Until the client's own writes block: everything in between is held
    // by kernel buffers and the engine's bounded buffers.
    // (rustls takes nothing more, Ok(0), once its own buffer is full.)
    while let Ok(n @ 1..) = c.write(&chunk) {
        accepted += n as u64;
    }
    let grown = rss_kib(e.pid()).saturating_sub(before);
    eprintln!("client got {accepted} bytes out before blocking; engine RSS grew {grown} KiB");
    assert!(
        grown < 32 * 1024,
        "engine RSS grew {grown} KiB while the upstream did not read"
    );
    go_tx.send(()).unwrap();
    c.sock.set_write_timeout(Some(WAIT)).unwrap();
    c.sock.set_read_timeout(Some(WAIT)).unwrap();
    c.flush().expect("flush the rest");
    c.conn.send_close_notify();
    c.flush().expect("close_notify");
    assert_eq!(
        count.recv_timeout(WAIT).expect("upstream count"),
        accepted,
        "no byte lost"
    );
}

#[test]
fn an_upstream_that_never_answers_the_connect_is_given_up_after_the_connect_timeout() {
    use std::os::fd::AsRawFd;
    // A listener whose accept queue is full and never drained: the kernel
    // drops further SYNs, so a connect to it hangs until given up.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    // SAFETY: listen(2) on a socket this test owns; no pointers.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let addr = l.local_addr().expect("addr");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(s) =
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200))
        {
            fillers.push(s);
        }
    }
    let certs = test_certs();
    let e = proxy(
        &certs,
        "1",
        &[
            "--upstream",
            &addr.to_string(),
            "--upstream-connect-timeout",
            "500ms",
        ],
    );
    let cfg = client_config(&certs.ca_der, BOTH);
    let mut c = connect(e.addr(), &cfg).expect("connect");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(c.read(&mut buf).expect("clean close"), 0);
    eprintln!(
        "closed after {:?} (connect timeout 500ms)",
        started.elapsed()
    );
    e.wait_for_stderr("upstream connect timed out");
    drop(l);
}

#[test]
fn garbage_records_mid_stream_end_that_connection_only() {
    let certs = test_certs();
    let up = echo_upstream(false);
    let e = proxy(&certs, "1", &["--upstream", &up.addr.to_string()]);
    let cfg = client_config(&certs.ca_der, BOTH);
    let mut bystander = connect(e.addr(), &cfg).expect("connect");
    assert_eq!(round_trip_open(&mut bystander, b"before"), b"before");
    let mut bad = connect(e.addr(), &cfg).expect("connect");
    assert_eq!(round_trip_open(&mut bad, b"ok"), b"ok");
    // Bytes that are no TLS record, straight on the socket.
    bad.sock
        .write_all(b"\x17\x03\x03\x00\x05hello")
        .expect("raw write");
    let mut buf = [0u8; 64];
    assert!(
        bad.read(&mut buf).is_err(),
        "an alert or a reset ends the bad connection"
    );
    assert_eq!(round_trip_open(&mut bystander, b"after"), b"after");
}

/// One echo exchange, leaving the connection open.
fn round_trip_open(c: &mut Client, msg: &[u8]) -> Vec<u8> {
    c.write_all(msg).expect("write");
    c.flush().expect("flush");
    let mut back = vec![0u8; msg.len()];
    c.read_exact(&mut back).expect("read");
    back
}

#[test]
fn idle_proxied_connections_close_at_the_idle_timeout_but_active_ones_stay() {
    let certs = test_certs();
    let up = echo_upstream(false);
    let e = proxy(
        &certs,
        "1",
        &[
            "--upstream",
            &up.addr.to_string(),
            "--idle-timeout",
            "400ms",
        ],
    );
    let cfg = client_config(&certs.ca_der, BOTH);
    // Active: a message every 100 ms (pacing, not waiting) for 1.2 s, three
    // idle timeouts long.
    let mut active = connect(e.addr(), &cfg).expect("connect");
    for i in 0..12 {
        let msg = format!("tick {i}");
        assert_eq!(round_trip_open(&mut active, msg.as_bytes()), msg.as_bytes());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Idle: closed cleanly by the engine.
    let mut idle = connect(e.addr(), &cfg).expect("connect");
    let mut buf = [0u8; 8];
    assert_eq!(
        idle.read(&mut buf)
            .expect("clean close at the idle timeout"),
        0
    );
}
