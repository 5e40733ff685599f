//! A tiny experiment end to end: two cells (engine `--ring-entries` 64 and
//! 256), one second each, against the real engine and bench-client, with a
//! fake sysctl root; it must leave runs.csv, the plots, and the fake
//! sysctl back at its original value.
//!
//! The engine and bench-client come from the test crate's binaries
//! (`uringtls-under-test`, `bench-client-under-test`), which
//! `cargo test --workspace` builds next to this test; `TUNE_ENGINE` and
//! `TUNE_BENCH_CLIENT` override them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `env` if set, else the first of `names` built in this target folder.
fn find_bin(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let runner = PathBuf::from(env!("CARGO_BIN_EXE_uringtls-tune"));
    let dir = runner.parent()?;
    names.iter().map(|n| dir.join(n)).find(|p| p.exists())
}

fn experiment(dir: &Path) -> PathBuf {
    let text = r#"
name = "e2e"
repetitions = 1
duration = "1s"
warmup = "0s"
[pin]
server = "none"
client = "none"
[server]
command = ["{engine}", "--listen", "127.0.0.1:0", "--shards", "1", "--log-level", "warn"]
[[knob]]
name = "ring_entries"
flag = "--ring-entries"
values = ["64", "256"]
[[sysctl]]
key = "net.core.somaxconn"
values = ["128"]
[[workload]]
name = "keepalive"
args = ["http", "--connections", "2"]
"#;
    let p = dir.join("e2e.toml");
    std::fs::write(&p, text).expect("write experiment");
    p
}

#[test]
fn two_cell_experiment_against_the_engine_writes_csv_and_svg_and_restores_sysctls() {
    let engine = find_bin("TUNE_ENGINE", &["uringtls-under-test", "uringtls"]);
    let client = find_bin(
        "TUNE_BENCH_CLIENT",
        &["bench-client-under-test", "bench-client"],
    );
    let (Some(engine), Some(client)) = (engine, client) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "engine/bench-client test binaries not built (run: cargo test --workspace)"
        );
        eprintln!("skipped: build the workspace tests first (cargo test --workspace)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sys");
    std::fs::create_dir_all(root.join("net/core")).unwrap();
    std::fs::write(root.join("net/core/somaxconn"), "4096\n").unwrap();
    let out = dir.path().join("out");

    let status = Command::new(env!("CARGO_BIN_EXE_uringtls-tune"))
        .arg("run")
        .arg(experiment(dir.path()))
        .arg("--out")
        .arg(&out)
        .arg("--engine")
        .arg(&engine)
        .arg("--bench-client")
        .arg(&client)
        .arg("--sysctl-root")
        .arg(&root)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "runner failed:\n{log}");

    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows.iter().all(|r| r.contains(",ok,")), "{csv}\n{log}");
    assert!(rows[0].starts_with("64,128,keepalive,"), "{csv}");
    assert!(rows[1].starts_with("256,128,keepalive,"), "{csv}");
    for svg in ["throughput.svg", "p99.svg", "latency.svg"] {
        let text = std::fs::read_to_string(out.join(svg)).unwrap();
        assert!(text.starts_with("<svg"), "{svg}");
        assert!(text.contains("256"), "{svg} lacks the 256 configuration");
    }
    assert!(std::fs::read_to_string(out.join("summary.md"))
        .unwrap()
        .contains("ring_entries=256"));
    // The fake sysctl was set for the runs and is back as it was.
    assert_eq!(
        std::fs::read_to_string(root.join("net/core/somaxconn")).unwrap(),
        "4096\n"
    );
    assert!(std::fs::read_to_string(out.join("sysctl-original.conf"))
        .unwrap()
        .contains("net.core.somaxconn = 4096"));
}
