//! Operating settings: protection limits, the header timeout, metrics,
//! access log, privileges. The fields live in [`Options`] with the rest
//! (flags and TOML alike); their checks and defaults live here.
//! Each default and the reason for it is in `docs/operations.md`.

use super::{ConfigError, Options, Origin};
use crate::limits::DEFAULT_MAX_HANDSHAKES;
use crate::limits::{
    AccessList, Cidr, LimitSettings, DEFAULT_CONN_BURST_PER_IP, DEFAULT_IPV6_PREFIX,
};
use std::net::SocketAddr;
use std::time::Duration;

pub use crate::services::http::DEFAULT_HEADER_TIMEOUT;

/// Resolved operating settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Operations {
    /// Admission limits at accept.
    pub limits: LimitSettings,
    /// http header-read deadline.
    pub header_timeout: Duration,
    /// Where `/metrics` is served (`None`: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// One log line per connection (target `uringtls::access`).
    pub access_log: bool,
    /// Drop to this user after binding and reading keys.
    pub user: Option<String>,
    /// ... and this group (default: the user's primary group).
    pub group: Option<String>,
    /// Start even if the key file is readable by group/others.
    pub insecure_key_permissions: bool,
}

impl Default for Operations {
    fn default() -> Self {
        Operations {
            limits: LimitSettings::default(),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            metrics_listen: None,
            access_log: false,
            user: None,
            group: None,
            insecure_key_permissions: false,
        }
    }
}

/// Levels a log filter may name (case-insensitive).
const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Checks a log filter (`--log-level`, `RUST_LOG`): comma-separated
/// directives, each a known level or `target=level` with a known level.
/// `tracing`'s own parser would take a mistyped level such as `warning`
/// for a target name and silence every log line.
pub fn check_log_filter(filter: &str) -> Result<(), LogFilterError> {
    let known = |l: &str| LOG_LEVELS.iter().any(|k| k.eq_ignore_ascii_case(l.trim()));
    let mut any = false;
    for d in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        any = true;
        match d.rsplit_once('=') {
            None if !known(d) => return Err(LogFilterError::NotALevel(d.to_owned())),
            Some((_, level)) if !known(level) => {
                return Err(LogFilterError::DirectiveLevel(d.to_owned()))
            }
            _ => {}
        }
    }
    if !any {
        return Err(LogFilterError::Empty);
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map(drop)
        .map_err(LogFilterError::Parse)
}

/// Why a log filter is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogFilterError {
    /// A bare directive that is not a level.
    #[error("`{0}` is not a log level (known: {levels})", levels = LOG_LEVELS.join(", "))]
    NotALevel(String),
    /// `target=level` with an unknown level.
    #[error("directive `{0}` does not end in a known level (`target=level`, level one of {levels})", levels = LOG_LEVELS.join(", "))]
    DirectiveLevel(String),
    /// Nothing in it.
    #[error("an empty filter")]
    Empty,
    /// `tracing`'s own parser refused it.
    #[error(transparent)]
    Parse(tracing_subscriber::filter::ParseError),
}

fn cidrs(list: &[String]) -> Result<Vec<Cidr>, crate::limits::cidr::CidrError> {
    list.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.parse())
        .collect()
}

impl Options {
    /// Checks the operating values present in one source.
    pub(super) fn check_operations(&self, o: Origin<'_>) -> Result<(), ConfigError> {
        if self.header_timeout.is_some_and(|d| d.0.is_zero()) {
            return Err(o.invalid(
                "header_timeout",
                "a zero timeout",
                "use a positive duration such as `10s`",
            ));
        }
        if self.max_conns_total == Some(0) {
            return Err(o.invalid(
                "max_conns_total",
                "a cap of 0 connections",
                "use 1 or more, or leave it unset (no global cap)",
            ));
        }
        if self.max_conns_per_ip == Some(0) {
            return Err(o.invalid(
                "max_conns_per_ip",
                "a cap of 0 connections",
                "use 1 or more, or leave it unset (no cap)",
            ));
        }
        if let Some(r) = self.conn_rate_per_ip {
            if !(r.is_finite() && r > 0.0) {
                return Err(o.invalid(
                    "conn_rate_per_ip",
                    format!("{r} connections per second"),
                    "use a positive rate such as 50, or leave it unset",
                ));
            }
        }
        if self.conn_burst_per_ip == Some(0) {
            return Err(o.invalid(
                "conn_burst_per_ip",
                "a burst of 0",
                format!(
                    "use 1 or more (default {})",
                    crate::limits::DEFAULT_CONN_BURST_PER_IP
                ),
            ));
        }
        if self.per_ip_ipv6_prefix.is_some_and(|p| p > 128) {
            return Err(o.invalid(
                "per_ip_ipv6_prefix",
                "more than 128 bits",
                format!(
                    "use 0..=128 (default {})",
                    crate::limits::DEFAULT_IPV6_PREFIX
                ),
            ));
        }
        for (name, list) in [
            ("allow", &self.allow),
            ("deny", &self.deny),
            ("accept_proxy", &self.accept_proxy),
        ] {
            if let Some(l) = list {
                cidrs(l).map_err(|p| {
                    o.invalid(
                        name,
                        p,
                        "write CIDR blocks such as 10.0.0.0/8 or 2001:db8::/32",
                    )
                })?;
            }
        }
        if let Some(a) = &self.metrics_listen {
            super::parse_listen(a).map_err(|p| {
                o.invalid("metrics_listen", p, "write IP:PORT, e.g. 127.0.0.1:9100")
            })?;
        }
        if self.group.is_some() && self.user.is_none() {
            return Err(o.invalid(
                "group",
                "a group without a user",
                "give `user` too (the group alone is not dropped to)",
            ));
        }
        if self.max_handshakes == Some(0) {
            return Err(o.invalid(
                "max_handshakes",
                "0 handshakes in progress would accept nothing",
                format!(
                    "use 1 or more (default {})",
                    crate::limits::DEFAULT_MAX_HANDSHAKES
                ),
            ));
        }
        Ok(())
    }

    /// Builds the operating settings from merged options.
    pub(super) fn operations(&self) -> Result<Operations, ConfigError> {
        let bad = |f: &str, p: crate::limits::cidr::CidrError| {
            super::Origin::Flag.invalid(f, p, "write CIDR blocks")
        };
        let access = AccessList {
            allow: cidrs(self.allow.as_deref().unwrap_or_default()).map_err(|p| bad("allow", p))?,
            deny: cidrs(self.deny.as_deref().unwrap_or_default()).map_err(|p| bad("deny", p))?,
        };
        let metrics_listen = match &self.metrics_listen {
            Some(a) => Some(
                super::parse_listen(a)
                    .map_err(|p| Origin::Flag.invalid("metrics_listen", p, "write IP:PORT"))?,
            ),
            None => None,
        };
        Ok(Operations {
            limits: LimitSettings {
                access,
                max_conns_per_ip: self.max_conns_per_ip,
                conn_rate_per_ip: self.conn_rate_per_ip,
                conn_burst_per_ip: self.conn_burst_per_ip.unwrap_or(DEFAULT_CONN_BURST_PER_IP),
                ipv6_prefix: self.per_ip_ipv6_prefix.unwrap_or(DEFAULT_IPV6_PREFIX),
                max_conns_total: self.max_conns_total,
                max_handshakes: self.max_handshakes.unwrap_or(DEFAULT_MAX_HANDSHAKES),
                accept_proxy: cidrs(self.accept_proxy.as_deref().unwrap_or_default())
                    .map_err(|p| bad("accept_proxy", p))?,
            },
            header_timeout: self
                .header_timeout
                .map(|h| h.0)
                .unwrap_or(DEFAULT_HEADER_TIMEOUT),
            metrics_listen,
            access_log: self.access_log.unwrap_or(false),
            user: self.user.clone(),
            group: self.group.clone(),
            insecure_key_permissions: self.insecure_key_permissions.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use crate::config::tests::flags;

    #[test]
    fn operating_defaults_are_off_or_documented() {
        let s = flags(&[]).resolve().expect("ok");
        assert_eq!(s.ops, Operations::default());
        assert_eq!(s.ops.header_timeout, DEFAULT_HEADER_TIMEOUT);
    }

    #[test]
    fn limits_come_from_flags_and_file() {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(
            b"deny = [\"10.0.0.0/8\"]\nmax_conns_per_ip = 3\nmetrics_listen = \"127.0.0.1:9100\"\n",
        )
        .expect("write");
        let path = f.path().to_str().expect("utf8");
        let s = flags(&[
            "--config",
            path,
            "--allow",
            "127.0.0.0/8,::1",
            "--conn-rate-per-ip",
            "5",
        ])
        .resolve()
        .expect("ok");
        assert_eq!(s.ops.limits.max_conns_per_ip, Some(3));
        assert_eq!(s.ops.limits.conn_rate_per_ip, Some(5.0));
        assert_eq!(s.ops.limits.access.allow.len(), 2);
        assert_eq!(s.ops.limits.access.deny[0].to_string(), "10.0.0.0/8");
        assert_eq!(
            s.ops.metrics_listen,
            Some("127.0.0.1:9100".parse().expect("addr"))
        );
    }

    #[test]
    fn log_filters_take_known_levels_only() {
        for ok in [
            "info",
            "WARN",
            "off",
            "warn,uringtls::access=info",
            "uringtls=debug",
        ] {
            assert!(check_log_filter(ok).is_ok(), "{ok}");
        }
        for bad in [
            "warning",
            "verbose",
            "uringtls=lots",
            "uringtls",
            "info,",
            "",
        ] {
            if bad == "info," {
                assert!(
                    check_log_filter(bad).is_ok(),
                    "a trailing comma is harmless"
                );
                continue;
            }
            assert!(check_log_filter(bad).is_err(), "{bad}");
        }
        let e = check_log_filter("warning").unwrap_err();
        assert!(
            matches!(&e, LogFilterError::NotALevel(d) if d == "warning"),
            "{e:?}"
        );
        assert!(matches!(
            check_log_filter("uringtls=lots"),
            Err(LogFilterError::DirectiveLevel(_))
        ));
        assert!(matches!(check_log_filter(""), Err(LogFilterError::Empty)));
        let e = e.to_string();
        assert!(
            e.contains("`warning` is not a log level") && e.contains("warn"),
            "{e}"
        );
    }

    #[test]
    fn bad_operating_values_name_their_source() {
        let e = flags(&["--deny", "10.0.0.1/8"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("flag --deny:") && e.contains("did you mean 10.0.0.0/8"),
            "{e}"
        );
        let e = flags(&["--max-conns-per-ip", "0"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("flag --max-conns-per-ip:"), "{e}");
        let e = flags(&["--group", "nogroup"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains("give `user` too"), "{e}");
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(b"conn_rate_per_ip = -1.0\n").expect("write");
        let path = f.path().to_str().expect("utf8");
        let e = flags(&["--config", path])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains("field `conn_rate_per_ip`"), "{e}");
    }

    #[test]
    fn accept_proxy_comes_from_repeated_or_comma_separated_flags_and_the_file() {
        assert!(flags(&[])
            .resolve()
            .expect("ok")
            .ops
            .limits
            .accept_proxy
            .is_empty());
        let s = flags(&[
            "--accept-proxy",
            "10.0.0.0/8,192.0.2.1",
            "--accept-proxy",
            "2001:db8::/32",
        ])
        .resolve()
        .expect("ok");
        let l = &s.ops.limits;
        assert_eq!(l.accept_proxy.len(), 3);
        assert!(l.is_balancer("10.1.2.3".parse().expect("ip")));
        assert!(l.is_balancer("192.0.2.1".parse().expect("ip")));
        assert!(l.is_balancer("2001:db8::5".parse().expect("ip")));
        assert!(!l.is_balancer("192.0.2.2".parse().expect("ip")));
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(b"accept_proxy = [\"127.0.0.1/32\"]\n")
            .expect("write");
        let path = f.path().to_str().expect("utf8");
        let s = flags(&["--config", path]).resolve().expect("ok");
        assert_eq!(s.ops.limits.accept_proxy[0].to_string(), "127.0.0.1/32");
    }

    #[test]
    fn a_bad_accept_proxy_block_names_the_flag_or_the_file_and_what_to_write() {
        let e = flags(&["--accept-proxy", "10.0.0.1/8"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("flag --accept-proxy:") && e.contains("did you mean 10.0.0.0/8"),
            "{e}"
        );
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(b"accept_proxy = [\"lb.example\"]\n")
            .expect("write");
        let path = f.path().to_str().expect("utf8");
        let e = flags(&["--config", path])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{path}: field `accept_proxy`"))
                && e.contains("`lb.example` is not an address")
                && e.contains("write CIDR blocks such as 10.0.0.0/8"),
            "{e}"
        );
    }

    #[test]
    fn the_handshake_budget_comes_from_flag_or_file_and_is_never_zero() {
        let s = flags(&[]).resolve().expect("ok");
        assert_eq!(s.ops.limits.max_handshakes, DEFAULT_MAX_HANDSHAKES);
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(b"max_handshakes = 64\n").expect("write");
        let path = f.path().to_str().expect("utf8");
        let s = flags(&["--config", path]).resolve().expect("ok");
        assert_eq!(s.ops.limits.max_handshakes, 64);
        let s = flags(&["--config", path, "--max-handshakes", "8"])
            .resolve()
            .expect("ok");
        assert_eq!(s.ops.limits.max_handshakes, 8, "the flag wins");
        let e = flags(&["--max-handshakes", "0"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("flag --max-handshakes:"), "{e}");
    }
}
