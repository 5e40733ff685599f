//! `uringtls-tune`: run a kernel-tuning experiment, re-plot one, or put
//! sysctls back from a saved file.

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};
use tuning_runner::experiment::Experiment;
use tuning_runner::matrix::{expand, schedule};
use tuning_runner::run::{self, Options, Stop};
use tuning_runner::sysctl::{self, Sysctls, PROC_SYS};
use tuning_runner::{machine, results};

/// Kernel-tuning experiments for uringtls: sweep engine knobs and sysctls
/// over bench-client workloads; tables and SVG plots; sysctls restored.
#[derive(Debug, Parser)]
#[command(name = "uringtls-tune", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs an experiment file.
    Run {
        /// The experiment (TOML).
        experiment: PathBuf,
        /// Results folder [default: tuning/results/NAME-TIMESTAMP].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Engine binary for `{engine}`.
        #[arg(long, default_value = "target/release/uringtls")]
        engine: PathBuf,
        /// bench-client binary for `{bench_client}`.
        #[arg(long, default_value = "target/release/bench-client")]
        bench_client: PathBuf,
        /// Sysctl root (a fake folder for tests).
        #[arg(long, default_value = PROC_SYS)]
        sysctl_root: PathBuf,
        /// Override the file's repetitions.
        #[arg(long)]
        repetitions: Option<u32>,
        /// Override the file's measured time per run (e.g. 2s).
        #[arg(long)]
        duration: Option<String>,
        /// Override the file's warm-up per run.
        #[arg(long)]
        warmup: Option<String>,
        /// No progress lines.
        #[arg(short, long)]
        quiet: bool,
        /// Run the binaries in place instead of copies taken at start (a
        /// rebuild during the run would then change them mid-experiment).
        #[arg(long)]
        no_snapshot: bool,
    },
    /// Prints the cells and the run count of an experiment, runs nothing.
    Plan {
        /// The experiment (TOML).
        experiment: PathBuf,
        /// Sysctl root the keys are checked against (a fake folder for tests).
        #[arg(long, default_value = PROC_SYS)]
        sysctl_root: PathBuf,
    },
    /// Rewrites summary and plots of a results folder from its runs.json.
    Report {
        /// The results folder.
        dir: PathBuf,
    },
    /// Writes back the values of a saved sysctl file (sysctl-original.conf).
    Restore {
        /// The saved file.
        file: PathBuf,
        /// Sysctl root.
        #[arg(long, default_value = PROC_SYS)]
        sysctl_root: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Run {
            experiment,
            out,
            engine,
            bench_client,
            sysctl_root,
            repetitions,
            duration,
            warmup,
            quiet,
            no_snapshot,
        } => load(&experiment).and_then(|mut exp| {
            if let Some(r) = repetitions {
                exp.repetitions = r;
            }
            exp.duration = duration.unwrap_or(exp.duration);
            exp.warmup = warmup.unwrap_or(exp.warmup);
            exp.validate()?;
            check_sysctls(&experiment, &exp, &sysctl_root)?;
            let out = out.unwrap_or_else(|| default_out(&exp.name));
            let opts = Options {
                out,
                engine,
                bench_client,
                sysctl_root,
                quiet,
            };
            run_cmd(&experiment, &exp, opts, !no_snapshot)
        }),
        Cmd::Plan {
            experiment,
            sysctl_root,
        } => plan(&experiment, &sysctl_root),
        Cmd::Report { dir } => report(&dir),
        Cmd::Restore { file, sysctl_root } => restore(&file, &sysctl_root),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("uringtls-tune: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> Result<Experiment, String> {
    Experiment::load(path)
}

/// The `[[sysctl]]` keys exist on this kernel; errors name the file.
fn check_sysctls(path: &Path, exp: &Experiment, root: &Path) -> Result<(), String> {
    sysctl::check_axes(exp, &Sysctls::new(root)).map_err(|e| format!("{}: {e}", path.display()))
}

/// Profile paths are relative to the experiment file.
fn cells_of(path: &Path, exp: &Experiment) -> Result<Vec<tuning_runner::matrix::Cell>, String> {
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    expand(exp, &move |p| sysctl::load_conf(&base.join(p)))
}

/// Copies of the binaries for the length of a run, removed on drop.
struct Snapshot(Option<PathBuf>);

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Copies engine and bench-client to a private folder and points `opts`
/// at the copies; returns `path (built TIME)` lines for machine.txt.
fn snapshot(opts: &mut Options, snap: &mut Snapshot) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("uringtls-tune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    snap.0 = Some(dir.clone());
    let mut info = String::new();
    for (bin, name) in [
        (&mut opts.engine, "engine"),
        (&mut opts.bench_client, "bench-client"),
    ] {
        let built = std::fs::metadata(&*bin)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| utc_stamp(d.as_secs()))
            .unwrap_or_else(|| "?".into());
        info.push_str(&format!("{name}: {} (built {built} UTC)\n", bin.display()));
        if bin.exists() {
            let copy = dir.join(name);
            std::fs::copy(&*bin, &copy).map_err(|e| format!("{}: {e}", bin.display()))?;
            *bin = copy;
        }
    }
    Ok(info)
}

fn run_cmd(
    path: &Path,
    exp: &Experiment,
    mut opts: Options,
    take_snapshot: bool,
) -> Result<ExitCode, String> {
    let mut snap = Snapshot(None);
    let binaries = if take_snapshot {
        snapshot(&mut opts, &mut snap)?
    } else {
        format!(
            "engine: {}\nbench-client: {}\n",
            opts.engine.display(),
            opts.bench_client.display()
        )
    };
    let opts = &opts;
    let cells = cells_of(path, exp)?;
    for (bin, placeholder) in [
        (&opts.engine, "{engine}"),
        (&opts.bench_client, "{bench_client}"),
    ] {
        let used = exp
            .server
            .command
            .iter()
            .chain(&exp.client.command)
            .any(|a| a.contains(placeholder));
        if used && !bin.exists() {
            return Err(format!(
                "{} not found (build it: cargo build --release --bin uringtls --bin bench-client, or pass --engine/--bench-client)",
                bin.display()
            ));
        }
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| format!("{}: {e}", opts.out.display()))?;
    let copy = opts.out.join("experiment.toml");
    std::fs::copy(path, &copy).map_err(|e| format!("{}: {e}", copy.display()))?;
    let before = machine::describe();
    eprintln!(
        "uringtls-tune: {}: {} cells x {} repetitions, results in {}",
        exp.name,
        cells.len(),
        exp.repetitions,
        opts.out.display()
    );
    let stop = Stop::install().map_err(|e| format!("cannot handle signals: {e}"))?;
    let outcome = run::run(exp, &cells, opts, &stop)?;
    let machine_txt = format!("{before}loadavg after: {}\n{binaries}", machine::load());
    let _ = std::fs::write(opts.out.join("machine.txt"), machine_txt);
    if let Ok(md) = std::fs::read_to_string(opts.out.join("summary.md")) {
        println!("{md}");
    }
    for f in &outcome.files {
        eprintln!("wrote {}", f.display());
    }
    for r in &outcome.not_restored {
        eprintln!(
            "uringtls-tune: NOT RESTORED {r}; run: uringtls-tune restore {}",
            opts.out.join("sysctl-original.conf").display()
        );
    }
    Ok(if outcome.interrupted {
        eprintln!("uringtls-tune: interrupted; sysctls restored, partial results written");
        ExitCode::from(130)
    } else if !outcome.not_restored.is_empty() {
        ExitCode::FAILURE
    } else if let Some(why) = outcome.no_result() {
        eprintln!("uringtls-tune: error: {why}");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn plan(path: &Path, root: &Path) -> Result<ExitCode, String> {
    let exp = load(path)?;
    check_sysctls(path, &exp, root)?;
    let cells = cells_of(path, &exp)?;
    let runs = schedule(cells.len(), exp.repetitions).len();
    let sysctls = Sysctls::new(root);
    for c in &cells {
        println!("cell {:>3}: {}", c.index, c.label());
        for (k, v) in &c.sysctls {
            // Only a profile can still name a missing key (axes are checked).
            let note = if sysctls.exists(k) {
                ""
            } else {
                "   (not on this kernel: this cell will be skipped)"
            };
            println!("           {k} = {v}{note}");
        }
    }
    let total = exp.run_time() * runs as u32;
    println!(
        "{} cells x {} repetitions = {runs} runs, at least {} of measuring",
        cells.len(),
        exp.repetitions,
        run::fmt_duration(total)
    );
    Ok(ExitCode::SUCCESS)
}

fn report(dir: &Path) -> Result<ExitCode, String> {
    let rows = results::record::read_json(&dir.join("runs.json"))?;
    let title = Experiment::load(&dir.join("experiment.toml"))
        .map(|e| e.name)
        .unwrap_or_else(|_| "experiment".into());
    for f in results::write_report(dir, &title, &rows)? {
        eprintln!("wrote {}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn restore(file: &Path, root: &Path) -> Result<ExitCode, String> {
    let s = Sysctls::new(root);
    let mut failed = false;
    for (k, v) in sysctl::load_conf(file)? {
        if let Err(e) = s.write(&k, &v) {
            eprintln!("{k} = {v}: {e}");
            failed = true;
        } else {
            println!("{k} = {v}");
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `tuning/results/NAME-2026-11-23T142501`.
fn default_out(name: &str) -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("tuning/results").join(format!("{name}-{}", utc_stamp(secs)))
}

/// Seconds since the epoch as `YYYY-MM-DDTHHMMSS` (UTC; civil-from-days).
fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let t = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}{:02}{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_dates() {
        assert_eq!(utc_stamp(0), "1970-01-01T000000");
        assert_eq!(utc_stamp(1_795_444_200), "2026-11-23T143000");
    }
}
