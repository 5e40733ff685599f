//! Shards: one pinned OS thread per CPU, each with its own io_uring runtime
//! and its own `SO_REUSEPORT` listener. A connection lives and dies on the
//! shard that accepted it.
//!
//! Start-up is all-or-nothing: listeners are bound first (on the calling
//! thread, so port 0 resolves once), then every shard pins itself and builds
//! its ring, and only when all report ready are they told to serve. If one
//! fails, none serves and the error names the shard and the cause.

pub mod listener;
pub mod trim;

use crate::state::{handshakes, HandshakeSlot};
pub use crate::state::{Counters, ShardState};
pub use listener::ListenOptions;

use crate::io::{self, Conn, Listener, RingOptions, Runtime};
use crate::limits::{Admitted, ShardLimits};
use crate::metrics::{access::ConnRecord, CloseReason};
use crate::reload::Live;
use crate::services::{ConnInfo, Service};
use crate::tls::ServerStream;
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
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

/// Running shards.
pub struct Server {
    addr: SocketAddr,
    cpus: Vec<usize>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    done: mpsc::Receiver<usize>,
}

impl Server {
    /// Binds, starts one shard per CPU in `cpus`, and returns once all
    /// serve, running `before_serve` on the calling thread once every
    /// shard is ready and before any accepts (the place to drop
    /// privileges). If it fails, no shard serves, and its error comes back
    /// in [`StartError::Setup`].
    pub fn start_with<S: Service, E>(
        addr: SocketAddr,
        listen: listener::ListenOptions,
        cpus: &[usize],
        settings: ShardSettings,
        live: Arc<Live>,
        service: Arc<S>,
        before_serve: impl FnOnce() -> Result<(), E>,
    ) -> Result<Server, StartError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut settings = settings;
        settings.ring.backend = choose_backend(settings.ring.backend);
        let listeners = listener::bind_all(addr, cpus.len(), listen)
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listeners[0]
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let (stop, stop_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<(), ShardFailure>)>();
        let (done_tx, done) = mpsc::channel();
        let mut threads = Vec::new();
        let mut go_senders = Vec::new();
        for (i, (l, &cpu)) in listeners.into_iter().zip(cpus).enumerate() {
            let (go_tx, go_rx) = mpsc::channel::<bool>();
            go_senders.push(go_tx);
            let shard = ShardTask {
                id: i,
                cpu,
                listener: l,
                settings: settings.clone(),
                live: live.clone(),
                service: service.clone(),
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
            addr,
            cpus: cpus.to_vec(),
            stop,
            threads,
            done,
        })
    }

    /// The address all shards listen on (with the real port if 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
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

struct ShardTask<S> {
    id: usize,
    cpu: usize,
    listener: std::net::TcpListener,
    settings: ShardSettings,
    live: Arc<Live>,
    service: Arc<S>,
    stop: watch::Receiver<bool>,
}

impl<S: Service> ShardTask<S> {
    /// The shard thread: pin, build the ring, report, wait for go, serve.
    fn run(
        self,
        ready: mpsc::Sender<(usize, Result<(), ShardFailure>)>,
        go: mpsc::Receiver<bool>,
        done: mpsc::Sender<usize>,
    ) {
        let id = self.id;
        if !core_affinity::set_for_current(core_affinity::CoreId { id: self.cpu }) {
            let _ = ready.send((id, Err(ShardFailure::Pin(self.cpu))));
            return;
        }
        let rt = match Runtime::new(&self.settings.ring) {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send((id, Err(ShardFailure::Runtime(e))));
                return;
            }
        };
        let _ = ready.send((id, Ok(())));
        if go.recv() != Ok(true) {
            return;
        }
        let backend = rt.backend().name();
        rt.block_on(self.serve(backend));
        let _ = done.send(id);
    }

    async fn serve(self, backend: &'static str) {
        let ShardTask {
            id,
            listener,
            settings,
            live,
            service,
            mut stop,
            ..
        } = self;
        let listen_fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let listener = match Listener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(shard = id, error = %e, "cannot register the listening socket");
                return;
            }
        };
        let local = match listener.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        };
        let state = Rc::new(ShardState::new(id));
        state.io_backend.set(backend);
        let hub = settings.metrics.clone();
        if let Some(h) = &hub {
            let st = state.clone();
            io::spawn(
                h.register(id)
                    .serve(move || crate::metrics::ShardSnapshot::take(st.counts())),
            );
        }
        io::spawn(trim::run(state.clone()));
        let limits = Rc::new(ShardLimits::new(settings.global_conns.clone()));
        let ctx = Rc::new(ConnCtx {
            limits,
            epoch: Instant::now(),
            settings,
            live,
            service,
            local,
            state: state.clone(),
        });
        // Last time accept failed for lack of fds. An accept takes the fd
        // before it takes the connection, so while the table is full every
        // attempt fails (each 10 ms, below); failures less than
        // FD_EPISODE_QUIET apart are one episode (one log line, one count).
        let mut fd_exhausted: Option<Instant> = None;
        // Last time accept paused for the handshake budget (episodes as for fds).
        let mut budget_full: Option<Instant> = None;
        loop {
            if !ctx.handshake_budget(&mut budget_full, &mut stop).await {
                break;
            }
            tokio::select! {
                res = listener.accept() => match res {
                    Ok((conn, peer)) => {
                        if fd_exhausted.is_some_and(|t| t.elapsed() >= FD_EPISODE_QUIET) {
                            tracing::info!(shard = id, "file descriptors available again: accepting");
                            fd_exhausted = None;
                        }
                        ctx.make_room();
                        ctx.clone().admit(conn, peer);
                    }
                    Err(e) if is_fd_exhaustion(&e) => {
                        if fd_exhausted.is_none_or(|t| t.elapsed() >= FD_EPISODE_QUIET) {
                            tracing::warn!(shard = id, error = %e, "out of file descriptors: accept paused until some close");
                            state.metrics.fd_exhaustion_episode();
                        }
                        fd_exhausted = Some(Instant::now());
                        crate::io::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => tracing::debug!(shard = id, error = %e, "accept failed"),
                },
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        // No handshake completes on the listener any more, then the
        // connections already queued are served, not reset.
        let filtered = quiesce(id, listen_fd).await;
        for (conn, peer) in listener.close().await {
            if filtered {
                // SAFETY: `conn` owns this fd for the duration of the call.
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(conn.raw_fd()) };
                listener::clear_inherited_filter(fd);
            }
            ctx.clone().admit(conn, peer);
        }
        state.start_drain();
        tracing::info!(
            shard = id,
            connections = state.active(),
            "listener closed; draining"
        );
        let grace = ctx.settings.grace;
        if crate::io::time::timeout(grace, state.all_closed())
            .await
            .is_err()
        {
            tracing::warn!(
                shard = id,
                left = state.active(),
                "grace period over; closing remaining connections"
            );
        }
        let c = &state.counters;
        tracing::info!(
            shard = id,
            accepted = c.accepted.get(),
            full = c.full_handshakes.get(),
            resumed = c.resumed_handshakes.get(),
            failed = c.failed_handshakes.get(),
            refused = c.refused.get(),
            "shard stopped"
        );
        if let Some(h) = hub {
            h.publish(crate::metrics::ShardSnapshot::take(state.counts()));
        }
    }
}

/// Before a stopping shard closes its listener: with `tcp_migrate_req`,
/// filters it so that no handshake completes on it any more, and gives the
/// packets already past the filter time to finish (see
/// [`listener::stop_completing_handshakes`]). True if it filtered.
async fn quiesce(id: usize, listen_fd: std::os::fd::RawFd) -> bool {
    if !listener::migration_enabled() {
        return false;
    }
    // SAFETY: `listen_fd` is the socket the shard's `Listener` owns; it is
    // closed only after this function returns (`Listener::close`).
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(listen_fd) };
    if let Err(e) = listener::stop_completing_handshakes(fd) {
        tracing::warn!(shard = id, error = %e, "cannot filter the listener before closing it");
        return false;
    }
    crate::io::time::sleep(listener::STRAGGLER_PAUSE).await;
    true
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

/// Accept failures for lack of fds closer together than this are one episode.
const FD_EPISODE_QUIET: Duration = Duration::from_secs(1);

/// How long a server's TLS 1.3 session tickets wait after the handshake for
/// the client's first request, to leave in one segment with the response
/// (clients send the request right after their Finished; one that waits
/// for the server gets its tickets after this).
const LAST_FLIGHT_HOLD: Duration = Duration::from_millis(10);

fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// Everything a connection task needs, shared per shard.
struct ConnCtx<S> {
    settings: ShardSettings,
    /// TLS config and limits, replaced on reload; read once per connection.
    live: Arc<Live>,
    service: Arc<S>,
    local: SocketAddr,
    state: Rc<ShardState>,
    /// Admission state (per-address tables) of this shard.
    limits: Rc<ShardLimits>,
    /// Time origin for the rate limiter.
    epoch: Instant,
}

/// Decrements the active count and gives back the connection's admission
/// slots when its task ends, even by panic.
struct ActiveGuard {
    state: Rc<ShardState>,
    limits: Rc<ShardLimits>,
    admitted: Option<Admitted>,
    epoch: Instant,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            Counters::bump(&self.state.counters.panics);
            self.state.metrics.closed(CloseReason::Panic, (0, 0));
        }
        if let Some(a) = self.admitted.take() {
            self.limits.release(a, self.epoch.elapsed());
        }
        self.state.conn_closed();
    }
}

impl<S: Service> ConnCtx<S> {
    /// Before an accept: while `max_handshakes` handshakes are in progress
    /// and none is stale, waits for one to end or become stale. False once
    /// the shard stops. `last_full` is when the budget was last full (one
    /// warning per episode, as for fds).
    async fn handshake_budget(
        &self,
        last_full: &mut Option<Instant>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let st = &self.state;
        loop {
            let live = self.live.load();
            let max = live.limits.admission.max_handshakes;
            if st.handshakes() < max {
                return true;
            }
            let stale_at = st
                .hs
                .stale_at(handshakes::stale_after(live.limits.handshake_timeout));
            drop(live);
            if stale_at.is_some_and(|at| at <= Instant::now()) {
                // The next accepted connection takes the stale one's slot.
                return true;
            }
            if last_full.is_none_or(|t| t.elapsed() >= FD_EPISODE_QUIET) {
                tracing::warn!(
                    shard = st.id,
                    handshakes = st.handshakes(),
                    "handshake budget full (max_handshakes): accept paused until one ends"
                );
            }
            *last_full = Some(Instant::now());
            Counters::bump(&st.counters.handshake_budget_pauses);
            let until_stale = async {
                match stale_at {
                    Some(at) => crate::io::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = st.hs.room(max) => {}
                _ = until_stale => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
        }
    }

    /// A connection was accepted with the budget full: cuts off the oldest
    /// handshake if it is stale (see [`handshakes`]).
    fn make_room(&self) {
        let st = &self.state;
        let live = self.live.load();
        if st.handshakes() < live.limits.admission.max_handshakes {
            return;
        }
        let stale = handshakes::stale_after(live.limits.handshake_timeout);
        if st.hs.evict_stale(Instant::now(), stale).is_ok() {
            Counters::bump(&st.counters.handshake_evictions);
        }
    }

    /// Applies the shard's limits and spawns the connection's task.
    fn admit(self: Rc<Self>, conn: Conn, peer: SocketAddr) {
        let st = &self.state;
        Counters::bump(&st.counters.accepted);
        // Limits in force now (a reload may have changed them).
        let live = self.live.load();
        let lim = &live.limits;
        let (ip, active, now) = (peer.ip(), st.active(), self.epoch.elapsed());
        let admitted = match self
            .limits
            .admit(&lim.admission, ip, active, lim.max_conns, now)
        {
            Ok(a) => a,
            Err(why) => {
                Counters::bump(&st.counters.refused);
                st.metrics.refused(why);
                tracing::debug!(%peer, limit = why.label(), "connection refused");
                conn.abort();
                return;
            }
        };
        // TCP_NODELAY is inherited from the listening socket (set in
        // `listener::bind_one`): no setsockopt per connection.
        st.conn_opened();
        let guard = ActiveGuard {
            state: st.clone(),
            limits: self.limits.clone(),
            admitted: Some(admitted),
            epoch: self.epoch,
        };
        // Counted from here, so that the accept loop sees it before its
        // next accept.
        let handshake = st.handshake_started();
        io::spawn(async move {
            let _guard = guard;
            self.serve_conn(conn, peer, handshake).await;
        });
    }

    async fn serve_conn(&self, conn: Conn, peer: SocketAddr, handshake: HandshakeSlot) {
        let started = Instant::now();
        let cur = self.live.load_full();
        let tls = match crate::tls::ServerConn::new(cur.tls.clone()) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot create a TLS session");
                conn.abort();
                self.state.metrics.closed(CloseReason::Error, (0, 0));
                return;
            }
        };
        let mut stream = ServerStream::new(conn, tls);
        let mut hs_error = None;
        let why = self
            .drive(
                &mut stream,
                &cur.limits,
                peer,
                started,
                &mut hs_error,
                handshake,
            )
            .await;
        if why == CloseReason::HandshakeFailed && stream.peer_spoke_plain_http() {
            // Not a TLS client at all: refused (it got its 400), like the
            // refusals at accept, and not counted among the closes.
            Counters::bump(&self.state.counters.refused);
            self.state
                .metrics
                .refused(crate::limits::Refusal::PlainHttp);
            tracing::debug!(%peer, "plain HTTP on the TLS port: answered 400 and closed");
            return;
        }
        let bytes = stream.byte_counts();
        self.state.metrics.closed(why, bytes);
        if cur.limits.access_log {
            ConnRecord::of(stream.tls())
                .with_handshake_error(hs_error.as_ref())
                .emit(peer, why, bytes, started.elapsed());
        }
    }

    /// Handshake, then the service; returns why the connection ends (and
    /// leaves a handshake's error in `hs_error`, for the access log).
    async fn drive(
        &self,
        stream: &mut ServerStream,
        limits: &ShardSettings,
        peer: SocketAddr,
        started: Instant,
        hs_error: &mut Option<std::io::Error>,
        handshake: HandshakeSlot,
    ) -> CloseReason {
        stream.set_write_timeout(Some(limits.write_timeout));
        stream.hold_last_flight(Some(LAST_FLIGHT_HOLD));
        let c = &self.state.counters;
        // Boxed: the handshake's state is needed once, and should not be
        // part of the task an idle connection keeps.
        let hf = Box::pin(crate::io::time::timeout(
            limits.handshake_timeout,
            stream.handshake_lazy(),
        ));
        let done = tokio::select! {
            done = hf => done,
            _ = handshake.evicted() => {
                // A handshake timeout, shortened because the budget is full
                // (also counted in `handshake_evictions`).
                Counters::bump(&c.handshake_timeouts);
                tracing::debug!(%peer, "handshake cut off to make room (max_handshakes)");
                return CloseReason::HandshakeTimeout;
            }
        };
        drop(handshake);
        match done {
            Err(_) => {
                Counters::bump(&c.handshake_timeouts);
                tracing::debug!(%peer, "handshake timeout");
                return CloseReason::HandshakeTimeout;
            }
            Ok(Err(e)) if stream.peer_spoke_plain_http() => {
                // Counted as refused by the caller.
                *hs_error = Some(e);
                return CloseReason::HandshakeFailed;
            }
            Ok(Err(e)) => {
                Counters::bump(&c.failed_handshakes);
                self.state.metrics.handshake_failed(&e);
                tracing::debug!(%peer, error = %e, "handshake failed");
                *hs_error = Some(e);
                return CloseReason::HandshakeFailed;
            }
            Ok(Ok(())) => {}
        }
        let tls = stream.tls();
        if tls.alpn_protocol() == Some(crate::acme::ACME_TLS_ALPN) {
            // A TLS-ALPN-01 validation (RFC 8737): the handshake was all.
            let _ = Box::pin(stream.close()).await;
            return CloseReason::Normal;
        }
        match tls.handshake_kind() {
            Some(rustls::HandshakeKind::Resumed) => Counters::bump(&c.resumed_handshakes),
            _ => Counters::bump(&c.full_handshakes),
        }
        let suite = tls.negotiated_cipher_suite().map(|s| s.suite());
        self.state
            .metrics
            .handshake_done(started.elapsed(), tls.protocol_version(), suite);
        stream.set_read_timeout(Some(limits.idle_timeout));
        let info = ConnInfo {
            peer,
            local: self.local,
            peer_identity: crate::tls::peer_identity(stream.tls()),
            shard: self.state.clone(),
            drain_slot: std::cell::Cell::new(None),
        };
        // Boxed, like the handshake: each part's state is allocated while it
        // runs instead of the task reserving room for the largest.
        match Box::pin(self.service.serve(stream, &info)).await {
            Ok(()) => {
                let _ = Box::pin(stream.close()).await;
                CloseReason::Normal
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                tracing::debug!(%peer, error = %e, "connection timed out");
                let _ = Box::pin(crate::io::time::timeout(
                    Duration::from_secs(1),
                    stream.close(),
                ))
                .await;
                CloseReason::of_service_error(&e)
            }
            Err(e) => {
                let why = CloseReason::of_service_error(&e);
                // A FIN inside a record is a truncation, not a normal end.
                if why == CloseReason::Eof && !stream.has_pending_input() {
                    tracing::debug!(%peer, "client closed without close_notify");
                    return CloseReason::Eof;
                }
                tracing::debug!(%peer, error = %e, "connection ended with an error");
                match why {
                    CloseReason::Eof => CloseReason::Error,
                    other => other,
                }
            }
        }
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
