//! A shard's thread and its accept loop: pin to the CPU, build the
//! runtime, report ready, then accept — each connection admitted (limits,
//! handshake budget) and given a task of its own ([`super::conn`]) — until
//! the stop, then drain.

use super::{listener, trim, ShardFailure, ShardSettings};
use crate::io::{self, Conn, Listener, Runtime};
use crate::limits::{Admitted, ShardLimits};
use crate::metrics::CloseReason;
use crate::reload::Live;
use crate::services::Service;
use crate::state::{handshakes, Counters, ShardState};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub(super) struct ShardTask<S> {
    pub(super) id: usize,
    pub(super) cpu: usize,
    /// This shard's socket of each listener.
    pub(super) listeners: Vec<ShardListener<S>>,
    pub(super) settings: ShardSettings,
    pub(super) stop: watch::Receiver<bool>,
}

/// A shard's socket of one listener, with what its connections get.
pub(super) struct ShardListener<S> {
    /// How logs name the listener.
    pub(super) name: String,
    pub(super) listener: std::net::TcpListener,
    pub(super) live: Arc<Live>,
    pub(super) service: Arc<S>,
}

impl<S: Service> ShardTask<S> {
    /// The shard thread: pin, build the ring, report, wait for go, serve.
    pub(super) fn run(
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

    /// Serves every listener (one accept loop each) until the stop, then
    /// drains the shard's connections.
    async fn serve(self, backend: &'static str) {
        let ShardTask {
            id,
            listeners,
            settings,
            stop,
            ..
        } = self;
        // Every socket registered before any accepts: if one cannot be,
        // the shard serves nothing (as with one listener).
        let mut registered = Vec::with_capacity(listeners.len());
        for l in listeners {
            let listen_fd = std::os::fd::AsRawFd::as_raw_fd(&l.listener);
            let listener = match Listener::from_std(l.listener) {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::error!(shard = id, listener = %l.name, error = %e, "cannot register the listening socket");
                    return;
                }
            };
            let Ok(local) = listener.local_addr() else {
                return;
            };
            registered.push((l.name, listener, listen_fd, local, l.live, l.service));
        }
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
        let epoch = Instant::now();
        // Each accept loop holds a sender; all dropped: every loop ended.
        let (loops_tx, mut loops_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        for (name, listener, listen_fd, local, live, service) in registered {
            let ctx = Rc::new(ConnCtx {
                // Per listener: its per-address tables follow its own caps.
                limits: Rc::new(ShardLimits::new(settings.global_conns.clone())),
                epoch,
                live,
                service,
                local,
                state: state.clone(),
            });
            let l = AcceptLoop {
                ctx,
                listener,
                listen_fd,
                name,
                stop: stop.clone(),
                _running: loops_tx.clone(),
            };
            io::spawn(l.run());
        }
        drop(loops_tx);
        while loops_rx.recv().await.is_some() {}
        state.start_drain();
        tracing::info!(
            shard = id,
            connections = state.active(),
            "listener closed; draining"
        );
        let grace = settings.grace;
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

/// One listener's accept loop on one shard.
struct AcceptLoop<S> {
    ctx: Rc<ConnCtx<S>>,
    listener: Listener,
    listen_fd: std::os::fd::RawFd,
    name: String,
    stop: watch::Receiver<bool>,
    /// Dropped when the loop ends (the shard waits for all).
    _running: tokio::sync::mpsc::UnboundedSender<()>,
}

impl<S: Service> AcceptLoop<S> {
    /// Accepts until the stop, then serves what is queued and closes the
    /// socket.
    async fn run(self) {
        let AcceptLoop {
            ctx,
            listener,
            listen_fd,
            name,
            mut stop,
            _running,
        } = self;
        let state = &ctx.state;
        let id = state.id;
        // Connections this loop took from the kernel (the listener's
        // share of the shard's `accepted`; `/metrics` reads it).
        let accepted = state.metrics.listener(&name, ctx.local);
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
                        accepted.set(accepted.get() + 1);
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
            accepted.set(accepted.get() + 1);
            ctx.clone().admit(conn, peer);
        }
        tracing::info!(
            shard = id,
            listener = %name,
            addr = %ctx.local,
            accepted = accepted.get(),
            "listener stopped"
        );
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

/// Accept failures for lack of fds closer together than this are one episode.
const FD_EPISODE_QUIET: Duration = Duration::from_secs(1);

fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

/// Everything a connection task needs, shared per shard.
pub(super) struct ConnCtx<S> {
    /// TLS config and limits, replaced on reload; read once per connection.
    pub(super) live: Arc<Live>,
    pub(super) service: Arc<S>,
    pub(super) local: SocketAddr,
    pub(super) state: Rc<ShardState>,
    /// Admission state (per-address tables) of this shard.
    pub(super) limits: Rc<ShardLimits>,
    /// Time origin for the rate limiter.
    pub(super) epoch: Instant,
}

/// Decrements the active count and gives back the connection's admission
/// slots when its task ends, even by panic.
pub(super) struct ActiveGuard {
    state: Rc<ShardState>,
    limits: Rc<ShardLimits>,
    /// `None` until a balancer's connection is admitted on its header's
    /// address (see [`ConnCtx::admit`]).
    pub(super) admitted: Option<Admitted>,
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

    /// Applies the shard's limits and spawns the connection's task. A
    /// connection from a load balancer (`accept_proxy`) is admitted later,
    /// by its task, on the client address its PROXY header names (see
    /// [`ConnCtx::admit_client`]); until then it holds a handshake slot and
    /// counts as active.
    fn admit(self: Rc<Self>, conn: Conn, peer: SocketAddr) {
        let st = &self.state;
        Counters::bump(&st.counters.accepted);
        // Limits in force now (a reload may have changed them).
        let live = self.live.load();
        let lim = &live.limits;
        let from_balancer = lim.admission.is_balancer(peer.ip());
        let admitted = if from_balancer {
            None
        } else {
            match self.admit_client(lim, peer, st.active()) {
                Ok(a) => Some(a),
                Err(why) => {
                    self.refuse(&conn, peer, why);
                    return;
                }
            }
        };
        drop(live);
        // TCP_NODELAY is inherited from the listening socket (set in
        // `listener::bind_one`): no setsockopt per connection.
        st.conn_opened();
        let guard = ActiveGuard {
            state: st.clone(),
            limits: self.limits.clone(),
            admitted,
            epoch: self.epoch,
        };
        // Counted from here, so that the accept loop sees it before its
        // next accept.
        let handshake = st.handshake_started();
        self.spawn_conn(conn, peer, handshake, guard, from_balancer);
    }

    /// The admission limits (lists, caps, per-address cap and rate) for a
    /// connection from `client` while the shard holds `active` others.
    pub(super) fn admit_client(
        &self,
        lim: &ShardSettings,
        client: SocketAddr,
        active: usize,
    ) -> Result<Admitted, crate::limits::Refusal> {
        let now = self.epoch.elapsed();
        self.limits
            .admit(&lim.admission, client.ip(), active, lim.max_conns, now)
    }

    /// Counts a refusal of `peer`'s connection and closes it.
    pub(super) fn refuse(&self, conn: &Conn, peer: SocketAddr, why: crate::limits::Refusal) {
        Counters::bump(&self.state.counters.refused);
        self.state.metrics.refused(why);
        tracing::debug!(%peer, limit = why.label(), "connection refused");
        conn.abort();
    }
}
