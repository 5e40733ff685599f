//! **Unstable; not part of the API.** Internals that the workspace's
//! integration tests (`tests/`) and fuzz targets (`engine/fuzz/`) reach
//! into. Anything here may change or go away in any release; do not use it
//! from other crates.

use std::sync::Arc;

/// The binary's option set (flags and TOML keys).
pub use crate::config::{available_cpus, Options};
/// The system calls the sandbox allows.
pub use crate::process::sandbox::seccomp::allowed_names as seccomp_allowed_names;
/// The PROXY protocol header the proxy service writes.
pub use crate::services::proxy::{encode_header, TlsFacts, PP2_TYPE_CLIENT_SUBJECT};
/// The sans-I/O TLS session (the runtime's).
pub use crate::tls::session;
/// The ticket-key file format and key derivation.
pub use crate::tls::tickets;

/// The shared server config the engine builds for `settings` (fresh
/// session cache and ticket keys), as [`crate::Engine::start`] builds it.
pub fn server_config(
    settings: &crate::Settings,
) -> Result<Arc<rustls::ServerConfig>, crate::tls::TlsError> {
    let state = crate::tls::TlsState::new();
    let prepared = state.prepare(&settings.tls)?;
    Ok(state.commit(prepared).0)
}
