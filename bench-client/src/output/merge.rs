//! `bench-client merge A.hlog B.hlog ...`: several client machines each
//! write an interval log; adding their histograms gives the true
//! percentiles of the combined load (percentiles of parts cannot be
//! averaged; histograms can be added). Rates add up too: each file's count
//! over its own time span, summed, since the clients ran side by side.

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

/// The merged view of several logs.
#[derive(Debug)]
pub struct Merged {
    /// Histograms added up per tag.
    pub per_tag: BTreeMap<String, Histogram<u64>>,
    /// Per input: (name, total-count, seconds).
    pub inputs: Vec<(String, u64, f64)>,
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
            inputs.push((name, count, data.seconds()));
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
            .map(|(_, c, s)| if *s > 0.0 { *c as f64 / s } else { 0.0 })
            .sum()
    }

    /// Text report.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (name, count, secs) in &self.inputs {
            let _ = writeln!(s, "  {name}: {count} operations over {secs:.2}s");
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
            .map(|(n, c, s)| json!({"file": n, "ops": c, "seconds": s}))
            .collect();
        json!({ "inputs": inputs, "ops_per_s": self.aggregate_rate(), "latency_us": lat })
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
        let mut h = new_hist();
        for v in values {
            h.record(v).expect("in range");
        }
        HlogData {
            per_tag: BTreeMap::from([("total".to_string(), h)]),
            span: Some((0.0, secs)),
            intervals: 1,
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
}
