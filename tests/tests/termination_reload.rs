//! SIGHUP reload: new certificates and upstreams for new connections,
//! established connections untouched, no accept gap, and a bad file
//! refused with the old configuration still serving.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use uringtls_tests::{
    any_cert_client_config, connect_to, echo_upstream, served_leaf, start_engine, test_certs,
    write, Client, WAIT,
};

fn echo_once(c: &mut Client, msg: &[u8]) -> Vec<u8> {
    c.write_all(msg).unwrap();
    c.flush().unwrap();
    let mut back = vec![0u8; msg.len()];
    c.read_exact(&mut back).unwrap();
    back
}

#[test]
fn new_certificate_serves_new_connections_while_established_ones_continue() {
    let certs = test_certs();
    let v1 = certs.issue(&["localhost"], "v1", "v1", false);
    let (cert, key) = (
        certs.dir.path().join("live.pem"),
        certs.dir.path().join("live.key"),
    );
    std::fs::copy(&v1.cert, &cert).unwrap();
    std::fs::copy(&v1.key, &key).unwrap();
    let e = start_engine(&[
        "--shards",
        "2",
        "--service",
        "echo",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let cfg = any_cert_client_config();
    let mut old = connect_to(e.addr(), &cfg, "localhost").unwrap();
    assert_eq!(served_leaf(&old), v1.der);

    // A client loop runs through every reload: not one attempt may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let looper = {
        let (stop, ok, failed, cfg, addr) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            cfg.clone(),
            e.addr(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match connect_to(addr, &cfg, "localhost").map(|mut c| echo_once(&mut c, b"hi")) {
                    Ok(b) if b == b"hi" => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    let v2 = certs.issue(&["localhost"], "v2", "v2", false);
    std::fs::copy(&v2.cert, &cert).unwrap();
    std::fs::copy(&v2.key, &key).unwrap();
    assert!(e.reload(1), "{}", e.stdout());
    // A fresh client each time: a resumed session shows the certificate of
    // the session it resumes, not the one configured now.
    let fresh = any_cert_client_config;
    let new = connect_to(e.addr(), &fresh(), "localhost").unwrap();
    assert_eq!(
        served_leaf(&new),
        v2.der,
        "new connections get the new certificate"
    );
    assert_eq!(
        echo_once(&mut old, b"still here"),
        b"still here",
        "established connection continues"
    );

    // A garbage certificate: refused, logged, the v2 certificate keeps serving.
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    assert!(!e.reload(2));
    let c = connect_to(e.addr(), &fresh(), "localhost").unwrap();
    assert_eq!(served_leaf(&c), v2.der);
    let log = e.wait_for_stderr("configuration reload failed");
    assert!(log.contains("live.pem"), "{log}");

    // A key that does not match the certificate: refused too.
    std::fs::copy(&v2.cert, &cert).unwrap();
    std::fs::copy(&v1.key, &key).unwrap();
    assert!(!e.reload(3));
    assert!(
        e.stdout().contains("does not match certificate"),
        "{}",
        e.stdout()
    );
    // A missing file: refused.
    std::fs::remove_file(&cert).unwrap();
    assert!(!e.reload(4));

    while ok.load(Ordering::Relaxed) < 20 {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    looper.join().unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "{} connections succeeded",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(echo_once(&mut old, b"and after"), b"and after");
}

#[test]
fn upstreams_change_on_reload_from_the_config_file() {
    let certs = test_certs();
    let (a, b) = (echo_upstream(true), echo_upstream(true));
    let conf = |up: std::net::SocketAddr| {
        let text = format!(
            "service = \"proxy\"\nshards = 1\nproxy_protocol = \"v1\"\nupstream = [\"{up}\"]\ncert = \"{}\"\nkey = \"{}\"\n",
            certs.cert.display(),
            certs.key.display()
        );
        write(certs.dir.path(), "proxy.toml", &text)
    };
    let path = conf(a.addr);
    let e = start_engine(&["--config", path.to_str().unwrap()]);
    let cfg = any_cert_client_config();
    let mut c1 = connect_to(e.addr(), &cfg, "localhost").unwrap();
    assert_eq!(echo_once(&mut c1, b"one"), b"one");
    assert!(
        a.headers.recv_timeout(WAIT).is_ok(),
        "first connection went to A"
    );
    conf(b.addr);
    assert!(e.reload(1));
    let mut c2 = connect_to(e.addr(), &cfg, "localhost").unwrap();
    assert_eq!(echo_once(&mut c2, b"two"), b"two");
    assert!(
        b.headers.recv_timeout(WAIT).is_ok(),
        "new connection went to B"
    );
    assert_eq!(echo_once(&mut c1, b"still A"), b"still A");
    assert!(a.headers.try_recv().is_err() && b.headers.try_recv().is_err());
}

#[test]
fn limits_change_on_reload() {
    let certs = test_certs();
    let conf = |max: usize| {
        let text = format!(
            "service = \"echo\"\nshards = 1\nmax_conns = {max}\ncert = \"{}\"\nkey = \"{}\"\n",
            certs.cert.display(),
            certs.key.display()
        );
        write(certs.dir.path(), "limits.toml", &text)
    };
    let path = conf(1);
    let e = start_engine(&["--config", path.to_str().unwrap()]);
    let cfg = any_cert_client_config();
    let mut first = connect_to(e.addr(), &cfg, "localhost").unwrap();
    assert_eq!(echo_once(&mut first, b"1"), b"1");
    let second = connect_to(e.addr(), &cfg, "localhost").and_then(|mut c| {
        c.write_all(b"2")?;
        c.flush()?;
        let mut b = [0u8; 1];
        c.read_exact(&mut b).map(|_| b)
    });
    assert!(second.is_err(), "max_conns = 1 refuses a second connection");
    conf(2);
    assert!(e.reload(1));
    let mut second = connect_to(e.addr(), &cfg, "localhost").unwrap();
    assert_eq!(echo_once(&mut second, b"2"), b"2");
    assert_eq!(echo_once(&mut first, b"1"), b"1");
}

#[test]
fn settings_that_need_a_restart_are_named_when_a_reload_changes_them() {
    let certs = test_certs();
    let conf = |extra: &str| {
        let text = format!(
            "service = \"echo\"\nshards = 1\ncert = \"{}\"\nkey = \"{}\"\n{extra}",
            certs.cert.display(),
            certs.key.display()
        );
        write(certs.dir.path(), "restart.toml", &text)
    };
    let path = conf("defer_accept = \"10s\"\nlog_level = \"info\"\n");
    let e = start_engine(&["--config", path.to_str().unwrap()]);
    conf("defer_accept = \"0s\"\nlog_level = \"info,uringtls=debug\"\n");
    assert!(e.reload(1), "the rest of the file applies");
    let log = e.wait_for_stderr("setting=\"log_level/log_format\"");
    let log = if log.contains("setting=\"defer_accept\"") {
        log
    } else {
        e.wait_for_stderr("setting=\"defer_accept\"")
    };
    assert_eq!(
        log.matches("only takes effect at restart").count(),
        2,
        "exactly the two changed settings are named: {log}"
    );
}
