//! What `plot` reads: a run's `--json` report, its `--hlog` interval log or
//! its `.hgrm` distribution (and `merge`'s JSON and `.hgrm`), each turned
//! into one [`Run`]: a percentile curve, the phases' percentiles when the
//! file has them, the intervals when it is a log, and the headline figures.

use super::hlog::{self, IntervalTotal};
use super::json::distribution;
use crate::stats::Metric;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The percentiles drawn per phase (and shown in the HTML table).
pub const PHASE_QUANTILES: [(f64, &str, &str); 4] = [
    (0.5, "p50", "p50_us"),
    (0.9, "p90", "p90_us"),
    (0.99, "p99", "p99_us"),
    (0.999, "p99.9", "p99_9_us"),
];

/// The phases of an operation, in drawing order, with their legend names.
pub const PHASES: [(Metric, &str); 4] = [
    (Metric::Connect, "connect"),
    (Metric::Handshake, "handshake"),
    (Metric::Ttfb, "first byte"),
    (Metric::Total, "total"),
];

/// One input, ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The file.
    pub path: PathBuf,
    /// Legend name.
    pub label: String,
    /// `--worker` tag (`2/3`), if the run had one.
    pub worker: Option<String>,
    /// Total latency by percentile: (percentile 0..1, µs).
    pub curve: Vec<(f64, f64)>,
    /// Per phase name: its [`PHASE_QUANTILES`] in µs.
    pub phases: BTreeMap<&'static str, [f64; 4]>,
    /// The intervals of `total` (interval logs only).
    pub timeline: Option<Vec<IntervalTotal>>,
    /// Successful operations, if known.
    pub ops: Option<u64>,
    /// Operations per second, if known.
    pub ops_per_s: Option<f64>,
}

impl Run {
    /// Total latency at percentile `q` (0..1), µs: the first point at or
    /// beyond `q`.
    pub fn at(&self, q: f64) -> Option<f64> {
        self.curve.iter().find(|p| p.0 >= q).map(|p| p.1)
    }
}

/// Why `plot` cannot use its inputs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// A file cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// A `.json` file (or one starting with `{`) is not JSON.
    #[error("{}: not JSON ({source})", path.display())]
    NotJson {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: serde_json::Error,
    },
    /// JSON, but not a bench-client report.
    #[error("{}: no latency_us.total: not a bench-client --json report or merge JSON", path.display())]
    NotAReport {
        /// The file.
        path: PathBuf,
    },
    /// An interval log that cannot be read.
    #[error(transparent)]
    Hlog(#[from] hlog::HlogFileError),
    /// Neither a report, an interval log nor a distribution.
    #[error("{}: not a bench-client JSON report, interval log (--hlog) or .hgrm distribution", path.display())]
    Unknown {
        /// The file.
        path: PathBuf,
    },
    /// More `--label`s than inputs.
    #[error("--label given {labels} times for {inputs} input files: one per input, in order")]
    Labels {
        /// `--label`s given.
        labels: usize,
        /// Input files.
        inputs: usize,
    },
}

/// Reads `path`, recognised by its extension, else by its first bytes.
pub fn read(path: &Path) -> Result<Run, InputError> {
    let bytes = std::fs::read(path).map_err(|source| InputError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let text = String::from_utf8_lossy(&bytes);
    let start = text.trim_start();
    let run = if ext == "json" || start.starts_with('{') {
        let v: Value = serde_json::from_str(&text).map_err(|source| InputError::NotJson {
            path: path.to_path_buf(),
            source,
        })?;
        from_json(&v).ok_or_else(|| InputError::NotAReport {
            path: path.to_path_buf(),
        })?
    } else if ext == "hlog" || text.contains("\nTag=") || start.starts_with("#[StartTime") {
        from_hlog(&hlog::parse(&bytes).map_err(|source| hlog::HlogFileError {
            path: path.to_path_buf(),
            source,
        })?)
    } else {
        let curve = plotting::parse_hgrm(&text);
        if curve.is_empty() {
            return Err(InputError::Unknown {
                path: path.to_path_buf(),
            });
        }
        let ops = text.lines().find_map(|l| {
            let rest = l.split("Total count").nth(1)?;
            rest.trim_start_matches([' ', '='])
                .trim_end_matches(']')
                .trim()
                .parse()
                .ok()
        });
        Run {
            path: PathBuf::new(),
            label: String::new(),
            worker: None,
            curve,
            phases: BTreeMap::new(),
            timeline: None,
            ops,
            ops_per_s: None,
        }
    };
    Ok(Run {
        path: path.to_path_buf(),
        ..run
    })
}

/// The run of a `--json` report or `merge` JSON; `None` if `v` is neither.
fn from_json(v: &Value) -> Option<Run> {
    let lat = &v["latency_us"];
    if !lat["total"].is_object() {
        return None;
    }
    let pairs = v["latency_distribution_us"]["total"].as_array();
    let curve: Vec<(f64, f64)> = match pairs {
        Some(pairs) if !pairs.is_empty() => pairs
            .iter()
            .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
            .collect(),
        // Older reports: the headline percentiles only.
        _ => [
            (0.5, "p50_us"),
            (0.9, "p90_us"),
            (0.99, "p99_us"),
            (0.999, "p99_9_us"),
            (0.9999, "p99_99_us"),
        ]
        .iter()
        .filter_map(|(q, k)| Some((*q, lat["total"][*k].as_f64()?)))
        .collect(),
    };
    let phases = PHASES
        .iter()
        .filter_map(|(m, name)| {
            let stats = &lat[m.name()];
            let mut q = [0.0; 4];
            for (slot, (_, _, key)) in q.iter_mut().zip(PHASE_QUANTILES) {
                *slot = stats[key].as_f64()?;
            }
            Some((*name, q))
        })
        .collect();
    Some(Run {
        path: PathBuf::new(),
        label: String::new(),
        worker: v["worker"]["tag"].as_str().map(String::from),
        curve,
        phases,
        timeline: None,
        ops: v["ops"].as_u64(),
        ops_per_s: v["ops_per_s"].as_f64(),
    })
}

fn from_hlog(d: &hlog::HlogData) -> Run {
    let total = d.per_tag.get(Metric::Total.name());
    let curve = total
        .map(|h| distribution(h).into_iter().map(|[q, v]| (q, v)).collect())
        .unwrap_or_default();
    let phases = PHASES
        .iter()
        .filter_map(|(m, name)| {
            let h = d.per_tag.get(m.name()).filter(|h| !h.is_empty())?;
            Some((
                *name,
                PHASE_QUANTILES.map(|(q, _, _)| h.value_at_quantile(q) as f64),
            ))
        })
        .collect();
    let count = total.map_or(0, |h| h.len());
    Run {
        path: PathBuf::new(),
        label: String::new(),
        worker: d.worker.map(|w| w.to_string()),
        curve,
        phases,
        timeline: Some(d.timeline.clone()),
        ops: Some(count),
        ops_per_s: (d.seconds() > 0.0).then(|| count as f64 / d.seconds()),
    }
}

/// Names every run: `labels[i]` when given, else `worker I/N`, else the
/// file name without extension; names that would repeat get the file name
/// added, so every curve stays told apart.
pub fn name(runs: &mut [Run], labels: &[String]) -> Result<(), InputError> {
    if labels.len() > runs.len() {
        return Err(InputError::Labels {
            labels: labels.len(),
            inputs: runs.len(),
        });
    }
    let stem = |r: &Run| {
        r.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    for (i, r) in runs.iter_mut().enumerate() {
        r.label = match (labels.get(i), &r.worker) {
            (Some(l), _) => l.clone(),
            (None, Some(w)) => format!("worker {w}"),
            (None, None) => stem(r),
        };
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for r in runs.iter() {
        *seen.entry(r.label.clone()).or_insert(0) += 1;
    }
    for (i, r) in runs.iter_mut().enumerate() {
        if seen[&r.label] > 1 && labels.get(i).is_none() {
            r.label = format!("{} ({})", r.label, r.path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str, worker: Option<&str>) -> Run {
        Run {
            path: path.into(),
            label: String::new(),
            worker: worker.map(String::from),
            curve: vec![(0.5, 100.0), (0.99, 900.0), (1.0, 1000.0)],
            phases: BTreeMap::new(),
            timeline: None,
            ops: None,
            ops_per_s: None,
        }
    }

    fn labels(runs: &[Run]) -> Vec<&str> {
        runs.iter().map(|r| r.label.as_str()).collect()
    }

    #[test]
    fn runs_are_named_by_label_then_worker_tag_then_file_stem_and_never_alike() {
        let mut runs = vec![
            run("out/uringtls.hlog", None),
            run("out/w2.hlog", Some("2/3")),
            run("nginx.hgrm", None),
        ];
        name(&mut runs, &[]).expect("names");
        assert_eq!(labels(&runs), ["uringtls", "worker 2/3", "nginx"]);
        name(&mut runs, &["A".into()]).expect("names");
        assert_eq!(labels(&runs), ["A", "worker 2/3", "nginx"]);
        let mut twins = vec![run("a/run.hlog", None), run("b/run.hlog", None)];
        name(&mut twins, &[]).expect("names");
        assert_eq!(labels(&twins), ["run (a/run.hlog)", "run (b/run.hlog)"]);
        let e = name(&mut twins, &["x".into(), "y".into(), "z".into()])
            .expect_err("too many")
            .to_string();
        assert!(
            e.starts_with("--label given 3 times for 2 input files"),
            "{e}"
        );
    }

    #[test]
    fn files_are_told_apart_by_content_and_refused_by_name_when_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let json = dir.path().join("report.txt");
        std::fs::write(
            &json,
            r#"{"ops": 10, "worker": {"tag": "1/2"}, "latency_us": {"total": {"p50_us": 5, "p90_us": 9, "p99_us": 20, "p99_9_us": 30, "p99_99_us": 31}, "connect": {"p50_us": 1, "p90_us": 2, "p99_us": 3, "p99_9_us": 4}}}"#,
        )
        .expect("write");
        let r = read(&json).expect("JSON by content");
        assert_eq!(r.worker.as_deref(), Some("1/2"));
        assert_eq!(r.curve[2], (0.99, 20.0));
        assert_eq!(r.phases["connect"], [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(r.at(0.9), Some(9.0));
        let junk = dir.path().join("notes.md");
        std::fs::write(&junk, "# nothing to plot\n").expect("write");
        let e = read(&junk).expect_err("junk");
        assert!(matches!(e, InputError::Unknown { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("notes.md: not a bench-client JSON report"),
            "{e}"
        );
    }
}
