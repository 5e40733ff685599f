//! Hot reload (SIGHUP): certificates, keys, ticket keys, client CAs, TLS
//! parameters, upstreams, routes and health checks (through the binary's
//! `Proxy::reload`) and per-connection limits change while every
//! established connection carries on and every shard keeps accepting.
//!
//! ```text
//!  SIGHUP ─▶ re-read flags + TOML ─▶ Settings ─▶ TlsState::prepare (all files)
//!              │ any error: log it, keep the running config (nothing swapped)
//!              ▼ all good
//!            commit: ticket keys swapped, Live.store(new Current), upstreams swapped
//! ```
//!
//! Shards read [`Live`] once per accepted connection (`ArcSwap::load_full`,
//! no lock): a connection keeps the config it started with for its whole
//! life; the next accept sees the new one. The listeners are never touched,
//! so there is no accept gap.
//!
//! Not reloadable (they shape threads, sockets and rings): `listen`,
//! `shards`, `cpus`, `backlog`, ring settings, `service`, `grace`, `acme_*`
//! (ACME's certificates are kept across reloads and renewed on their own). A change
//! to one of them is logged and ignored until a restart.

use crate::config::{ConfigError, Options, Settings};
use crate::shard::ShardSettings;
use crate::tls::{Identity, TlsState};
use arc_swap::ArcSwap;
use rustls::ServerConfig;
use std::sync::Arc;

/// What each new connection starts with.
pub struct Current {
    /// The shared TLS config.
    pub tls: Arc<ServerConfig>,
    /// Timeouts and caps (ring and grace are only read at start).
    pub limits: ShardSettings,
}

/// The live configuration every shard reads per accepted connection.
pub type Live = ArcSwap<Current>;

/// A fresh [`Live`].
pub fn live(tls: Arc<ServerConfig>, limits: ShardSettings) -> Arc<Live> {
    Arc::new(ArcSwap::from_pointee(Current { tls, limits }))
}

/// Why a reload was refused (the running configuration stays).
#[derive(Debug)]
pub struct ReloadError(pub ConfigError);

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (still serving the previous configuration)", self.0)
    }
}

impl std::error::Error for ReloadError {}

/// Everything a reload needs: how to re-read the configuration, and what
/// to swap.
pub struct Reloader {
    options: Options,
    settings: Settings,
    state: Arc<TlsState>,
    identity: Identity,
    live: Arc<Live>,
    /// Told what to watch after each applied reload (`watch_files`).
    watcher: Option<crate::watch::FileWatcher>,
    check: Option<Box<PathCheck>>,
}

/// A check of the new settings run before anything is read (the sandbox
/// refuses files it would not let the engine open).
pub type PathCheck = dyn Fn(&Settings) -> Result<(), ConfigError> + Send;

impl Reloader {
    /// `options` are the command-line options the process started with
    /// (the TOML file they name is read again at each reload).
    pub fn new(
        options: Options,
        settings: Settings,
        state: Arc<TlsState>,
        identity: Identity,
        live: Arc<Live>,
    ) -> Reloader {
        Reloader {
            options,
            settings,
            state,
            identity,
            live,
            watcher: None,
            check: None,
        }
    }

    /// Keeps `w` watching what each applied reload loads.
    pub fn set_watcher(&mut self, w: crate::watch::FileWatcher) {
        self.watcher = Some(w);
    }

    /// Runs `check` on each reload's new settings first; its error refuses
    /// the reload.
    pub fn with_check(mut self, check: Box<PathCheck>) -> Reloader {
        self.check = Some(check);
        self
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Re-reads flags + file, rebuilds the TLS config and installs it with
    /// the new limits. Returns the new settings (for the caller to swap
    /// service-level state such as upstreams). On error nothing changed.
    pub fn reload(&mut self) -> Result<&Settings, ReloadError> {
        let new = self.options.clone().resolve().map_err(ReloadError)?;
        self.apply(new)
    }

    /// Installs `new` (settings already resolved): checks and loads every
    /// file first, then swaps. On error nothing changed.
    pub fn apply(&mut self, new: Settings) -> Result<&Settings, ReloadError> {
        if let Some(check) = &self.check {
            check(&new).map_err(ReloadError)?;
        }
        warn_fixed(&self.settings, &new);
        // Keep a generated self-signed certificate across reloads.
        let prepared = match new.tls.cert {
            None => self.state.prepare_with(&new.tls, &self.identity),
            Some(_) => self.state.prepare(&new.tls),
        }
        .map_err(|e| ReloadError(e.into()))?;
        let (tls, identity) = self.state.commit(prepared);
        let old = self.live.load();
        let limits = ShardSettings {
            handshake_timeout: new.handshake_timeout,
            idle_timeout: new.idle_timeout,
            write_timeout: new.write_timeout,
            max_conns: new.max_conns,
            admission: Arc::new(new.ops.limits.clone()),
            access_log: new.ops.access_log,
            ..old.limits.clone()
        };
        self.live.store(Arc::new(Current { tls, limits }));
        self.identity = identity;
        self.settings = new;
        if let Some(w) = &self.watcher {
            w.update(&self.settings);
        }
        Ok(&self.settings)
    }
}

fn warn_fixed(old: &Settings, new: &Settings) {
    let fixed = [
        ("listen", old.listen != new.listen),
        ("shards/cpus", old.cpus != new.cpus),
        ("backlog", old.backlog != new.backlog),
        ("defer_accept", old.defer_accept != new.defer_accept),
        ("ring settings", old.ring != new.ring),
        ("service", old.service != new.service),
        ("grace", old.grace != new.grace),
        ("watch_files", old.watch_files != new.watch_files),
        ("sandbox", old.sandbox != new.sandbox),
        (
            "header_timeout",
            old.ops.header_timeout != new.ops.header_timeout,
        ),
        (
            "metrics_listen",
            old.ops.metrics_listen != new.ops.metrics_listen,
        ),
        (
            "log_level/log_format",
            (&old.log_level, old.log_format) != (&new.log_level, new.log_format),
        ),
        (
            "user/group",
            (&old.ops.user, &old.ops.group) != (&new.ops.user, &new.ops.group),
        ),
        ("acme_*", old.acme != new.acme),
    ];
    for (name, changed) in fixed {
        if changed {
            tracing::warn!(
                setting = name,
                "changed in the configuration but only takes effect at restart"
            );
        }
    }
}
