//! The two processes of a run: the server (started, waited on until it
//! prints its ready line, stopped with SIGTERM) and bench-client (run to
//! completion, its JSON read back).

use super::stop::{self, Stop};
use crate::results::record::Latency;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to exit after SIGTERM before SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(15);
/// Bytes of server stderr kept for error messages.
const STDERR_KEEP: usize = 4096;

/// A running server.
pub struct Server {
    child: Child,
    /// Its pid (taskset execs the server, so this is the server's).
    pub pid: u32,
    /// Where bench-client connects.
    pub target: String,
    stderr: Arc<Mutex<String>>,
    stderr_done: Option<std::thread::JoinHandle<()>>,
    stop: Stop,
}

fn command(argv: &[String]) -> Result<Command, String> {
    let (prog, args) = argv.split_first().ok_or("empty command")?;
    let mut c = Command::new(prog);
    c.args(args).stdin(Stdio::null());
    Ok(c)
}

/// Starts `argv` and waits for a stdout line starting with `ready`; the
/// target is `fixed_target`, or the `https://ADDR/` in that line.
pub fn start_server(
    argv: &[String],
    ready: &str,
    fixed_target: Option<&str>,
    timeout: Duration,
    stop: &Stop,
) -> Result<Server, String> {
    let mut cmd = command(argv)?;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", argv[0]))?;
    stop.track(child.id());
    let (stderr, stderr_done) = keep_tail(child.stderr.take());
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take();
    let ready = ready.to_string();
    std::thread::spawn(move || {
        let Some(out) = out else { return };
        let mut tx = Some(tx);
        // Keeps reading after the ready line so the pipe never fills.
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with(&ready) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(line);
                }
            }
        }
    });
    let mut server = Server {
        pid: child.id(),
        child,
        target: String::new(),
        stderr,
        stderr_done: Some(stderr_done),
        stop: stop.clone(),
    };
    match rx.recv_timeout(timeout) {
        Ok(line) => {
            server.target = match fixed_target {
                Some(t) => t.to_string(),
                None => target_in(&line)
                    .ok_or_else(|| format!("no https://ADDR/ in the ready line `{line}`"))?,
            };
            Ok(server)
        }
        Err(e) => {
            let why = match e {
                mpsc::RecvTimeoutError::Timeout => format!("not ready within {timeout:?}"),
                mpsc::RecvTimeoutError::Disconnected => "exited before it was ready".into(),
            };
            let status = server.finish();
            if let Some(h) = server.stderr_done.take() {
                let _ = h.join();
            }
            Err(format!(
                "server {why} ({status}); stderr: {}",
                server.stderr_tail().trim()
            ))
        }
    }
}

/// `uringtls: serving http at https://127.0.0.1:4433/ with 1 shards`
/// -> `https://127.0.0.1:4433/`.
pub fn target_in(line: &str) -> Option<String> {
    let at = line.find("https://")?;
    let rest = &line[at..];
    let end = rest[8..].find('/').map(|i| i + 9).unwrap_or(rest.len());
    let url = rest[..end].trim_end_matches([',', '.', ' ']);
    (url.len() > 8).then(|| url.to_string())
}

fn keep_tail<R: Read + Send + 'static>(
    pipe: Option<R>,
) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let out = Arc::new(Mutex::new(String::new()));
    let o = out.clone();
    let done = std::thread::spawn(move || {
        let Some(mut pipe) = pipe else { return };
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = o.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                if s.len() > 2 * STDERR_KEEP {
                    let cut = s.len() - STDERR_KEEP;
                    let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                    s.drain(..cut);
                }
            }
        }
    });
    (out, done)
}

impl Server {
    /// The last few KiB the server wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// utime + stime of the server so far, seconds.
    pub fn cpu_seconds(&self) -> Option<f64> {
        proc_cpu_seconds(self.pid)
    }

    /// SIGTERM, wait (SIGKILL after [`STOP_WAIT`]); returns how it ended.
    pub fn finish(&mut self) -> String {
        stop::terminate(self.pid);
        let deadline = Instant::now() + STOP_WAIT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break st.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    break self
                        .child
                        .wait()
                        .map(|st| format!("{st}, killed after {STOP_WAIT:?}"))
                        .unwrap_or_else(|e| e.to_string());
                }
                Err(e) => break e.to_string(),
            }
        };
        self.stop.untrack(self.pid);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        self.stop.untrack(self.pid);
    }
}

/// utime + stime of `pid` from /proc/PID/stat, seconds.
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// Runs bench-client to completion. Its stdout, then its stderr, go to
/// `out_file` (so a failed run leaves its error there too). Returns Err
/// with the exit status and the first error line of stderr when it exits
/// non-zero.
pub fn run_client(argv: &[String], out_file: &Path, stop: &Stop) -> Result<(), String> {
    let mut cmd = command(argv)?;
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", argv[0]))?;
    let pid = child.id();
    stop.track(pid);
    let output = child.wait_with_output();
    stop.untrack(pid);
    let output = output.map_err(|e| e.to_string())?;
    let mut text = output.stdout.clone();
    if !output.stderr.is_empty() {
        if !text.is_empty() && !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        text.extend_from_slice(&output.stderr);
    }
    std::fs::write(out_file, &text).map_err(|e| format!("{}: {e}", out_file.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&output.stderr);
        Err(format!(
            "bench-client {}: {}",
            output.status,
            first_error_line(&err)
        ))
    }
}

/// The line of `stderr` that says what went wrong: the first one with
/// `error` in it (clap's `error: unexpected argument ...`, bench-client's
/// `bench-client: error: ...`), else the first non-empty one.
pub fn first_error_line(stderr: &str) -> String {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    lines()
        .find(|l| l.to_ascii_lowercase().contains("error"))
        .or_else(|| lines().next())
        .unwrap_or("(no output on stderr)")
        .to_string()
}

/// What one bench-client JSON document says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Operations.
    pub ops: u64,
    /// Operations per second.
    pub ops_per_s: f64,
    /// Failed operations.
    pub errors: u64,
    /// Total-latency percentiles.
    pub latency: Latency,
    /// `server_cpu.us_per_op`.
    pub server_cpu_us_per_op: Option<f64>,
    /// `client_cpu.saturated`.
    pub client_saturated: bool,
    /// `handshakes.resumed_share`.
    pub resumed_share: Option<f64>,
}

/// Reads bench-client's `--json` document (see bench-client's
/// `output/json.rs`).
pub fn measured(v: &Value) -> Result<Measured, String> {
    let ops = v["ops"].as_u64().ok_or("bench-client JSON has no `ops`")?;
    let lat = &v["latency_us"]["total"];
    let us = |k: &str| lat[k].as_f64().unwrap_or(0.0);
    Ok(Measured {
        ops,
        ops_per_s: v["ops_per_s"].as_f64().unwrap_or(0.0),
        errors: v["errors"]["total"].as_u64().unwrap_or(0),
        latency: Latency {
            p50_us: us("p50_us"),
            p90_us: us("p90_us"),
            p99_us: us("p99_us"),
            p99_9_us: us("p99_9_us"),
            max_us: us("max_us"),
        },
        server_cpu_us_per_op: v["server_cpu"]["us_per_op"].as_f64(),
        client_saturated: v["client_cpu"]["saturated"].as_bool().unwrap_or(false),
        resumed_share: v["handshakes"]["resumed_share"].as_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_read_from_the_engine_ready_line() {
        assert_eq!(
            target_in("uringtls: serving http at https://127.0.0.1:4433/ with 1 shards"),
            Some("https://127.0.0.1:4433/".into())
        );
        assert_eq!(
            target_in("ready on https://[::1]:8443/"),
            Some("https://[::1]:8443/".into())
        );
        assert_eq!(target_in("serving"), None);
    }

    #[test]
    fn bench_client_json_fields_are_read() {
        let v: Value = serde_json::from_str(
            r#"{"ops": 5000, "ops_per_s": 1000.5, "errors": {"total": 2},
                "latency_us": {"total": {"p50_us": 100, "p90_us": 200, "p99_us": 900,
                               "p99_9_us": 1500, "max_us": 3000}},
                "server_cpu": {"us_per_op": 12.5},
                "client_cpu": {"saturated": true},
                "handshakes": {"resumed_share": null}}"#,
        )
        .unwrap();
        let m = measured(&v).unwrap();
        assert_eq!((m.ops, m.errors), (5000, 2));
        assert_eq!(m.latency.p99_us, 900.0);
        assert_eq!(m.server_cpu_us_per_op, Some(12.5));
        assert!(m.client_saturated);
        assert_eq!(m.resumed_share, None);
        assert!(measured(&serde_json::json!({})).is_err());
    }

    #[test]
    fn the_first_error_line_is_kept_not_clap_usage_lines() {
        let clap = "error: the argument '--duration <DURATION>' cannot be used multiple times\n\n\
                    Usage: bench-client http [OPTIONS] <TARGET>\n\n\
                    For more information, try '--help'.\n";
        assert_eq!(
            first_error_line(clap),
            "error: the argument '--duration <DURATION>' cannot be used multiple times"
        );
        let ours = "bench-client: note: certificate not verified\n\
                    bench-client: error: cannot connect to 127.0.0.1:9: connection refused\n";
        assert_eq!(
            first_error_line(ours),
            "bench-client: error: cannot connect to 127.0.0.1:9: connection refused"
        );
        assert_eq!(first_error_line("\n  killed\n"), "killed");
        assert_eq!(first_error_line(""), "(no output on stderr)");
    }

    #[test]
    fn a_failed_client_leaves_its_stderr_in_the_out_file_and_the_error_in_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run.out");
        let argv: Vec<String> = [
            "sh",
            "-c",
            "echo partial summary; printf 'error: unexpected argument\\n\\nUsage: x\\n\\nFor more information, try --help.\\n' >&2; exit 2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let err = run_client(&argv, &out, &Stop::new()).unwrap_err();
        assert!(err.ends_with(": error: unexpected argument"), "{err}");
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with("partial summary\n"), "{text}");
        assert!(text.contains("error: unexpected argument"), "{text}");
        assert!(text.contains("For more information"), "{text}");
    }

    #[test]
    fn own_cpu_time_is_readable_from_proc() {
        assert!(proc_cpu_seconds(std::process::id()).is_some());
    }

    #[test]
    fn a_server_that_exits_early_is_reported_with_its_stderr() {
        let argv: Vec<String> = ["sh", "-c", "echo 'bad flag --x' >&2; exit 2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let err = start_server(&argv, "ready", None, Duration::from_secs(30), &Stop::new())
            .err()
            .unwrap();
        assert!(err.contains("exited before it was ready"), "{err}");
        assert!(err.contains("bad flag --x"), "{err}");
    }
}
