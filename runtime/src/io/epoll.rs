//! The `epoll` backend: tokio's current-thread runtime on its epoll
//! reactor, tasks on a `LocalSet`, sockets as `tokio::net::TcpStream`.
//!
//! For where io_uring is fenced off (Docker's and containerd's default
//! seccomp profiles, `kernel.io_uring_disabled`, old kernels): the same
//! `Runtime`, `Listener`, `Conn`, `spawn` and timers, with readiness then
//! `read(2)`/`write(2)` instead of ring operations. Nothing is ever in
//! flight in the kernel, so dropping a read or a write loses nothing that
//! was not yet returned, and `settle` has nothing to wait for.
//!
//! Buffers keep the boundary's shape (`Vec<u8>` in, `Vec<u8>` out), so the
//! code above does not know which backend runs.

use std::cell::Cell;
use std::future::Future;
use std::io;

thread_local! {
    /// An epoll runtime runs on this thread (inside `block_on`).
    static CURRENT: Cell<bool> = const { Cell::new(false) };
}

/// Whether an epoll runtime is running on this thread.
pub(crate) fn is_current() -> bool {
    CURRENT.with(|c| c.get())
}

/// A per-thread epoll runtime.
pub(crate) struct Runtime {
    rt: tokio::runtime::Runtime,
    local: tokio::task::LocalSet,
}

impl Runtime {
    pub(crate) fn new() -> io::Result<Runtime> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        Ok(Runtime {
            rt,
            local: tokio::task::LocalSet::new(),
        })
    }

    pub(crate) fn block_on<F: Future>(&self, fut: F) -> F::Output {
        struct Restore(bool);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(CURRENT.with(|c| c.replace(true)));
        self.local.block_on(&self.rt, fut)
    }
}

/// Registers a connected socket with this thread's epoll reactor.
pub(crate) fn register(stream: std::net::TcpStream) -> io::Result<tokio::net::TcpStream> {
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}

/// Reads into the spare capacity of `buf` (grown if it has none).
pub(crate) async fn read(
    s: &tokio::net::TcpStream,
    mut buf: Vec<u8>,
) -> (io::Result<usize>, Vec<u8>) {
    if buf.capacity() == buf.len() {
        buf.reserve(4096);
    }
    loop {
        if let Err(e) = s.readable().await {
            return (Err(e), buf);
        }
        match s.try_read_buf(&mut buf) {
            Ok(n) => return (Ok(n), buf),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return (Err(e), buf),
        }
    }
}

/// Writes all of `buf` (short writes continue where they stopped).
pub(crate) async fn write_all(
    s: &tokio::net::TcpStream,
    buf: Vec<u8>,
) -> (io::Result<()>, Vec<u8>) {
    let mut off = 0;
    while off < buf.len() {
        if let Err(e) = s.writable().await {
            return (Err(e), buf);
        }
        match s.try_write(&buf[off..]) {
            Ok(0) => {
                return (
                    Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket wrote 0 bytes",
                    )),
                    buf,
                )
            }
            Ok(n) => off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return (Err(e), buf),
        }
    }
    (Ok(()), buf)
}
