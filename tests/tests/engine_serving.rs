//! The engine serves echo and http over TLS 1.2 and 1.3 to a rustls client.

use rand::RngCore;
use std::io::{Read, Write};
use uringtls_tests::{client_config, connect, read_response, start_engine_with_certs, test_certs};

const BOTH: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

#[test]
fn tls12_and_tls13_handshakes_complete_with_the_configured_certificate() {
    let certs = test_certs();
    let e = start_engine_with_certs(&certs, &["--shards", "1", "--service", "echo"]);
    for (v, expect) in [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let cfg = client_config(&certs.ca_der, &[v]);
        let c = connect(e.addr(), &cfg).expect("handshake");
        assert_eq!(c.conn.protocol_version(), Some(expect));
    }
}

#[test]
fn echo_returns_exactly_what_was_sent_for_payloads_up_to_several_mib() {
    let certs = test_certs();
    let e = start_engine_with_certs(&certs, &["--shards", "2", "--service", "echo"]);
    let cfg = client_config(&certs.ca_der, BOTH);
    let mut rng = rand::rng();
    for size in [
        1usize,
        100,
        16 * 1024,
        16 * 1024 + 1,
        300_000,
        5 * 1024 * 1024,
    ] {
        let mut c = connect(e.addr(), &cfg).expect("connect");
        let mut payload = vec![0u8; size];
        rng.fill_bytes(&mut payload);
        // Write from a second socket handle would need splitting; instead
        // write in chunks and read back as we go so neither side blocks.
        let mut got = Vec::with_capacity(size);
        let mut buf = vec![0u8; 64 * 1024];
        for chunk in payload.chunks(64 * 1024) {
            c.write_all(chunk).expect("write");
            c.flush().expect("flush");
            let want = got.len() + chunk.len();
            while got.len() < want {
                let n = c.read(&mut buf).expect("read");
                assert!(n > 0, "server closed early");
                got.extend_from_slice(&buf[..n]);
            }
        }
        assert_eq!(got.len(), size);
        assert!(got == payload, "echo differs for size {size}");
        c.conn.send_close_notify();
        let _ = c.flush();
    }
}

fn http_engine() -> (uringtls_tests::EngineProc, uringtls_tests::TestCerts) {
    let certs = test_certs();
    let e = start_engine_with_certs(&certs, &["--shards", "2", "--service", "http"]);
    (e, certs)
}

#[test]
fn http_answers_keep_alive_gets_on_one_connection() {
    let (e, certs) = http_engine();
    let mut c = connect(e.addr(), &client_config(&certs.ca_der, BOTH)).expect("connect");
    for i in 0..5 {
        write!(c, "GET /{i} HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
        c.flush().expect("flush");
        let (status, headers, body) = read_response(&mut c).expect("response");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(headers.contains("Connection: keep-alive"));
        assert_eq!(body, b"hello world\n");
    }
}

#[test]
fn http_answers_pipelined_gets_in_order_and_head_without_body() {
    let (e, certs) = http_engine();
    let mut c = connect(e.addr(), &client_config(&certs.ca_der, BOTH)).expect("connect");
    c.write_all(b"GET /a HTTP/1.1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n")
        .expect("write");
    c.flush().expect("flush");
    let (s1, _, b1) = read_response(&mut c).expect("1");
    // HEAD: Content-Length is the GET body's length but no body follows.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        c.read_exact(&mut byte).expect("head");
        head.push(byte[0]);
    }
    let (s3, _, b3) = read_response(&mut c).expect("3");
    assert_eq!(
        (s1.as_str(), b1.as_slice()),
        ("HTTP/1.1 200 OK", &b"hello world\n"[..])
    );
    assert!(head.starts_with(b"HTTP/1.1 200 OK"));
    assert_eq!(
        (s3.as_str(), b3.as_slice()),
        ("HTTP/1.1 200 OK", &b"hello world\n"[..])
    );
}

#[test]
fn http_connection_close_gets_a_response_then_close_notify() {
    let (e, certs) = http_engine();
    let mut c = connect(e.addr(), &client_config(&certs.ca_der, BOTH)).expect("connect");
    c.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .expect("write");
    c.flush().expect("flush");
    let (status, headers, _) = read_response(&mut c).expect("response");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(headers.contains("Connection: close"));
    let mut rest = Vec::new();
    // A clean close_notify makes read_to_end return Ok; a bare FIN would be an error.
    c.read_to_end(&mut rest).expect("clean TLS close");
    assert!(rest.is_empty());
}

#[test]
fn http_rejects_garbage_with_400_and_keeps_serving_others() {
    let (e, certs) = http_engine();
    let cfg = client_config(&certs.ca_der, BOTH);
    let mut bad = connect(e.addr(), &cfg).expect("connect");
    bad.write_all(b"\x00\x01garbage garbage\r\n\r\n")
        .expect("write");
    bad.flush().expect("flush");
    let (status, _, _) = read_response(&mut bad).expect("response");
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    let mut good = connect(e.addr(), &cfg).expect("connect");
    good.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    good.flush().expect("flush");
    assert_eq!(read_response(&mut good).expect("ok").0, "HTTP/1.1 200 OK");
}

#[test]
fn http_body_size_setting_sizes_the_response() {
    let certs = test_certs();
    let e = start_engine_with_certs(&certs, &["--shards", "1", "--body-size", "1048576"]);
    let mut c = connect(e.addr(), &client_config(&certs.ca_der, BOTH)).expect("connect");
    for _ in 0..3 {
        c.write_all(b"GET /big HTTP/1.1\r\n\r\n").expect("write");
        c.flush().expect("flush");
        let (_, _, body) = read_response(&mut c).expect("response");
        assert_eq!(body.len(), 1 << 20);
        assert!(body.starts_with(b"hello world\nhello"));
    }
}

/// The server holds its TLS 1.3 tickets back for a moment to send them with
/// the first response; a client that waits for the server before it sends
/// anything still gets them, its connection still serves a request, and
/// its next connection resumes. Both services: http (what the hold is for)
/// and echo.
#[test]
fn a_client_that_sends_nothing_after_its_handshake_still_gets_its_ticket() {
    let certs = test_certs();
    for service in ["http", "echo"] {
        let e = start_engine_with_certs(&certs, &["--shards", "1", "--service", service]);
        let cfg = client_config(&certs.ca_der, &[&rustls::version::TLS13]);
        let mut c = connect(e.addr(), &cfg).expect("handshake");
        assert_eq!(c.conn.handshake_kind(), Some(rustls::HandshakeKind::Full));
        // Bound the wait: a server that never sent the tickets fails the
        // test instead of hanging it.
        c.sock
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .expect("timeout");
        // Read without writing: returns once records (the tickets) came.
        let (read, _) = c.conn.complete_io(&mut c.sock).expect("tickets arrive");
        assert!(read > 0, "{service}: the server sent something");
        let mut plain = [0u8; 1];
        assert!(
            matches!(c.conn.reader().read(&mut plain), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "{service}: no application data was sent before a request"
        );
        // The connection still serves.
        if service == "http" {
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("write");
            let (status, _, body) = read_response(&mut c).expect("response");
            assert!(status.contains("200"), "{status}");
            assert!(!body.is_empty());
        } else {
            c.write_all(b"ping").expect("write");
            let mut b = [0u8; 4];
            c.read_exact(&mut b).expect("echo");
            assert_eq!(&b, b"ping");
        }
        // The ticket was stored: the next connection resumes.
        let again = connect(e.addr(), &cfg).expect("second handshake");
        assert_eq!(
            again.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed),
            "{service}: the ticket sent while the client waited resumes"
        );
    }
}
