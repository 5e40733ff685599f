//! Configuration: command-line flags and a TOML file with the same settings.
//!
//! A setting goes through these steps, one file each:
//!
//! 1. **Schema** (`schema.rs`): [`Options`] is both the clap argument
//!    struct and the serde file struct, with its enums and the `DEFAULT_*`
//!    values; every field is optional so that a flag overrides the file,
//!    which overrides the default.
//! 2. **Checks** (`validate.rs`): each source (the flags, the file, a
//!    `[[listener]]` table) is checked on its own, so that an error names
//!    the flag, or the file and field.
//! 3. **Mapping** (`mapping.rs`): [`Options::resolve`] merges the sources
//!    and maps them into the concrete [`Settings`], with the checks across
//!    fields. Nothing is bound before this succeeds.
//!
//! Beside them: `error.rs` holds [`ConfigError`], `Origin` (where a value
//! came from) and the typed errors of single values; `upstreams.rs` parses
//! `HOST:PORT` upstreams (no DNS here: the proxy resolves names when it is
//! built). Groups of settings keep their checks
//! and mapping in a file of their own: `acme.rs`, `http.rs`,
//! `listeners.rs` (`[[listener]]` tables), `operations.rs` (limits, metrics,
//! logs, privileges), `routes.rs` (proxy routes and health checks),
//! `upstream_tls.rs`; `warnings.rs` names settings that have no effect;
//! `duration.rs` and `size.rs` parse durations and sizes.

mod acme;
mod duration;
mod error;
mod http;
mod listeners;
mod mapping;
mod operations;
mod routes;
mod schema;
mod size;
#[cfg(test)]
pub(crate) mod tests;
mod upstream_tls;
mod upstreams;
mod validate;
mod warnings;

pub use duration::{DurationOrOff, HumanDuration};
pub use error::{ConfigError, CpuListError, ListenAddrError, UpstreamError};
pub use http::HttpLimits;
pub use listeners::ListenerConfig;
pub use mapping::{available_cpus, Settings};
pub use operations::{check_log_filter, Operations};
pub use schema::{
    LogFormat, Options, ServiceKind, TlsVersion, DEFAULT_BACKLOG, DEFAULT_DEFER_ACCEPT,
    DEFAULT_GRACE, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_LISTEN,
    DEFAULT_MAX_CONNS, DEFAULT_SESSION_CACHE, DEFAULT_TLS13_TICKETS, DEFAULT_WRITE_TIMEOUT,
};
pub use size::ByteSize;

// What the files of the setting groups take from each other (`super::X`).
use error::Origin;
use mapping::Sources;
use upstreams::{is_host_port, parse_upstreams};
use validate::parse_listen;
