//! Several shards share one port, and sessions resume on whichever shard a
//! reconnect lands on.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use uringtls_tests::{
    client_config, connect, read_response, start_engine, start_engine_with_certs, test_certs,
};

#[test]
fn each_shard_has_its_own_listener_on_the_same_port() {
    let e = start_engine(&["--shards", "3"]);
    let out = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", e.addr().port())])
        .output()
        .expect("ss");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 3, "expected 3 listeners:\n{text}");
    assert_eq!(e.stdout().matches("listening on").count(), 3);
}

fn resume_twenty_times(versions: &[&'static rustls::SupportedProtocolVersion], tickets: bool) {
    let certs = test_certs();
    let e = start_engine_with_certs(&certs, &["--shards", "2"]);
    let mut cfg = (*client_config(&certs.ca_der, versions)).clone();
    cfg.resumption = if tickets {
        rustls::client::Resumption::in_memory_sessions(64)
    } else {
        rustls::client::Resumption::in_memory_sessions(64)
            .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly)
    };
    cfg.enable_sni = true;
    let cfg = Arc::new(cfg);
    // First connection: full handshake, saves the session.
    let mut e = e;
    let mut first = connect(e.addr(), &cfg).expect("first");
    exchange(&mut first);
    assert_eq!(
        first.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    let mut resumed = 0;
    for _ in 0..20 {
        let mut c = connect(e.addr(), &cfg).expect("reconnect");
        // TLS 1.3 tickets arrive after the handshake; read a response so the
        // next ticket is stored before reconnecting.
        exchange(&mut c);
        if c.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            resumed += 1;
        }
    }
    assert_eq!(resumed, 20, "resumed {resumed}/20");
    // Both shards resumed sessions (the chance that 21 connections all land
    // on one shard by the kernel's hash is about 1 in a million).
    assert!(e.stop().success());
    let log = e.stderr();
    for shard in 0..2 {
        let line = log
            .lines()
            .find(|l| l.contains("shard stopped") && l.contains(&format!("shard={shard} ")))
            .unwrap_or_else(|| panic!("no stop line for shard {shard}:\n{log}"));
        assert!(
            !line.contains(" resumed=0 "),
            "shard {shard} resumed nothing: {line}"
        );
    }
}

fn exchange(c: &mut uringtls_tests::Client) {
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    c.flush().expect("flush");
    assert_eq!(read_response(c).expect("response").0, "HTTP/1.1 200 OK");
}

#[test]
fn tls13_ticket_resumption_succeeds_20_of_20_across_two_shards() {
    resume_twenty_times(&[&rustls::version::TLS13], true);
}

#[test]
fn tls12_session_id_resumption_succeeds_20_of_20_across_two_shards() {
    resume_twenty_times(&[&rustls::version::TLS12], false);
}

#[test]
fn tls12_ticket_resumption_succeeds_20_of_20_across_two_shards() {
    resume_twenty_times(&[&rustls::version::TLS12], true);
}
