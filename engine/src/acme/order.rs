//! One order for one name (RFC 8555 section 7.4), answered by TLS-ALPN-01
//! on our own listener: new order, challenge certificate installed, ready,
//! poll, finalize with our CSR, download the chain.

use super::cache::Cache;
use super::challenge::{challenge_cert, Shared};
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};
use std::fmt;
use std::time::Duration;

/// A certificate freshly issued: chain and key, PEM.
pub struct Issued {
    /// Chain, leaf first.
    pub chain_pem: String,
    /// The private key (PKCS#8). Never logged.
    pub key_pem: String,
}

/// RFC 8555's problem type for an account the server does not know.
const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// Why an order did not end with a certificate.
#[derive(Debug)]
#[non_exhaustive]
pub enum OrderError {
    /// The ACME server answered with a problem document (RFC 7807), or a
    /// challenge or the order ended invalid.
    Refused {
        /// The problem's type (`urn:ietf:params:acme:error:...`).
        kind: Option<String>,
        /// The problem's detail (what the server says is wrong).
        detail: String,
    },
    /// The server could not be reached, or answered something unusable.
    Transport(instant_acme::Error),
    /// A local failure (key or CSR generation, the cache, the HTTPS
    /// client); the error keeps its type for a caller to downcast.
    Local(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for OrderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderError::Refused { kind, detail } => match kind {
                Some(k) => write!(f, "refused by the ACME server: {detail} ({k})"),
                None => write!(f, "refused by the ACME server: {detail}"),
            },
            OrderError::Transport(e) => write!(f, "ACME server unreachable or unusable: {e}"),
            OrderError::Local(e) => write!(f, "local failure: {e}"),
        }
    }
}

impl From<instant_acme::Error> for OrderError {
    fn from(e: instant_acme::Error) -> Self {
        match e {
            instant_acme::Error::Api(p) => OrderError::refused(&p),
            other => OrderError::Transport(other),
        }
    }
}

impl OrderError {
    /// Whether the server no longer knows the account (its problem type is
    /// RFC 8555's `accountDoesNotExist`): a new account is needed.
    pub fn account_does_not_exist(&self) -> bool {
        matches!(
            self,
            OrderError::Refused { kind: Some(k), .. } if k == ACCOUNT_DOES_NOT_EXIST
        )
    }

    /// A local failure with cause `e`.
    pub(crate) fn local(e: impl std::error::Error + Send + Sync + 'static) -> OrderError {
        OrderError::Local(Box::new(e))
    }

    fn refused(p: &instant_acme::Problem) -> OrderError {
        let mut detail = p.detail.clone().unwrap_or_else(|| "(no detail)".into());
        for s in &p.subproblems {
            if let Some(d) = &s.detail {
                detail.push_str("; ");
                detail.push_str(d);
            }
        }
        OrderError::Refused {
            kind: p.r#type.clone(),
            detail,
        }
    }
}

/// Removes the challenge certificate however the order ends.
struct ChallengeGuard<'a> {
    shared: &'a Shared,
    cache: &'a Cache,
    name: &'a str,
}

impl Drop for ChallengeGuard<'_> {
    fn drop(&mut self) {
        self.shared.challenges.set(self.name, None);
        if let Err(e) = self.cache.publish_challenge(self.name, None) {
            tracing::warn!(name = self.name, error = %e, "acme: cannot remove the challenge file");
        }
    }
}

/// How long the server gets to validate, and then to issue.
fn retries() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5)
        .timeout(Duration::from_secs(90))
}

/// Orders a certificate for `name`.
pub async fn issue(
    account: &Account,
    name: &str,
    shared: &Shared,
    cache: &Cache,
) -> Result<Issued, OrderError> {
    let ids = [Identifier::Dns(name.to_owned())];
    let mut order = account.new_order(&NewOrder::new(&ids)).await?;
    let _guard = ChallengeGuard {
        shared,
        cache,
        name,
    };
    let mut authzs = order.authorizations();
    while let Some(a) = authzs.next().await {
        let mut a = a?;
        match a.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(OrderError::Refused {
                    kind: None,
                    detail: format!("authorization for {name} is {other:?}"),
                })
            }
        }
        let mut ch = a
            .challenge(ChallengeType::TlsAlpn01)
            .ok_or_else(|| OrderError::Refused {
                kind: None,
                detail: "the server offers no tls-alpn-01 challenge".into(),
            })?;
        let digest = ch.key_authorization().digest();
        let cert = challenge_cert(name, digest.as_ref()).map_err(OrderError::local)?;
        // Before the server is told to validate: its connection may reach
        // another instance sharing the cache.
        cache
            .publish_challenge(name, Some(&cert.pem))
            .map_err(OrderError::local)?;
        shared.challenges.set(name, Some(cert.ck));
        ch.set_ready().await?;
    }
    let status = order.poll_ready(&retries()).await?;
    if status != OrderStatus::Ready {
        return Err(invalid_order(&mut order, name).await);
    }
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(OrderError::local)?;
    let csr = rcgen::CertificateParams::new(vec![name.to_owned()])
        .and_then(|p| p.serialize_request(&key))
        .map_err(OrderError::local)?;
    order.finalize_csr(csr.der()).await?;
    let chain_pem = order.poll_certificate(&retries()).await?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// The problem behind an invalid order: the first failed challenge's.
async fn invalid_order(order: &mut instant_acme::Order, name: &str) -> OrderError {
    let mut authzs = order.authorizations();
    while let Some(Ok(a)) = authzs.next().await {
        if let Some(p) = a.challenges.iter().find_map(|c| c.error.as_ref()) {
            return OrderError::refused(p);
        }
    }
    OrderError::Refused {
        kind: None,
        detail: format!("the order for {name} became invalid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_account_is_known_by_the_problem_type_not_the_detail() {
        let gone = OrderError::Refused {
            kind: Some(ACCOUNT_DOES_NOT_EXIST.into()),
            detail: "no such account".into(),
        };
        assert!(gone.account_does_not_exist());
        let other = OrderError::Refused {
            kind: Some("urn:ietf:params:acme:error:malformed".into()),
            detail: "accountDoesNotExist".into(),
        };
        assert!(!other.account_does_not_exist());
        let local = OrderError::local(std::io::Error::other("accountDoesNotExist"));
        assert!(!local.account_does_not_exist());
    }
}
