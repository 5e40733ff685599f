//! Logs: the access log has one line per connection with the documented
//! fields, and a full run's output (debug level, JSON and human) never
//! contains key material or PEM headers: neither the private key nor the
//! ticket secret (before and after a reload that changes it) nor the
//! ticket keys derived from it.

mod operations_common;

use operations_common::{close, eventually, get, tls_from, Setup};
use std::io::{Read, Write};
use uringtls_tests::{start_engine, EngineProc};

/// A run touching every path that logs: full and resumed handshakes, a
/// refused connection, a failed handshake, plaintext garbage, an idle
/// timeout, then a drain.
fn full_run(s: &Setup, format: &str) -> (EngineProc, String) {
    let secret = write_secret(s, 1);
    let mut e = start_engine(&s.args(&[
        "--ticket-secret-file",
        secret.to_str().expect("utf8"),
        "--shards",
        "2",
        "--log-format",
        format,
        "--log-level",
        "debug",
        "--access-log",
        "true",
        "--deny",
        "127.0.0.2",
        "--idle-timeout",
        "1s",
        "--alpn",
        "http/1.1",
    ]));
    let mut cfg = (*s.client).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let cfg = std::sync::Arc::new(cfg);
    for _ in 0..3 {
        let mut c = tls_from("127.0.0.1", e.addr(), &cfg).expect("served");
        assert!(get(&mut c).expect("request").contains("200"));
        close(c);
    }
    assert!(tls_from("127.0.0.2", e.addr(), &cfg).is_err(), "denied");
    let mut plain = std::net::TcpStream::connect(e.addr()).expect("connect");
    // Not TLS and not HTTP either (plain HTTP is refused before any access
    // line, see operations.md): a failed handshake.
    plain
        .write_all(b"garbage, neither TLS nor HTTP\r\n\r\n")
        .expect("garbage");
    let _ = plain.read_to_end(&mut Vec::new());
    let mut idle = tls_from("127.0.0.1", e.addr(), &cfg).expect("idle one");
    let _ = idle.read(&mut [0u8; 16]); // returns when the idle timeout closes it
                                       // Access-log lines are written when connections end: wait for all 5.
    eventually("5 access-log lines", || {
        (e.stderr().matches("uringtls::access").count() >= 5).then_some(())
    });
    // A reload with a new secret, then one with a secret too short.
    write_secret(s, 2);
    assert!(e.reload(1), "{}", e.stdout());
    std::fs::write(&secret, &secret_text(2)[..20]).expect("short");
    assert!(!e.reload(2), "{}", e.stdout());
    e.stop();
    let all = format!("{}{}", e.stdout(), e.stderr());
    (e, all)
}

/// The ticket secret of generation `g` (hex text, deterministic per test).
fn secret_text(g: u8) -> String {
    (0..48u8)
        .map(|i| {
            format!(
                "{:02x}",
                i.wrapping_mul(37).wrapping_add(g.wrapping_mul(101))
            )
        })
        .collect::<String>()
        + "\n"
}

fn write_secret(s: &Setup, g: u8) -> std::path::PathBuf {
    let p = uringtls_tests::write(s.certs.dir.path(), "tickets.secret", &secret_text(g));
    uringtls_tests::set_mode(&p, 0o600);
    p
}

/// Neither secret, in part, nor the keys derived from them around now.
fn assert_no_ticket_secrets(logs: &str) {
    use uringtls::__private::tickets::{derive_bytes, unix_now, Secret, DEFAULT_SECRET_ROTATION};
    let lower = logs.to_lowercase();
    let period = DEFAULT_SECRET_ROTATION.as_secs();
    for g in [1, 2] {
        let text = secret_text(g);
        for i in (0..text.len().saturating_sub(17)).step_by(8) {
            assert!(
                !lower.contains(&text[i..i + 16]),
                "ticket secret in the logs"
            );
        }
        let secret = Secret::new(std::path::Path::new("s"), text.into_bytes()).expect("secret");
        let n = unix_now() / period;
        for n in [n - 1, n, n + 1] {
            let key = derive_bytes(&secret, period, n).expect("derive");
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            for i in (0..hex.len() - 24).step_by(8) {
                assert!(
                    !lower.contains(&hex[i..i + 24]),
                    "derived ticket key in the logs"
                );
            }
            let list = format!("{:?}", &key[KEY_TAIL..]);
            assert!(
                !logs.contains(list.trim_matches(['[', ']'])),
                "derived key (byte list)"
            );
        }
    }
}

/// Where the last 8 bytes of a derived key start (its AES key's tail).
const KEY_TAIL: usize = uringtls::__private::tickets::KEY_BYTES - 8;

fn assert_no_secrets(s: &Setup, logs: &str) {
    assert_no_ticket_secrets(logs);
    let pem = std::fs::read_to_string(&s.certs.key).expect("key");
    assert!(!logs.contains("-----BEGIN"), "PEM header in the logs");
    assert!(!logs.contains("PRIVATE KEY"), "key marker in the logs");
    // No 16-character run of the key's base64 body appears anywhere.
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    for i in (0..body.len().saturating_sub(16)).step_by(4) {
        assert!(
            !logs.contains(&body[i..i + 16]),
            "key material (base64) in the logs"
        );
    }
    // ... nor its DER bytes as hex or as a Rust byte list.
    let key: rustls_pki_types::PrivateKeyDer<'static> =
        rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).expect("der");
    operations_common::assert_no_key_bytes(logs, key.secret_der());
}

#[test]
fn json_logs_of_a_full_run_hold_access_lines_and_no_key_material() {
    let s = Setup::new();
    let (_e, logs) = full_run(&s, "json");
    assert_no_secrets(&s, &logs);
    let access: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"target\":\"uringtls::access\""))
        .collect();
    assert_eq!(
        access.len(),
        5,
        "one line per admitted connection (3 served, 1 garbage, 1 idle):\n{logs}"
    );
    let served = access
        .iter()
        .filter(|l| l.contains("\"close\":\"normal\""))
        .count();
    assert_eq!(served, 3);
    for field in [
        "\"client\":\"127.0.0.1:",
        "\"sni\":\"localhost\"",
        "\"alpn\":\"http/1.1\"",
        "\"version\":\"TLSv1_3\"",
        "\"resumed\":",
        "\"bytes_in\":",
        "\"bytes_out\":",
        "\"duration_ms\":",
        "\"cipher\":\"TLS13_",
    ] {
        assert!(
            access.iter().any(|l| l.contains(field)),
            "access log lacks {field}:\n{}",
            access.join("\n")
        );
    }
    assert!(
        access.iter().any(|l| l.contains("\"resumed\":true")),
        "later connections resume"
    );
    assert!(access
        .iter()
        .any(|l| l.contains("\"close\":\"handshake_failed\"")));
    assert!(access
        .iter()
        .any(|l| l.contains("\"close\":\"idle_timeout\"")));
}

#[test]
fn human_logs_of_a_full_run_hold_no_key_material() {
    let s = Setup::new();
    let (_e, logs) = full_run(&s, "human");
    assert_no_secrets(&s, &logs);
    assert!(
        logs.contains("uringtls::access") && logs.contains("close=normal"),
        "{logs}"
    );
}

#[test]
fn json_access_lines_round_durations_write_null_for_missing_values_and_name_the_handshake_alert() {
    let s = Setup::new();
    let mut e = start_engine(&s.args(&[
        "--shards",
        "1",
        "--log-format",
        "json",
        "--access-log",
        "true",
    ]));
    // Served, then closed with close_notify.
    for _ in 0..3 {
        let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("served");
        assert!(get(&mut c).expect("request").contains("200"));
        close(c);
    }
    // A client that does not trust the certificate: it sends an alert.
    let stranger = uringtls_tests::test_certs();
    let distrust = uringtls_tests::client_config(&stranger.ca_der, &[&rustls::version::TLS13]);
    assert!(tls_from("127.0.0.1", e.addr(), &distrust).is_err());
    eventually("4 access-log lines", || {
        (e.stderr().matches("uringtls::access").count() >= 4).then_some(())
    });
    e.stop();
    let lines: Vec<serde_json::Value> = e
        .stderr()
        .lines()
        .filter(|l| l.contains("\"target\":\"uringtls::access\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("{err}: {l}")))
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for l in &lines {
        let f = &l["fields"];
        let ms = f["duration_ms"].as_f64().expect("duration_ms is a number");
        let micros = ms * 1000.0;
        assert!(
            (micros - micros.round()).abs() < 1e-6 && f["duration_ms"].to_string().len() <= 12,
            "duration_ms {} is not rounded to the microsecond",
            f["duration_ms"]
        );
        for key in [
            "sni",
            "alpn",
            "version",
            "cipher",
            "handshake_error",
            "alert",
        ] {
            assert!(
                f.get(key).is_some_and(|v| v.is_null() || v.is_string()),
                "{key} missing: {l}"
            );
            assert_ne!(f[key], "-", "{key}: missing values are null: {l}");
        }
    }
    let failed = lines
        .iter()
        .find(|l| l["fields"]["close"] == "handshake_failed")
        .expect("the failed handshake's line");
    let f = &failed["fields"];
    assert_eq!(f["alert"], "decrypt_error", "{failed}");
    assert_eq!(f["handshake_error"], "alert_decrypt_error", "{failed}");
    assert!(f["alpn"].is_null(), "{failed}");
    let served = lines
        .iter()
        .find(|l| l["fields"]["close"] == "normal")
        .expect("a served line");
    assert!(served["fields"]["alert"].is_null(), "{served}");
    assert!(
        served["fields"]["alpn"].is_null(),
        "no ALPN asked: {served}"
    );
}
