//! With `kernel.io_uring_disabled = 2` (set by this test and restored, as
//! root), `--io-backend auto` serves on epoll and `--io-backend uring`
//! refuses to start, naming the sysctl. Its own test binary, one test: the
//! sysctl is machine-wide, and cargo runs test binaries one at a time.

mod operations_common;

use operations_common::{metrics_addr, scrape, value};
use std::path::Path;
use uringtls_tests::{engine_fails, eventually, in_ci, start_engine};

const SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

/// Puts the sysctl back, whatever happens in the test.
struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.0);
    }
}

#[test]
fn with_io_uring_disabled_by_sysctl_auto_serves_on_epoll_and_uring_refuses() {
    let before = match std::fs::read_to_string(SYSCTL) {
        Ok(v) => v,
        Err(e) => {
            assert!(!in_ci(), "{SYSCTL} unreadable in CI: {e}");
            eprintln!("skipped: {SYSCTL} unreadable ({e}); needs Linux 6.6+");
            return;
        }
    };
    let restore = Restore(before);
    if let Err(e) = std::fs::write(SYSCTL, "2") {
        // A read-only /proc/sys (a container) cannot be changed by anyone:
        // that machine cannot run this test. Anything else (not root)
        // fails in CI, where the tests run as root.
        let read_only = e.raw_os_error() == Some(libc::EROFS);
        assert!(
            !in_ci() || read_only,
            "cannot set {SYSCTL} in CI (run as root): {e}"
        );
        eprintln!("skipped: cannot set {SYSCTL} ({e}); needs root and a writable /proc/sys");
        return;
    }
    assert!(Path::new(SYSCTL).exists());

    let (code, err) = engine_fails(&["--listen", "127.0.0.1:0", "--io-backend", "uring"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("sysctl kernel.io_uring_disabled"), "{err}");

    let e = start_engine(&["--io-backend", "auto", "--metrics-listen", "127.0.0.1:0"]);
    let status = std::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://{}/", e.addr()))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let m = eventually("the shards in /metrics", || {
        let m = scrape(metrics_addr(&e));
        (value(&m, "uringtls_io_backend", &[]) >= 1.0).then_some(m)
    });
    drop(restore);
    match status {
        Ok(code) => assert_eq!(code, "200", "curl over the epoll fallback"),
        Err(e) => assert!(!in_ci(), "curl missing in CI: {e}"),
    }
    assert!(
        value(&m, "uringtls_io_backend", &[("backend", "epoll")]) >= 1.0,
        "every shard on epoll:\n{m}"
    );
    assert_eq!(
        value(&m, "uringtls_io_backend", &[("backend", "uring")]),
        0.0,
        "{m}"
    );
    assert!(
        e.stderr()
            .contains("io_uring is unavailable: serving on the epoll backend"),
        "{}",
        e.stderr()
    );
}
