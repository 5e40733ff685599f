//! Certificate selection by SNI.
//!
//! Each certificate serves the DNS names in its subjectAltName extension,
//! exact (`api.example.com`) or wildcard (`*.example.com`, one label, as
//! browsers match it). For a name, every certificate that covers it is a
//! candidate, in configuration order, and the first whose key can sign with
//! a scheme the client offered wins: an ECDSA and an RSA chain for the same
//! names sit side by side and each client gets the one it can verify.
//! No SNI, or a name no certificate covers (or none of whose certificates
//! the client can verify): the default certificate, the first configured.
//! Never another name's certificate: that would tell anyone who asks which
//! other names this server hosts. A default of another key type is a
//! certificate for exactly the default's names (an RSA chain beside an
//! ECDSA default): it is served to the clients that cannot verify the
//! default. A client that can verify neither fails its handshake with
//! `handshake_failure`.

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;
use rustls_pki_types::CertificateDer;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Certificates by name. Built once per configuration (start and reload);
/// lookups are two hash probes and no allocation beyond rustls's signer.
#[derive(Default)]
pub struct CertStore {
    exact: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// `*.example.com` is stored under `example.com`.
    wildcard: HashMap<String, Vec<Arc<CertifiedKey>>>,
    /// Every certificate, the default first.
    all: Vec<Arc<CertifiedKey>>,
    /// The default and its twins: certificates for exactly the default's
    /// names (say, an RSA chain beside an ECDSA default), the default first.
    defaults: Vec<Arc<CertifiedKey>>,
    /// The default's names, sorted.
    default_names: Vec<String>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.exact.keys().cloned().collect();
        names.extend(self.wildcard.keys().map(|k| format!("*.{k}")));
        names.sort();
        f.debug_struct("CertStore")
            .field("certs", &self.all.len())
            .field("names", &names)
            .finish()
    }
}

impl CertStore {
    /// Adds a certificate; the first added is the default.
    pub fn add(&mut self, ck: Arc<CertifiedKey>) {
        let mut names = dns_names(ck.cert.first());
        names.sort();
        names.dedup();
        if self.all.is_empty() {
            self.default_names = names.clone();
            self.defaults.push(ck.clone());
        } else if names == self.default_names {
            self.defaults.push(ck.clone());
        }
        for name in names {
            match name.strip_prefix("*.") {
                Some(parent) => self
                    .wildcard
                    .entry(parent.to_owned())
                    .or_default()
                    .push(ck.clone()),
                None => self.exact.entry(name).or_default().push(ck.clone()),
            }
        }
        self.all.push(ck);
    }

    /// Number of certificates.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// The certificate for `name` (lower-case) given the client's schemes.
    pub fn select(
        &self,
        name: Option<&str>,
        schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let pick = |list: &[Arc<CertifiedKey>]| {
            list.iter()
                .find(|ck| ck.key.choose_scheme(schemes).is_some())
                .cloned()
        };
        if let Some(name) = name {
            if let Some(ck) = self.exact.get(name).and_then(|l| pick(l)) {
                return Some(ck);
            }
            let parent = name.split_once('.').map(|(_, p)| p);
            if let Some(ck) = parent
                .and_then(|p| self.wildcard.get(p))
                .and_then(|l| pick(l))
            {
                return Some(ck);
            }
        }
        // The default (or its twin of another key type), even when it
        // cannot sign with a scheme the client offered: rustls then refuses
        // with `handshake_failure` (rather than `access_denied` for no
        // certificate, which scanners and clients read as a policy refusal).
        pick(&self.defaults).or_else(|| self.all.first().cloned())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands us the SNI already validated and lower-cased. The
        // connection learns it from here (see `session::ServerConn`).
        super::session::note_hello_sni(hello.server_name());
        self.select(hello.server_name(), hello.signature_schemes())
    }
}

/// The DNS names of a certificate's subjectAltName, lower-cased.
pub fn dns_names(cert: Option<&CertificateDer<'_>>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Some(cert) = cert else { return Vec::new() };
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertifiedKey as RcgenKey, KeyPair};
    use rustls_pki_types::PrivateKeyDer;

    fn cert(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> Arc<CertifiedKey> {
        let kp = KeyPair::generate_for(alg).expect("key");
        let params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        let c = params.self_signed(&kp).expect("cert");
        let RcgenKey { cert, signing_key } = RcgenKey {
            cert: c,
            signing_key: kp,
        };
        let key = PrivateKeyDer::try_from(signing_key.serialize_der()).expect("der");
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let key = provider.key_provider.load_private_key(key).expect("load");
        Arc::new(CertifiedKey::new(vec![cert.der().clone()], key))
    }

    const ECDSA: &[SignatureScheme] = &[SignatureScheme::ECDSA_NISTP256_SHA256];
    const RSA: &[SignatureScheme] = &[SignatureScheme::RSA_PSS_SHA256];

    fn store() -> (CertStore, [Arc<CertifiedKey>; 4]) {
        let def = cert(&["default.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let a = cert(&["a.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let wild = cert(&["*.wild.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let a_rsa = cert(&["a.test"], &rcgen::PKCS_RSA_SHA256);
        let mut s = CertStore::default();
        for c in [&def, &a, &wild, &a_rsa] {
            s.add(c.clone());
        }
        (s, [def, a, wild, a_rsa])
    }

    fn same(x: &Option<Arc<CertifiedKey>>, y: &Arc<CertifiedKey>) -> bool {
        x.as_ref().is_some_and(|x| Arc::ptr_eq(x, y))
    }

    #[test]
    fn exact_name_selects_its_certificate() {
        let (s, [_, a, ..]) = store();
        assert!(same(&s.select(Some("a.test"), ECDSA), &a));
    }

    #[test]
    fn wildcard_covers_one_label_only() {
        let (s, [def, _, wild, _]) = store();
        assert!(same(&s.select(Some("x.wild.test"), ECDSA), &wild));
        assert!(same(&s.select(Some("y.x.wild.test"), ECDSA), &def));
        assert!(same(&s.select(Some("wild.test"), ECDSA), &def));
    }

    #[test]
    fn unknown_or_missing_name_gets_the_default() {
        let (s, [def, ..]) = store();
        assert!(same(&s.select(Some("nope.test"), ECDSA), &def));
        assert!(same(&s.select(None, ECDSA), &def));
    }

    #[test]
    fn rsa_only_client_gets_the_rsa_chain_for_the_same_name() {
        let (s, [_, a, _, a_rsa]) = store();
        assert!(same(&s.select(Some("a.test"), RSA), &a_rsa));
        assert!(same(&s.select(Some("a.test"), ECDSA), &a));
    }

    #[test]
    fn another_names_certificate_is_never_served() {
        // An ECDSA default for a.test and an RSA certificate for api.test:
        // an RSA-only client asking for b.test, a.test or nothing gets the
        // default (and fails its handshake), never api.test's.
        let def = cert(&["a.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let api = cert(&["api.test"], &rcgen::PKCS_RSA_SHA256);
        let mut s = CertStore::default();
        s.add(def.clone());
        s.add(api.clone());
        for name in [Some("b.test"), Some("a.test"), None] {
            assert!(same(&s.select(name, RSA), &def), "{name:?}");
        }
        assert!(same(&s.select(Some("api.test"), RSA), &api));
        let (s, [def, ..]) = store();
        assert!(same(&s.select(Some("nope.test"), RSA), &def));
    }

    #[test]
    fn a_twin_of_the_default_serves_the_other_key_type() {
        let def = cert(&["a.test", "www.a.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let api = cert(&["api.test"], &rcgen::PKCS_RSA_SHA256);
        let twin = cert(&["www.a.test", "a.test"], &rcgen::PKCS_RSA_SHA256);
        let mut s = CertStore::default();
        for c in [&def, &api, &twin] {
            s.add(c.clone());
        }
        for name in [Some("b.test"), Some("a.test"), None] {
            assert!(same(&s.select(name, RSA), &twin), "{name:?}");
            assert!(same(&s.select(name, ECDSA), &def), "{name:?}");
        }
    }
}
