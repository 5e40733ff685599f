//! TLS: the one shared rustls `ServerConfig`, certificate loading, and the
//! session driver.
//!
//! - [`session`], [`stream`], [`duplex`], [`trial`]: the sans-I/O rustls
//!   session, the TLS streams over the runtime's sockets, the proxy's
//!   two-way pump, and the suites that report decryptions to the session
//!   (from the `uringtls-runtime` crate).
//! - [`server`]: building the shared `ServerConfig` from [`TlsSettings`]
//!   (SNI certificates, versions, suites, groups, client auth), and the
//!   state that survives a reload (session cache, ticket keys).
//! - [`sni`]: certificate selection by server name and signature scheme.
//! - [`tickets`]: session-ticket keys from a shared file, derived from a
//!   shared secret, or rotating in memory.
//! - [`cert_dir`]: the certificate pairs of a directory (`cert_dir`).
//!
//! Every shard holds a clone of the same `Arc<ServerConfig>` (through an
//! `ArcSwap`, replaced on reload), so the session cache and the ticket keys
//! are shared: a client that reconnects to any shard resumes.

pub mod cert_dir;
pub mod server;
pub mod sni;
pub mod tickets;

pub use uringtls_runtime::tls::{duplex, session, stream, trial};

use rustls::crypto::CryptoProvider;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use server::{peer_identity, PeerIdentity, TlsState};
pub use session::ServerConn;
pub use stream::{ClientStream, ServerStream};

/// TLS settings that shape the shared server config.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Certificate chain (PEM), the default certificate. `None` with
    /// `key: None`: generate a self-signed one.
    pub cert: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// More certificates, selected by SNI against their subjectAltNames
    /// (exact and wildcard); ECDSA and RSA chains may cover the same names.
    pub extra_certs: Vec<CertPair>,
    /// Stateful session cache entries (shared by all shards).
    pub session_cache: usize,
    /// TLS 1.3 tickets sent per full handshake.
    pub tls13_tickets: usize,
    /// Allow TLS 1.2.
    pub tls12: bool,
    /// Allow TLS 1.3.
    pub tls13: bool,
    /// ALPN protocols offered, in preference order.
    pub alpn: Vec<Vec<u8>>,
    /// Cipher suites by name (e.g. `TLS13_AES_128_GCM_SHA256`), in
    /// preference order. `None`: [`provider`]'s list.
    pub cipher_suites: Option<Vec<String>>,
    /// Key-exchange groups by name (e.g. `X25519MLKEM768`, `X25519`,
    /// `secp256r1`), in preference order. `None`: the provider's defaults
    /// (X25519, secp256r1, secp384r1, X25519MLKEM768).
    pub kx_groups: Option<Vec<String>>,
    /// Client-certificate authentication.
    pub client_auth: ClientAuth,
    /// CA bundle (PEM) that client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// Shared ticket-key file (see [`tickets`]); `None`: in-memory keys.
    pub ticket_key_file: Option<PathBuf>,
    /// Rotation period of in-memory or derived ticket keys and lifetime
    /// hint of tickets.
    pub ticket_rotation: Duration,
    /// Shared secret the ticket keys are derived from, per period (see
    /// [`tickets`]); exclusive with `ticket_key_file`.
    pub ticket_secret_file: Option<PathBuf>,
    /// Directory of `NAME.pem` + `NAME.key` pairs, added after
    /// `extra_certs` (see [`cert_dir`]).
    pub cert_dir: Option<PathBuf>,
    /// Compress the certificate chain (RFC 8879, brotli or zlib, TLS 1.3)
    /// for clients that offer it.
    pub cert_compression: bool,
    /// Seal and open TLS 1.3 records in the engine once the handshake is
    /// over (runtime `tls::records`); `false` leaves them to rustls.
    pub engine_records: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            cert: None,
            key: None,
            extra_certs: Vec::new(),
            session_cache: 65_536,
            tls13_tickets: 1,
            tls12: true,
            tls13: true,
            alpn: vec![b"http/1.1".to_vec()],
            cipher_suites: None,
            kx_groups: None,
            client_auth: ClientAuth::None,
            client_ca: None,
            ticket_key_file: None,
            ticket_rotation: tickets::DEFAULT_ROTATION,
            ticket_secret_file: None,
            cert_dir: None,
            cert_compression: true,
            engine_records: true,
        }
    }
}

/// Client-certificate (mutual TLS) policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A certificate is asked for; if one is sent it must verify.
    Optional,
    /// A verified certificate is required to finish the handshake.
    Required,
}

/// One more certificate: `CERT,KEY` on the command line, `{ cert, key }`
/// in the TOML file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
}

impl std::str::FromStr for CertPair {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(',') {
            Some((c, k)) if !c.is_empty() && !k.is_empty() => Ok(CertPair {
                cert: c.into(),
                key: k.into(),
            }),
            _ => Err(format!(
                "`{s}` is not CERT,KEY (two PEM file paths separated by a comma)"
            )),
        }
    }
}

/// Why the TLS configuration could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    Pem {
        /// Which file.
        path: PathBuf,
        /// What it should contain.
        what: &'static str,
        /// The underlying problem.
        detail: String,
    },
    /// Only one of cert/key was given.
    HalfPair,
    /// The key does not belong to the certificate, or is unusable.
    KeyMismatch {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// rustls's reason.
        detail: String,
    },
    /// Generating the self-signed certificate failed.
    SelfSigned(String),
    /// rustls refused the combination of settings.
    Rustls(rustls::Error),
    /// A cipher suite or key-exchange group name is not known.
    UnknownName {
        /// `cipher suite` or `key-exchange group`.
        what: &'static str,
        /// The name given.
        name: String,
        /// The names that are known.
        known: Vec<String>,
    },
    /// Client authentication is on but no usable CA bundle was given.
    ClientCa(String),
    /// The ticket-key file was refused.
    TicketKeys(tickets::TicketKeyError),
    /// A CERTIFICATE block holds something that is not an X.509 certificate.
    BadCertificate {
        /// Which file.
        path: PathBuf,
        /// Which CERTIFICATE block of the file (1 for the first).
        block: usize,
        /// The parser's reason.
        detail: String,
    },
    /// The private key is encrypted (passphrase-protected).
    EncryptedKey {
        /// Which file.
        path: PathBuf,
    },
    /// The private key is of a type rustls cannot sign with.
    UnsupportedKey {
        /// Which file.
        path: PathBuf,
        /// The key type, or the provider's reason.
        detail: String,
    },
    /// The `cert_dir` directory could not be listed, or a key in it may be
    /// read by group or others.
    CertDir {
        /// The directory, or the file in it.
        path: PathBuf,
        /// What is wrong and what to change.
        detail: String,
    },
    /// The process (after dropping privileges, typically) may not read a file.
    Unreadable {
        /// Which file.
        path: PathBuf,
        /// What it should contain.
        what: &'static str,
        /// The user the process runs as.
        uid: u32,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Pem { path, what, detail } => write!(
                f,
                "{}: cannot load {what}: {detail} (give a PEM file containing {what})",
                path.display()
            ),
            TlsError::HalfPair => {
                write!(f, "cert and key must be given together (or neither, for a self-signed certificate)")
            }
            TlsError::KeyMismatch { cert, key, detail } => write!(
                f,
                "{}: private key does not match certificate {}: {detail} (give the key that was used to issue this certificate)",
                key.display(),
                cert.display()
            ),
            TlsError::SelfSigned(e) => write!(f, "generating a self-signed certificate: {e}"),
            TlsError::Rustls(e) => write!(f, "TLS configuration rejected: {e}"),
            TlsError::UnknownName { what, name, known } => {
                write!(f, "unknown {what} `{name}` (known: {})", known.join(", "))
            }
            TlsError::ClientCa(e) => write!(f, "client authentication: {e}"),
            TlsError::TicketKeys(e) => e.fmt(f),
            TlsError::BadCertificate { path, block, detail } => write!(
                f,
                "{}: CERTIFICATE block {block} is not a valid X.509 certificate (DER): {detail} \
                 (replace that block with the certificate as issued, e.g. from \
                 `openssl x509 -in ISSUED -outform PEM`)",
                path.display()
            ),
            TlsError::EncryptedKey { path } => write!(
                f,
                "{}: the private key is encrypted (passphrase-protected); uringtls needs an \
                 unencrypted key: write one with `openssl pkey -in {} -out KEY.pem` \
                 (it asks for the passphrase), `chmod 600 KEY.pem`, and give that file",
                path.display(),
                path.display()
            ),
            TlsError::UnsupportedKey { path, detail } => write!(
                f,
                "{}: private key type not supported: {detail} (use an ECDSA P-256/P-384, \
                 Ed25519 or RSA (rsaEncryption) key; RSA keys sign with RSA-PSS too)",
                path.display()
            ),
            TlsError::CertDir { path, detail } => write!(f, "{}: {detail}", path.display()),
            TlsError::Unreadable { path, what, uid } => {
                let user = crate::process::privileges::user_name(*uid);
                write!(
                    f,
                    "{}: cannot load {what}: permission denied to user `{user}` (uid {uid}), \
                     which uringtls runs as (after --user, files are re-read as that user on \
                     reload); make the file and its directories readable by `{user}` (a private \
                     key: `chown {user}` keeping mode 0600; a certificate: owner or group \
                     `{user}`, mode 0640), or restart to read it as the starting user",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for TlsError {}

/// A loaded certificate chain and key, plus how to describe it.
pub struct Identity {
    /// Chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: PrivateKeyDer<'static>,
    /// Whether it was generated at start.
    pub self_signed: bool,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            self_signed: self.self_signed,
        }
    }
}

impl Identity {
    /// SHA-256 fingerprint of the leaf, `AA:BB:...`.
    pub fn fingerprint(&self) -> String {
        let leaf = self.chain.first().map(|c| c.as_ref()).unwrap_or_default();
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf);
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// Loads the certificate and key named in `s`, or generates a self-signed
/// certificate for `localhost`/`127.0.0.1`/`::1` when neither is given.
pub fn load_identity(s: &TlsSettings) -> Result<Identity, TlsError> {
    match (&s.cert, &s.key) {
        (Some(cert), Some(key)) => Ok(Identity {
            chain: load_certs(cert)?,
            key: load_key(key)?,
            self_signed: false,
        }),
        (None, None) => self_signed(),
        _ => Err(TlsError::HalfPair),
    }
}

/// Reads a PEM certificate chain.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |detail: String| TlsError::Pem {
        path: path.to_owned(),
        what: "a certificate chain",
        detail,
    };
    let read_err = |e: rustls_pki_types::pem::Error| {
        unreadable(path, "a certificate chain", &e).unwrap_or_else(|| pem_err(e.to_string()))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    if certs.is_empty() {
        return Err(pem_err("no CERTIFICATE block found".into()));
    }
    for (i, c) in certs.iter().enumerate() {
        if let Err(e) = x509_parser::parse_x509_certificate(c.as_ref()) {
            return Err(TlsError::BadCertificate {
                path: path.to_owned(),
                block: i + 1,
                detail: e.to_string(),
            });
        }
    }
    Ok(certs)
}

/// Reads a PEM private key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        if let Some(u) = unreadable(path, "a private key", &e) {
            return u;
        }
        if is_encrypted_key(path) {
            return TlsError::EncryptedKey {
                path: path.to_owned(),
            };
        }
        TlsError::Pem {
            path: path.to_owned(),
            what: "a private key",
            detail: e.to_string(),
        }
    })
}

/// [`TlsError::Unreadable`] when `e` is a permission error.
fn unreadable(
    path: &Path,
    what: &'static str,
    e: &rustls_pki_types::pem::Error,
) -> Option<TlsError> {
    match e {
        rustls_pki_types::pem::Error::Io(io)
            if io.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            Some(TlsError::Unreadable {
                path: path.to_owned(),
                what,
                // SAFETY: geteuid has no preconditions and cannot fail.
                uid: unsafe { libc::geteuid() },
            })
        }
        _ => None,
    }
}

/// Whether the file holds a passphrase-protected key: PKCS#8
/// `ENCRYPTED PRIVATE KEY`, or OpenSSL's legacy `Proc-Type: 4,ENCRYPTED`.
fn is_encrypted_key(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| {
        let t = String::from_utf8_lossy(&b);
        t.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || t.contains("Proc-Type: 4,ENCRYPTED")
    })
}

/// The DER encoding of the RSASSA-PSS algorithm OID (1.2.840.113549.1.1.10).
const RSASSA_PSS_OID: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
];

/// What to say about a key the provider refused: its type when we know it.
pub(crate) fn unsupported_key_detail(key: &PrivateKeyDer<'_>, provider_said: String) -> String {
    let der = key.secret_der();
    if der
        .windows(RSASSA_PSS_OID.len())
        .any(|w| w == RSASSA_PSS_OID)
    {
        "an RSASSA-PSS key (OID 1.2.840.113549.1.1.10, as made by `openssl genpkey -algorithm \
         RSA-PSS`)"
            .into()
    } else {
        provider_said
    }
}

fn self_signed() -> Result<Identity, TlsError> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ck = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der())
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    Ok(Identity {
        chain: vec![ck.cert.der().clone()],
        key,
        self_signed: true,
    })
}

/// The crypto provider: aws-lc-rs, with AES-128-GCM preferred (it is the
/// fastest bulk cipher on AES-NI machines; the server's order wins because
/// `ignore_client_order` is set).
pub fn provider() -> CryptoProvider {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    p
}

/// Builds a server config with fresh state (an engine that never reloads,
/// and tests), serving `id` as the default certificate.
pub fn server_config(s: &TlsSettings, id: &Identity) -> Result<Arc<ServerConfig>, TlsError> {
    let state = TlsState::new();
    let p = state.prepare_with(s, id)?;
    Ok(state.commit(p).0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn settings() -> TlsSettings {
        TlsSettings {
            session_cache: 1024,
            tls13_tickets: 2,
            alpn: vec![],
            ..TlsSettings::default()
        }
    }

    pub(crate) fn server_config_and_cert() -> (Arc<ServerConfig>, CertificateDer<'static>) {
        let id = load_identity(&settings()).expect("self-signed");
        let cfg = server_config(&settings(), &id).expect("config");
        (cfg, id.chain[0].clone())
    }

    #[test]
    fn self_signed_identity_has_a_sha256_fingerprint() {
        let id = load_identity(&settings()).expect("self-signed");
        assert!(id.self_signed);
        assert_eq!(id.fingerprint().len(), 32 * 3 - 1);
    }

    #[test]
    fn shared_config_has_large_cache_tickets_and_server_order() {
        let (cfg, _) = server_config_and_cert();
        assert!(cfg.ignore_client_order);
        assert!(cfg.ticketer.enabled());
        assert_eq!(cfg.send_tls13_tickets, 2);
    }

    #[test]
    fn tls13_records_are_the_engines_unless_turned_off() {
        let (cfg, _) = server_config_and_cert();
        assert!(cfg.enable_secret_extraction);
        let off = TlsSettings {
            engine_records: false,
            ..settings()
        };
        let id = load_identity(&off).expect("self-signed");
        let cfg = server_config(&off, &id).expect("config");
        assert!(!cfg.enable_secret_extraction);
    }

    #[test]
    fn key_from_another_certificate_is_a_mismatch() {
        let a = load_identity(&settings()).expect("a");
        let b = load_identity(&settings()).expect("b");
        let mixed = Identity {
            chain: a.chain,
            key: b.key,
            self_signed: false,
        };
        let mut s = settings();
        s.cert = Some("cert.pem".into());
        s.key = Some("key.pem".into());
        let err = server_config(&s, &mixed).unwrap_err();
        assert!(
            err.to_string()
                .contains("does not match certificate cert.pem"),
            "{err}"
        );
    }
}
