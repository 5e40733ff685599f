//! A connection's pipeline, top to bottom: the PROXY header of a load
//! balancer in front (`accept_proxy` only) and admission on the client
//! address it names, a TLS session over the accepted socket, the handshake
//! (header and handshake bounded together by the handshake timeout and the
//! shard's handshake budget), then the service, then the close and its
//! accounting (metrics, access log).

use super::accept::{ActiveGuard, ConnCtx};
use super::proxy_in::{self, HeaderError, Origin};
use super::ShardSettings;
use crate::io::Conn;
use crate::limits::Refusal;
use crate::metrics::{access::ConnRecord, CloseReason};
use crate::reload::Current;
use crate::services::{ConnInfo, Service};
use crate::state::{Counters, HandshakeSlot};
use crate::tls::ServerStream;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a server's TLS 1.3 session tickets wait after the handshake for
/// the client's first request, to leave in one segment with the response
/// (clients send the request right after their Finished; one that waits
/// for the server gets its tickets after this).
const LAST_FLIGHT_HOLD: Duration = Duration::from_millis(10);

/// What a load balancer's PROXY header brought (`accept_proxy` only):
/// the addresses it names, and the bytes read past it (the TLS session's
/// first input). Boxed, so that a connection without a balancer keeps one
/// pointer for it in its task, not the addresses and a buffer.
struct FromBalancer {
    peer: SocketAddr,
    local: SocketAddr,
    early: Vec<u8>,
}

/// What a connection's task keeps from its start to its end.
struct Task {
    stream: ServerStream,
    /// Who connected (a balancer, when `from_balancer`).
    peer: SocketAddr,
    /// When the connection was taken up: its handshake (PROXY header
    /// included) must be done within the handshake timeout of that.
    started: Instant,
    /// Settings in force when it was accepted.
    cur: Arc<Current>,
    handshake: HandshakeSlot,
    /// Gives back the active count and admission slots when dropped (the
    /// task's end, panic included).
    guard: ActiveGuard,
    from_balancer: bool,
}

impl<S: Service> ConnCtx<S> {
    /// Takes up one accepted connection from `peer`: its TLS session is
    /// made here, then its task is spawned. `from_balancer`: it comes from
    /// an `accept_proxy` network, is not admitted yet, and must start with
    /// a PROXY header (its admission goes into `guard`).
    pub(super) fn spawn_conn(
        self: Rc<Self>,
        conn: Conn,
        peer: SocketAddr,
        handshake: HandshakeSlot,
        guard: ActiveGuard,
        from_balancer: bool,
    ) {
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
        let stream = ServerStream::new(conn, tls);
        crate::io::spawn(self.serve_conn(Task {
            stream,
            peer,
            started,
            cur,
            handshake,
            guard,
            from_balancer,
        }));
    }

    /// Serves one connection. What the task keeps for its whole life is
    /// `t`, taken by value into the future and used in place (an `async
    /// fn` would keep each argument twice: as it came and as a local), so
    /// that an idle keep-alive connection holds little besides its stream.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    fn serve_conn(self: Rc<Self>, mut t: Task) -> impl std::future::Future<Output = ()> {
        async move {
            let mut from_balancer = None;
            if t.from_balancer {
                // Boxed: only a balancer's connections pay for this state.
                let prelude = self.balancer_prelude(
                    t.stream.conn(),
                    t.peer,
                    (t.started, &t.cur.limits),
                    &t.handshake,
                    &mut t.guard,
                );
                match Box::pin(prelude).await {
                    Some(b) => from_balancer = Some(b),
                    None => return,
                }
            }
            let peer = from_balancer.as_ref().map_or(t.peer, |b| b.peer);
            let stream = &mut t.stream;
            let mut hs_error = None;
            // Boxed: the handshake's state is needed once, and should not be
            // part of the task an idle connection keeps.
            let shake = self.handshake(
                stream,
                &t.cur.limits,
                (peer, t.started),
                from_balancer.as_deref_mut(),
                &mut hs_error,
                t.handshake,
            );
            let why = match Box::pin(shake).await {
                Err(why) => why,
                Ok(()) => {
                    let local = from_balancer.as_ref().map_or(self.local, |b| b.local);
                    self.after_handshake(stream, &t.cur.limits, (peer, local), t.started)
                        .await
                }
            };
            if why == CloseReason::HandshakeFailed && stream.peer_spoke_plain_http() {
                // Not a TLS client at all: refused (it got its 400), like the
                // refusals at accept, and not counted among the closes.
                Counters::bump(&self.state.counters.refused);
                self.state.metrics.refused(Refusal::PlainHttp);
                tracing::debug!(%peer, "plain HTTP on the TLS port: answered 400 and closed");
                return;
            }
            if why == CloseReason::HandshakeFailed && stream.peer_sent_proxy_header() {
                // A balancer whose address is not in `accept_proxy`.
                Counters::bump(&self.state.counters.refused);
                self.state.metrics.refused(Refusal::ProxyHeader);
                tracing::debug!(%peer, "PROXY header from an address not in accept_proxy: closed");
                return;
            }
            let bytes = stream.byte_counts();
            self.state.metrics.closed(why, bytes);
            if t.cur.limits.access_log {
                ConnRecord::of(stream.tls())
                    .with_handshake_error(hs_error.as_ref())
                    .emit(peer, why, bytes, t.started.elapsed());
            }
        }
    }

    /// The handshake (with what a balancer's header brought first), within
    /// the handshake timeout of `started` and the shard's budget; `Err`:
    /// why the connection ends (counted here, but for the refusals the
    /// caller counts).
    async fn handshake(
        &self,
        stream: &mut ServerStream,
        limits: &ShardSettings,
        (peer, started): (SocketAddr, Instant),
        balancer: Option<&mut FromBalancer>,
        hs_error: &mut Option<std::io::Error>,
        handshake: HandshakeSlot,
    ) -> Result<(), CloseReason> {
        let mut balancer = balancer;
        let deadline = started + limits.handshake_timeout;
        stream.set_write_timeout(Some(limits.write_timeout));
        stream.hold_last_flight(Some(LAST_FLIGHT_HOLD));
        let c = &self.state.counters;
        // The early bytes move into the boxed future: dropped with it.
        let s = &mut *stream;
        // Only references cross into it: nothing of a balancer's is kept in
        // this task's own state.
        let early = balancer.as_deref_mut().map(|b| &mut b.early);
        let hf = Box::pin(crate::io::time::timeout_at(deadline, async move {
            if let Some(early) = early.filter(|e| !e.is_empty()) {
                s.ingest_early(early).await?;
            }
            s.handshake_lazy().await
        }));
        let done = tokio::select! {
            done = hf => done,
            _ = handshake.evicted() => {
                // A handshake timeout, shortened because the budget is full
                // (also counted in `handshake_evictions`).
                Counters::bump(&c.handshake_timeouts);
                tracing::debug!(%peer, "handshake cut off to make room (max_handshakes)");
                return Err(CloseReason::HandshakeTimeout);
            }
        };
        drop(handshake);
        if let Some(b) = balancer {
            b.early = Vec::new();
        }
        match done {
            Err(_) => {
                Counters::bump(&c.handshake_timeouts);
                tracing::debug!(%peer, "handshake timeout");
                Err(CloseReason::HandshakeTimeout)
            }
            Ok(Err(e)) if stream.peer_spoke_plain_http() || stream.peer_sent_proxy_header() => {
                // Counted as refused by the caller.
                *hs_error = Some(e);
                Err(CloseReason::HandshakeFailed)
            }
            Ok(Err(e)) => {
                Counters::bump(&c.failed_handshakes);
                self.state.metrics.handshake_failed(&e);
                tracing::debug!(%peer, error = %e, "handshake failed");
                *hs_error = Some(e);
                Err(CloseReason::HandshakeFailed)
            }
            Ok(Ok(())) => Ok(()),
        }
    }

    /// After a completed handshake: the service, then the close; returns
    /// why the connection ends. `(peer, local)`: the client and the address
    /// it connected to (as a balancer's header named them).
    #[allow(clippy::manual_async_fn)] // on purpose: see below
    fn after_handshake<'a>(
        &'a self,
        stream: &'a mut ServerStream,
        limits: &'a ShardSettings,
        (peer, local): (SocketAddr, SocketAddr),
        started: Instant,
    ) -> impl std::future::Future<Output = CloseReason> + 'a {
        // A plain function around an `async move` block that uses what it
        // captured in place: an `async fn` keeps its arguments twice, and
        // this future is part of every idle connection's task.
        async move {
            let c = &self.state.counters;
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
                local,
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
}

impl<S: Service> ConnCtx<S> {
    /// A balancer's connection: reads its PROXY header (within the
    /// handshake timeout from `started`) and admits it on the client address
    /// the header names (into `guard`). `None`: the connection ended here,
    /// counted.
    async fn balancer_prelude(
        &self,
        conn: &Conn,
        balancer: SocketAddr,
        (started, limits): (Instant, &ShardSettings),
        handshake: &HandshakeSlot,
        guard: &mut ActiveGuard,
    ) -> Option<Box<FromBalancer>> {
        let deadline = started + limits.handshake_timeout;
        let received = self
            .balancer_header(conn, balancer, deadline, handshake)
            .await?;
        let (peer, local) = match received.origin {
            Origin::Client { peer, local } => (peer, local),
            _ => (balancer, self.local),
        };
        // Everything the limits key on is the client's now.
        match self.admit_client(limits, peer, self.state.active().saturating_sub(1)) {
            Ok(a) => guard.admitted = Some(a),
            Err(why) => {
                self.refuse(conn, peer, why);
                return None;
            }
        }
        Some(Box::new(FromBalancer {
            peer,
            local,
            early: received.rest,
        }))
    }
}

impl<S: Service> ConnCtx<S> {
    /// Reads the PROXY header of a connection from the balancer at
    /// `balancer`, within the handshake `deadline` and budget (a silent
    /// connection holds its slot no longer than a slow handshake would).
    /// `None`: the connection ended here, counted: a missing or invalid
    /// header is a refusal (`proxy_header`), a timeout a handshake
    /// timeout, a close before any byte (a balancer's TCP check) a close.
    async fn balancer_header(
        &self,
        conn: &Conn,
        balancer: SocketAddr,
        deadline: Instant,
        handshake: &HandshakeSlot,
    ) -> Option<proxy_in::Received> {
        let c = &self.state.counters;
        let read = Box::pin(crate::io::time::timeout_at(deadline, proxy_in::read(conn)));
        let res = tokio::select! {
            res = read => res,
            _ = handshake.evicted() => Err(crate::io::time::Elapsed),
        };
        let e = match res {
            Ok(Ok(received)) => return Some(received),
            Ok(Err(e)) => e,
            Err(_) => {
                Counters::bump(&c.handshake_timeouts);
                tracing::debug!(peer = %balancer, "no PROXY header within the handshake timeout");
                conn.abort();
                self.state
                    .metrics
                    .closed(CloseReason::HandshakeTimeout, (0, 0));
                return None;
            }
        };
        match e {
            HeaderError::Closed => {
                conn.abort();
                self.state.metrics.closed(CloseReason::Eof, (0, 0));
            }
            e => {
                tracing::debug!(peer = %balancer, error = %e, "connection from accept_proxy without a valid PROXY header");
                self.refuse(conn, balancer, Refusal::ProxyHeader);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::http::Http;

    /// The size of the value `f` returns, from its type alone.
    fn size_of_output<F, A, B, R>(_: F) -> usize
    where
        F: FnOnce(A, B) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// Every connection's task is this future, an idle keep-alive one
    /// included: besides the TLS stream (1,432 bytes) it should keep little
    /// (2,464 bytes when the arguments of `serve_conn` and its inner `async
    /// fn`s were each kept twice, 1,968 since). The bound leaves room for
    /// compiler changes; a failure means every idle connection grew.
    #[test]
    fn a_connection_task_keeps_little_besides_its_stream() {
        let task = size_of_output(ConnCtx::<Http>::serve_conn);
        let stream = std::mem::size_of::<ServerStream>();
        eprintln!("connection task {task} bytes, of which the stream {stream}");
        assert!(
            task <= stream + 640,
            "the connection task is {task} bytes, its stream {stream}: an idle connection keeps it"
        );
    }
}
