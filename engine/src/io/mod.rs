//! The I/O boundary: every call into the io_uring runtime lives here.
//!
//! TLS, services and configuration never touch `tokio_uring` directly; they use
//! [`Listener`], [`Conn`], [`spawn`] and [`Runtime`] from this module. Swapping
//! the backend (e.g. the raw `io-uring` crate with multishot receive and
//! provided-buffer rings) means reimplementing this module only.
//!
//! Buffers are owned (`Vec<u8>`) and passed to the kernel for the duration of
//! an operation; callers keep one read and one write buffer per connection and
//! reuse them, so the hot path does not allocate.
//!
//! One rule callers must know: an in-flight io_uring operation holds a
//! reference to its file, so dropping a [`Conn`] while a read is pending does
//! **not** close the socket. [`Conn::abort`] (shutdown both directions) makes
//! the pending operation complete; connection drivers call it on every
//! abnormal end.
//!
//! The exception is `accept`: the [`Listener`] waits for readiness (epoll,
//! through the runtime's reactor) and then accepts with `accept4` until the
//! queue is empty. Nothing is ever in flight on a listening socket, so a
//! shard that stops can close it for real ([`Listener::close`]): with
//! `SO_REUSEPORT` that takes it out of the group at once, and with
//! `net.ipv4.tcp_migrate_req = 1` the kernel moves connections still queued
//! on it to the other processes' listeners (zero-downtime upgrade; see
//! `docs/deployment.md`). An io_uring accept left in flight would keep the
//! socket in the group and drop (leak) the connection it completes with.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

/// Default submission-queue size per shard ring.
pub const DEFAULT_RING_ENTRIES: u32 = 1024;

/// How each shard's ring is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingOptions {
    /// Submission queue entries (power of two; the kernel rounds up). Default 1024.
    pub entries: u32,
    /// `IORING_SETUP_COOP_TASKRUN`: completions are run when the task enters
    /// the kernel instead of by interrupting it. Default on (measured: see
    /// `docs/benchmarks.md`).
    pub coop_taskrun: bool,
    /// `IORING_SETUP_SQPOLL` with this idle time in milliseconds (a kernel
    /// thread polls the submission queue). Default off.
    pub sqpoll_idle_ms: Option<u32>,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions {
            entries: DEFAULT_RING_ENTRIES,
            coop_taskrun: true,
            sqpoll_idle_ms: None,
        }
    }
}

/// A per-thread io_uring runtime (a tokio current-thread runtime with an
/// io_uring driver underneath; tokio timers work inside it).
pub struct Runtime {
    inner: tokio_uring::Runtime,
}

impl Runtime {
    /// Builds the ring on the calling thread. Fails when io_uring is not
    /// available (kernel too old, disabled by `kernel.io_uring_disabled`, or
    /// refused by a seccomp policy) or the ring cannot be locked in memory.
    pub fn new(opts: &RingOptions) -> io::Result<Runtime> {
        let mut urb = tokio_uring::uring_builder();
        if opts.coop_taskrun {
            urb.setup_coop_taskrun();
        }
        if let Some(idle) = opts.sqpoll_idle_ms {
            urb.setup_sqpoll(idle);
        }
        let mut builder = tokio_uring::builder();
        builder.entries(opts.entries).uring_builder(&urb);
        let inner = tokio_uring::Runtime::new(&builder)?;
        Ok(Runtime { inner })
    }

    /// Runs `fut` to completion on this thread, driving spawned tasks too.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.inner.block_on(fut)
    }
}

/// Spawns a task on the current shard's runtime (tasks never move between
/// threads, so they need not be `Send`).
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + 'static,
{
    tokio_uring::spawn(fut)
}

/// Waits for one round trip through the ring (a no-op operation). Every
/// completion the kernel posted before it has been delivered to its future
/// when this returns: use it before abandoning an operation that may have
/// completed already (a dropped read that completed loses its data).
pub async fn settle() {
    let _ = tokio_uring::no_op().await;
}

/// A listening socket: readiness from the reactor, then `accept4` (see the
/// module docs for why not an io_uring accept).
pub struct Listener {
    inner: tokio::io::unix::AsyncFd<std::net::TcpListener>,
}

impl Listener {
    /// Wraps a listening socket built elsewhere (with `socket2`: reuseport,
    /// backlog, ...). Must be called inside a [`Runtime`].
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Listener> {
        use tokio::io::{unix::AsyncFd, Interest};
        listener.set_nonblocking(true)?;
        // SAFETY: a `std::net::TcpListener` owns its fd: it stays open and
        // the same for as long as the listener lives, and the `AsyncFd` owns
        // the listener (register's I/O-safety requirement).
        let inner = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }?;
        Ok(Listener { inner })
    }

    /// Accepts one connection (cancel-safe: dropping the future loses nothing).
    pub async fn accept(&self) -> io::Result<(Conn, SocketAddr)> {
        loop {
            let mut ready = self.inner.readable().await?;
            match ready.try_io(|l| l.get_ref().accept()) {
                Ok(res) => {
                    let (stream, peer) = res?;
                    return Ok((Conn::from_std(stream), peer));
                }
                Err(_would_block) => continue,
            }
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get_ref().local_addr()
    }

    /// Stops listening: accepts what is already queued (returned, for the
    /// caller to serve), then closes the socket, which leaves the
    /// `SO_REUSEPORT` group so new connections go to the other members.
    pub fn close(self) -> Vec<(Conn, SocketAddr)> {
        let mut queued = Vec::new();
        while let Ok((stream, peer)) = self.inner.get_ref().accept() {
            queued.push((Conn::from_std(stream), peer));
        }
        drop(self.inner);
        queued
    }
}

/// A connected TCP socket driven by io_uring reads and writes.
pub struct Conn {
    inner: tokio_uring::net::TcpStream,
}

impl Conn {
    /// Connects to `addr` (an io_uring `connect`).
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let inner = tokio_uring::net::TcpStream::connect(addr).await?;
        Ok(Conn { inner })
    }

    /// Wraps a connected std socket. Must be called inside a [`Runtime`].
    pub fn from_std(stream: std::net::TcpStream) -> Conn {
        Conn {
            inner: tokio_uring::net::TcpStream::from_std(stream),
        }
    }

    /// Reads into the spare capacity of `buf` (after its current length) and
    /// returns the buffer with its length grown by the bytes read. `Ok(0)`
    /// means the peer closed its sending side.
    pub async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let (res, buf) = self.inner.read(buf).await;
        (res, buf)
    }

    /// Writes all of `buf` (looping over short writes) and gives it back.
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let (res, buf) = self.inner.write_all(buf).await;
        (res, buf)
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.inner.set_nodelay(on)
    }

    /// Half-closes our sending side (FIN), after a TLS `close_notify`.
    pub fn shutdown_write(&self) {
        shutdown_fd(self.inner.as_raw_fd(), Shutdown::Write);
    }

    /// Shuts the socket down in both directions so that any pending
    /// operation completes and the fd is released once this `Conn` drops.
    pub fn abort(&self) {
        shutdown_fd(self.inner.as_raw_fd(), Shutdown::Both);
    }

    /// Bytes received by the kernel and not yet read (`FIONREAD`); a
    /// syscall, for rare paths such as deciding whether a draining
    /// connection is idle.
    pub fn unread_bytes(&self) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the valid pointer we
        // pass; the fd is this live socket.
        let rc = unsafe { libc::ioctl(self.inner.as_raw_fd(), libc::FIONREAD, &mut n) };
        if rc == 0 {
            usize::try_from(n).unwrap_or(0)
        } else {
            0
        }
    }

    /// The raw fd, for socket options set from outside (e.g. `SO_LINGER`).
    pub fn raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

fn shutdown_fd(fd: RawFd, how: Shutdown) {
    let how = match how {
        Shutdown::Read => libc::SHUT_RD,
        Shutdown::Write => libc::SHUT_WR,
        Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: `fd` is a socket owned by the caller's live Listener/Conn;
    // shutdown(2) neither closes nor invalidates it. Errors (ENOTCONN when the
    // peer is already gone) are harmless here and deliberately ignored.
    unsafe {
        libc::shutdown(fd, how);
    }
}
