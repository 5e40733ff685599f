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
    // 2 failed handshakes: plaintext on the TLS port, and a client that
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
            && value(&t, "uringtls_connections_closed_total", &[]) == 7.0;
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
    assert_eq!(v("uringtls_connections_refused_total", &[]), 2.0);
    assert_eq!(
        v("uringtls_connections_closed_total", &[("reason", "normal")]),
        5.0
    );
    assert_eq!(
        v(
            "uringtls_connections_closed_total",
            &[("reason", "handshake_failed")]
        ),
        2.0
    );
    assert_eq!(v("uringtls_handshakes_failed_total", &[]), 2.0);
    assert_eq!(
        v(
            "uringtls_handshakes_failed_total",
            &[("reason", "alert_decrypt_error")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        v(
            "uringtls_handshakes_failed_total",
            &[("reason", "invalid_message")]
        ),
        1.0
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
