//! Sockets on the `uring` backend.

use super::{driver, Driver};
use io_uring::{cqueue, opcode, types};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;

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

/// A connected TCP socket.
pub(crate) struct Conn {
    fd: OwnedFd,
}

impl Conn {
    pub(crate) fn from_std(s: std::net::TcpStream) -> Conn {
        Conn { fd: s.into() }
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
        let (res, _, _) = driver().submit(e, sa).await;
        if res < 0 {
            return Err(os_err(res));
        }
        Ok(Conn {
            fd: OwnedFd::from(sock),
        })
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Receives into the spare capacity of `buf`.
    pub(crate) async fn read(&self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        let len = buf.len();
        let spare = buf.capacity() - len;
        // SAFETY: pointer into the Vec's own allocation, `spare` bytes
        // available; the Vec moves into the op (its heap memory does not
        // move) and is kept until the completion.
        let ptr = unsafe { buf.as_mut_ptr().add(len) };
        let e = opcode::Recv::new(types::Fd(self.raw_fd()), ptr, spare as u32).build();
        let (res, _, mut buf) = driver().submit(e, buf).await;
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
    pub(crate) async fn recv(&self, heap_size: usize) -> io::Result<Received> {
        let d = driver();
        if d.bufs.is_some() {
            let e = opcode::Recv::new(types::Fd(self.raw_fd()), std::ptr::null_mut(), 0)
                .buf_group(super::bufring::BGID)
                .build()
                .flags(io_uring::squeue::Flags::BUFFER_SELECT);
            let (res, flags, ()) = d.submit(e, ()).await;
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
            if let Some(bid) = bid {
                if let Some(b) = &d.bufs {
                    b.give_back(bid);
                }
            }
            if res != -libc::ENOBUFS {
                return Err(os_err(res));
            }
        }
        let (res, buf) = self.read(Vec::with_capacity(heap_size)).await;
        res.map(|_| Received::Heap(buf))
    }

    /// Sends all of `buf`.
    pub(crate) async fn write_all(&self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let d = driver();
        let mut off = 0;
        let mut buf = buf;
        while off < buf.len() {
            // SAFETY: `off` < len; the Vec's heap memory stays put inside
            // the op until the completion.
            let ptr = unsafe { buf.as_ptr().add(off) };
            let e = opcode::Send::new(types::Fd(self.raw_fd()), ptr, (buf.len() - off) as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build();
            let (res, _, b) = d.submit(e, buf).await;
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

/// A listening socket: a poll through the ring for readiness, then
/// `accept4` until the queue is empty.
pub(crate) struct Listener {
    inner: std::net::TcpListener,
}

impl Listener {
    pub(crate) fn from_std(l: std::net::TcpListener) -> io::Result<Listener> {
        l.set_nonblocking(true)?;
        Ok(Listener { inner: l })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    pub(crate) async fn accept(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        loop {
            match self.inner.accept() {
                Ok(got) => return Ok(got),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let e = opcode::PollAdd::new(types::Fd(self.inner.as_raw_fd()), libc::POLLIN as u32)
                .build();
            let (res, _, ()) = driver().submit(e, ()).await;
            if res < 0 && res != -libc::ECANCELED {
                return Err(os_err(res));
            }
        }
    }

    /// Cancels any readiness poll left in flight (it holds a reference to
    /// the socket, which would keep it in the `SO_REUSEPORT` group), then
    /// accepts what is queued and closes the socket.
    pub(crate) async fn close(self) -> Vec<(std::net::TcpStream, SocketAddr)> {
        let d = driver();
        let cancel = opcode::AsyncCancel2::new(
            types::CancelBuilder::fd(types::Fd(self.inner.as_raw_fd())).all(),
        )
        .build();
        let _ = d.submit(cancel, ()).await;
        super::settle().await;
        let mut queued = Vec::new();
        while let Ok(got) = self.inner.accept() {
            queued.push(got);
        }
        drop(self.inner);
        queued
    }
}
