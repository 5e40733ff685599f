//! # uringtls
//!
//! An io_uring-based, shard-per-core TLS server engine.
//!
//! ```text
//!  shard thread (pinned to its CPU, own tokio-uring ring)
//!    └─ listener (own SO_REUSEPORT socket on the shared address)
//!         └─ accept ─ limits (lists, per-address cap/rate, shard/global caps)
//!              └─ TLS session (rustls over owned io_uring buffers; handshake deadline)
//!                   └─ service (echo | http | proxy | yours, via the `Service` trait)
//! ```
//!
//! - [`shard`]: threads, pinning, listeners, accept loop, drain.
//! - [`io`]: the only module that calls into the io_uring runtime.
//! - [`tls`]: the one shared rustls `ServerConfig` (shared ticketer and
//!   session cache, so resumption works whichever shard a client lands on),
//!   the sans-I/O session logic and the stream that drives it; SNI
//!   certificates, mTLS, ticket keys shared by a fleet.
//! - [`services`]: the [`services::Service`] trait, `echo`, `http`,
//!   `proxy` (TLS termination in front of TCP upstreams).
//! - [`reload`]: SIGHUP hot reload through an `ArcSwap` read per connection.
//! - [`watch`]: reload when the certificate, key and ticket files change.
//! - [`config`]: flags and TOML, validated before anything is bound.
//! - [`limits`]: admission at accept, before any TLS work.
//! - [`metrics`]: per-shard counters merged on scrape, `/metrics`, access log.
//! - [`process`]: privilege drop, key-file mode, core dumps, `sd_notify`.
//! - [`acme`]: automatic certificates (ACME, TLS-ALPN-01 on the listener).
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

pub mod acme;
pub mod cli;
pub mod config;
pub use uringtls_runtime::io;
pub mod limits;
pub mod metrics;
pub mod process;
pub mod reload;
pub mod services;
pub mod shard;
pub mod state;
pub mod tls;
pub mod watch;

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
    /// The serving certificate (the default one, with SNI).
    pub identity: tls::Identity,
    /// The TLS config and limits shards read per connection (swapped on reload).
    pub live: Arc<reload::Live>,
    /// Session cache and ticket keys, kept across reloads.
    pub tls_state: Arc<tls::TlsState>,
    /// Where `/metrics` scrapes get the shards' counters.
    pub metrics: Arc<metrics::MetricsHub>,
    /// ACME's metrics, when `acme_domain` is set (its control thread runs).
    pub acme: Option<Arc<acme::metrics::AcmeMetrics>>,
}

impl Engine {
    /// Loads certificates, builds the shared TLS config and starts all shards
    /// with `service`.
    pub fn start<S: Service>(settings: &Settings, service: S) -> Result<Engine, Error> {
        Engine::start_with(settings, service, || Ok::<(), StartError>(()))
    }

    /// Like [`start`](Self::start), running `before_serve` after binding,
    /// loading keys and readying every shard, but before any accepts
    /// (the binary drops privileges there). If it fails, nothing serves,
    /// and its error comes back in [`StartError::Setup`].
    pub fn start_with<S: Service, E>(
        settings: &Settings,
        service: S,
        before_serve: impl FnOnce() -> Result<(), E>,
    ) -> Result<Engine, Error>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let metrics = Arc::new(metrics::MetricsHub::default());
        let tls_state = Arc::new(tls::TlsState::new());
        // ACME's cache is opened and its certificates installed before the
        // first config is built; orders start once the listener is up.
        let acme = match &settings.acme {
            Some(a) => {
                let acme =
                    acme::Acme::prepare(a, settings.ops.insecure_key_permissions).map_err(|e| {
                        Error::Config(ConfigError::Invalid {
                            origin: "acme_cache".into(),
                            problem: e.to_string(),
                            fix: "fix the directory or give another --acme-cache".into(),
                        })
                    })?;
                tls_state.set_layer(acme.layer());
                metrics.add_collector(acme.metrics());
                Some(acme)
            }
            None => None,
        };
        let prepared = tls_state
            .prepare(&settings.tls)
            .map_err(|e| Error::Config(e.into()))?;
        let (tls_cfg, identity) = tls_state.commit(prepared);
        let shard_settings = ShardSettings {
            ring: settings.ring,
            handshake_timeout: settings.handshake_timeout,
            idle_timeout: settings.idle_timeout,
            write_timeout: settings.write_timeout,
            max_conns: settings.max_conns,
            grace: settings.grace,
            admission: Arc::new(settings.ops.limits.clone()),
            global_conns: Arc::default(),
            access_log: settings.ops.access_log,
            metrics: Some(metrics.clone()),
        };
        let live = reload::live(tls_cfg, shard_settings.clone());
        let server = Server::start_with(
            settings.listen,
            shard::ListenOptions {
                backlog: settings.backlog,
                defer_accept: settings.defer_accept,
            },
            &settings.cpus,
            shard_settings.clone(),
            live.clone(),
            Arc::new(service),
            before_serve,
        )
        .map_err(Error::Start)?;
        let acme_metrics = acme.as_ref().map(|a| a.metrics());
        if let Some(a) = acme {
            if let Err(e) = a.start() {
                tracing::error!(error = %e, "acme: cannot start the control thread; no certificate will be ordered");
            }
        }
        Ok(Engine {
            server,
            identity,
            live,
            tls_state,
            metrics,
            acme: acme_metrics,
        })
    }
}

/// Unit tests count the heap allocations each thread makes (a global
/// allocator that counts, then defers to the system's).
#[cfg(test)]
pub(crate) mod test_alloc {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        // Const-initialised and without a destructor: usable from inside
        // the allocator (it allocates nothing itself).
        static ALLOCS: Cell<u64> = const { Cell::new(0) };
    }

    struct Counting;

    // SAFETY: every call defers to `System` with the same arguments; the
    // counter is a thread-local `Cell`, which allocates nothing.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as ours.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// Allocations (and reallocations) made on this thread so far.
    pub(crate) fn this_thread() -> u64 {
        ALLOCS.with(|c| c.get())
    }
}
