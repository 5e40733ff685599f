//! Several bench-client processes as one load generator: `--worker I/N`
//! shares, one `--start-at`, and `merge` of their interval logs (totals,
//! exact percentiles, missing and starved workers). Traffic on loopback
//! only, a small fixed rate, a few seconds.

use base64::Engine;
use hdrhistogram::serialization::Deserializer;
use hdrhistogram::Histogram;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use uringtls_tests::{start_engine, test_bin};

/// The fleet's total rate (operations per second) and workers.
const RATE: f64 = 600.0;
const WORKERS: u32 = 3;
/// Time given to every worker to start and probe the target before the
/// common start instant (debug binaries on a busy 2-core machine).
const START_MARGIN: Duration = Duration::from_secs(5);

fn bench_client(args: &[&str]) -> Output {
    Command::new(test_bin("bench-client-under-test"))
        .args(args)
        .output()
        .expect("run bench-client")
}

fn ok(out: &Output, what: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("read JSON")).expect("valid JSON")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf8 path")
}

/// The `total` histograms of an interval log, added up: read here from the
/// raw `Tag=total,start,length,max,BASE64` lines, independently of
/// bench-client's own reader.
fn raw_total(path: &Path) -> Histogram<u64> {
    let text = std::fs::read_to_string(path).expect("read hlog");
    let mut sum = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
    let mut de = Deserializer::new();
    for line in text.lines().filter(|l| l.starts_with("Tag=total,")) {
        let b64 = line.rsplit(',').next().expect("histogram column");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .expect("base64");
        let h: Histogram<u64> = de.deserialize(&mut raw.as_slice()).expect("histogram");
        sum.add(&h).expect("same bounds");
    }
    sum
}

/// Runs `merge` over `files`; returns its JSON report and its stderr.
fn merge(dir: &Path, files: &[&Path]) -> (Value, String) {
    let out_json = dir.join("merged.json");
    let mut args = vec!["merge"];
    args.extend(files.iter().map(|f| s(f)));
    args.extend(["--json", s(&out_json)]);
    let stderr = ok(&bench_client(&args), "merge");
    (json(&out_json), stderr)
}

#[test]
fn three_workers_started_together_add_up_to_the_rate_asked_and_merge_exactly() {
    let e = start_engine(&["--shards", "1", "--service", "http"]);
    let url = format!("https://{}/", e.addr());
    let dir = tempfile::tempdir().expect("tempdir");
    let start_at = (SystemTime::now() + START_MARGIN)
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .to_string();
    let rate = RATE.to_string();
    let file = |i: u32, ext: &str| dir.path().join(format!("w{i}.{ext}"));
    let children: Vec<_> = (1..=WORKERS)
        .map(|i| {
            let worker = format!("{i}/{WORKERS}");
            Command::new(test_bin("bench-client-under-test"))
                .args([
                    "http",
                    &url,
                    "-k",
                    "-q",
                    "--threads",
                    "1",
                    "--timeout",
                    "2s",
                ])
                .args(["-c", "6", "-d", "3s", "--rate", &rate, "--worker", &worker])
                .args(["--start-at", &start_at])
                .args(["--hlog", s(&file(i, "hlog")), "--json", s(&file(i, "json"))])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn worker")
        })
        .collect();
    for (i, c) in (1..=WORKERS).zip(children) {
        ok(
            &c.wait_with_output().expect("worker exits"),
            &format!("worker {i}"),
        );
    }
    let runs: Vec<Value> = (1..=WORKERS).map(|i| json(&file(i, "json"))).collect();

    // Each took its share; all started within 50 ms of each other.
    for (i, r) in (1..=WORKERS).zip(&runs) {
        assert_eq!(r["worker"]["tag"], format!("{i}/{WORKERS}"), "{r:#}");
        assert_eq!(r["load"]["rate_requested"], RATE / f64::from(WORKERS));
        assert_eq!(r["load"]["connections_requested"], 2);
        assert_eq!(r["errors"]["total"], 0, "{r:#}");
        let hlog = std::fs::read_to_string(file(i, "hlog")).expect("hlog");
        assert!(hlog.contains(&format!("\n#worker: {i}/{WORKERS}\n")));
        assert!(hlog.contains("\n#result: {"), "closing result line");
    }
    let starts: Vec<f64> = runs
        .iter()
        .map(|r| r["started_unix_s"].as_f64().expect("started"))
        .collect();
    let spread = starts.iter().cloned().fold(f64::MIN, f64::max)
        - starts.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread <= 0.050, "starts {starts:?} spread {spread:.3}s");
    let asked: f64 = start_at.parse().expect("secs");
    assert!(
        starts.iter().all(|&t| t >= asked),
        "{starts:?} before {asked}"
    );

    // The merged total is the workers' sum, and the rate asked within 2%.
    let hlogs: Vec<PathBuf> = (1..=WORKERS).map(|i| file(i, "hlog")).collect();
    let all: Vec<&Path> = hlogs.iter().map(PathBuf::as_path).collect();
    let (m, stderr) = merge(dir.path(), &all);
    let sum: u64 = runs.iter().map(|r| r["ops"].as_u64().expect("ops")).sum();
    assert_eq!(m["ops"].as_u64(), Some(sum), "{m:#}");
    let merged_rate = m["ops_per_s"].as_f64().expect("rate");
    assert!(
        (merged_rate - RATE).abs() <= RATE * 0.02,
        "merged rate {merged_rate:.1} for {RATE} asked\n{stderr}"
    );
    assert_eq!(m["workers"]["missing"], serde_json::json!([]), "{m:#}");
    assert!(!stderr.contains("missing"), "{stderr}");

    // Merged percentiles are those of one histogram of every raw value.
    let mut raw = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("bounds");
    for h in &hlogs {
        raw.add(raw_total(h)).expect("same bounds");
    }
    let t = &m["latency_us"]["total"];
    assert_eq!(t["count"].as_u64(), Some(raw.len()));
    assert_eq!(raw.len(), sum);
    for (key, q) in [
        ("p50_us", 0.5),
        ("p90_us", 0.9),
        ("p99_us", 0.99),
        ("p99_9_us", 0.999),
        ("p99_99_us", 0.9999),
    ] {
        assert_eq!(t[key].as_u64(), Some(raw.value_at_quantile(q)), "{key}");
    }
    assert_eq!(t["max_us"].as_u64(), Some(raw.max()));

    // Worker 3's log left out: reported missing.
    let (m, stderr) = merge(dir.path(), &all[..2]);
    assert_eq!(m["workers"]["missing"], serde_json::json!(["3/3"]));
    assert!(
        stderr.contains("worker 3/3 of 3 missing"),
        "no missing-worker warning:\n{stderr}"
    );

    // Worker 2 starved: its log's closing #result: line rewritten to say its
    // own CPU was saturated, as a worker whose CPU ran flat out writes it.
    let starved = dir.path().join("w2-starved.hlog");
    let text = std::fs::read_to_string(&hlogs[1]).expect("hlog");
    let (head, result) = text.rsplit_once("#result: ").expect("result line");
    let mut r: Value = serde_json::from_str(result.trim()).expect("result JSON");
    r["client_cpu"]["saturated"] = Value::Bool(true);
    r["client_cpu"]["cpu_busy"] = serde_json::json!({"CPU 0": 0.99});
    std::fs::write(&starved, format!("{head}#result: {r}\n")).expect("write");
    let (m, stderr) = merge(dir.path(), &[all[0], &starved, all[2]]);
    assert_eq!(m["inputs"][1]["saturated"], true);
    assert!(
        stderr.contains("worker 2/3 (")
            && stderr.contains("starved: its own CPU was saturated (CPU 0 99% busy)"),
        "no starved-worker warning:\n{stderr}"
    );
}

#[test]
fn a_start_time_already_passed_is_refused_before_any_load() {
    let out = bench_client(&[
        "http",
        "127.0.0.1:9",
        "-k",
        "--start-at",
        "2020-01-01T00:00:00Z",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--start-at 1577836800.000 (Unix seconds) passed"),
        "{stderr}"
    );
}
