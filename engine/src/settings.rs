//! [`SettingsBuilder`]: the engine's settings built in code, without the
//! binary's flags.
//!
//! The builder and the binary share one path: the builder fills the same
//! option set the flags and the TOML file fill, and [`build`]
//! (SettingsBuilder::build) validates it exactly as the binary does at
//! start (ranges, files named, certificates parsed later by
//! [`Engine::start`](crate::Engine::start)). What has no setter here can be
//! given as TOML ([`SettingsBuilder::from_toml`], the keys of
//! `docs/operations.md`). Values are checked as the binary checks its flags:
//! an error names the setting by its flag (`flag --idle-timeout`).
//!
//! [`build`]: SettingsBuilder::build

use crate::config::{ConfigError, HumanDuration, Options, Settings};
use crate::io::Backend;
use std::path::PathBuf;
use std::time::Duration;

/// Builds [`Settings`] in code. Every setting not given keeps the
/// binary's default (listed in `docs/operations.md`): `127.0.0.1:8443`,
/// one shard per available CPU, a self-signed certificate for
/// `localhost`, ALPN `http/1.1`, TLS 1.2 and 1.3, and so on.
///
/// ```
/// use std::time::Duration;
/// let settings = uringtls::SettingsBuilder::from_toml("max_handshakes = 64")
///     .expect("valid TOML")
///     .listen("127.0.0.1:0")
///     .shards(1)
///     .idle_timeout(Duration::from_secs(30))
///     .build()
///     .expect("valid settings");
/// # let _ = settings;
/// ```
#[derive(Debug, Clone, Default)]
pub struct SettingsBuilder {
    options: Options,
}

/// The origin named in errors about a TOML string (no file).
const TOML_ORIGIN: &str = "(TOML given to SettingsBuilder::from_toml)";

impl SettingsBuilder {
    /// Every setting at its default.
    pub fn new() -> SettingsBuilder {
        SettingsBuilder::default()
    }

    /// Starts from the settings in `text` (the config file's format and
    /// keys, see `docs/operations.md`); the setters then override. An
    /// unknown key or a value of the wrong type is an error naming it.
    pub fn from_toml(text: &str) -> Result<SettingsBuilder, ConfigError> {
        let options: Options = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from(TOML_ORIGIN),
            message: e.to_string(),
        })?;
        Ok(SettingsBuilder { options })
    }

    /// Address to listen on, e.g. `127.0.0.1:8443` or `[::]:443`; port 0
    /// picks a free port ([`Engine::local_addr`](crate::Engine::local_addr)
    /// tells which).
    pub fn listen(mut self, addr: impl Into<String>) -> SettingsBuilder {
        self.options.listen = Some(addr.into());
        self
    }

    /// Number of shards (threads, one per CPU).
    pub fn shards(mut self, n: usize) -> SettingsBuilder {
        self.options.shards = Some(n);
        self
    }

    /// The CPUs to pin shards to (one shard each).
    pub fn cpus(mut self, cpus: &[usize]) -> SettingsBuilder {
        let list: Vec<String> = cpus.iter().map(|c| c.to_string()).collect();
        self.options.cpus = Some(list.join(","));
        self
    }

    /// The certificate chain and private key (PEM files). Without them the
    /// engine serves a self-signed certificate for `localhost`.
    pub fn cert_files(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> SettingsBuilder {
        self.options.cert = Some(cert.into());
        self.options.key = Some(key.into());
        self
    }

    /// ALPN protocols offered, in preference order (empty: no ALPN).
    pub fn alpn<I, P>(mut self, protocols: I) -> SettingsBuilder
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.options.alpn = Some(protocols.into_iter().map(Into::into).collect());
        self
    }

    /// The runtime each shard runs on (default: `Auto`, io_uring where it
    /// is available, else epoll).
    pub fn io_backend(mut self, backend: Backend) -> SettingsBuilder {
        self.options.io_backend = Some(backend);
        self
    }

    /// Longest handshake, from accept to the last flight.
    pub fn handshake_timeout(mut self, t: Duration) -> SettingsBuilder {
        self.options.handshake_timeout = Some(HumanDuration(t));
        self
    }

    /// Longest wait for each read after the handshake.
    pub fn idle_timeout(mut self, t: Duration) -> SettingsBuilder {
        self.options.idle_timeout = Some(HumanDuration(t));
        self
    }

    /// Longest wait for each write (a peer that does not read).
    pub fn write_timeout(mut self, t: Duration) -> SettingsBuilder {
        self.options.write_timeout = Some(HumanDuration(t));
        self
    }

    /// Connections per shard; over it a new connection is closed at once.
    pub fn max_conns(mut self, n: usize) -> SettingsBuilder {
        self.options.max_conns = Some(n);
        self
    }

    /// Time connections get to finish after
    /// [`Engine::shutdown`](crate::Engine::shutdown).
    pub fn grace(mut self, t: Duration) -> SettingsBuilder {
        self.options.grace = Some(HumanDuration(t));
        self
    }

    /// Validates the settings (the same checks as the binary's flags and
    /// file) and returns them, with the warnings about settings without
    /// effect in [`Settings::warnings`]. No name is resolved here: a
    /// proxy's upstream names are resolved when the proxy is built
    /// ([`services::proxy::Proxy::new`](crate::services::proxy::Proxy::new),
    /// or [`with_resolver`](crate::services::proxy::Proxy::with_resolver)
    /// with a resolver of yours).
    pub fn build(self) -> Result<Settings, ConfigError> {
        self.options.resolve()
    }
}

#[cfg(test)]
mod tests {
    use super::SettingsBuilder;
    use crate::ConfigError;
    use std::time::Duration;

    #[test]
    fn setters_override_the_toml_and_the_rest_keeps_its_default() {
        let s = SettingsBuilder::from_toml("backlog = 100\nmax_conns = 10\n")
            .expect("toml")
            .max_conns(20)
            .idle_timeout(Duration::from_secs(7))
            .listen("127.0.0.1:0")
            .build()
            .expect("valid");
        assert_eq!(s.backlog, 100, "from the TOML");
        assert_eq!(s.max_conns, 20, "the setter wins");
        assert_eq!(s.idle_timeout, Duration::from_secs(7));
        assert_eq!(s.listen.port(), 0);
        assert_eq!(s.grace, crate::config::DEFAULT_GRACE, "untouched: default");
    }

    #[test]
    fn an_unknown_toml_key_is_a_parse_error_naming_it() {
        match SettingsBuilder::from_toml("max_conn = 1\n") {
            Err(ConfigError::Parse { message, .. }) => {
                assert!(message.contains("max_conn"), "{message}")
            }
            other => panic!("expected a parse error, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_bad_value_from_a_setter_is_refused_by_build_naming_the_setting() {
        match SettingsBuilder::new().max_conns(0).build() {
            Err(ConfigError::Invalid { origin, .. }) => {
                assert!(origin.contains("max-conns"), "{origin}")
            }
            other => panic!("expected an invalid value, got {:?}", other.map(|_| ())),
        }
    }
}
