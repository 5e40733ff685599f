//! Ctrl-C in the middle of a run: the runner stops its children, puts the
//! sysctls back and exits 130. Stand-in server and client (shell scripts),
//! a fake sysctl root; the test waits on a FIFO the client writes when it
//! starts, never on a timer.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn experiment(dir: &Path, fifo: &Path) -> std::path::PathBuf {
    let text = format!(
        r#"
name = "interrupt"
repetitions = 3
duration = "60s"
warmup = "0s"
[pin]
server = "none"
client = "none"
[server]
command = ["sh", "-c", "echo 'uringtls: serving http at https://127.0.0.1:9/ with 1 shards'; exec sleep 120"]
[client]
command = ["sh", "-c", "echo started > '{}'; exec sleep 120", "fake-bench-client"]
args = []
[[sysctl]]
key = "net.core.somaxconn"
values = ["128", "256"]
[[workload]]
name = "w"
args = ["http"]
"#,
        fifo.display()
    );
    let p = dir.join("interrupt.toml");
    std::fs::write(&p, text).expect("write experiment");
    p
}

#[test]
fn ctrl_c_mid_run_stops_the_children_restores_sysctls_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("sys");
    std::fs::create_dir_all(root.join("net/core")).unwrap();
    let key = root.join("net/core/somaxconn");
    std::fs::write(&key, "4096\n").unwrap();
    let fifo = dir.path().join("client-started");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());

    let mut runner = Command::new(env!("CARGO_BIN_EXE_uringtls-tune"))
        .arg("run")
        .arg(experiment(dir.path(), &fifo))
        .arg("--out")
        .arg(dir.path().join("out"))
        .arg("--sysctl-root")
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait until the stand-in client runs (it writes to the FIFO).
    let (tx, rx) = mpsc::channel();
    let f = fifo.clone();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::fs::File::open(&f).and_then(|mut r| r.read_to_string(&mut s));
        let _ = tx.send(s);
    });
    let started = rx.recv_timeout(Duration::from_secs(60));
    if started.is_err() {
        let _ = runner.kill();
        let out = runner.wait_with_output().unwrap();
        panic!(
            "client never started:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(std::fs::read_to_string(&key).unwrap().trim(), "128");

    // SAFETY: kill(2) on the child we spawned and have not reaped.
    unsafe {
        libc::kill(runner.id() as libc::pid_t, libc::SIGINT);
    }
    let out = runner.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{log}");
    assert!(log.contains("interrupted"), "{log}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), "4096\n");
    assert!(dir.path().join("out/summary.md").exists());
}
