//! Certificate selection by SNI.
//!
//! Each certificate serves the DNS names in its subjectAltName extension,
//! exact (`api.example.com`) or wildcard (`*.example.com`, one label, as
//! browsers match it). For a name, every certificate that covers it is a
//! candidate, in configuration order, and the first whose key can sign with
//! a scheme the client offered wins: an ECDSA and an RSA chain for the same
//! names sit side by side and each client gets the one it can verify.
//! No SNI, or a name no certificate covers: the default certificate (the
//! first configured), or failing its scheme, any compatible one.

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
        for name in dns_names(ck.cert.first()) {
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

    /// Whether no certificate was added.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
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
        // No certificate can sign with a scheme the client offered: hand
        // rustls the default anyway, so it refuses with `handshake_failure`
        // (as with one certificate) rather than `access_denied`, which
        // scanners and clients read as a policy refusal.
        pick(&self.all).or_else(|| self.all.first().cloned())
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
        assert!(
            same(&s.select(Some("nope.test"), RSA), &a_rsa),
            "falls back to any compatible cert"
        );
    }
}
