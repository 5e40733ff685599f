//! `sd_notify`: tells systemd (`Type=notify` / `notify-reload`) that the
//! engine is ready, reloading or stopping, by sending a datagram to
//! `$NOTIFY_SOCKET` (a path, or an abstract name when it starts with `@`).
//! Outside systemd (no variable) every call is a no-op.

use std::io;
use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET`. Returns `Ok(false)`
/// when not run under a supervisor that asked for notifications.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let sock = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), &path)?;
    }
    Ok(true)
}

/// `READY=1`: listening, privileges dropped, serving.
pub fn ready() {
    send("READY=1");
}

/// `STOPPING=1`: draining after SIGTERM/SIGINT.
pub fn stopping() {
    send("STOPPING=1");
}

/// `RELOADING=1` with the `MONOTONIC_USEC` that `Type=notify-reload`
/// requires; call [`ready`] when the reload is done (or failed).
pub fn reloading() {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000;
    send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

fn send(state: &str) {
    if let Err(e) = notify(state) {
        tracing::warn!(error = %e, state, "cannot notify the service manager ($NOTIFY_SOCKET)");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn datagrams_reach_a_path_socket() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("notify");
        let rx = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        // Setting the variable is process-wide; this is the only test that
        // touches it.
        std::env::set_var("NOTIFY_SOCKET", &path);
        assert!(super::notify("READY=1").expect("send"));
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }
}
