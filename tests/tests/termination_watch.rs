//! Reload on file change (`--watch-files`, on by default): a Kubernetes
//! Secret volume's `..data` symlink swapped with rename(2) is picked up
//! with no signal; a bad swap is refused (logged, counted) and the next
//! good one applied; `--cert-dir` pairs added and removed are served and
//! dropped; with watching off, SIGHUP still reloads.
//!
//! Every wait is on an event: the engine prints `uringtls: reload N
//! applied|refused` for each reload, whatever triggered it. (The harness
//! turns watching off unless a test names `--watch-files`, as these do.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use uringtls_tests::{
    any_cert_client_config, connect_to, served_leaf, set_mode, start_engine, test_certs,
    EngineProc, Leaf, TestCerts, WAIT,
};

/// A Kubernetes Secret volume as the kubelet writes it:
///
/// ```text
/// tls.crt -> ..data/tls.crt
/// tls.key -> ..data/tls.key
/// ..data  -> ..2026_12_07_00_00_00.N
/// ..2026_12_07_00_00_00.N/{tls.crt,tls.key}
/// ```
struct SecretVolume {
    dir: PathBuf,
    generation: u32,
}

impl SecretVolume {
    fn new(dir: &Path, leaf: &Leaf) -> SecretVolume {
        let dir = dir.join("secret-volume");
        std::fs::create_dir(&dir).expect("mkdir");
        let mut v = SecretVolume { dir, generation: 0 };
        let ts = v.write_generation(leaf);
        symlink(&ts, v.dir.join("..data")).expect("..data");
        for f in ["tls.crt", "tls.key"] {
            symlink(format!("..data/{f}"), v.dir.join(f)).expect("link");
        }
        v
    }

    fn write_generation(&mut self, leaf: &Leaf) -> String {
        self.generation += 1;
        let ts = format!("..2026_12_07_00_00_00.{}", self.generation);
        let d = self.dir.join(&ts);
        std::fs::create_dir(&d).expect("mkdir");
        std::fs::copy(&leaf.cert, d.join("tls.crt")).expect("crt");
        std::fs::copy(&leaf.key, d.join("tls.key")).expect("key");
        set_mode(&d.join("tls.key"), 0o600);
        ts
    }

    /// The kubelet's atomic update: a new timestamped directory, a
    /// `..data_tmp` symlink to it renamed over `..data`, the old directory
    /// removed.
    fn swap(&mut self, leaf: &Leaf) {
        let old = std::fs::read_link(self.dir.join("..data")).expect("readlink");
        let ts = self.write_generation(leaf);
        let tmp = self.dir.join("..data_tmp");
        symlink(&ts, &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("rename");
        std::fs::remove_dir_all(self.dir.join(old)).expect("rm old");
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).to_str().expect("utf8").to_owned()
    }
}

fn served(e: &EngineProc, name: &str) -> rustls::pki_types::CertificateDer<'static> {
    let c = connect_to(e.addr(), &any_cert_client_config(), name).expect("handshake");
    served_leaf(&c)
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("metrics");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    text
}

fn reloads(e: &EngineProc, result: &str) -> String {
    let out = e.wait_for_stdout("uringtls: metrics at http://");
    let addr = out
        .lines()
        .find_map(|l| l.strip_prefix("uringtls: metrics at http://"))
        .and_then(|a| a.trim_end_matches("/metrics").parse().ok())
        .expect("metrics address");
    let line = format!("uringtls_reloads_total{{result=\"{result}\"}} ");
    scrape(addr)
        .lines()
        .find_map(|l| l.strip_prefix(&line).map(str::to_owned))
        .unwrap_or_default()
}

/// Waits for reload `n` (triggered by the watcher, no signal sent) and
/// returns whether it was applied.
fn watched_reload(e: &EngineProc, n: u64) -> bool {
    let out = e.wait_for_stdout(&format!("uringtls: reload {n} "));
    out.contains(&format!("uringtls: reload {n} applied"))
}

#[test]
fn a_kubernetes_secret_swap_is_reloaded_without_a_signal_and_a_bad_one_is_refused() {
    let certs = test_certs();
    let (one, two, three) = (
        certs.issue(&["localhost"], "one", "one", false),
        certs.issue(&["localhost"], "two", "two", false),
        certs.issue(&["localhost"], "three", "three", false),
    );
    let mut vol = SecretVolume::new(certs.dir.path(), &one);
    let e = start_engine(&[
        "--cert",
        &vol.path("tls.crt"),
        "--key",
        &vol.path("tls.key"),
        "--metrics-listen",
        "127.0.0.1:0",
        "--watch-files",
        "true",
    ]);
    e.wait_for_stderr("watching certificate, key and ticket files");
    assert_eq!(served(&e, "localhost"), one.der);

    vol.swap(&two);
    assert!(watched_reload(&e, 1), "{}", e.stdout());
    assert_eq!(
        served(&e, "localhost"),
        two.der,
        "the swapped-in certificate"
    );

    // A swap to a certificate with a key that does not match it: refused,
    // logged, counted; the previous certificate keeps serving.
    let bad = Leaf {
        cert: three.cert.clone(),
        key: one.key.clone(),
        der: three.der.clone(),
        key_der: one.key_der.clone_key(),
    };
    vol.swap(&bad);
    assert!(!watched_reload(&e, 2), "{}", e.stdout());
    e.wait_for_stderr("configuration reload failed");
    assert_eq!(
        served(&e, "localhost"),
        two.der,
        "old material still serves"
    );
    assert_eq!(reloads(&e, "refused"), "1");

    // The next change is tried again.
    vol.swap(&three);
    assert!(watched_reload(&e, 3), "{}", e.stdout());
    assert_eq!(served(&e, "localhost"), three.der);
    assert_eq!(reloads(&e, "applied"), "2");
}

#[test]
fn a_half_written_certificate_is_refused_and_the_completed_one_applied() {
    let certs = test_certs();
    let two = certs.issue(&["localhost"], "two", "two", false);
    let e = start_engine(&[
        "--cert",
        certs.cert.to_str().unwrap(),
        "--key",
        certs.key.to_str().unwrap(),
        "--watch-files",
        "true",
    ]);
    e.wait_for_stderr("watching certificate, key and ticket files");
    let before = served(&e, "localhost");
    // In place, as an editor or `cp` does: first half the PEM, then all.
    let pem = std::fs::read_to_string(&two.cert).expect("pem");
    std::fs::write(&certs.cert, &pem[..pem.len() / 2]).expect("half");
    assert!(!watched_reload(&e, 1), "{}", e.stdout());
    assert_eq!(served(&e, "localhost"), before);
    // The key must change with it: the new certificate alone does not match.
    std::fs::copy(&two.key, &certs.key).expect("key");
    std::fs::write(&certs.cert, &pem).expect("full");
    let out = e.wait_for_stdout(" applied");
    assert!(out.contains("applied"), "{out}");
    assert_eq!(served(&e, "localhost"), two.der);
}

fn cert_dir_engine(certs: &TestCerts, dir: &Path, watch: bool) -> EngineProc {
    start_engine(&[
        "--cert",
        certs.cert.to_str().unwrap(),
        "--key",
        certs.key.to_str().unwrap(),
        "--cert-dir",
        dir.to_str().unwrap(),
        "--watch-files",
        if watch { "true" } else { "false" },
    ])
}

fn add_pair(dir: &Path, stem: &str, leaf: &Leaf) {
    // The key first, then the certificate: the pair appears whole.
    std::fs::copy(&leaf.key, dir.join(format!("{stem}.key"))).expect("key");
    set_mode(&dir.join(format!("{stem}.key")), 0o600);
    std::fs::copy(&leaf.cert, dir.join(format!("{stem}.pem"))).expect("cert");
}

#[test]
fn a_pair_added_to_the_cert_dir_is_served_and_a_removed_one_no_longer() {
    let certs = test_certs();
    let dir = certs.dir.path().join("certs");
    std::fs::create_dir(&dir).expect("mkdir");
    let a = certs.issue(&["a.test"], "a", "a", false);
    let b = certs.issue(&["b.test", "*.b.test"], "b", "b", true);
    add_pair(&dir, "a.test", &a);
    let e = cert_dir_engine(&certs, &dir, true);
    e.wait_for_stderr("watching certificate, key and ticket files");
    let default = served(&e, "nothing.test");
    assert_eq!(served(&e, "a.test"), a.der);
    assert_eq!(served(&e, "x.b.test"), default, "not there yet");

    add_pair(&dir, "b", &b);
    let mut n = 0;
    // Copying the key and the certificate may be one reload or two (the
    // first finding the pair half there); wait until b is served.
    while served(&e, "x.b.test") != b.der {
        n += 1;
        assert!(n <= 3, "b never served: {}", e.stdout());
        e.wait_for_stdout(&format!("uringtls: reload {n} "));
    }
    assert_eq!(served(&e, "b.test"), b.der);
    assert_eq!(served(&e, "a.test"), a.der);

    std::fs::remove_file(dir.join("a.test.pem")).expect("rm");
    std::fs::remove_file(dir.join("a.test.key")).expect("rm");
    let mut m = n;
    while served(&e, "a.test") == a.der {
        m += 1;
        assert!(m <= n + 2, "a still served: {}", e.stdout());
        e.wait_for_stdout(&format!("uringtls: reload {m} "));
    }
    assert_eq!(served(&e, "a.test"), default, "the default, not a's");
}

#[test]
fn with_watching_off_a_changed_cert_dir_is_picked_up_on_sighup() {
    let certs = test_certs();
    let dir = certs.dir.path().join("certs");
    std::fs::create_dir(&dir).expect("mkdir");
    let e = cert_dir_engine(&certs, &dir, false);
    let a = certs.issue(&["a.test"], "a", "a", false);
    add_pair(&dir, "a", &a);
    assert!(e.reload(1), "{}", e.stdout());
    assert_eq!(served(&e, "a.test"), a.der);
    assert!(
        !e.stderr().contains("watching certificate"),
        "no watcher: {}",
        e.stderr()
    );
}
