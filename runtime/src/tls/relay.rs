//! Full duplex between two TLS streams: the client's (a server session)
//! and the upstream's (a client session), pumped both ways at once from one
//! task (the proxy's data path with `upstream_tls`; see
//! `docs/design/proxy.md`).
//!
//! The same design as [`super::duplex::splice`], made symmetric: each side
//! has one receive and one write in flight at most, each owning its buffer
//! and boxed across loop turns, so `select!` never cancels one. The two
//! rustls sessions are touched only between awaits, synchronously.
//!
//! ```text
//!   client ──cr──▶ session C ──(plaintext)──▶ session U ──uw──▶ upstream
//!   client ◀──cw── session C ◀──(plaintext)── session U ◀──ur── upstream
//! ```
//!
//! Plaintext goes from one session to the other without a buffer of its
//! own: what one peer sent is encrypted for the other straight from the
//! session that decrypted it.
//!
//! Backpressure: a side is read again only while at most [`PLAIN_BUF`] of
//! its decrypted bytes wait; they are passed to the other session only
//! when no write to the other peer is in flight, so the records waiting
//! for a peer are at most what one pass produced. A peer that stops
//! reading stops, through this, the reads from the other peer.
//!
//! Half-close: a peer's `close_notify` becomes a `close_notify` plus FIN
//! to the other peer, after every byte before it. The client's FIN without
//! `close_notify` becomes a FIN alone (the upstream sees the truncation
//! for what it is); the upstream's becomes a `close_notify` plus FIN, as
//! the plain splice does for a plain upstream's FIN (and as nginx and
//! HAProxy do). The relay ends when both directions have ended.

use super::duplex::{SpliceStats, TruncatedRecord, PLAIN_BUF};
use super::session::{Session, TlsConn};
use super::stream::{TlsStream, READ_BUF, READ_BUF_INITIAL};
use crate::io::time::{self, Instant};
use crate::io::{self as uio, Chunk, Conn};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

/// The payload of an error [`relay`] returns for something the upstream
/// side did (its socket failed, it broke the TLS protocol, it left inside
/// a record): callers tell it from the client's by this type (`get_ref()`
/// and `downcast_ref`), whose `source` is the error itself.
#[derive(Debug)]
pub struct UpstreamSide(pub io::Error);

impl std::fmt::Display for UpstreamSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upstream: {}", self.0)
    }
}

impl std::error::Error for UpstreamSide {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn upstream_side(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), UpstreamSide(e))
}

/// How long an alert may take to leave before the relay ends anyway.
const ALERT_WAIT: Duration = Duration::from_secs(1);

type WriteOp<'a> = Option<Pin<Box<dyn Future<Output = (io::Result<()>, Vec<u8>)> + 'a>>>;
type RecvOp<'a> = Option<Pin<Box<dyn Future<Output = io::Result<Chunk>> + 'a>>>;

/// One peer of the relay: its socket, its session, its operations, and
/// how far its directions have got.
struct Side<'a, C: TlsConn> {
    conn: &'a Conn,
    tls: &'a mut Session<C>,
    /// The socket's FIN was read (shared with the stream).
    eof: &'a mut bool,
    bytes_in: &'a mut u64,
    bytes_out: &'a mut u64,
    /// A receive buffer kept between reads (tokio-uring and epoll).
    spare: Option<Vec<u8>>,
    r: RecvOp<'a>,
    w: WriteOp<'a>,
    /// No more plaintext will come from this peer, and all of it was passed on.
    read_done: bool,
    /// ... and it ended with `close_notify` (else a FIN alone).
    clean: bool,
    /// Our end towards this peer is decided (`close_notify` queued, or none).
    shut: bool,
    /// FIN sent to this peer.
    fin: bool,
    /// Plaintext from this peer passed to the other.
    moved: u64,
}

enum Event {
    Read(bool, io::Result<Chunk>),
    Wrote(bool, io::Result<()>, Vec<u8>),
    Idle,
}

/// The operation's result; never, if there is none in flight.
async fn finish<O>(op: &mut Option<Pin<Box<dyn Future<Output = O> + '_>>>) -> O {
    match op.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<'a, C: TlsConn> Side<'a, C> {
    fn of(stream: &'a mut TlsStream<C>) -> Side<'a, C> {
        let TlsStream {
            conn,
            tls,
            eof,
            bytes_in,
            bytes_out,
            ..
        } = stream;
        Side {
            conn,
            tls,
            eof,
            bytes_in,
            bytes_out,
            spare: None,
            r: None,
            w: None,
            read_done: false,
            clean: false,
            shut: false,
            fin: false,
            moved: 0,
        }
    }

    /// Starts a write of the queued records, or the FIN once our end is
    /// queued and flushed.
    fn start_write(&mut self) {
        if self.w.is_some() {
            return;
        }
        let out = self.tls.take_out();
        if out.is_empty() {
            if self.shut && !self.fin {
                self.conn.shutdown_write();
                self.fin = true;
            }
        } else {
            *self.bytes_out += out.len() as u64;
            self.w = Some(Box::pin(self.conn.write_all(out)));
        }
    }

    /// Starts a read if this peer may still send and what it sent last
    /// has (mostly) moved on.
    fn start_read(&mut self) {
        if self.r.is_none()
            && !*self.eof
            && !self.read_done
            && !self.tls.peer_has_closed()
            && self.tls.plaintext_pending() <= PLAIN_BUF
        {
            let spare = self.spare.take();
            self.r = Some(Box::pin(self.conn.recv(spare, READ_BUF_INITIAL, READ_BUF)));
        }
    }

    /// A receive completed: its ciphertext into the session. On a protocol
    /// error the alert rustls queued goes out (best effort, unless a write
    /// is in flight: two writes could interleave).
    async fn received(&mut self, r: io::Result<Chunk>) -> io::Result<()> {
        self.r = None;
        let mut chunk = r?;
        let n = chunk.len();
        *self.bytes_in += n as u64;
        let res = if n == 0 {
            *self.eof = true;
            self.spare = chunk.recycle();
            self.tls.ingest_eof()
        } else {
            let res = self.tls.ingest(&mut chunk).map(drop);
            self.spare = chunk.recycle();
            res
        };
        if let Err(e) = res {
            let out = self.tls.take_out();
            if self.w.is_none() && !out.is_empty() {
                // Bounded: a peer that does not read gets no alert.
                let _ = time::timeout(ALERT_WAIT, self.conn.write_all(out)).await;
            }
            return Err(tls_error(e));
        }
        Ok(())
    }

    fn wrote(&mut self, r: io::Result<()>, b: Vec<u8>) -> io::Result<()> {
        self.w = None;
        uio::give_write_buf(b);
        r
    }

    /// Whether the relay waits on nothing of this side.
    fn idle(&self) -> bool {
        self.r.is_none() && self.w.is_none()
    }
}

/// Passes `from`'s decrypted bytes to `to`'s session (only when no write
/// to `to` is in flight: see the module docs), and `from`'s end to `to`
/// once all of them have passed. `eof_is_clean`: a FIN without
/// `close_notify` from `from` becomes a `close_notify` to `to` all the same.
fn pass<A: TlsConn, B: TlsConn>(
    from: &mut Side<'_, A>,
    to: &mut Side<'_, B>,
    eof_is_clean: bool,
) -> io::Result<()> {
    while to.w.is_none() && !to.shut {
        let p = from.tls.plaintext();
        if p.is_empty() {
            break;
        }
        let n = to.tls.write_plaintext(p)?;
        if n == 0 {
            break;
        }
        from.tls.consume_plaintext(n);
        from.moved += n as u64;
    }
    if !from.read_done && from.tls.plaintext_pending() == 0 && from.tls.peer_has_closed() {
        if from.tls.holds_input() && !from.tls.peer_closed_cleanly() {
            // The peer left inside a record: an error, not the end.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                TruncatedRecord,
            ));
        }
        from.read_done = true;
        from.clean = from.tls.peer_closed_cleanly();
    }
    if from.read_done && !to.shut {
        if from.clean || eof_is_clean {
            to.tls.send_close_notify();
        }
        to.shut = true;
    }
    Ok(())
}

/// Pumps `client` ⇄ `upstream` (both handshakes done) until both
/// directions have ended (`Ok`), either socket fails, either peer
/// misbehaves, or nothing moves for `idle`. Errors of the upstream side
/// carry [`UpstreamSide`]. On `Ok` the client stream can still be closed
/// normally; on `Err` both should be aborted (dropping a stream does it).
///
/// In the stats, `to_plain` counts plaintext from the client to the
/// upstream, `from_plain` from the upstream to the client; `peer_eof` the
/// client's FIN without `close_notify`.
pub async fn relay<C: TlsConn, U: TlsConn>(
    client: &mut TlsStream<C>,
    upstream: &mut TlsStream<U>,
    idle: Duration,
) -> io::Result<SpliceStats> {
    let mut c = Side::of(client);
    let mut u = Side::of(upstream);
    let mut sleep = time::sleep(idle);
    let mut last_moved = Instant::now();
    loop {
        pass(&mut c, &mut u, false)?;
        pass(&mut u, &mut c, true).map_err(upstream_side)?;
        c.start_write();
        u.start_write();
        c.start_read();
        u.start_read();
        if c.idle() && u.idle() {
            if c.fin && u.fin {
                break;
            }
            // Nothing in flight and not finished: cannot happen by the
            // rules above; ended rather than waited on forever.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                TruncatedRecord,
            ));
        }
        let ev = tokio::select! {
            r = finish(&mut c.r) => Event::Read(true, r),
            (r, b) = finish(&mut c.w) => Event::Wrote(true, r, b),
            r = finish(&mut u.r) => Event::Read(false, r),
            (r, b) = finish(&mut u.w) => Event::Wrote(false, r, b),
            _ = &mut sleep => Event::Idle,
        };
        // The idle timer is re-armed lazily (when it fires), not per event.
        let now = Instant::now();
        if !matches!(ev, Event::Idle) {
            last_moved = now;
        }
        match ev {
            Event::Read(true, r) => c.received(r).await?,
            Event::Read(false, r) => u.received(r).await.map_err(upstream_side)?,
            Event::Wrote(true, r, b) => c.wrote(r, b)?,
            Event::Wrote(false, r, b) => u.wrote(r, b).map_err(upstream_side)?,
            Event::Idle if now < last_moved + idle => sleep.reset(last_moved + idle),
            Event::Idle => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "proxy idle timeout: nothing moved either way",
                ));
            }
        }
    }
    Ok(SpliceStats {
        to_plain: c.moved,
        from_plain: u.moved,
        peer_eof: !c.clean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{Backend, Listener, RingOptions, Runtime};
    use crate::tls::{ClientStream, ServerConn, ServerStream};
    use rustls::client::UnbufferedClientConnection;
    use std::sync::Arc;

    /// How the upstream ends its side after answering.
    #[derive(Clone, Copy)]
    enum UpstreamEnd {
        CloseNotify,
        FinOnly,
    }

    fn listener() -> (Listener, std::net::SocketAddr) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = l.local_addr().expect("addr");
        (Listener::from_std(l).expect("listener"), a)
    }

    fn client_config(root: rustls_pki_types::CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root).expect("root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    async fn read_to_end<C: TlsConn>(s: &mut TlsStream<C>) -> io::Result<Vec<u8>> {
        let mut all = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf).await? {
                0 => return Ok(all),
                n => all.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// client → relay → upstream: `len` bytes up, then the client's
    /// `close_notify`; the upstream reads to the clean end, answers with
    /// the bytes reversed, and ends as `end` says. Returns what the client
    /// read (or how its read ended) and the relay's outcome.
    fn run(
        backend: Backend,
        len: usize,
        end: UpstreamEnd,
    ) -> (io::Result<Vec<u8>>, io::Result<SpliceStats>, Vec<u8>) {
        let rt = Runtime::new(&RingOptions {
            backend,
            ..RingOptions::default()
        })
        .expect("runtime");
        let (cfg, cert) = crate::tls::testing::server_config_and_cert();
        let client_cfg = client_config(cert);
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        rt.block_on(async move {
            let (front, front_addr) = listener();
            let (up, up_addr) = listener();
            let (done, outcome) = tokio::sync::oneshot::channel();
            let (scfg, ucfg) = (cfg.clone(), client_cfg.clone());
            crate::io::spawn(async move {
                let (conn, _) = up.accept().await.expect("accept upstream");
                let mut s = ServerStream::new(conn, ServerConn::new(scfg).expect("conn"));
                s.handshake().await.expect("upstream handshake");
                let mut got = read_to_end(&mut s)
                    .await
                    .expect("upstream reads a clean end");
                got.reverse();
                s.write_all(&got).await.expect("answer");
                match end {
                    UpstreamEnd::CloseNotify => s.close().await.expect("close"),
                    UpstreamEnd::FinOnly => {
                        s.flush().await.expect("flush");
                        s.conn().shutdown_write();
                    }
                }
                // Held until the relay is done with the socket.
                let _ = read_to_end(&mut s).await;
            });
            crate::io::spawn(async move {
                let (conn, _) = front.accept().await.expect("accept front");
                let mut s = ServerStream::new(conn, ServerConn::new(cfg).expect("conn"));
                s.handshake().await.expect("front handshake");
                let uconn = Conn::connect(up_addr).await.expect("connect upstream");
                let name = "localhost".try_into().expect("name");
                let tls = UnbufferedClientConnection::new(ucfg, name).expect("client");
                let mut u = ClientStream::new(uconn, tls);
                u.handshake().await.expect("handshake to upstream");
                let res = relay(&mut s, &mut u, Duration::from_secs(20)).await;
                let _ = done.send(res);
            });
            let conn = Conn::connect(front_addr).await.expect("connect front");
            let name = "localhost".try_into().expect("name");
            let tls = UnbufferedClientConnection::new(client_cfg, name).expect("client");
            let mut c = ClientStream::new(conn, tls);
            c.handshake().await.expect("client handshake");
            c.write_all(&data).await.expect("write");
            c.close().await.expect("close_notify");
            let got = read_to_end(&mut c).await;
            let res = time::timeout(Duration::from_secs(30), outcome)
                .await
                .expect("the relay ends")
                .expect("relay result");
            let mut want = data;
            want.reverse();
            (got, res, want)
        })
    }

    const BACKENDS: [Backend; 3] = [Backend::Uring, Backend::TokioUring, Backend::Epoll];

    #[test]
    fn bytes_cross_both_ways_exactly_and_the_clients_end_reaches_the_upstream() {
        for backend in BACKENDS {
            let (got, res, want) = run(backend, 3 << 20, UpstreamEnd::CloseNotify);
            let got = got.expect("the client reads a clean end");
            assert!(got == want, "{backend}: {} bytes back", got.len());
            let stats = res.expect("relay ends cleanly");
            assert_eq!(
                (stats.to_plain, stats.from_plain, stats.peer_eof),
                (3 << 20, 3 << 20, false),
                "{backend}"
            );
        }
    }

    #[test]
    fn an_upstreams_fin_without_close_notify_ends_the_client_cleanly() {
        for backend in BACKENDS {
            let (got, res, want) = run(backend, 1000, UpstreamEnd::FinOnly);
            assert!(got.expect("clean end") == want, "{backend}");
            assert!(res.is_ok(), "{backend}: {res:?}");
        }
    }
}
