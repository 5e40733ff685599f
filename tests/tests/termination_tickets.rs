//! Shared ticket-key file: two instances resume each other's sessions, and
//! a rotation done on both (SIGHUP) keeps old tickets working until the old
//! key is dropped.

use rand::RngCore;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use uringtls_tests::{
    client_config, connect, engine_fails, set_mode, start_engine, test_certs, write, EngineProc,
    TestCerts,
};

const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

fn key_line() -> String {
    let mut k = [0u8; 48];
    rand::rng().fill_bytes(&mut k);
    k.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_keys(dir: &Path, keys: &[&str]) -> std::path::PathBuf {
    let p = write(
        dir,
        "tickets.keys",
        &format!("# first encrypts, all decrypt\n{}\n", keys.join("\n")),
    );
    set_mode(&p, 0o600);
    p
}

fn instance(certs: &TestCerts, keys: &Path) -> EngineProc {
    start_engine(&[
        "--shards",
        "2",
        "--service",
        "echo",
        "--cert",
        certs.cert.to_str().unwrap(),
        "--key",
        certs.key.to_str().unwrap(),
        "--ticket-key-file",
        keys.to_str().unwrap(),
    ])
}

/// Connects, exchanges a message (which also delivers the server's
/// tickets to the client's store) and reports whether it resumed.
fn visit(e: &EngineProc, cfg: &Arc<rustls::ClientConfig>) -> bool {
    let mut c = connect(e.addr(), cfg).expect("handshake");
    c.write_all(b"x").unwrap();
    c.flush().unwrap();
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
    c.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

#[test]
fn a_session_from_one_instance_resumes_on_the_other_every_time() {
    let certs = test_certs();
    let keys = write_keys(certs.dir.path(), &[&key_line()]);
    let (a, b) = (instance(&certs, &keys), instance(&certs, &keys));
    assert_ne!(a.addr(), b.addr());
    for versions in [TLS13, TLS12] {
        let mut resumed = 0;
        for _ in 0..20 {
            let cfg = client_config(&certs.ca_der, versions);
            assert!(!visit(&a, &cfg), "first visit is a full handshake");
            resumed += visit(&b, &cfg) as usize;
        }
        assert_eq!(resumed, 20, "{versions:?}: resumed on B {resumed}/20");
    }
}

#[test]
fn without_a_shared_file_instances_do_not_resume_each_other() {
    let certs = test_certs();
    let args = [
        "--shards",
        "1",
        "--service",
        "echo",
        "--cert",
        certs.cert.to_str().unwrap(),
        "--key",
        certs.key.to_str().unwrap(),
    ];
    let (a, b) = (start_engine(&args), start_engine(&args));
    let cfg = client_config(&certs.ca_der, TLS13);
    visit(&a, &cfg);
    assert!(!visit(&b, &cfg));
    let again = client_config(&certs.ca_der, TLS13);
    visit(&a, &again);
    assert!(visit(&a, &again), "but the same instance resumes");
}

#[test]
fn after_rotation_old_tickets_resume_until_the_old_key_is_dropped() {
    let certs = test_certs();
    let (k1, k2) = (key_line(), key_line());
    let keys = write_keys(certs.dir.path(), &[&k1]);
    let (a, b) = (instance(&certs, &keys), instance(&certs, &keys));
    let old1 = client_config(&certs.ca_der, TLS13);
    let old2 = client_config(&certs.ca_der, TLS13);
    visit(&a, &old1);
    visit(&a, &old2);

    // Step 1: new key first, old key kept, on both instances.
    write_keys(certs.dir.path(), &[&k2, &k1]);
    assert!(a.reload(1) && b.reload(1));
    assert!(visit(&b, &old1), "ticket under the old key still resumes");
    let new = client_config(&certs.ca_der, TLS13);
    visit(&a, &new);

    // Step 2: old key dropped.
    write_keys(certs.dir.path(), &[&k2]);
    assert!(a.reload(2) && b.reload(2));
    assert!(
        !visit(&b, &old2),
        "ticket under the dropped key is a full handshake"
    );
    assert!(visit(&b, &new), "ticket under the new key resumes");
}

#[test]
fn a_world_readable_ticket_key_file_is_refused_at_start() {
    let certs = test_certs();
    let keys = write_keys(certs.dir.path(), &[&key_line()]);
    set_mode(&keys, 0o644);
    let (code, err) = engine_fails(&[
        "--listen",
        "127.0.0.1:0",
        "--ticket-key-file",
        keys.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("accessible to other users") && err.contains("chmod o-rwx"),
        "{err}"
    );
}

#[test]
fn a_garbage_ticket_key_file_on_reload_is_refused_and_keys_stay() {
    let certs = test_certs();
    let k1 = key_line();
    let keys = write_keys(certs.dir.path(), &[&k1]);
    let a = instance(&certs, &keys);
    let cfg = client_config(&certs.ca_der, TLS13);
    visit(&a, &cfg);
    write_keys(certs.dir.path(), &["not a key"]);
    assert!(!a.reload(1));
    assert!(
        a.stdout().contains("tickets.keys:2: not a ticket key"),
        "{}",
        a.stdout()
    );
    assert!(
        !a.stdout().contains(&k1) && !a.stderr().contains(&k1),
        "key material must never be printed"
    );
    assert!(visit(&a, &cfg), "old keys still decrypt");
}
