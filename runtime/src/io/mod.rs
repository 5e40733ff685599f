//! The I/O boundary: every call into the io_uring runtime lives here.
//!
//! TLS, services and configuration never touch an io_uring runtime
//! directly; they use [`Listener`], [`Conn`], [`spawn`], [`Runtime`] and the
//! timers in [`time`] from this module.
//!
//! Two backends sit behind it, chosen per runtime ([`Backend`],
//! `--io-backend`):
//! - `uring` (default): our own executor on the `io-uring` crate, one ring
//!   per shard with `SINGLE_ISSUER | DEFER_TASKRUN`, parking inside
//!   `io_uring_enter`, receives from a provided-buffer ring (see
//!   `uring`);
//! - `tokio-uring`: tokio's current-thread runtime with tokio-uring's
//!   driver (parks in epoll; every pending read holds its own buffer).
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
//! The same holds for a listening socket: an accept left in flight would
//! keep the socket in the `SO_REUSEPORT` group and drop (leak) the
//! connection it completes with. A stopping shard must close it for real
//! ([`Listener::close`]): with `SO_REUSEPORT` that takes it out of the group
//! at once, and with `net.ipv4.tcp_migrate_req = 1` the kernel moves
//! connections still queued on it to the other processes' listeners
//! (zero-downtime upgrade; see `docs/deployment.md`). On the uring backend
//! the listener accepts through the ring (`IORING_OP_ACCEPT`, a few in
//! flight, owned by the listener), and `close` cancels them, waits for
//! their completions and hands back the connections they accepted, before
//! accepting what is queued with `accept4`. On tokio-uring the listener
//! waits for readiness (epoll) and accepts with `accept4`: nothing is ever
//! in flight on it.

use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

mod epoll;
pub mod time;
pub(crate) mod uring;

pub use uring::restrict;

/// Counters for tests of crates built on this one (feature `test-hooks`).
#[cfg(feature = "test-hooks")]
pub mod test_hooks {
    /// Timers registered so far on this thread's uring runtime (`None`
    /// outside one): a connection whose deadlines are re-armed lazily
    /// registers a few, not one per request.
    pub fn timer_registrations() -> Option<u64> {
        super::uring::is_current().then(|| super::uring::driver().timer_registrations.get())
    }
}

/// Default submission-queue size per shard ring.
pub const DEFAULT_RING_ENTRIES: u32 = 1024;

/// Which runtime drives a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Backend {
    /// `uring` where io_uring is available; `epoll` where it is not (the
    /// kernel lacks it, `kernel.io_uring_disabled` is set, or a seccomp
    /// policy such as Docker's and containerd's default blocks it). See
    /// [`Runtime::new`].
    #[default]
    Auto,
    /// Our executor on the `io-uring` crate (SINGLE_ISSUER, DEFER_TASKRUN,
    /// provided-buffer receives). Fails where io_uring is unavailable.
    Uring,
    /// tokio-uring (tokio current-thread runtime, epoll-parked).
    TokioUring,
    /// No io_uring at all: tokio's current-thread runtime on its epoll
    /// reactor, readiness then `read`/`write` system calls.
    Epoll,
}

impl Backend {
    /// The name of this backend.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Uring => "uring",
            Backend::TokioUring => "tokio-uring",
            Backend::Epoll => "epoll",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How each shard's ring is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingOptions {
    /// Submission queue entries (power of two; the kernel rounds up). Default 1024.
    pub entries: u32,
    /// `IORING_SETUP_COOP_TASKRUN` (tokio-uring backend; the uring backend
    /// always sets it, with `DEFER_TASKRUN`). Default on (measured: see
    /// `docs/benchmarks.md`).
    pub coop_taskrun: bool,
    /// `IORING_SETUP_SQPOLL` with this idle time in milliseconds (a kernel
    /// thread polls the submission queue). Default off. On the uring
    /// backend it replaces `DEFER_TASKRUN`, which needs this thread to submit.
    pub sqpoll_idle_ms: Option<u32>,
    /// Multishot receives on the uring backend (`IORING_RECV_MULTISHOT`):
    /// one receive per connection stays armed across reads instead of one
    /// submission per read. Default on.
    pub recv_multishot: bool,
    /// The runtime behind the ring.
    pub backend: Backend,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions {
            entries: DEFAULT_RING_ENTRIES,
            coop_taskrun: true,
            sqpoll_idle_ms: None,
            recv_multishot: true,
            backend: Backend::default(),
        }
    }
}

/// A per-thread runtime: io_uring (two backends) or epoll.
pub struct Runtime {
    inner: RuntimeInner,
    /// Why `Auto` chose epoll, if it did.
    fell_back: Option<SetupError>,
}

enum RuntimeInner {
    Uring(uring::Runtime),
    Tokio(tokio_uring::Runtime),
    Epoll(epoll::Runtime),
}

impl Runtime {
    /// Builds the runtime on the calling thread. An io_uring backend fails
    /// when io_uring is not available (kernel too old, disabled by
    /// `kernel.io_uring_disabled`, or refused by a seccomp policy) or the
    /// ring cannot be locked in memory; [`Backend::Auto`] then builds an
    /// epoll runtime instead (see [`fell_back`](Self::fell_back)), and
    /// fails only for other causes.
    pub fn new(opts: &RingOptions) -> Result<Runtime, SetupError> {
        match opts.backend {
            Backend::Auto => match Runtime::build(opts, Backend::Uring) {
                Ok(rt) => Ok(rt),
                Err(e) if e.io_uring_unavailable() => {
                    let mut rt = Runtime::build(opts, Backend::Epoll)?;
                    rt.fell_back = Some(e);
                    Ok(rt)
                }
                Err(e) => Err(e),
            },
            b => Runtime::build(opts, b),
        }
    }

    fn build(opts: &RingOptions, backend: Backend) -> Result<Runtime, SetupError> {
        let fail = |e: io::Error| SetupError::new(backend, opts.entries, e);
        let inner = match backend {
            Backend::Uring | Backend::Auto => RuntimeInner::Uring(
                uring::Runtime::new(&uring::Setup {
                    entries: opts.entries,
                    sqpoll_idle_ms: opts.sqpoll_idle_ms,
                    recv_multishot: opts.recv_multishot,
                    restrict: uring::restrict::wanted(),
                })
                .map_err(fail)?,
            ),
            Backend::Epoll => RuntimeInner::Epoll(epoll::Runtime::new().map_err(fail)?),
            Backend::TokioUring => {
                let mut urb = tokio_uring::uring_builder();
                if opts.coop_taskrun {
                    urb.setup_coop_taskrun();
                }
                if let Some(idle) = opts.sqpoll_idle_ms {
                    urb.setup_sqpoll(idle);
                }
                let mut builder = tokio_uring::builder();
                builder.entries(opts.entries).uring_builder(&urb);
                RuntimeInner::Tokio(tokio_uring::Runtime::new(&builder).map_err(fail)?)
            }
        };
        Ok(Runtime {
            inner,
            fell_back: None,
        })
    }

    /// The backend running (never [`Backend::Auto`]).
    pub fn backend(&self) -> Backend {
        match self.inner {
            RuntimeInner::Uring(_) => Backend::Uring,
            RuntimeInner::Tokio(_) => Backend::TokioUring,
            RuntimeInner::Epoll(_) => Backend::Epoll,
        }
    }

    /// Why [`Backend::Auto`] runs on epoll: the io_uring set-up error.
    pub fn fell_back(&self) -> Option<&SetupError> {
        self.fell_back.as_ref()
    }

    /// Runs `fut` to completion on this thread, driving spawned tasks too.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        match &self.inner {
            RuntimeInner::Uring(rt) => rt.block_on(fut),
            RuntimeInner::Tokio(rt) => rt.block_on(fut),
            RuntimeInner::Epoll(rt) => rt.block_on(fut),
        }
    }
}

/// Whether io_uring can be used by this process now: builds (and drops) a
/// small ring. `Err` says why not, as [`Runtime::new`] would.
pub fn probe_uring() -> Result<(), SetupError> {
    let opts = RingOptions {
        entries: 8,
        ..RingOptions::default()
    };
    Runtime::build(&opts, Backend::Uring).map(drop)
}

/// Why a runtime could not be built.
#[derive(Debug)]
pub struct SetupError {
    backend: Backend,
    entries: u32,
    cause: SetupCause,
    source: io::Error,
}

/// The cause of a [`SetupError`], from the kernel's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetupCause {
    /// `ENOSYS`: the kernel has no io_uring.
    NotSupported,
    /// `EPERM`: `kernel.io_uring_disabled` forbids it, or a seccomp policy
    /// (Docker's and containerd's default profiles) blocks the syscalls.
    Forbidden,
    /// `ENOMEM`: the ring's memory cannot be locked.
    MemoryLock,
    /// `EINVAL`: the kernel refused the set-up flags.
    Flags,
    /// Anything else.
    Other,
}

impl SetupError {
    fn new(backend: Backend, entries: u32, source: io::Error) -> SetupError {
        let cause = match source.raw_os_error() {
            Some(libc::ENOSYS) => SetupCause::NotSupported,
            Some(libc::EPERM) | Some(libc::EACCES) => SetupCause::Forbidden,
            Some(libc::ENOMEM) => SetupCause::MemoryLock,
            Some(libc::EINVAL) => SetupCause::Flags,
            _ => SetupCause::Other,
        };
        SetupError {
            backend,
            entries,
            cause,
            source,
        }
    }

    /// The cause.
    pub fn cause(&self) -> SetupCause {
        self.cause
    }

    /// The backend that failed.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// io_uring cannot be used by this process at all (as opposed to a
    /// ring too large to lock, or flags this kernel refuses): the case
    /// [`Backend::Auto`] falls back to epoll for.
    pub fn io_uring_unavailable(&self) -> bool {
        matches!(self.cause, SetupCause::NotSupported | SetupCause::Forbidden)
            && self.backend != Backend::Epoll
    }

    /// The system's error.
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hint = match (self.backend, self.cause) {
            (Backend::Epoll, _) => "cannot build the epoll runtime",
            (_, SetupCause::NotSupported) => "io_uring is not supported by this kernel",
            (_, SetupCause::Forbidden) => {
                "io_uring is disabled (sysctl kernel.io_uring_disabled) or blocked by a seccomp policy \
                 (use --io-backend auto or epoll to run without it, or allow io_uring_setup, \
                 io_uring_enter and io_uring_register: docs/deploy/)"
            }
            (_, SetupCause::MemoryLock) => {
                "cannot lock ring memory: raise RLIMIT_MEMLOCK or lower --ring-entries"
            }
            (_, SetupCause::Flags) => {
                "the kernel rejected the ring setup flags (the uring backend needs Linux 6.1+ for \
                 DEFER_TASKRUN: try --io-backend tokio-uring; on tokio-uring try --coop-taskrun false)"
            }
            (_, SetupCause::Other) => "io_uring setup failed",
        };
        if self.backend == Backend::Epoll {
            write!(f, "{hint} ({})", self.source)
        } else {
            write!(f, "{hint} ({}; ring entries {})", self.source, self.entries)
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Spawns a task on the current thread's runtime (tasks never move between
/// threads, so they need not be `Send`).
pub fn spawn<F>(fut: F)
where
    F: Future<Output = ()> + 'static,
{
    if uring::is_current() {
        uring::spawn(fut);
    } else {
        // tokio-uring's and the epoll backend's runtimes both run tasks on
        // a `LocalSet`.
        tokio::task::spawn_local(fut);
    }
}

/// Waits for one round trip through the ring (a no-op operation). Every
/// completion the kernel posted before it has been delivered to its future
/// when this returns: use it before abandoning an operation that may have
/// completed already (a dropped read that completed loses its data).
pub async fn settle() {
    if uring::is_current() {
        uring::settle().await;
    } else if epoll::is_current() {
        // Readiness-based: nothing is ever in flight in the kernel.
    } else {
        let _ = tokio_uring::no_op().await;
    }
}

/// Runs `op` (a read, say) until it completes or `cancel` is ready,
/// `op` first. If `cancel` wins, the operation may already have completed
/// in the kernel without its completion being delivered (io_uring): this
/// lets posted completions arrive ([`settle`]) and looks at `op` once more,
/// so that a completed operation's result (a request that arrived) is never
/// dropped. `Ok` with `op`'s output, or `Err(())` when it was given up.
///
/// The lost-completion hazard of giving up an io_uring operation stays
/// here, in the runtime; callers above need not know about it. A plain
/// struct rather than an `async fn`: `op` is stored once (an `async fn`
/// would keep the argument and its pinned copy), which matters to a
/// connection that waits here, idle, for its whole life.
pub fn unless<F, C>(op: F, cancel: C) -> Unless<F, C>
where
    F: Future,
    C: FnMut(&mut std::task::Context<'_>) -> std::task::Poll<()>,
{
    Unless {
        op,
        cancel,
        settling: None,
    }
}

/// The future of [`unless`].
pub struct Unless<F, C> {
    op: F,
    cancel: C,
    /// Set once `cancel` won: the round trip through the ring (boxed: a
    /// drain's path, not every wait's).
    settling: Option<std::pin::Pin<Box<dyn Future<Output = ()>>>>,
}

impl<F, C> Future for Unless<F, C>
where
    F: Future,
    C: FnMut(&mut std::task::Context<'_>) -> std::task::Poll<()>,
{
    type Output = Result<F::Output, ()>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        // SAFETY: `op` is structurally pinned (never moved out of `self`
        // nor accessed unpinned); `cancel` and `settling` are only accessed
        // by `&mut` and never pinned through `self`.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let mut op = unsafe { std::pin::Pin::new_unchecked(&mut this.op) };
        if this.settling.is_none() {
            if let Poll::Ready(r) = op.as_mut().poll(cx) {
                return Poll::Ready(Ok(r));
            }
            match (this.cancel)(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) => this.settling = Some(Box::pin(settle())),
            }
        }
        if let Some(s) = &mut this.settling {
            if s.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        // Posted completions have arrived: one last look, without
        // registering for a wake-up that nobody will wait for.
        let mut quiet = std::task::Context::from_waker(std::task::Waker::noop());
        Poll::Ready(match op.poll(&mut quiet) {
            Poll::Ready(r) => Ok(r),
            Poll::Pending => Err(()),
        })
    }
}

thread_local! {
    static WRITE_BUFS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Write buffers kept for reuse per thread.
const WRITE_BUFS_KEPT: usize = 64;
/// Larger buffers are not kept (one bulk response must not pin memory).
const WRITE_BUF_KEPT_MAX: usize = 256 * 1024;

/// An empty write buffer from this thread's pool (or a new one). Give it
/// back with [`give_write_buf`] once the write completed, so that idle
/// connections hold none.
pub fn take_write_buf() -> Vec<u8> {
    let mut b = take_write_buf_as_left();
    b.clear();
    b
}

/// A write buffer from this thread's pool with the length it was given
/// back with: its `len()` bytes are stale data from an earlier use, already
/// initialised, so a writer that fills it by slices can write over them
/// instead of zeroing first. Whatever is sent from it must be cut to what
/// was written.
pub(crate) fn take_write_buf_as_left() -> Vec<u8> {
    WRITE_BUFS
        .with(|b| b.borrow_mut().pop())
        .unwrap_or_default()
}

/// Returns a write buffer to this thread's pool (its contents are kept as
/// they are, see `take_write_buf_as_left`).
pub fn give_write_buf(buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > WRITE_BUF_KEPT_MAX {
        return;
    }
    WRITE_BUFS.with(|b| {
        let mut b = b.borrow_mut();
        if b.len() < WRITE_BUFS_KEPT {
            b.push(buf);
        }
    });
}

/// A listening socket: io_uring accepts kept in flight by the listener
/// (uring backend), or readiness through epoll then `accept4`
/// (tokio-uring); see the module docs for how `close` leaves nothing in
/// flight.
pub struct Listener {
    inner: ListenerInner,
}

enum ListenerInner {
    Uring(uring::net::Listener),
    Tokio(tokio::io::unix::AsyncFd<std::net::TcpListener>),
}

impl Listener {
    /// Wraps a listening socket built elsewhere (with `socket2`: reuseport,
    /// backlog, ...). Must be called inside a [`Runtime`].
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Listener> {
        if uring::is_current() {
            return Ok(Listener {
                inner: ListenerInner::Uring(uring::net::Listener::from_std(listener)?),
            });
        }
        use tokio::io::{unix::AsyncFd, Interest};
        listener.set_nonblocking(true)?;
        // SAFETY: a `std::net::TcpListener` owns its fd: it stays open and
        // the same for as long as the listener lives, and the `AsyncFd` owns
        // the listener (register's I/O-safety requirement).
        let inner = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }?;
        Ok(Listener {
            inner: ListenerInner::Tokio(inner),
        })
    }

    /// Accepts one connection (cancel-safe: dropping the future loses nothing).
    pub async fn accept(&self) -> io::Result<(Conn, SocketAddr)> {
        match &self.inner {
            ListenerInner::Uring(l) => {
                let (s, peer) = l.accept().await?;
                Ok((Conn::from_std(s)?, peer))
            }
            ListenerInner::Tokio(l) => loop {
                let mut ready = l.readable().await?;
                match ready.try_io(|l| l.get_ref().accept()) {
                    Ok(res) => {
                        let (stream, peer) = res?;
                        return Ok((Conn::from_std(stream)?, peer));
                    }
                    Err(_would_block) => continue,
                }
            },
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            ListenerInner::Uring(l) => l.local_addr(),
            ListenerInner::Tokio(l) => l.get_ref().local_addr(),
        }
    }

    /// Stops listening: accepts what is already queued (returned, for the
    /// caller to serve), then closes the socket, which leaves the
    /// `SO_REUSEPORT` group so new connections go to the other members.
    pub async fn close(self) -> Vec<(Conn, SocketAddr)> {
        match self.inner {
            ListenerInner::Uring(l) => l
                .close()
                .await
                .into_iter()
                .filter_map(|(s, p)| Conn::from_std(s).ok().map(|c| (c, p)))
                .collect(),
            ListenerInner::Tokio(l) => {
                let mut queued = Vec::new();
                while let Ok((stream, peer)) = l.get_ref().accept() {
                    if let Ok(c) = Conn::from_std(stream) {
                        queued.push((c, peer));
                    }
                }
                drop(l);
                queued
            }
        }
    }
}

/// Bytes received by [`Conn::recv`]: a buffer from the shard's pool
/// (returned to it when this drops) or a heap buffer.
pub struct Chunk {
    inner: ChunkInner,
}

enum ChunkInner {
    Uring(uring::net::Received),
    /// A heap buffer; `keep`: worth reusing for the next receive.
    Heap(Vec<u8>, bool),
}

impl std::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.inner {
            ChunkInner::Uring(r) => r.bytes(),
            ChunkInner::Heap(v, _) => v,
        }
    }
}

impl std::ops::DerefMut for Chunk {
    /// The received bytes, writable in place (TLS records are decrypted
    /// where they arrived).
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.inner {
            ChunkInner::Uring(r) => r.bytes_mut(),
            ChunkInner::Heap(v, _) => v,
        }
    }
}

impl Chunk {
    /// Whether the bytes sit in a buffer of the shard's pool.
    pub fn is_pooled(&self) -> bool {
        matches!(
            self.inner,
            ChunkInner::Uring(uring::net::Received::Pool { .. })
        )
    }

    /// Wraps bytes already received into a heap buffer.
    pub fn from_vec(v: Vec<u8>) -> Chunk {
        Chunk {
            inner: ChunkInner::Heap(v, true),
        }
    }

    /// Gives the buffer up: a pool buffer goes back to the pool (`None`); a
    /// reusable heap buffer is returned, to pass to the next
    /// [`Conn::recv`].
    pub fn recycle(self) -> Option<Vec<u8>> {
        match self.inner {
            ChunkInner::Uring(_) => None,
            ChunkInner::Heap(v, keep) => keep.then_some(v),
        }
    }
}

/// A connected TCP socket driven by io_uring reads and writes.
pub struct Conn {
    inner: ConnInner,
}

enum ConnInner {
    Uring(uring::net::Conn),
    Tokio(tokio_uring::net::TcpStream),
    Epoll(tokio::net::TcpStream),
}

impl Conn {
    /// Connects to `addr` (an io_uring `connect`).
    pub async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let inner = if uring::is_current() {
            ConnInner::Uring(uring::net::Conn::connect(addr).await?)
        } else if epoll::is_current() {
            ConnInner::Epoll(tokio::net::TcpStream::connect(addr).await?)
        } else {
            ConnInner::Tokio(tokio_uring::net::TcpStream::connect(addr).await?)
        };
        Ok(Conn { inner })
    }

    /// Wraps a connected std socket. Must be called inside a [`Runtime`].
    /// Fails only on the epoll backend, if the socket cannot be registered
    /// with epoll (the socket is closed then).
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<Conn> {
        let inner = if uring::is_current() {
            ConnInner::Uring(uring::net::Conn::from_std(stream))
        } else if epoll::is_current() {
            ConnInner::Epoll(epoll::register(stream)?)
        } else {
            ConnInner::Tokio(tokio_uring::net::TcpStream::from_std(stream))
        };
        Ok(Conn { inner })
    }

    /// Reads into the spare capacity of `buf` (after its current length) and
    /// returns the buffer with its length grown by the bytes read. `Ok(0)`
    /// means the peer closed its sending side.
    ///
    /// Not for a socket that [`recv`](Self::recv) has read: on the uring
    /// backend its receive stays armed (multishot) and would take bytes
    /// ahead of this read. Use one or the other per socket.
    pub async fn read(&self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        match &self.inner {
            ConnInner::Uring(c) => c.read(buf).await,
            ConnInner::Tokio(c) => c.read(buf).await,
            ConnInner::Epoll(c) => epoll::read(c, buf).await,
        }
    }

    /// Receives what arrives next. On the uring backend the kernel picks a
    /// buffer from the shard's pool when data arrives (an idle connection
    /// waiting here holds none); on tokio-uring, `spare` (from
    /// [`Chunk::recycle`]) or a new buffer of `initial` bytes is read into,
    /// grown to `max` bytes once a read fills it. An empty chunk means the
    /// peer closed its sending side.
    pub async fn recv(
        &self,
        spare: Option<Vec<u8>>,
        initial: usize,
        max: usize,
    ) -> io::Result<Chunk> {
        self.recv_hinted(spare, initial, max, false).await
    }

    /// [`recv`](Self::recv); with `answer` (a read of the peer's answer to
    /// what was just written) the uring backend has the kernel wait for
    /// data before it tries, instead of a first attempt that would find
    /// the socket empty.
    pub async fn recv_hinted(
        &self,
        spare: Option<Vec<u8>>,
        initial: usize,
        max: usize,
        answer: bool,
    ) -> io::Result<Chunk> {
        match &self.inner {
            ConnInner::Uring(c) => {
                drop(spare);
                let r = c.recv(max, answer).await?;
                Ok(Chunk {
                    inner: ChunkInner::Uring(r),
                })
            }
            ConnInner::Tokio(_) | ConnInner::Epoll(_) => {
                let mut buf = spare.unwrap_or_else(|| Vec::with_capacity(initial));
                buf.clear();
                let (res, mut buf) = match &self.inner {
                    ConnInner::Epoll(c) => epoll::read(c, buf).await,
                    ConnInner::Tokio(c) => c.read(buf).await,
                    ConnInner::Uring(_) => unreachable!("matched above"),
                };
                let n = res?;
                if n == buf.capacity() && n < max {
                    buf.reserve_exact(max - n);
                }
                Ok(Chunk {
                    inner: ChunkInner::Heap(buf, true),
                })
            }
        }
    }

    /// Writes all of `buf` (looping over short writes) and gives it back.
    pub async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        match &self.inner {
            ConnInner::Uring(c) => c.write_all(buf).await,
            ConnInner::Tokio(c) => c.write_all(buf).await,
            ConnInner::Epoll(c) => epoll::write_all(c, buf).await,
        }
    }

    /// [`write_all`](Self::write_all); with `fin_next`, these are the last
    /// bytes before a [`shutdown_write`](Self::shutdown_write) that must
    /// follow at once. On the uring backend they are then sent with
    /// `MSG_MORE`: the kernel holds a last partial segment back until the
    /// shutdown, which sends it with the FIN, one packet instead of two. On
    /// tokio-uring, a plain write.
    pub async fn write_all_fin_next(
        &self,
        buf: Vec<u8>,
        fin_next: bool,
    ) -> (io::Result<()>, Vec<u8>) {
        match &self.inner {
            ConnInner::Uring(c) if fin_next => c.write_all_more(buf).await,
            ConnInner::Uring(c) => c.write_all(buf).await,
            ConnInner::Tokio(c) => c.write_all(buf).await,
            ConnInner::Epoll(c) => epoll::write_all(c, buf).await,
        }
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        socket2::SockRef::from(&BorrowedSock(self.raw_fd())).set_tcp_nodelay(on)
    }

    /// Half-closes our sending side (FIN), after a TLS `close_notify`.
    pub fn shutdown_write(&self) {
        shutdown_fd(self.raw_fd(), Shutdown::Write);
    }

    /// Shuts the socket down in both directions so that any pending
    /// operation completes and the fd is released once this `Conn` drops.
    pub fn abort(&self) {
        match &self.inner {
            ConnInner::Uring(c) => c.abort(),
            ConnInner::Tokio(_) | ConnInner::Epoll(_) => shutdown_fd(self.raw_fd(), Shutdown::Both),
        }
    }

    /// Bytes received by the kernel and not yet read (`FIONREAD`); a
    /// syscall, for rare paths such as deciding whether a draining
    /// connection is idle.
    pub fn unread_bytes(&self) -> usize {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the valid pointer we
        // pass; the fd is this live socket.
        let rc = unsafe { libc::ioctl(self.raw_fd(), libc::FIONREAD, &mut n) };
        if rc == 0 {
            usize::try_from(n).unwrap_or(0)
        } else {
            0
        }
    }

    /// Starts receiving now, for the next [`recv`](Self::recv) (or
    /// [`recv_hinted`](Self::recv_hinted)) to take: a caller can wait for
    /// data ([`recv_started`](Self::recv_started)) without giving up the
    /// receive if it stops waiting. `false` where the backend cannot (on
    /// tokio-uring, or without a buffer pool): nothing was started.
    pub fn start_recv(&self) -> bool {
        match &self.inner {
            ConnInner::Uring(c) => c.start_recv(),
            ConnInner::Tokio(_) | ConnInner::Epoll(_) => false,
        }
    }

    /// Waits until the receive [`start_recv`](Self::start_recv) started has
    /// completed (data, EOF or an error), leaving its result for the next
    /// `recv`. Dropping this future loses nothing. Ready at once if none
    /// was started.
    pub async fn recv_started(&self) {
        std::future::poll_fn(|cx| match &self.inner {
            ConnInner::Uring(c) if !c.poll_started_recv(cx) => std::task::Poll::Pending,
            _ => std::task::Poll::Ready(()),
        })
        .await
    }

    /// Whether a receive started by [`start_recv`](Self::start_recv) has
    /// completed and waits to be taken.
    pub fn started_recv_done(&self) -> bool {
        match &self.inner {
            ConnInner::Uring(c) => c.started_recv_done(),
            ConnInner::Tokio(_) | ConnInner::Epoll(_) => false,
        }
    }

    /// The uring backend's multishot receive: completions waiting and
    /// whether the kernel still holds it (`None`: none armed).
    #[cfg(test)]
    pub(crate) fn multishot_state(&self) -> Option<(usize, bool)> {
        match &self.inner {
            ConnInner::Uring(c) => c.multishot_state(),
            ConnInner::Tokio(_) | ConnInner::Epoll(_) => None,
        }
    }

    /// The raw fd, for socket options set from outside (e.g. `SO_LINGER`).
    pub fn raw_fd(&self) -> RawFd {
        match &self.inner {
            ConnInner::Uring(c) => c.raw_fd(),
            ConnInner::Tokio(c) => c.as_raw_fd(),
            ConnInner::Epoll(c) => c.as_raw_fd(),
        }
    }
}

impl std::os::fd::AsFd for Conn {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the fd is owned by this `Conn` (by its backend's socket)
        // and stays open for as long as `self` is borrowed.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.raw_fd()) }
    }
}

/// A socket fd borrowed for `socket2::SockRef`.
struct BorrowedSock(RawFd);

impl std::os::fd::AsFd for BorrowedSock {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the fd belongs to a live `Conn` that outlives this
        // short-lived wrapper (used within one method call).
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.0) }
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
