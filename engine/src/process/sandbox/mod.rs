//! The sandbox the `uringtls` binary puts itself in after start-up
//! (`--sandbox true`, the default). Three layers, each reported at start
//! (one log line) and in `/metrics` (`uringtls_sandbox_layer{layer}`):
//!
//! ```text
//!  prepare (key modes, core dumps, metrics port, user lookup)
//!   └─ ring restrictions on ─ Landlock (main thread, before any shard starts)
//!       └─ Engine::start: bind, read keys, build (restricted) rings
//!           └─ before_serve: drop privileges ─ seccomp (every thread, TSYNC)
//!               └─ serve
//! ```
//!
//! - io_uring restrictions ([`crate::io`]'s uring backend): each shard ring
//!   runs only the operations the engine submits. Not on tokio-uring.
//! - [`landlock`]: read-only access to the configured files and their
//!   directories, nothing else on the file system.
//! - [`seccomp`]: an allow-list of system calls; others fail with EPERM
//!   and are logged once each.
//!
//! See `docs/security.md` for what each layer stops, its limits, and what
//! still works after start (reload, DNS on reload).

pub mod landlock;
pub mod seccomp;

use crate::config::{ServiceKind, Settings};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

/// Which layers are in force.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layers {
    /// Shard rings are restricted.
    pub ring_restrictions: bool,
    /// The seccomp filter is installed.
    pub seccomp: bool,
    /// Landlock ABI enforced (`None`: off or unavailable).
    pub landlock_abi: Option<i32>,
    /// Why Landlock is off although the sandbox is on.
    pub landlock_note: Option<String>,
}

static LAYERS: Mutex<Option<Layers>> = Mutex::new(None);

fn record(f: impl FnOnce(&mut Layers)) {
    let mut g = LAYERS.lock().unwrap_or_else(|p| p.into_inner());
    f(g.get_or_insert_with(Layers::default));
}

/// The layers in force (`None` if the sandbox was never set up: a library
/// user's engine).
pub fn layers() -> Option<Layers> {
    LAYERS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The files the running configuration reads (config file, certificates,
/// keys, client CA, ticket keys, the proxy's upstream-TLS files).
pub fn configured_files(options_config: Option<&PathBuf>, s: &Settings) -> Vec<PathBuf> {
    let t = &s.tls;
    let mut v: Vec<PathBuf> = options_config.into_iter().cloned().collect();
    v.extend(t.cert.iter().chain(&t.key).chain(&t.client_ca).cloned());
    v.extend(t.ticket_key_file.iter().cloned());
    v.extend(t.ticket_secret_file.iter().cloned());
    if let Some(a) = &s.acme {
        v.extend(a.ca.iter().cloned());
    }
    if let Some(d) = &t.cert_dir {
        // The directory itself (its pairs come and go): a name inside it,
        // as given and as resolved (a Kubernetes `..data` link).
        v.push(d.join(".cert_dir"));
        if let Ok(real) = std::fs::canonicalize(d) {
            v.push(real.join(".cert_dir"));
        }
    }
    for p in &t.extra_certs {
        v.push(p.cert.clone());
        v.push(p.key.clone());
    }
    if let Some(u) = &s.proxy.tls {
        // The proxy's upstream CA, client certificate and key.
        v.extend(u.settings.files().cloned());
    }
    // Each `[[listener]]`'s own files too.
    for l in &s.listeners {
        v.extend(configured_files(None, &l.settings));
    }
    v
}

/// Why a sandbox layer could not be applied (the engine refuses to serve).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// Landlock failed.
    #[error(transparent)]
    Landlock(#[from] landlock::LandlockError),
    /// The seccomp filter failed.
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    /// The thread that logs refused calls could not start.
    #[error("cannot start the sandbox log thread: {0}")]
    LogThread(std::io::Error),
}

/// The directories Landlock allows (see [`landlock::allowed_dirs`]).
pub fn allowed_dirs(options_config: Option<&PathBuf>, s: &Settings) -> BTreeSet<PathBuf> {
    landlock::allowed_dirs(&configured_files(options_config, s))
}

/// Before the engine starts: restricts the rings about to be built and
/// applies Landlock to this thread (and so to the shards it starts).
/// With `on` false, records every layer off.
pub fn before_start(on: bool, dirs: &BTreeSet<PathBuf>, s: &Settings) -> Result<(), SandboxError> {
    // `auto` runs on the uring backend where a ring can be built (the
    // shards' start makes the same probe and the same choice).
    let uring = match s.ring.backend {
        crate::io::Backend::Uring => true,
        crate::io::Backend::Auto => crate::io::probe_uring().is_ok(),
        crate::io::Backend::TokioUring | crate::io::Backend::Epoll => false,
    };
    let rings = on && uring;
    crate::io::restrict::set_wanted(rings);
    record(|l| l.ring_restrictions = rings);
    if !on {
        return Ok(());
    }
    let mut files: Vec<&str> = Vec::new();
    if s.service == ServiceKind::Proxy
        || s.listeners
            .iter()
            .any(|l| l.settings.service == ServiceKind::Proxy)
    {
        files.extend(landlock::RESOLVER_FILES);
    }
    if s.ops.user.is_some() {
        files.extend(landlock::USER_FILES);
    }
    let mut writable = Vec::new();
    let mut dirs = dirs.clone();
    if let Some(a) = &s.acme {
        // The ACME thread resolves and verifies its server (resolver files,
        // system roots) and writes its cache.
        files.extend(landlock::RESOLVER_FILES);
        dirs.extend(
            landlock::CA_ROOT_DIRS
                .iter()
                .map(PathBuf::from)
                .filter(|d| d.exists()),
        );
        writable.push(a.cache.clone());
    }
    files.sort_unstable();
    files.dedup();
    match landlock::apply(&dirs, &files, &writable)? {
        landlock::Outcome::Enforced { abi, .. } => record(|l| l.landlock_abi = Some(abi)),
        landlock::Outcome::Unavailable(why) => {
            tracing::warn!(
                "sandbox: Landlock not applied ({why}); files stay readable as the user allows"
            );
            record(|l| l.landlock_note = Some(why))
        }
    }
    Ok(())
}

/// Once privileges are dropped: installs the seccomp filter on every
/// thread and starts the thread that logs denied calls.
pub fn after_privileges(on: bool) -> Result<(), SandboxError> {
    if !on {
        return Ok(());
    }
    let denials = seccomp::install()?;
    record(|l| l.seccomp = true);
    denials.log_from_a_thread().map_err(SandboxError::LogThread)
}

/// The reload check while Landlock is on: every configured file must lie
/// in a directory allowed at start, else the reload is refused with the
/// reason (rather than a bare "permission denied").
pub fn reload_check(dirs: BTreeSet<PathBuf>) -> Box<crate::reload::PathCheck> {
    Box::new(move |s: &Settings| {
        for f in configured_files(None, s) {
            if !landlock::is_allowed(&f, &dirs) {
                let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
                return Err(crate::config::ConfigError::Invalid {
                    origin: "reload".into(),
                    problem: format!(
                        "{} is outside the directories the sandbox lets the engine read since \
                         start ({})",
                        f.display(),
                        list.join(", ")
                    ),
                    fix: "put the file in one of those directories, or restart the engine to \
                          read it from here"
                        .into(),
                });
            }
        }
        Ok(())
    })
}

/// Logs the layers in force (one line).
pub fn announce(dirs: &BTreeSet<PathBuf>) {
    let Some(l) = layers() else { return };
    let onoff = |b: bool| if b { "on" } else { "off" };
    let landlock = match (l.landlock_abi, &l.landlock_note) {
        (Some(abi), _) => format!("on (ABI {abi})"),
        (None, Some(why)) => format!("off ({why})"),
        (None, None) => "off".into(),
    };
    let allowed: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    tracing::info!(
        ring_restrictions = onoff(l.ring_restrictions),
        seccomp = onoff(l.seccomp),
        landlock = %landlock,
        readable = %allowed.join(","),
        "sandbox: ring restrictions {}, seccomp {}, landlock {landlock}",
        onoff(l.ring_restrictions),
        onoff(l.seccomp),
    );
}

/// `/metrics` families: `uringtls_sandbox_layer{layer}` (1 on, 0 off) and
/// `uringtls_sandbox_denied_syscalls_total`. Empty when the sandbox was
/// never set up.
#[derive(Debug)]
pub struct Metrics;

impl Collector for Metrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let Some(l) = layers() else { return Ok(()) };
        let mut m = enc.encode_descriptor(
            "sandbox_layer",
            "Sandbox layers in force (1) or not (0).",
            None,
            MetricType::Gauge,
        )?;
        for (layer, on) in [
            ("ring_restrictions", l.ring_restrictions),
            ("seccomp", l.seccomp),
            ("landlock", l.landlock_abi.is_some()),
        ] {
            ConstGauge::new(i64::from(on)).encode(m.encode_family(&[("layer", layer)])?)?;
        }
        let c = enc.encode_descriptor(
            "sandbox_denied_syscalls",
            "System calls the seccomp filter denied (EPERM).",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(seccomp::denied_total()).encode(c)
    }
}
