//! File-descriptor exhaustion: with the engine started under a low
//! RLIMIT_NOFILE (set in the engine's process only, never in the test's)
//! and the limit reached, accept pauses, existing connections keep working,
//! and new connections are served again once others close. Logged once
//! per episode.

mod operations_common;

use operations_common::{close, get, tls_from, Setup};
use std::os::unix::process::CommandExt;
use uringtls_tests::start_engine_with;

/// Open fds of process `pid` whose number is below `limit` (the ones that
/// take a slot under an `RLIMIT_NOFILE` of `limit`; an fd inherited above
/// it takes none).
fn fds_below(pid: u32, limit: usize) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .map(|e| {
            let name = e.expect("entry").file_name();
            name.to_str()
                .and_then(|s| s.parse::<usize>().ok())
                .expect("fd number")
        })
        .filter(|fd| *fd < limit)
        .count()
}

/// Count of `needle` in the engine's stderr once it appears (the log line
/// is the event).
fn wait_for_log(e: &uringtls_tests::EngineProc, needle: &str) -> usize {
    operations_common::eventually(needle, || {
        let n = e.stderr().matches(needle).count();
        (n > 0).then_some(n)
    })
}

/// The engine's descriptor limit (soft and hard), set before it starts.
/// Not lowered on the running process: the ring's accepts in flight read
/// `RLIMIT_NOFILE` when they are armed, so a limit lowered afterwards holds
/// only from the next ones (docs/operations.md).
const LIMIT: usize = 64;

#[test]
fn out_of_fds_pauses_accept_keeps_existing_connections_and_recovers() {
    let s = Setup::new();
    let e = start_engine_with(&s.args(&["--shards", "1"]), |cmd| {
        // SAFETY: runs in the forked child before exec, where only
        // async-signal-safe calls are allowed; setrlimit is one, and
        // the closure touches no memory shared with the parent.
        unsafe {
            cmd.pre_exec(|| {
                let l = libc::rlimit {
                    rlim_cur: LIMIT as libc::rlim_t,
                    rlim_max: LIMIT as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    // Room for exactly `room` more descriptors.
    let room = LIMIT - fds_below(e.pid(), LIMIT);
    let mut held: Vec<_> = (0..room)
        .map(|i| {
            tls_from("127.0.0.1", e.addr(), &s.client)
                .unwrap_or_else(|err| panic!("conn {i} of {room}: {err}"))
        })
        .collect();
    // The next one is queued by the kernel, but the engine cannot accept it.
    let cfg = s.client.clone();
    let addr = e.addr();
    let pending = std::thread::spawn(move || {
        let mut c = tls_from("127.0.0.1", addr, &cfg)?;
        get(&mut c)
    });
    let warned = "out of file descriptors";
    wait_for_log(&e, warned);
    // Existing connections keep working while accept is paused.
    for c in held.iter_mut() {
        assert!(get(c).expect("existing connection served").contains("200"));
    }
    // One closes; the queued connection gets in and is served.
    close(held.pop().expect("one held"));
    let served = pending
        .join()
        .expect("pending thread")
        .expect("queued connection served after a close");
    assert!(served.contains("200"));
    // Closing the rest makes room for new connections.
    drop(held);
    let mut fresh =
        tls_from("127.0.0.1", e.addr(), &s.client).expect("new connection after recovery");
    assert!(get(&mut fresh).expect("served").contains("200"));
    // Accept failed every 10 ms while the table was full; one line for it.
    assert_eq!(
        e.stderr().matches(warned).count(),
        1,
        "logged once per episode, not per attempt: {}",
        e.stderr()
    );
}
