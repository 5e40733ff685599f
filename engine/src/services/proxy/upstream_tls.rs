//! TLS to the upstream (`upstream_tls = true`): the client side of the
//! proxy's second connection.
//!
//! One rustls [`ClientConfig`] for all shards, built when the settings are
//! mapped (at start and at each reload, so a bad file is refused before
//! anything binds, or before a reload swaps anything): the trust anchors
//! (`upstream_ca`, else the Mozilla roots compiled in from `webpki-roots`),
//! the certificate verified by rustls's `WebPkiServerVerifier`, an
//! optional client certificate (mTLS to the backend), a fixed ALPN list,
//! and one client session cache inside the shared config, so that a
//! reconnect from any shard resumes. A reload builds a new config, with a
//! fresh cache (sessions made under the old trust are not offered again).
//!
//! Per connection: [`UpstreamTls::handshake`] within the connect timeout;
//! a failure is classified by rustls's error variant (see [`failure_kind`])
//! for `uringtls_upstream_errors_total{kind}`. The bytes are then pumped by
//! [`uringtls_runtime::tls::relay::relay`].

use super::UpstreamAddr;
use crate::io::Conn;
use crate::tls::{load_certs, load_key, ClientStream, TlsError};
use rustls::client::{ClientSessionMemoryCache, Resumption, UnbufferedClientConnection};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Upstream server names whose sessions the shared client cache keeps
/// (each name keeps a few TLS 1.3 tickets; rustls's own default is 256).
pub const SESSION_CACHE_NAMES: usize = 1024;
/// A failing upstream handshake is logged at warn at most this often (per
/// configuration); every failure is counted.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Which ALPN protocols to offer the upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UpstreamAlpn {
    /// None (the default, as nginx's `proxy_ssl` and HAProxy's `ssl` do).
    #[default]
    None,
    /// These, in preference order.
    List(Vec<Vec<u8>>),
    /// The protocol the client negotiated with us, alone (none if it
    /// negotiated none).
    Passthrough,
}

impl UpstreamAlpn {
    /// From the setting's list: `["passthrough"]` or protocol names.
    pub fn from_list(list: &[String]) -> UpstreamAlpn {
        let names: Vec<&str> = list
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        match names.as_slice() {
            [] => UpstreamAlpn::None,
            ["passthrough"] => UpstreamAlpn::Passthrough,
            _ => UpstreamAlpn::List(names.iter().map(|n| n.as_bytes().to_vec()).collect()),
        }
    }
}

/// The upstream-TLS settings as given (paths, names), before loading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTlsSettings {
    /// PEM bundle of the CAs the upstreams' certificates chain to
    /// (`None`: the Mozilla roots of `webpki-roots`).
    pub ca: Option<PathBuf>,
    /// Server name sent and verified (`None`: each upstream's host as
    /// written in `upstream`; an IP address is verified as an IP SAN and
    /// sends no SNI).
    pub sni: Option<String>,
    /// Client certificate chain (PEM) for mTLS to the upstream.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
    /// ALPN offered to the upstream.
    pub alpn: UpstreamAlpn,
}

impl UpstreamTlsSettings {
    /// The files these settings read.
    pub fn files(&self) -> impl Iterator<Item = &PathBuf> {
        self.ca.iter().chain(&self.cert).chain(&self.key)
    }
}

/// Why the upstream-TLS settings were refused; [`field`](Self::field)
/// names the setting to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamTlsError {
    /// A file could not be read or parsed (the error names the file).
    #[error("{source}")]
    File {
        /// The setting that names the file.
        field: &'static str,
        /// The problem.
        source: TlsError,
    },
    /// A CA certificate was refused as a trust anchor.
    #[error("{path}: certificate {block} is not a usable CA certificate: {reason}")]
    BadCa {
        /// The CA file.
        path: PathBuf,
        /// Which CERTIFICATE block (1 for the first).
        block: usize,
        /// webpki's reason.
        reason: String,
    },
    /// No usable trust anchor (the verifier could not be built).
    #[error("no usable CA certificate: {0}")]
    NoAnchors(String),
    /// Only one of `upstream_cert` and `upstream_key` was given.
    #[error("`{given}` is given without `{missing}`")]
    HalfPair {
        /// The one given.
        given: &'static str,
        /// The one missing.
        missing: &'static str,
    },
    /// The client key does not fit the client certificate (or rustls
    /// cannot use it).
    #[error("{key} does not fit the certificate in {cert}: {reason}")]
    KeyMismatch {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// rustls's reason.
        reason: String,
    },
    /// `upstream_sni` is neither a DNS name nor an IP address.
    #[error("`{0}` is not a DNS name or an IP address")]
    BadSni(String),
    /// An upstream's host cannot be sent as a server name.
    #[error("the upstream `{0}`'s host is not a DNS name or an IP address")]
    BadUpstreamName(String),
}

impl UpstreamTlsError {
    /// The setting the operator should change.
    pub fn field(&self) -> &'static str {
        match self {
            UpstreamTlsError::File { field, .. } => field,
            UpstreamTlsError::BadCa { .. } | UpstreamTlsError::NoAnchors(_) => "upstream_ca",
            UpstreamTlsError::HalfPair { missing, .. } => missing,
            UpstreamTlsError::KeyMismatch { .. } => "upstream_key",
            UpstreamTlsError::BadSni(_) => "upstream_sni",
            UpstreamTlsError::BadUpstreamName(_) => "upstream_sni",
        }
    }

    /// What to change, one sentence.
    pub fn fix(&self) -> &'static str {
        match self {
            UpstreamTlsError::File { .. } => {
                "give a readable PEM file (upstream_ca: CERTIFICATE blocks; upstream_cert: the \
                 chain, leaf first; upstream_key: an unencrypted private key)"
            }
            UpstreamTlsError::BadCa { .. } | UpstreamTlsError::NoAnchors(_) => {
                "list only CA certificates in upstream_ca, or leave it out for the Mozilla roots"
            }
            UpstreamTlsError::HalfPair { .. } => {
                "give upstream_cert and upstream_key together (mTLS to the upstream), or neither"
            }
            UpstreamTlsError::KeyMismatch { .. } => {
                "give the private key of upstream_cert's leaf certificate"
            }
            UpstreamTlsError::BadSni(_) | UpstreamTlsError::BadUpstreamName(_) => {
                "set upstream_sni to the name in the upstream's certificate, e.g. backend.internal"
            }
        }
    }
}

/// The loaded client side: shared by every shard, replaced on reload.
#[derive(Debug)]
pub struct UpstreamTls {
    /// The settings it was built from.
    pub settings: UpstreamTlsSettings,
    config: Arc<ClientConfig>,
    sni: Option<ServerName<'static>>,
    /// Milliseconds since `epoch` of the last warn-level failure log.
    last_warn: AtomicU64,
    epoch: Instant,
}

/// The server name for `host` (a DNS name or an IP literal, `[v6]` too).
fn server_name(host: &str) -> Option<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).ok()
}

/// The host part of an upstream as written (`HOST:PORT`).
fn host_of(upstream: &str) -> &str {
    upstream.rsplit_once(':').map_or(upstream, |(h, _)| h)
}

fn roots(s: &UpstreamTlsSettings) -> Result<RootCertStore, UpstreamTlsError> {
    let Some(path) = &s.ca else {
        // Compiled in: readable under Landlock, the same on every machine.
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let certs = load_certs(path).map_err(|source| UpstreamTlsError::File {
        field: "upstream_ca",
        source,
    })?;
    let mut store = RootCertStore::empty();
    for (i, c) in certs.into_iter().enumerate() {
        store.add(c).map_err(|e| UpstreamTlsError::BadCa {
            path: path.clone(),
            block: i + 1,
            reason: e.to_string(),
        })?;
    }
    Ok(store)
}

impl UpstreamTls {
    /// Loads every file and builds the shared client config; `upstreams`
    /// are checked to have a usable server name.
    pub fn load(
        settings: UpstreamTlsSettings,
        upstreams: &[UpstreamAddr],
    ) -> Result<UpstreamTls, UpstreamTlsError> {
        let sni = match &settings.sni {
            Some(n) => Some(server_name(n).ok_or_else(|| UpstreamTlsError::BadSni(n.clone()))?),
            None => {
                if let Some(bad) = upstreams
                    .iter()
                    .find(|u| server_name(host_of(&u.name)).is_none())
                {
                    return Err(UpstreamTlsError::BadUpstreamName(bad.name.clone()));
                }
                None
            }
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots(&settings)?),
            provider.clone(),
        )
        .build()
        .map_err(|e| UpstreamTlsError::NoAnchors(e.to_string()))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| UpstreamTlsError::File {
                field: "upstream_tls",
                source: TlsError::Rustls(e),
            })?
            .with_webpki_verifier(verifier);
        let mut config = match (&settings.cert, &settings.key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = load_certs(cert).map_err(|source| UpstreamTlsError::File {
                    field: "upstream_cert",
                    source,
                })?;
                let pkey = load_key(key).map_err(|source| UpstreamTlsError::File {
                    field: "upstream_key",
                    source,
                })?;
                builder.with_client_auth_cert(chain, pkey).map_err(|e| {
                    UpstreamTlsError::KeyMismatch {
                        cert: cert.clone(),
                        key: key.clone(),
                        reason: e.to_string(),
                    }
                })?
            }
            (Some(_), None) => {
                return Err(UpstreamTlsError::HalfPair {
                    given: "upstream_cert",
                    missing: "upstream_key",
                })
            }
            (None, Some(_)) => {
                return Err(UpstreamTlsError::HalfPair {
                    given: "upstream_key",
                    missing: "upstream_cert",
                })
            }
        };
        config.resumption =
            Resumption::store(Arc::new(ClientSessionMemoryCache::new(SESSION_CACHE_NAMES)));
        if let UpstreamAlpn::List(l) = &settings.alpn {
            config.alpn_protocols = l.clone();
        }
        Ok(UpstreamTls {
            settings,
            config: Arc::new(config),
            sni,
            last_warn: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    /// The name sent to and verified against `up`.
    fn name_for(&self, up: &UpstreamAddr) -> Option<ServerName<'static>> {
        match &self.sni {
            Some(n) => Some(n.clone()),
            None => server_name(host_of(&up.name)),
        }
    }

    /// Runs the TLS handshake over `conn` (connected to `up`) within
    /// `limit`; `client_alpn` is what the client negotiated with us (for
    /// ALPN passthrough).
    pub async fn handshake(
        &self,
        conn: Conn,
        up: &UpstreamAddr,
        client_alpn: Option<&[u8]>,
        limit: Duration,
    ) -> Result<ClientStream, HandshakeFailure> {
        let fail = |kind, error| HandshakeFailure { kind, error };
        let Some(name) = self.name_for(up) else {
            conn.abort();
            let e = io::Error::new(io::ErrorKind::InvalidInput, "no usable server name");
            return Err(fail("tls_handshake", e));
        };
        let config = self.config.clone();
        let tls = match &self.settings.alpn {
            UpstreamAlpn::Passthrough => {
                let alpn = client_alpn.map(|p| vec![p.to_vec()]).unwrap_or_default();
                UnbufferedClientConnection::new_with_alpn(config, name, alpn)
            }
            _ => UnbufferedClientConnection::new(config, name),
        };
        let tls = match tls {
            Ok(t) => t,
            Err(e) => {
                conn.abort();
                return Err(fail("tls_handshake", io::Error::other(e)));
            }
        };
        let mut stream = ClientStream::new(conn, tls);
        match crate::io::time::timeout(limit, stream.handshake()).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => Err(fail(failure_kind(&e), e)),
            Err(_) => Err(fail(
                "tls_handshake_timeout",
                io::Error::new(io::ErrorKind::TimedOut, "upstream TLS handshake timed out"),
            )),
        }
    }

    /// Whether a failure now should be logged at warn (at most once per
    /// [`WARN_EVERY`]; the rest at debug).
    pub(super) fn warn_now(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_warn.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        due && self
            .last_warn
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

/// A failed upstream handshake: the kind counted, and the error.
#[derive(Debug)]
pub struct HandshakeFailure {
    /// For `uringtls_upstream_errors_total{kind}` (see [`failure_kind`]).
    pub kind: &'static str,
    /// What happened.
    pub error: io::Error,
}

/// The counted kind of a failed upstream handshake, from rustls's error
/// variant: `tls_verify_*` when the upstream's certificate was refused
/// (`unknown_issuer`, `bad_name`, `expired`, `not_yet_valid`, `revoked`,
/// `bad_signature`, `bad_purpose`, `bad_encoding`, `other`), else
/// `tls_handshake`.
pub fn failure_kind(e: &io::Error) -> &'static str {
    let Some(rustls::Error::InvalidCertificate(c)) =
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
    else {
        return "tls_handshake";
    };
    match c {
        CertificateError::UnknownIssuer => "tls_verify_unknown_issuer",
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "tls_verify_bad_name"
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "tls_verify_expired",
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "tls_verify_not_yet_valid"
        }
        CertificateError::Revoked => "tls_verify_revoked",
        CertificateError::BadSignature
        | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "tls_verify_bad_signature"
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "tls_verify_bad_purpose"
        }
        CertificateError::BadEncoding => "tls_verify_bad_encoding",
        _ => "tls_verify_other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(name: &str) -> UpstreamAddr {
        name.parse().expect("HOST:PORT")
    }

    #[test]
    fn the_server_name_is_the_upstreams_host_or_the_one_given() {
        let t = UpstreamTls::load(UpstreamTlsSettings::default(), &[up("backend.test:443")])
            .expect("loads with the compiled-in roots");
        let n = t.name_for(&up("backend.test:443")).expect("name");
        assert_eq!(n.to_str(), "backend.test");
        let n = t.name_for(&up("[::1]:443")).expect("ip");
        assert!(matches!(n, ServerName::IpAddress(_)), "{n:?}");
        let t = UpstreamTls::load(
            UpstreamTlsSettings {
                sni: Some("api.internal".into()),
                ..Default::default()
            },
            &[up("10.0.0.1:443")],
        )
        .expect("ok");
        assert_eq!(
            t.name_for(&up("10.0.0.1:443")).expect("n").to_str(),
            "api.internal"
        );
    }

    #[test]
    fn bad_names_and_half_pairs_name_the_setting() {
        let e = UpstreamTls::load(
            UpstreamTlsSettings {
                sni: Some("not a name".into()),
                ..Default::default()
            },
            &[],
        )
        .expect_err("refused");
        assert_eq!(e.field(), "upstream_sni");
        let e = UpstreamTls::load(
            UpstreamTlsSettings {
                cert: Some("/c.pem".into()),
                ..Default::default()
            },
            &[],
        )
        .expect_err("refused");
        assert_eq!(e.field(), "upstream_key");
        let e = UpstreamTls::load(
            UpstreamTlsSettings {
                ca: Some("/nonexistent/ca.pem".into()),
                ..Default::default()
            },
            &[],
        )
        .expect_err("refused");
        assert_eq!(e.field(), "upstream_ca");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn alpn_passthrough_is_a_word_of_its_own() {
        let l = |v: &[&str]| {
            UpstreamAlpn::from_list(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(l(&["passthrough"]), UpstreamAlpn::Passthrough);
        assert_eq!(l(&[]), UpstreamAlpn::None);
        assert_eq!(
            l(&["h2", "http/1.1"]),
            UpstreamAlpn::List(vec![b"h2".to_vec(), b"http/1.1".to_vec()])
        );
    }

    #[test]
    fn verification_failures_are_counted_by_variant() {
        let e = |c| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(c),
            )
        };
        assert_eq!(
            failure_kind(&e(CertificateError::UnknownIssuer)),
            "tls_verify_unknown_issuer"
        );
        assert_eq!(
            failure_kind(&e(CertificateError::NotValidForName)),
            "tls_verify_bad_name"
        );
        let other = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::HandshakeNotComplete,
        );
        assert_eq!(failure_kind(&other), "tls_handshake");
    }
}
