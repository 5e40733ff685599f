//! Hot reload (SIGHUP): certificates, keys, ticket keys, client CAs, TLS
//! parameters, upstreams, routes and health checks (through the binary's
//! `Proxy::reload`) and per-connection limits change while every
//! established connection carries on and every shard keeps accepting.
//!
//! ```text
//!  SIGHUP ─▶ re-read flags + TOML ─▶ Settings ─▶ upstream names resolved
//!              ─▶ TlsState::prepare (all files)
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
//! With `[[listener]]` tables, each listener's TLS material and limits are
//! rebuilt (all read and checked before any is swapped); a reload that
//! adds, removes or moves a listener is refused whole.
//!
//! Not reloadable: the settings in [`RESTART_ONLY`], the one list (they
//! shape threads, sockets and rings, or are built into a service at start;
//! ACME's certificates are kept across reloads and renewed on their own). A
//! change to one of them is logged and ignored until a restart.

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

/// What one listener's connections start with, and what builds it.
#[derive(Clone)]
pub struct Slot {
    /// Its session cache and ticket keys, kept across reloads.
    pub state: Arc<TlsState>,
    /// Its default certificate (a generated one is kept across reloads).
    pub identity: Identity,
    /// What its shards read per accepted connection.
    pub live: Arc<Live>,
}

/// Everything a reload needs: how to re-read the configuration, and what
/// to swap.
pub struct Reloader {
    options: Options,
    settings: Settings,
    /// One per listener, in the order of [`Settings::each_listener`].
    slots: Vec<Slot>,
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
    pub fn new(options: Options, settings: Settings, slots: Vec<Slot>) -> Reloader {
        Reloader {
            options,
            settings,
            slots,
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

    /// Re-reads flags + file into new settings, applying nothing: the
    /// binary resolves its proxies' upstream names (a new name that fails
    /// refuses the reload) before it calls [`apply`](Self::apply), which
    /// returns the settings for it to swap the upstreams in.
    pub fn read(&self) -> Result<Settings, ReloadError> {
        self.options.clone().resolve().map_err(ReloadError)
    }

    /// Installs `new` (settings already resolved): checks and loads every
    /// file first, then swaps. On error nothing changed.
    pub fn apply(&mut self, new: Settings) -> Result<&Settings, ReloadError> {
        if let Some(check) = &self.check {
            check(&new).map_err(ReloadError)?;
        }
        same_listeners(&self.settings, &new)?;
        warn_fixed(&self.settings, &new);
        let listeners = new.each_listener();
        for (o, n) in self.settings.listeners.iter().zip(&new.listeners) {
            let (o, n, name) = (&o.settings, &n.settings, &n.name);
            // The service is built at start, with its http settings.
            let fixed = RESTART_ONLY
                .iter()
                .filter(|r| r.scope == Scope::Listener)
                .map(|r| (r.name, (r.changed)(o, n)));
            for (setting, _) in fixed.filter(|(_, changed)| *changed) {
                tracing::warn!(
                    listener = %name,
                    setting,
                    "changed in the configuration but only takes effect at restart"
                );
            }
        }
        let several = listeners.len() > 1;
        // Every listener's files read and checked before anything is swapped.
        let mut prepared = Vec::with_capacity(listeners.len());
        for (slot, l) in self.slots.iter().zip(&listeners) {
            let tls = &l.settings.tls;
            // Keep a generated self-signed certificate across reloads.
            let p = match tls.cert {
                None => slot.state.prepare_with(tls, &slot.identity),
                Some(_) => slot.state.prepare(tls),
            }
            .map_err(|e| match several {
                // Which listener, besides the file the error names.
                true => ReloadError(ConfigError::Invalid {
                    origin: l.name.clone(),
                    problem: e.to_string(),
                    fix: "fix the file or this listener's certificate settings".into(),
                }),
                false => ReloadError(e.into()),
            })?;
            prepared.push(p);
        }
        for ((slot, l), p) in self.slots.iter_mut().zip(&listeners).zip(prepared) {
            let (tls, identity) = slot.state.commit(p);
            let old = slot.live.load();
            let limits = limits_of(&l.settings, &old.limits);
            slot.live.store(Arc::new(Current { tls, limits }));
            slot.identity = identity;
        }
        self.settings = new;
        if let Some(w) = &self.watcher {
            w.update(&self.settings);
        }
        Ok(&self.settings)
    }
}

/// One listener's per-connection limits from its settings (the rest, read
/// only at start, kept from `old`).
pub fn limits_of(s: &Settings, old: &ShardSettings) -> ShardSettings {
    ShardSettings {
        handshake_timeout: s.handshake_timeout,
        idle_timeout: s.idle_timeout,
        write_timeout: s.write_timeout,
        max_conns: s.max_conns,
        admission: Arc::new(s.ops.limits.clone()),
        access_log: s.ops.access_log,
        ..old.clone()
    }
}

/// The listeners (their addresses, in order) are bound at start: with
/// `[[listener]]` tables, a reload that adds, removes or moves one is
/// refused whole. (With one listener, a changed `listen` is only warned
/// about, as it always was.)
fn same_listeners(old: &Settings, new: &Settings) -> Result<(), ReloadError> {
    if old.listeners.is_empty() && new.listeners.is_empty() {
        return Ok(());
    }
    let addrs = |s: &Settings| -> Vec<String> {
        s.each_listener()
            .iter()
            .map(|l| format!("{} {}", l.name, l.settings.listen))
            .collect()
    };
    let (was, now) = (addrs(old), addrs(new));
    if was == now {
        return Ok(());
    }
    Err(ReloadError(ConfigError::Invalid {
        origin: "listeners".into(),
        problem: format!(
            "the set of listeners changed (serving: {}; configured: {})",
            was.join(", "),
            now.join(", ")
        ),
        fix: "adding, removing or moving a listener needs a restart or a zero-downtime upgrade \
              (docs/deployment.md); put the addresses back to reload the other settings"
            .into(),
    }))
}

fn warn_fixed(old: &Settings, new: &Settings) {
    for r in RESTART_ONLY.iter().filter(|r| r.scope == Scope::Process) {
        if (r.changed)(old, new) {
            tracing::warn!(
                setting = r.name,
                "changed in the configuration but only takes effect at restart"
            );
        }
    }
}

/// Whom a setting a reload cannot change belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The process (threads, sockets, rings, logs, privileges): warned once.
    Process,
    /// Each listener's service, built at start: warned per listener.
    Listener,
}

/// A setting a reload does not change.
pub(crate) struct RestartOnly {
    /// As the warning and the docs name it.
    pub name: &'static str,
    /// Process-wide or per listener.
    pub scope: Scope,
    /// Whether it differs between the settings in force and the new ones.
    pub changed: fn(&Settings, &Settings) -> bool,
}

/// **The one list of what a reload cannot change** (everything else in
/// [`Settings`] is swapped in for new connections): these shape threads,
/// sockets and rings, or are built into the service at start. A changed
/// value is logged and ignored until a restart. `docs/deployment.md`
/// ("Reload") names each of them (a test checks it).
pub(crate) const RESTART_ONLY: &[RestartOnly] = &[
    RestartOnly {
        name: "listen",
        scope: Scope::Process,
        changed: |o, n| o.listen != n.listen,
    },
    RestartOnly {
        name: "shards/cpus",
        scope: Scope::Process,
        changed: |o, n| o.cpus != n.cpus,
    },
    RestartOnly {
        name: "backlog",
        scope: Scope::Process,
        changed: |o, n| o.backlog != n.backlog,
    },
    RestartOnly {
        name: "defer_accept",
        scope: Scope::Process,
        changed: |o, n| o.defer_accept != n.defer_accept,
    },
    RestartOnly {
        name: "ring settings",
        scope: Scope::Process,
        changed: |o, n| o.ring != n.ring,
    },
    RestartOnly {
        name: "service",
        scope: Scope::Process,
        changed: |o, n| o.service != n.service,
    },
    RestartOnly {
        name: "grace",
        scope: Scope::Process,
        changed: |o, n| o.grace != n.grace,
    },
    RestartOnly {
        name: "watch_files",
        scope: Scope::Process,
        changed: |o, n| o.watch_files != n.watch_files,
    },
    RestartOnly {
        name: "sandbox",
        scope: Scope::Process,
        changed: |o, n| o.sandbox != n.sandbox,
    },
    RestartOnly {
        name: "header_timeout",
        scope: Scope::Process,
        changed: |o, n| o.ops.header_timeout != n.ops.header_timeout,
    },
    RestartOnly {
        name: "metrics_listen",
        scope: Scope::Process,
        changed: |o, n| o.ops.metrics_listen != n.ops.metrics_listen,
    },
    RestartOnly {
        name: "log_level/log_format",
        scope: Scope::Process,
        changed: |o, n| (&o.log_level, o.log_format) != (&n.log_level, n.log_format),
    },
    RestartOnly {
        name: "user/group",
        scope: Scope::Process,
        changed: |o, n| (&o.ops.user, &o.ops.group) != (&n.ops.user, &n.ops.group),
    },
    RestartOnly {
        name: "acme_*",
        scope: Scope::Process,
        changed: |o, n| o.acme != n.acme,
    },
    RestartOnly {
        name: "service",
        scope: Scope::Listener,
        changed: |o, n| o.service != n.service,
    },
    RestartOnly {
        name: "body_size/max_header",
        scope: Scope::Listener,
        changed: |o, n| (o.body_size, o.max_header) != (n.body_size, n.max_header),
    },
    RestartOnly {
        name: "max_body/request_timeout",
        scope: Scope::Listener,
        changed: |o, n| o.http != n.http,
    },
    RestartOnly {
        name: "header_timeout",
        scope: Scope::Listener,
        changed: |o, n| o.ops.header_timeout != n.ops.header_timeout,
    },
];

#[cfg(test)]
mod restart_only_tests {
    use super::{Scope, RESTART_ONLY};

    /// The docs say what a reload cannot change from the same list.
    #[test]
    fn the_reload_docs_name_every_setting_a_reload_cannot_change() {
        let doc = include_str!("../../docs/deployment.md");
        let start = doc.find("## Reload (SIGHUP)").expect("the Reload section");
        let section = &doc[start..];
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
        for r in RESTART_ONLY {
            for part in r.name.split('/') {
                let word = part.trim_end_matches('*').trim_end_matches('_');
                assert!(
                    section.contains(word),
                    "docs/deployment.md, Reload, does not name `{}` ({:?}), which a reload cannot change",
                    r.name,
                    r.scope
                );
            }
        }
        assert!(RESTART_ONLY.iter().any(|r| r.scope == Scope::Listener));
    }
}
