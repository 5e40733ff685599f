//! Listening sockets: one per shard, all on the same address with
//! `SO_REUSEPORT`, so the kernel spreads new connections across shards.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

/// How each shard's listening socket is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenOptions {
    /// Accept-queue length.
    pub backlog: u32,
    /// `TCP_DEFER_ACCEPT`: the kernel hands a connection over only once
    /// its first bytes arrived (the ClientHello: TLS clients speak first),
    /// waiting at most this long (whole seconds, rounded up); zero: off.
    /// A peer that connects and says nothing costs no descriptor (no
    /// measurable CPU change for clients that speak at once).
    pub defer_accept: std::time::Duration,
}

impl ListenOptions {
    /// A backlog, without deferred accept.
    #[cfg(test)]
    pub fn backlog(backlog: u32) -> ListenOptions {
        ListenOptions {
            backlog,
            defer_accept: std::time::Duration::ZERO,
        }
    }
}

/// Binds `n` listening sockets on `addr`. With port 0, the first socket's
/// assigned port is reused for the rest, so all shards share one port.
pub fn bind_all(
    addr: SocketAddr,
    n: usize,
    opts: ListenOptions,
) -> io::Result<Vec<std::net::TcpListener>> {
    let mut out = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n {
        let l = bind_one(addr, opts)?;
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// One `SO_REUSEPORT` listener (IPv6 sockets are IPv6-only).
pub fn bind_one(addr: SocketAddr, opts: ListenOptions) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_tcp_nodelay(true)?;
    set_defer_accept(&s, opts.defer_accept)?;
    s.bind(&addr.into())?;
    s.listen(i32::try_from(opts.backlog).unwrap_or(i32::MAX))?;
    Ok(s.into())
}

/// Sets `TCP_DEFER_ACCEPT` (seconds, a part second counts as one);
/// socket2 has no setter for it.
fn set_defer_accept(s: &Socket, d: std::time::Duration) -> io::Result<()> {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let secs = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    // SAFETY: `s` is an open socket for the duration of the call; the
    // option value is a c_int that outlives it, and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(s),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::addr_of!(secs).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How long a listening socket that stops keeps its accept queue before
/// closing: packets that got past its filter just before it was attached
/// finish meanwhile (their processing in the kernel takes microseconds; the
/// margin covers a virtual CPU descheduled in the middle of one).
pub const STRAGGLER_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// One classic BPF instruction, `ret #0`: drop the packet.
const DROP_ALL: [socket2::SockFilter; 1] = [socket2::SockFilter::new(
    (libc::BPF_RET | libc::BPF_K) as u16,
    0,
    0,
    0,
)];

/// Whether the kernel moves connections from a closing `SO_REUSEPORT`
/// listener to the others (`net.ipv4.tcp_migrate_req`, per network namespace).
pub fn migration_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req").is_ok_and(|v| v.trim() == "1")
}

/// Makes a listening socket that is about to close drop every packet.
///
/// Closing a listener while the kernel completes a handshake on it (the
/// client's ACK is processed as the socket closes) resets that connection,
/// even with `tcp_migrate_req` (the kernel checks the listener's state,
/// then finds it closed when it queues the new connection; seen in the
/// upgrade test, see `docs/deployment.md`). With this filter, no handshake
/// completes on the socket any more: a SYN is dropped (the client sends it
/// again after about 1 s, and it reaches a listener that remains), an ACK
/// is dropped (the half-open connection moves, with `tcp_migrate_req`, to
/// another listener at its next packet or SYN-ACK retransmit). After
/// [`STRAGGLER_PAUSE`], the accept queue holds everything that completed,
/// and closing the socket races with nothing.
///
/// Only useful with `tcp_migrate_req` on ([`migration_enabled`]): without
/// it, the half-open connections it leaves are reset at the close anyway.
pub fn stop_completing_handshakes(listener: BorrowedFd<'_>) -> io::Result<()> {
    socket2::SockRef::from(&listener).attach_filter(&DROP_ALL)
}

/// Removes the filter a connection inherited from its listener if its
/// handshake completed while [`stop_completing_handshakes`] was attached.
pub fn clear_inherited_filter(conn: BorrowedFd<'_>) {
    // ENOENT (no filter) is the usual answer and harmless.
    let _ = socket2::SockRef::from(&conn).detach_filter();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_listeners_share_an_ephemeral_port() {
        let ls = bind_all(
            "127.0.0.1:0".parse().expect("addr"),
            3,
            ListenOptions::backlog(16),
        )
        .expect("bind");
        let port = ls[0].local_addr().expect("addr").port();
        assert_ne!(port, 0);
        assert!(ls
            .iter()
            .all(|l| l.local_addr().expect("addr").port() == port));
    }
}
