//! Several shards share one port, and sessions resume on whichever shard a
//! reconnect lands on.

use std::process::Command;
use uringtls_tests::{
    assert_resumes_across_two_shards, start_engine, start_engine_with_certs, test_certs,
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

#[test]
fn tls13_ticket_resumption_succeeds_20_of_20_across_two_shards() {
    let certs = test_certs();
    let e = start_engine_with_certs(&certs, &["--shards", "2"]);
    assert_resumes_across_two_shards(e, &certs, &[&rustls::version::TLS13], true);
}

#[test]
fn tls12_session_id_resumption_succeeds_20_of_20_across_two_shards() {
    let certs = test_certs();
    let e = start_engine_with_certs(&certs, &["--shards", "2"]);
    assert_resumes_across_two_shards(e, &certs, &[&rustls::version::TLS12], false);
}

#[test]
fn tls12_ticket_resumption_succeeds_20_of_20_across_two_shards() {
    let certs = test_certs();
    let e = start_engine_with_certs(&certs, &["--shards", "2"]);
    assert_resumes_across_two_shards(e, &certs, &[&rustls::version::TLS12], true);
}
