//! Everything bench-client writes: the live progress line ([`progress`]),
//! the summary ([`summary`]), percentile distributions in the wrk2 /
//! HdrHistogram text format and `.hgrm` files ([`percentiles`]), interval
//! logs ([`hlog`]), JSON ([`json`]), per-interval CSV ([`csv`]), the
//! `merge` subcommand ([`merge`], checks in [`fleet_checks`]) and the `plot`
//! subcommand ([`plot`], reading its inputs in [`plot_inputs`]).

pub mod csv;
pub mod fleet_checks;
pub mod hlog;
pub mod json;
pub mod merge;
pub mod percentiles;
pub mod plot;
pub mod plot_inputs;
pub mod progress;
pub mod summary;

use crate::load::run::Outcome;
use crate::plan::Plan;
use crate::stats::cpu::SATURATION;
use crate::tls::Negotiated;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::Duration;

/// Everything a final report needs.
pub struct Report<'a> {
    /// What was run.
    pub plan: &'a Plan,
    /// What came out.
    pub outcome: &'a Outcome,
    /// What the probe connection negotiated.
    pub negotiated: &'a Negotiated,
    /// Where server CPU came from (`--server-metrics`).
    pub server_source: Option<String>,
    /// Warnings gathered before the run (fd limit, ...).
    pub warnings: Vec<String>,
    /// When the load started (wall clock).
    pub started: std::time::SystemTime,
}

impl Report<'_> {
    fn secs(&self) -> f64 {
        self.outcome.measured.as_secs_f64().max(1e-9)
    }

    /// Successful operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.outcome.total.ops as f64 / self.secs()
    }

    /// Plaintext MB/s (10^6) received and sent.
    pub fn mb_per_sec(&self) -> (f64, f64) {
        let t = &self.outcome.total;
        (
            t.bytes_in as f64 / 1e6 / self.secs(),
            t.bytes_out as f64 / 1e6 / self.secs(),
        )
    }

    /// Share of handshakes that resumed, if any handshake happened.
    pub fn resumed_share(&self) -> Option<f64> {
        let t = &self.outcome.total;
        let n = t.full_handshakes + t.resumed_handshakes;
        (n > 0).then(|| t.resumed_handshakes as f64 / n as f64)
    }

    /// Server CPU microseconds per successful operation.
    pub fn server_us_per_op(&self) -> Option<f64> {
        match &self.outcome.server_cpu {
            Some(Ok(cpu)) if self.outcome.total.ops > 0 => {
                Some(cpu.as_secs_f64() * 1e6 / self.outcome.total.ops as f64)
            }
            _ => None,
        }
    }

    /// Estimated TLS records received and their mean plaintext size: the
    /// ciphertext beyond the plaintext is record overhead (22 bytes per
    /// TLS 1.3 AEAD record, 29 for TLS 1.2 AES-GCM), handshakes included.
    pub fn records_in(&self) -> Option<(u64, f64)> {
        let t = &self.outcome.total;
        let per = if self.negotiated.version.contains("1_2") {
            29
        } else {
            22
        };
        let records = t.cipher_in.checked_sub(t.bytes_in)? / per;
        (records > 0).then(|| (records, t.bytes_in as f64 / records as f64))
    }

    /// Client cores used on average over the run.
    pub fn client_cores(&self) -> f64 {
        self.outcome.process_cpu.total().as_secs_f64() / self.outcome.wall.as_secs_f64().max(1e-9)
    }

    /// Share of each CPU the workers pinned to it kept busy (unpinned: the
    /// whole process over all CPUs), as `(label, share)`.
    pub fn cpu_busy(&self) -> Vec<(String, f64)> {
        let o = self.outcome;
        if self.plan.cpus.is_empty() {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            return vec![("all CPUs".into(), self.client_cores() / n)];
        }
        let mut per_cpu: std::collections::BTreeMap<usize, f64> = Default::default();
        for (i, b) in o.thread_busy.iter().enumerate() {
            if let Some(cpu) = self.plan.cpu_for(i) {
                *per_cpu.entry(cpu).or_default() += b;
            }
        }
        per_cpu
            .into_iter()
            .map(|(c, b)| (format!("CPU {c}"), b.min(1.0)))
            .collect()
    }

    /// CPUs (or the process) busier than [`SATURATION`].
    pub fn saturated(&self) -> Vec<(String, f64)> {
        self.cpu_busy()
            .into_iter()
            .filter(|(_, b)| *b >= SATURATION)
            .collect()
    }
}

/// Summary statistics of one latency histogram, microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencyStats {
    /// Samples.
    pub count: u64,
    /// Smallest.
    pub min_us: u64,
    /// Mean.
    pub mean_us: f64,
    /// Standard deviation.
    pub stdev_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p99_9_us: u64,
    /// 99.99th percentile.
    pub p99_99_us: u64,
    /// Largest.
    pub max_us: u64,
}

/// The percentiles every report shows.
pub const QUANTILES: [(f64, &str); 5] = [
    (0.5, "p50"),
    (0.9, "p90"),
    (0.99, "p99"),
    (0.999, "p99.9"),
    (0.9999, "p99.99"),
];

impl LatencyStats {
    /// Reads them off `h`.
    pub fn of(h: &Histogram<u64>) -> LatencyStats {
        let q = |x| h.value_at_quantile(x);
        LatencyStats {
            count: h.len(),
            min_us: if h.is_empty() { 0 } else { h.min() },
            mean_us: h.mean(),
            stdev_us: h.stdev(),
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p99_9_us: q(0.999),
            p99_99_us: q(0.9999),
            max_us: h.max(),
        }
    }
}

/// A latency in microseconds, with a unit that keeps it readable
/// (`87us`, `1.24ms`, `2.50s`).
pub fn fmt_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

/// A count with SI suffix (`1.23k`, `4.56M`).
pub fn fmt_si(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2}G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.2}k", x / 1e3)
    } else {
        format!("{x:.1}")
    }
}

/// `12.3s` style duration.
pub fn fmt_secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// Writes `text` to `path`, or to stdout when `path` is `-`.
pub fn json_out(path: &std::path::Path, text: &str) -> Result<(), crate::error::Error> {
    if path.as_os_str() == "-" {
        println!("{text}");
        return Ok(());
    }
    std::fs::write(path, format!("{text}\n")).map_err(|e| crate::error::Error::output(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_pick_readable_units() {
        assert_eq!(fmt_us(87.0), "87us");
        assert_eq!(fmt_us(1240.0), "1.24ms");
        assert_eq!(fmt_us(2_500_000.0), "2.50s");
        assert_eq!(fmt_si(123_456.0), "123.46k");
    }
}
