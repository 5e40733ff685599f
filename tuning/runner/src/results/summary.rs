//! Per-cell aggregation: the median of the measured runs and their spread
//! (min..max), rendered as a Markdown table (`summary.md`) and JSON.

use super::record::{Row, Status};
use serde::Serialize;

/// Median and range of one figure over a cell's runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// Median (mean of the middle two for an even count).
    pub median: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }

    /// (max - min) / median, the run-to-run noise of the cell.
    pub fn relative(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median
        }
    }
}

/// One cell's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellSummary {
    /// Cell index.
    pub cell: usize,
    /// `axis=value ...`.
    pub label: String,
    /// Values of the varying axes, `/` separated.
    pub short: String,
    /// Measured runs.
    pub runs: usize,
    /// Failed runs.
    pub failed: usize,
    /// Why the cell was skipped, if it was.
    pub skipped: Option<String>,
    /// Operations per second.
    pub ops_per_s: Option<Spread>,
    /// Server CPU per operation, µs.
    pub cpu_us_per_op: Option<Spread>,
    /// p50 latency, µs.
    pub p50_us: Option<Spread>,
    /// p99 latency, µs.
    pub p99_us: Option<Spread>,
    /// p99.9 latency, µs.
    pub p99_9_us: Option<Spread>,
    /// Failed operations over all runs.
    pub errors: u64,
    /// Accept-queue overflows over all runs.
    pub listen_overflows: u64,
    /// bench-client was saturated in at least one run (throughput is then
    /// the client's limit, not the server's).
    pub client_saturated: bool,
}

/// Axis names whose value differs between rows.
pub fn varying(rows: &[Row]) -> Vec<String> {
    let Some(first) = rows.first() else {
        return vec![];
    };
    first
        .settings
        .iter()
        .filter(|(k, v)| {
            rows.iter()
                .any(|r| r.settings.iter().any(|(k2, v2)| k2 == k && v2 != v))
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// Aggregates rows into one summary per cell, in cell order.
pub fn summarize(rows: &[Row]) -> Vec<CellSummary> {
    let axes = varying(rows);
    let mut cells: Vec<usize> = rows.iter().map(|r| r.cell).collect();
    cells.sort_unstable();
    cells.dedup();
    cells
        .into_iter()
        .map(|c| {
            let mine: Vec<&Row> = rows.iter().filter(|r| r.cell == c).collect();
            summarize_cell(&mine, &axes)
        })
        .collect()
}

fn summarize_cell(rows: &[&Row], axes: &[String]) -> CellSummary {
    let ok: Vec<&Row> = rows
        .iter()
        .copied()
        .filter(|r| r.status == Status::Ok)
        .collect();
    let pick = |f: &dyn Fn(&Row) -> Option<f64>| {
        Spread::of(&ok.iter().filter_map(|r| f(r)).collect::<Vec<f64>>())
    };
    let first = rows[0];
    let short: Vec<&str> = first
        .settings
        .iter()
        .filter(|(k, _)| axes.contains(k))
        .map(|(_, v)| v.as_str())
        .collect();
    CellSummary {
        cell: first.cell,
        label: first.label.clone(),
        short: if short.is_empty() {
            "all".into()
        } else {
            short.join("/")
        },
        runs: ok.len(),
        failed: rows.iter().filter(|r| r.status == Status::Failed).count(),
        skipped: rows
            .iter()
            .find(|r| r.status == Status::Skipped)
            .map(|r| r.message.clone()),
        ops_per_s: pick(&|r| Some(r.ops_per_s)),
        cpu_us_per_op: pick(&|r| r.server_cpu_us_per_op),
        p50_us: pick(&|r| Some(r.latency.p50_us)),
        p99_us: pick(&|r| Some(r.latency.p99_us)),
        p99_9_us: pick(&|r| Some(r.latency.p99_9_us)),
        errors: ok.iter().map(|r| r.errors).sum(),
        listen_overflows: ok.iter().map(|r| r.listen_overflows).sum(),
        client_saturated: ok.iter().any(|r| r.client_saturated),
    }
}

fn range(s: &Option<Spread>, digits: usize) -> String {
    match s {
        None => "–".into(),
        Some(s) => format!("{:.d$} ({:.d$}–{:.d$})", s.median, s.min, s.max, d = digits),
    }
}

fn ratio(s: &Option<Spread>, base: &Option<Spread>) -> String {
    match (s, base) {
        (Some(s), Some(b)) if b.median > 0.0 => format!("{:.2}x", s.median / b.median),
        _ => "–".into(),
    }
}

/// The summary as a Markdown table; ratios are against the first cell.
pub fn markdown(cells: &[CellSummary]) -> String {
    let mut s = String::from(
        "| cell | configuration | runs | ops/s median (min–max) | spread | vs cell 0 | \
         server CPU µs/op | vs cell 0 | p50 µs | p99 µs median (min–max) | p99.9 µs | errors | \
         listen overflows |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let base = cells.first();
    for c in cells {
        if let Some(why) = &c.skipped {
            if c.runs == 0 {
                s.push_str(&format!(
                    "| {} | {} | skipped: {} | | | | | | | | | | |\n",
                    c.cell, c.label, why
                ));
                continue;
            }
        }
        let spread = c
            .ops_per_s
            .map(|o| format!("{:.0}%", o.relative() * 100.0))
            .unwrap_or_else(|| "–".into());
        s.push_str(&format!(
            "| {} | {} | {}{}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            c.cell,
            c.label,
            c.runs,
            if c.failed > 0 {
                format!(" (+{} failed)", c.failed)
            } else {
                String::new()
            },
            if c.client_saturated {
                " (client saturated)"
            } else {
                ""
            },
            range(&c.ops_per_s, 0),
            spread,
            ratio(&c.ops_per_s, &base.and_then(|b| b.ops_per_s)),
            range(&c.cpu_us_per_op, 1),
            ratio(&c.cpu_us_per_op, &base.and_then(|b| b.cpu_us_per_op)),
            c.p50_us
                .map(|x| format!("{:.0}", x.median))
                .unwrap_or_default(),
            range(&c.p99_us, 0),
            c.p99_9_us
                .map(|x| format!("{:.0}", x.median))
                .unwrap_or_default(),
            c.errors,
            c.listen_overflows,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::record::tests::row;
    use super::*;

    #[test]
    fn median_and_spread_of_odd_and_even_counts() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!((s.relative() - 1.0).abs() < 1e-9);
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn cells_aggregate_only_their_measured_runs() {
        let mut failed = row(0, 3, 1.0, 1.0);
        failed.status = Status::Failed;
        let rows = vec![
            row(0, 1, 1000.0, 800.0),
            row(1, 1, 3000.0, 400.0),
            row(0, 2, 1200.0, 900.0),
            row(1, 2, 2000.0, 500.0),
            failed,
        ];
        let s = summarize(&rows);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].runs, s[0].failed), (2, 1));
        assert_eq!(s[0].ops_per_s.unwrap().median, 1100.0);
        assert_eq!(s[1].ops_per_s.unwrap().median, 2500.0);
        assert_eq!(s[1].p99_us.unwrap().min, 400.0);
        assert_eq!(s[1].short, "1");
        let md = markdown(&s);
        assert!(
            md.contains("| 1 | ring=1 | 2 | 2500 (2000–3000) | 40% | 2.27x |"),
            "{md}"
        );
    }

    #[test]
    fn skipped_cells_say_why() {
        let mut r = row(0, 1, 0.0, 0.0);
        r.status = Status::Skipped;
        r.message = "net.core.busy_poll = 50: not on this kernel".into();
        let s = summarize(&[r]);
        assert_eq!(s[0].runs, 0);
        assert!(markdown(&s).contains("skipped: net.core.busy_poll"));
    }
}
