//! The client side of TLS: one rustls `ClientConfig` built from the flags,
//! cloned per worker thread (each thread gets its own session store, so
//! resumption never takes a lock shared with another thread).

pub mod insecure;

use crate::plan::{TlsOptions, TlsVersion};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, CommonState, RootCertStore};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, InvalidDnsNameError, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the TLS flags do not make a client config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The versions, suites and groups leave nothing to offer.
    #[error("--tls/--cipher/--group: no usable combination: {0} (offer a suite of the chosen TLS version)")]
    NoCombination(#[source] rustls::Error),
    /// `--cipher` names a suite rustls does not have.
    #[error("--cipher {name}: unknown suite (known: {known})")]
    UnknownSuite {
        /// The name given.
        name: String,
        /// The suites there are.
        known: String,
    },
    /// `--group` names a group rustls does not have.
    #[error("--group {name}: unknown group (known: {known})")]
    UnknownGroup {
        /// The name given.
        name: String,
        /// The groups there are.
        known: String,
    },
    /// `--sni` (or the target host) is not a server name.
    #[error("`{name}` is not a valid server name: {source} (give --sni NAME)")]
    ServerName {
        /// The name.
        name: String,
        /// Why not.
        source: InvalidDnsNameError,
    },
    /// A PEM file of certificates could not be read.
    #[error("{}: cannot load certificates: {source} (give a PEM file)", path.display())]
    Certificates {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: pem::Error,
    },
    /// A PEM file holds no certificate.
    #[error("{}: no CERTIFICATE block found (give a PEM file)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A `--ca` certificate cannot be a trust anchor.
    #[error("{}: not a usable CA certificate: {source}", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: rustls::Error,
    },
    /// The system CA bundle could not be read.
    #[error("{}: {source}", path.display())]
    SystemCa {
        /// The bundle.
        path: PathBuf,
        /// Why not.
        source: pem::Error,
    },
    /// The `--key` file could not be read.
    #[error("{}: cannot load a private key: {source} (give a PEM key)", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Why not.
        source: pem::Error,
    },
    /// The `--key` does not belong to the `--cert`.
    #[error("{}: client key does not fit the certificate: {source}", path.display())]
    KeyMismatch {
        /// The key file.
        path: PathBuf,
        /// rustls's verdict.
        source: rustls::Error,
    },
}

/// System CA bundles tried when `--ca` is not given.
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Builds the client config described by `a` (resumption disabled; see
/// [`with_resumption`]).
pub fn client_config(a: &TlsOptions) -> Result<ClientConfig, ConfigError> {
    let provider = Arc::new(provider(a)?);
    let versions: &[&rustls::SupportedProtocolVersion] = match a.version {
        TlsVersion::V12 => &[&rustls::version::TLS12],
        TlsVersion::V13 => &[&rustls::version::TLS13],
        TlsVersion::Any => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(ConfigError::NoCombination)?;
    let builder = if a.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::AcceptAnyCert::new(provider)))
    } else {
        builder.with_root_certificates(roots(a.ca.as_deref())?)
    };
    let mut cfg = match (&a.cert, &a.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|source| ConfigError::KeyMismatch {
                path: key.clone(),
                source,
            })?,
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = a.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    cfg.enable_sni = !a.no_sni;
    cfg.resumption = Resumption::disabled();
    if !a.cert_compression {
        cfg.cert_decompressors = Vec::new();
    }
    Ok(cfg)
}

/// A copy of `base` with its own in-memory session store (`sessions` server
/// names' worth), or with resumption disabled when `sessions == 0`.
pub fn with_resumption(base: &ClientConfig, sessions: usize) -> Arc<ClientConfig> {
    let mut cfg = base.clone();
    cfg.resumption = if sessions == 0 {
        Resumption::disabled()
    } else {
        Resumption::in_memory_sessions(sessions)
    };
    Arc::new(cfg)
}

/// The name verified (and sent as SNI): `--sni` or the target host.
pub fn server_name(a: &TlsOptions, host: &str) -> Result<ServerName<'static>, ConfigError> {
    let name = a.sni.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_string()).map_err(|source| ConfigError::ServerName {
        name: name.to_string(),
        source,
    })
}

fn provider(a: &TlsOptions) -> Result<CryptoProvider, ConfigError> {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    // AES-128-GCM first (as browsers, curl and h2load offer): a server that
    // follows the client's order then does the same work for us as for them.
    p.cipher_suites.sort_by_key(|s| {
        let name = format!("{:?}", s.suite());
        (name.starts_with("TLS_"), !name.contains("AES_128"))
    });
    if !a.cipher.is_empty() {
        let all = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES;
        p.cipher_suites = a
            .cipher
            .iter()
            .map(|want| {
                all.iter()
                    .find(|s| format!("{:?}", s.suite()).eq_ignore_ascii_case(want))
                    .copied()
                    .ok_or_else(|| ConfigError::UnknownSuite {
                        name: want.clone(),
                        known: names(all.iter().map(|s| s.suite())),
                    })
            })
            .collect::<Result<_, _>>()?;
    }
    if !a.group.is_empty() {
        let all = rustls::crypto::aws_lc_rs::ALL_KX_GROUPS;
        p.kx_groups = a
            .group
            .iter()
            .map(|want| {
                all.iter()
                    .find(|g| format!("{:?}", g.name()).eq_ignore_ascii_case(want))
                    .copied()
                    .ok_or_else(|| ConfigError::UnknownGroup {
                        name: want.clone(),
                        known: names(all.iter().map(|g| g.name())),
                    })
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(p)
}

fn names<T: std::fmt::Debug>(it: impl Iterator<Item = T>) -> String {
    it.map(|x| format!("{x:?}")).collect::<Vec<_>>().join(", ")
}

fn roots(ca: Option<&Path>) -> Result<RootCertStore, ConfigError> {
    let mut store = RootCertStore::empty();
    match ca {
        Some(path) => {
            for c in load_certs(path)? {
                store.add(c).map_err(|source| ConfigError::Ca {
                    path: path.to_path_buf(),
                    source,
                })?;
            }
        }
        None => {
            if let Some(path) = SYSTEM_CA_FILES.iter().map(Path::new).find(|p| p.exists()) {
                let certs = CertificateDer::pem_file_iter(path).map_err(|source| {
                    ConfigError::SystemCa {
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
                // A bundle may hold a few certificates rustls cannot parse; skip them.
                let (_added, _ignored) = store.add_parsable_certificates(certs.flatten());
            }
        }
    }
    Ok(store)
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| ConfigError::Certificates {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(ConfigError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| ConfigError::Key {
        path: path.to_path_buf(),
        source,
    })
}

/// What a handshake negotiated, for the summary.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Negotiated {
    /// e.g. `TLSv1_3`.
    pub version: String,
    /// e.g. `TLS13_AES_128_GCM_SHA256`.
    pub cipher_suite: String,
    /// e.g. `X25519`.
    pub group: String,
    /// ALPN protocol, if any.
    pub alpn: Option<String>,
    /// Bytes read from the socket during the probe's full handshake (all
    /// of the server's flights: certificate chain included, compressed or
    /// not).
    pub handshake_bytes_in: u64,
}

impl Negotiated {
    /// Reads the negotiated parameters of an established connection.
    pub fn of(c: &CommonState) -> Negotiated {
        Negotiated {
            version: c
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_default(),
            cipher_suite: c
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
            group: c
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()))
                .unwrap_or_else(|| "-".into()),
            alpn: c
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            handshake_bytes_in: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offering(cipher: &[&str], group: &[&str]) -> TlsOptions {
        let names = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        TlsOptions {
            cipher: names(cipher),
            group: names(group),
            ..TlsOptions::default()
        }
    }

    #[test]
    fn aes_128_gcm_is_offered_first_by_default() {
        let p = provider(&TlsOptions::default()).expect("provider");
        let names: Vec<String> = p
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(names[0], "TLS13_AES_128_GCM_SHA256");
        assert!(
            names.iter().position(|n| n.starts_with("TLS_")) > Some(2),
            "{names:?}"
        );
    }

    #[test]
    fn named_suites_and_groups_are_selected_and_unknown_ones_listed() {
        let p = provider(&offering(
            &["tls13_chacha20_poly1305_sha256"],
            &["secp256r1"],
        ))
        .expect("provider");
        assert_eq!(p.cipher_suites.len(), 1);
        assert_eq!(p.kx_groups.len(), 1);
        let err = provider(&offering(&[], &["curve9"])).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownGroup { name, .. } if name == "curve9"),
            "{err:?}"
        );
        assert!(err.to_string().contains("known: X25519"), "{err}");
    }
}
