//! # uringtls
//!
//! An io_uring-based, shard-per-core TLS server engine: one pinned thread
//! per CPU, each with its own ring (or, where io_uring is fenced off, an
//! epoll loop) and its own `SO_REUSEPORT` listener; rustls over owned
//! buffers; one shared TLS configuration so that resumption works on
//! whichever shard a reconnect lands.
//!
//! ```text
//!  shard thread (pinned to its CPU, own runtime from `uringtls-runtime`)
//!    └─ listener (own SO_REUSEPORT socket on the shared address)
//!         └─ accept ─ [PROXY header, from `accept_proxy` balancers: the client's address]
//!              ─ limits (lists, per-address cap/rate, shard/global caps)
//!              └─ TLS session (rustls over owned buffers; handshake deadline)
//!                   └─ service (echo | http | proxy | yours, via the `Service` trait)
//! ```
//!
//! ## The library API
//!
//! - [`Settings`], built in code with [`SettingsBuilder`] (or from a TOML
//!   string with [`SettingsBuilder::from_toml`]); the binary's flags and config
//!   file end in the same [`Settings`].
//! - [`Engine`]: [`start`](Engine::start) the shards with a [`Service`],
//!   [`reload`](Engine::reload) certificates and limits,
//!   [`shutdown`](Engine::shutdown) (stop accepting, drain) and
//!   [`join`](Engine::join).
//! - [`Service`]: your protocol over a decrypted [`ServerStream`], with
//!   [`ConnInfo`] about the connection. Its documentation states the
//!   runtime contract (which timers, spawn and blocking calls are allowed).
//! - The built-in services in [`services`]: [`services::echo::Echo`],
//!   [`services::http::Http`], [`services::proxy::Proxy`], and
//!   [`builtin::BuiltIn`], one of them per listener with
//!   [`Engine::start_each`] (`[[listener]]` tables, [`ListenerConfig`]).
//!   The proxy resolves its upstream names itself, when built and again
//!   on an interval, through [`services::proxy::Resolve`] (the system's
//!   resolver by default; [`services::proxy::Proxy::with_resolver`] takes
//!   yours, e.g. a fake in a test).
//! - [`io`]: the runtime's timers ([`io::time`]) and [`io::spawn`], for use
//!   inside a service.
//! - [`testing`]: drive a [`Service`] in a unit test, on loopback, without
//!   io_uring.
//! - [`cli::main`]: the `uringtls` binary itself.
//!
//! Everything else is internal. The design is in `docs/architecture.md`.
//!
//! Embedding with a custom service:
//!
//! ```no_run
//! use uringtls::{ConnInfo, Service, ServerStream};
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
//! let settings = uringtls::SettingsBuilder::new()
//!     .listen("127.0.0.1:8443")
//!     .shards(2)
//!     .build()
//!     .unwrap();
//! let engine = uringtls::Engine::start(&settings, Upper).unwrap();
//! engine.shutdown();
//! engine.join();
//! ```

#![deny(missing_docs)]

pub(crate) mod acme;
pub mod builtin;
pub mod cli;
pub(crate) mod config;
pub use uringtls_runtime::io;
pub(crate) mod limits;
pub(crate) mod metrics;
pub(crate) mod process;
pub(crate) mod reload;
pub mod services;
mod settings;
pub(crate) mod shard;
pub(crate) mod state;
pub mod testing;
pub(crate) mod tls;
pub(crate) mod watch;

#[doc(hidden)]
pub mod __private;

pub use config::{ConfigError, ListenerConfig, Settings};
pub use metrics::CloseReason;
pub use reload::ReloadError;
pub use services::{ConnInfo, Service};
pub use settings::SettingsBuilder;
pub use shard::StartError;
pub use tls::{PeerIdentity, ServerStream};

use reload::Reloader;
use rustls::pki_types::CertificateDer;
use shard::{Server, ShardSettings};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

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

/// A started engine: its shards serve until [`shutdown`](Engine::shutdown)
/// or until the engine is dropped (which starts the drain without waiting
/// for it; [`join`](Engine::join) waits).
pub struct Engine {
    /// The running shards (`None` once joined).
    server: Option<Server>,
    /// Per listener: its TLS config and limits shards read per connection
    /// (swapped on reload), its session cache and ticket keys, its serving
    /// certificate (the default one, with SNI).
    slots: Vec<reload::Slot>,
    /// Where `/metrics` scrapes get the shards' counters.
    metrics: Arc<metrics::MetricsHub>,
    /// What [`Engine::reload`] swaps (one reload at a time).
    reloader: Mutex<Reloader>,
}

impl Engine {
    /// Loads certificates, builds the shared TLS config and starts all shards
    /// with `service`. Returns once every shard serves; if one cannot
    /// start, none serves.
    pub fn start<S: Service>(settings: &Settings, service: S) -> Result<Engine, Error> {
        Engine::start_with(settings, service, || Ok::<(), StartError>(()))
    }

    /// Like [`start`](Self::start), running `before_serve` after binding,
    /// loading keys and readying every shard, but before any accepts
    /// (the binary drops privileges there). If it fails, nothing serves,
    /// and its error comes back in [`StartError::Setup`].
    ///
    /// With `[[listener]]` tables in `settings`, `service` serves every
    /// listener (see [`start_each_with`](Self::start_each_with) for one
    /// service per listener).
    pub fn start_with<S: Service, E>(
        settings: &Settings,
        service: S,
        before_serve: impl FnOnce() -> Result<(), E>,
    ) -> Result<Engine, Error>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let service = Arc::new(service);
        let n = settings.each_listener().len();
        Engine::start_listeners(settings, vec![service; n], before_serve)
    }

    /// Starts the engine with one service per listener, in the order of
    /// [`Settings::each_listener`] (the `[[listener]]` tables, after the
    /// top level when it has a `listen` of its own). Services of different
    /// types go in an enum of yours that implements [`Service`] by
    /// delegating to each (the binary does so with its built-in ones).
    pub fn start_each<S: Service>(settings: &Settings, services: Vec<S>) -> Result<Engine, Error> {
        Engine::start_each_with(settings, services, || Ok::<(), StartError>(()))
    }

    /// [`start_each`](Self::start_each) with a step run before any
    /// accepts, as in [`start_with`](Self::start_with).
    pub fn start_each_with<S: Service, E>(
        settings: &Settings,
        services: Vec<S>,
        before_serve: impl FnOnce() -> Result<(), E>,
    ) -> Result<Engine, Error>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let n = settings.each_listener().len();
        if services.len() != n {
            return Err(Error::Config(ConfigError::Invalid {
                origin: "Engine::start_each".into(),
                problem: format!("{} services for {n} listeners", services.len()),
                fix: "give one service per listener, in the order of Settings::each_listener"
                    .into(),
            }));
        }
        let services = services.into_iter().map(Arc::new).collect();
        Engine::start_listeners(settings, services, before_serve)
    }

    fn start_listeners<S: Service, E>(
        settings: &Settings,
        services: Vec<Arc<S>>,
        before_serve: impl FnOnce() -> Result<(), E>,
    ) -> Result<Engine, Error>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let metrics = Arc::new(metrics::MetricsHub::default());
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
                metrics.add_collector(acme.metrics());
                Some(acme)
            }
            None => None,
        };
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
        // Each listener its own TLS state (certificates, session cache,
        // ticket keys) and limits; every file read before anything binds.
        let mut slots = Vec::new();
        let mut specs = Vec::new();
        for (l, service) in settings.each_listener().into_iter().zip(services) {
            let tls_state = Arc::new(tls::TlsState::new());
            if let Some(a) = &acme {
                tls_state.set_layer(a.layer());
            }
            let prepared = tls_state
                .prepare(&l.settings.tls)
                .map_err(|e| Error::Config(e.into()))?;
            let (tls_cfg, identity) = tls_state.commit(prepared);
            let live = reload::live(tls_cfg, reload::limits_of(&l.settings, &shard_settings));
            specs.push(shard::ListenerSpec {
                name: l.name,
                addr: l.settings.listen,
                live: live.clone(),
                service,
            });
            slots.push(reload::Slot {
                state: tls_state,
                identity,
                live,
            });
        }
        let server = Server::start_with(
            specs,
            shard::ListenOptions {
                backlog: settings.backlog,
                defer_accept: settings.defer_accept,
            },
            &settings.cpus,
            shard_settings,
            before_serve,
        )
        .map_err(Error::Start)?;
        if let Some(a) = acme {
            if let Err(e) = a.start() {
                tracing::error!(error = %e, "acme: cannot start the control thread; no certificate will be ordered");
            }
        }
        let reloader = Reloader::new(config::Options::default(), settings.clone(), slots.clone());
        Ok(Engine {
            server: Some(server),
            slots,
            metrics,
            reloader: Mutex::new(reloader),
        })
    }

    fn server(&self) -> &Server {
        // Only `join` (which consumes the engine) and `drop` take it.
        self.server.as_ref().expect("shards run until join or drop")
    }

    /// The address every shard listens on (with the real port when port 0
    /// was asked); with several listeners, the first one's.
    pub fn local_addr(&self) -> SocketAddr {
        self.server().local_addr()
    }

    /// Every listener's address, in the order of
    /// [`Settings::each_listener`].
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.server().local_addrs()
    }

    /// The CPU of each shard (its length is the shard count).
    pub fn cpus(&self) -> &[usize] {
        self.server().cpus()
    }

    /// The default certificate chain served (leaf first): the configured
    /// one, or the self-signed certificate for `localhost`, `127.0.0.1`
    /// and `::1` generated when none is configured (a test client trusts
    /// its first entry).
    pub fn certificate_chain(&self) -> &[CertificateDer<'static>] {
        &self.identity().chain
    }

    /// Whether the default certificate was generated (no `cert` given).
    pub fn is_self_signed(&self) -> bool {
        self.identity().self_signed
    }

    /// Serves the Prometheus endpoint (`GET /metrics`) on `listener` from a
    /// thread of its own; returns the address it serves on.
    pub fn serve_metrics(&self, listener: std::net::TcpListener) -> std::io::Result<SocketAddr> {
        metrics::server::start(listener, self.metrics.clone())
    }

    /// Applies `settings` to the running engine: certificates, keys,
    /// ticket keys, client CAs, TLS parameters and per-connection limits
    /// (timeouts, caps, admission lists). Every file is read and checked
    /// first; on error nothing changes and the engine keeps serving the
    /// previous configuration. Established connections keep the config
    /// they started with; the next accepted connection gets the new one.
    ///
    /// With `[[listener]]` tables, every listener's certificates and
    /// limits are rebuilt (all checked before any is swapped), and a
    /// changed set of listener addresses is refused.
    ///
    /// What shapes threads, sockets and rings (`listen`, shards, ring
    /// settings, `grace`, ACME) only takes effect at a restart (a warning
    /// is logged). Service-level settings (a proxy's upstreams) belong to
    /// the service: e.g. [`services::proxy::Proxy::reload`].
    pub fn reload(&self, settings: &Settings) -> Result<(), ReloadError> {
        let mut r = self.reloader.lock().unwrap_or_else(|p| p.into_inner());
        r.apply(settings.clone()).map(|_| ())
    }

    /// Stops accepting and tells every connection to finish (idle
    /// keep-alive connections close; the rest get up to the `grace`
    /// period). Returns at once; [`join`](Self::join) waits. The listening
    /// sockets leave the `SO_REUSEPORT` group, so another process on the
    /// same address gets the new connections.
    pub fn shutdown(&self) {
        self.server().shutdown();
    }

    /// Waits until every shard has drained (or reached its grace period)
    /// and its thread has ended. Call [`shutdown`](Self::shutdown) first,
    /// or this stops the engine itself.
    pub fn join(mut self) {
        if let Some(s) = self.server.take() {
            s.stop_and_join();
        }
    }

    /// Waits until every shard has drained (or reached its grace period),
    /// without waiting for the threads to end (the binary exits then).
    pub(crate) fn wait_drained(&self) {
        self.server().wait_drained();
    }

    /// The first listener's serving identity.
    pub(crate) fn identity(&self) -> &tls::Identity {
        &self.slots[0].identity
    }

    /// Per listener, what the binary's reloader swaps.
    pub(crate) fn slots(&self) -> &[reload::Slot] {
        &self.slots
    }

    /// Where scrapes get the shards' counters.
    pub(crate) fn metrics_hub(&self) -> &Arc<metrics::MetricsHub> {
        &self.metrics
    }
}

impl Drop for Engine {
    /// Stops accepting and starts the drain, without waiting for it (see
    /// [`Engine::join`]).
    fn drop(&mut self) {
        if let Some(s) = &self.server {
            s.shutdown();
        }
    }
}

#[cfg(test)]
mod engine_tests;

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
