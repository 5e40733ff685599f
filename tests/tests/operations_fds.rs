//! File-descriptor exhaustion: with the engine's RLIMIT_NOFILE lowered
//! (with `prlimit` on the engine process, never on the test process) and
//! the limit reached, accept pauses, existing connections keep working,
//! and new connections are served again once others close. Logged once
//! per episode.

mod operations_common;

use operations_common::{close, get, tls_from, Setup};
use std::process::Command;
use uringtls_tests::{require_tool, start_engine};

/// (number of open fds, highest fd number) of process `pid`.
fn fds(pid: u32) -> (usize, usize) {
    let mut n = 0;
    let mut max = 0;
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fd dir") {
        let name = e.expect("entry").file_name();
        let fd: usize = name
            .to_str()
            .and_then(|s| s.parse().ok())
            .expect("fd number");
        n += 1;
        max = max.max(fd);
    }
    (n, max)
}

/// Count of `needle` in the engine's stderr once it appears (the log line
/// is the event).
fn wait_for_log(e: &uringtls_tests::EngineProc, needle: &str) -> usize {
    operations_common::eventually(needle, || {
        let n = e.stderr().matches(needle).count();
        (n > 0).then_some(n)
    })
}

#[test]
fn out_of_fds_pauses_accept_keeps_existing_connections_and_recovers() {
    if !require_tool("prlimit") {
        return;
    }
    let s = Setup::new();
    let e = start_engine(&s.args(&["--shards", "1"]));
    let pid = e.pid();
    // Room for exactly `room` more descriptors: the free numbers below the
    // highest one in use, plus 3 above it.
    let (open, max) = fds(pid);
    let limit = max + 1 + 3;
    let room = limit - open;
    let st = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .expect("run prlimit");
    assert!(st.success(), "prlimit failed");

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
