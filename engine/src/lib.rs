//! # uringtls
//!
//! An io_uring-based, shard-per-core TLS server engine.
//!
//! ```text
//!  shard thread (pinned to its CPU, own tokio-uring ring)
//!    └─ listener (own SO_REUSEPORT socket on the shared address)
//!         └─ accept ─ limits (per-shard cap)
//!              └─ TLS session (rustls over owned io_uring buffers; handshake deadline)
//!                   └─ service (echo | http | yours, via the `Service` trait)
//! ```
//!
//! - [`shard`]: threads, pinning, listeners, accept loop, drain.
//! - [`io`]: the only module that calls into the io_uring runtime.
//! - [`tls`]: the one shared rustls `ServerConfig` (shared ticketer and
//!   session cache, so resumption works whichever shard a client lands on),
//!   the sans-I/O session logic and the stream that drives it.
//! - [`services`]: the [`Service`](services::Service) trait, `echo`, `http`.
//! - [`config`]: flags and TOML, validated before anything is bound.
//!
//! State is per shard (connections, counters, buffers: `Rc`/`Cell`, no locks)
//! except the TLS config, whose session cache and ticket keys are shared by
//! design. See `docs/architecture.md`.
//!
//! Embedding with a custom service:
//!
//! ```no_run
//! use uringtls::{services::{ConnInfo, Service}, tls::ServerStream};
//! struct Upper;
//! impl Service for Upper {
//!     async fn serve(&self, s: &mut ServerStream, _c: &ConnInfo) -> std::io::Result<()> {
//!         let mut buf = [0u8; 1024];
//!         loop {
//!             let n = s.read(&mut buf).await?;
//!             if n == 0 { return Ok(()); }
//!             s.write_all(&buf[..n].to_ascii_uppercase()).await?;
//!             s.flush().await?;
//!         }
//!     }
//! }
//! let settings = uringtls::config::Options::default().resolve().unwrap();
//! let engine = uringtls::Engine::start(&settings, Upper).unwrap();
//! engine.server.stop_and_join();
//! ```

pub mod cli;
pub mod config;
pub mod io;
pub mod limits;
pub mod metrics;
pub mod process;
pub mod services;
pub mod shard;
pub mod tls;

use config::{ConfigError, Settings};
use services::Service;
use shard::{Server, ShardSettings, StartError};
use std::fmt;
use std::sync::Arc;

/// Why the engine did not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Bad configuration (nothing was bound).
    Config(ConfigError),
    /// Binding or shard start-up failed (nothing serves).
    Start(StartError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::Start(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

/// A started engine.
pub struct Engine {
    /// The running shards.
    pub server: Server,
    /// The serving certificate.
    pub identity: tls::Identity,
}

impl Engine {
    /// Loads certificates, builds the shared TLS config and starts all shards
    /// with `service`.
    pub fn start<S: Service>(settings: &Settings, service: S) -> Result<Engine, Error> {
        let identity = tls::load_identity(&settings.tls).map_err(|e| Error::Config(e.into()))?;
        let tls_cfg =
            tls::server_config(&settings.tls, &identity).map_err(|e| Error::Config(e.into()))?;
        let shard_settings = ShardSettings {
            ring: settings.ring,
            handshake_timeout: settings.handshake_timeout,
            idle_timeout: settings.idle_timeout,
            write_timeout: settings.write_timeout,
            max_conns: settings.max_conns,
            grace: settings.grace,
        };
        let server = Server::start(
            settings.listen,
            settings.backlog,
            &settings.cpus,
            shard_settings,
            tls_cfg,
            Arc::new(service),
        )
        .map_err(Error::Start)?;
        Ok(Engine { server, identity })
    }
}
