//! `/metrics` reports exactly what a scripted run did, summed over shards.

mod operations_common;

use operations_common::{close, eventually, get, metrics_addr, scrape, tls_from, value, Setup};
use std::io::{Read, Write};
use uringtls_tests::start_engine;

#[test]
fn metrics_report_the_exact_counts_of_a_scripted_run() {
    let s = Setup::new();
    let e = start_engine(&s.args(&[
        "--shards",
        "2",
        "--deny",
        "127.0.0.2",
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    let m = metrics_addr(&e);
    let tls13 = [&rustls::version::TLS13];

    // k = 3 full handshakes: two fresh clients, and the first of a client
    // that then resumes j = 2 times (TLS 1.3 tickets, whichever shard).
    for _ in 0..2 {
        let cfg = uringtls_tests::client_config(&s.certs.ca_der, &tls13);
        let mut c = tls_from("127.0.0.1", e.addr(), &cfg).expect("full");
        assert!(get(&mut c).expect("served").contains("200"));
        close(c);
    }
    let resuming = uringtls_tests::client_config(&s.certs.ca_der, &tls13);
    for i in 0..3 {
        let mut c = tls_from("127.0.0.1", e.addr(), &resuming).expect("handshake");
        let kind = c.conn.handshake_kind();
        assert!(get(&mut c).expect("served").contains("200"));
        close(c);
        let want = if i == 0 {
            rustls::HandshakeKind::Full
        } else {
            rustls::HandshakeKind::Resumed
        };
        assert_eq!(kind, Some(want), "connection {i}");
    }
    // m = 2 refused by the deny list.
    for _ in 0..2 {
        assert!(tls_from("127.0.0.2", e.addr(), &s.client).is_err());
    }
    // Plaintext HTTP on the TLS port: answered 400 and refused (not a
    // failed handshake, not a close). 1 failed handshake: a client that
    // does not trust the certificate. Its CA has the same name as ours, so
    // the signature check fails and the client sends a decrypt_error alert.
    let mut plain = std::net::TcpStream::connect(e.addr()).expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut sink = Vec::new();
    let _ = plain.read_to_end(&mut sink);
    let stranger = uringtls_tests::test_certs();
    let distrust = uringtls_tests::client_config(&stranger.ca_der, &tls13);
    assert!(tls_from("127.0.0.1", e.addr(), &distrust).is_err());

    let text = eventually("every connection to be closed and counted", || {
        let t = scrape(m);
        let settled = value(&t, "uringtls_connections_active", &[]) == 0.0
            && value(&t, "uringtls_connections_closed_total", &[]) == 6.0
            && value(&t, "uringtls_connections_refused_total", &[]) == 3.0;
        settled.then_some(t)
    });
    let v = |name: &str, labels: &[(&str, &str)]| value(&text, name, labels);
    assert_eq!(v("uringtls_connections_accepted_total", &[]), 9.0, "{text}");
    assert_eq!(v("uringtls_handshakes_total", &[("kind", "full")]), 3.0);
    assert_eq!(v("uringtls_handshakes_total", &[("kind", "resumed")]), 2.0);
    assert_eq!(
        v(
            "uringtls_connections_refused_total",
            &[("limit", "deny_list")]
        ),
        2.0
    );
    assert_eq!(
        v(
            "uringtls_connections_refused_total",
            &[("limit", "plain_http")]
        ),
        1.0
    );
    assert_eq!(v("uringtls_connections_refused_total", &[]), 3.0);
    assert_eq!(
        v("uringtls_connections_closed_total", &[("reason", "normal")]),
        5.0
    );
    assert_eq!(
        v(
            "uringtls_connections_closed_total",
            &[("reason", "handshake_failed")]
        ),
        1.0
    );
    assert_eq!(v("uringtls_handshakes_failed_total", &[]), 1.0);
    assert_eq!(
        v(
            "uringtls_handshakes_failed_total",
            &[("reason", "alert_decrypt_error")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(v("uringtls_handshake_duration_seconds_count", &[]), 5.0);
    assert_eq!(
        v("uringtls_tls_sessions_total", &[("version", "TLSv1_3")]),
        5.0
    );
    assert_eq!(
        v("uringtls_tickets_total", &[("event", "accepted")]),
        2.0,
        "{text}"
    );
    assert_eq!(v("uringtls_tickets_total", &[("event", "rejected")]), 0.0);
    assert_eq!(
        v("uringtls_tickets_total", &[("event", "issued")]),
        5.0,
        "one per handshake"
    );
    assert!(v("uringtls_received_bytes_total", &[]) > 0.0);
    assert!(v("uringtls_sent_bytes_total", &[]) > 0.0);
    for shard in ["0", "1"] {
        assert!(
            text.contains(&format!(
                "uringtls_shard_cpu_seconds_total{{shard=\"{shard}\"}} "
            )),
            "cpu series for shard {shard}: {text}"
        );
    }
    assert!(
        v("uringtls_shard_cpu_seconds_total", &[]) > 0.0,
        "handshakes cost CPU"
    );
    println!("{text}");
}

#[test]
fn metrics_endpoint_answers_404_elsewhere_and_is_off_by_default() {
    let s = Setup::new();
    let e = start_engine(&s.args(&["--shards", "1"]));
    assert!(
        !e.stdout().contains("metrics at"),
        "no endpoint unless asked"
    );
    let e = start_engine(&s.args(&["--shards", "1", "--metrics-listen", "127.0.0.1:0"]));
    let mut c = std::net::TcpStream::connect(metrics_addr(&e)).expect("connect");
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    let mut out = String::new();
    c.read_to_string(&mut out).expect("read");
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
}

#[test]
fn a_scrape_is_answered_while_silent_clients_hold_connections_to_the_endpoint() {
    let s = Setup::new();
    let e = start_engine(&s.args(&["--shards", "1", "--metrics-listen", "127.0.0.1:0"]));
    let m = metrics_addr(&e);
    // Connected (the kernel completed each handshake) but never a byte.
    let silent: Vec<std::net::TcpStream> = (0..6)
        .map(|_| std::net::TcpStream::connect(m).expect("connect"))
        .collect();
    let page = scrape(m);
    assert!(
        page.contains("uringtls_connections_accepted_total"),
        "{page}"
    );
    // None of them has been closed yet: the scrape did not wait for their
    // deadlines to pass.
    for (i, c) in silent.iter().enumerate() {
        c.set_nonblocking(true).expect("nonblocking");
        let r = (&*c).read(&mut [0u8; 1]);
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "silent client {i} was closed before the scrape was answered ({r:?})"
        );
    }
}

/// Ends `c` as wrk or a browser does: TCP FIN, no `close_notify`; then
/// reads until the server closes too (so that no unread byte turns the
/// close into a reset).
fn fin_without_close_notify(mut c: uringtls_tests::Client) {
    c.sock
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let _ = c.sock.read_to_end(&mut Vec::new());
}

/// Every connection closed and counted: (eof, error, normal).
fn close_counts(m: std::net::SocketAddr, n: f64) -> (f64, f64, f64) {
    let t = eventually("every connection to be closed and counted", || {
        let t = scrape(m);
        (value(&t, "uringtls_connections_active", &[]) == 0.0
            && value(&t, "uringtls_connections_closed_total", &[]) == n)
            .then_some(t)
    });
    let r = |reason| {
        value(
            &t,
            "uringtls_connections_closed_total",
            &[("reason", reason)],
        )
    };
    (r("eof"), r("error"), r("normal"))
}

#[test]
fn a_client_closing_without_close_notify_between_requests_is_counted_eof_and_resets_stay_errors() {
    let s = Setup::new();
    let e = start_engine(&s.args(&["--shards", "1", "--metrics-listen", "127.0.0.1:0"]));
    let m = metrics_addr(&e);
    // Reads its whole response, then FIN without close_notify: `eof`.
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("handshake");
    assert!(get(&mut c).expect("served").contains("200"));
    fin_without_close_notify(c);
    // A FIN in the middle of a request: cut off, an `error`.
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("handshake");
    c.write_all(b"GET / HTTP/1.1\r\nHo").expect("write");
    c.flush().expect("flush");
    fin_without_close_notify(c);
    // A reset after a request: an `error`.
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("handshake");
    assert!(get(&mut c).expect("served").contains("200"));
    socket2::SockRef::from(&c.sock)
        .set_linger(Some(std::time::Duration::ZERO))
        .expect("linger");
    drop(c);
    // close_notify: `normal`.
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("handshake");
    assert!(get(&mut c).expect("served").contains("200"));
    close(c);
    assert_eq!(
        close_counts(m, 4.0),
        (1.0, 2.0, 1.0),
        "(eof, error, normal)"
    );
}

#[test]
fn echo_and_proxy_clients_closing_without_close_notify_are_counted_eof() {
    let s = Setup::new();
    let up = uringtls_tests::echo_upstream(false);
    let upstream = up.addr.to_string();
    for service in [
        &["--service", "echo"][..],
        &["--service", "proxy", "--upstream", &upstream],
    ] {
        let mut args = vec!["--shards", "1", "--metrics-listen", "127.0.0.1:0"];
        args.extend_from_slice(service);
        let e = start_engine(&s.args(&args));
        let m = metrics_addr(&e);
        let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("handshake");
        c.write_all(b"ping").expect("write");
        c.flush().expect("flush");
        let mut back = [0u8; 4];
        c.read_exact(&mut back).expect("echoed");
        assert_eq!(&back, b"ping");
        fin_without_close_notify(c);
        assert_eq!(
            close_counts(m, 1.0),
            (1.0, 0.0, 0.0),
            "{service:?}: (eof, error, normal)"
        );
    }
}

#[test]
fn scrapes_get_the_format_they_ask_for_and_promtool_accepts_the_prometheus_text() {
    let s = Setup::new();
    let e = start_engine(&s.args(&["--shards", "2", "--metrics-listen", "127.0.0.1:0"]));
    let m = metrics_addr(&e);
    // Some traffic, so that labelled families have series.
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("handshake");
    assert!(get(&mut c).expect("served").contains("200"));
    close(c);
    let ask = |req: &str| {
        let mut c = std::net::TcpStream::connect(m).expect("connect");
        c.set_read_timeout(Some(uringtls_tests::WAIT))
            .expect("timeout");
        c.write_all(req.as_bytes()).expect("write");
        let mut out = String::new();
        c.read_to_string(&mut out).expect("read");
        let (head, body) = out.split_once("\r\n\r\n").expect("head and body");
        (head.to_string(), body.to_string())
    };
    let (head, text) =
        ask("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\n\r\n");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    assert!(
        text.contains("# HELP uringtls_connections_accepted_total "),
        "{text}"
    );
    let (head, om) = ask(
        "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3\r\n\r\n",
    );
    assert!(
        head.contains("Content-Type: application/openmetrics-text"),
        "{head}"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    let (head, body) = ask("HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(body.is_empty(), "HEAD has no body: {body}");

    if !uringtls_tests::require_tool("promtool") {
        return;
    }
    uringtls_tests::promtool_check(&text);
}
