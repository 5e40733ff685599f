//! Start-up errors, and the SIGTERM drain.

use std::io::Write;
use uringtls_tests::{
    client_config, connect, engine_fails, read_response, start_engine_with_certs, test_certs, write,
};

#[test]
fn sigterm_lets_an_in_flight_request_complete_and_exits_zero() {
    let certs = test_certs();
    let mut e = start_engine_with_certs(&certs, &["--shards", "2"]);
    let cfg = client_config(&certs.ca_der, &[&rustls::version::TLS13]);
    let mut c = connect(e.addr(), &cfg).expect("connect");
    // Half a request is in the server when the signal arrives.
    c.write_all(b"GET / HTTP/1.1\r\nHost: loc").expect("write");
    c.flush().expect("flush");
    e.signal(libc::SIGTERM);
    // Wait for the drain to begin (the log line), then finish the request.
    let deadline = std::time::Instant::now() + uringtls_tests::WAIT;
    while !e.stderr().contains("draining") {
        assert!(std::time::Instant::now() < deadline, "no drain log line");
        std::thread::yield_now();
    }
    c.write_all(b"alhost\r\n\r\n").expect("write rest");
    c.flush().expect("flush");
    let (status, _, body) = read_response(&mut c).expect("response after SIGTERM");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, b"hello world\n");
    let status = e.wait();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", e.stderr());
}

#[test]
fn sigterm_lets_a_connection_send_its_first_request_after_the_drain_began() {
    // A client that connected just before the stop (here: handshake done,
    // nothing sent yet) is owed an answer, as during an upgrade; only
    // connections idle between requests are closed by the drain.
    let certs = test_certs();
    let mut e = start_engine_with_certs(&certs, &["--shards", "1", "--grace", "120s"]);
    let cfg = client_config(&certs.ca_der, &[&rustls::version::TLS13]);
    let mut c = connect(e.addr(), &cfg).expect("connect");
    e.signal(libc::SIGTERM);
    e.wait_for_stderr("listener closed; draining");
    c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    c.flush().expect("flush");
    let (status, _, body) = read_response(&mut c).expect("response during the drain");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, b"hello world\n");
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut c, &mut rest).expect("then a clean close_notify");
    assert_eq!(e.wait().code(), Some(0), "stderr:\n{}", e.stderr());
}

#[test]
fn sigterm_closes_idle_keep_alive_connections_with_close_notify_and_exits_zero() {
    let certs = test_certs();
    // A grace period far longer than the test may take: the exit must come
    // from the idle connection being closed, not from the grace running out.
    let mut e = start_engine_with_certs(&certs, &["--shards", "1", "--grace", "120s"]);
    let mut c = connect(
        e.addr(),
        &client_config(&certs.ca_der, &[&rustls::version::TLS13]),
    )
    .expect("connect");
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    c.flush().expect("flush");
    assert_eq!(
        read_response(&mut c).expect("response").0,
        "HTTP/1.1 200 OK"
    );
    e.signal(libc::SIGTERM);
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut c, &mut rest).expect("clean close_notify");
    assert_eq!(e.wait().code(), Some(0));
}

#[test]
fn zero_shards_is_refused_naming_the_flag() {
    let (code, err) = engine_fails(&["--shards", "0"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("flag --shards") && err.contains("use 1 or more"),
        "{err}"
    );
}

#[test]
fn a_bad_address_is_refused_naming_the_flag() {
    let (code, err) = engine_fails(&["--listen", "localhost:notaport"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("flag --listen") && err.contains("IP:PORT"),
        "{err}"
    );
}

#[test]
fn a_missing_config_file_is_refused_naming_the_file() {
    let (code, err) = engine_fails(&["--config", "/nonexistent/uringtls.toml"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("/nonexistent/uringtls.toml"), "{err}");
}

#[test]
fn a_bad_config_field_is_refused_naming_file_and_field() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = write(dir.path(), "bad.toml", "shards = 0\n");
    let (code, err) = engine_fails(&["--config", f.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("bad.toml: field `shards`"), "{err}");
    let f = write(dir.path(), "typo.toml", "idle_timout = \"5s\"\n");
    let (_, err) = engine_fails(&["--config", f.to_str().unwrap()]);
    assert!(
        err.contains("typo.toml") && err.contains("idle_timout"),
        "{err}"
    );
}

#[test]
fn unreadable_pem_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let cert = write(dir.path(), "cert.pem", "not a certificate\n");
    let key = write(dir.path(), "key.pem", "not a key\n");
    uringtls_tests::set_mode(&key, 0o600);
    let (code, err) = engine_fails(&[
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("cert.pem") && err.contains("certificate"),
        "{err}"
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let a = test_certs();
    let b = test_certs();
    let (code, err) = engine_fails(&[
        "--cert",
        a.cert.to_str().unwrap(),
        "--key",
        b.key.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("does not match certificate"), "{err}");
}

#[test]
fn nothing_is_bound_when_the_config_is_bad() {
    // Bind a port, free it, and make the engine fail on a later check: the
    // port must still be free afterwards (nothing bound before validation).
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    drop(l);
    let a = test_certs();
    let b = test_certs();
    let (_, err) = engine_fails(&[
        "--listen",
        &addr,
        "--cert",
        a.cert.to_str().unwrap(),
        "--key",
        b.key.to_str().unwrap(),
    ]);
    assert!(err.contains("does not match"), "{err}");
    std::net::TcpListener::bind(&addr).expect("port still free");
}
