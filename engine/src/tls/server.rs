//! Building the shared `ServerConfig`, and what outlives a reload.
//!
//! A reload builds a whole new `ServerConfig` ([`TlsState::prepare`]) and
//! only if every file loaded and rustls accepted the combination is it
//! installed ([`TlsState::commit`]); a failure leaves the running config
//! untouched. The session cache and the ticketer are kept across reloads
//! (same `Arc`s in the new config), so sessions resume across a reload;
//! new ticket keys from a reloaded file are swapped into the same ticketer
//! at commit.

use super::sni::CertStore;
use super::tickets::{self, KeySource, Secret, TicketKey, TicketKeys};
use super::{
    load_certs, load_identity, load_key, provider, ClientAuth, Identity, TlsError, TlsSettings,
};
use rustls::crypto::CryptoProvider;
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// State shared by every config this process builds: the session cache and
/// the ticket keys. Only touched at start and on reload.
#[derive(Default)]
pub struct TlsState {
    inner: Mutex<Kept>,
    /// Wraps the SNI store of every config built (ACME), when set.
    layer: std::sync::OnceLock<Arc<dyn CertLayer>>,
}

/// A resolver put in front of the configured certificates of every config
/// this state builds, start and reload alike (ACME's challenge and issued
/// certificates: see `crate::acme`).
pub trait CertLayer: Send + Sync {
    /// The resolver the config uses, given the configured certificates.
    fn wrap(&self, store: CertStore) -> Arc<dyn rustls::server::ResolvesServerCert>;
    /// ALPN protocols to offer after the configured ones.
    fn alpn(&self) -> Vec<Vec<u8>>;
}

#[derive(Default)]
struct Kept {
    cache: Option<(usize, Arc<ServerSessionMemoryCache>)>,
    tickets: Option<Arc<TicketKeys>>,
}

/// A config ready to install (nothing of it is live yet).
pub struct Prepared {
    /// The new config.
    pub config: Arc<ServerConfig>,
    /// The default certificate.
    pub identity: Identity,
    cache: (usize, Arc<ServerSessionMemoryCache>),
    tickets: Arc<TicketKeys>,
    /// Keys from a reloaded file, for the ticketer already in use.
    new_keys: Option<Vec<TicketKey>>,
    /// A changed shared secret, for the ticketer already in use.
    new_secret: Option<Secret>,
}

impl TlsState {
    /// Fresh state (empty cache, no keys yet).
    pub fn new() -> TlsState {
        TlsState::default()
    }

    /// Puts `layer` in front of the certificates of every config built
    /// from now on (set once, before the first [`prepare`](Self::prepare)).
    pub fn set_layer(&self, layer: Arc<dyn CertLayer>) {
        let _ = self.layer.set(layer);
    }

    fn kept(&self) -> MutexGuard<'_, Kept> {
        // A panic while holding it cannot leave `Kept` half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads every file and builds a config, without installing anything.
    pub fn prepare(&self, s: &TlsSettings) -> Result<Prepared, TlsError> {
        self.prepare_with(s, &load_identity(s)?)
    }

    /// Like [`prepare`](Self::prepare) with the default certificate given
    /// (e.g. to keep a self-signed one across reloads).
    pub fn prepare_with(&self, s: &TlsSettings, identity: &Identity) -> Result<Prepared, TlsError> {
        let identity = identity.clone();
        let provider = Arc::new(super::trial::observe(select_provider(s)?));
        let mut store = CertStore::default();
        store.add(certified(
            &provider,
            identity.chain.clone(),
            identity.key.clone_key(),
            s.cert.as_deref(),
            s.key.as_deref(),
        )?);
        let dir_pairs = match &s.cert_dir {
            Some(d) => super::cert_dir::pairs(d)?,
            None => Vec::new(),
        };
        for pair in s.extra_certs.iter().chain(&dir_pairs) {
            let chain = load_certs(&pair.cert)?;
            let key = load_key(&pair.key)?;
            store.add(certified(
                &provider,
                chain,
                key,
                Some(&pair.cert),
                Some(&pair.key),
            )?);
        }
        let kept = self.kept();
        let cache = match &kept.cache {
            Some((n, c)) if *n == s.session_cache => (*n, c.clone()),
            _ => (
                s.session_cache,
                ServerSessionMemoryCache::new(s.session_cache.max(1)),
            ),
        };
        let (tickets, new_keys, new_secret) = prepare_tickets(kept.tickets.as_ref(), s)?;
        drop(kept);

        let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
        if s.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        if s.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        let certs = store.len();
        let verifier = client_verifier(s, &provider)?;
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(TlsError::Rustls)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(match self.layer.get() {
                Some(l) => l.wrap(store),
                None => Arc::new(store),
            });
        cfg.ignore_client_order = true;
        // After a TLS 1.3 handshake the session seals and opens records
        // itself, rustls keeping the key schedule (runtime `tls::records`).
        cfg.enable_secret_extraction = s.engine_records;
        // Counted per shard thread (uringtls_session_cache_lookups_total).
        cfg.session_storage = crate::metrics::tls_counts::CountingStore::wrap(cache.1.clone());
        cfg.ticketer = tickets.clone();
        cfg.send_tls13_tickets = s.tls13_tickets;
        cfg.alpn_protocols = s.alpn.clone();
        if s.cert_compression {
            // rustls compresses each chain once per algorithm and keeps the
            // result: room for every chain in both (brotli, zlib).
            cfg.cert_compression_cache =
                Arc::new(rustls::compress::CompressionCache::new((2 * certs).max(4)));
        } else {
            cfg.cert_compressors = Vec::new();
        }
        if let Some(l) = self.layer.get() {
            cfg.alpn_protocols.extend(l.alpn());
        }
        Ok(Prepared {
            config: Arc::new(cfg),
            identity,
            cache,
            tickets,
            new_keys,
            new_secret,
        })
    }

    /// Makes a prepared config the one to keep (ticket keys swapped in now).
    pub fn commit(&self, p: Prepared) -> (Arc<ServerConfig>, Identity) {
        if let Some(keys) = p.new_keys {
            p.tickets.replace(keys);
        }
        if let Some(secret) = p.new_secret {
            if let Err(e) = p.tickets.replace_secret(secret, tickets::unix_now()) {
                // Only a failing HKDF (never seen): the previous keys stay.
                tracing::error!(error = %e, "ticket secret not installed");
            }
        }
        let mut kept = self.kept();
        kept.cache = Some(p.cache);
        kept.tickets = Some(p.tickets);
        (p.config, p.identity)
    }
}

fn certified(
    provider: &CryptoProvider,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: Option<&Path>,
    key_path: Option<&Path>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let mismatch = |detail: String| match (cert_path, key_path) {
        (Some(c), Some(k)) => TlsError::KeyMismatch {
            cert: c.to_owned(),
            key: k.to_owned(),
            detail,
        },
        _ => TlsError::SelfSigned(detail),
    };
    let loaded = provider.key_provider.load_private_key(key.clone_key());
    let key = loaded.map_err(|e| match key_path {
        // Not a mismatch: this key cannot sign at all.
        Some(k) if cert_path.is_some() => TlsError::UnsupportedKey {
            path: k.to_owned(),
            detail: super::unsupported_key_detail(&key, e.to_string()),
        },
        _ => mismatch(e.to_string()),
    })?;
    let ck = CertifiedKey::new(chain, key);
    ck.keys_match().map_err(|e| mismatch(e.to_string()))?;
    Ok(Arc::new(ck))
}

/// What [`prepare_tickets`] hands to [`Prepared`]: the ticketer, and new
/// keys or a new secret for it when it is the one already in use.
type TicketPlan = (Arc<TicketKeys>, Option<Vec<TicketKey>>, Option<Secret>);

/// Reuses the ticketer in use when the source kind is unchanged (so keys,
/// and the tickets under them, survive a reload).
fn prepare_tickets(
    current: Option<&Arc<TicketKeys>>,
    s: &TlsSettings,
) -> Result<TicketPlan, TlsError> {
    // A changed rotation period (= lifetime hint) needs a new ticketer; a
    // file's keys are reloaded into it, so its tickets keep resuming.
    let current =
        current.filter(|c| c.lifetime_secs() == tickets::lifetime_secs(s.ticket_rotation));
    let kind = current.map(|c| c.source());
    if let Some(path) = &s.ticket_secret_file {
        let secret = tickets::load_secret(path).map_err(TlsError::TicketKeys)?;
        return match current {
            Some(cur) if kind == Some(KeySource::Secret) => {
                let changed = !cur.uses_secret(&secret);
                Ok((cur.clone(), None, changed.then_some(secret)))
            }
            _ => {
                let k = TicketKeys::from_secret(secret, s.ticket_rotation, tickets::unix_now())
                    .map_err(TlsError::TicketKeys)?;
                Ok((Arc::new(k), None, None))
            }
        };
    }
    match (&s.ticket_key_file, current) {
        (Some(path), Some(cur)) if kind == Some(KeySource::File) => {
            let keys = tickets::load_file(path).map_err(TlsError::TicketKeys)?;
            Ok((cur.clone(), Some(keys), None))
        }
        (Some(path), _) => {
            let keys = tickets::load_file(path).map_err(TlsError::TicketKeys)?;
            Ok((
                Arc::new(TicketKeys::from_keys(keys, s.ticket_rotation)),
                None,
                None,
            ))
        }
        (None, Some(cur)) if kind == Some(KeySource::Memory) => Ok((cur.clone(), None, None)),
        (None, _) => {
            let k = TicketKeys::rotating(s.ticket_rotation, tickets::unix_now())
                .map_err(TlsError::TicketKeys)?;
            Ok((Arc::new(k), None, None))
        }
    }
}

fn client_verifier(
    s: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    if s.client_auth == ClientAuth::None {
        return Ok(WebPkiClientVerifier::no_client_auth());
    }
    let path = s
        .client_ca
        .as_ref()
        .ok_or_else(|| TlsError::ClientCa("client_auth needs client_ca: give a PEM bundle of the CAs that issue client certificates".into()))?;
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(path)? {
        roots
            .add(c)
            .map_err(|e| TlsError::ClientCa(format!("{}: {e}", path.display())))?;
    }
    let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    let b = if s.client_auth == ClientAuth::Optional {
        b.allow_unauthenticated()
    } else {
        b
    };
    b.build()
        .map_err(|e| TlsError::ClientCa(format!("{}: {e}", path.display())))
}

/// The provider with the configured suites and groups (by name, in order).
fn select_provider(s: &TlsSettings) -> Result<CryptoProvider, TlsError> {
    let mut p = provider();
    if let Some(names) = &s.cipher_suites {
        let all = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES;
        p.cipher_suites = pick("cipher suite", names, all, |c| suite_names(c.suite()))?;
    }
    if let Some(names) = &s.kx_groups {
        let all = rustls::crypto::aws_lc_rs::ALL_KX_GROUPS;
        p.kx_groups = pick("key-exchange group", names, all, |g| {
            let n = g.name();
            vec![n
                .as_str()
                .map_or_else(|| format!("0x{:04x}", u16::from(n)), str::to_owned)]
        })?;
    }
    Ok(p)
}

/// The names a cipher suite answers to: rustls's (`TLS13_AES_128_GCM_SHA256`),
/// IANA's (`TLS_AES_128_GCM_SHA256`; the same as rustls's for TLS 1.2) and,
/// for TLS 1.2, OpenSSL's (`ECDHE-ECDSA-AES128-GCM-SHA256`; OpenSSL uses
/// the IANA names for TLS 1.3).
fn suite_names(s: rustls::CipherSuite) -> Vec<String> {
    let rustls_name = s
        .as_str()
        .map_or_else(|| format!("0x{:04x}", u16::from(s)), str::to_owned);
    let mut v = vec![rustls_name.clone()];
    if let Some(rest) = rustls_name.strip_prefix("TLS13_") {
        v.push(format!("TLS_{rest}"));
    }
    let openssl = rustls_name
        .strip_prefix("TLS_ECDHE_")
        .and_then(|r| r.split_once("_WITH_"))
        .map(|(auth, cipher)| {
            let cipher = match cipher {
                "AES_128_GCM_SHA256" => "AES128-GCM-SHA256",
                "AES_256_GCM_SHA384" => "AES256-GCM-SHA384",
                "CHACHA20_POLY1305_SHA256" => "CHACHA20-POLY1305",
                _ => return None,
            };
            Some(format!("ECDHE-{auth}-{cipher}"))
        });
    v.extend(openssl.flatten());
    v
}

fn pick<T: Copy>(
    what: &'static str,
    names: &[String],
    all: &[T],
    names_of: impl Fn(&T) -> Vec<String>,
) -> Result<Vec<T>, TlsError> {
    names
        .iter()
        .map(|n| {
            all.iter()
                .find(|x| names_of(x).iter().any(|a| a.eq_ignore_ascii_case(n.trim())))
                .copied()
                .ok_or_else(|| TlsError::UnknownName {
                    what,
                    name: n.clone(),
                    known: all.iter().map(|x| names_of(x).join(" / ")).collect(),
                })
        })
        .collect()
}

/// The verified client certificate of a connection, as services see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Subject distinguished name, RFC 4514 style (`CN=alice, O=Example`).
    pub subject: String,
    /// The subject's first common name, if any.
    pub common_name: Option<String>,
    /// The leaf certificate (DER).
    pub cert: CertificateDer<'static>,
}

/// The client's verified identity, when it presented a certificate (rustls
/// only completes the handshake if the certificate verified).
pub fn peer_identity(tls: &super::ServerConn) -> Option<PeerIdentity> {
    let leaf = tls.peer_certificates()?.first()?.clone().into_owned();
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let subject = parsed.subject().to_string();
    let common_name = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    Some(PeerIdentity {
        subject,
        common_name,
        cert: leaf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_suite_name_lists_the_known_ones() {
        let s = TlsSettings {
            cipher_suites: Some(vec!["TLS13_AES_999".into()]),
            ..TlsSettings::default()
        };
        let e = TlsState::new()
            .prepare(&s)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("unknown cipher suite `TLS13_AES_999`")
                && e.contains("TLS13_AES_128_GCM_SHA256"),
            "{e}"
        );
    }

    #[test]
    fn cipher_suites_answer_to_iana_and_openssl_names() {
        let s = TlsSettings {
            cipher_suites: Some(vec![
                "TLS_AES_128_GCM_SHA256".into(),
                "TLS_CHACHA20_POLY1305_SHA256".into(),
                "ECDHE-ECDSA-AES128-GCM-SHA256".into(),
                "ECDHE-RSA-CHACHA20-POLY1305".into(),
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into(),
            ]),
            ..TlsSettings::default()
        };
        let p = TlsState::new().prepare(&s).expect("config");
        let got: Vec<_> = p
            .config
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|c| format!("{:?}", c.suite()))
            .collect();
        assert_eq!(
            got,
            [
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            ]
        );
        let e = TlsState::new()
            .prepare(&TlsSettings {
                cipher_suites: Some(vec!["AES128-SHA".into()]),
                ..TlsSettings::default()
            })
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains("TLS13_AES_128_GCM_SHA256 / TLS_AES_128_GCM_SHA256")
                && e.contains("ECDHE-ECDSA-AES128-GCM-SHA256"),
            "{e}"
        );
    }

    #[test]
    fn suites_and_groups_are_taken_in_the_given_order() {
        let s = TlsSettings {
            cipher_suites: Some(vec!["tls13_chacha20_poly1305_sha256".into()]),
            kx_groups: Some(vec!["X25519MLKEM768".into(), "secp256r1".into()]),
            tls12: false,
            ..TlsSettings::default()
        };
        let p = TlsState::new().prepare(&s).expect("config");
        let prov = p.config.crypto_provider();
        assert_eq!(prov.cipher_suites.len(), 1);
        let groups: Vec<_> = prov
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        assert_eq!(groups, ["X25519MLKEM768", "secp256r1"]);
    }

    #[test]
    fn default_groups_include_the_post_quantum_hybrid() {
        let p = TlsState::new()
            .prepare(&TlsSettings::default())
            .expect("config");
        let groups: Vec<_> = p
            .config
            .crypto_provider()
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        assert!(groups.contains(&"X25519MLKEM768".to_string()), "{groups:?}");
    }

    #[test]
    fn client_auth_without_a_ca_bundle_is_refused() {
        let s = TlsSettings {
            client_auth: ClientAuth::Required,
            ..TlsSettings::default()
        };
        let e = TlsState::new()
            .prepare(&s)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("client_ca"), "{e}");
    }

    #[test]
    fn reload_keeps_the_cache_and_ticketer() {
        let st = TlsState::new();
        let (a, _) = st.commit(st.prepare(&TlsSettings::default()).expect("a"));
        let (b, _) = st.commit(st.prepare(&TlsSettings::default()).expect("b"));
        assert!(!Arc::ptr_eq(&a, &b));
        let ta = format!("{:p}", Arc::as_ptr(&a.ticketer));
        let tb = format!("{:p}", Arc::as_ptr(&b.ticketer));
        assert_eq!(ta, tb, "same ticketer after reload");
    }

    #[test]
    fn a_new_rotation_period_takes_effect_on_reload() {
        let st = TlsState::new();
        let (a, _) = st.commit(st.prepare(&TlsSettings::default()).expect("a"));
        let s = TlsSettings {
            ticket_rotation: std::time::Duration::from_secs(60),
            ..TlsSettings::default()
        };
        let (b, _) = st.commit(st.prepare(&s).expect("b"));
        assert_eq!(b.ticketer.lifetime(), 60);
        assert_ne!(a.ticketer.lifetime(), 60);
    }

    #[test]
    fn certificates_are_compressed_with_brotli_and_zlib_unless_turned_off() {
        let on = TlsState::new()
            .prepare(&TlsSettings::default())
            .expect("config");
        let algs: Vec<_> = on
            .config
            .cert_compressors
            .iter()
            .map(|c| format!("{:?}", c.algorithm()))
            .collect();
        assert_eq!(algs, ["Brotli", "Zlib"]);
        let off = TlsState::new()
            .prepare(&TlsSettings {
                cert_compression: false,
                ..TlsSettings::default()
            })
            .expect("config");
        assert!(off.config.cert_compressors.is_empty());
    }
}
