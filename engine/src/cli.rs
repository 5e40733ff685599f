//! The `uringtls` command line: flags/TOML in, shards out, SIGINT/SIGTERM
//! drain, SIGHUP reload (`reload.rs`). `main.rs` only calls [`main`]; the test crate builds a copy of the
//! binary from the same function.

use crate::builtin::BuiltIn;
use crate::config::{ConfigError, LogFormat, Options, ServiceKind, Settings};
use crate::reload::{ReloadError, Reloader};
use crate::services::{
    echo::Echo,
    proxy::{Prepared, Proxy},
};
use crate::Engine;
use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::process::ExitCode;

/// Runs the `uringtls` command with the process's arguments.
pub fn main() -> ExitCode {
    let options = Options::parse();
    let settings = match options.clone().resolve() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("uringtls: error: {e}");
            return ExitCode::from(2);
        }
    };
    // Keeps the log writer thread alive (and flushes it) until main returns.
    let _log_guard = init_logging(&settings);
    for w in &settings.warnings {
        tracing::warn!("setting without effect: {w}");
    }
    // Key-file modes, core dumps, fd limit, metrics port, target user:
    // all before keys are read (see `crate::process`).
    let prepared = match crate::process::prepare(&settings) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("uringtls: error: {e}");
            return ExitCode::from(2);
        }
    };
    let target = prepared.target;
    let target_name = target.map(|t| crate::process::privileges::user_name(t.uid));
    // Rings restricted and Landlock applied before any shard starts (they
    // inherit it); seccomp once privileges are dropped (see
    // `crate::process::sandbox`).
    let sandbox = settings.sandbox;
    let readable = crate::process::sandbox::allowed_dirs(options.config.as_ref(), &settings);
    if let Err(e) = crate::process::sandbox::before_start(sandbox, &readable, &settings) {
        eprintln!("uringtls: error: {e}");
        return ExitCode::from(2);
    }
    let before_serve = move || {
        crate::process::before_serve(target, target_name.as_deref())?;
        crate::process::sandbox::after_privileges(sandbox)
            .map_err(crate::process::StartupError::from)
    };
    // Probed before our own listeners exist (they would answer it).
    let shared_ports: Vec<_> = settings
        .each_listener()
        .iter()
        .map(|l| l.settings.listen)
        .filter(|a| crate::process::listener_exists(*a))
        .collect();
    // Installed before anything is announced: a SIGHUP right after the
    // readiness line must reload, not kill (its default action).
    let signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("uringtls: error: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    // Per listener, the proxy handle its reloads swap upstreams in. A
    // proxy resolves its upstream names as it is built, before anything
    // is bound: a name that does not resolve stops the start here.
    let mut proxies = vec![None];
    let started = if !settings.listeners.is_empty() {
        // Several listeners: each its own built-in service.
        let services = match built_ins(&settings) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("uringtls: error: {e}");
                return ExitCode::from(2);
            }
        };
        proxies = services.iter().map(|s| s.proxy().cloned()).collect();
        Engine::start_each_with(&settings, services, before_serve)
    } else {
        match settings.service {
            ServiceKind::Echo => Engine::start_with(&settings, Echo, before_serve),
            ServiceKind::Http => {
                Engine::start_with(&settings, crate::builtin::http(&settings), before_serve)
            }
            ServiceKind::Proxy => {
                let p = match Proxy::new(settings.proxy.clone()) {
                    Ok(p) => p,
                    Err(source) => {
                        let e = ConfigError::Resolve {
                            listener: None,
                            source,
                        };
                        eprintln!("uringtls: error: {e}");
                        return ExitCode::from(2);
                    }
                };
                proxies = vec![Some(p.clone())];
                Engine::start_with(&settings, p, before_serve)
            }
        }
    };
    let engine = match started {
        Ok(e) => e,
        Err(e) => {
            eprintln!("uringtls: error: {e}");
            return ExitCode::from(2);
        }
    };
    if settings.listeners.is_empty() {
        if let Some(Some(p)) = proxies.first() {
            engine.metrics_hub().add_collector(p.metrics());
        }
    } else if proxies.iter().any(Option::is_some) {
        let each = settings
            .listeners
            .iter()
            .zip(&proxies)
            .filter_map(|(l, p)| Some((l.name.as_str(), p.as_ref()?)));
        let all = crate::services::proxy::ProxyMetrics::of_listeners(each);
        engine.metrics_hub().add_collector(std::sync::Arc::new(all));
    }
    if let Some(l) = prepared.metrics {
        match crate::metrics::server::start(l, engine.metrics_hub().clone()) {
            Ok(a) => println!("uringtls: metrics at http://{a}/metrics"),
            Err(e) => {
                eprintln!("uringtls: error: cannot start the metrics server: {e}");
                return ExitCode::from(1);
            }
        }
    }
    for addr in shared_ports {
        tracing::warn!("{}", crate::process::shared_port_warning(addr));
    }
    crate::process::sandbox::announce(&readable);
    announce(&settings, &engine);
    crate::process::notify::ready();
    let mut reloader = Reloader::new(options, settings.clone(), engine.slots().to_vec());
    if settings.watch_files {
        match crate::watch::FileWatcher::start(&settings, |_| raise_sighup()) {
            Ok(w) => reloader.set_watcher(w),
            Err(e) => tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP"),
        }
    }
    if crate::process::sandbox::layers().is_some_and(|l| l.landlock_abi.is_some()) {
        reloader = reloader.with_check(crate::process::sandbox::reload_check(readable));
    }
    wait_for_stop(&engine, signals, reloader, proxies);
    ExitCode::SUCCESS
}

/// Each listener's built-in service (a proxy's upstream names resolved;
/// the error names the listener).
fn built_ins(s: &Settings) -> Result<Vec<BuiltIn>, ConfigError> {
    s.listeners
        .iter()
        .map(|l| {
            BuiltIn::of(&l.settings).map_err(|source| ConfigError::Resolve {
                listener: Some(l.name.clone()),
                source,
            })
        })
        .collect()
}

/// Default log filter.
const DEFAULT_LOG_FILTER: &str = "info";

/// The filter the engine logs with: the one asked for (`--log-level`, else
/// `RUST_LOG`, else [`DEFAULT_LOG_FILTER`]), with rustls held to errors
/// unless the filter names rustls itself. rustls logs peer mistakes (e.g.
/// an IP address sent as SNI) at warn level once per connection: a peer
/// must not be able to flood the log, whatever level the operator chose.
fn log_filter(asked: Option<&str>) -> String {
    let f = asked.unwrap_or(DEFAULT_LOG_FILTER);
    // A target directive overrides the default level either way: after a
    // bare `off` it would switch rustls's errors back on.
    if f.contains("rustls") || f.split(',').any(|d| d.trim() == "off") {
        f.to_owned()
    } else if f.trim().is_empty() {
        "rustls=error".to_owned()
    } else {
        format!("{f},rustls=error")
    }
}

/// Logs go through a background writer thread: a slow or blocked stderr
/// drops lines (lossy) instead of stalling a shard.
fn init_logging(s: &Settings) -> tracing_appender::non_blocking::WorkerGuard {
    let env = std::env::var("RUST_LOG").ok();
    let asked = s.log_level.as_deref().or(env.as_deref());
    // `--log-level` was checked with the configuration; a bad RUST_LOG
    // (a mistyped level included) falls back to the default, with a
    // warning once logging is up.
    let checked = asked
        .map_or(Ok(()), crate::config::check_log_filter)
        .map_err(|e| e.to_string());
    let filter = checked.and_then(|()| {
        tracing_subscriber::EnvFilter::try_new(log_filter(asked)).map_err(|e| e.to_string())
    });
    let (filter, bad) = match filter {
        Ok(f) => (f, None),
        Err(e) => (
            tracing_subscriber::EnvFilter::new(log_filter(None)),
            Some(e),
        ),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match s.log_format {
        LogFormat::Json => b.event_format(crate::metrics::json_log::JsonLines).init(),
        LogFormat::Human => b.init(),
    }
    if let Some(e) = bad {
        tracing::warn!(error = %e, "RUST_LOG is not a log filter; logging at the default level");
    }
    guard
}

fn announce(s: &Settings, engine: &Engine) {
    let addrs = engine.local_addrs();
    let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    for (i, cpu) in engine.cpus().iter().enumerate() {
        println!(
            "uringtls: shard {i} on CPU {cpu} listening on {}",
            list.join(", ")
        );
    }
    if engine.identity().self_signed {
        println!(
            "uringtls: self-signed certificate for localhost, 127.0.0.1, ::1; SHA-256 fingerprint {}",
            engine.identity().fingerprint()
        );
    }
    let several = !s.listeners.is_empty();
    for (l, addr) in s.each_listener().iter().zip(addrs) {
        let service = match l.settings.service {
            ServiceKind::Echo => "echo",
            ServiceKind::Http => "http",
            ServiceKind::Proxy => "proxy",
        };
        // With several listeners, each line names its listener.
        let which = match several {
            true => format!(" ({})", l.name),
            false => String::new(),
        };
        println!(
            "uringtls: serving {service} at https://{addr}/ with {} shards{which}",
            engine.cpus().len()
        );
    }
}

/// Serves SIGHUP reloads until SIGINT/SIGTERM, then drains.
fn wait_for_stop(
    engine: &Engine,
    mut signals: Signals,
    mut reloader: Reloader,
    proxies: Vec<Option<Proxy>>,
) {
    let mut generation = 0u64;
    for sig in signals.forever() {
        if sig != SIGHUP {
            tracing::info!(signal = sig, "stopping: no new connections, draining");
            crate::process::notify::stopping();
            warn_without_migration();
            break;
        }
        generation += 1;
        reload(generation, &mut reloader, &proxies);
    }
    engine.shutdown();
    // A second SIGINT/SIGTERM stops at once; SIGHUP is ignored while draining.
    std::thread::spawn(move || {
        if signals.forever().any(|s| s != SIGHUP) {
            eprintln!("uringtls: second signal, exiting without waiting");
            std::process::exit(1);
        }
    });
    engine.wait_drained();
    tracing::info!("all shards drained; exiting");
}

/// A watched file changed: reload through the signal loop, exactly as
/// SIGHUP does (one reload at a time, numbered, logged and printed).
fn raise_sighup() {
    if let Err(e) = signal_hook::low_level::raise(SIGHUP) {
        tracing::error!(error = %e, "cannot signal a reload to this process");
    }
}

/// One reload; the outcome is logged and printed (`uringtls: reload N ...`)
/// so that operators and tests see it.
fn reload(generation: u64, reloader: &mut Reloader, proxies: &[Option<Proxy>]) {
    crate::process::notify::reloading();
    let warned = reloader.settings().warnings.clone();
    // Upstream names resolved before anything is swapped: a new name that
    // does not resolve refuses the whole reload.
    let result = match reloader
        .read()
        .and_then(|new| Ok((prepare_proxies(proxies, &new)?, new)))
    {
        Ok((prepared, new)) => reloader.apply(new).map(|s| (s, prepared)),
        Err(e) => Err(e),
    };
    crate::metrics::reloads::note(result.is_ok());
    match result {
        Ok((s, prepared)) => {
            for (p, r) in proxies.iter().zip(prepared) {
                if let (Some(p), Some(r)) = (p, r) {
                    p.commit(r);
                }
            }
            // Each warning once: only what this reload brought in.
            for w in s.warnings.iter().filter(|w| !warned.contains(w)) {
                tracing::warn!(generation, "setting without effect: {w}");
            }
            tracing::info!(generation, "configuration reloaded");
            println!("uringtls: reload {generation} applied");
        }
        Err(e) => {
            tracing::error!(generation, error = %e, "configuration reload failed");
            println!("uringtls: reload {generation} refused: {e}");
        }
    }
    crate::process::notify::ready();
}

/// Each listener's proxy with the new settings' upstream names resolved,
/// nothing swapped yet.
fn prepare_proxies(
    proxies: &[Option<Proxy>],
    new: &Settings,
) -> Result<Vec<Option<Prepared>>, ReloadError> {
    let several = !new.listeners.is_empty();
    proxies
        .iter()
        .zip(new.each_listener())
        .map(|(p, l)| {
            let Some(p) = p else { return Ok(None) };
            p.prepare(l.settings.proxy).map(Some).map_err(|source| {
                ReloadError(ConfigError::Resolve {
                    listener: several.then(|| l.name.clone()),
                    source,
                })
            })
        })
        .collect()
}

/// Zero-downtime upgrades need the kernel to move connections queued on a
/// closing `SO_REUSEPORT` listener to the new process's listeners.
fn warn_without_migration() {
    if !crate::shard::listener::migration_enabled() {
        tracing::info!(
            "net.ipv4.tcp_migrate_req is not 1: a connection queued on a listener as it closes is reset \
             (set it to 1 for zero-downtime upgrades, see docs/deployment.md)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tracing_subscriber::layer::SubscriberExt;

    /// Counts the events that get past the filter.
    struct Count(Arc<AtomicUsize>);
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Count {
        fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Which of (rustls warn, rustls error, engine warn, engine info) the
    /// filter lets through.
    fn passes(filter: &str) -> [bool; 4] {
        let n = Arc::new(AtomicUsize::new(0));
        let f = tracing_subscriber::EnvFilter::try_new(filter).expect("valid filter");
        let sub = tracing_subscriber::registry()
            .with(f)
            .with(Count(n.clone()));
        let mut out = [false; 4];
        tracing::subscriber::with_default(sub, || {
            let mut step = |i: usize, emit: &dyn Fn()| {
                let before = n.load(Ordering::Relaxed);
                emit();
                out[i] = n.load(Ordering::Relaxed) > before;
            };
            step(
                0,
                &|| tracing::warn!(target: "rustls::server::hs", "ip sni"),
            );
            step(1, &|| tracing::error!(target: "rustls::server::hs", "bad"));
            step(2, &|| tracing::warn!(target: "uringtls::shard", "w"));
            step(3, &|| tracing::info!(target: "uringtls::shard", "i"));
        });
        out
    }

    #[test]
    fn rustls_warnings_stay_out_whatever_level_is_asked_unless_rustls_is_named() {
        assert_eq!(passes(&log_filter(None)), [false, true, true, true]);
        assert_eq!(
            passes(&log_filter(Some("warn"))),
            [false, true, true, false]
        );
        assert_eq!(
            passes(&log_filter(Some("debug"))),
            [false, true, true, true]
        );
        assert_eq!(
            passes(&log_filter(Some("info,rustls=warn"))),
            [true, true, true, true]
        );
        assert_eq!(
            passes(&log_filter(Some("off"))),
            [false, false, false, false]
        );
    }
}
