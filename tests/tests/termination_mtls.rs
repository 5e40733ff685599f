//! Client-certificate authentication (mTLS) and the identity it gives the
//! service (seen here through the PROXY v2 header the proxy sends).

use std::io::{Read, Write};
use std::sync::Arc;
use uringtls_tests::{
    connect_to, echo_upstream, start_engine, test_certs, Client, EngineProc, Leaf, TestCerts, WAIT,
};

fn engine(certs: &TestCerts, mode: &str, upstream: &str) -> EngineProc {
    start_engine(&[
        "--shards",
        "1",
        "--service",
        "proxy",
        "--upstream",
        upstream,
        "--proxy-protocol",
        "v2",
        "--cert",
        certs.cert.to_str().unwrap(),
        "--key",
        certs.key.to_str().unwrap(),
        "--client-auth",
        mode,
        "--client-ca",
        certs.ca.to_str().unwrap(),
    ])
}

fn client(certs: &TestCerts, leaf: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.ca_der.clone()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match leaf {
        Some(l) => b
            .with_client_auth_cert(vec![l.der.clone()], l.key_der.clone_key())
            .unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// One echo exchange; TLS 1.3 clients learn of a refused certificate only
/// here (the server's alert follows their Finished).
fn exchange(c: &mut Client) -> std::io::Result<Vec<u8>> {
    c.write_all(b"ping")?;
    c.flush()?;
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf)?;
    Ok(buf.to_vec())
}

fn refused(e: &EngineProc, cfg: &Arc<rustls::ClientConfig>) -> bool {
    match connect_to(e.addr(), cfg, "localhost") {
        Err(_) => true,
        Ok(mut c) => exchange(&mut c).is_err(),
    }
}

#[test]
fn required_client_auth_refuses_a_client_without_a_certificate() {
    let certs = test_certs();
    let up = echo_upstream(true);
    let e = engine(&certs, "required", &up.addr.to_string());
    assert!(refused(&e, &client(&certs, None)));
    assert!(
        up.headers.try_recv().is_err(),
        "nothing may reach the upstream"
    );
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let certs = test_certs();
    let other = test_certs();
    let stranger = other.issue(&["mallory.test"], "mallory", "mallory", false);
    let up = echo_upstream(true);
    let e = engine(&certs, "required", &up.addr.to_string());
    assert!(refused(&e, &client(&certs, Some(&stranger))));
    let e2 = engine(&certs, "optional", &up.addr.to_string());
    assert!(
        refused(&e2, &client(&certs, Some(&stranger))),
        "optional still verifies a sent certificate"
    );
}

#[test]
fn a_valid_client_certificate_identity_reaches_the_service() {
    let certs = test_certs();
    let alice = certs.issue(&["alice.test"], "alice", "alice", false);
    let up = echo_upstream(true);
    let e = engine(&certs, "required", &up.addr.to_string());
    let mut c =
        connect_to(e.addr(), &client(&certs, Some(&alice)), "localhost").expect("handshake");
    assert_eq!(exchange(&mut c).expect("served"), b"ping");
    let raw = up.headers.recv_timeout(WAIT).expect("PROXY header");
    let h = ppp::v2::Header::try_from(&raw[..]).expect("v2");
    let tlvs: Vec<(u8, Vec<u8>)> = h
        .tlvs()
        .map(|t| t.unwrap())
        .map(|t| (t.kind, t.value.to_vec()))
        .collect();
    let subject = tlvs.iter().find(|t| t.0 == 0xE0).expect("subject TLV");
    assert_eq!(String::from_utf8_lossy(&subject.1), "CN=alice");
    let ssl = &tlvs.iter().find(|t| t.0 == 0x20).expect("SSL TLV").1;
    assert_eq!(ssl[0] & 0x02, 0x02, "PP2_CLIENT_CERT_CONN");
    assert_eq!(&ssl[1..5], &[0, 0, 0, 0], "verified");
    assert!(
        ssl.windows(8).any(|w| w == b"\x22\x00\x05alice"),
        "CN sub-TLV: {ssl:?}"
    );
}

#[test]
fn optional_client_auth_serves_a_client_without_a_certificate() {
    let certs = test_certs();
    let up = echo_upstream(true);
    let e = engine(&certs, "optional", &up.addr.to_string());
    let mut c = connect_to(e.addr(), &client(&certs, None), "localhost").expect("handshake");
    assert_eq!(exchange(&mut c).expect("served"), b"ping");
    let raw = up.headers.recv_timeout(WAIT).expect("PROXY header");
    let h = ppp::v2::Header::try_from(&raw[..]).expect("v2");
    assert!(
        h.tlvs().map(|t| t.unwrap()).all(|t| t.kind != 0xE0),
        "no subject without a certificate"
    );
}
