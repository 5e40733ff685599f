//! TLS-ALPN-01 (RFC 8737) on the TLS listener itself, and the issued
//! certificates, in front of the configured ones.
//!
//! ```text
//!  ClientHello ─▶ offers ALPN acme-tls/1?
//!                   ├─ yes: the pending challenge's certificate for the SNI
//!                   │       (none pending: no certificate, the handshake fails)
//!                   └─ no:  the ACME certificate for the SNI (exact name)
//!                           else the configured certificates (tls::sni)
//! ```
//!
//! Both maps are swapped whole (`ArcSwap`) by the control thread; a
//! handshake reads them once, without a lock. A connection that
//! negotiated `acme-tls/1` is closed after its handshake (see `shard`).

use crate::tls::sni::CertStore;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// The ALPN protocol of TLS-ALPN-01 validation handshakes.
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

type Map = HashMap<String, Arc<CertifiedKey>>;

/// Certificates by exact (lower-case) name, swapped whole on each change.
#[derive(Default)]
pub struct NameMap(ArcSwap<Map>);

impl std::fmt::Debug for NameMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0.load();
        let mut names: Vec<_> = m.keys().collect();
        names.sort();
        f.debug_set().entries(names).finish()
    }
}

impl NameMap {
    /// The certificate for `name`, if any.
    pub fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.0.load().get(name).cloned()
    }

    /// Sets (or, with `None`, removes) the certificate for `name`.
    pub fn set(&self, name: &str, ck: Option<Arc<CertifiedKey>>) {
        self.0.rcu(|m| {
            let mut m = Map::clone(m);
            match &ck {
                Some(c) => m.insert(name.to_owned(), c.clone()),
                None => m.remove(name),
            };
            m
        });
    }
}

/// What the shards' resolver consults before the configured certificates.
#[derive(Default, Debug)]
pub struct Shared {
    /// Challenge certificates of the orders in progress.
    pub challenges: NameMap,
    /// Issued certificates (from the cache or a fresh order).
    pub issued: NameMap,
    /// The cache directory, where another instance publishes the
    /// challenge of an order it runs (`None`: not looked at).
    pub cache_dir: Option<std::path::PathBuf>,
    /// The names managed (only their challenges are looked for on disk).
    pub managed: Vec<String>,
}

impl Shared {
    /// The challenge certificate for `name`: ours, else the one another
    /// instance sharing the cache published. The file is read on the
    /// handshake's thread: only for a validation handshake (ALPN
    /// acme-tls/1, a few per order) of a managed name, a small file.
    fn challenge(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        if let Some(ck) = self.challenges.get(name) {
            return Some(ck);
        }
        let dir = self.cache_dir.as_ref()?;
        if !self.managed.iter().any(|m| m == name) {
            return None;
        }
        let path = super::cache::Cache::challenge_path(dir, name);
        let c = super::cache::read_pem(&path).ok()??;
        let key = crate::tls::provider()
            .key_provider
            .load_private_key(c.key)
            .ok()?;
        Some(Arc::new(CertifiedKey::new(c.chain, key)))
    }
}

/// The resolver of every config built while ACME is on.
#[derive(Debug)]
pub struct AcmeResolver {
    shared: Arc<Shared>,
    store: CertStore,
}

impl ResolvesServerCert for AcmeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let is_challenge = hello
            .alpn()
            .is_some_and(|mut protos| protos.any(|p| p == ACME_TLS_ALPN));
        let name = hello.server_name();
        if is_challenge {
            crate::tls::session::note_hello_sni(name);
            return name.and_then(|n| self.shared.challenge(n));
        }
        if let Some(ck) = name.and_then(|n| self.shared.issued.get(n)) {
            if ck.key.choose_scheme(hello.signature_schemes()).is_some() {
                crate::tls::session::note_hello_sni(name);
                return Some(ck);
            }
        }
        self.store.resolve(hello)
    }
}

impl crate::tls::server::CertLayer for Arc<Shared> {
    fn wrap(&self, store: CertStore) -> Arc<dyn ResolvesServerCert> {
        Arc::new(AcmeResolver {
            shared: self.clone(),
            store,
        })
    }

    fn alpn(&self) -> Vec<Vec<u8>> {
        vec![ACME_TLS_ALPN.to_vec()]
    }
}

/// A challenge certificate, loaded and as PEM (certificate, then key).
pub struct ChallengeCert {
    /// For the resolver.
    pub ck: Arc<CertifiedKey>,
    /// For the other instances sharing the cache. Holds a throw-away key:
    /// never logged all the same.
    pub pem: String,
}

/// Why the TLS-ALPN-01 certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// Key or certificate generation failed.
    #[error(transparent)]
    Generate(#[from] rcgen::Error),
    /// The generated key is not a private key rustls knows.
    #[error("{0}")]
    KeyFormat(&'static str),
    /// The crypto provider refused the generated key.
    #[error(transparent)]
    Key(#[from] rustls::Error),
}

/// The TLS-ALPN-01 certificate for `name`: self-signed, with the critical
/// acmeIdentifier extension (id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31)
/// holding the SHA-256 of the key authorization.
pub fn challenge_cert(name: &str, key_auth_sha256: &[u8]) -> Result<ChallengeCert, ChallengeError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()])?;
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(key_auth_sha256));
    let cert = params.self_signed(&key)?;
    let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(ChallengeError::KeyFormat)?;
    let signer = crate::tls::provider().key_provider.load_private_key(der)?;
    Ok(ChallengeCert {
        ck: Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer)),
        pem: format!("{}{}", cert.pem(), key.serialize_pem()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_certificate_carries_the_critical_acme_identifier() {
        let digest = [7u8; 32];
        let ck = challenge_cert("a.test", &digest).expect("cert").ck;
        let (_, parsed) = x509_parser::parse_x509_certificate(ck.cert[0].as_ref()).expect("x509");
        let ext = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier");
        assert!(ext.critical);
        // DER OCTET STRING of the 32-byte digest.
        let mut want = vec![0x04, 32];
        want.extend_from_slice(&digest);
        assert_eq!(ext.value, &want[..]);
        assert_eq!(
            crate::tls::sni::dns_names(ck.cert.first()),
            vec!["a.test".to_string()]
        );
    }

    #[test]
    fn a_challenge_published_by_another_instance_is_found_for_managed_names_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let cache = super::super::cache::Cache::open(dir.path(), true).expect("cache");
        let c = challenge_cert("a.test", &[3; 32]).expect("cert");
        cache
            .publish_challenge("a.test", Some(&c.pem))
            .expect("publish");
        let shared = Shared {
            cache_dir: Some(dir.path().to_owned()),
            managed: vec!["a.test".into()],
            ..Shared::default()
        };
        let found = shared.challenge("a.test").expect("found on disk");
        assert_eq!(found.cert, c.ck.cert);
        // (`keys_match` parses with webpki, which refuses the critical
        // acmeIdentifier extension: compare the public keys instead.)
        assert_eq!(
            found.key.public_key().expect("spki").as_ref(),
            c.ck.key.public_key().expect("spki").as_ref()
        );
        assert!(shared.challenge("b.test").is_none());
        cache.publish_challenge("a.test", None).expect("withdraw");
        assert!(shared.challenge("a.test").is_none());
    }

    #[test]
    fn names_are_set_and_removed_without_touching_the_others() {
        let m = NameMap::default();
        let a = challenge_cert("a.test", &[1; 32]).expect("a").ck;
        let b = challenge_cert("b.test", &[2; 32]).expect("b").ck;
        m.set("a.test", Some(a.clone()));
        m.set("b.test", Some(b));
        m.set("b.test", None);
        assert!(m.get("a.test").is_some_and(|x| Arc::ptr_eq(&x, &a)));
        assert!(m.get("b.test").is_none());
    }
}
