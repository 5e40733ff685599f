//! Running a resolved [`Plan`]: probe the target, raise limits, open the
//! outputs, run the load ([`crate::load::run`]), report ([`crate::output`]).
//! The command line (`cli`, above this module) builds the plan and calls [`run`].

use crate::error::{Error, Usage};
use crate::load::{self, limits, probe, run::IntervalSink};
use crate::output::{
    self, csv::Csv, hlog, hlog::HlogWriter, percentiles, progress::Progress, summary, Report,
};
use crate::plan::fleet;
use crate::plan::{OutputOptions, Plan};
use crate::stats::server::ServerMetrics;
use crate::stats::Metric;
use std::sync::Arc;
use std::time::SystemTime;

/// Runs `plan`: probes the target, raises the fd limit, opens the outputs,
/// waits for `--start-at`, runs the load and writes the reports. An error
/// when the target cannot be used, an output cannot be written, or no
/// operation succeeded.
pub fn run(plan: Plan, out: &OutputOptions) -> Result<(), Error> {
    let name = plan.name;
    let quiet = out.quiet;
    let plan = Arc::new(plan);
    let server = out.server_metrics.clone();
    let mut warnings = Vec::new();
    let (_, fd_warning) = limits::raise_nofile(plan.connections);
    warnings.extend(fd_warning);
    let negotiated = probe::probe(&plan)?;

    let mut sinks_owned: Vec<Box<dyn IntervalSink>> = Vec::new();
    if !quiet {
        sinks_owned.push(Box::new(Progress {
            unit: summary::op_unit(name),
            connections: plan.connections,
        }));
    }
    let file_err = |p: &std::path::Path, e: std::io::Error| Error::output(p, e);
    if let Some(p) = &out.csv {
        sinks_owned.push(Box::new(Csv::create(p).map_err(|e| file_err(p, e))?));
    }
    let mut hlog = match &out.hlog {
        Some(p) => Some(open_hlog(p, &plan).map_err(|e| file_err(p, e))?),
        None => None,
    };
    let mut sinks: Vec<&mut dyn IntervalSink> = sinks_owned
        .iter_mut()
        .map(|b| b.as_mut() as &mut dyn IntervalSink)
        .collect();
    if let Some(h) = hlog.as_mut() {
        sinks.push(h);
    }
    if let Some(at) = plan.start_at {
        let wait = fleet::until(at, SystemTime::now(), "after probing the target")
            .map_err(Usage::StartAt)?;
        if !quiet {
            eprintln!(
                "bench-client: waiting {:.1}s for --start-at",
                wait.as_secs_f64()
            );
        }
        std::thread::sleep(wait);
    }
    let started = SystemTime::now();
    let outcome = load::run::run(plan.clone(), server.as_ref(), &mut sinks)?;
    drop(sinks);
    drop(sinks_owned);

    let report = Report {
        plan: &plan,
        outcome: &outcome,
        negotiated: &negotiated,
        server_source: server.as_ref().map(ServerMetrics::describe),
        warnings,
        started,
    };
    if let (Some(h), Some(p)) = (hlog.as_mut(), &out.hlog) {
        h.result(&output::json::result(&report))
            .map_err(|e| file_err(p, e))?;
    }
    // With `--json -` stdout carries only the JSON document.
    let json_to_stdout = out.json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if json_to_stdout {
        eprint!("{}", summary::render(&report));
    } else {
        print!("{}", summary::render(&report));
    }
    if out.latency {
        let t = &outcome.total;
        let mut text = String::new();
        if plan.rate.is_some() {
            text += &percentiles::wrk2_text("Recorded Latency, corrected", t.hist(Metric::Total));
            text += "\n";
            text += &percentiles::wrk2_text(
                "Uncorrected Latency (measured without taking delayed starts into account)",
                t.hist(Metric::Uncorrected),
            );
        } else {
            text += &percentiles::wrk2_text("Recorded Latency", t.hist(Metric::Total));
        }
        if json_to_stdout {
            eprintln!("\n{text}");
        } else {
            println!("\n{text}");
        }
    }
    if let Some(p) = &out.hgrm {
        std::fs::write(p, percentiles::hgrm(outcome.total.hist(Metric::Total)))
            .map_err(|e| file_err(p, e))?;
    }
    if let Some(p) = &out.json {
        output::json_out(p, &output::json::render(&report))?;
    }
    let t = &outcome.total;
    let top = t.errors.iter().max_by_key(|(_, n)| **n).map(|(c, _)| c);
    if let (0, Some(class)) = (t.ops, top) {
        return Err(Error::Failed {
            explanation: probe::explain(&plan, class, probe::Phase::Unknown),
            class: class.clone(),
        });
    }
    Ok(())
}

/// Creates the `--hlog` file: its header names the command, the worker
/// tag and the start of measuring (`--start-at`, or now, plus the warmup).
fn open_hlog(
    path: &std::path::Path,
    plan: &Plan,
) -> std::io::Result<HlogWriter<std::io::BufWriter<std::fs::File>>> {
    let mut comments = vec![format!(
        "bench-client {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    )];
    if let Some(f) = &plan.fleet {
        comments.push(hlog::worker_comment(f.tag));
    }
    // Interval timestamps count from the start of measuring.
    let start = plan.start_at.unwrap_or_else(SystemTime::now) + plan.warmup;
    HlogWriter::create(path, &comments, start, plan.duration)
}
