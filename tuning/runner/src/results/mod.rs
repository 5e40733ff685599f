//! What a run leaves behind, all in one folder:
//!
//! ```text
//! runs.csv, runs.json    one row per run (record)
//! summary.md, .json      median and spread per cell (summary)
//! throughput.svg         ops/s per configuration (plot)
//! p99.svg                p99 and p99.9 per configuration
//! cpu.svg                server CPU µs/op per configuration (when measured)
//! latency.svg            percentile curves, log percentile axis
//! raw/                   bench-client's JSON and .hgrm of every run
//! ```

pub mod record;
pub mod summary;

use plot::{Curve, Point, Series};
pub use plotting as plot;
use record::{Row, Status};
use std::path::{Path, PathBuf};
use summary::{CellSummary, Spread};

/// Writes the summary and the plots for `rows` into `dir`; returns the
/// files written.
pub fn write_report(dir: &Path, title: &str, rows: &[Row]) -> Result<Vec<PathBuf>, String> {
    let cells = summary::summarize(rows);
    let mut written = vec![];
    let md = format!("# {title}\n\n{}", summary::markdown(&cells));
    let p = dir.join("summary.md");
    std::fs::write(&p, md).map_err(|e| format!("{}: {e}", p.display()))?;
    written.push(p);
    let p = dir.join("summary.json");
    let json = serde_json::to_string_pretty(&cells).map_err(|e| e.to_string())?;
    std::fs::write(&p, json + "\n").map_err(|e| format!("{}: {e}", p.display()))?;
    written.push(p);

    let measured: Vec<&CellSummary> = cells.iter().filter(|c| c.runs > 0).collect();
    if measured.is_empty() {
        return Ok(written);
    }
    let varying = summary::varying(rows);
    let axes = varying.join(" / ");
    let x_desc = if axes.is_empty() {
        "configuration".into()
    } else {
        axes
    };
    let series = |name: &str,
                  f: &dyn Fn(&Row) -> Option<f64>,
                  s: &dyn Fn(&CellSummary) -> Option<Spread>| {
        Series {
            name: name.into(),
            points: measured
                .iter()
                .map(|c| point(c, s(c), runs_of(rows, c.cell, f)))
                .collect(),
        }
    };
    let mut plot = |file: &str, what: &str, y: &str, s: Vec<Series>| -> Result<(), String> {
        let p = dir.join(file);
        plot::per_config(&p, &format!("{title}: {what}"), &x_desc, y, &s)?;
        written.push(p);
        Ok(())
    };
    plot(
        "throughput.svg",
        "throughput per configuration",
        "operations / s",
        vec![series("ops/s", &|r| Some(r.ops_per_s), &|c| c.ops_per_s)],
    )?;
    plot(
        "p99.svg",
        "tail latency per configuration",
        "latency (µs)",
        vec![
            series("p99", &|r| Some(r.latency.p99_us), &|c| c.p99_us),
            series("p99.9", &|r| Some(r.latency.p99_9_us), &|c| c.p99_9_us),
        ],
    )?;
    if measured.iter().any(|c| c.cpu_us_per_op.is_some()) {
        plot(
            "cpu.svg",
            "server CPU per operation",
            "server CPU (µs / op)",
            vec![series(
                "server CPU µs/op",
                &|r| r.server_cpu_us_per_op,
                &|c| c.cpu_us_per_op,
            )],
        )?;
    }
    let curves: Vec<Curve> = measured
        .iter()
        .map(|c| curve(dir, rows, c, &varying))
        .collect();
    let p = dir.join("latency.svg");
    plot::percentile_curves(&p, &format!("{title}: latency by percentile"), &curves)?;
    written.push(p);
    Ok(written)
}

fn runs_of(rows: &[Row], cell: usize, f: &dyn Fn(&Row) -> Option<f64>) -> Vec<f64> {
    rows.iter()
        .filter(|r| r.cell == cell && r.status == Status::Ok)
        .filter_map(f)
        .collect()
}

fn point(c: &CellSummary, s: Option<Spread>, runs: Vec<f64>) -> Point {
    let s = s.unwrap_or(Spread {
        median: 0.0,
        min: 0.0,
        max: 0.0,
    });
    Point {
        label: c.short.clone(),
        median: s.median,
        min: s.min,
        max: s.max,
        runs,
    }
}

/// The percentile curve of the cell's median run (by p99): its `.hgrm`
/// if bench-client wrote one, else the percentiles from its JSON.
fn curve(dir: &Path, rows: &[Row], c: &CellSummary, varying: &[String]) -> Curve {
    let mut ok: Vec<&Row> = rows
        .iter()
        .filter(|r| r.cell == c.cell && r.status == Status::Ok)
        .collect();
    ok.sort_by(|a, b| a.latency.p99_us.total_cmp(&b.latency.p99_us));
    let mid = ok[ok.len() / 2];
    let from_hgrm = (!mid.hgrm.is_empty())
        .then(|| std::fs::read_to_string(dir.join(&mid.hgrm)).ok())
        .flatten()
        .map(|t| plot::parse_hgrm(&t))
        .filter(|p| p.len() > 2);
    let l = &mid.latency;
    let points = from_hgrm.unwrap_or_else(|| {
        vec![
            (0.5, l.p50_us),
            (0.9, l.p90_us),
            (0.99, l.p99_us),
            (0.999, l.p99_9_us),
        ]
    });
    // Legend: `axis=value` of the axes that vary.
    let name: Vec<String> = mid
        .settings
        .iter()
        .filter(|(k, _)| varying.contains(k))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Curve {
        name: if name.is_empty() {
            c.short.clone()
        } else {
            name.join(" ")
        },
        points,
    }
}

#[cfg(test)]
mod tests {
    use super::record::tests::row;
    use super::*;

    #[test]
    fn report_writes_summary_and_all_plots_named_by_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows = vec![];
        for rep in 1..=3 {
            rows.push(row(0, rep, 1000.0 + rep as f64, 800.0));
            rows.push(row(1, rep, 2000.0 - rep as f64, 400.0));
        }
        // One run has a full distribution on disk.
        std::fs::create_dir(dir.path().join("raw")).unwrap();
        std::fs::write(
            dir.path().join("raw/1.hgrm"),
            "0.1 0.0 1 1.0\n0.4 0.99 99 100.0\n0.5 0.999 100 1000.0\n",
        )
        .unwrap();
        rows[1].hgrm = "raw/1.hgrm".into();
        for r in &mut rows {
            r.settings[0].1 = ["ring64", "ring4096"][r.cell].into();
        }
        let files = write_report(dir.path(), "exp", &rows).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "summary.md",
                "summary.json",
                "throughput.svg",
                "p99.svg",
                "cpu.svg",
                "latency.svg"
            ]
        );
        let lat = std::fs::read_to_string(dir.path().join("latency.svg")).unwrap();
        assert!(lat.contains("ring=ring64") && lat.contains("ring=ring4096"));
        assert!(lat.contains("99.9%"));
        let tp = std::fs::read_to_string(dir.path().join("throughput.svg")).unwrap();
        assert!(tp.contains("ops/s") && tp.contains("exp: throughput"));
        let md = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert!(md.contains("| 1 | ring=1 | 3 | 1998 (1997–1999)"), "{md}");
    }
}
