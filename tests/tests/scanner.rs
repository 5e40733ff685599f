//! A standard TLS scanner finds nothing to flag on a default uringtls.
//!
//! `sslyze` (from PyPI; `.ci/run` installs it in a venv and sets `SSLYZE`)
//! scans an engine started with default settings; the test parses its JSON
//! and fails on any finding: a protocol below TLS 1.2, a weak cipher,
//! compression, client-initiated renegotiation, missing secure
//! renegotiation or EMS, no fallback SCSV, no session-ID resumption,
//! Heartbleed, CCS injection or ROBOT, or a scan that did not complete.
//!
//! TLS 1.2 ticket resumption is checked with `openssl s_client` instead:
//! sslyze counts a ticket as honoured only if the server hands back the
//! *same* ticket, while rustls issues a fresh one on every resumption. An
//! OpenSSL client names a ticket session by the ticket's SHA-256, which is
//! in no session cache, so "Reused" there can only mean the ticket worked.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use uringtls_tests::{in_ci, require_tool, start_engine, EngineProc};

/// The sslyze command: `$SSLYZE`, else `sslyze` on PATH.
fn sslyze() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SSLYZE") {
        let p = PathBuf::from(p);
        assert!(p.exists(), "SSLYZE={} does not exist", p.display());
        return Some(p);
    }
    require_tool("sslyze").then(|| PathBuf::from("sslyze"))
}

fn scan(sslyze: &PathBuf, e: &EngineProc) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("scan.json");
    let out = Command::new(sslyze)
        .args([
            "--quiet",
            "--sslv2",
            "--sslv3",
            "--tlsv1",
            "--tlsv1_1",
            "--tlsv1_2",
            "--tlsv1_3",
            "--compression",
            "--reneg",
            "--resum",
            "--heartbleed",
            "--openssl_ccs",
            "--robot",
            "--fallback",
            "--ems",
            "--json_out",
        ])
        .arg(&json)
        .arg(e.addr().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run sslyze");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|err| {
        panic!(
            "sslyze wrote no JSON ({err}); status {}; stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(&text).expect("sslyze JSON")
}

/// Collects every finding in an sslyze scan result.
fn findings(r: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            bad.push(what.to_string());
        }
    };
    for (name, scan) in r.as_object().expect("scan_result object") {
        let status = scan["status"].as_str().unwrap_or("?");
        if status != "COMPLETED" && status != "NOT_SCHEDULED" {
            let trace = scan["error_trace"].as_str().unwrap_or("");
            let last = trace.lines().rev().find(|l| !l.trim().is_empty());
            check(
                false,
                &format!("{name}: {status} ({})", last.unwrap_or("no trace")),
            );
        }
    }
    let accepted = |scan: &str| -> Vec<String> {
        r[scan]["result"]["accepted_cipher_suites"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["cipher_suite"]["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for old in [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ] {
        let suites = accepted(old);
        check(suites.is_empty(), &format!("{old} accepted: {suites:?}"));
    }
    for suite in accepted("tls_1_2_cipher_suites") {
        check(
            strong_tls12_suite(&suite),
            &format!("weak TLS 1.2 suite {suite}"),
        );
    }
    check(
        !accepted("tls_1_2_cipher_suites").is_empty(),
        "no TLS 1.2 suite accepted (default allows 1.2)",
    );
    check(
        !accepted("tls_1_3_cipher_suites").is_empty(),
        "no TLS 1.3 suite accepted",
    );
    let res = |scan: &str, field: &str| r[scan]["result"][field].clone();
    check(
        res("tls_compression", "supports_compression") == false,
        "compression supported",
    );
    check(
        res(
            "session_renegotiation",
            "is_vulnerable_to_client_renegotiation_dos",
        ) == false,
        "client-initiated renegotiation accepted",
    );
    check(
        res("session_renegotiation", "supports_secure_renegotiation") == true,
        "secure renegotiation indication missing",
    );
    check(
        res("tls_extended_master_secret", "supports_ems_extension") == true,
        "extended master secret missing",
    );
    check(
        res("tls_fallback_scsv", "supports_fallback_scsv") == true,
        "TLS_FALLBACK_SCSV not supported",
    );
    check(
        res("session_resumption", "session_id_resumption_result") == "FULLY_SUPPORTED",
        "resumption by session ID not fully supported",
    );
    check(
        res("heartbleed", "is_vulnerable_to_heartbleed") == false,
        "Heartbleed",
    );
    check(
        res("openssl_ccs_injection", "is_vulnerable_to_ccs_injection") == false,
        "CCS injection",
    );
    let robot = res("robot", "robot_result");
    check(
        robot
            .as_str()
            .is_some_and(|s| s.starts_with("NOT_VULNERABLE")),
        &format!("ROBOT: {robot}"),
    );
    bad
}

/// ECDHE key exchange with an AEAD cipher; nothing else passes.
fn strong_tls12_suite(name: &str) -> bool {
    name.starts_with("TLS_ECDHE_") && (name.contains("_GCM_") || name.contains("CHACHA20_POLY1305"))
}

#[test]
fn sslyze_finds_nothing_to_flag_on_a_default_engine() {
    let Some(sslyze) = sslyze() else {
        return;
    };
    let e = start_engine(&[]);
    let report = scan(&sslyze, &e);
    let server = &report["server_scan_results"][0];
    assert_eq!(
        server["scan_status"], "COMPLETED",
        "sslyze could not scan: {server}"
    );
    let bad = findings(&server["scan_result"]);
    assert!(bad.is_empty(), "sslyze findings:\n  {}", bad.join("\n  "));
}

/// One `openssl s_client` TLS 1.2 connection; returns its output.
fn s_client(e: &EngineProc, sess: &str, arg: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-tls1_2", "-connect", &e.addr().to_string()])
        .args([arg, sess])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tls12_resumption_by_ticket_works_on_a_default_engine() {
    if !require_tool("openssl") {
        return;
    }
    let e = start_engine(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let sess = dir.path().join("sess.pem");
    let sess = sess.to_str().expect("utf8 path");
    let first = s_client(&e, sess, "-sess_out");
    assert!(
        first.contains("TLS session ticket:"),
        "no ticket issued over TLS 1.2:\n{first}"
    );
    let second = s_client(&e, sess, "-sess_in");
    assert!(
        second.contains("Reused, TLSv1.2"),
        "ticket not honoured:\n{second}"
    );
}

#[test]
fn the_scanner_check_cannot_be_skipped_in_ci() {
    // Guard: in CI the scanner must be reachable, or the check above would
    // have passed vacuously.
    if in_ci() {
        assert!(sslyze().is_some());
    }
}
