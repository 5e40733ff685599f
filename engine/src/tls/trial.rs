//! TLS 1.3 cipher suites whose record decrypters report each outcome to
//! [`super::session::note_decrypt`], so that a [`super::session::Session`]
//! can drop the rejected 0-RTT records rustls skipped but left in its input
//! (see there). The cryptography is aws-lc-rs's, unchanged.
//!
//! They also make rustls answer a TLS 1.3 record whose plaintext has no
//! content type (all zeros) with an alert: rustls reports that case as
//! `PeerMisbehaved::IllegalTlsInnerPlaintext` without one; reported to it
//! as an invalid message, it sends `decode_error`, encrypted.

use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter, MessageEncrypter,
    Tls13AeadAlgorithm, UnsupportedOperationError,
};
use rustls::crypto::CryptoProvider;
use rustls::{ConnectionTrafficSecrets, SupportedCipherSuite, Tls13CipherSuite};
use std::sync::{Mutex, OnceLock};

struct Observed(&'static dyn Tls13AeadAlgorithm);

struct ObservedDecrypter(Box<dyn MessageDecrypter>);

impl MessageDecrypter for ObservedDecrypter {
    fn decrypt<'a>(
        &mut self,
        msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, rustls::Error> {
        let end = msg.payload.as_ptr() as usize + msg.payload.len();
        let res = self.0.decrypt(msg, seq);
        super::session::note_decrypt(match res {
            Err(rustls::Error::DecryptError) => Some(end),
            _ => None,
        });
        res.map_err(|e| match e {
            rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::IllegalTlsInnerPlaintext) => {
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
            }
            e => e,
        })
    }
}

impl Tls13AeadAlgorithm for Observed {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        self.0.encrypter(key, iv)
    }
    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(ObservedDecrypter(self.0.decrypter(key, iv)))
    }
    fn key_len(&self) -> usize {
        self.0.key_len()
    }
    fn extract_keys(
        &self,
        key: AeadKey,
        iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        self.0.extract_keys(key, iv)
    }
    fn fips(&self) -> bool {
        self.0.fips()
    }
}

/// The observed twin of a TLS 1.3 suite: made once per suite per process
/// (a handful of small leaked statics), the same one on every reload.
fn observed(inner: &'static Tls13CipherSuite) -> &'static Tls13CipherSuite {
    type Made = Vec<(usize, &'static Tls13CipherSuite)>;
    static MADE: OnceLock<Mutex<Made>> = OnceLock::new();
    let key = inner as *const Tls13CipherSuite as usize;
    let mut made = MADE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some((_, s)) = made.iter().find(|(k, _)| *k == key) {
        return s;
    }
    let aead: &'static Observed = Box::leak(Box::new(Observed(inner.aead_alg)));
    let suite: &'static Tls13CipherSuite = Box::leak(Box::new(Tls13CipherSuite {
        common: rustls::crypto::CipherSuiteCommon {
            suite: inner.common.suite,
            hash_provider: inner.common.hash_provider,
            confidentiality_limit: inner.common.confidentiality_limit,
        },
        hkdf_provider: inner.hkdf_provider,
        aead_alg: aead,
        quic: inner.quic,
    }));
    made.push((key, suite));
    suite
}

/// `p` with its TLS 1.3 suites observed (TLS 1.2 suites unchanged: no
/// trial decryption there).
pub fn observe(mut p: CryptoProvider) -> CryptoProvider {
    for s in &mut p.cipher_suites {
        if let SupportedCipherSuite::Tls13(inner) = *s {
            *s = SupportedCipherSuite::Tls13(observed(inner));
        }
    }
    p
}
