//! bench-client against the engine: every workload runs (`--quick`, about a
//! second), its JSON report is checked, and bad targets give a clear error
//! and a non-zero exit. No timing assertions: figures belong in benchmarks.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use uringtls_tests::{start_engine, test_bin, test_certs, EngineProc};

fn bench_client(args: &[&str]) -> Output {
    Command::new(test_bin("bench-client-under-test"))
        .args(args)
        .output()
        .expect("run bench-client")
}

fn url(e: &EngineProc) -> String {
    format!("https://{}/", e.addr())
}

/// Runs a workload with `--quick --json FILE` and returns the parsed report.
fn run_json(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("out.json");
    let mut all: Vec<&str> = args.to_vec();
    all.extend([
        "--quick",
        "--quiet",
        "--json",
        json.to_str().expect("utf8 path"),
    ]);
    let out = bench_client(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench-client {args:?} failed:\n{stdout}\n{stderr}"
    );
    let text = std::fs::read_to_string(&json).expect("json written");
    serde_json::from_str(&text).expect("valid JSON")
}

fn assert_clean(v: &Value) {
    assert!(v["ops"].as_u64().expect("ops") > 0, "{v:#}");
    assert_eq!(v["errors"]["total"], 0, "{v:#}");
    assert!(
        v["latency_us"]["total"]["p99_us"].as_u64().is_some(),
        "{v:#}"
    );
}

#[test]
fn http_keep_alive_reports_requests_and_percentiles() {
    let e = start_engine(&["--shards", "2", "--service", "http"]);
    let v = run_json(&["http", &url(&e), "-k"]);
    assert_clean(&v);
    assert_eq!(v["workload"], "http");
    assert_eq!(v["load"]["connections_achieved"], 4);
    assert!(v["latency_us"]["ttfb"]["count"].as_u64().expect("ttfb") > 0);
    assert!(v["mb_per_s_in"].as_f64().expect("mb/s") > 0.0);
}

#[test]
fn handshake_opens_a_new_full_handshake_per_operation() {
    let e = start_engine(&["--shards", "2", "--service", "http"]);
    let v = run_json(&["handshake", &url(&e), "-k", "--request", "http"]);
    assert_clean(&v);
    assert_eq!(v["handshakes"]["resumed"], 0);
    assert_eq!(v["handshakes"]["full"], v["ops"]);
    assert!(v["latency_us"]["handshake"]["count"].as_u64().expect("hs") > 0);
}

#[test]
fn resume_reports_every_handshake_resumed_across_two_shards() {
    let e = start_engine(&["--shards", "2", "--service", "http"]);
    let v = run_json(&["resume", &url(&e), "-k"]);
    assert_clean(&v);
    assert_eq!(v["handshakes"]["full"], 0, "{v:#}");
    assert_eq!(v["handshakes"]["resumed_share"], 1.0, "{v:#}");
}

#[test]
fn resume_works_with_tls12_session_resumption_too() {
    let e = start_engine(&["--shards", "2", "--service", "http"]);
    let v = run_json(&["resume", &url(&e), "-k", "--tls", "1.2"]);
    assert_clean(&v);
    assert_eq!(v["tls"]["version"], "TLSv1_2");
    assert_eq!(v["handshakes"]["resumed_share"], 1.0, "{v:#}");
}

#[test]
fn echo_round_trips_check_the_bytes() {
    let e = start_engine(&["--shards", "1", "--service", "echo"]);
    let v = run_json(&["echo", &url(&e), "-k", "--size", "1KiB"]);
    assert_clean(&v);
    let ops = v["ops"].as_u64().expect("ops");
    assert_eq!(v["bytes_in"].as_u64(), Some(ops * 1024));
}

#[test]
fn bulk_download_and_upload_move_megabytes() {
    let big = start_engine(&[
        "--shards",
        "1",
        "--service",
        "http",
        "--body-size",
        "1048576",
    ]);
    let v = run_json(&["bulk", &url(&big), "-k"]);
    assert_clean(&v);
    assert!(v["bytes_in"].as_u64().expect("bytes") >= v["ops"].as_u64().expect("ops") * 1_048_576);
    let echo = start_engine(&["--shards", "1", "--service", "echo"]);
    let v = run_json(&[
        "bulk",
        &url(&echo),
        "-k",
        "--direction",
        "upload",
        "--size",
        "256KiB",
    ]);
    assert_clean(&v);
    assert_eq!(v["bytes_out"], v["bytes_in"]);
}

#[test]
fn open_loop_reports_corrected_and_uncorrected_latency() {
    let e = start_engine(&["--shards", "1", "--service", "http"]);
    let v = run_json(&["http", &url(&e), "-k", "--rate", "200"]);
    assert_clean(&v);
    assert_eq!(v["load"]["model"], "open");
    assert_eq!(v["latency_corrected"], true);
    assert!(
        v["latency_us"]["total_uncorrected"]["count"]
            .as_u64()
            .expect("uncorrected")
            > 0
    );
}

#[test]
fn requests_limit_stops_after_exactly_that_many_operations() {
    let e = start_engine(&["--shards", "1", "--service", "http"]);
    let v = run_json(&[
        "http",
        &url(&e),
        "-k",
        "-c",
        "3",
        "-n",
        "50",
        "--duration",
        "60s",
    ]);
    assert_eq!(v["ops"], 50);
}

#[test]
fn trusted_ca_file_and_server_pid_metrics_work() {
    let certs = test_certs();
    let e = start_engine(&[
        "--shards",
        "1",
        "--service",
        "http",
        "--cert",
        certs.cert.to_str().expect("path"),
        "--key",
        certs.key.to_str().expect("path"),
    ]);
    let pid = e.pid().to_string();
    let v = run_json(&[
        "http",
        &url(&e),
        "--ca",
        certs.ca.to_str().expect("path"),
        "--server-metrics",
        &pid,
    ]);
    assert_clean(&v);
    assert!(v["server_cpu"]["cpu_s"].as_f64().is_some(), "{v:#}");
}

#[test]
fn interval_logs_of_two_runs_merge_into_one_report() {
    let e = start_engine(&["--shards", "1", "--service", "http"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n).to_str().expect("utf8").to_string();
    for name in ["a", "b"] {
        let (hlog, hgrm, csv) = (
            p(&format!("{name}.hlog")),
            p(&format!("{name}.hgrm")),
            p(&format!("{name}.csv")),
        );
        let out = bench_client(&[
            "http",
            &url(&e),
            "-k",
            "--quick",
            "-q",
            "--hlog",
            &hlog,
            "--hgrm",
            &hgrm,
            "--csv",
            &csv,
            "--latency",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("Detailed Percentile spectrum"), "{stdout}");
        assert!(read(&hgrm).starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(read(&csv).starts_with("interval,start_s,len_s,warmup,ops,"));
    }
    let merged_json = p("merged.json");
    let out = bench_client(&["merge", &p("a.hlog"), &p("b.hlog"), "--json", &merged_json]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("combined rate"));
    let m: Value = serde_json::from_str(&read(&merged_json)).expect("merged json");
    let count = m["latency_us"]["total"]["count"].as_u64().expect("count");
    let sum: u64 = m["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|i| i["ops"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(count, sum);
    assert!(count > 0);
}

fn read(p: &str) -> String {
    std::fs::read_to_string(Path::new(p)).expect("read output file")
}

/// Runs against a bad target; returns stderr after checking exit code 1 and no panic.
fn fails(args: &[&str]) -> String {
    let out = bench_client(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn nothing_listening_is_a_clear_error_and_exit_1() {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    // The listener is dropped: nothing listens on `port` any more.
    let err = fails(&[
        "http",
        &format!("https://127.0.0.1:{port}/"),
        "-k",
        "--quick",
    ]);
    assert!(
        err.contains("cannot connect") && err.contains("connection refused"),
        "{err}"
    );
}

#[test]
fn untrusted_certificate_is_a_clear_error_and_exit_1() {
    let e = start_engine(&["--shards", "1", "--service", "http"]);
    // Verification is on with --ca (here a CA that did not issue the
    // engine's self-signed certificate).
    let other = uringtls_tests::test_certs();
    let err = fails(&[
        "http",
        &url(&e),
        "--quick",
        "--ca",
        other.ca.to_str().unwrap(),
    ]);
    assert!(err.contains("not trusted") && err.contains("--ca"), "{err}");
}

#[test]
fn a_loopback_target_without_ca_is_benchmarked_unverified_and_says_so() {
    let e = start_engine(&["--shards", "1", "--service", "http"]);
    let out = std::process::Command::new(uringtls_tests::test_bin("bench-client-under-test"))
        .args(["http", &url(&e), "--quick", "--quiet"])
        .output()
        .expect("run bench-client");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("certificate not verified"), "{err}");
}

#[test]
fn plaintext_server_is_a_clear_error_and_exit_1() {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    // A plaintext HTTP server: answers anything with a 400 and closes.
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let err = fails(&["http", &format!("https://{addr}/"), "-k", "--quick"]);
    assert!(err.contains("did not answer with TLS"), "{err}");
}

#[test]
fn wrong_protocol_is_reported_by_error_class_with_exit_1() {
    let e = start_engine(&["--shards", "1", "--service", "echo"]);
    let err = fails(&["http", &url(&e), "-k", "--quick", "-q"]);
    assert!(
        err.contains("malformed HTTP response") && err.contains("need an HTTP server"),
        "{err}"
    );
}

#[test]
fn server_metrics_url_gives_server_cpu_per_operation() {
    let e = start_engine(&[
        "--shards",
        "2",
        "--service",
        "http",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let out = e.wait_for_stdout("metrics at http://");
    let metrics = out
        .lines()
        .find_map(|l| l.strip_prefix("uringtls: metrics at "))
        .expect("metrics line")
        .trim()
        .to_string();
    let v = run_json(&["http", &url(&e), "-k", "--server-metrics", &metrics]);
    assert_clean(&v);
    assert!(
        v["server_cpu"]["source"]
            .as_str()
            .expect("source")
            .contains("uringtls_shard_cpu_seconds_total"),
        "{v:#}"
    );
    assert!(v["server_cpu"]["cpu_s"].as_f64().is_some(), "{v:#}");
}

#[test]
fn client_certificate_satisfies_a_server_requiring_mtls_and_its_absence_is_a_clear_error() {
    let certs = test_certs();
    let client = certs.issue(&["bench-client"], "bench-client", "client", false);
    let (cert, key, ca) = (
        certs.cert.to_str().expect("path"),
        certs.key.to_str().expect("path"),
        certs.ca.to_str().expect("path"),
    );
    let e = start_engine(&[
        "--shards",
        "1",
        "--service",
        "http",
        "--cert",
        cert,
        "--key",
        key,
        "--client-auth",
        "required",
        "--client-ca",
        ca,
    ]);
    let v = run_json(&[
        "http",
        &url(&e),
        "--ca",
        ca,
        "--cert",
        client.cert.to_str().expect("path"),
        "--key",
        client.key.to_str().expect("path"),
    ]);
    assert_clean(&v);
    let err = fails(&["http", &url(&e), "--ca", ca, "--quick"]);
    assert!(
        err.contains("refused the TLS handshake") || err.contains("closed the connection"),
        "{err}"
    );
}

#[test]
fn pipelined_requests_are_each_answered_and_counted() {
    let e = start_engine(&["--shards", "1", "--service", "http"]);
    let v = run_json(&[
        "http",
        &url(&e),
        "-k",
        "--pipeline",
        "4",
        "-c",
        "2",
        "-n",
        "400",
        "--duration",
        "60s",
    ]);
    assert_clean(&v);
    // Quotas count operations (batches of 4 requests): 400 batches, 1600 responses.
    assert_eq!(v["ops"], 1600);
}

/// Runs `args`, checks exit 1 (via [`fails`]) and returns stderr and how long it took.
fn fails_timed(args: &[&str]) -> (String, std::time::Duration) {
    let t0 = std::time::Instant::now();
    let err = fails(args);
    (err, t0.elapsed())
}

#[test]
fn echo_against_the_http_service_is_a_wrong_service_error_within_a_round_trip() {
    // Timeouts far above the bound below: the answer must come from the
    // server's reply, not from a timer running out.
    let e = start_engine(&[
        "--shards",
        "1",
        "--service",
        "http",
        "--header-timeout",
        "60s",
    ]);
    let (err, took) = fails_timed(&["echo", &url(&e), "--quick", "-q", "--timeout", "60s"]);
    assert!(
        err.contains("answered HTTP after the TLS handshake instead of the echo protocol")
            && err.contains("wrong service?"),
        "{err}"
    );
    assert!(
        !err.contains("TLS answer") && !err.contains("during the TLS handshake"),
        "{err}"
    );
    assert!(
        took < std::time::Duration::from_secs(30),
        "took {took:?}: {err}"
    );
}

#[test]
fn echo_through_a_proxy_whose_upstream_is_down_says_the_server_closed_after_the_handshake() {
    // The proxy completes the handshake, fails to reach its upstream and
    // closes without a byte: not a handshake error.
    let up = uringtls_tests::closed_port().to_string();
    let e = start_engine(&["--shards", "1", "--service", "proxy", "--upstream", &up]);
    let (err, took) = fails_timed(&["echo", &url(&e), "--quick", "-q", "--timeout", "60s"]);
    assert!(
        err.contains(
            "server closed after the TLS handshake without answering the echo protocol — wrong service?"
        ),
        "{err}"
    );
    assert!(!err.contains("during the TLS handshake"), "{err}");
    assert!(
        took < std::time::Duration::from_secs(30),
        "took {took:?}: {err}"
    );
}

#[test]
fn merge_warns_with_the_figures_when_an_input_ran_longer_than_asked() {
    let e = start_engine(&["--shards", "1", "--service", "http"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n).to_str().expect("utf8").to_string();
    let out = bench_client(&[
        "http",
        &url(&e),
        "-k",
        "--quick",
        "-q",
        "--hlog",
        &p("a.hlog"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = read(&p("a.hlog"));
    assert!(log.contains("#requested_duration_s: 1.000"), "{log}");
    // The same intervals from a run that had asked for half the time: as a
    // client that could not stop on time (starved) would have written them.
    std::fs::write(
        p("starved.hlog"),
        log.replace(
            "#requested_duration_s: 1.000",
            "#requested_duration_s: 0.500",
        ),
    )
    .expect("write");
    let out = bench_client(&[
        "merge",
        &p("a.hlog"),
        &p("starved.hlog"),
        "--json",
        &p("m.json"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warning = stderr
        .lines()
        .find(|l| l.contains("starved.hlog: the run lasted"))
        .unwrap_or_else(|| panic!("no overrun warning: {stderr}"));
    assert!(
        warning.starts_with("bench-client: warning: ") && warning.contains("for 0.50s asked"),
        "{warning}"
    );
    let m: Value = serde_json::from_str(&read(&p("m.json"))).expect("merged json");
    assert_eq!(m["inputs"][1]["overran"], true, "{m:#}");
    assert_eq!(m["inputs"][1]["requested_s"], 0.5, "{m:#}");
}
