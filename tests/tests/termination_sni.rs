//! SNI certificate selection, ECDSA and RSA side by side, and the TLS
//! parameters (versions, suites, groups) from flags and the TOML file.

use std::sync::Arc;
use uringtls_tests::{
    any_cert_client_config, connect_to, engine_fails, served_leaf, start_engine, test_certs, write,
};

#[test]
fn two_names_get_two_certificates_and_an_unknown_name_gets_the_default() {
    let certs = test_certs();
    let a = certs.issue(&["a.test"], "a", "a", false);
    let b = certs.issue(&["*.b.test"], "b", "b", false);
    let a_pair = format!("{},{}", a.cert.display(), a.key.display());
    let b_pair = format!("{},{}", b.cert.display(), b.key.display());
    let e = start_engine(&[
        "--shards",
        "1",
        "--service",
        "echo",
        "--cert",
        certs.cert.to_str().unwrap(),
        "--key",
        certs.key.to_str().unwrap(),
        "--extra-cert",
        &a_pair,
        "--extra-cert",
        &b_pair,
    ]);
    let default = std::fs::read_to_string(&certs.cert).unwrap();
    let cfg = any_cert_client_config();
    let leaf = |name: &str| served_leaf(&connect_to(e.addr(), &cfg, name).expect("handshake"));
    assert_eq!(leaf("a.test"), a.der);
    assert_eq!(leaf("x.b.test"), b.der, "wildcard");
    let unknown = leaf("unknown.test");
    assert_ne!(unknown, a.der);
    assert_ne!(unknown, b.der);
    assert!(default.contains("BEGIN CERTIFICATE"));
    // No SNI at all (an IP address is never sent as SNI): the default too.
    assert_eq!(leaf("127.0.0.1"), unknown);
}

#[test]
fn ecdsa_and_rsa_chains_for_one_name_are_picked_by_the_client_signature_schemes() {
    let certs = test_certs();
    let ec = certs.issue(&["dual.test"], "dual", "dual-ec", false);
    let rsa = certs.issue(&["dual.test"], "dual", "dual-rsa", true);
    let toml = format!(
        "service = \"echo\"\nshards = 1\ncert = \"{}\"\nkey = \"{}\"\n\n[[extra_cert]]\ncert = \"{}\"\nkey = \"{}\"\n\n[[extra_cert]]\ncert = \"{}\"\nkey = \"{}\"\n",
        certs.cert.display(),
        certs.key.display(),
        ec.cert.display(),
        ec.key.display(),
        rsa.cert.display(),
        rsa.key.display()
    );
    let conf = write(certs.dir.path(), "sni.toml", &toml);
    let e = start_engine(&["--config", conf.to_str().unwrap()]);
    let any = any_cert_client_config();
    assert_eq!(
        served_leaf(&connect_to(e.addr(), &any, "dual.test").unwrap()),
        ec.der
    );
    // A client that only verifies RSA signatures gets the RSA chain.
    // The client offers the schemes its verifier supports: RSA only here.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let provider = Arc::new(provider);
    let rsa_only = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(rsa_only_verifier(provider))
        .with_no_client_auth();
    let c = connect_to(e.addr(), &Arc::new(rsa_only), "dual.test").expect("rsa handshake");
    assert_eq!(served_leaf(&c), rsa.der);
}

fn rsa_only_verifier(
    p: Arc<rustls::crypto::CryptoProvider>,
) -> Arc<dyn rustls::client::danger::ServerCertVerifier> {
    use bench_client::tls::insecure::AcceptAnyCert;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};
    // The harness's verifier, offering RSA schemes only.
    #[derive(Debug)]
    struct V(AcceptAnyCert);
    impl ServerCertVerifier for V {
        fn verify_server_cert(
            &self,
            ee: &CertificateDer<'_>,
            inter: &[CertificateDer<'_>],
            name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            self.0.verify_server_cert(ee, inter, name, ocsp, now)
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(m, c, d)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(m, c, d)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            let rsa = |s: &SignatureScheme| {
                matches!(
                    s,
                    SignatureScheme::RSA_PSS_SHA256 | SignatureScheme::RSA_PKCS1_SHA256
                )
            };
            self.0
                .supported_verify_schemes()
                .into_iter()
                .filter(rsa)
                .collect()
        }
    }
    Arc::new(V(AcceptAnyCert::new(p)))
}

#[test]
fn version_bounds_suites_and_groups_are_applied() {
    let certs = test_certs();
    let e = start_engine(&[
        "--shards",
        "1",
        "--service",
        "echo",
        "--cert",
        certs.cert.to_str().unwrap(),
        "--key",
        certs.key.to_str().unwrap(),
        "--tls-min-version",
        "1.3",
        "--cipher-suites",
        "TLS13_CHACHA20_POLY1305_SHA256",
        "--kx-groups",
        "X25519MLKEM768",
    ]);
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = rustls::crypto::aws_lc_rs::ALL_KX_GROUPS.to_vec();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates({
            let mut r = rustls::RootCertStore::empty();
            r.add(certs.ca_der.clone()).unwrap();
            r
        })
        .with_no_client_auth();
    let c = connect_to(e.addr(), &Arc::new(cfg), "localhost").expect("handshake");
    assert_eq!(
        c.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let suite = c.conn.negotiated_cipher_suite().unwrap().suite();
    assert_eq!(suite, rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    let group = c.conn.negotiated_key_exchange_group().unwrap().name();
    assert_eq!(group, rustls::NamedGroup::X25519MLKEM768);
    // A TLS 1.2-only client is refused.
    let tls12 = uringtls_tests::client_config(&certs.ca_der, &[&rustls::version::TLS12]);
    assert!(connect_to(e.addr(), &tls12, "localhost").is_err());
}

#[test]
fn unknown_suite_name_is_refused_at_start_naming_it() {
    let (code, err) = engine_fails(&[
        "--listen",
        "127.0.0.1:0",
        "--cipher-suites",
        "TLS_RSA_WITH_RC4",
    ]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("unknown cipher suite `TLS_RSA_WITH_RC4`"),
        "{err}"
    );
}
