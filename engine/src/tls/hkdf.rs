//! TLS 1.3 cipher suites whose HKDF keeps its HMAC key schedule.
//!
//! rustls's aws-lc-rs suites derive every TLS 1.3 secret through
//! `aws_lc_rs::hkdf`. There a PRK made by *extract* is kept as salt and
//! secret, and each *expand* from it runs the whole HKDF again (the extract
//! included): ~8 SHA-256 compressions per derived secret, and a handshake
//! derives some twenty of them. In a resumed handshake that was ~11% of
//! the server's CPU (`perf`, wrk, 2026-12-03).
//!
//! The suites here are rustls's own, with one field changed:
//! `hkdf_provider` is rustls's [`HkdfUsingHmac`] over an aws-lc-rs HMAC
//! whose key (the PRK) is set up once, so an expand costs the two
//! compressions of one HMAC. Same algorithms, same AEADs, same bytes on the
//! wire: the tests check the output against RFC 5869's vectors and against
//! aws-lc-rs's own HKDF.

use aws_lc_rs::hmac as lc;
use rustls::crypto::hmac::{Hmac, Key, Tag};
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::{CipherSuite, CipherSuiteCommon, SupportedCipherSuite, Tls13CipherSuite};
use std::sync::LazyLock;

/// HMAC over aws-lc-rs, for one hash function.
struct AwsLcHmac(lc::Algorithm);

impl Hmac for AwsLcHmac {
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        Box::new(AwsLcHmacKey(lc::Key::new(self.0, key)))
    }

    fn hash_output_len(&self) -> usize {
        self.0.digest_algorithm().output_len()
    }

    fn fips(&self) -> bool {
        aws_lc_rs::try_fips_mode().is_ok()
    }
}

/// A keyed HMAC: the inner and outer hash states after the key, copied for
/// each tag.
struct AwsLcHmacKey(lc::Key);

impl Key for AwsLcHmacKey {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        let mut ctx = lc::Context::with_key(&self.0);
        ctx.update(first);
        for m in middle {
            ctx.update(m);
        }
        ctx.update(last);
        Tag::new(ctx.sign().as_ref())
    }

    fn tag_len(&self) -> usize {
        self.0.algorithm().digest_algorithm().output_len()
    }
}

static HMAC_SHA256: AwsLcHmac = AwsLcHmac(lc::HMAC_SHA256);
static HMAC_SHA384: AwsLcHmac = AwsLcHmac(lc::HMAC_SHA384);
static HKDF_SHA256: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA256);
static HKDF_SHA384: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA384);

/// rustls's aws-lc-rs TLS 1.3 suites with the keyed HKDF, built once.
static SUITES: LazyLock<Vec<SupportedCipherSuite>> = LazyLock::new(|| {
    rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .filter_map(|s| match s {
            SupportedCipherSuite::Tls13(t) => {
                let hkdf: &'static HkdfUsingHmac<'static> =
                    match t.common.hash_provider.output_len() {
                        32 => &HKDF_SHA256,
                        48 => &HKDF_SHA384,
                        _ => return None,
                    };
                let suite: &'static Tls13CipherSuite = Box::leak(Box::new(Tls13CipherSuite {
                    common: CipherSuiteCommon {
                        suite: t.common.suite,
                        hash_provider: t.common.hash_provider,
                        confidentiality_limit: t.common.confidentiality_limit,
                    },
                    hkdf_provider: hkdf,
                    aead_alg: t.aead_alg,
                    quic: t.quic,
                }));
                Some(SupportedCipherSuite::Tls13(suite))
            }
            SupportedCipherSuite::Tls12(_) => None,
        })
        .collect()
});

/// `suite`, with the keyed HKDF if it is a TLS 1.3 suite (TLS 1.2 suites
/// are returned as they are: their PRF is not HKDF).
pub fn keyed(suite: SupportedCipherSuite) -> SupportedCipherSuite {
    let id: CipherSuite = suite.suite();
    SUITES
        .iter()
        .find(|s| s.suite() == id)
        .copied()
        .unwrap_or(suite)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::hkdf as lc_hkdf;
    use proptest::prelude::*;
    use rustls::crypto::tls13::Hkdf;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// RFC 5869, appendix A.1 and A.2 (SHA-256).
    #[test]
    fn rfc5869_sha256_vectors() {
        let cases = [
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                "000102030405060708090a0b0c",
                "f0f1f2f3f4f5f6f7f8f9",
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
            ),
            (
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\
                 202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f\
                 404142434445464748494a4b4c4d4e4f",
                "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f\
                 808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f\
                 a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
                "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf\
                 d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef\
                 f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
                "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c\
                 59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71\
                 cc30c58179ec3e87c14c01d5c1f3434f1d87",
            ),
        ];
        for (ikm, salt, info, okm) in cases {
            let (ikm, salt, info, okm) = (hex(ikm), hex(salt), hex(info), hex(okm));
            let expander = HKDF_SHA256.extract_from_secret(Some(&salt), &ikm);
            let mut out = vec![0u8; okm.len()];
            expander
                .expand_slice(&[&info], &mut out)
                .expect("length within 255 blocks");
            assert_eq!(out, okm);
        }
    }

    /// The same PRK expanded through rustls's expander and through
    /// aws-lc-rs's HKDF, for one algorithm.
    fn both(
        ours: &HkdfUsingHmac<'static>,
        theirs: lc_hkdf::Algorithm,
        salt: &[u8],
        secret: &[u8],
        info: &[Vec<u8>],
        len: usize,
    ) -> (Vec<u8>, Vec<u8>) {
        let parts: Vec<&[u8]> = info.iter().map(|v| v.as_slice()).collect();
        let mut a = vec![0u8; len];
        ours.extract_from_secret(Some(salt), secret)
            .expand_slice(&parts, &mut a)
            .expect("length within 255 blocks");
        struct Len(usize);
        impl lc_hkdf::KeyType for Len {
            fn len(&self) -> usize {
                self.0
            }
        }
        let mut b = vec![0u8; len];
        lc_hkdf::Salt::new(theirs, salt)
            .extract(secret)
            .expand(&parts, Len(len))
            .and_then(|okm| okm.fill(&mut b))
            .expect("length within 255 blocks");
        (a, b)
    }

    proptest! {
        #[test]
        fn matches_aws_lc_hkdf(
            salt in proptest::collection::vec(any::<u8>(), 0..100),
            secret in proptest::collection::vec(any::<u8>(), 0..100),
            info in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..4),
            len in 1usize..200,
        ) {
            let (a, b) = both(&HKDF_SHA256, lc_hkdf::HKDF_SHA256, &salt, &secret, &info, len);
            prop_assert_eq!(a, b);
            let (a, b) = both(&HKDF_SHA384, lc_hkdf::HKDF_SHA384, &salt, &secret, &info, len);
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn tls13_suites_are_replaced_and_tls12_kept() {
        for s in rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES {
            let k = keyed(*s);
            assert_eq!(k.suite(), s.suite());
            match (s, k) {
                (SupportedCipherSuite::Tls13(a), SupportedCipherSuite::Tls13(b)) => {
                    assert!(!std::ptr::eq(*a, b), "{:?} not replaced", s.suite());
                    assert_eq!(
                        a.common.hash_provider.output_len(),
                        b.hkdf_provider.extract_from_zero_ikm(None).hash_len()
                    );
                }
                (SupportedCipherSuite::Tls12(a), SupportedCipherSuite::Tls12(b)) => {
                    assert!(std::ptr::eq(*a, b));
                }
                _ => panic!("{:?} changed version", s.suite()),
            }
        }
    }
}
