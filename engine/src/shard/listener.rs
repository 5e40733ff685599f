//! Listening sockets: one per shard, all on the same address with
//! `SO_REUSEPORT`, so the kernel spreads new connections across shards.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

/// Binds `n` listening sockets on `addr`. With port 0, the first socket's
/// assigned port is reused for the rest, so all shards share one port.
pub fn bind_all(
    addr: SocketAddr,
    n: usize,
    backlog: u32,
) -> io::Result<Vec<std::net::TcpListener>> {
    let mut out = Vec::with_capacity(n);
    let mut addr = addr;
    for _ in 0..n {
        let l = bind_one(addr, backlog)?;
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// One `SO_REUSEPORT` listener (IPv6 sockets are IPv6-only).
pub fn bind_one(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
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
    s.bind(&addr.into())?;
    s.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(s.into())
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
        let ls = bind_all("127.0.0.1:0".parse().expect("addr"), 3, 16).expect("bind");
        let port = ls[0].local_addr().expect("addr").port();
        assert_ne!(port, 0);
        assert!(ls
            .iter()
            .all(|l| l.local_addr().expect("addr").port() == port));
    }
}
