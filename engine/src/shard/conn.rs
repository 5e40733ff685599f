//! A connection's pipeline, top to bottom: a TLS session over the
//! accepted socket, the handshake (bounded by the handshake timeout and the
//! shard's handshake budget), then the service, then the close and its
//! accounting (metrics, access log).

use super::accept::ConnCtx;
use super::ShardSettings;
use crate::io::Conn;
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

impl<S: Service> ConnCtx<S> {
    pub(super) async fn serve_conn(&self, conn: Conn, peer: SocketAddr, handshake: HandshakeSlot) {
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
