//! The http service's limits on what a client sends: the header limit is
//! exact, ambiguous framing (request smuggling's desync primitives) gets 400,
//! bodies over `--max-body` get 413, and a request trickled past
//! `--request-timeout` is cut off. Each refusal closes the connection.

mod operations_common;

use operations_common::{eventually, metrics_addr, scrape, tls_from, value, Setup};
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};
use uringtls_tests::{start_engine, EngineProc, WAIT};

/// Sends `request` in one write on a new connection and reads until the
/// engine closes: (everything received, whether it ended with close_notify).
fn exchange(e: &EngineProc, s: &Setup, request: &[u8]) -> (String, bool) {
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("handshake");
    c.write_all(request).expect("send");
    c.flush().expect("flush");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let clean = loop {
        match c.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => break false,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break false,
            Err(e) => panic!(
                "not closed within {WAIT:?} ({e}); received {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), clean)
}

/// A GET whose header block is exactly `len` bytes.
fn request_of(len: usize) -> Vec<u8> {
    let fixed = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: \r\n\r\n".len();
    let mut r = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: ".to_vec();
    r.extend(std::iter::repeat_n(b'a', len - fixed));
    r.extend(b"\r\n\r\n");
    assert_eq!(r.len(), len);
    r
}

/// `reply` is one response with `status`, then the close.
fn assert_refused(reply: &str, status: &str, what: &str) {
    assert!(
        reply.starts_with(&format!("HTTP/1.1 {status}\r\n")) && reply.contains("Connection: close"),
        "{what}: {reply:?}"
    );
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{what}: {reply:?}");
}

#[test]
fn a_header_block_over_the_limit_gets_431_even_when_it_arrives_whole() {
    let s = Setup::new();
    let e = start_engine(&s.args(&["--shards", "1"]));
    for len in [9_000, 12_200] {
        let (reply, clean) = exchange(&e, &s, &request_of(len));
        assert_refused(
            &reply,
            "431 Request Header Fields Too Large",
            &format!("{len}"),
        );
        assert!(clean, "closed with close_notify after the 431");
    }
    // At the limit exactly: served (and kept alive until we close).
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("handshake");
    c.write_all(&request_of(8192)).expect("send");
    c.flush().expect("flush");
    let (status, _, _) = uringtls_tests::read_response(&mut c).expect("response");
    assert_eq!(status, "HTTP/1.1 200 OK");

    let small = start_engine(&s.args(&["--shards", "1", "--max-header", "1024"]));
    let (reply, _) = exchange(&small, &s, &request_of(3_000));
    assert_refused(
        &reply,
        "431 Request Header Fields Too Large",
        "3000 over 1024",
    );
    let (reply, _) = exchange(&small, &s, &request_of(1025));
    assert_refused(
        &reply,
        "431 Request Header Fields Too Large",
        "1025 over 1024",
    );
}

#[test]
fn ambiguous_content_length_gets_400_and_the_pipelined_request_is_not_served() {
    let s = Setup::new();
    let e = start_engine(&s.args(&["--shards", "1"]));
    for req in [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nabcdeGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nabcdeGET / HTTP/1.1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nabcde",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    ] {
        let (reply, clean) = exchange(&e, &s, req.as_bytes());
        assert_refused(&reply, "400 Bad Request", req);
        assert!(clean, "closed with close_notify after the 400");
    }
}

#[test]
fn a_body_over_max_body_gets_413_and_close() {
    let s = Setup::new();
    let e = start_engine(&s.args(&["--shards", "1", "--max-body", "1KiB"]));
    let (reply, clean) = exchange(
        &e,
        &s,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1025\r\n\r\n",
    );
    assert_refused(&reply, "413 Content Too Large", "1025 over 1 KiB");
    assert!(clean);
    let (reply, _) = exchange(
        &e,
        &s,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
    );
    assert_refused(&reply, "413 Content Too Large", "2^64-1");
    // The body sent along at once, as a client that does not wait: the
    // 413 still arrives.
    let mut req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 16384\r\n\r\n".to_vec();
    req.extend([b'x'; 16384]);
    let (reply, _) = exchange(&e, &s, &req);
    assert_refused(&reply, "413 Content Too Large", "16 KiB sent along");
    // At the limit: served, and the connection stays usable.
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("handshake");
    let mut req = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n".to_vec();
    req.extend([b'x'; 1024]);
    req.extend(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    c.write_all(&req).expect("send");
    c.flush().expect("flush");
    for _ in 0..2 {
        let (status, _, _) = uringtls_tests::read_response(&mut c).expect("response");
        assert_eq!(status, "HTTP/1.1 200 OK");
    }
}

/// Writes one byte every 200 ms on `c` until the engine closes it;
/// returns how long that took. Panics if it is not closed within WAIT.
fn trickle_until_closed(c: &mut uringtls_tests::Client, what: &str) -> Duration {
    c.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        assert!(start.elapsed() < WAIT, "{what}: never cut off");
        if c.write_all(b"x").and_then(|_| c.flush()).is_err() {
            return start.elapsed();
        }
        match c.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => return start.elapsed(),
        }
    }
}

#[test]
fn a_request_trickled_past_the_request_timeout_is_cut_off_body_or_headers() {
    let s = Setup::new();
    let e = start_engine(&s.args(&[
        "--shards",
        "1",
        "--request-timeout",
        "1s",
        "--header-timeout",
        "10s",
        "--idle-timeout",
        "60s",
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    // The body: each byte well within the idle timeout, the whole never.
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("handshake");
    c.write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
        .expect("headers");
    c.flush().expect("flush");
    let (status, _, _) = uringtls_tests::read_response(&mut c).expect("answered at its headers");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let body = trickle_until_closed(&mut c, "trickled body");
    // Headers, with the request timeout shorter than the header timeout.
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("handshake");
    c.write_all(b"GET / HTTP/1.1\r\n").expect("start a request");
    let headers = trickle_until_closed(&mut c, "trickled headers");
    println!("request timeout 1s: trickled body cut off after {body:?}, headers after {headers:?}");

    let text = eventually("the request timeouts to be counted", || {
        let t = scrape(metrics_addr(&e));
        (value(
            &t,
            "uringtls_connections_closed_total",
            &[("reason", "request_timeout")],
        ) == 2.0)
            .then_some(t)
    });
    for other in ["idle_timeout", "header_timeout"] {
        assert_eq!(
            value(
                &text,
                "uringtls_connections_closed_total",
                &[("reason", other)]
            ),
            0.0,
            "{other}"
        );
    }
    // A request at normal speed is served meanwhile.
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("handshake");
    assert!(operations_common::get(&mut c).expect("get").contains("200"));
}
