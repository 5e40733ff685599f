//! Privileges and process hygiene: dropping root (checked in /proc),
//! key-file modes, core dumps, sd_notify. These tests run as root.

mod operations_common;

use operations_common::{get, tls_from, Setup};
use std::os::unix::net::UnixDatagram;
use uringtls_tests::{engine_fails, eventually, set_mode, start_engine, start_engine_with, WAIT};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The `Field:` line of a /proc status file, whitespace-normalised.
fn field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[test]
fn root_drops_to_nobody_on_every_thread_before_serving() {
    if !is_root() {
        assert!(!uringtls_tests::in_ci(), "CI runs as root");
        eprintln!("skipping: needs root");
        return;
    }
    let s = Setup::new();
    let e = start_engine(&s.args(&["--shards", "2", "--user", "nobody", "--group", "nogroup"]));
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("serves after the drop");
    assert!(get(&mut c).expect("served").contains("200"));
    let tasks = std::fs::read_dir(format!("/proc/{}/task", e.pid())).expect("tasks");
    let mut checked = 0;
    for t in tasks {
        let path = t.expect("task").path().join("status");
        let Ok(st) = std::fs::read_to_string(&path) else {
            continue;
        };
        let name = field(&st, "Name:");
        assert_eq!(field(&st, "Uid:"), "65534 65534 65534 65534", "{name}");
        assert_eq!(field(&st, "Gid:"), "65534 65534 65534 65534", "{name}");
        assert_eq!(field(&st, "Groups:"), "", "{name}: no supplementary groups");
        assert_eq!(field(&st, "CapEff:"), "0000000000000000", "{name}");
        checked += 1;
    }
    assert!(checked >= 3, "main thread and two shards: {checked}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", e.pid())).expect("limits");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core line");
    assert_eq!(
        core.split_whitespace().nth(4),
        Some("0"),
        "core dumps off: {core}"
    );
    // Logs go through a background writer: wait for the line to arrive.
    eventually("the 'dropped privileges' log line", || {
        e.stderr().contains("dropped privileges").then_some(())
    });
}

#[test]
fn key_readable_by_others_is_refused_naming_the_file_and_the_fix() {
    let s = Setup::new();
    set_mode(&s.certs.key, 0o644);
    let (code, err) = engine_fails(&s.args(&["--shards", "1", "--listen", "127.0.0.1:0"]));
    assert_eq!(code, Some(2));
    let key = s.certs.key.display().to_string();
    assert!(err.contains(&key), "names the file: {err}");
    assert!(
        err.contains(&format!("chmod 600 {key}")),
        "gives the fix: {err}"
    );
    assert!(
        err.contains("--insecure-key-permissions"),
        "names the override: {err}"
    );
    // The override starts it anyway.
    let e = start_engine(&s.args(&["--shards", "1", "--insecure-key-permissions", "true"]));
    assert!(tls_from("127.0.0.1", e.addr(), &s.client).is_ok());
}

#[test]
fn unknown_user_is_refused_before_serving() {
    let s = Setup::new();
    let (code, err) =
        engine_fails(&s.args(&["--listen", "127.0.0.1:0", "--user", "no-such-user-uringtls"]));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("user `no-such-user-uringtls` does not exist"),
        "{err}"
    );
}

#[test]
fn systemd_is_told_ready_then_stopping() {
    let s = Setup::new();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut e = start_engine_with(&s.args(&["--shards", "1"]), |cmd| {
        cmd.env("NOTIFY_SOCKET", &path);
    });
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY");
    assert_eq!(&buf[..n], b"READY=1");
    e.signal(libc::SIGHUP);
    let n = sock.recv(&mut buf).expect("RELOADING");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{msg}");
    let n = sock.recv(&mut buf).expect("READY after reload");
    assert_eq!(&buf[..n], b"READY=1");
    e.stop();
    let n = sock.recv(&mut buf).expect("STOPPING");
    assert_eq!(&buf[..n], b"STOPPING=1");
}
