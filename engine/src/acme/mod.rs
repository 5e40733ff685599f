//! Automatic certificates: ACME (RFC 8555) with the TLS-ALPN-01 challenge
//! (RFC 8737) answered on the TLS listener itself.
//!
//! ```text
//!  start: cache ─▶ issued certificates installed (before the first accept)
//!  control thread "acme" (own current-thread tokio runtime), one task per name:
//!    loop: cached cert valid and not due? sleep until due (2/3 of its life)
//!          due: flock NAME.lock (else another instance orders: wait, re-read)
//!               order ─▶ challenge cert in `Shared::challenges` ─▶ validated
//!               ─▶ finalize ─▶ NAME.pem written ─▶ `Shared::issued` swapped
//!          failure: logged with the problem's detail, retried with backoff
//! ```
//!
//! The shards only see [`challenge::Shared`] through the resolver of the
//! TLS config ([`challenge::AcmeResolver`]); a new certificate appears for
//! the next handshake, as after a SIGHUP. A name without a certificate yet
//! gets the default certificate (as any name no certificate covers): its
//! clients fail verification until the first order succeeds. One name's
//! failure never delays another's: each name has its own task.

pub mod cache;
pub mod challenge;
pub mod metrics;
pub mod order;

use cache::Cache;
use challenge::Shared;
use metrics::{AcmeMetrics, Outcome};
use rustls::sign::CertifiedKey;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use challenge::ACME_TLS_ALPN;

/// Let's Encrypt's production directory (the default).
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, high limits).
#[cfg(test)]
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// First wait after a failed order; doubled after each failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(60);
/// Longest wait between failed orders.
pub const BACKOFF_MAX: Duration = Duration::from_secs(6 * 3600);
/// How often a name whose lock another instance holds is looked at again.
const LOCK_POLL: Duration = Duration::from_secs(2);
/// Longest sleep between looks at the cache (picks up another instance's
/// renewal, and bounds the effect of a wall-clock jump).
const RECHECK: Duration = Duration::from_secs(3600);

/// ACME settings (`--acme-*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// Names to obtain certificates for (lower-case, one certificate each).
    pub domains: Vec<String>,
    /// The ACME server's directory URL.
    pub directory: String,
    /// Contact address for the account (`mailto:` added).
    pub email: Option<String>,
    /// Cache directory (account, certificates, keys, locks).
    pub cache: PathBuf,
    /// Extra roots (PEM) to trust for the ACME server's HTTPS.
    pub ca: Option<PathBuf>,
}

/// When a certificate valid from `not_before` to `not_after` is renewed:
/// two thirds into its lifetime.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let life = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    not_before + life * 2 / 3
}

/// Wait after the `failures`-th failure in a row (1 for the first).
pub fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(20);
    (BACKOFF_MIN * (1u32 << shift)).min(BACKOFF_MAX)
}

/// Validity of a leaf certificate (DER), and its end as text for logs.
fn validity(leaf: &[u8]) -> Option<(SystemTime, SystemTime, String)> {
    let (_, c) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let t = |s: i64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(s).ok()?));
    let v = c.validity();
    Some((
        t(v.not_before.timestamp())?,
        t(v.not_after.timestamp())?,
        v.not_after.to_string(),
    ))
}

/// ACME for one engine: the shared maps, the cache, the metrics.
pub struct Acme {
    settings: AcmeSettings,
    /// `--acme-ca`'s certificates, read at start (before a privilege drop).
    extra_roots: Vec<rustls_pki_types::CertificateDer<'static>>,
    cache: Cache,
    shared: Arc<Shared>,
    metrics: Arc<AcmeMetrics>,
}

impl Acme {
    /// Opens the cache (refusing one open to others) and installs every
    /// valid cached certificate, so that they serve from the first
    /// handshake. Nothing is ordered yet ([`start`](Self::start)).
    pub fn prepare(settings: &AcmeSettings, insecure_permissions: bool) -> Result<Acme, AcmeError> {
        let cache = Cache::open(&settings.cache, insecure_permissions)?;
        let extra_roots = match &settings.ca {
            Some(p) => crate::tls::load_certs(p)?,
            None => Vec::new(),
        };
        let acme = Acme {
            settings: settings.clone(),
            extra_roots,
            shared: Arc::new(Shared {
                cache_dir: Some(cache.dir().to_owned()),
                managed: settings.domains.clone(),
                ..Shared::default()
            }),
            cache,
            metrics: Arc::default(),
        };
        for name in &settings.domains {
            acme.reload_cached(name, false);
        }
        Ok(acme)
    }

    /// What the TLS config puts in front of the configured certificates.
    pub fn layer(&self) -> Arc<dyn crate::tls::server::CertLayer> {
        Arc::new(self.shared.clone())
    }

    /// The metrics, for `/metrics`.
    pub fn metrics(&self) -> Arc<AcmeMetrics> {
        self.metrics.clone()
    }

    /// Starts the control thread `acme` (after the listener is bound: the
    /// challenges are answered on it). It runs for the life of the process.
    pub fn start(self) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("acme".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "acme: cannot start the control runtime; no certificate will be ordered");
                        return;
                    }
                };
                rt.block_on(self.run());
            })
            .map(drop)
    }

    async fn run(self) {
        let me = Arc::new(Control {
            acme: self,
            account: tokio::sync::Mutex::new(None),
        });
        let tasks: Vec<_> = me
            .acme
            .settings
            .domains
            .iter()
            .map(|n| tokio::spawn(me.clone().manage(n.clone())))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// Installs `name`'s cached certificate if it loads, is unexpired and
    /// differs from the one serving (`fresh`: just ordered by us); returns
    /// its validity.
    fn reload_cached(&self, name: &str, fresh: bool) -> Option<(SystemTime, SystemTime)> {
        let cached = match self.cache.load(name) {
            Ok(c) => c?,
            Err(e) => {
                tracing::warn!(name, error = %e, "acme: cached certificate unusable; ordering a new one");
                return None;
            }
        };
        let (not_before, not_after, until) = validity(cached.chain[0].as_ref())?;
        if not_after <= SystemTime::now() {
            return None;
        }
        let serving = self.shared.issued.get(name);
        if serving.is_some_and(|s| s.cert.first() == cached.chain.first()) {
            return Some((not_before, not_after));
        }
        let key = match crate::tls::provider()
            .key_provider
            .load_private_key(cached.key)
        {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(name, error = %e, "acme: cached key unusable; ordering a new one");
                return None;
            }
        };
        let ck = CertifiedKey::new(cached.chain, key);
        if ck.keys_match().is_err() {
            tracing::warn!(
                name,
                "acme: cached key does not match its certificate; ordering a new one"
            );
            return None;
        }
        self.shared.issued.set(name, Some(Arc::new(ck)));
        self.metrics.expires(name, not_after);
        if fresh {
            tracing::info!(name, not_after = %until, "acme: certificate issued and installed");
        } else {
            tracing::info!(name, not_after = %until, "acme: certificate installed from the cache");
        }
        Some((not_before, not_after))
    }
}

/// The control thread's state.
struct Control {
    acme: Acme,
    account: tokio::sync::Mutex<Option<instant_acme::Account>>,
}

impl Control {
    /// Keeps `name` certified, forever.
    async fn manage(self: Arc<Self>, name: String) {
        let a = &self.acme;
        let mut failures = 0u32;
        loop {
            let due = a
                .reload_cached(&name, false)
                .map(|(nb, na)| renew_at(nb, na));
            let now = SystemTime::now();
            if let Some(wait) = due.and_then(|d| d.duration_since(now).ok()) {
                tokio::time::sleep(wait.min(RECHECK)).await;
                continue;
            }
            let lock = match a.cache.try_lock(&name) {
                Ok(Some(l)) => l,
                Ok(None) => {
                    tracing::debug!(
                        name,
                        "acme: another instance is ordering; waiting for its result"
                    );
                    tokio::time::sleep(LOCK_POLL).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(name, error = %e, "acme: cannot lock the cache");
                    failures += 1;
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
            };
            // Another instance may have finished just before we locked.
            if let Some((nb, na)) = a.reload_cached(&name, false) {
                if renew_at(nb, na) > SystemTime::now() {
                    continue;
                }
            }
            tracing::info!(name, directory = %a.settings.directory, "acme: ordering a certificate");
            let outcome = self.order(&name).await;
            drop(lock);
            a.metrics.order(outcome);
            if outcome == Outcome::Issued {
                failures = 0;
                let due = a.shared.issued.get(&name).and_then(|ck| {
                    let (nb, na, _) = validity(ck.cert.first()?.as_ref())?;
                    Some(renew_at(nb, na))
                });
                if due.is_none_or(|d| d <= SystemTime::now()) {
                    // Never order back to back (a lifetime shorter than the
                    // order took, or a clock far off the CA's).
                    tracing::warn!(name, retry_in = ?BACKOFF_MIN, "acme: the new certificate is already due for renewal (clock skew?)");
                    tokio::time::sleep(BACKOFF_MIN).await;
                }
                continue;
            }
            failures += 1;
            let wait = backoff(failures);
            tracing::info!(name, retry_in = ?wait, failures, "acme: will retry");
            tokio::time::sleep(wait).await;
        }
    }

    /// One order; the certificate is stored and installed on success.
    async fn order(&self, name: &str) -> Outcome {
        let a = &self.acme;
        let account = match self.account().await {
            Ok(acc) => acc,
            Err(e) => {
                tracing::error!(name, error = %e, "acme: no account");
                return outcome_of(&e);
            }
        };
        let issued = match order::issue(&account, name, &a.shared, &a.cache).await {
            Ok(i) => i,
            Err(e) => {
                if e.account_does_not_exist() {
                    // The server forgot us (a reset test CA): a new
                    // account next time.
                    *self.account.lock().await = None;
                    let _ = std::fs::remove_file(a.cache.account_path(&a.settings.directory));
                }
                tracing::error!(name, error = %e, "acme: order failed; the current certificate keeps serving");
                return outcome_of(&e);
            }
        };
        if let Err(e) = a.cache.store(name, &issued.chain_pem, &issued.key_pem) {
            tracing::error!(name, error = %e, "acme: cannot write the certificate to the cache");
            return Outcome::Failed;
        }
        match a.reload_cached(name, true) {
            Some(_) => Outcome::Issued,
            None => {
                tracing::error!(name, "acme: the issued certificate does not load");
                Outcome::Failed
            }
        }
    }

    /// The account: from the cache, else created (and cached).
    async fn account(&self) -> Result<instant_acme::Account, order::OrderError> {
        let mut slot = self.account.lock().await;
        if let Some(a) = slot.as_ref() {
            return Ok(a.clone());
        }
        let a = &self.acme;
        let path = a.cache.account_path(&a.settings.directory);
        let builder = || {
            http_client(a.extra_roots.clone())
                .map(instant_acme::Account::builder_with_http)
                .map_err(order::OrderError::local)
        };
        let cached = a.cache.read(&path).map_err(order::OrderError::local)?;
        let account = match cached.and_then(|b| serde_json::from_slice(&b).ok()) {
            Some(creds) => builder()?.from_credentials(creds).await?,
            None => {
                let contact = a.settings.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let new = instant_acme::NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, creds) = builder()?
                    .create(&new, a.settings.directory.clone(), None)
                    .await?;
                let json = serde_json::to_vec(&creds).map_err(order::OrderError::local)?;
                a.cache
                    .write(&path, &json)
                    .map_err(order::OrderError::local)?;
                tracing::info!(id = account.id(), "acme: account created");
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }
}

fn outcome_of(e: &order::OrderError) -> Outcome {
    match e {
        order::OrderError::Refused { .. } => Outcome::Refused,
        _ => Outcome::Failed,
    }
}

/// Why ACME could not be prepared at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcmeError {
    /// The cache directory is unusable.
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    /// The `--acme-ca` file does not load.
    #[error(transparent)]
    Ca(#[from] crate::tls::TlsError),
}

/// Why the HTTPS client to the ACME server could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpClientError {
    /// The trust roots (the system's, plus `--acme-ca`) do not load.
    #[error("trust roots for the ACME server: {0}")]
    Roots(rustls::Error),
    /// The TLS client config cannot be built.
    #[error(transparent)]
    Config(rustls::Error),
}

/// The HTTPS client to the ACME server: the system's roots, plus `extra`.
fn http_client(
    extra: Vec<rustls_pki_types::CertificateDer<'static>>,
) -> Result<Box<dyn instant_acme::HttpClient>, HttpClientError> {
    let provider = Arc::new(crate::tls::provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(HttpClientError::Roots)?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(HttpClientError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let conn = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, instant_acme::BodyWrapper<bytes::Bytes>>(conn);
    Ok(Box::new(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_two_thirds_into_the_lifetime() {
        let nb = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let na = nb + Duration::from_secs(90 * 86_400);
        assert_eq!(renew_at(nb, na), nb + Duration::from_secs(60 * 86_400));
        assert_eq!(renew_at(na, nb), na, "a backwards validity is due at once");
    }

    #[test]
    fn backoff_doubles_from_a_minute_up_to_six_hours() {
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(2), Duration::from_secs(120));
        assert_eq!(backoff(4), Duration::from_secs(480));
        assert_eq!(backoff(30), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
