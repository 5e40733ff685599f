//! Services: what the engine does with a decrypted stream.
//!
//! A [`Service`] gets a [`ServerStream`] after the handshake and owns the
//! conversation until it returns. The engine closes the connection
//! afterwards (with `close_notify` if the service did not).
//!
//! Built-in: [`echo::Echo`], [`http::Http`] and [`proxy::Proxy`]. Users
//! implement the trait for their own protocol; see
//! `engine/examples/launcelot.rs`.

pub mod echo;
pub mod http;
pub mod proxy;

#[cfg(test)]
mod keep_alive_costs;

use crate::state::ShardState;
use crate::tls::ServerStream;
use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;

/// A protocol served over decrypted TLS streams. One instance is shared by
/// all shards (hence `Send + Sync`); each connection's future runs on its
/// shard's thread and need not be `Send`.
///
/// # The runtime contract
///
/// [`serve`](Service::serve) runs as a task on its shard's runtime (from
/// `uringtls-runtime`: our io_uring executor by default, tokio-uring, or
/// tokio's epoll reactor where io_uring is unavailable). It is not a
/// general tokio runtime, so:
///
/// - **Timers**: use [`crate::io::time`] (`sleep`, `timeout`, `Deadline`),
///   which work on every backend. `tokio::time` panics on the default
///   executor (there is no tokio time driver).
/// - **Tasks**: spawn with [`crate::io::spawn`] (a `!Send` future on the
///   same shard). `tokio::spawn` and `tokio::task::spawn_local` panic on
///   the default executor.
/// - **Sync and select**: tokio's `sync` primitives (`mpsc`, `watch`,
///   `Notify`, `Mutex`...) and `tokio::select!` / `tokio::join!` work on
///   every backend; their wakers may come from other threads.
/// - **No blocking**: a shard thread serves thousands of connections; a
///   blocking call (file or DNS I/O, `std::thread::sleep`, a blocking
///   lock, a long computation) stalls all of them. Hand such work to a
///   thread of your own and await its answer over a tokio channel.
/// - **Sockets**: open other connections (an upstream) with
///   [`crate::io::Conn::connect`], not `tokio::net`.
/// - A panic in `serve` ends that connection only (counted as `panic`).
///
/// A service can be tested without io_uring and without an engine: see
/// [`crate::testing`].
#[allow(async_fn_in_trait)] // futures run on a single-threaded shard; no Send bound wanted
pub trait Service: Send + Sync + 'static {
    /// Serves one connection. Returning `Ok` ends it cleanly; an error is
    /// logged at debug level and the connection is closed. The close reason
    /// counted (`uringtls_connections_closed_total`) comes from the error:
    /// the [`CloseReason`](crate::metrics::CloseReason) it carries if any,
    /// else `TimedOut` is the idle timeout, `UnexpectedEof` (what a read
    /// returns when the client closed without `close_notify`; pass it on
    /// where a close is normal, wrap it as `CloseReason::Error` where it
    /// cuts something off) is `eof`, anything else `error`.
    async fn serve(&self, stream: &mut ServerStream, conn: &ConnInfo) -> io::Result<()>;
}

/// What a service may know about its connection.
pub struct ConnInfo {
    /// Client address (from a load balancer in `accept_proxy`: the one
    /// its PROXY header names).
    pub peer: SocketAddr,
    /// Local (listening) address (from a load balancer in `accept_proxy`:
    /// the address its PROXY header says the client connected to).
    pub local: SocketAddr,
    /// The client's verified certificate (mTLS), if it sent one.
    pub peer_identity: Option<crate::tls::PeerIdentity>,
    pub(crate) shard: Rc<ShardState>,
    /// This connection's registration for the drain's wake-up (see
    /// [`ShardState::poll_drain`]).
    pub(crate) drain_slot: Cell<Option<usize>>,
}

impl Drop for ConnInfo {
    fn drop(&mut self) {
        self.shard.leave_drain(&self.drain_slot);
    }
}

impl ConnInfo {
    /// Information about a connection from `peer` accepted on `local`, on
    /// a detached shard of its own (shard 0, never draining unless
    /// [`crate::testing::start_drain`] says so; counts go nowhere). For
    /// tests of a service: the engine builds its own.
    pub fn new(peer: SocketAddr, local: SocketAddr) -> ConnInfo {
        ConnInfo {
            peer,
            local,
            peer_identity: None,
            shard: Rc::new(ShardState::new(0)),
            drain_slot: Cell::new(None),
        }
    }

    /// Index of the shard this connection lives on.
    pub fn shard_id(&self) -> usize {
        self.shard.id
    }

    /// Counts a backend error of `kind` (e.g. `connect`, `reset`, `timeout`)
    /// in `uringtls_upstream_errors_total`. Keep kinds few and static.
    pub fn count_upstream_error(&self, kind: &'static str) {
        self.shard.metrics.upstream_error(kind);
    }

    /// True once the server is shutting down: finish the current exchange
    /// and close instead of waiting for more.
    pub fn draining(&self) -> bool {
        self.shard.is_draining()
    }

    /// Completes when the server starts draining (at once if it already has).
    pub async fn drained(&self) {
        self.shard.drained().await
    }

    /// Reads from `stream`, but gives `Ok(None)` if draining starts first.
    /// Use it where a connection waits idle for its next request. A read
    /// interrupted this way leaves the stream unusable except for closing.
    pub async fn read_unless_draining(
        &self,
        stream: &mut ServerStream,
        buf: &mut [u8],
    ) -> io::Result<Option<usize>> {
        self.unless_draining(stream, Into::Slice(buf)).await
    }

    /// [`read_unless_draining`](Self::read_unless_draining), appending at
    /// most `max` bytes to `out` (which grows only by what arrives, so an
    /// idle connection waiting here need hold no buffer).
    pub async fn read_append_unless_draining(
        &self,
        stream: &mut ServerStream,
        out: &mut Vec<u8>,
        max: usize,
    ) -> io::Result<Option<usize>> {
        self.unless_draining(stream, Into::Vec(out, max)).await
    }

    async fn unless_draining(
        &self,
        stream: &mut ServerStream,
        mut into: Into<'_>,
    ) -> io::Result<Option<usize>> {
        // Owed records (e.g. session tickets) go out now, so that below the
        // read future does nothing but wait for input.
        // Boxed, and only when records are owed: this wait is where an idle
        // keep-alive connection spends its life, and its state should not
        // hold room for a write's.
        if stream.has_pending_output() {
            Box::pin(stream.flush()).await?;
        }
        if self.draining() {
            // A request that already reached us is served, not dropped.
            if !stream.has_pending_input() {
                return Ok(None);
            }
            return into.read(stream).await.map(Some);
        }
        // The read first; then the drain, through a registration this
        // connection keeps between requests (no waiter per wait). A read
        // that completed as the drain began is not lost (`io::unless`).
        match crate::io::unless(into.read(stream), |cx| {
            self.shard.poll_drain(&self.drain_slot, cx)
        })
        .await
        {
            Ok(r) => r.map(Some),
            Err(()) => Ok(None),
        }
    }
}

/// Where a read puts its bytes.
enum Into<'a> {
    Slice(&'a mut [u8]),
    Vec(&'a mut Vec<u8>, usize),
}

impl Into<'_> {
    async fn read(&mut self, stream: &mut ServerStream) -> io::Result<usize> {
        match self {
            Into::Slice(buf) => stream.read(buf).await,
            Into::Vec(out, max) => stream.read_append(out, *max).await,
        }
    }
}
