//! Settings as the operator meets them, through the binary: mistyped values
//! refused naming the field, errors that name the right thing, sizes and
//! durations with units, and settings without effect warned about on
//! stderr.

mod operations_common;

use operations_common::Setup;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use uringtls_tests::{start_engine, write, WAIT};

fn status_field(name: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

fn is_root() -> bool {
    status_field("Uid:").split_whitespace().nth(1) == Some("0")
}

/// CPUs this process may run on (`Cpus_allowed_list`, e.g. `0-1,4`).
fn allowed_cpus() -> usize {
    status_field("Cpus_allowed_list:")
        .split(',')
        .map(|r| match r.split_once('-') {
            Some((a, b)) => {
                b.trim().parse::<usize>().expect("cpu") - a.trim().parse::<usize>().expect("cpu")
                    + 1
            }
            None => 1,
        })
        .sum()
}

/// Runs `openssl` with `args`; panics with its stderr if it fails.
fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the engine expecting it to refuse to start; returns (exit code,
/// stderr). An engine still running after [`WAIT`] is killed and the test
/// fails (a setting it should have refused was accepted).
fn engine_fails(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(uringtls_tests::engine_bin())
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn engine");
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("engine started with {args:?}; it should have refused");
        }
        // Polling the child's exit: there is no portable exit event to wait on.
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert!(!status.success(), "engine exited 0 with {args:?}: {err}");
    (status.code(), err)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

/// Starts the engine with this certificate and key, which it must refuse
/// (exit 2); its stderr.
fn cert_and_key_refused(cert: &Path, key: &Path) -> String {
    let (code, err) = engine_fails(&[
        "--listen",
        "127.0.0.1:0",
        "--cert",
        s(cert),
        "--key",
        s(key),
    ]);
    assert_eq!(code, Some(2), "{err}");
    err
}

#[test]
fn a_mistyped_log_level_is_refused_at_start_naming_the_field() {
    for bad in ["warning", "verbose", "uringtls=loud"] {
        let (code, err) = engine_fails(&["--listen", "127.0.0.1:0", "--log-level", bad]);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("flag --log-level:") && err.contains(bad),
            "{bad}: {err}"
        );
    }
    let dir = tempfile::tempdir().expect("tmp");
    let toml = write(dir.path(), "u.toml", "log_level = \"warning\"\n");
    let (_, err) = engine_fails(&["--listen", "127.0.0.1:0", "--config", s(&toml)]);
    assert!(
        err.contains(&format!("{}: field `log_level`", toml.display())),
        "{err}"
    );
}

#[test]
fn a_mistyped_rust_log_falls_back_to_the_default_level_with_a_warning() {
    let e = uringtls_tests::start_engine_with(&[], |c| {
        c.env("RUST_LOG", "warning");
    });
    let err = e.wait_for_stderr("RUST_LOG is not a log filter");
    assert!(err.contains("`warning` is not a log level"), "{err}");
}

#[test]
fn a_certificate_block_that_is_not_der_is_named_with_its_number() {
    let st = Setup::new();
    let good = std::fs::read_to_string(&st.certs.cert).expect("cert");
    // Valid PEM (base64) whose content is not a certificate.
    let junk = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGUgYXQgYWxs\n-----END CERTIFICATE-----\n";
    for (text, block) in [(junk.to_string(), 1), (format!("{good}{junk}"), 2)] {
        let cert = write(st.certs.dir.path(), "bad.pem", &text);
        let err = cert_and_key_refused(&cert, &st.certs.key);
        assert!(
            err.contains(&format!(
                "{}: CERTIFICATE block {block} is not a valid X.509 certificate",
                cert.display()
            )) && !err.contains("does not match"),
            "{err}"
        );
    }
}

#[test]
fn an_encrypted_private_key_is_named_as_encrypted() {
    if !uringtls_tests::require_tool("openssl") {
        return;
    }
    let st = Setup::new();
    let key = st.certs.dir.path().join("enc.key");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-in",
        s(&st.certs.key),
        "-out",
        s(&key),
        "-v2",
        "aes-128-cbc",
        "-passout",
        "pass:secret",
    ]);
    uringtls_tests::set_mode(&key, 0o600);
    let err = cert_and_key_refused(&st.certs.cert, &key);
    assert!(
        err.contains(&format!("{}: the private key is encrypted", key.display()))
            && err.contains("openssl pkey")
            && !err.contains("no items found"),
        "{err}"
    );
}

#[test]
fn an_rsassa_pss_key_is_named_as_an_unsupported_type_not_a_mismatch() {
    if !uringtls_tests::require_tool("openssl") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("pss.key");
    let cert = dir.path().join("pss.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA-PSS",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        s(&key),
    ]);
    openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        s(&key),
        "-subj",
        "/CN=localhost",
        "-days",
        "1",
        "-out",
        s(&cert),
    ]);
    uringtls_tests::set_mode(&key, 0o600);
    let err = cert_and_key_refused(&cert, &key);
    assert!(
        err.contains(&format!(
            "{}: private key type not supported: an RSASSA-PSS key",
            key.display()
        )) && !err.contains("does not match"),
        "{err}"
    );
}

#[test]
fn metrics_on_the_tls_port_is_refused_as_our_own_listener_not_another_process() {
    let port = uringtls_tests::closed_port().port();
    let addr = format!("127.0.0.1:{port}");
    let (code, err) = engine_fails(&["--listen", &addr, "--metrics-listen", &addr]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("flag --metrics-listen:")
            && err.contains("is the TLS listener's own port")
            && !err.contains("another process"),
        "{err}"
    );
}

#[test]
fn an_unresolvable_upstream_stops_the_start_naming_it_before_the_listener_is_bound() {
    let dir = tempfile::tempdir().expect("tmp");
    // A 64-byte label is refused by the resolver itself: no DNS query leaves.
    let bad = format!("{}.invalid:80", "a".repeat(64));
    let toml = write(
        dir.path(),
        "u.toml",
        &format!("service = \"proxy\"\nupstream = [\"{bad}\"]\n"),
    );
    // The listen port is held (without SO_REUSEPORT): an engine that got
    // as far as binding would fail on it instead.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let listen = held.local_addr().expect("addr").to_string();
    let (code, err) = engine_fails(&["--listen", &listen, "--config", s(&toml)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "uringtls: error: proxy upstream `{bad}` (in `upstream`) does not resolve"
        )) && !err.to_lowercase().contains("in use"),
        "{err}"
    );
}

#[test]
fn a_refused_reload_says_refused_once() {
    let st = Setup::new();
    let dir = tempfile::tempdir().expect("tmp");
    let cert = dir.path().join("live.pem");
    std::fs::copy(&st.certs.cert, &cert).expect("copy");
    let e = start_engine(&["--cert", s(&cert), "--key", s(&st.certs.key)]);
    std::fs::write(&cert, "garbage").expect("write");
    assert!(!e.reload(1));
    let out = e.stdout();
    let line = out
        .lines()
        .find(|l| l.starts_with("uringtls: reload 1 "))
        .expect("reload line");
    assert_eq!(line.matches("refused").count(), 1, "{line}");
    assert!(
        line.contains("still serving the previous configuration"),
        "{line}"
    );
}

#[test]
fn a_reload_the_dropped_user_cannot_read_names_the_user_and_the_fix() {
    if !is_root() {
        assert!(!uringtls_tests::in_ci(), "CI runs as root");
        eprintln!("skipping: needs root");
        return;
    }
    // The temporary directory is 0700 root: readable at start (as root),
    // not after the drop to nobody.
    let st = Setup::new();
    let e = start_engine(&st.args(&["--user", "nobody", "--group", "nogroup"]));
    assert!(!e.reload(1));
    let out = e.stdout();
    assert!(
        out.contains("permission denied to user `nobody`")
            && out.contains("chown nobody")
            && !out.contains("give a PEM file"),
        "{out}"
    );
}

#[test]
fn sizes_take_binary_units_and_errors_list_what_is_accepted() {
    let st = Setup::new();
    let e = start_engine(&st.args(&["--body-size", "1KiB", "--max-header", "16KiB"]));
    let mut c = uringtls_tests::connect(e.addr(), &st.client).expect("connect");
    c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send");
    let (status, _, body) = uringtls_tests::read_response(&mut c).expect("response");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.len(), 1024);

    let (code, err) = engine_fails(&["--listen", "127.0.0.1:0", "--body-size", "1TB"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--body-size")
            && err.contains("KiB, MiB or GiB (powers of 1024")
            && err.contains("k/KB, M/MB, G/GB (powers of 1000"),
        "{err}"
    );
    let (_, err) = engine_fails(&["--listen", "127.0.0.1:0", "--idle-timeout", "5days"]);
    assert!(
        err.contains("--idle-timeout")
            && err.contains("us, ms, s, m (or min), h")
            && err.contains("a bare number is seconds"),
        "{err}"
    );
}

#[test]
fn settings_without_effect_are_warned_about_on_stderr_once() {
    let st = Setup::new();
    let shards = (allowed_cpus() + 1).to_string();
    let e = start_engine(&st.args(&[
        "--upstream",
        "127.0.0.1:9",
        "--proxy-protocol",
        "v2",
        "--alpn",
        "h2,http/1.1",
        "--tls12",
        "false",
        "--tls-min-version",
        "1.2",
        "--insecure-key-permissions",
        "true",
        "--shards",
        &shards,
    ]));
    for needle in [
        "`upstream` has no effect with the http service",
        "`proxy_protocol` has no effect with the http service",
        "`alpn` offers h2 but the http service speaks only HTTP/1.1",
        "`tls_min_version = 1.2` has no effect with `tls12 = false`",
        "`insecure_key_permissions` is on",
        "shards share CPUs",
    ] {
        e.wait_for_stderr(needle);
    }
    // A reload that changes nothing does not repeat them.
    assert!(e.reload(1));
    e.wait_for_stderr("configuration reloaded");
    let err = e.stderr();
    assert_eq!(
        err.matches("`insecure_key_permissions` is on").count(),
        1,
        "{err}"
    );
}

#[test]
fn a_second_instance_on_the_same_port_says_it_joined_the_group() {
    let st = Setup::new();
    let first = start_engine(&st.args(&[]));
    let addr = first.addr().to_string();
    let second = start_engine(&st.args(&["--listen", &addr]));
    let err = second.wait_for_stderr("SO_REUSEPORT group");
    assert!(
        err.contains(&format!("another socket already listens on {addr}"))
            && err.contains(&format!("ss -ltnp 'sport = :{}'", first.addr().port())),
        "{err}"
    );
    // The first instance bound a free port: no such warning.
    first.wait_for_stdout("uringtls: serving");
    assert!(
        !first.stderr().contains("SO_REUSEPORT group"),
        "{}",
        first.stderr()
    );
}
