//! [`TlsStream`]: a rustls connection driven over an io_uring [`Conn`].
//!
//! A connection holds buffers only while it uses them: received ciphertext
//! sits in a `Chunk` (on the uring backend a buffer of the shard's pool,
//! picked by the kernel when data arrives) until rustls has taken it, and
//! records go out through a write buffer borrowed from the thread's pool for
//! the duration of one write. All protocol work is in [`super::session`];
//! this file only moves bytes in and out of the kernel, with deadlines.

use super::session::{ServerConn, Session, TlsConn};
use crate::io::{self as uio, time, Conn};
use rustls::client::UnbufferedClientConnection;
use std::io;
use std::time::Duration;

/// The payload of the `io::Error` a write returns when the peer did not
/// read within the write timeout (see [`TlsStream::set_write_timeout`]):
/// callers classify the ending by this type (`get_ref()` and
/// `downcast_ref`), not by the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteTimedOut;

impl std::fmt::Display for WriteTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("write timeout: peer is not reading")
    }
}

impl std::error::Error for WriteTimedOut {}

/// Read buffer capacity: one maximal TLS record (16 KiB + header + tag).
pub const READ_BUF: usize = 16 * 1024 + 512;

/// Initial read buffer capacity. A connection starts small (an idle
/// connection's pending read holds this buffer) and grows to [`READ_BUF`]
/// the first time a read fills it (bulk traffic).
pub const READ_BUF_INITIAL: usize = 4096;

/// Default limit of ciphertext queued inside rustls before a flush (bytes).
pub const DEFAULT_SEND_LIMIT: usize = 256 * 1024;

/// The server side of a TLS connection.
pub type ServerStream = TlsStream<ServerConn>;
/// The client side of a TLS connection (used by bench-client and tests).
pub type ClientStream = TlsStream<UnbufferedClientConnection>;

/// A TLS connection over an io_uring socket.
pub struct TlsStream<C: TlsConn> {
    pub(super) conn: Conn,
    pub(super) tls: Session<C>,
    /// A heap receive buffer kept between reads (tokio-uring backend only;
    /// the uring backend's pool makes it unnecessary).
    pub(super) rspare: Option<Vec<u8>>,
    pub(super) read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// The timers of those deadlines, kept for the connection's life (one
    /// timer each instead of one per read or write: see [`time::Deadline`]).
    read_timer: time::Deadline,
    write_timer: time::Deadline,
    pub(super) eof: bool,
    /// Records went out since the last read: the next read waits for the
    /// peer's answer (see [`Conn::recv_hinted`]).
    answer_due: bool,
    /// How long the handshake's last flight may wait for the first
    /// response (see [`hold_last_flight`](Self::hold_last_flight)).
    flight_hold: Option<Duration>,
    /// The handshake's last flight is queued and may still wait.
    holding: bool,
    /// Ciphertext bytes read from / written to the socket.
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<C: TlsConn> TlsStream<C> {
    /// Wraps a connected socket and a fresh rustls connection.
    pub fn new(conn: Conn, tls: C) -> Self {
        let mut tls = Session::new(tls);
        tls.set_send_limit(DEFAULT_SEND_LIMIT);
        TlsStream {
            conn,
            tls,
            rspare: None,
            read_timeout: None,
            write_timeout: None,
            read_timer: time::Deadline::new(),
            write_timer: time::Deadline::new(),
            eof: false,
            answer_due: false,
            flight_hold: None,
            holding: false,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Deadline for each socket read (an idle peer is cut off after it).
    pub fn set_read_timeout(&mut self, t: Option<Duration>) {
        self.read_timeout = t;
    }

    /// The read deadline in force.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// Deadline for each socket write (a peer that does not read is cut off).
    pub fn set_write_timeout(&mut self, t: Option<Duration>) {
        self.write_timeout = t;
    }

    /// The rustls connection (protocol version, SNI, ALPN, handshake kind...).
    pub fn tls(&self) -> &C {
        self.tls.conn()
    }

    /// Mutable access to the rustls connection.
    pub fn tls_mut(&mut self) -> &mut C {
        self.tls.conn_mut()
    }

    /// The socket.
    pub fn conn(&self) -> &Conn {
        &self.conn
    }

    /// Whether the peer sent plain HTTP instead of a ClientHello (the
    /// handshake failed; an HTTP `400` saying this is a TLS port was sent in
    /// place of an alert). For the caller's accounting: such a connection
    /// is a refusal, not a TLS error.
    pub fn peer_spoke_plain_http(&self) -> bool {
        self.tls.peer_spoke_plain_http()
    }

    /// Whether the peer sent a PROXY protocol header instead of a
    /// ClientHello (the handshake failed; nothing was answered). For the
    /// caller's accounting, as [`peer_spoke_plain_http`](Self::peer_spoke_plain_http).
    pub fn peer_sent_proxy_header(&self) -> bool {
        self.tls.peer_sent_proxy_header()
    }

    /// Feeds ciphertext the caller already read from this socket (what
    /// followed a PROXY protocol header in the same read) to the session,
    /// as if the first read had returned it. Call before the handshake.
    /// A protocol error fails as a read's would (the alert is sent).
    pub async fn ingest_early(&mut self, data: &mut [u8]) -> io::Result<()> {
        self.bytes_in += data.len() as u64;
        if let Err(e) = self.tls.ingest(data) {
            // Boxed, as in `fill_until`: a rare path.
            let _ = Box::pin(self.flush()).await;
            return Err(tls_error(e));
        }
        Ok(())
    }

    /// Ciphertext bytes (in, out) moved over the socket so far.
    pub fn byte_counts(&self) -> (u64, u64) {
        (self.bytes_in, self.bytes_out)
    }

    /// Lets the handshake's last flight, when it is a server's TLS 1.3
    /// session tickets (see [`Session::queued_flight_may_wait`]), wait up
    /// to `hold` for the first response, so that both
    /// leave in one write and one segment, instead of the tickets going
    /// out alone while the client's request is on its way. If nothing
    /// arrives within `hold` the flight goes out alone, the read staying
    /// in flight. For the server side only: a client's last flight is its
    /// Finished, which the server waits for.
    pub fn hold_last_flight(&mut self, hold: Option<Duration>) {
        self.flight_hold = hold;
    }

    /// Drives the handshake to completion (and flushes its last flight).
    pub async fn handshake(&mut self) -> io::Result<()> {
        self.handshake_lazy().await?;
        self.flush().await
    }

    /// Drives the handshake to completion but leaves its last flight (e.g.
    /// the server's TLS 1.3 session tickets) queued: it goes out with the
    /// next write, or before the next read blocks, saving one write per
    /// connection. Every path that waits on the peer flushes first, so this
    /// cannot deadlock.
    pub async fn handshake_lazy(&mut self) -> io::Result<()> {
        // A client speaks first: let rustls produce its hello.
        if self.tls.is_handshaking() {
            self.tls.ingest(&mut []).map_err(tls_error)?;
        }
        while self.tls.is_handshaking() {
            self.flush().await?;
            if !self.tls.is_handshaking() {
                break;
            }
            if !self.fill().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed during the handshake",
                ));
            }
        }
        self.holding = self.flight_hold.is_some() && self.tls.queued_flight_may_wait();
        Ok(())
    }

    /// Whether input is waiting anywhere: decrypted in rustls, read from the
    /// socket but not yet decrypted, or received by the kernel and unread.
    pub fn has_pending_input(&mut self) -> bool {
        self.tls.holds_input()
            || self.tls.plaintext_pending() > 0
            || self.conn.started_recv_done()
            || self.conn.unread_bytes() > 0
    }

    /// Reads decrypted bytes into `buf`. `Ok(0)`: the peer ended cleanly
    /// (`close_notify`); `UnexpectedEof`: it closed without one.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One deadline for the whole call: a peer trickling a record a byte
        // at a time cannot stretch the read timeout.
        let deadline = self.read_timeout.map(|t| time::now() + t);
        loop {
            if let Some(n) = self.tls.read_plaintext(buf)? {
                return Ok(n);
            }
            // Records we owe the peer (alerts, key updates) go out first,
            // unless they are held tickets and the request came (boxed:
            // the hold is once per connection, and should not grow the
            // state of every read).
            if !(self.holding && Box::pin(self.held_flight_waits()).await) {
                self.flush_owed().await?;
            }
            self.fill_until(deadline).await?;
        }
    }

    /// Reads decrypted bytes onto the end of `out`, at most `max` of them
    /// (`out` grows only by what arrived: a connection waiting here holds
    /// no buffer of its own). Same outcomes as [`read`](Self::read).
    pub async fn read_append(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        let deadline = self.read_timeout.map(|t| time::now() + t);
        let limit = out.len().saturating_add(max.max(1));
        loop {
            if let Some(n) = self.tls.append_plaintext(out, limit)? {
                return Ok(n);
            }
            // Owed records first, unless held (see `read`).
            if !(self.holding && Box::pin(self.held_flight_waits()).await) {
                self.flush_owed().await?;
            }
            self.fill_until(deadline).await?;
        }
    }

    /// Queues `data` for sending, flushing whenever the send limit is hit.
    /// Call [`flush`](Self::flush) to push the tail out.
    pub async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.tls.is_handshaking() {
            // Boxed: once per connection at most, not in every write's state.
            Box::pin(self.handshake_lazy()).await?;
        }
        while !data.is_empty() {
            let n = self.tls.write_plaintext(data)?;
            data = &data[n..];
            if n == 0 || !data.is_empty() {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// Whether records wait to be written (see [`flush`](Self::flush)).
    pub fn has_pending_output(&self) -> bool {
        self.tls.wants_write()
    }

    /// [`flush`](Self::flush) where records are owed, boxed: the read path
    /// owes records rarely (tickets, alerts, key updates), and a read's
    /// state, which a connection waiting for its next request keeps, should
    /// not hold room for a write's.
    async fn flush_owed(&mut self) -> io::Result<()> {
        if self.tls.wants_write() {
            Box::pin(self.flush()).await
        } else {
            self.holding = false;
            Ok(())
        }
    }

    /// Writes every queued record to the socket.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.flush_then(false).await
    }

    /// [`flush`](Self::flush); with `fin`, the last write is one that a FIN
    /// follows at once (see [`Conn::write_all_before_fin`]).
    async fn flush_then(&mut self, fin: bool) -> io::Result<()> {
        self.holding = false;
        while self.tls.wants_write() {
            let out = self.tls.take_out();
            let len = out.len() as u64;
            let last = fin && !self.tls.wants_write();
            let fut = self.conn.write_all_fin_next(out, last);
            let (res, out) = match self.write_timeout {
                Some(t) => self
                    .write_timer
                    .within(time::now() + t, fut)
                    .await
                    .map_err(|_| {
                        // Classified by its payload, not its message.
                        io::Error::new(io::ErrorKind::TimedOut, WriteTimedOut)
                    })?,
                None => fut.await,
            };
            uio::give_write_buf(out);
            res?;
            self.bytes_out += len;
            self.answer_due = true;
        }
        Ok(())
    }

    /// Sends `close_notify`, flushes, and half-closes the socket.
    pub async fn close(&mut self) -> io::Result<()> {
        self.tls.send_close_notify();
        // The last records and the FIN leave in one segment.
        let res = self.flush_then(true).await;
        self.conn.shutdown_write();
        res
    }

    /// Reads more ciphertext and feeds it to rustls. Returns `false` at EOF.
    async fn fill(&mut self) -> io::Result<bool> {
        let deadline = self.read_timeout.map(|t| time::now() + t);
        self.fill_until(deadline).await
    }

    /// Whether the records queued are a held last flight whose wait for
    /// the first request (see [`hold_last_flight`](Self::hold_last_flight))
    /// ended with data: then they stay queued for the answer. Otherwise
    /// the caller flushes them before reading.
    async fn held_flight_waits(&mut self) -> bool {
        let Some(hold) = self.flight_hold else {
            return false;
        };
        if !(std::mem::take(&mut self.holding)
            && self.tls.queued_flight_may_wait()
            && !self.eof
            && self.conn.start_recv())
        {
            return false;
        }
        // The receive is in flight: the wait for it is given up after
        // `hold` without losing it, and the next read takes it. (Racing a
        // receive future of our own against the timer would keep both in
        // the read's state for as long as an idle client waits.)
        time::timeout(hold, self.conn.recv_started()).await.is_ok()
    }

    /// [`fill`](Self::fill) with the socket read bounded by `deadline`.
    async fn fill_until(&mut self, deadline: Option<time::Instant>) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let spare = self.rspare.take();
        let answer = std::mem::take(&mut self.answer_due);
        // The receive is built inside each arm, not bound to a local first:
        // a moved-from local keeps its room in the future's state, which an
        // idle connection holds for as long as it waits here.
        let mut chunk = match deadline {
            Some(d) => self
                .read_timer
                .within(
                    d,
                    self.conn
                        .recv_hinted(spare, READ_BUF_INITIAL, READ_BUF, answer),
                )
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timeout"))??,
            None => {
                self.conn
                    .recv_hinted(spare, READ_BUF_INITIAL, READ_BUF, answer)
                    .await?
            }
        };
        self.bytes_in += chunk.len() as u64;
        if chunk.is_empty() {
            self.eof = true;
            self.rspare = chunk.recycle();
            self.tls.ingest_eof().map_err(tls_error)?;
            return Ok(false);
        }
        // Records are decrypted where they arrived; the buffer goes back
        // now (a record's unfinished tail is kept by the session).
        let res = self.tls.ingest(&mut chunk);
        self.rspare = chunk.recycle();
        match res {
            Ok(_) => Ok(true),
            Err(e) => {
                // Send the alert rustls queued, best effort, then fail
                // (boxed: a rare path should not grow every read's future).
                let _ = Box::pin(self.flush()).await;
                Err(tls_error(e))
            }
        }
    }
}

impl<C: TlsConn> Drop for TlsStream<C> {
    fn drop(&mut self) {
        // Releases any read still pending in the ring (see `io` module docs).
        self.conn.abort();
    }
}
