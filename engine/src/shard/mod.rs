//! Shards: one pinned OS thread per CPU, each with its own io_uring runtime
//! and its own `SO_REUSEPORT` socket for each listener (one accept loop per
//! listener in the shard's runtime). A connection lives and dies on the
//! shard that accepted it.
//!
//! Start-up is all-or-nothing: listeners are bound first (on the calling
//! thread, so port 0 resolves once), then every shard pins itself and builds
//! its ring, and only when all report ready are they told to serve. If one
//! fails, none serves and the error names the shard and the cause.
//!
//! The data flow reads top to bottom through the files: this one starts
//! the shards ([`Server::start_with`]); `accept.rs` is a shard's thread
//! (pin, runtime, accept loop, admission: limits and the handshake budget,
//! drain); `conn.rs` is one connection's pipeline (TLS session, handshake,
//! service, close and accounting); `proxy_in.rs` reads the PROXY header
//! a load balancer in front sends first (`accept_proxy`).

mod accept;
mod conn;
mod proxy_in;

use accept::{ShardListener, ShardTask};
pub mod listener;
pub mod trim;

pub use listener::ListenOptions;

use crate::io::{self, RingOptions};
use crate::reload::Live;
use crate::services::Service;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::watch;

/// What each shard needs besides its listener.
#[derive(Debug, Clone)]
pub struct ShardSettings {
    /// Ring setup.
    pub ring: RingOptions,
    /// Handshake deadline.
    pub handshake_timeout: Duration,
    /// Idle (read) deadline after the handshake.
    pub idle_timeout: Duration,
    /// Write deadline.
    pub write_timeout: Duration,
    /// Connection cap per shard.
    pub max_conns: usize,
    /// Time allowed for connections to finish after a stop.
    pub grace: Duration,
    /// Admission limits at accept (lists, per-address cap and rate, global cap).
    pub admission: Arc<crate::limits::LimitSettings>,
    /// The connection count shared by all shards (used while a global cap is set).
    pub global_conns: Arc<crate::limits::GlobalCount>,
    /// Write one access-log line per connection.
    pub access_log: bool,
    /// Where scrapes ask this shard for its counters.
    pub metrics: Option<Arc<crate::metrics::MetricsHub>>,
}

/// Why the shards could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// Binding the listening sockets failed.
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// A shard failed to start.
    Shard {
        /// Shard index.
        shard: usize,
        /// Its CPU.
        cpu: usize,
        /// What went wrong (its message says what to do).
        reason: ShardFailure,
    },
    /// The step run before serving (e.g. dropping privileges) failed; the
    /// caller's error, which it can downcast to its own type.
    Setup(Box<dyn std::error::Error + Send + Sync>),
}

/// Why one shard could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardFailure {
    /// The thread could not be created.
    #[error("cannot spawn thread: {0}")]
    Spawn(std::io::Error),
    /// The thread could not be pinned to its CPU.
    #[error("cannot pin the thread to CPU {0} (is it in this process's affinity mask?)")]
    Pin(usize),
    /// The I/O runtime (ring or epoll set) could not be built.
    #[error(transparent)]
    Runtime(#[from] io::SetupError),
    /// A shard thread ended before it reported.
    #[error("a shard thread died")]
    Died,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind { addr, source } => {
                let hint = match source.kind() {
                    std::io::ErrorKind::PermissionDenied => {
                        " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                    }
                    std::io::ErrorKind::AddrInUse => {
                        " (another process holds this port without SO_REUSEPORT)"
                    }
                    std::io::ErrorKind::AddrNotAvailable => {
                        " (the address is not configured on this machine)"
                    }
                    _ => "",
                };
                write!(f, "cannot listen on {addr}: {source}{hint}")
            }
            StartError::Shard { shard, cpu, reason } => {
                write!(
                    f,
                    "shard {shard} (CPU {cpu}) failed to start: {reason}; no shard is serving"
                )
            }
            StartError::Setup(reason) => write!(f, "{reason}; no shard is serving"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Bind { source, .. } => Some(source),
            StartError::Shard { reason, .. } => Some(reason),
            StartError::Setup(e) => Some(e.as_ref()),
        }
    }
}

/// One listener every shard serves: its address, and what its
/// connections get (its own TLS config and limits, swapped on reload, and
/// its own service).
pub struct ListenerSpec<S> {
    /// How logs name it (`top level`, `listener[1]`).
    pub name: String,
    /// Address (port 0: one port chosen for every shard).
    pub addr: SocketAddr,
    /// Its live TLS config and per-connection limits.
    pub live: Arc<Live>,
    /// Its service.
    pub service: Arc<S>,
}

/// Running shards.
pub struct Server {
    addrs: Vec<SocketAddr>,
    cpus: Vec<usize>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    done: mpsc::Receiver<usize>,
}

impl Server {
    /// Binds every listener (one socket per shard each), starts one shard
    /// per CPU in `cpus` (each serving every listener), and returns once
    /// all serve, running `before_serve` on the calling thread once every
    /// shard is ready and before any accepts (the place to drop
    /// privileges). If it fails, no shard serves, and its error comes back
    /// in [`StartError::Setup`].
    pub fn start_with<S: Service, E>(
        specs: Vec<ListenerSpec<S>>,
        listen: listener::ListenOptions,
        cpus: &[usize],
        settings: ShardSettings,
        before_serve: impl FnOnce() -> Result<(), E>,
    ) -> Result<Server, StartError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut settings = settings;
        settings.ring.backend = choose_backend(settings.ring.backend);
        // Every socket bound before any shard starts: a bad address
        // leaves nothing serving.
        let mut per_shard: Vec<Vec<ShardListener<S>>> = cpus.iter().map(|_| Vec::new()).collect();
        let mut addrs = Vec::with_capacity(specs.len());
        for spec in specs {
            let addr = spec.addr;
            let bound = listener::bind_all(addr, cpus.len(), listen)
                .map_err(|source| StartError::Bind { addr, source })?;
            let local = bound[0]
                .local_addr()
                .map_err(|source| StartError::Bind { addr, source })?;
            addrs.push(local);
            for (shard, l) in per_shard.iter_mut().zip(bound) {
                shard.push(ShardListener {
                    name: spec.name.clone(),
                    listener: l,
                    live: spec.live.clone(),
                    service: spec.service.clone(),
                });
            }
        }
        let (stop, stop_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<(), ShardFailure>)>();
        let (done_tx, done) = mpsc::channel();
        let mut threads = Vec::new();
        let mut go_senders = Vec::new();
        for (i, (listeners, &cpu)) in per_shard.into_iter().zip(cpus).enumerate() {
            let (go_tx, go_rx) = mpsc::channel::<bool>();
            go_senders.push(go_tx);
            let shard = ShardTask {
                id: i,
                cpu,
                listeners,
                settings: settings.clone(),
                stop: stop_rx.clone(),
            };
            let (ready, done) = (ready_tx.clone(), done_tx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || shard.run(ready, go_rx, done));
            match spawned {
                Ok(t) => threads.push(t),
                Err(e) => {
                    abort_all(&go_senders, threads);
                    return Err(StartError::Shard {
                        shard: i,
                        cpu,
                        reason: ShardFailure::Spawn(e),
                    });
                }
            }
        }
        drop(ready_tx);
        let mut failure = None;
        for _ in 0..cpus.len() {
            match ready_rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((i, Err(reason))) => {
                    failure.get_or_insert(StartError::Shard {
                        shard: i,
                        cpu: cpus[i],
                        reason,
                    });
                }
                Err(_) => {
                    failure.get_or_insert(StartError::Shard {
                        shard: 0,
                        cpu: cpus[0],
                        reason: ShardFailure::Died,
                    });
                    break;
                }
            }
        }
        if let Some(e) = failure {
            abort_all(&go_senders, threads);
            return Err(e);
        }
        if let Err(reason) = before_serve() {
            abort_all(&go_senders, threads);
            return Err(StartError::Setup(reason.into()));
        }
        for g in &go_senders {
            let _ = g.send(true);
        }
        Ok(Server {
            addrs,
            cpus: cpus.to_vec(),
            stop,
            threads,
            done,
        })
    }

    /// The first listener's address (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listener's address, in the order given to [`Server::start_with`].
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// CPU of each shard.
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    /// Stops accepting and starts draining; returns at once.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until every shard has drained (or hit its grace period).
    /// Does not wait for the threads' runtimes to be torn down.
    pub fn wait_drained(&self) {
        for _ in 0..self.threads.len() {
            if self.done.recv().is_err() {
                break;
            }
        }
    }

    /// Stops, drains and joins every shard thread.
    pub fn stop_and_join(self) {
        self.shutdown();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn abort_all(go: &[mpsc::Sender<bool>], threads: Vec<JoinHandle<()>>) {
    for g in go {
        let _ = g.send(false);
    }
    for t in threads {
        let _ = t.join();
    }
}

/// Resolves `auto` once for every shard (so that all run on the same
/// backend): `uring` where a ring can be built, `epoll` where io_uring is
/// unavailable to this process, with one warning naming the cause and the
/// way back. Any other failure (a ring too large to lock) stays `uring`,
/// for the shards to report.
fn choose_backend(asked: io::Backend) -> io::Backend {
    if asked != io::Backend::Auto {
        return asked;
    }
    match io::probe_uring() {
        Err(e) if e.io_uring_unavailable() => {
            tracing::warn!(
                cause = %e.io_error(),
                "io_uring is unavailable: serving on the epoll backend. To use io_uring, allow \
                 io_uring_setup, io_uring_enter and io_uring_register (a container's seccomp \
                 profile: docs/deploy/) or set sysctl kernel.io_uring_disabled=0; \
                 --io-backend uring refuses to start without it"
            );
            io::Backend::Epoll
        }
        _ => io::Backend::Uring,
    }
}

#[cfg(test)]
mod start_error_tests {
    use super::*;

    #[test]
    fn a_shard_failure_says_which_shard_and_why_in_the_same_words() {
        let e = StartError::Shard {
            shard: 1,
            cpu: 7,
            reason: ShardFailure::Pin(7),
        };
        assert_eq!(
            e.to_string(),
            "shard 1 (CPU 7) failed to start: cannot pin the thread to CPU 7 (is it in this \
             process's affinity mask?); no shard is serving"
        );
        let source = std::error::Error::source(&e).expect("a cause");
        assert!(matches!(
            source.downcast_ref::<ShardFailure>(),
            Some(ShardFailure::Pin(7))
        ));
    }

    #[test]
    fn a_failed_setup_step_comes_back_as_the_callers_own_type() {
        let e =
            StartError::Setup(std::io::Error::from(std::io::ErrorKind::PermissionDenied).into());
        assert!(e.to_string().ends_with("; no shard is serving"), "{e}");
        let source = std::error::Error::source(&e).expect("a cause");
        assert_eq!(
            source.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::PermissionDenied)
        );
    }
}
