//! Test helpers: a server config like the engine's (trial suites, a
//! resolver that notes the SNI, session cache, tickets) with a self-signed
//! certificate for `localhost`.

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// Serves one certificate and notes the ClientHello's server name for the
/// session, as the engine's resolver does.
#[derive(Debug)]
struct NotingResolver(Arc<CertifiedKey>);

impl ResolvesServerCert for NotingResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        super::session::note_hello_sni(hello.server_name());
        Some(self.0.clone())
    }
}

/// A server config and the certificate it serves (the client's root).
pub(crate) fn server_config_and_cert() -> (Arc<ServerConfig>, CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = super::trial::observe(rustls::crypto::aws_lc_rs::default_provider());
    let signer = provider
        .key_provider
        .load_private_key(key)
        .expect("signing key");
    let certified = Arc::new(CertifiedKey::new(vec![cert.clone()], signer));
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NotingResolver(certified)));
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(1024);
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().expect("ticketer");
    cfg.send_tls13_tickets = 2;
    // TLS 1.3 records are the session's own after the handshake, as in
    // the engine (see `records`).
    cfg.enable_secret_extraction = true;
    (Arc::new(cfg), cert)
}
