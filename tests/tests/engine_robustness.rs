//! Bad peers get an alert (plain HTTP: a 400) and a close; nobody else
//! notices.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;
use uringtls_tests::{
    client_config, connect, read_response, start_engine_with_certs, test_certs, EngineProc, WAIT,
};

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Sends `bytes` on a raw socket and returns everything the server sends
/// back until it closes.
fn send_raw(e: &EngineProc, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(e.addr()).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("server neither answered nor closed: {e}"),
        }
    }
    out
}

fn assert_alert(reply: &[u8]) {
    assert!(reply.len() >= 7, "expected a TLS alert, got {reply:?}");
    assert_eq!(reply[0], 0x15, "record type alert expected, got {reply:?}");
    assert_eq!(reply[5], 2, "fatal alert level expected, got {reply:?}");
}

fn still_serves(e: &EngineProc, certs: &uringtls_tests::TestCerts) {
    let mut c = connect(e.addr(), &client_config(&certs.ca_der, BOTH)).expect("connect");
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    c.flush().expect("flush");
    assert_eq!(
        read_response(&mut c).expect("response").0,
        "HTTP/1.1 200 OK"
    );
}

fn engine(extra: &[&str]) -> (EngineProc, uringtls_tests::TestCerts) {
    let certs = test_certs();
    let mut args = vec!["--shards", "1"];
    args.extend_from_slice(extra);
    (start_engine_with_certs(&certs, &args), certs)
}

#[test]
fn garbage_bytes_get_an_alert_and_a_close_while_others_are_served() {
    let (e, certs) = engine(&[]);
    // Hold a healthy connection open across the attack.
    let mut healthy = connect(e.addr(), &client_config(&certs.ca_der, BOTH)).expect("connect");
    let garbage: Vec<u8> = (0..2000u32).map(|i| (i * 7919 % 256) as u8).collect();
    assert_alert(&send_raw(&e, &garbage));
    healthy.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    healthy.flush().expect("flush");
    assert_eq!(
        read_response(&mut healthy).expect("response").0,
        "HTTP/1.1 200 OK"
    );
    still_serves(&e, &certs);
}

#[test]
fn plaintext_http_on_the_tls_port_gets_a_400_and_a_close() {
    let (e, certs) = engine(&[]);
    let reply = send_raw(&e, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(
        reply.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    still_serves(&e, &certs);
}

#[test]
fn an_oversized_record_gets_an_alert_and_a_close() {
    let (e, certs) = engine(&[]);
    // A handshake record claiming 65,000 bytes (over the 16 KiB + 2 KiB limit).
    let mut rec = vec![0x16, 0x03, 0x01, 0xfd, 0xe8];
    rec.extend(std::iter::repeat_n(0u8, 2048));
    assert_alert(&send_raw(&e, &rec));
    still_serves(&e, &certs);
}

#[test]
fn a_client_that_stops_mid_handshake_is_closed_at_the_handshake_timeout() {
    let (e, certs) = engine(&["--handshake-timeout", "300ms"]);
    // Half of a real ClientHello, then silence.
    let mut hello = Vec::new();
    let cfg = client_config(&certs.ca_der, BOTH);
    let mut conn =
        rustls::ClientConnection::new(cfg, "localhost".try_into().expect("name")).expect("client");
    conn.write_tls(&mut hello).expect("hello");
    let half = &hello[..hello.len() / 2];
    let start = Instant::now();
    let reply = send_raw(&e, half);
    let waited = start.elapsed();
    // Closed by the server (EOF, no handshake reply), not by our read timeout.
    assert!(waited < WAIT, "server never closed the half-open handshake");
    assert!(
        reply.is_empty() || reply[0] == 0x15,
        "unexpected reply {reply:?}"
    );
    still_serves(&e, &certs);
}

#[test]
fn an_idle_connection_is_closed_with_close_notify_at_the_idle_timeout() {
    let (e, certs) = engine(&["--idle-timeout", "300ms"]);
    let mut c = connect(e.addr(), &client_config(&certs.ca_der, BOTH)).expect("connect");
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    c.flush().expect("flush");
    assert_eq!(
        read_response(&mut c).expect("response").0,
        "HTTP/1.1 200 OK"
    );
    // Now idle: the server closes cleanly (read_to_end succeeds only on close_notify).
    let mut rest = Vec::new();
    c.read_to_end(&mut rest)
        .expect("clean close at the idle timeout");
    assert!(rest.is_empty());
}

#[test]
fn connections_over_the_per_shard_cap_are_closed_at_once_and_others_keep_working() {
    let (e, certs) = engine(&["--max-conns", "1"]);
    let cfg = client_config(&certs.ca_der, BOTH);
    let mut first = connect(e.addr(), &cfg).expect("first");
    // The second connection is accepted by the kernel, then closed by the
    // engine before any TLS work: the handshake fails.
    assert!(
        connect(e.addr(), &cfg).is_err(),
        "second connection should be refused"
    );
    first.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    first.flush().expect("flush");
    assert_eq!(
        read_response(&mut first).expect("response").0,
        "HTTP/1.1 200 OK"
    );
    drop(first);
    // Once the first is gone, a new one gets in (the close may take a moment
    // to reach the shard: retry on refusal, bounded).
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(mut c) = connect(e.addr(), &cfg) {
            c.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
            c.flush().expect("flush");
            if read_response(&mut c).is_ok() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "never admitted again");
    }
}

#[test]
fn ipv6_loopback_is_served() {
    let certs = test_certs();
    let e = start_engine_with_certs(&certs, &["--listen", "[::1]:0", "--shards", "2"]);
    assert!(e.addr().is_ipv6());
    still_serves(&e, &certs);
}
