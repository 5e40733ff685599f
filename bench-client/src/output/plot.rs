//! `bench-client plot RUN... -o out.svg`: runs as pictures, drawn by the
//! `plotting` crate (shared with the tuning runner):
//!
//! - `--kind percentiles` (default): latency by percentile, one labelled
//!   curve per input, HdrHistogram style (log axis, 50% to 99.999%);
//! - `--kind over-time`: throughput and p99 per interval of interval logs;
//! - `--kind phases`: connect, handshake, first byte and total of one run.
//!
//! `--html page.html` adds one self-contained page: a table of the inputs'
//! headline figures and every chart the inputs allow, inlined.

use super::plot_inputs::{self, Run, PHASE_QUANTILES};
use super::{fmt_si, fmt_us};
use crate::error::{Error, Usage};
use plotting::{Curve, Line, Panel};
use std::fmt::Write;
use std::path::PathBuf;

/// What `plot` draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlotKind {
    /// Latency by percentile, 50% to 99.999% on a log axis, one curve per input.
    Percentiles,
    /// Throughput and p99 per interval (needs --hlog interval logs).
    OverTime,
    /// Connect, handshake, first byte and total latency of one run.
    Phases,
}

/// What `plot` is asked to draw (the `plot` subcommand's flags).
#[derive(Debug, Clone)]
pub struct PlotOptions {
    /// Runs to draw.
    pub files: Vec<PathBuf>,
    /// The SVG file to write.
    pub output: PathBuf,
    /// What to draw.
    pub kind: PlotKind,
    /// Legend name of each input, in order.
    pub labels: Vec<String>,
    /// Chart title.
    pub title: Option<String>,
    /// Also write an HTML page with every chart the inputs allow.
    pub html: Option<PathBuf>,
}

/// Runs `plot`.
pub fn run(a: &PlotOptions) -> Result<(), Error> {
    let mut runs = a
        .files
        .iter()
        .map(|f| plot_inputs::read(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Usage::Plot)?;
    plot_inputs::name(&mut runs, &a.labels).map_err(Usage::Plot)?;
    let svg = chart(a.kind, a.title.as_deref(), &runs).map_err(Usage::Chart)?;
    write(&a.output, &svg)?;
    if let Some(html_path) = &a.html {
        let mut charts = vec![svg];
        for kind in [PlotKind::Percentiles, PlotKind::OverTime, PlotKind::Phases] {
            if kind != a.kind {
                // The other charts where these inputs allow them.
                if let Ok(svg) = chart(kind, None, &runs) {
                    charts.push(svg);
                }
            }
        }
        write(html_path, &html(a.title.as_deref(), &runs, &charts))?;
    }
    Ok(())
}

fn write(path: &std::path::Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::output(path, e))
}

/// Why the inputs cannot make the chart asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChartError {
    /// `--kind over-time` with an input that is not an interval log.
    #[error("plot: {}: --kind over-time needs interval logs (written with --hlog)", path.display())]
    NeedsIntervals {
        /// The input.
        path: PathBuf,
    },
    /// `--kind phases` with more (or fewer) than one input.
    #[error("plot: --kind phases draws one run; {0} files given")]
    PhasesOfOneRun(usize),
    /// `--kind phases` with an input that has the total latency only.
    #[error("plot: {}: no connect, handshake or first-byte latencies (a .hgrm holds only the total; use the run's --json or --hlog)", path.display())]
    NoPhases {
        /// The input.
        path: PathBuf,
    },
    /// The `plotting` crate could not draw.
    #[error("{0}")]
    Draw(String),
}

/// The SVG of one kind of chart, or why these inputs cannot make it.
pub fn chart(kind: PlotKind, title: Option<&str>, runs: &[Run]) -> Result<String, ChartError> {
    match kind {
        PlotKind::Percentiles => {
            let curves: Vec<Curve> = runs
                .iter()
                .map(|r| Curve {
                    name: r.label.clone(),
                    points: r.curve.clone(),
                })
                .collect();
            plotting::percentile_curves_svg(title.unwrap_or("latency by percentile"), &curves)
                .map_err(ChartError::Draw)
        }
        PlotKind::OverTime => over_time(title, runs),
        PlotKind::Phases => phases(title, runs),
    }
}

fn over_time(title: Option<&str>, runs: &[Run]) -> Result<String, ChartError> {
    let mut rate = Vec::new();
    let mut p99 = Vec::new();
    for r in runs {
        let tl = r
            .timeline
            .as_ref()
            .ok_or_else(|| ChartError::NeedsIntervals {
                path: r.path.clone(),
            })?;
        rate.push(Line {
            name: r.label.clone(),
            points: tl
                .iter()
                .filter(|i| i.len > 0.0)
                .map(|i| (i.start + i.len, i.count as f64 / i.len))
                .collect(),
        });
        p99.push(Line {
            name: r.label.clone(),
            points: tl
                .iter()
                .map(|i| (i.start + i.len, i.p99_us as f64))
                .collect(),
        });
    }
    // p99 in ms once any interval reaches 10 ms.
    let worst = p99
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let (div, unit) = if worst >= 10_000.0 {
        (1e3, "ms")
    } else {
        (1.0, "µs")
    };
    for l in &mut p99 {
        for p in &mut l.points {
            p.1 /= div;
        }
    }
    let panels = [
        Panel {
            y_desc: "operations / s".into(),
            lines: rate,
        },
        Panel {
            y_desc: format!("p99 latency ({unit})"),
            lines: p99,
        },
    ];
    plotting::time_series_svg(
        title.unwrap_or("throughput and p99 per interval"),
        "time since measuring started (s)",
        &panels,
    )
    .map_err(ChartError::Draw)
}

fn phases(title: Option<&str>, runs: &[Run]) -> Result<String, ChartError> {
    let [r] = runs else {
        return Err(ChartError::PhasesOfOneRun(runs.len()));
    };
    let names: Vec<&str> = plot_inputs::PHASES
        .iter()
        .map(|p| p.1)
        .filter(|n| r.phases.contains_key(n))
        .collect();
    if names.iter().all(|n| *n == "total") {
        return Err(ChartError::NoPhases {
            path: r.path.clone(),
        });
    }
    let series: Vec<(String, Vec<f64>)> = PHASE_QUANTILES
        .iter()
        .enumerate()
        .map(|(j, (_, label, _))| {
            let values = names.iter().map(|n| r.phases[n][j]).collect();
            (label.to_string(), values)
        })
        .collect();
    let cats: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let default = format!("{}: latency by phase", r.label);
    plotting::grouped_bars_svg(title.unwrap_or(&default), &cats, &series).map_err(ChartError::Draw)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One self-contained page: the inputs' headline figures, then `charts`.
pub fn html(title: Option<&str>, runs: &[Run], charts: &[String]) -> String {
    let title = escape(title.unwrap_or("bench-client runs"));
    let mut s = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}</style></head>\n<body><h1>{title}</h1>\n<table><tr><th>run</th><th>file</th><th>operations</th><th>ops/s</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th></tr>\n"
    );
    let opt = |v: Option<String>| v.unwrap_or_else(|| "–".into());
    for r in runs {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            escape(&r.label),
            escape(&r.path.display().to_string()),
            opt(r.ops.map(|o| o.to_string())),
            opt(r.ops_per_s.map(fmt_si)),
        );
        for (q, _, _) in PHASE_QUANTILES {
            let _ = write!(s, "<td>{}</td>", opt(r.at(q).map(fmt_us)));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    for c in charts {
        let _ = writeln!(s, "<figure>{c}</figure>");
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_of_several_runs_is_refused_with_the_count() {
        let e = chart(PlotKind::Phases, None, &[]).expect_err("no run");
        assert_eq!(e, ChartError::PhasesOfOneRun(0));
        assert_eq!(
            e.to_string(),
            "plot: --kind phases draws one run; 0 files given"
        );
    }
}
