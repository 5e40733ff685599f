//! TLS 1.3 cipher suites whose record decrypters report each outcome to
//! [`super::session::note_decrypt`], so that a [`super::session::Session`]
//! can drop the rejected 0-RTT records rustls skipped but left in its input
//! (see there). The cryptography is aws-lc-rs's, unchanged.
//!
//! They also make rustls answer with an alert the errors in encrypted
//! records it reports without one (and whose alert only rustls can
//! encrypt): a record whose plaintext has no content type (all zeros), a
//! record of another type inside a fragmented handshake message (a
//! KeyUpdate in pieces, say), more than four warning alerts. Each is
//! caught here as the record is decrypted and reported to rustls as an
//! invalid message: rustls then sends `decode_error`, encrypted (RFC 8446
//! would prefer `unexpected_message` for most; an alert either way).

use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter, MessageEncrypter,
    Tls13AeadAlgorithm, UnsupportedOperationError,
};
use rustls::crypto::CryptoProvider;
use rustls::{ConnectionTrafficSecrets, ContentType, SupportedCipherSuite, Tls13CipherSuite};
use std::sync::{Mutex, OnceLock};

struct Observed(&'static dyn Tls13AeadAlgorithm);

struct ObservedDecrypter {
    inner: Box<dyn MessageDecrypter>,
    framing: Framing,
}

/// What the records decrypted with one key say about the peer's handshake
/// messages and alerts: enough to catch, before rustls does, the errors
/// rustls reports without an alert once records are encrypted.
#[derive(Default)]
struct Framing {
    /// Bytes of a handshake message header seen (0 to 3: inside one).
    header: Vec<u8>,
    /// Bytes of a handshake message body still to come.
    body_left: usize,
    /// Warning alerts received (rustls allows four).
    warnings: u8,
}

impl Framing {
    fn inside_message(&self) -> bool {
        !self.header.is_empty() || self.body_left > 0
    }

    /// Checks one decrypted record; `Err` names what is wrong.
    fn check(&mut self, typ: ContentType, mut payload: &[u8]) -> Result<(), &'static str> {
        if typ != ContentType::Handshake {
            if self.inside_message() {
                return Err("record interleaved with a handshake message");
            }
            if typ == ContentType::Alert {
                if let [1, description] = payload {
                    if *description != 0 {
                        self.warnings = self.warnings.saturating_add(1);
                        if self.warnings > 4 {
                            return Err("more than four warning alerts");
                        }
                    }
                }
            }
            return Ok(());
        }
        while !payload.is_empty() {
            if self.body_left == 0 {
                let take = (4 - self.header.len()).min(payload.len());
                self.header.extend_from_slice(&payload[..take]);
                payload = &payload[take..];
                if self.header.len() < 4 {
                    break;
                }
                let h = std::mem::take(&mut self.header);
                self.body_left = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
            } else {
                let take = self.body_left.min(payload.len());
                self.body_left -= take;
                payload = &payload[take..];
            }
        }
        Ok(())
    }
}

impl MessageDecrypter for ObservedDecrypter {
    fn decrypt<'a>(
        &mut self,
        msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, rustls::Error> {
        let end = msg.payload.as_ptr() as usize + msg.payload.len();
        let res = self.inner.decrypt(msg, seq);
        super::session::note_decrypt(match res {
            Err(rustls::Error::DecryptError) => Some(end),
            _ => None,
        });
        let plain = res.map_err(|e| match e {
            rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::IllegalTlsInnerPlaintext) => {
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
            }
            e => e,
        })?;
        // Reported to rustls as an invalid message, so that it sends an
        // alert (`decode_error`), encrypted; it would close without one.
        self.framing
            .check(plain.typ, plain.payload)
            .map_err(|what| {
                rustls::Error::InvalidMessage(rustls::InvalidMessage::UnexpectedMessage(what))
            })?;
        Ok(plain)
    }
}

impl Tls13AeadAlgorithm for Observed {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        self.0.encrypter(key, iv)
    }
    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(ObservedDecrypter {
            inner: self.0.decrypter(key, iv),
            framing: Framing::default(),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_catches_what_rustls_closes_on_without_an_alert() {
        let hs = ContentType::Handshake;
        let mut f = Framing::default();
        // A Finished (32 bytes) in three records, header split too.
        assert!(f.check(hs, &[20, 0]).is_ok());
        assert!(f.check(hs, &[0, 32, 1, 2]).is_ok());
        assert!(f.check(ContentType::ApplicationData, &[]).is_err());
        let mut f = Framing::default();
        assert!(f.check(hs, &[20, 0, 0, 32]).is_ok());
        assert!(f.check(hs, &[0; 32]).is_ok());
        assert!(f.check(ContentType::ApplicationData, b"x").is_ok());
        // Two messages in a record, the second split.
        assert!(f.check(hs, &[24, 0, 0, 1, 0, 24, 0]).is_ok());
        assert!(f.check(ContentType::Alert, &[1, 90]).is_err());
        // Four warnings pass, the fifth does not; close_notify is no count.
        let mut f = Framing::default();
        for _ in 0..4 {
            assert!(f.check(ContentType::Alert, &[1, 90]).is_ok());
        }
        assert!(f.check(ContentType::Alert, &[1, 0]).is_ok());
        assert!(f.check(ContentType::Alert, &[1, 90]).is_err());
    }
}
