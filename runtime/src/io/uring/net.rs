//! Sockets on the `uring` backend.

use super::{driver, Driver, MultiOp, Op};
use io_uring::{cqueue, opcode, types};
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

fn os_err(res: i32) -> io::Error {
    io::Error::from_raw_os_error(-res)
}

/// Bytes received: a pool buffer (given back on drop) or a heap buffer.
pub(crate) enum Received {
    Pool {
        driver: Rc<Driver>,
        bid: u16,
        len: usize,
    },
    Heap(Vec<u8>),
}

impl Received {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Received::Pool { driver, bid, len } => match &driver.bufs {
                // SAFETY: the kernel reported `bid` with `len` bytes in a
                // completion, and the buffer goes back only when this
                // value drops.
                Some(b) => unsafe { b.slice(*bid, *len) },
                None => &[],
            },
            Received::Heap(v) => v,
        }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Received::Pool { driver, bid, len } => match &driver.bufs {
                // SAFETY: as in `bytes`; `&mut self` makes this the only
                // view of the buffer until it is given back.
                Some(b) => unsafe { b.slice_mut(*bid, *len) },
                None => &mut [],
            },
            Received::Heap(v) => v,
        }
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        if let Received::Pool { driver, bid, .. } = self {
            if let Some(b) = &driver.bufs {
                b.give_back(*bid);
            }
        }
    }
}

/// What a multishot receive gave.
enum MultiRecv {
    Got(io::Result<Received>),
    /// The pool is empty: read into a heap buffer.
    PoolEmpty,
    /// The kernel refused it: use single-shot receives.
    Refused,
}

/// A connected TCP socket.
///
/// Pool receives are multishot where the driver says so
/// ([`Driver::recv_multishot`]): the first [`recv`](Conn::recv) arms one
/// receive that stays in the kernel across reads, each arrival of data
/// completing it once with a pool buffer, so a request-response
/// connection submits nothing per read. Completions not yet taken wait in
/// the driver, in order. A connection that is not read holds only a few
/// pool buffers: the kernel ends the receive after
/// [`MULTI_RECV_BYTES`](super::MULTI_RECV_BYTES) (Linux 6.16+), and the
/// driver cancels it at [`MULTI_QUEUE_CAP`](super::MULTI_QUEUE_CAP)
/// completions untaken; the next `recv` arms it again once they are taken.
/// Otherwise (`--recv-multishot false`, or a kernel that refuses the byte
/// limit) each read submits a single-shot pool receive.
pub(crate) struct Conn {
    fd: OwnedFd,
    /// A receive started ahead of the read that takes it: single-shot (see
    /// [`Conn::start_recv`]) or the armed multishot receive.
    pending: RefCell<Pending>,
}

enum Pending {
    None,
    Single(Op<()>),
    Multi(MultiOp),
}

impl Conn {
    pub(crate) fn from_std(s: std::net::TcpStream) -> Conn {
        Conn {
            fd: s.into(),
            pending: RefCell::new(Pending::None),
        }
    }

    /// Starts a pool receive now, for the next [`recv`](Self::recv) to
    /// take; meanwhile [`started_recv_done`](Self::started_recv_done) tells
    /// whether it completed. `false` (nothing started) without a pool.
    pub(crate) fn start_recv(&self) -> bool {
        let d = driver();
        if d.bufs.is_none() {
            return false;
        }
        if d.recv_multishot.get() {
            self.arm_multi(&d, false);
        } else {
            let mut pending = self.pending.borrow_mut();
            if matches!(*pending, Pending::None) {
                // SAFETY: a pool receive points at no memory of ours (the
                // kernel picks a buffer of the pool, which outlives it).
                *pending = Pending::Single(unsafe { d.submit(self.pool_recv_entry(false), ()) });
            }
        }
        true
    }

    /// Whether the started receive has completed (registers `cx` to be
    /// woken when it does). `true` also when none was started.
    pub(crate) fn poll_started_recv(&self, cx: &mut Context<'_>) -> bool {
        match &mut *self.pending.borrow_mut() {
            Pending::Single(op) => op.poll_done(cx),
            Pending::Multi(m) => m.poll_ready(cx),
            Pending::None => true,
        }
    }

    /// Whether a started receive completed and waits to be taken.
    pub(crate) fn started_recv_done(&self) -> bool {
        match &*self.pending.borrow() {
            Pending::Single(op) => op.is_done(),
            Pending::Multi(m) => m.has_queued(),
            Pending::None => false,
        }
    }

    /// The multishot receive's completions waiting and whether the kernel
    /// still holds it; `None` if none was armed.
    #[cfg(test)]
    pub(crate) fn multishot_state(&self) -> Option<(usize, bool)> {
        match &*self.pending.borrow() {
            Pending::Multi(m) => Some(m.state()),
            _ => None,
        }
    }

    /// Shuts the socket down both ways, which completes every operation on
    /// it: an armed multishot receive ends with end of file, so dropping it
    /// needs no cancel.
    pub(crate) fn abort(&self) {
        // SAFETY: shutdown(2) on the socket this Conn owns; it neither
        // closes nor invalidates the fd.
        let rc = unsafe { libc::shutdown(self.raw_fd(), libc::SHUT_RDWR) };
        if rc == 0 {
            if let Pending::Multi(m) = &*self.pending.borrow() {
                m.ends_by_shutdown();
            }
        }
    }

    /// Arms the multishot receive unless one can still deliver.
    fn arm_multi(&self, d: &Rc<Driver>, poll_first: bool) {
        let mut pending = self.pending.borrow_mut();
        if matches!(&*pending, Pending::Multi(m) if m.is_live()) {
            return;
        }
        // An ended receive's slot is released before the new one takes one.
        *pending = Pending::None;
        let ioprio = IORING_RECV_MULTISHOT
            | if poll_first {
                IORING_RECVSEND_POLL_FIRST
            } else {
                0
            };
        let recv = opcode::RecvMulti::new(types::Fd(self.raw_fd()), super::bufring::BGID);
        #[cfg(test)]
        let recv = if d.refuse_multishot.get() {
            recv.flags(libc::MSG_WAITALL)
        } else {
            recv
        };
        let e = recv.build();
        let e = with_optlen(with_ioprio(e, ioprio), super::MULTI_RECV_BYTES);
        // SAFETY: a multishot receive with buffer selection points only
        // into the provided-buffer pool.
        *pending = Pending::Multi(unsafe { d.submit_multi(e) });
    }

    /// The multishot receive's next completion; `None` if it has ended
    /// with every completion taken (or none is armed).
    fn poll_multi(&self, cx: &mut Context<'_>) -> Poll<Option<(i32, u32)>> {
        match &mut *self.pending.borrow_mut() {
            Pending::Multi(m) => m.poll_next(cx),
            _ => Poll::Ready(None),
        }
    }

    /// A pool receive through the multishot receive.
    async fn recv_multi(&self, d: &Rc<Driver>, poll_first: bool) -> MultiRecv {
        loop {
            self.arm_multi(d, poll_first);
            let Some((res, flags)) = std::future::poll_fn(|cx| self.poll_multi(cx)).await else {
                // Ended after its last completion was taken: arm again.
                continue;
            };
            let bid = cqueue::buffer_select(flags);
            if res >= 0 {
                d.recv_multishot_seen.set(true);
                return MultiRecv::Got(Ok(match bid {
                    Some(bid) => Received::Pool {
                        driver: d.clone(),
                        bid,
                        len: res as usize,
                    },
                    // End of file: no buffer was picked.
                    None => Received::Heap(Vec::new()),
                }));
            }
            d.give_back_selected(flags);
            match -res {
                // The driver capped the queue: its completions were taken.
                libc::ECANCELED => continue,
                libc::ENOBUFS => return MultiRecv::PoolEmpty,
                // A kernel before 6.16 refuses the byte limit (`optlen`).
                libc::EINVAL if !d.recv_multishot_seen.get() => {
                    *self.pending.borrow_mut() = Pending::None;
                    return MultiRecv::Refused;
                }
                _ => return MultiRecv::Got(Err(os_err(res))),
            }
        }
    }

    fn pool_recv_entry(&self, poll_first: bool) -> io_uring::squeue::Entry {
        let e = opcode::Recv::new(types::Fd(self.raw_fd()), std::ptr::null_mut(), 0)
            .buf_group(super::bufring::BGID)
            .build()
            .flags(io_uring::squeue::Flags::BUFFER_SELECT);
        if poll_first {
            with_ioprio(e, IORING_RECVSEND_POLL_FIRST)
        } else {
            e
        }
    }

    pub(crate) async fn connect(addr: SocketAddr) -> io::Result<Conn> {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        let sa = Box::new(socket2::SockAddr::from(addr));
        let e =
            opcode::Connect::new(types::Fd(sock.as_raw_fd()), sa.as_ptr().cast(), sa.len()).build();
        // SAFETY: the address is in `sa`'s heap allocation, which the op
        // keeps until the completion.
        let (res, _, _) = unsafe { driver().submit(e, sa) }.await;
        if res < 0 {
            return Err(os_err(res));
        }
        Ok(Conn {
            fd: OwnedFd::from(sock),
            pending: RefCell::new(Pending::None),
        })
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Receives into the spare capacity of `buf`.
    pub(crate) async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        debug_assert!(
            match &*self.pending.borrow() {
                Pending::None => true,
                Pending::Single(_) => false,
                Pending::Multi(m) => !m.is_live(),
            },
            "a read on a socket whose receive (recv) is still armed would take bytes out of order"
        );
        let len = buf.len();
        let spare = buf.capacity() - len;
        // SAFETY: pointer into the Vec's own allocation, `spare` bytes
        // available; the Vec moves into the op (its heap memory does not
        // move) and is kept until the completion.
        let ptr = unsafe { buf.as_mut_ptr().add(len) };
        let e = opcode::Recv::new(types::Fd(self.raw_fd()), ptr, spare as u32).build();
        // SAFETY: `ptr` points into `buf`'s heap allocation (above), which
        // the op keeps until the completion.
        let (res, _, mut buf) = unsafe { driver().submit(e, buf) }.await;
        if res < 0 {
            return (Err(os_err(res)), buf);
        }
        let n = res as usize;
        // SAFETY: the kernel wrote `n` <= spare bytes after `len`.
        unsafe { buf.set_len(len + n) };
        (Ok(n), buf)
    }

    /// Receives into a buffer the kernel picks from the shard's pool when
    /// data arrives; a heap buffer when the pool is empty (or missing).
    ///
    /// With `poll_first` the kernel waits for data before it tries the
    /// receive (`IORING_RECVSEND_POLL_FIRST`): for a read that follows our
    /// own write, whose answer cannot have arrived yet, this skips a
    /// receive attempt that would find the socket empty.
    pub(crate) async fn recv(&self, heap_size: usize, poll_first: bool) -> io::Result<Received> {
        let d = driver();
        if d.bufs.is_some() && d.recv_multishot.get() {
            match self.recv_multi(&d, poll_first).await {
                MultiRecv::Got(r) => return r,
                MultiRecv::PoolEmpty => return self.recv_heap(heap_size).await,
                MultiRecv::Refused => {
                    if d.recv_multishot.replace(false) {
                        tracing::info!("the kernel refused a multishot receive with a byte limit (Linux 6.16+): single-shot receives on this shard");
                    }
                }
            }
        }
        if d.bufs.is_some() {
            let started = match std::mem::replace(&mut *self.pending.borrow_mut(), Pending::None) {
                Pending::Single(op) => Some(op),
                _ => None,
            };
            let op = match started {
                Some(op) => op,
                // SAFETY: a pool receive points only into the pool.
                None => unsafe { d.submit(self.pool_recv_entry(poll_first), ()) },
            };
            let (res, flags, ()) = op.await;
            let bid = cqueue::buffer_select(flags);
            if res >= 0 {
                return Ok(match bid {
                    Some(bid) => Received::Pool {
                        driver: d,
                        bid,
                        len: res as usize,
                    },
                    None => Received::Heap(Vec::new()),
                });
            }
            d.give_back_selected(flags);
            if res != -libc::ENOBUFS {
                return Err(os_err(res));
            }
        }
        self.recv_heap(heap_size).await
    }

    /// A receive into a new heap buffer of `heap_size` bytes (no pool, or
    /// the pool is empty).
    async fn recv_heap(&self, heap_size: usize) -> io::Result<Received> {
        let (res, buf) = self.read(Vec::with_capacity(heap_size)).await;
        res.map(|_| Received::Heap(buf))
    }

    /// Sends all of `buf`.
    pub(crate) async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.send_all(buf, 0).await
    }

    /// [`write_all`](Self::write_all) with `MSG_MORE`: the kernel holds a
    /// last partial segment back until the next send or a shutdown, which
    /// then leaves in the same segment as the FIN.
    pub(crate) async fn write_all_more(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.send_all(buf, libc::MSG_MORE).await
    }

    async fn send_all(&self, buf: Vec<u8>, flags: i32) -> (io::Result<()>, Vec<u8>) {
        let d = driver();
        let mut off = 0;
        let mut buf = buf;
        // Set once the socket's send buffer was found full: the ring's send
        // then waits for room before it tries.
        let mut poll_first = false;
        while off < buf.len() {
            let left = buf.len() - off;
            if left >= DIRECT_SEND_MIN && !poll_first {
                // SAFETY: send(2) reads `left` bytes from `buf`'s live
                // allocation at `off` (< len), during the call only.
                let n = unsafe {
                    libc::send(
                        self.raw_fd(),
                        buf.as_ptr().add(off).cast(),
                        left,
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | flags,
                    )
                };
                if n > 0 {
                    off += n as usize;
                    // A short send means the buffer is full: wait for room.
                    poll_first = (n as usize) < left;
                    continue;
                }
                if n == 0 {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "socket sent 0 bytes");
                    return (Err(e), buf);
                }
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EAGAIN) {
                    return (Err(e), buf);
                }
                poll_first = true;
            }
            // SAFETY: `off` < len; the Vec's heap memory stays put inside
            // the op until the completion.
            let ptr = unsafe { buf.as_ptr().add(off) };
            let e = opcode::Send::new(types::Fd(self.raw_fd()), ptr, (buf.len() - off) as u32)
                .flags(libc::MSG_NOSIGNAL | flags)
                .build();
            let e = if poll_first {
                with_ioprio(e, IORING_RECVSEND_POLL_FIRST)
            } else {
                e
            };
            poll_first = false;
            // SAFETY: `ptr` points into `buf`'s heap allocation (above),
            // which the op keeps until the completion.
            let (res, _, b) = unsafe { d.submit(e, buf) }.await;
            buf = b;
            if res < 0 {
                return (Err(os_err(res)), buf);
            }
            if res == 0 {
                return (
                    Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket sent 0 bytes",
                    )),
                    buf,
                );
            }
            off += res as usize;
        }
        (Ok(()), buf)
    }
}

/// Sends of at least this many bytes (bulk responses) try a plain
/// non-blocking `send(2)` first, and go through the ring only once the
/// socket's buffer is full, with `IORING_RECVSEND_POLL_FIRST` (measured:
/// docs/benchmarks.md, session 12); smaller ones always go through the ring,
/// submitted with the loop's next `io_uring_enter`.
const DIRECT_SEND_MIN: usize = 64 * 1024;

/// Accepts kept in flight per listener: connections that arrive together
/// are accepted in one loop turn (the kernel wakes one waiting accept per
/// connection).
const ACCEPTS_IN_FLIGHT: usize = 8;

/// A listening socket, accepting through the ring (`IORING_OP_ACCEPT`,
/// with the peer's address): [`ACCEPTS_IN_FLIGHT`] accepts in flight, owned
/// by the listener rather than by the `accept` future, so that dropping
/// that future loses no connection; [`Listener::close`] cancels them and
/// collects what they accepted.
pub(crate) struct Listener {
    inner: std::net::TcpListener,
    /// Accepts wait for readiness before trying (`IORING_ACCEPT_POLL_FIRST`,
    /// Linux 6.10+; turned off if the kernel refuses it).
    poll_first: std::cell::Cell<bool>,
    pending: RefCell<Vec<Op<Box<PeerAddr>>>>,
    /// Address buffers of completed accepts, for the next ones (boxed:
    /// the kernel writes into one while its accept is in flight, so it
    /// must not move).
    #[allow(clippy::vec_box)]
    spare: RefCell<Vec<Box<PeerAddr>>>,
}

/// Accept flag (in the SQE's `ioprio`): wait for a connection before
/// trying. A failed accept is not cheap: the kernel allocates the new
/// socket and file before it finds the queue empty (measured here: ~9 µs
/// for an `accept4` that returns EAGAIN), and an accept armed right after
/// the queue was drained would fail that way once per connection.
const IORING_ACCEPT_POLL_FIRST: u16 = 1 << 2;

/// Receive flag (in the SQE's `ioprio`, Linux 5.19+): wait for data before
/// trying.
const IORING_RECVSEND_POLL_FIRST: u16 = 1 << 0;
/// Receive flag (in the SQE's `ioprio`, Linux 6.0+): multishot.
const IORING_RECV_MULTISHOT: u16 = 1 << 1;

/// Sets the `ioprio` field of an SQE (the io-uring crate's `Accept`
/// builder does not expose it).
fn with_ioprio(e: io_uring::squeue::Entry, ioprio: u16) -> io_uring::squeue::Entry {
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's 64-byte
    // `io_uring_sqe` (the transmute checks the size), whose `ioprio` is
    // the u16 at byte offset 2 (after `opcode` and `flags`); any value
    // there is a valid byte pattern.
    unsafe {
        let mut raw: [u8; 64] = std::mem::transmute(e);
        raw[2..4].copy_from_slice(&ioprio.to_ne_bytes());
        std::mem::transmute::<[u8; 64], io_uring::squeue::Entry>(raw)
    }
}

/// Sets the `optlen` field of an SQE (the u32 at byte offset 44, shared
/// with `splice_fd_in` and `file_index`): for a multishot receive, the
/// bytes it takes before it ends (Linux 6.16+).
fn with_optlen(e: io_uring::squeue::Entry, optlen: u32) -> io_uring::squeue::Entry {
    // SAFETY: as in `with_ioprio`: the 64-byte `io_uring_sqe`, whose u32
    // union at offset 44 (`splice_fd_in` / `file_index` / `optlen`) takes
    // any value.
    unsafe {
        let mut raw: [u8; 64] = std::mem::transmute(e);
        raw[44..48].copy_from_slice(&optlen.to_ne_bytes());
        std::mem::transmute::<[u8; 64], io_uring::squeue::Entry>(raw)
    }
}

/// Where the kernel writes an accepted connection's peer address.
struct PeerAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl PeerAddr {
    /// The IPv4 or IPv6 address the kernel wrote, if it is one.
    fn socket_addr(&self) -> Option<SocketAddr> {
        let len = self.len as usize;
        match libc::c_int::from(self.storage.ss_family) {
            libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the kernel wrote a `sockaddr_in` (family AF_INET,
                // length checked) at the start of the storage, which is
                // aligned and large enough for any socket address.
                let a = unsafe { &*std::ptr::addr_of!(self.storage).cast::<libc::sockaddr_in>() };
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: as above, a `sockaddr_in6`.
                let a = unsafe { &*std::ptr::addr_of!(self.storage).cast::<libc::sockaddr_in6>() };
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

impl Listener {
    pub(crate) fn from_std(l: std::net::TcpListener) -> io::Result<Listener> {
        // Blocking: the ring's accept then waits for a connection (the
        // kernel arms its own poll) rather than failing with EAGAIN; `close`
        // switches it to nonblocking for its accept4 loop.
        l.set_nonblocking(false)?;
        Ok(Listener {
            inner: l,
            poll_first: std::cell::Cell::new(true),
            pending: RefCell::new(Vec::with_capacity(ACCEPTS_IN_FLIGHT)),
            spare: RefCell::new(Vec::with_capacity(ACCEPTS_IN_FLIGHT)),
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Accepts one connection (cancel-safe: the accept in flight stays with
    /// the listener).
    pub(crate) async fn accept(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(std::net::TcpStream, SocketAddr)>> {
        let mut pending = self.pending.borrow_mut();
        loop {
            while pending.len() < ACCEPTS_IN_FLIGHT {
                pending.push(self.start_accept());
            }
            let ready =
                pending
                    .iter_mut()
                    .enumerate()
                    .find_map(|(i, op)| match Pin::new(op).poll(cx) {
                        Poll::Ready(done) => Some((i, done)),
                        Poll::Pending => None,
                    });
            let Some((i, (res, _, addr))) = ready else {
                return Poll::Pending;
            };
            drop(pending.swap_remove(i));
            // Cancelled only by `close`/drop, which take the ops first: a
            // stray cancel just re-arms.
            if res == -libc::ECANCELED {
                self.spare.borrow_mut().push(addr);
                continue;
            }
            // A kernel older than 6.10 refuses POLL_FIRST: accept without.
            if res == -libc::EINVAL && self.poll_first.replace(false) {
                self.spare.borrow_mut().push(addr);
                for op in pending.drain(..) {
                    op.driver().cancel(op.id());
                }
                continue;
            }
            return Poll::Ready(self.accepted(res, addr));
        }
    }

    fn start_accept(&self) -> Op<Box<PeerAddr>> {
        let mut a = self.spare.borrow_mut().pop().unwrap_or_else(|| {
            Box::new(PeerAddr {
                // SAFETY: sockaddr_storage is plain old data; all zeroes is
                // a valid (unspecified) value.
                storage: unsafe { std::mem::zeroed() },
                len: 0,
            })
        });
        a.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let e = opcode::Accept::new(
            types::Fd(self.inner.as_raw_fd()),
            std::ptr::addr_of_mut!(a.storage).cast(),
            std::ptr::addr_of_mut!(a.len),
        )
        .flags(libc::SOCK_CLOEXEC)
        .build();
        let e = if self.poll_first.get() {
            with_ioprio(e, IORING_ACCEPT_POLL_FIRST)
        } else {
            e
        };
        // SAFETY: the address and its length are in the box's heap
        // memory, which stays put inside the op until the completion (the
        // kernel writes the peer's address there).
        unsafe { driver().submit(e, a) }.with_fd_result()
    }

    /// Turns an accept's completion into a socket and its peer's address.
    fn accepted(
        &self,
        res: i32,
        addr: Box<PeerAddr>,
    ) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        if res < 0 {
            self.spare.borrow_mut().push(addr);
            return Err(os_err(res));
        }
        // SAFETY: the kernel just created fd `res` for us; nobody else
        // owns it.
        let stream = unsafe { std::net::TcpStream::from_raw_fd(res) };
        let peer = addr.socket_addr();
        self.spare.borrow_mut().push(addr);
        match peer {
            Some(peer) => Ok((stream, peer)),
            // Not an IP peer (cannot happen on a TCP listener): ask again.
            None => stream.peer_addr().map(|p| (stream, p)),
        }
    }

    /// Cancels the accepts in flight and waits for their completions (so
    /// that nothing holds a reference to the socket, which would keep it in
    /// the `SO_REUSEPORT` group, and no connection they accepted is lost),
    /// then accepts what is queued and closes the socket.
    pub(crate) async fn close(self) -> Vec<(std::net::TcpStream, SocketAddr)> {
        let mut queued = Vec::new();
        let ops = std::mem::take(&mut *self.pending.borrow_mut());
        let d = driver();
        for op in &ops {
            d.cancel(op.id());
        }
        for op in ops {
            let (res, _, addr) = op.await;
            if res >= 0 {
                if let Ok(got) = self.accepted(res, addr) {
                    queued.push(got);
                }
            }
        }
        if self.inner.set_nonblocking(true).is_ok() {
            while let Ok(got) = self.inner.accept() {
                queued.push(got);
            }
        }
        queued
    }
}

impl Drop for Listener {
    /// Without `close`: cancels the accepts in flight; a connection one
    /// accepted anyway is closed when its completion arrives.
    fn drop(&mut self) {
        for op in self.pending.get_mut().drain(..) {
            op.driver().cancel(op.id());
        }
    }
}
