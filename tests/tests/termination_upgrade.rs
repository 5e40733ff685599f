//! Zero-downtime upgrade: a new process starts on the same address
//! (SO_REUSEPORT), the old one gets SIGTERM, stops accepting and drains,
//! and clients looping all along see no failed connection attempt (echo
//! service, and http with one request per connection).
//!
//! The procedure needs `net.ipv4.tcp_migrate_req = 1` (documented in
//! `docs/deployment.md`): without it, a connection the kernel queued on the
//! old listener in the microseconds between its last accept and its close
//! is reset. Even with it, a handshake completing as the listener closes
//! was reset (about once in 300 runs under load) until stopping shards
//! filtered their listener first. The test does not touch the host's
//! setting: it runs in a network namespace of its own (root needed;
//! skipped outside CI without). A failure lists the kernel's TCP counters
//! of that namespace with the errors.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use uringtls_tests::{
    client_config, in_ci, read_response, start_engine, test_certs, tls_over, EngineProc,
};

/// Moves this thread (and what it spawns: the engines, the client
/// threads) into a new network namespace with loopback up and
/// `tcp_migrate_req` on. False if that is not permitted here.
fn private_netns_with_migration() -> bool {
    // SAFETY: unshare(CLONE_NEWNET) takes no pointers; it only moves the
    // calling thread to a new network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        let e = std::io::Error::last_os_error();
        assert!(
            !in_ci(),
            "CI runs as root and must be able to create a network namespace: {e}"
        );
        eprintln!("skipping: cannot create a network namespace ({e})");
        return false;
    }
    let up = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    assert!(up.is_ok_and(|s| s.success()), "ip link set lo up failed");
    // /proc/sys/net resolves to the writing thread's namespace.
    std::fs::write("/proc/sys/net/ipv4/tcp_migrate_req", "1")
        .expect("enable tcp_migrate_req in the test's namespace");
    true
}

/// The service under upgrade, and what one client exchange is.
#[derive(Clone, Copy)]
enum Service {
    /// `ping` echoed: a connection the drain never cuts short.
    Echo,
    /// One HTTP request, answered: the drain closes idle keep-alive
    /// connections, which must not include one whose request is on its way.
    Http,
}

fn engine(certs: &uringtls_tests::TestCerts, listen: &str, service: Service) -> EngineProc {
    let service = match service {
        Service::Echo => "echo",
        Service::Http => "http",
    };
    start_engine(&[
        "--listen",
        listen,
        "--shards",
        "2",
        "--service",
        service,
        "--grace",
        "5s",
        "--cert",
        certs.cert.to_str().unwrap(),
        "--key",
        certs.key.to_str().unwrap(),
    ])
}

/// One connection: TCP connect, handshake, one exchange. An error names
/// the step that failed and the client's port, for diagnosis.
fn exchange(
    addr: std::net::SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    service: Service,
) -> Result<(), String> {
    let tcp = std::net::TcpStream::connect(addr).map_err(|e| format!("tcp connect: {e}"))?;
    let port = tcp.local_addr().map(|a| a.port()).unwrap_or(0);
    let step = |what: &str, e: std::io::Error| format!("{what} (client port {port}): {e}");
    let mut c = tls_over(tcp, cfg, "localhost").map_err(|e| step("handshake", e))?;
    let request: &[u8] = match service {
        Service::Echo => b"ping",
        Service::Http => b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    };
    c.write_all(request).map_err(|e| step("write", e))?;
    c.flush().map_err(|e| step("write", e))?;
    match service {
        Service::Echo => {
            let mut b = [0u8; 4];
            c.read_exact(&mut b).map_err(|e| step("read", e))?;
            if &b != b"ping" {
                return Err(format!("wrong echo {b:?}"));
            }
        }
        Service::Http => {
            let (status, _, _) = read_response(&mut c).map_err(|e| step("read", e))?;
            if status != "HTTP/1.1 200 OK" {
                return Err(format!("answer {status:?}"));
            }
        }
    }
    Ok(())
}

/// The kernel's TCP counters (`/proc/net/netstat`, TcpExt) of the test's
/// network namespace that tell how a connection was lost, non-zero only.
fn tcp_loss_counters() -> String {
    const WANTED: [&str; 8] = [
        "ListenOverflows",
        "ListenDrops",
        "TCPMigrateReqSuccess",
        "TCPMigrateReqFailure",
        "TCPAbortOnClose",
        "TCPAbortOnData",
        "SyncookiesSent",
        "SyncookiesFailed",
    ];
    // thread-self: this thread's namespace (the process may be elsewhere).
    let text = std::fs::read_to_string("/proc/thread-self/net/netstat").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return "TcpExt counters unavailable".into();
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .filter(|(n, v)| WANTED.contains(n) && *v != "0")
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the upgrade under a client loop; returns (answered, failed, errors),
/// or `None` when the test cannot run here.
fn upgrade_under_load(service: Service) -> Option<(usize, usize, Vec<String>)> {
    if !private_netns_with_migration() {
        return None;
    }
    let certs = test_certs();
    let mut old = engine(&certs, "127.0.0.1:0", service);
    let addr = old.addr();
    let cfg = client_config(&certs.ca_der, &[&rustls::version::TLS13]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed, errors, cfg) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                errors.clone(),
                cfg.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match exchange(addr, &cfg, service) {
                        Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            errors.lock().unwrap().push(e);
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    let wait_for = |n: usize| {
        let target = ok.load(Ordering::Relaxed) + n;
        while ok.load(Ordering::Relaxed) < target {
            std::thread::yield_now();
        }
    };
    wait_for(50);
    let new = engine(&certs, &addr.to_string(), service);
    assert_eq!(new.addr(), addr);
    wait_for(50);
    let status = old.stop();
    assert!(
        status.success(),
        "old process exits cleanly after draining: {status:?}"
    );
    old.wait_for_stderr("all shards drained");
    wait_for(100);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let mut errs = errors.lock().unwrap().clone();
    errs.push(format!("kernel: {}", tcp_loss_counters()));
    Some((
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        errs,
    ))
}

#[test]
fn upgrade_by_starting_the_new_process_and_stopping_the_old_fails_no_connection() {
    let Some((ok, failed, errs)) = upgrade_under_load(Service::Echo) else {
        return;
    };
    assert!(ok >= 200, "too few answered: {ok}");
    assert_eq!(failed, 0, "ok {ok}; errors: {errs:?}");
}

#[test]
fn upgrade_of_the_http_service_fails_no_request() {
    let Some((ok, failed, errs)) = upgrade_under_load(Service::Http) else {
        return;
    };
    assert!(ok >= 200, "too few answered: {ok}");
    assert_eq!(failed, 0, "ok {ok}; errors: {errs:?}");
}
