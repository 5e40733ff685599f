//! The errors of configuration: [`ConfigError`] (what every check returns,
//! naming the flag, or the file and field, through [`Origin`]) and the
//! typed errors of single values (`upstream`, `listen`, `cpus`) that the
//! checks turn into one.

use super::validate::MAX_CPU;
use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration problem, reported before anything is bound.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    Parse {
        /// File.
        path: PathBuf,
        /// toml's message (names the line and field).
        message: String,
    },
    /// A value is out of range or malformed.
    Invalid {
        /// Where it came from: `flag --x` or `FILE: field x`.
        origin: String,
        /// What is wrong with it.
        problem: String,
        /// What to change.
        fix: String,
    },
    /// Certificate or key problem.
    Tls(crate::tls::TlsError),
    /// A proxy upstream's name does not resolve when the proxy is built (at
    /// start, before anything is bound) or at a reload that brings it in.
    Resolve {
        /// The listener whose proxy it is, with `[[listener]]` tables.
        listener: Option<String>,
        /// Which upstream, and why.
        source: crate::services::proxy::ResolveError,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "{}: cannot read config file: {source}", path.display())
            }
            ConfigError::Parse { path, message } => {
                write!(
                    f,
                    "{}: invalid config: {}",
                    path.display(),
                    message.trim_end()
                )
            }
            ConfigError::Invalid {
                origin,
                problem,
                fix,
            } => write!(f, "{origin}: {problem}; {fix}"),
            ConfigError::Tls(e) => write!(f, "{e}"),
            ConfigError::Resolve {
                listener: Some(l),
                source,
            } => write!(f, "{l}: {source}"),
            ConfigError::Resolve {
                listener: None,
                source,
            } => write!(f, "{source}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<crate::tls::TlsError> for ConfigError {
    fn from(e: crate::tls::TlsError) -> Self {
        ConfigError::Tls(e)
    }
}

/// Where a value came from, for error messages.
#[derive(Clone, Copy)]
pub(super) enum Origin<'a> {
    Flag,
    File(&'a Path),
    /// The `[[listener]]` table of this index in this file.
    Listener(&'a Path, usize),
}

impl Origin<'_> {
    pub(super) fn name(&self, field: &str) -> String {
        match self {
            Origin::Flag => format!("flag --{}", field.replace('_', "-")),
            Origin::File(p) => format!("{}: field `{field}`", p.display()),
            Origin::Listener(p, i) => format!("{}: field `listener[{i}].{field}`", p.display()),
        }
    }

    pub(super) fn invalid(
        &self,
        field: &str,
        problem: impl fmt::Display,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: self.name(field),
            problem: problem.to_string(),
            fix: fix.into(),
        }
    }
}

/// Why an `upstream` is refused by the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// Not `HOST:PORT`. (Names are resolved by the proxy, not here:
    /// [`crate::services::proxy::ResolveError`].)
    #[error("`{0}` is not HOST:PORT")]
    NotHostPort(String),
}

/// A listen address that is not `IP:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP:PORT address")]
pub struct ListenAddrError(pub(super) String);

/// Why a CPU list does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CpuListError {
    /// A part is neither a number nor a range.
    #[error("`{0}` is not a CPU number or range")]
    NotANumber(String),
    /// A CPU number past [`MAX_CPU`].
    #[error("CPU {0} is beyond the largest CPU number ({max})", max = MAX_CPU - 1)]
    TooLarge(usize),
    /// A range `b-a` with `a < b`.
    #[error("range `{0}` runs backwards")]
    Backwards(String),
    /// Nothing listed.
    #[error("empty CPU list")]
    Empty,
    /// A CPU appears twice.
    #[error("`{0}` lists a CPU twice")]
    Twice(String),
}
