//! ACME end to end against Debian's `pebble` (a test ACME server) and
//! `pebble-challtestsrv` (its mock DNS, answering 127.0.0.1 for every
//! name): certificates ordered with TLS-ALPN-01 answered on the engine's
//! own listener, served by SNI, kept in the cache across a restart,
//! renewed, and kept serving when the CA refuses a renewal.
//!
//! Skipped with a printed reason when pebble is not installed, unless
//! `CI=true` (then it fails): `.ci/run` installs the `pebble` package.

mod operations_common;

use operations_common::{metrics_addr, scrape, value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use uringtls_tests::{
    any_cert_client_config, client_config, connect_to, eventually, require_tool, served_leaf,
    start_engine, EngineProc, TestCerts, WAIT,
};

const NAME: &str = "a.uringtls.test";

/// A free TCP port on 127.0.0.1. Pebble's `tlsPort` (where it validates
/// TLS-ALPN-01) and its own ports are fixed numbers in its configuration,
/// so a port is chosen by binding :0 and releasing it. Another process
/// could take it between the release and the bind that follows (a few
/// milliseconds on a test machine); the test would then fail to start,
/// not pass wrongly.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// pebble + challtestsrv, with pebble's HTTPS certificate from a test CA.
struct Pebble {
    _chall: Proc,
    _pebble: Proc,
    certs: TestCerts,
    directory: String,
    management: SocketAddr,
    chall_management: SocketAddr,
}

impl Pebble {
    /// Starts both; pebble validates TLS-ALPN-01 on 127.0.0.1:`tls_port`
    /// and issues certificates valid `validity_secs`. `None`: not installed.
    /// A start whose process exits before it listens (one of its ports,
    /// chosen by `free_port`, was taken meanwhile) is tried again with new
    /// ports, three times at most.
    fn start(tls_port: u16, validity_secs: u64) -> Option<Pebble> {
        if !require_tool("pebble") || !require_tool("pebble-challtestsrv") {
            return None;
        }
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Pebble::attempt(tls_port, validity_secs) {
                Ok(p) => return Some(p),
                Err(e) => failures.push(e),
            }
        }
        panic!("pebble did not start: {}", failures.join("; "));
    }

    /// One start of both, on fresh ports; `Err` if either exits before all
    /// three of their ports listen (with the end of pebble's log).
    fn attempt(tls_port: u16, validity_secs: u64) -> Result<Pebble, String> {
        let certs = uringtls_tests::test_certs();
        let (dns, chall_mgmt) = (free_port(), free_port());
        let log =
            |name: &str| std::fs::File::create(certs.dir.path().join(name)).expect("log file");
        let chall = Proc(
            Command::new("pebble-challtestsrv")
                .args(["-dns01", &format!("127.0.0.1:{dns}")])
                .args(["-management", &format!("127.0.0.1:{chall_mgmt}")])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
                .stdin(Stdio::null())
                .stdout(log("challtestsrv.log"))
                .stderr(Stdio::null())
                .spawn()
                .expect("start pebble-challtestsrv"),
        );
        let (listen, mgmt) = (free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": certs.cert,
            "privateKey": certs.key,
            "httpPort": uringtls_tests::closed_port().port(),
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_secs,
        }});
        let config_path = certs.dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("pebble config");
        let pebble = Proc(
            Command::new("pebble")
                .arg("-config")
                .arg(&config_path)
                .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
                // Validate at once; never reuse an authorization (each
                // order is validated); no spurious badNonce rejections.
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_AUTHZREUSE", "0")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .stdin(Stdio::null())
                .stdout(log("pebble.log"))
                .stderr(Stdio::null())
                .spawn()
                .expect("start pebble"),
        );
        let chall_management = SocketAddr::from(([127, 0, 0, 1], chall_mgmt));
        let management = SocketAddr::from(([127, 0, 0, 1], mgmt));
        let api = SocketAddr::from(([127, 0, 0, 1], listen));
        let (mut chall, mut pebble) = (chall, pebble);
        for a in [chall_management, management, api] {
            let up = eventually(&format!("{a} listening"), || {
                if TcpStream::connect(a).is_ok() {
                    return Some(true);
                }
                let exited = matches!(chall.0.try_wait(), Ok(Some(_)))
                    || matches!(pebble.0.try_wait(), Ok(Some(_)));
                exited.then_some(false)
            });
            if !up {
                let log = std::fs::read_to_string(certs.dir.path().join("pebble.log"))
                    .unwrap_or_default();
                let tail = log.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                return Err(format!("exited before {a} listened (pebble.log: {tail})"));
            }
        }
        Ok(Pebble {
            _chall: chall,
            _pebble: pebble,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management,
            chall_management,
            certs,
        })
    }

    /// Pebble's root (management API `/roots/0`), DER.
    fn root(&self) -> rustls::pki_types::CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        let cfg = client_config(&self.certs.ca_der, &[&rustls::version::TLS13]);
        let mut c = connect_to(self.management, &cfg, "127.0.0.1").expect("management API");
        c.write_all(b"GET /roots/0 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .expect("write");
        let (status, _, body) = uringtls_tests::read_response(&mut c).expect("root");
        assert!(status.contains("200"), "{status}");
        rustls::pki_types::CertificateDer::from_pem_slice(&body).expect("root PEM")
    }

    /// Points `name` at `ip` in the mock DNS.
    fn set_address(&self, name: &str, ip: &str) {
        let body = format!(r#"{{"host":"{name}.","addresses":["{ip}"]}}"#);
        let mut s = TcpStream::connect(self.chall_management).expect("challtestsrv");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        write!(
            s,
            "POST /add-a HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.certs.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

/// The engine on 127.0.0.1:`port`, managing `NAME` through `p`.
fn engine(p: &Pebble, port: u16, cache: &Path) -> EngineProc {
    let listen = format!("127.0.0.1:{port}");
    start_engine(&[
        "--listen",
        &listen,
        "--acme-domain",
        NAME,
        "--acme-cache",
        cache.to_str().expect("utf8"),
        "--acme-directory",
        &p.directory,
        "--acme-ca",
        p.certs.ca.to_str().expect("utf8"),
        "--acme-email",
        "ops@uringtls.test",
        "--metrics-listen",
        "127.0.0.1:0",
        "--log-level",
        "debug",
    ])
}

fn orders(e: &EngineProc, outcome: &str) -> f64 {
    value(
        &scrape(metrics_addr(e)),
        "uringtls_acme_orders_total",
        &[("outcome", outcome)],
    )
}

/// The leaf served for `NAME` (any certificate accepted).
fn leaf_for_name(e: &EngineProc) -> rustls::pki_types::CertificateDer<'static> {
    served_leaf(&connect_to(e.addr(), &any_cert_client_config(), NAME).expect("handshake"))
}

fn issued(e: &EngineProc, p: &Pebble) {
    eventually("an issued certificate", || {
        if e.stderr().contains("order failed") {
            panic!("order failed:\n{}\npebble:\n{}", e.stderr(), p.log());
        }
        e.stderr()
            .contains("certificate issued and installed")
            .then_some(())
    });
}

fn cache_dir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().expect("tmp");
    let p = d.path().join("acme");
    (d, p)
}

/// An engine that has its first certificate for `NAME` from a pebble whose
/// certificates live 15 s (renewed two thirds into that); `None` (skipped)
/// without pebble.
struct ShortLived {
    p: Pebble,
    e: EngineProc,
    first: rustls::pki_types::CertificateDer<'static>,
    _tmp: tempfile::TempDir,
}

impl ShortLived {
    fn issued() -> Option<ShortLived> {
        let port = free_port();
        let p = Pebble::start(port, 15)?;
        let (tmp, cache) = cache_dir();
        let e = engine(&p, port, &cache);
        issued(&e, &p);
        let first = leaf_for_name(&e);
        Some(ShortLived {
            p,
            e,
            first,
            _tmp: tmp,
        })
    }
}

#[test]
fn a_name_gets_a_certificate_from_the_acme_ca_served_by_sni_and_kept_across_a_restart() {
    let port = free_port();
    let Some(p) = Pebble::start(port, 3600) else {
        return;
    };
    let (_tmp, cache) = cache_dir();
    let mut e = engine(&p, port, &cache);
    issued(&e, &p);
    // The chain verifies against pebble's root for the name.
    let root = p.root();
    let verified = client_config(&root, &[&rustls::version::TLS13, &rustls::version::TLS12]);
    let c = connect_to(e.addr(), &verified, NAME).expect("chain verifies for the name");
    let leaf = served_leaf(&c);
    drop(c);
    assert_eq!(orders(&e, "issued"), 1.0);
    assert!(
        scrape(metrics_addr(&e)).contains("uringtls_acme_certificate_expiry_seconds"),
        "expiry gauge"
    );
    // Another name still gets the default certificate, never the ACME one.
    let other = served_leaf(
        &connect_to(e.addr(), &any_cert_client_config(), "other.uringtls.test").expect("tls"),
    );
    assert_ne!(other, leaf);
    // Key and account are private files in a private directory.
    use std::os::unix::fs::MetadataExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").mode() & 0o777;
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(mode(&cache.join(format!("{NAME}.pem"))), 0o600);
    // A SIGHUP rebuilds the TLS config: the ACME certificate stays.
    assert!(e.reload(1), "reload applied");
    assert_eq!(leaf_for_name(&e), leaf);
    e.stop();
    assert_no_key_material(&e, &cache);

    // Restarted on the same cache: the certificate serves from the first
    // handshake, and nothing is ordered.
    let e = engine(&p, port, &cache);
    assert_eq!(leaf_for_name(&e), leaf);
    e.wait_for_stderr("installed from the cache");
    assert_eq!(orders(&e, "issued"), 0.0);
}

#[test]
fn a_short_lived_certificate_is_renewed_before_it_expires() {
    // Renewed two thirds into its 15 s life.
    let Some(ShortLived {
        p, e, first, _tmp, ..
    }) = ShortLived::issued()
    else {
        return;
    };
    let root = p.root();
    let verified = client_config(&root, &[&rustls::version::TLS13]);
    let renewed = eventually("a renewed certificate", || {
        let c = connect_to(e.addr(), &verified, NAME).ok()?;
        let leaf = served_leaf(&c);
        (leaf != first).then_some(leaf)
    });
    assert_ne!(renewed, first);
    assert!(orders(&e, "issued") >= 2.0);
    assert_eq!(orders(&e, "refused"), 0.0);
}

#[test]
fn a_refused_renewal_keeps_the_old_certificate_serving_and_logs_the_problem() {
    let Some(ShortLived {
        p, e, first, _tmp, ..
    }) = ShortLived::issued()
    else {
        return;
    };
    // The name now resolves where nothing listens: pebble cannot validate
    // the renewal and marks the order invalid.
    p.set_address(NAME, "127.0.0.2");
    eventually("a refused order", || {
        (orders(&e, "refused") >= 1.0).then_some(())
    });
    assert_eq!(
        leaf_for_name(&e),
        first,
        "the old certificate keeps serving"
    );
    assert_eq!(orders(&e, "issued"), 1.0);
    let log = e.wait_for_stderr("order failed");
    let line = log
        .lines()
        .find(|l| l.contains("order failed"))
        .expect("line");
    assert!(
        line.contains("urn:ietf:params:acme:error:") && line.contains("127.0.0.2"),
        "the problem document's type and detail are logged: {line}"
    );
}

/// Neither the certificate key nor the account key reaches the logs.
fn assert_no_key_material(e: &EngineProc, cache: &Path) {
    use rustls::pki_types::pem::PemObject;
    let logs = format!("{}{}", e.stdout(), e.stderr());
    let pem = std::fs::read(cache.join(format!("{NAME}.pem"))).expect("cert file");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&pem).expect("key");
    operations_common::assert_no_key_bytes(&logs, key.secret_der());
    let text = String::from_utf8_lossy(&pem);
    let body: String = text
        .split("-----BEGIN PRIVATE KEY-----")
        .nth(1)
        .expect("key block")
        .lines()
        .take_while(|l| !l.starts_with("-----"))
        .collect();
    for i in (0..body.len().saturating_sub(16)).step_by(4) {
        assert!(
            !logs.contains(&body[i..i + 16]),
            "certificate key (base64) in the logs"
        );
    }
    let account = std::fs::read_dir(cache)
        .expect("cache")
        .flatten()
        .find(|f| f.file_name().to_string_lossy().starts_with("account-"))
        .expect("account file");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(account.path()).expect("read")).expect("json");
    let b64 = json["key_pkcs8"].as_str().expect("key_pkcs8");
    for i in (0..b64.len().saturating_sub(16)).step_by(4) {
        assert!(
            !logs.contains(&b64[i..i + 16]),
            "account key (base64) in the logs"
        );
    }
}

#[test]
fn two_instances_sharing_a_cache_and_a_port_order_once_and_both_serve_the_result() {
    let port = free_port();
    let Some(p) = Pebble::start(port, 3600) else {
        return;
    };
    let (_tmp, cache) = cache_dir();
    // Started together, on one SO_REUSEPORT address: pebble's validation
    // may reach either, and either may win the cache's lock.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| engine(&p, port, &cache));
        let b = s.spawn(|| engine(&p, port, &cache));
        (a.join().expect("a"), b.join().expect("b"))
    });
    for e in [&a, &b] {
        eventually("a certificate in each instance", || {
            let log = e.stderr();
            assert!(!log.contains("order failed"), "{log}\npebble:\n{}", p.log());
            (log.contains("certificate issued and installed")
                || log.contains("installed from the cache"))
            .then_some(())
        });
    }
    let total = |o| orders(&a, o) + orders(&b, o);
    assert_eq!(total("issued"), 1.0, "one order for the two instances");
    assert_eq!(total("refused") + total("failed"), 0.0);
}

#[test]
fn until_its_first_certificate_a_name_gets_the_default_one_and_a_validation_hello_without_a_challenge_fails(
) {
    // No pebble needed: the ACME server is a closed port, so the order
    // fails and the name stays without a certificate of its own.
    let (_tmp, cache) = cache_dir();
    let directory = format!("https://{}/dir", uringtls_tests::closed_port());
    let e = start_engine(&[
        "--acme-domain",
        NAME,
        "--acme-cache",
        cache.to_str().expect("utf8"),
        "--acme-directory",
        &directory,
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    eventually("a failed order", || {
        (orders(&e, "failed") >= 1.0).then_some(())
    });
    let log = e.wait_for_stderr("no account");
    assert!(log.contains("ACME server unreachable"), "{log}");
    // The default (self-signed) certificate, not one for the name.
    let leaf = leaf_for_name(&e);
    let default =
        served_leaf(&connect_to(e.addr(), &any_cert_client_config(), "localhost").expect("tls"));
    assert_eq!(leaf, default);
    // A client offering only acme-tls/1 gets no certificate at all when
    // no validation is pending for the name.
    let mut cfg = (*any_cert_client_config()).clone();
    cfg.alpn_protocols = vec![b"acme-tls/1".to_vec()];
    let cfg = std::sync::Arc::new(cfg);
    assert!(connect_to(e.addr(), &cfg, NAME).is_err());
    // Ordinary clients still negotiate their protocol, never acme-tls/1.
    let mut h1 = (*any_cert_client_config()).clone();
    h1.alpn_protocols = vec![b"http/1.1".to_vec()];
    let c = connect_to(e.addr(), &std::sync::Arc::new(h1), NAME).expect("tls");
    assert_eq!(c.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[test]
fn acme_mistakes_stop_the_start_naming_the_setting() {
    let (code, err) = uringtls_tests::engine_fails(&["--acme-domain", NAME]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--acme-cache"), "{err}");
    let (_tmp, cache) = cache_dir();
    std::fs::create_dir(&cache).expect("mkdir");
    uringtls_tests::set_mode(&cache, 0o755);
    let (code, err) = uringtls_tests::engine_fails(&[
        "--listen",
        "127.0.0.1:0",
        "--acme-domain",
        NAME,
        "--acme-cache",
        cache.to_str().expect("utf8"),
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("chmod 700") && err.contains("acme"), "{err}");
}

#[test]
fn with_user_the_cache_is_created_for_that_user_who_writes_the_certificate() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: dropping privileges needs root");
        return;
    }
    let port = free_port();
    let Some(p) = Pebble::start(port, 3600) else {
        return;
    };
    let (tmp, cache) = cache_dir();
    // The user must be able to reach the cache: open the parent (0711).
    uringtls_tests::set_mode(tmp.path(), 0o711);
    let listen = format!("127.0.0.1:{port}");
    let e = start_engine(&[
        "--listen",
        &listen,
        "--user",
        "nobody",
        "--acme-domain",
        NAME,
        "--acme-cache",
        cache.to_str().expect("utf8"),
        "--acme-directory",
        &p.directory,
        "--acme-ca",
        p.certs.ca.to_str().expect("utf8"),
    ]);
    issued(&e, &p);
    use std::os::unix::fs::MetadataExt;
    for f in [cache.clone(), cache.join(format!("{NAME}.pem"))] {
        let m = std::fs::metadata(&f).expect("meta");
        assert_eq!(m.uid(), 65534, "{} belongs to nobody", f.display());
    }
}
