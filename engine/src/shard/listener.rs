//! Listening sockets: one per shard, all on the same address with
//! `SO_REUSEPORT`, so the kernel spreads new connections across shards.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

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
