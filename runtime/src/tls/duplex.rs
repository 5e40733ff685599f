//! Full duplex: a TLS stream and a plain socket pumped both ways at once,
//! from one task (the proxy's data path; see `docs/design/proxy.md`).
//!
//! Up to four io_uring operations are in flight: a read and a write on each
//! socket. Each owns its buffer and borrows only its socket, and stays
//! boxed across loop turns, so `select!` never cancels one (a cancelled
//! io_uring read would lose its buffer and the bytes in it). The rustls
//! connection is touched only between awaits, synchronously.
//!
//! ```text
//!   client ──cr──▶ rustls ──(plaintext)──uw──▶ upstream
//!   client ◀──cw── rustls ◀──(plaintext)──ur── upstream
//! ```
//!
//! Backpressure: a direction reads again only when what it read last has
//! been passed on. Client ciphertext is decrypted as soon as it arrives;
//! the client is read again only while at most [`PLAIN_BUF`] of decrypted
//! bytes wait for the upstream. Upstream bytes that the session cannot take
//! (its send limit is reached) wait in their buffer. Memory per connection
//! is bounded by the four buffers plus the session's limits.
//!
//! Half-close: the client's `close_notify` (or a FIN without one) becomes a
//! FIN to the upstream once every byte before it was written; the upstream's
//! FIN becomes a `close_notify` plus FIN to the client after every byte
//! before it. The splice ends when both directions have ended.

use super::session::TlsConn;
use super::stream::TlsStream;
use crate::io::time::{self, Instant};
use crate::io::{self as uio, Chunk, Conn};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

/// The payload of the error [`splice`] returns when the TLS peer left
/// inside a record: unlike a plain end of file (`UnexpectedEof` alone,
/// a close without `close_notify`), an error of the connection. Callers
/// classify it by this type, not by the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncatedRecord;

impl std::fmt::Display for TruncatedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("peer closed inside a TLS record")
    }
}

impl std::error::Error for TruncatedRecord {}

/// Plaintext moved per operation, each way (at most).
pub const PLAIN_BUF: usize = 16 * 1024;
/// Initial size of the upstream read buffer.
const INITIAL_BUF: usize = 4096;

/// Plaintext bytes moved by a splice, each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpliceStats {
    /// From the TLS peer to the plain socket.
    pub to_plain: u64,
    /// From the plain socket to the TLS peer.
    pub from_plain: u64,
    /// The TLS peer ended its side with a FIN but no `close_notify`.
    pub peer_eof: bool,
}

type Op<'a, T> = Option<Pin<Box<dyn Future<Output = (io::Result<T>, Vec<u8>)> + 'a>>>;
/// A receive from the TLS side.
type RecvOp<'a> = Option<Pin<Box<dyn Future<Output = io::Result<Chunk>> + 'a>>>;

enum Event {
    ClientRead(io::Result<Chunk>),
    ClientWrote(io::Result<()>, Vec<u8>),
    PlainRead(io::Result<usize>, Vec<u8>),
    PlainWrote(io::Result<()>, Vec<u8>),
    Idle,
}

/// The operation's result; never, if there is none in flight.
async fn finish<O>(op: &mut Option<Pin<Box<dyn Future<Output = O> + '_>>>) -> O {
    match op.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// A read that filled its buffer means bulk traffic: grow it to `full`.
fn grow_if_filled(b: &mut Vec<u8>, full: usize) {
    if b.len() == b.capacity() && b.capacity() < full {
        b.reserve_exact(full - b.len());
    }
}

fn broken() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "connection buffers lost to a cancelled operation",
    )
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The direction state of a splice.
#[derive(Default)]
struct Ends {
    /// No more plaintext will come from the TLS peer.
    tls_read_done: bool,
    /// FIN sent to the plain socket.
    plain_shut: bool,
    /// FIN received from the plain socket.
    plain_read_done: bool,
    /// `close_notify` queued for the TLS peer.
    tls_shut: bool,
    /// ... and flushed, then FIN sent.
    tls_fin: bool,
}

/// Pumps `tls` ⇄ `plain` until both directions have ended (`Ok`), either
/// socket fails, the TLS peer misbehaves, or nothing moves for `idle`.
/// On `Ok` the stream can still be closed normally; on `Err` both sockets
/// should be aborted (dropping the stream does it for the TLS side).
pub async fn splice<C: TlsConn>(
    stream: &mut TlsStream<C>,
    plain: &Conn,
    idle: Duration,
) -> io::Result<SpliceStats> {
    let TlsStream {
        conn,
        tls,
        eof,
        bytes_in,
        bytes_out,
        ..
    } = stream;
    let client: &Conn = conn;
    // The pump receives the TLS side as `TlsStream` does (the same receive:
    // one the handshake left armed delivers first), decrypting in place;
    // on tokio-uring into a buffer of its own, kept between reads.
    let mut crbuf: Option<Vec<u8>> = None;
    // Buffers start small (an idle proxied connection holds little) and
    // grow to their full size the first time traffic fills them.
    let mut to_plain = Some(Vec::new());
    let mut from_plain = Some(Vec::with_capacity(INITIAL_BUF));
    // Bytes of `from_plain` already handed to rustls.
    let mut from_pos = 0usize;
    let (mut cr, mut cw, mut pr, mut pw): (RecvOp, Op<()>, Op<usize>, Op<()>) =
        (None, None, None, None);
    let mut ends = Ends::default();
    let mut stats = SpliceStats::default();
    let mut sleep = time::sleep(idle);
    let mut last_moved = Instant::now();

    loop {
        // Decrypted plaintext to the upstream.
        if pw.is_none() && !ends.plain_shut {
            let mut out = to_plain.take().ok_or_else(broken)?;
            out.clear();
            match tls.append_plaintext(&mut out, PLAIN_BUF) {
                Ok(Some(n)) if n > 0 => {
                    stats.to_plain += n as u64;
                    pw = Some(Box::pin(plain.write_all(out)));
                }
                other => {
                    match other {
                        Ok(Some(_)) => ends.tls_read_done = true,
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                            ends.tls_read_done = true;
                            stats.peer_eof = true;
                        }
                        Err(e) => return Err(e),
                        Ok(None) => {}
                    }
                    to_plain = Some(out);
                    if ends.tls_read_done {
                        plain.shutdown_write();
                        ends.plain_shut = true;
                    }
                }
            }
        }
        // Upstream plaintext into rustls (less when its send limit is hit).
        if let Some(buf) = from_plain.as_mut() {
            if from_pos < buf.len() {
                from_pos += tls.write_plaintext(&buf[from_pos..])?;
            }
            if from_pos >= buf.len() && ends.plain_read_done && !ends.tls_shut {
                tls.send_close_notify();
                ends.tls_shut = true;
            }
        }
        // Records to the client.
        if cw.is_none() {
            let out = tls.take_out();
            if out.is_empty() {
                if ends.tls_shut && !ends.tls_fin {
                    client.shutdown_write();
                    ends.tls_fin = true;
                }
            } else {
                *bytes_out += out.len() as u64;
                cw = Some(Box::pin(client.write_all(out)));
            }
        }
        // New reads, only where the previous data has moved on.
        if cr.is_none() && !*eof && !ends.tls_read_done && tls.plaintext_pending() <= PLAIN_BUF {
            cr = Some(Box::pin(client.recv(
                crbuf.take(),
                super::stream::READ_BUF_INITIAL,
                super::stream::READ_BUF,
            )));
        }
        if pr.is_none() && !ends.plain_read_done {
            if let Some(mut buf) = from_plain.take_if(|b| from_pos >= b.len()) {
                buf.clear();
                from_pos = 0;
                pr = Some(Box::pin(plain.read(buf)));
            }
        }

        if cr.is_none() && cw.is_none() && pr.is_none() && pw.is_none() {
            if ends.tls_fin && ends.plain_shut {
                break;
            }
            // Nothing in flight and not finished: the TLS peer left inside a
            // record (nothing more can arrive), so end rather than wait.
            // A truncated record: an error, not the normal end (`Eof`).
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                TruncatedRecord,
            ));
        }

        let ev = tokio::select! {
            r = finish(&mut cr) => Event::ClientRead(r),
            (r, b) = finish(&mut cw) => Event::ClientWrote(r, b),
            (r, b) = finish(&mut pr) => Event::PlainRead(r, b),
            (r, b) = finish(&mut pw) => Event::PlainWrote(r, b),
            _ = &mut sleep => Event::Idle,
        };
        // The idle timer is re-armed lazily (when it fires), not per event.
        let now = Instant::now();
        if !matches!(ev, Event::Idle) {
            last_moved = now;
        }
        match ev {
            Event::ClientRead(r) => {
                cr = None;
                let mut chunk = r?;
                let n = chunk.len();
                *bytes_in += n as u64;
                let res = if n == 0 {
                    *eof = true;
                    crbuf = chunk.recycle();
                    tls.ingest_eof().map_err(tls_error)?;
                    Ok(())
                } else {
                    let res = tls.ingest(&mut chunk).map(drop);
                    crbuf = chunk.recycle();
                    res
                };
                if let Err(e) = res {
                    // Send rustls's alert, best effort, unless a write is
                    // in flight (two writes could interleave).
                    let out = tls.take_out();
                    if cw.is_none() && !out.is_empty() {
                        drop((cr, pr, pw));
                        let _ = client.write_all(out).await;
                    }
                    return Err(tls_error(e));
                }
            }
            Event::ClientWrote(r, b) => {
                cw = None;
                uio::give_write_buf(b);
                r?;
            }
            Event::PlainRead(r, mut b) => {
                pr = None;
                grow_if_filled(&mut b, PLAIN_BUF);
                from_plain = Some(b);
                let n = r?;
                stats.from_plain += n as u64;
                if n == 0 {
                    ends.plain_read_done = true;
                }
            }
            Event::PlainWrote(r, b) => {
                pw = None;
                to_plain = Some(b);
                r?;
            }
            Event::Idle if now < last_moved + idle => {
                sleep.reset(last_moved + idle);
            }
            Event::Idle => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "proxy idle timeout: nothing moved either way",
                ));
            }
        }
    }
    Ok(stats)
}
