//! `bench-client merge A.hlog B.hlog ...`: several client machines each
//! write an interval log; adding their histograms gives the true
//! percentiles of the combined load (percentiles of parts cannot be
//! averaged; histograms can be added). Rates add up too: each file's count
//! over its own time span, summed, since the clients ran side by side.
//! Errors by class, bytes and each client's own CPU come from the logs'
//! closing `#result:` lines (see [`hlog`]).
//!
//! Merging always goes on; what makes the sum doubtful is a warning:
//! - a log whose intervals span more than the measuring time its run asked
//!   for (by more than [`overrun_tolerance`]): that client could not keep up;
//! - a worker of `--worker I/N` missing (or given twice);
//! - a client whose own CPU was saturated (starved);
//! - runs that started more than [`START_TOLERANCE_S`] apart, or lasted
//!   more than [`LENGTH_TOLERANCE`] longer or shorter than the others: their
//!   intervals do not line up, so their loads did not add up all the time.

use super::fleet_checks;
use super::hlog::{self, HlogData};
use super::json::distribution;
use super::percentiles::{hgrm, wrk2_text};
use super::{fmt_si, fmt_us, LatencyStats};
use crate::error::{Error, Usage};
use crate::plan::fleet::WorkerTag;
use crate::stats::{new_hist, Metric};
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

pub use super::fleet_checks::{LENGTH_TOLERANCE, START_TOLERANCE_S};

/// How much longer than asked a run may last before `merge` warns: 5% of
/// the requested time, at least 100 ms (the last operations in flight at
/// the deadline finish after it).
pub fn overrun_tolerance(requested: f64) -> f64 {
    (requested * 0.05).max(0.1)
}

/// One input log.
#[derive(Debug)]
pub struct Input {
    /// File name.
    pub name: String,
    /// `--worker` tag, if the run had one.
    pub worker: Option<WorkerTag>,
    /// Operations (samples of `total`).
    pub count: u64,
    /// Seconds its intervals span.
    pub seconds: f64,
    /// Measuring time its run asked for, if the log says.
    pub requested: Option<f64>,
    /// When measuring started (Unix seconds): the load's actual start plus
    /// the warmup from the `#result:` line, else the header's StartTime.
    pub start: Option<f64>,
    /// 99th percentile of its own `total`, µs.
    pub p99_us: u64,
    /// The closing `#result:` counters, if the run finished.
    pub result: Option<Value>,
}

impl Input {
    fn of(name: String, data: &HlogData) -> Input {
        let total = data.per_tag.get(Metric::Total.name());
        let result = data.result.clone();
        let start = result
            .as_ref()
            .and_then(|r| {
                let warmup = r["load"]["warmup_s"].as_f64().unwrap_or(0.0);
                Some(r["started_unix_s"].as_f64()? + warmup)
            })
            .or(data.start_time);
        Input {
            name,
            worker: data.worker,
            count: total.map_or(0, |h| h.len()),
            seconds: data.seconds(),
            requested: data.requested,
            start,
            p99_us: total.map_or(0, |h| h.value_at_quantile(0.99)),
            result,
        }
    }

    /// Operations per second over its own span.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.count as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// `worker 2/3 (w2.hlog)`, or the file name.
    pub fn label(&self) -> String {
        match self.worker {
            Some(w) => format!("worker {w} ({})", self.name),
            None => self.name.clone(),
        }
    }

    /// Failed operations by class, from the `#result:` line.
    pub fn errors(&self) -> Option<BTreeMap<String, u64>> {
        let by_class = self.result.as_ref()?["errors"]["by_class"].as_object()?;
        Some(
            by_class
                .iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect(),
        )
    }

    /// Its busiest CPU and that CPU's busy share, from the `#result:` line.
    pub fn busiest_cpu(&self) -> Option<(String, f64)> {
        let busy = self.result.as_ref()?["client_cpu"]["cpu_busy"].as_object()?;
        busy.iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// The run said its own CPU was saturated.
    pub fn saturated(&self) -> bool {
        self.result
            .as_ref()
            .is_some_and(|r| r["client_cpu"]["saturated"] == true)
    }

    fn counter(&self, key: &str) -> Option<u64> {
        self.result.as_ref()?[key].as_u64()
    }

    /// The warning for a run that lasted longer than asked, if it did.
    pub fn overrun(&self) -> Option<String> {
        let asked = self.requested?;
        let over = self.seconds - asked;
        (over > overrun_tolerance(asked)).then(|| {
            format!(
                "{}: the run lasted {:.2}s for {:.2}s asked ({:.0}% longer, tolerance {:.2}s): the client was starved (CPU or --timeout waits), so its rate and latencies understate the server; merged anyway",
                self.name,
                self.seconds,
                asked,
                over / asked * 100.0,
                overrun_tolerance(asked)
            )
        })
    }
}

/// Operations, errors and bytes added up over the inputs.
#[derive(Debug, Default, PartialEq)]
pub struct Totals {
    /// Successful operations (`#result:` ops, else the histogram's count).
    pub ops: u64,
    /// Failed operations by class.
    pub errors: BTreeMap<String, u64>,
    /// Plaintext bytes received.
    pub bytes_in: u64,
    /// Plaintext bytes sent.
    pub bytes_out: u64,
    /// Inputs without a `#result:` line (no errors or bytes known for them).
    pub without_result: Vec<String>,
}

/// The merged view of several logs.
#[derive(Debug)]
pub struct Merged {
    /// Histograms added up per tag.
    pub per_tag: BTreeMap<String, Histogram<u64>>,
    /// The inputs, in order.
    pub inputs: Vec<Input>,
}

impl Merged {
    /// Adds logs together.
    pub fn of(logs: Vec<(String, HlogData)>) -> Merged {
        let mut per_tag: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
        let mut inputs = Vec::new();
        for (name, data) in logs {
            inputs.push(Input::of(name, &data));
            for (tag, h) in data.per_tag {
                // Same bounds on both sides (both come from bench-client).
                let _ = per_tag.entry(tag).or_insert_with(new_hist).add(&h);
            }
        }
        Merged { per_tag, inputs }
    }

    /// Sum over inputs of count / seconds.
    pub fn aggregate_rate(&self) -> f64 {
        self.inputs.iter().map(Input::rate).sum()
    }

    /// Operations, errors by class and bytes, summed.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for i in &self.inputs {
            t.ops += i.counter("ops").unwrap_or(i.count);
            t.bytes_in += i.counter("bytes_in").unwrap_or(0);
            t.bytes_out += i.counter("bytes_out").unwrap_or(0);
            match i.errors() {
                Some(errors) => {
                    for (k, v) in errors {
                        *t.errors.entry(k).or_insert(0) += v;
                    }
                }
                None => t.without_result.push(i.name.clone()),
            }
        }
        t
    }

    /// Everything that makes the sum doubtful, one sentence each.
    pub fn warnings(&self) -> Vec<String> {
        let mut w: Vec<String> = self.inputs.iter().filter_map(Input::overrun).collect();
        w.extend(fleet_checks::workers(&self.inputs).warnings);
        w.extend(fleet_checks::starved(&self.inputs));
        w.extend(fleet_checks::starts(&self.inputs));
        w.extend(fleet_checks::lengths(&self.inputs));
        let t = self.totals();
        if !t.without_result.is_empty() {
            w.push(format!(
                "{}: no closing #result: line (the run did not finish, or the log is from another tool): errors and bytes unknown for it",
                t.without_result.join(", ")
            ));
        }
        w
    }

    /// Text report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "  {:<28} {:>10} {:>10} {:>9} {:>8}  busiest CPU",
            "input", "ops", "ops/s", "p99", "errors"
        );
        for i in &self.inputs {
            let asked = i
                .requested
                .map(|r| format!(", {r:.2}s asked"))
                .unwrap_or_default();
            let errors = i
                .errors()
                .map_or("?".into(), |e| e.values().sum::<u64>().to_string());
            let cpu = i
                .busiest_cpu()
                .map_or("?".into(), |(c, b)| format!("{c} {:.0}%", b * 100.0));
            let _ = writeln!(
                s,
                "  {:<28} {:>10} {:>10} {:>9} {:>8}  {cpu} ({:.2}s{asked})",
                i.label(),
                i.count,
                fmt_si(i.rate()),
                fmt_us(i.p99_us as f64),
                errors,
                i.seconds,
            );
        }
        let t = self.totals();
        let _ = writeln!(
            s,
            "  total: {} operations, {} errors, {:.2} MB in, {:.2} MB out",
            t.ops,
            t.errors.values().sum::<u64>(),
            t.bytes_in as f64 / 1e6,
            t.bytes_out as f64 / 1e6
        );
        for (class, n) in &t.errors {
            let _ = writeln!(s, "    {n:>10}  {class}");
        }
        let _ = writeln!(
            s,
            "  combined rate: {} ops/s (sum of per-file rates)\n",
            fmt_si(self.aggregate_rate())
        );
        let _ = writeln!(
            s,
            "  latency            {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "p50", "p90", "p99", "p99.9", "p99.99", "max", "count"
        );
        for (tag, h) in &self.per_tag {
            let l = LatencyStats::of(h);
            let _ = writeln!(
                s,
                "  {tag:<17} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                fmt_us(l.p50_us as f64),
                fmt_us(l.p90_us as f64),
                fmt_us(l.p99_us as f64),
                fmt_us(l.p99_9_us as f64),
                fmt_us(l.p99_99_us as f64),
                fmt_us(l.max_us as f64),
                l.count
            );
        }
        s
    }

    /// JSON report.
    pub fn json(&self) -> Value {
        let lat: Map<String, Value> = self
            .per_tag
            .iter()
            .map(|(t, h)| (t.clone(), json!(LatencyStats::of(h))))
            .collect();
        let inputs: Vec<_> = self
            .inputs
            .iter()
            .map(|i| {
                json!({
                    "file": i.name,
                    "worker": i.worker.map(|w| w.to_string()),
                    "ops": i.count,
                    "ops_per_s": i.rate(),
                    "p99_us": i.p99_us,
                    "seconds": i.seconds,
                    "requested_s": i.requested,
                    "start_unix_s": i.start,
                    "overran": i.overrun().is_some(),
                    "saturated": i.saturated(),
                    "busiest_cpu": i.busiest_cpu().map(|(c, b)| json!({"cpu": c, "busy": b})),
                    "errors": i.errors(),
                })
            })
            .collect();
        let t = self.totals();
        let fleet = fleet_checks::workers(&self.inputs);
        json!({
            "inputs": inputs,
            "ops": t.ops,
            "errors": {
                "total": t.errors.values().sum::<u64>(),
                "by_class": t.errors,
            },
            "bytes_in": t.bytes_in,
            "bytes_out": t.bytes_out,
            "workers": fleet.expected.map(|n| json!({
                "expected": n,
                "present": fleet.present.iter().map(|w| w.to_string()).collect::<Vec<_>>(),
                "missing": fleet.missing,
            })),
            "ops_per_s": self.aggregate_rate(),
            "latency_us": lat,
            "latency_distribution_us": {
                "total": self.per_tag.get(Metric::Total.name()).map(distribution),
            },
            "warnings": self.warnings(),
        })
    }
}

/// What `merge` is asked to do (the `merge` subcommand's flags).
#[derive(Debug, Clone)]
pub struct MergeOptions {
    /// Interval logs written with `--hlog`.
    pub files: Vec<PathBuf>,
    /// Print the full distribution of the merged total latency.
    pub latency: bool,
    /// Write the merged total-latency distribution (.hgrm) here.
    pub hgrm: Option<PathBuf>,
    /// Write the merged figures as JSON here (`-` for stdout).
    pub json: Option<PathBuf>,
}

/// Runs `merge`.
pub fn run(a: &MergeOptions) -> Result<(), Error> {
    let mut logs = Vec::new();
    for f in &a.files {
        let data = hlog::read(f).map_err(Usage::Merge)?;
        logs.push((f.display().to_string(), data));
    }
    let m = Merged::of(logs);
    for w in m.warnings() {
        eprintln!("bench-client: warning: {w}");
    }
    print!("{}", m.render());
    let total = m
        .per_tag
        .get(Metric::Total.name())
        .cloned()
        .unwrap_or_else(new_hist);
    if a.latency {
        println!("\n{}", wrk2_text("Merged Latency", &total));
    }
    if let Some(path) = &a.hgrm {
        std::fs::write(path, hgrm(&total)).map_err(|e| Error::output(path, e))?;
    }
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&m.json()).unwrap_or_default();
        super::json_out(path, &text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(values: impl Iterator<Item = u64>, secs: f64) -> HlogData {
        log_asked(values, secs, None)
    }

    fn log_asked(values: impl Iterator<Item = u64>, secs: f64, asked: Option<f64>) -> HlogData {
        let mut h = new_hist();
        for v in values {
            h.record(v).expect("in range");
        }
        HlogData {
            per_tag: BTreeMap::from([("total".to_string(), h)]),
            span: Some((0.0, secs)),
            intervals: 1,
            requested: asked,
            start_time: None,
            worker: None,
            result: None,
            timeline: Vec::new(),
        }
    }

    #[test]
    fn merged_percentiles_come_from_the_added_histograms_and_rates_add_up() {
        // Machine A: 9000 fast samples; machine B: 1000 slow ones.
        let a = log((0..9000).map(|_| 100), 10.0);
        let b = log((0..1000).map(|_| 10_000), 10.0);
        let m = Merged::of(vec![("a".into(), a), ("b".into(), b)]);
        let total = &m.per_tag["total"];
        assert_eq!(total.len(), 10_000);
        assert_eq!(total.value_at_quantile(0.5), 100);
        // Averaging the two p95s would give ~5 ms; the true p95 is B's 10 ms.
        assert!((9_990..=10_010).contains(&total.value_at_quantile(0.95)));
        assert!((m.aggregate_rate() - 1000.0).abs() < 1e-9);
        assert!(m.render().contains("combined rate: 1000.0 ops/s"));
    }

    #[test]
    fn a_run_that_lasted_longer_than_asked_is_merged_with_a_warning_giving_the_figures() {
        let starved = log_asked((0..100).map(|_| 100), 2.36, Some(2.0));
        let on_time = log_asked((0..100).map(|_| 100), 2.04, Some(2.0));
        let unknown = log((0..100).map(|_| 100), 9.0);
        let m = Merged::of(vec![
            ("starved.hlog".into(), starved),
            ("on-time.hlog".into(), on_time),
            ("other-tool.hlog".into(), unknown),
        ]);
        assert_eq!(m.per_tag["total"].len(), 300);
        let w: Vec<String> = m
            .warnings()
            .into_iter()
            .filter(|w| w.contains("asked"))
            .collect();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("starved.hlog: the run lasted 2.36s for 2.00s asked (18% longer"),
            "{}",
            w[0]
        );
        let j = m.json();
        assert_eq!(j["inputs"][0]["overran"], true);
        assert_eq!(j["inputs"][1]["overran"], false);
        assert_eq!(j["inputs"][2]["requested_s"], serde_json::Value::Null);
        let all = j["warnings"].as_array().expect("warnings");
        assert!(all.iter().any(|x| x.as_str() == Some(w[0].as_str())));
    }

    fn worker(index: u32, of: u32, ops: u64, errors: Value, cpu: Value) -> HlogData {
        let mut d = log_asked((0..ops).map(|v| 100 + v % 50), 3.0, Some(3.0));
        d.worker = Some(WorkerTag { index, of });
        d.start_time = Some(1000.0);
        d.result = Some(json!({
            "ops": ops, "bytes_in": 10 * ops, "bytes_out": ops,
            "errors": {"total": 0, "by_class": errors},
            "client_cpu": cpu,
            "started_unix_s": 1000.0 + f64::from(index) * 0.01,
            "load": {"warmup_s": 0.0},
        }));
        d
    }

    #[test]
    fn worker_logs_add_up_ops_errors_by_class_and_bytes_with_each_workers_rate_beside() {
        let ok = json!({"saturated": false, "cpu_busy": {"CPU 0": 0.4}});
        let m = Merged::of(vec![
            (
                "w1.hlog".into(),
                worker(1, 2, 300, json!({"timeout": 2}), ok.clone()),
            ),
            (
                "w2.hlog".into(),
                worker(2, 2, 150, json!({"timeout": 1, "status:503": 4}), ok),
            ),
        ]);
        let t = m.totals();
        assert_eq!(t.ops, 450);
        assert_eq!((t.bytes_in, t.bytes_out), (4500, 450));
        assert_eq!(
            t.errors,
            BTreeMap::from([("status:503".into(), 4), ("timeout".into(), 3)])
        );
        assert_eq!(m.warnings(), Vec::<String>::new());
        let text = m.render();
        assert!(text.contains("worker 2/2 (w2.hlog)"), "{text}");
        assert!(text.contains("total: 450 operations, 7 errors"), "{text}");
        assert!(text.contains("CPU 0 40%"), "{text}");
        let j = m.json();
        assert_eq!(j["ops"], 450);
        assert_eq!(j["errors"]["by_class"]["timeout"], 3);
        assert_eq!(j["inputs"][1]["ops_per_s"], 50.0);
        assert_eq!(j["workers"]["missing"], json!([]));
    }

    #[test]
    fn a_missing_worker_and_a_starved_one_are_reported() {
        let ok = json!({"saturated": false, "cpu_busy": {"CPU 0": 0.4}});
        let hot = json!({"saturated": true, "cpu_busy": {"CPU 0": 0.5, "CPU 1": 0.97}});
        let m = Merged::of(vec![
            ("w1.hlog".into(), worker(1, 3, 300, json!({}), ok)),
            ("w3.hlog".into(), worker(3, 3, 300, json!({}), hot)),
        ]);
        let w = m.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("worker 2/3 of 3 missing: no log tagged so among the inputs, so the merged figures cover 2 of 3 workers"),
            "{}",
            w[0]
        );
        assert!(
            w[1].starts_with(
                "worker 3/3 (w3.hlog): starved: its own CPU was saturated (CPU 1 97% busy)"
            ),
            "{}",
            w[1]
        );
        let j = m.json();
        assert_eq!(j["workers"]["missing"], json!(["2/3"]));
        assert_eq!(j["inputs"][1]["saturated"], true);
    }

    #[test]
    fn the_overrun_tolerance_is_five_percent_but_at_least_100_ms() {
        assert!((overrun_tolerance(2.0) - 0.1).abs() < 1e-9);
        assert!((overrun_tolerance(60.0) - 3.0).abs() < 1e-9);
        assert!((overrun_tolerance(0.5) - 0.1).abs() < 1e-9);
    }
}
