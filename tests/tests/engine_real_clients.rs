//! Real clients: curl and openssl s_client against the engine.

use std::io::Write;
use std::process::{Command, Stdio};
use uringtls_tests::{require_tool, start_engine, start_engine_with_certs, test_certs};

#[test]
fn curl_fetches_the_body_over_tls13_and_tls12() {
    if !require_tool("curl") {
        return;
    }
    let certs = test_certs();
    let e = start_engine_with_certs(&certs, &["--shards", "2"]);
    let url = format!("https://localhost:{}/", e.addr().port());
    let resolve = format!("localhost:{}:127.0.0.1", e.addr().port());
    for version in ["--tlsv1.3", "--tlsv1.2"] {
        let mut args = vec![
            "-sS",
            "--cacert",
            certs.ca.to_str().unwrap(),
            "--resolve",
            &resolve,
            version,
        ];
        if version == "--tlsv1.2" {
            args.extend(["--tls-max", "1.2"]);
        }
        args.push(&url);
        let out = Command::new("curl").args(&args).output().expect("curl");
        assert!(
            out.status.success(),
            "curl {version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"hello world\n");
    }
}

#[test]
fn curl_with_the_default_self_signed_certificate_and_k() {
    if !require_tool("curl") {
        return;
    }
    let e = start_engine(&[]);
    let out = Command::new("curl")
        .args(["-sSk", &format!("https://{}/", e.addr())])
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello world\n");
}

fn s_client(addr: &str, extra: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", addr])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn openssl_s_client_reconnect_reports_reuse_with_tls12() {
    if !require_tool("openssl") {
        return;
    }
    let e = start_engine(&["--shards", "2"]);
    let out = s_client(&e.addr().to_string(), &["-reconnect", "-tls1_2"], b"");
    assert_eq!(out.matches("\nNew, TLSv1.2").count(), 1, "{out}");
    assert_eq!(out.matches("\nReused, TLSv1.2").count(), 5, "{out}");
}

#[test]
fn openssl_s_client_resumes_a_saved_tls13_session() {
    if !require_tool("openssl") {
        return;
    }
    // `-reconnect` cannot show TLS 1.3 reuse (s_client reconnects before it
    // reads the ticket, with any server); save the session after a request.
    let e = start_engine(&["--shards", "2"]);
    let dir = tempfile::tempdir().expect("tmp");
    let sess = dir.path().join("sess.pem");
    let sess = sess.to_str().expect("path");
    let req = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
    let addr = e.addr().to_string();
    let first = s_client(&addr, &["-ign_eof", "-sess_out", sess], req);
    assert!(
        first.contains("New, TLSv1.3") && first.contains("hello world"),
        "{first}"
    );
    for _ in 0..3 {
        let again = s_client(
            &addr,
            &["-ign_eof", "-sess_in", sess, "-sess_out", sess],
            req,
        );
        assert!(again.contains("Reused, TLSv1.3"), "{again}");
    }
}
