//! One row per run: the cell's settings, what bench-client measured, and
//! where its raw output is. Written as CSV (`runs.csv`, appended run by
//! run) and JSON (`runs.json`, rewritten after each run).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Measured.
    Ok,
    /// bench-client failed or wrote no usable JSON.
    Failed,
    /// Not run: the machine refused a setting, or the server did not start.
    Skipped,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// Latency percentiles of one run, microseconds (bench-client's total
/// latency: connect to response for handshake workloads, request to
/// response for keep-alive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p99_9_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Position in the schedule, from 1.
    pub run: usize,
    /// Repetition, from 1.
    pub rep: u32,
    /// Cell index, from 0.
    pub cell: usize,
    /// `axis=value ...`.
    pub label: String,
    /// (axis, value) pairs.
    pub settings: Vec<(String, String)>,
    /// How it ended.
    pub status: Status,
    /// Why it failed or was skipped.
    #[serde(default)]
    pub message: String,
    /// Operations measured.
    pub ops: u64,
    /// Operations per second.
    pub ops_per_s: f64,
    /// Failed operations.
    pub errors: u64,
    /// Server CPU per operation, microseconds (bench-client's
    /// `--server-metrics PID`, else /proc delta over the whole run / ops).
    pub server_cpu_us_per_op: Option<f64>,
    /// `bench-client` or `proc` (includes warm-up).
    #[serde(default)]
    pub server_cpu_source: String,
    /// Latency percentiles.
    pub latency: Latency,
    /// bench-client says its own workers were saturated.
    pub client_saturated: bool,
    /// Share of handshakes resumed (resume workloads).
    pub resumed_share: Option<f64>,
    /// Wall time of the whole run (server start to stop), seconds.
    pub wall_s: f64,
    /// Accept-queue overflows during the run (`TcpExt: ListenOverflows`,
    /// whole network namespace).
    #[serde(default)]
    pub listen_overflows: u64,
    /// SYN cookies sent during the run (SYN queue full).
    #[serde(default)]
    pub syncookies_sent: u64,
    /// bench-client's JSON, relative to the results folder.
    #[serde(default)]
    pub json: String,
    /// bench-client's `.hgrm` percentile distribution, relative.
    #[serde(default)]
    pub hgrm: String,
}

const FIXED: [&str; 21] = [
    "run",
    "rep",
    "cell",
    "label",
    "status",
    "ops",
    "ops_per_s",
    "errors",
    "server_cpu_us_per_op",
    "server_cpu_source",
    "p50_us",
    "p90_us",
    "p99_us",
    "p99_9_us",
    "max_us",
    "client_saturated",
    "resumed_share",
    "wall_s",
    "listen_overflows",
    "syncookies_sent",
    "message",
];

/// The CSV header: the axes, then the fixed columns.
pub fn csv_header(axes: &[String]) -> String {
    let cols: Vec<String> = axes
        .iter()
        .map(|a| csv_field(a))
        .chain(FIXED.iter().map(|s| s.to_string()))
        .collect();
    cols.join(",")
}

/// A row as CSV, columns as in [`csv_header`].
pub fn csv_row(r: &Row) -> String {
    let opt = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_default();
    let mut cols: Vec<String> = r.settings.iter().map(|(_, v)| csv_field(v)).collect();
    cols.extend([
        r.run.to_string(),
        r.rep.to_string(),
        r.cell.to_string(),
        csv_field(&r.label),
        r.status.as_str().into(),
        r.ops.to_string(),
        format!("{:.1}", r.ops_per_s),
        r.errors.to_string(),
        opt(r.server_cpu_us_per_op),
        r.server_cpu_source.clone(),
        format!("{:.0}", r.latency.p50_us),
        format!("{:.0}", r.latency.p90_us),
        format!("{:.0}", r.latency.p99_us),
        format!("{:.0}", r.latency.p99_9_us),
        format!("{:.0}", r.latency.max_us),
        r.client_saturated.to_string(),
        opt(r.resumed_share),
        format!("{:.2}", r.wall_s),
        r.listen_overflows.to_string(),
        r.syncookies_sent.to_string(),
        csv_field(&r.message),
    ]);
    cols.join(",")
}

/// Quotes a field when it holds a comma, quote or newline.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Appends one line to `path` (creating it with `header` first).
pub fn append_csv(path: &Path, header: &str, row: &Row) -> std::io::Result<()> {
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if new {
        writeln!(f, "{header}")?;
    }
    writeln!(f, "{}", csv_row(row))
}

/// Writes all rows as a JSON array.
pub fn write_json(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(rows).map_err(std::io::Error::other)?;
    std::fs::write(path, text + "\n")
}

/// Reads `runs.json`.
pub fn read_json(path: &Path) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A measured row for tests.
    pub fn row(cell: usize, rep: u32, ops_per_s: f64, p99_us: f64) -> Row {
        Row {
            run: 1,
            rep,
            cell,
            label: format!("ring={cell}"),
            settings: vec![("ring".into(), cell.to_string())],
            status: Status::Ok,
            message: String::new(),
            ops: (ops_per_s * 5.0) as u64,
            ops_per_s,
            errors: 0,
            server_cpu_us_per_op: Some(10.0 + cell as f64),
            server_cpu_source: "bench-client".into(),
            latency: Latency {
                p50_us: p99_us / 4.0,
                p90_us: p99_us / 2.0,
                p99_us,
                p99_9_us: p99_us * 2.0,
                max_us: p99_us * 3.0,
            },
            client_saturated: false,
            resumed_share: None,
            wall_s: 6.0,
            listen_overflows: 0,
            syncookies_sent: 0,
            json: String::new(),
            hgrm: String::new(),
        }
    }

    #[test]
    fn csv_rows_line_up_with_the_header_and_quote_commas() {
        let mut r = row(0, 1, 1000.0, 800.0);
        r.message = "server said: a, b".into();
        let header = csv_header(&["ring".into()]);
        let line = csv_row(&r);
        assert!(header.starts_with("ring,run,rep,cell,label,status,ops,ops_per_s"));
        assert!(line.starts_with("0,1,1,0,ring=0,ok,5000,1000.0,0,10.000,bench-client,200,"));
        assert!(line.ends_with("\"server said: a, b\""), "{line}");
        assert_eq!(header.split(',').count(), 22);
    }

    #[test]
    fn json_rows_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runs.json");
        let rows = vec![row(0, 1, 1000.0, 800.0), row(1, 1, 2000.0, 400.0)];
        write_json(&p, &rows).unwrap();
        assert_eq!(read_json(&p).unwrap(), rows);
    }
}
