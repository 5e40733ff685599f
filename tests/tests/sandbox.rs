//! The sandbox (`--sandbox`, on by default): every thread under seccomp
//! with no_new_privs, files outside the allowed directories unreadable
//! after start, reloads of the allowed files (Kubernetes Secret swaps
//! included) and DNS on reload still working, and load served with no
//! system call denied.

mod operations_common;

use operations_common::{metrics_addr, scrape, value};
use std::io::{Read, Write};
use std::path::Path;
use uringtls_tests::{
    any_cert_client_config, connect_to, echo_upstream, served_leaf, start_engine,
    start_engine_with_certs, test_certs, write, EngineProc, WAIT,
};

/// `Name:\tvalue` lines of `/proc/PID/task/TID/status` for every thread.
fn task_status(pid: u32, field: &str) -> Vec<(String, String)> {
    let dir = format!("/proc/{pid}/task");
    std::fs::read_dir(&dir)
        .expect("task dir")
        .filter_map(Result::ok)
        .map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            let name = status
                .lines()
                .find_map(|l| l.strip_prefix("Name:\t"))
                .unwrap_or("?")
                .to_owned();
            let v = status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{field}:\t")))
                .unwrap_or("?")
                .to_owned();
            (name, v)
        })
        .collect()
}

/// No system call was denied (the log has no seccomp report).
fn assert_nothing_denied(e: &EngineProc) {
    let err = e.stderr();
    assert!(!err.contains("seccomp denied"), "{err}");
}

#[test]
fn every_thread_runs_under_seccomp_with_no_new_privs_once_the_engine_is_ready() {
    let certs = test_certs();
    let e = start_engine_with_certs(
        &certs,
        // The uring backend: its rings are restricted (a layer checked here).
        &[
            "--shards",
            "2",
            "--metrics-listen",
            "127.0.0.1:0",
            "--io-backend",
            "uring",
        ],
    );
    let (tasks, nnp) = (
        task_status(e.pid(), "Seccomp"),
        task_status(e.pid(), "NoNewPrivs"),
    );
    assert!(tasks.len() >= 3, "{tasks:?}");
    assert!(tasks.iter().all(|(_, v)| v == "2"), "{tasks:?}");
    assert!(nnp.iter().all(|(_, v)| v == "1"), "{nnp:?}");
    let log = e.wait_for_stderr("sandbox: ring restrictions on, seccomp on, landlock on (ABI");
    assert!(log.contains("readable="), "{log}");
    let m = scrape(metrics_addr(&e));
    for layer in ["ring_restrictions", "seccomp", "landlock"] {
        assert_eq!(
            value(&m, "uringtls_sandbox_layer", &[("layer", layer)]),
            1.0,
            "{layer}: {m}"
        );
    }
    assert_eq!(
        value(&m, "uringtls_sandbox_denied_syscalls_total", &[]),
        0.0,
        "{}",
        e.stderr()
    );
    assert_nothing_denied(&e);
}

#[test]
fn with_the_sandbox_off_no_layer_is_in_force_and_the_metric_says_so() {
    let certs = test_certs();
    let e = start_engine_with_certs(
        &certs,
        &["--sandbox", "false", "--metrics-listen", "127.0.0.1:0"],
    );
    let tasks = task_status(e.pid(), "Seccomp");
    assert!(tasks.iter().all(|(_, v)| v == "0"), "{tasks:?}");
    e.wait_for_stderr("sandbox: ring restrictions off, seccomp off, landlock off");
    let m = scrape(metrics_addr(&e));
    assert_eq!(
        value(&m, "uringtls_sandbox_layer", &[("layer", "seccomp")]),
        0.0,
        "{m}"
    );
}

/// A certificate in another directory, issued by the same CA.
fn outside_leaf(
    certs: &uringtls_tests::TestCerts,
    dir: &Path,
) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let leaf = certs.issue(&["localhost"], "outside", "outside", false);
    let (cert, key) = (dir.join("outside.pem"), dir.join("outside.key"));
    std::fs::rename(&leaf.cert, &cert).expect("move");
    std::fs::rename(&leaf.key, &key).expect("move");
    (cert, key, leaf.der.to_vec())
}

#[test]
fn a_reload_naming_a_certificate_outside_the_allowed_directories_is_refused_and_the_old_one_serves()
{
    let certs = test_certs();
    let other = tempfile::tempdir().expect("tmp");
    let (out_cert, out_key, _) = outside_leaf(&certs, other.path());
    let conf = |cert: &Path, key: &Path| {
        let text = format!(
            "service = \"echo\"\nshards = 1\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        );
        write(certs.dir.path(), "engine.toml", &text)
    };
    let path = conf(&certs.cert, &certs.key);
    let e = start_engine(&["--config", path.to_str().expect("utf8")]);
    let cfg = any_cert_client_config();
    let before = served_leaf(&connect_to(e.addr(), &cfg, "localhost").expect("connect"));
    conf(&out_cert, &out_key);
    assert!(!e.reload(1), "{}", e.stdout());
    let out = e.stdout();
    assert!(
        out.contains("outside the directories the sandbox lets the engine read")
            && out.contains("outside.pem"),
        "{out}"
    );
    let after = served_leaf(&connect_to(e.addr(), &cfg, "localhost").expect("connect"));
    assert_eq!(before, after, "the old certificate keeps serving");
    assert_nothing_denied(&e);
}

/// Replaces the certificate and key files with links to files in another
/// directory (new inodes outside every Landlock rule), then reloads.
fn reload_through_links_to_outside(sandbox: &str) -> (bool, String, bool) {
    let certs = test_certs();
    let other = tempfile::tempdir().expect("tmp");
    let (out_cert, out_key, out_der) = outside_leaf(&certs, other.path());
    let e = start_engine_with_certs(&certs, &["--service", "echo", "--sandbox", sandbox]);
    std::fs::remove_file(&certs.cert).expect("rm");
    std::fs::remove_file(&certs.key).expect("rm");
    std::os::unix::fs::symlink(&out_cert, &certs.cert).expect("link");
    std::os::unix::fs::symlink(&out_key, &certs.key).expect("link");
    let applied = e.reload(1);
    let cfg = any_cert_client_config();
    let served = served_leaf(&connect_to(e.addr(), &cfg, "localhost").expect("connect"));
    (applied, e.stdout(), served.as_ref() == out_der.as_slice())
}

#[test]
fn a_file_outside_the_allowed_directories_cannot_be_opened_after_start() {
    let (applied, out, new_served) = reload_through_links_to_outside("true");
    assert!(!applied, "{out}");
    assert!(out.contains("ermission denied"), "{out}");
    assert!(!new_served, "the old certificate keeps serving");
    // The same reload without the sandbox reads the new files: the
    // refusal above is Landlock's.
    let (applied, out, new_served) = reload_through_links_to_outside("false");
    assert!(applied && new_served, "{out}");
}

#[test]
fn a_kubernetes_style_secret_update_is_reloaded_with_the_sandbox_on() {
    let certs = test_certs();
    let mount = tempfile::tempdir().expect("tmp");
    let m = mount.path();
    // kubelet's layout: tls.crt -> ..data/tls.crt, ..data -> ..TIMESTAMP/
    let publish = |stamp: &str, cert: &Path, key: &Path| {
        let d = m.join(stamp);
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::copy(cert, d.join("tls.crt")).expect("copy");
        std::fs::copy(key, d.join("tls.key")).expect("copy");
        uringtls_tests::set_mode(&d.join("tls.key"), 0o600);
        let tmp = m.join("..data_tmp");
        std::os::unix::fs::symlink(stamp, &tmp).expect("link");
        std::fs::rename(&tmp, m.join("..data")).expect("swap");
    };
    let v1 = certs.issue(&["localhost"], "v1", "v1", false);
    publish("..2026_12_07_00_00_01.1", &v1.cert, &v1.key);
    std::os::unix::fs::symlink("..data/tls.crt", m.join("tls.crt")).expect("link");
    std::os::unix::fs::symlink("..data/tls.key", m.join("tls.key")).expect("link");
    let (crt, key) = (m.join("tls.crt"), m.join("tls.key"));
    let e = start_engine(&[
        "--service",
        "echo",
        "--cert",
        crt.to_str().expect("utf8"),
        "--key",
        key.to_str().expect("utf8"),
    ]);
    let cfg = any_cert_client_config();
    assert_eq!(
        served_leaf(&connect_to(e.addr(), &cfg, "localhost").expect("connect")),
        v1.der
    );
    let v2 = certs.issue(&["localhost"], "v2", "v2", false);
    publish("..2026_12_07_00_05_00.2", &v2.cert, &v2.key);
    assert!(e.reload(1), "{}", e.stdout());
    assert_eq!(
        served_leaf(&connect_to(e.addr(), &cfg, "localhost").expect("connect")),
        v2.der,
        "the updated secret serves"
    );
    assert_nothing_denied(&e);
}

#[test]
fn proxy_upstream_names_are_resolved_again_on_reload_with_the_sandbox_on() {
    let certs = test_certs();
    let (a, b) = (echo_upstream(true), echo_upstream(true));
    let conf = |port: u16| {
        let text = format!(
            "service = \"proxy\"\nshards = 1\nproxy_protocol = \"v1\"\nupstream = [\"localhost:{port}\"]\ncert = \"{}\"\nkey = \"{}\"\n",
            certs.cert.display(),
            certs.key.display()
        );
        write(certs.dir.path(), "proxy.toml", &text)
    };
    let path = conf(a.addr.port());
    let e = start_engine(&["--config", path.to_str().expect("utf8")]);
    let cfg = any_cert_client_config();
    let echo = |msg: &[u8]| {
        let mut c = connect_to(e.addr(), &cfg, "localhost").expect("connect");
        c.write_all(msg).expect("write");
        c.flush().expect("flush");
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).expect("read");
        back
    };
    assert_eq!(echo(b"one"), b"one");
    assert!(a.headers.recv_timeout(WAIT).is_ok(), "went to A");
    conf(b.addr.port());
    assert!(e.reload(1), "{}", e.stdout());
    assert_eq!(echo(b"two"), b"two");
    assert!(
        b.headers.recv_timeout(WAIT).is_ok(),
        "went to B after the reload"
    );
    assert_nothing_denied(&e);
}

#[test]
fn a_short_load_is_served_with_the_sandbox_on_and_no_call_denied() {
    let certs = test_certs();
    let mut e = start_engine_with_certs(
        &certs,
        &["--shards", "2", "--metrics-listen", "127.0.0.1:0"],
    );
    let cfg = any_cert_client_config();
    let addr = e.addr();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let mut ok = 0;
                for _ in 0..50 {
                    let mut c = connect_to(addr, &cfg, "localhost").expect("connect");
                    for _ in 0..3 {
                        c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                            .expect("write");
                        c.flush().expect("flush");
                        let (status, _, _) = uringtls_tests::read_response(&mut c).expect("read");
                        assert!(status.contains("200"), "{status}");
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let total: usize = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    assert_eq!(total, 600);
    let m = scrape(metrics_addr(&e));
    assert_eq!(
        value(&m, "uringtls_sandbox_denied_syscalls_total", &[]),
        0.0,
        "{m}"
    );
    // Draining and exiting need nothing the sandbox forbids either.
    assert!(e.stop().success(), "{}", e.stderr());
    assert_nothing_denied(&e);
}
