//! What `plan` and `run` refuse before running anything (workload flags the
//! runner adds itself, a sysctl this kernel lacks), and what `run` says when
//! nothing could be measured. Stand-in server and client (shell scripts)
//! and a fake sysctl root: no engine needed, nothing waits on a timer.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fake sysctl root with `net.core.somaxconn`.
fn fake_root(dir: &Path) -> PathBuf {
    let root = dir.join("sys");
    std::fs::create_dir_all(root.join("net/core")).expect("mkdir");
    std::fs::write(root.join("net/core/somaxconn"), "4096\n").expect("write");
    root
}

/// An experiment with a stand-in server that is ready at once, the given
/// client command, `extra` TOML appended.
fn experiment(dir: &Path, client: &str, extra: &str) -> PathBuf {
    let text = format!(
        r#"
name = "checks"
repetitions = 2
duration = "1s"
warmup = "0s"
[pin]
server = "none"
client = "none"
[server]
command = ["sh", "-c", "echo 'uringtls: serving http at https://127.0.0.1:9/ with 1 shards'; exec sleep 120"]
[client]
command = ["sh", "-c", "{client}", "fake-bench-client"]
args = []
{extra}
"#
    );
    let p = dir.join("checks.toml");
    std::fs::write(&p, text).expect("write experiment");
    p
}

fn tune(args: &[&Path]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uringtls-tune"));
    cmd.args(args);
    cmd.output().expect("run uringtls-tune")
}

/// `plan EXP [--sysctl-root ROOT]`, or `run EXP --sysctl-root ROOT --out OUT`.
fn tune_checked(cmd: &str, exp: &Path, root: &Path, out: &Path, plan_root: bool) -> Output {
    let mut args = vec![Path::new(cmd), exp];
    if cmd == "run" || plan_root {
        args.extend([Path::new("--sysctl-root"), root]);
    }
    if cmd == "run" {
        args.extend([Path::new("--out"), out]);
    }
    tune(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const KEEPALIVE: &str = r#"
[[workload]]
name = "keepalive"
args = ["http", "--connections", "2"]
"#;

#[test]
fn plan_and_run_refuse_a_workload_that_sets_the_duration_naming_file_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = fake_root(dir.path());
    let workload = r#"
[[workload]]
name = "keepalive"
args = ["http", "--connections", "2", "--duration", "5s"]
"#;
    let exp = experiment(dir.path(), "exit 0", workload);
    for cmd in ["plan", "run"] {
        let out = dir.path().join("out");
        let o = tune_checked(cmd, &exp, &root, &out, false);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains(&format!(
                "{}: [[workload]] `keepalive`: `args` has `--duration`",
                exp.display()
            )),
            "{cmd}: {err}"
        );
        assert!(!out.exists(), "{cmd} wrote results before refusing");
    }
}

#[test]
fn plan_and_run_refuse_a_sysctl_this_kernel_lacks_naming_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = fake_root(dir.path());
    let axis =
        format!("{KEEPALIVE}\n[[sysctl]]\nkey = \"net.core.somaxconnn\"\nvalues = [\"128\"]\n");
    let exp = experiment(dir.path(), "exit 0", &axis);
    for cmd in ["plan", "run"] {
        let out = dir.path().join("out");
        let o = tune_checked(cmd, &exp, &root, &out, true);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
        assert!(
            err.contains(&format!(
                "{}: [[sysctl]] key `net.core.somaxconnn`: no such sysctl on this kernel",
                exp.display()
            )) && err.contains("did you mean `net.core.somaxconn`?"),
            "{cmd}: {err}"
        );
        assert!(!out.exists(), "{cmd} wrote results before refusing");
    }
}

#[test]
fn run_fails_when_no_cell_produced_a_result_keeping_each_runs_first_error_line_and_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = fake_root(dir.path());
    // A client that fails the way clap does: the error first, usage after.
    let client = "echo 'error: unexpected argument found' >&2; echo >&2; \
                  echo 'Usage: bench-client http [OPTIONS] <TARGET>' >&2; echo >&2; \
                  echo 'For more information, try --help.' >&2; exit 2";
    let exp = experiment(dir.path(), client, KEEPALIVE);
    let out = dir.path().join("out");
    let o = tune(&[
        Path::new("run"),
        &exp,
        Path::new("--sysctl-root"),
        &root,
        Path::new("--out"),
        &out,
        Path::new("--quiet"),
        Path::new("--no-snapshot"),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "uringtls-tune: error: no cell produced a result (2 runs failed, 0 cells skipped"
        ),
        "{err}"
    );
    let csv = std::fs::read_to_string(out.join("runs.csv")).expect("runs.csv");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{csv}");
    for row in rows {
        assert!(row.contains(",failed,"), "{row}");
        assert!(row.contains("error: unexpected argument found"), "{row}");
        assert!(!row.contains("For more information"), "{row}");
    }
    let outs: Vec<PathBuf> = std::fs::read_dir(out.join("raw"))
        .expect("raw/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "out"))
        .collect();
    assert_eq!(outs.len(), 2, "{outs:?}");
    for p in outs {
        let text = std::fs::read_to_string(&p).expect("read .out");
        assert!(
            text.contains("error: unexpected argument found"),
            "{}: {text:?}",
            p.display()
        );
    }
}
