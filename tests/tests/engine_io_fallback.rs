//! Where io_uring is fenced off (a container runtime's default seccomp
//! profile), `--io-backend auto` (the default) serves on epoll with one
//! warning and a metric, and `--io-backend uring` refuses to start, naming
//! the cause. `no-io-uring` execs the engine under a seccomp filter that
//! denies the three io_uring syscalls with EPERM, as Docker's and
//! containerd's default profiles do.

mod operations_common;

use operations_common::{metrics_addr, scrape, value};
use uringtls_tests::{
    assert_resumes_across_two_shards, engine_fails_under, eventually, start_engine_under, test_bin,
    test_certs, EngineProc, TestCerts,
};

/// A two-shard engine serving `certs`, under the `no-io-uring` filter.
fn two_shards_without_io_uring(certs: &TestCerts, extra: &[&str]) -> EngineProc {
    let (cert, key) = (
        certs.cert.to_str().expect("utf8"),
        certs.key.to_str().expect("utf8"),
    );
    let mut args = vec!["--cert", cert, "--key", key, "--shards", "2"];
    args.extend_from_slice(extra);
    start_engine_under(&test_bin("no-io-uring"), &args)
}

#[test]
fn under_a_seccomp_policy_that_blocks_io_uring_auto_serves_on_epoll_and_resumes_across_shards() {
    let certs = test_certs();
    let e = two_shards_without_io_uring(
        &certs,
        &["--io-backend", "auto", "--metrics-listen", "127.0.0.1:0"],
    );
    // Every shard answers scrapes once its loop runs (a shard that has not
    // answered yet is left out of a page): wait for both.
    let m = eventually("both shards in /metrics", || {
        let m = scrape(metrics_addr(&e));
        (value(&m, "uringtls_io_backend", &[]) >= 2.0).then_some(m)
    });
    for shard in ["0", "1"] {
        assert_eq!(
            value(
                &m,
                "uringtls_io_backend",
                &[("shard", shard), ("backend", "epoll")]
            ),
            1.0,
            "shard {shard} on epoll:\n{m}"
        );
    }
    assert_eq!(
        value(&m, "uringtls_io_backend", &[("backend", "uring")]),
        0.0
    );
    let log = e.stderr();
    assert_eq!(
        log.matches("io_uring is unavailable: serving on the epoll backend")
            .count(),
        1,
        "one warning, naming the fallback:\n{log}"
    );
    assert!(
        log.contains("io_uring_setup, io_uring_enter and io_uring_register"),
        "{log}"
    );
    assert_resumes_across_two_shards(e, &certs, &[&rustls::version::TLS13], true);
}

#[test]
fn under_that_policy_io_backend_uring_refuses_to_start_naming_the_cause() {
    let (code, err) = engine_fails_under(
        &test_bin("no-io-uring"),
        &["--listen", "127.0.0.1:0", "--io-backend", "uring"],
    );
    assert_eq!(code, Some(2), "start failures exit 2: {err}");
    assert!(
        err.contains(
            "io_uring is disabled (sysctl kernel.io_uring_disabled) or blocked by a seccomp policy"
        ),
        "{err}"
    );
    assert!(
        err.contains("--io-backend auto or epoll"),
        "the way out: {err}"
    );
    assert!(err.contains("no shard is serving"), "{err}");
}

#[test]
fn an_explicit_epoll_backend_serves_without_touching_io_uring() {
    let certs = test_certs();
    // Under the filter, so a single io_uring call would show as a failure.
    let e = two_shards_without_io_uring(&certs, &["--io-backend", "epoll"]);
    assert!(
        !e.stderr().contains("io_uring is unavailable"),
        "no probe, no warning: {}",
        e.stderr()
    );
    assert_resumes_across_two_shards(e, &certs, &[&rustls::version::TLS12], false);
}
