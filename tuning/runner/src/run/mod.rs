//! The driver: runs the schedule, one server + one bench-client per run,
//! applying each cell's sysctls first; restores the sysctls on every way
//! out (the [`Saved`] guard), writes a row per run as it goes.
//!
//! ```text
//! capture sysctls -> for run in schedule (interleaved):
//!     stop asked? -> break
//!     apply cell's sysctls (refused -> skip cell) -> start server (fails -> skip cell)
//!     -> bench-client -> stop server -> row (CSV + JSON) -> progress line
//! restore sysctls -> summary + plots
//! ```

mod netstat;
mod procs;
pub mod stop;

pub use procs::{measured, proc_cpu_seconds, target_in, Measured};
pub use stop::Stop;

use crate::experiment::{Experiment, BENCH_CLIENT, ENGINE};
use crate::matrix::{schedule, Cell, Run};
use crate::results::record::{self, Row, Status};
use crate::sysctl::{Refused, Saved, Sysctls};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where things are.
#[derive(Debug, Clone)]
pub struct Options {
    /// Results folder (created).
    pub out: PathBuf,
    /// Engine binary (`{engine}`).
    pub engine: PathBuf,
    /// bench-client binary (`{bench_client}`).
    pub bench_client: PathBuf,
    /// Sysctl root (`/proc/sys`; a fake folder in tests).
    pub sysctl_root: PathBuf,
    /// No progress lines.
    pub quiet: bool,
}

/// What a run of the experiment produced.
#[derive(Debug)]
pub struct Outcome {
    /// One row per run (skipped cells: one row each).
    pub rows: Vec<Row>,
    /// A stop (Ctrl-C) ended it early.
    pub interrupted: bool,
    /// Sysctls that could not be put back (should be empty).
    pub not_restored: Vec<Refused>,
    /// Files written.
    pub files: Vec<PathBuf>,
}

impl Outcome {
    /// Why the experiment measured nothing, when no run succeeded: counts
    /// of failed runs and skipped cells, and the first failure's message.
    pub fn no_result(&self) -> Option<String> {
        if self.rows.iter().any(|r| r.status == Status::Ok) {
            return None;
        }
        let count = |s: Status| self.rows.iter().filter(|r| r.status == s).count();
        let first = self
            .rows
            .first()
            .map(|r| format!("; first: cell {} ({}): {}", r.cell, r.label, r.message))
            .unwrap_or_default();
        Some(format!(
            "no cell produced a result ({} runs failed, {} cells skipped{first}); see runs.csv and raw/*.out",
            count(Status::Failed),
            count(Status::Skipped),
        ))
    }
}

/// Runs the experiment's cells in an interleaved schedule.
pub fn run(
    exp: &Experiment,
    cells: &[Cell],
    opts: &Options,
    stop: &Stop,
) -> Result<Outcome, String> {
    // Phase 1: output folder, originals saved (to disk too) before any change.
    if opts.out.join("runs.csv").exists() {
        return Err(format!(
            "{} already holds results; pick another --out",
            opts.out.display()
        ));
    }
    let raw = opts.out.join("raw");
    std::fs::create_dir_all(&raw).map_err(|e| format!("{}: {e}", raw.display()))?;
    let keys: BTreeSet<String> = cells
        .iter()
        .flat_map(|c| c.sysctls.keys().cloned())
        .collect();
    let mut saved = Saved::capture(Sysctls::new(&opts.sysctl_root), &keys);
    write(&opts.out.join("sysctl-original.conf"), &saved.to_conf())?;
    for k in saved.missing() {
        eprintln!("uringtls-tune: {k}: not on this kernel; cells that set it are skipped");
    }
    let axes: Vec<String> = cells
        .first()
        .map(|c| c.settings.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let header = record::csv_header(&axes);

    // Phase 2: the runs.
    let runs = schedule(cells.len(), exp.repetitions);
    let mut progress = Progress::new(runs.len(), exp.run_time(), opts.quiet);
    let mut skipped: HashMap<usize, String> = HashMap::new();
    let mut rows = vec![];
    let mut interrupted = false;
    for run in &runs {
        if stop.requested() {
            interrupted = true;
            break;
        }
        let cell = &cells[run.cell];
        if skipped.contains_key(&cell.index) {
            progress.skip();
            continue;
        }
        progress.starting(run, cell, cells.len(), exp.repetitions);
        let row = run_one(exp, cell, run, opts, &mut saved, stop);
        if stop.requested() {
            // A run cut short by Ctrl-C is not a measurement.
            interrupted = true;
            break;
        }
        if row.status == Status::Skipped {
            eprintln!(
                "uringtls-tune: skipping cell {} ({}): {}",
                cell.index,
                cell.label(),
                row.message
            );
            skipped.insert(cell.index, row.message.clone());
        }
        progress.finished(&row);
        record::append_csv(&opts.out.join("runs.csv"), &header, &row)
            .map_err(|e| format!("runs.csv: {e}"))?;
        rows.push(row);
        record::write_json(&opts.out.join("runs.json"), &rows)
            .map_err(|e| format!("runs.json: {e}"))?;
    }

    // Phase 3: machine back as it was, then the report.
    let not_restored = saved.restore();
    drop(saved);
    let title = exp.name.clone();
    let files = crate::results::write_report(&opts.out, &title, &rows)?;
    Ok(Outcome {
        rows,
        interrupted,
        not_restored,
        files,
    })
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `taskset -c LIST` unless `cpus` is `none` (or empty).
fn pinned(cpus: &str, argv: Vec<String>) -> Vec<String> {
    if cpus.is_empty() || cpus == "none" {
        return argv;
    }
    let mut v = vec!["taskset".to_string(), "-c".into(), cpus.into()];
    v.extend(argv);
    v
}

fn substitute(argv: &[String], opts: &Options) -> Vec<String> {
    argv.iter()
        .map(|a| {
            a.replace(ENGINE, &opts.engine.to_string_lossy())
                .replace(BENCH_CLIENT, &opts.bench_client.to_string_lossy())
        })
        .collect()
}

/// The server command of a cell.
pub fn server_argv(exp: &Experiment, cell: &Cell, opts: &Options) -> Vec<String> {
    let mut argv = substitute(&exp.server.command, opts);
    argv.extend(cell.server_args.iter().cloned());
    pinned(&exp.pin.server, argv)
}

/// The bench-client command of a cell, against `target`, writing
/// `json`/`hgrm`, measuring server CPU of `server_pid`.
pub fn client_argv(
    exp: &Experiment,
    cell: &Cell,
    opts: &Options,
    target: &str,
    json: &Path,
    hgrm: &Path,
    server_pid: u32,
) -> Vec<String> {
    let mut argv = substitute(&exp.client.command, opts);
    argv.extend(cell.workload.args.iter().cloned());
    argv.extend(cell.client_args.iter().cloned());
    argv.extend(exp.client.args.iter().cloned());
    argv.push(target.into());
    for (flag, v) in [
        ("--duration", exp.duration.clone()),
        ("--warmup", exp.warmup.clone()),
        ("--json", json.to_string_lossy().into_owned()),
        ("--hgrm", hgrm.to_string_lossy().into_owned()),
        ("--server-metrics", server_pid.to_string()),
    ] {
        argv.push(flag.into());
        argv.push(v);
    }
    pinned(&exp.pin.client, argv)
}

fn empty_row(cell: &Cell, run: &Run) -> Row {
    Row {
        run: run.seq + 1,
        rep: run.rep + 1,
        cell: cell.index,
        label: cell.label(),
        settings: cell.settings.clone(),
        status: Status::Ok,
        message: String::new(),
        ops: 0,
        ops_per_s: 0.0,
        errors: 0,
        server_cpu_us_per_op: None,
        server_cpu_source: String::new(),
        latency: Default::default(),
        client_saturated: false,
        resumed_share: None,
        wall_s: 0.0,
        listen_overflows: 0,
        syncookies_sent: 0,
        json: String::new(),
        hgrm: String::new(),
    }
}

/// One run: sysctls, server, bench-client, row.
fn run_one(
    exp: &Experiment,
    cell: &Cell,
    run: &Run,
    opts: &Options,
    saved: &mut Saved,
    stop: &Stop,
) -> Row {
    let started = Instant::now();
    let mut row = empty_row(cell, run);
    if let Err(r) = saved.apply(&cell.sysctls) {
        row.status = Status::Skipped;
        row.message = r.to_string();
        return row;
    }
    let timeout = Duration::from_secs(exp.server.ready_timeout_s);
    let argv = server_argv(exp, cell, opts);
    let mut server = match procs::start_server(
        &argv,
        &exp.server.ready,
        exp.server.target.as_deref(),
        timeout,
        stop,
    ) {
        Ok(s) => s,
        Err(e) => {
            row.status = Status::Skipped;
            row.message = e;
            return row;
        }
    };
    let name = format!("{:04}-cell{}-rep{}", run.seq + 1, cell.index, run.rep + 1);
    row.json = format!("raw/{name}.json");
    row.hgrm = format!("raw/{name}.hgrm");
    let (json, hgrm) = (opts.out.join(&row.json), opts.out.join(&row.hgrm));
    let argv = client_argv(exp, cell, opts, &server.target, &json, &hgrm, server.pid);
    let cpu_before = server.cpu_seconds();
    let net_before = netstat::read();
    let result = procs::run_client(&argv, &opts.out.join(format!("raw/{name}.out")), stop);
    let cpu_after = server.cpu_seconds();
    let counters = netstat::delta(&net_before, &netstat::read());
    row.listen_overflows = counters.get("ListenOverflows").copied().unwrap_or(0);
    row.syncookies_sent = counters.get("SyncookiesSent").copied().unwrap_or(0);
    server.finish();
    row.wall_s = started.elapsed().as_secs_f64();
    if let Err(e) = result {
        row.status = Status::Failed;
        row.message = e;
        return row;
    }
    let doc = std::fs::read_to_string(&json)
        .map_err(|e| format!("{}: {e}", json.display()))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("{}: {e}", json.display())))
        .and_then(|v| measured(&v));
    match doc {
        Ok(m) => fill(&mut row, m, cpu_before.zip(cpu_after).map(|(a, b)| b - a)),
        Err(e) => {
            row.status = Status::Failed;
            row.message = e;
        }
    }
    row
}

fn fill(row: &mut Row, m: Measured, proc_cpu_s: Option<f64>) {
    row.ops = m.ops;
    row.ops_per_s = m.ops_per_s;
    row.errors = m.errors;
    row.latency = m.latency;
    row.client_saturated = m.client_saturated;
    row.resumed_share = m.resumed_share;
    if let Some(us) = m.server_cpu_us_per_op {
        row.server_cpu_us_per_op = Some(us);
        row.server_cpu_source = "bench-client".into();
    } else if let (Some(s), true) = (proc_cpu_s, m.ops > 0) {
        row.server_cpu_us_per_op = Some(s * 1e6 / m.ops as f64);
        row.server_cpu_source = "proc".into();
    }
}

/// The progress line: which run, which cell, how many left, ETA.
struct Progress {
    total: usize,
    done: usize,
    started: Instant,
    measured_runs: usize,
    measured_time: Duration,
    guess: Duration,
    quiet: bool,
}

impl Progress {
    fn new(total: usize, run_time: Duration, quiet: bool) -> Progress {
        Progress {
            total,
            done: 0,
            started: Instant::now(),
            measured_runs: 0,
            measured_time: Duration::ZERO,
            // Server start/stop and bench-client's probe, roughly.
            guess: run_time + Duration::from_secs(1),
            quiet,
        }
    }

    fn per_run(&self) -> Duration {
        if self.measured_runs == 0 {
            self.guess
        } else {
            self.measured_time / self.measured_runs as u32
        }
    }

    fn starting(&self, run: &Run, cell: &Cell, cells: usize, reps: u32) {
        if self.quiet {
            return;
        }
        let left = self.total - self.done;
        eprintln!(
            "[{}/{}] rep {}/{} cell {}/{} {} | {} left, ETA {}",
            run.seq + 1,
            self.total,
            run.rep + 1,
            reps,
            cell.index + 1,
            cells,
            cell.label(),
            left,
            fmt_duration(self.per_run() * left as u32),
        );
    }

    fn skip(&mut self) {
        self.done += 1;
    }

    fn finished(&mut self, row: &Row) {
        self.done += 1;
        if row.status == Status::Ok {
            self.measured_runs += 1;
            self.measured_time += Duration::from_secs_f64(row.wall_s);
        }
        if self.quiet {
            return;
        }
        match row.status {
            Status::Ok => eprintln!(
                "    {:.0} ops/s, p99 {:.0} µs, server CPU {} µs/op, {} errors ({:.0?} elapsed)",
                row.ops_per_s,
                row.latency.p99_us,
                row.server_cpu_us_per_op
                    .map(|x| format!("{x:.1}"))
                    .unwrap_or_else(|| "?".into()),
                row.errors,
                self.started.elapsed(),
            ),
            _ => eprintln!("    {:?}: {}", row.status, row.message),
        }
    }
}

/// `1m05s` / `42s`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::expand;

    fn setup() -> (Experiment, Vec<Cell>, Options) {
        let exp = Experiment::parse(
            r#"
            name = "a"
            duration = "1s"
            warmup = "0s"
            [server]
            command = ["{engine}", "--shards", "1"]
            [[knob]]
            name = "ring"
            flag = "--ring-entries"
            values = ["64"]
            [[knob]]
            name = "c"
            flag = "-c"
            side = "client"
            values = ["8"]
            [[workload]]
            name = "ka"
            args = ["http"]
            "#,
        )
        .unwrap();
        let cells = expand(&exp, &|_| Err("none".into())).unwrap();
        let opts = Options {
            out: "/r".into(),
            engine: "/bin/eng".into(),
            bench_client: "/bin/bc".into(),
            sysctl_root: "/proc/sys".into(),
            quiet: true,
        };
        (exp, cells, opts)
    }

    #[test]
    fn commands_are_pinned_with_taskset_and_carry_the_cell_flags() {
        let (exp, cells, opts) = setup();
        assert_eq!(
            server_argv(&exp, &cells[0], &opts).join(" "),
            "taskset -c 1 /bin/eng --shards 1 --ring-entries 64"
        );
        let c = client_argv(
            &exp,
            &cells[0],
            &opts,
            "https://h:1/",
            Path::new("/r/j"),
            Path::new("/r/h"),
            42,
        );
        assert_eq!(
            c.join(" "),
            "taskset -c 0 /bin/bc http -c 8 --insecure --quiet https://h:1/ --duration 1s \
             --warmup 0s --json /r/j --hgrm /r/h --server-metrics 42"
        );
    }

    #[test]
    fn pin_none_runs_unpinned() {
        assert_eq!(pinned("none", vec!["x".into()]), ["x"]);
    }

    #[test]
    fn server_cpu_falls_back_to_proc_when_bench_client_has_none() {
        let (_, cells, _) = setup();
        let mut row = empty_row(
            &cells[0],
            &Run {
                seq: 0,
                rep: 0,
                cell: 0,
            },
        );
        let m = Measured {
            ops: 1000,
            ..Measured::default()
        };
        fill(&mut row, m, Some(0.5));
        assert_eq!(row.server_cpu_us_per_op, Some(500.0));
        assert_eq!(row.server_cpu_source, "proc");
    }

    #[test]
    fn eta_formats_minutes_and_seconds() {
        assert_eq!(fmt_duration(Duration::from_secs(65)), "1m05s");
        assert_eq!(fmt_duration(Duration::from_secs(9)), "9s");
    }
}
