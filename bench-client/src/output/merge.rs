//! `bench-client merge A.hlog B.hlog ...`: several client machines each
//! write an interval log; adding their histograms gives the true
//! percentiles of the combined load (percentiles of parts cannot be
//! averaged; histograms can be added). Rates add up too: each file's count
//! over its own time span, summed, since the clients ran side by side.
//!
//! A log whose intervals span more than the measuring time its run asked
//! for (by more than [`overrun_tolerance`]) comes from a client that could
//! not keep up (starved of CPU, or waiting out `--timeout`s): merging goes on,
//! with a warning that gives the figures.

use super::hlog::{self, HlogData};
use super::percentiles::{hgrm, wrk2_text};
use super::{fmt_si, fmt_us, LatencyStats};
use crate::cli::MergeArgs;
use crate::load::Error;
use crate::stats::{new_hist, Metric};
use hdrhistogram::Histogram;
use serde_json::{json, Map};
use std::collections::BTreeMap;
use std::fmt::Write;

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
    /// Operations (samples of `total`).
    pub count: u64,
    /// Seconds its intervals span.
    pub seconds: f64,
    /// Measuring time its run asked for, if the log says.
    pub requested: Option<f64>,
}

impl Input {
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
            let count = data
                .per_tag
                .get(Metric::Total.name())
                .map_or(0, |h| h.len());
            inputs.push(Input {
                name,
                count,
                seconds: data.seconds(),
                requested: data.requested,
            });
            for (tag, h) in data.per_tag {
                // Same bounds on both sides (both come from bench-client).
                let _ = per_tag.entry(tag).or_insert_with(new_hist).add(&h);
            }
        }
        Merged { per_tag, inputs }
    }

    /// Sum over inputs of count / seconds.
    pub fn aggregate_rate(&self) -> f64 {
        self.inputs
            .iter()
            .map(|i| {
                if i.seconds > 0.0 {
                    i.count as f64 / i.seconds
                } else {
                    0.0
                }
            })
            .sum()
    }

    /// One warning per input whose run lasted longer than asked.
    pub fn warnings(&self) -> Vec<String> {
        self.inputs.iter().filter_map(Input::overrun).collect()
    }

    /// Text report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for i in &self.inputs {
            let asked = i
                .requested
                .map(|r| format!(" ({r:.2}s asked)"))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {}: {} operations over {:.2}s{asked}",
                i.name, i.count, i.seconds
            );
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
    pub fn json(&self) -> serde_json::Value {
        let lat: Map<String, serde_json::Value> = self
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
                    "ops": i.count,
                    "seconds": i.seconds,
                    "requested_s": i.requested,
                    "overran": i.overrun().is_some(),
                })
            })
            .collect();
        json!({
            "inputs": inputs,
            "ops_per_s": self.aggregate_rate(),
            "latency_us": lat,
            "warnings": self.warnings(),
        })
    }
}

/// Runs `merge`.
pub fn run(a: &MergeArgs) -> Result<(), Error> {
    let mut logs = Vec::new();
    for f in &a.files {
        let data = hlog::read(f).map_err(|e| Error::Usage(format!("merge: {e}")))?;
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
        std::fs::write(path, hgrm(&total))
            .map_err(|e| Error::Output(format!("{}: {e}", path.display())))?;
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
        let w = m.warnings();
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
        assert_eq!(j["warnings"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn the_overrun_tolerance_is_five_percent_but_at_least_100_ms() {
        assert!((overrun_tolerance(2.0) - 0.1).abs() < 1e-9);
        assert!((overrun_tolerance(60.0) - 3.0).abs() < 1e-9);
        assert!((overrun_tolerance(0.5) - 0.1).abs() < 1e-9);
    }
}
