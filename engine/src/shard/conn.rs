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
use crate::services::{ConnInfo, Service};
use crate::state::{Counters, HandshakeSlot};
use crate::tls::ServerStream;
use std::net::SocketAddr;
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

impl<S: Service> ConnCtx<S> {
    /// Serves one accepted connection from `peer`. `balancer`: it comes
    /// from an `accept_proxy` network, is not admitted yet, and must start
    /// with a PROXY header (its admission goes into the guard).
    pub(super) async fn serve_conn(
        &self,
        conn: Conn,
        peer: SocketAddr,
        handshake: HandshakeSlot,
        balancer: Option<&mut ActiveGuard>,
    ) {
        let started = Instant::now();
        let cur = self.live.load_full();
        let mut from_balancer = None;
        if let Some(guard) = balancer {
            // Boxed: only a balancer's connections pay for this state.
            let prelude =
                self.balancer_prelude(&conn, peer, (started, &cur.limits), &handshake, guard);
            let prelude = Box::pin(prelude);
            match prelude.await {
                Some(b) => from_balancer = Some(b),
                None => return,
            }
        }
        let peer = from_balancer.as_ref().map_or(peer, |b| b.peer);
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
                (peer, started),
                from_balancer.as_deref_mut(),
                &mut hs_error,
                handshake,
            )
            .await;
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
        if cur.limits.access_log {
            ConnRecord::of(stream.tls())
                .with_handshake_error(hs_error.as_ref())
                .emit(peer, why, bytes, started.elapsed());
        }
    }

    /// Handshake, then the service; returns why the connection ends (and
    /// leaves a handshake's error in `hs_error`, for the access log).
    /// `(peer, started)`: the client (as a balancer's header named it) and
    /// when the connection was taken up; its handshake (PROXY header
    /// included) must be done within the handshake timeout of that.
    /// `balancer`: what a PROXY header brought (the bytes read past it are
    /// the TLS session's first input).
    async fn drive(
        &self,
        stream: &mut ServerStream,
        limits: &ShardSettings,
        (peer, started): (SocketAddr, Instant),
        balancer: Option<&mut FromBalancer>,
        hs_error: &mut Option<std::io::Error>,
        handshake: HandshakeSlot,
    ) -> CloseReason {
        let mut balancer = balancer;
        let deadline = started + limits.handshake_timeout;
        stream.set_write_timeout(Some(limits.write_timeout));
        stream.hold_last_flight(Some(LAST_FLIGHT_HOLD));
        let c = &self.state.counters;
        // Boxed: the handshake's state is needed once, and should not be
        // part of the task an idle connection keeps.
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
                return CloseReason::HandshakeTimeout;
            }
        };
        drop(handshake);
        if let Some(b) = balancer.as_deref_mut() {
            b.early = Vec::new();
        }
        match done {
            Err(_) => {
                Counters::bump(&c.handshake_timeouts);
                tracing::debug!(%peer, "handshake timeout");
                return CloseReason::HandshakeTimeout;
            }
            Ok(Err(e)) if stream.peer_spoke_plain_http() || stream.peer_sent_proxy_header() => {
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
            local: balancer.map_or(self.local, |b| b.local),
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
