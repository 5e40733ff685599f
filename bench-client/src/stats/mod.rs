//! Measurements: one [`Recorder`] per worker thread (histograms per metric,
//! counters, error classes), handed to the main thread once per interval and
//! added up there. Histograms add exactly; percentiles never get averaged.
//!
//! - [`errors`]: error classes.
//! - [`cpu`]: our own CPU use (process and per thread).
//! - [`server`]: the server's CPU, from `/proc/PID/stat` or its metrics URL.

pub mod cpu;
pub mod errors;
pub mod server;

use errors::ErrorClass;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::time::Duration;

/// Largest recordable latency: one hour, in microseconds (larger values saturate).
pub const HIST_MAX_US: u64 = 3_600_000_000;
/// Significant decimal digits kept by every histogram.
pub const HIST_SIGFIG: u8 = 3;

/// A latency metric, each with its own histogram (microseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// TCP connect.
    Connect = 0,
    /// TLS handshake (after connect).
    Handshake = 1,
    /// Request sent to first response byte.
    Ttfb = 2,
    /// The whole operation; in open loop measured from the intended send
    /// time (coordinated-omission corrected).
    Total = 3,
    /// Open loop only: the whole operation from its actual send time.
    Uncorrected = 4,
}

impl Metric {
    /// All metrics, in report order.
    pub const ALL: [Metric; 5] = [
        Metric::Connect,
        Metric::Handshake,
        Metric::Ttfb,
        Metric::Total,
        Metric::Uncorrected,
    ];

    /// Name used in reports, JSON and hlog tags.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Connect => "connect",
            Metric::Handshake => "handshake",
            Metric::Ttfb => "ttfb",
            Metric::Total => "total",
            Metric::Uncorrected => "total_uncorrected",
        }
    }

    /// The metric named `s`.
    pub fn from_name(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// A new empty latency histogram (1 µs .. 1 h, 3 significant digits).
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, HIST_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// Microseconds, rounded to nearest.
pub fn micros(d: Duration) -> u64 {
    (d.as_nanos() as u64 + 500) / 1000
}

/// What one worker measured over one interval (or, merged, over a run).
#[derive(Debug, Clone)]
pub struct Recorder {
    /// One histogram per [`Metric`].
    pub hists: [Histogram<u64>; 5],
    /// Completed operations (requests, round trips, connections).
    pub ops: u64,
    /// Plaintext bytes received / sent.
    pub bytes_in: u64,
    /// Plaintext bytes sent.
    pub bytes_out: u64,
    /// Ciphertext bytes received (TLS records, handshakes included).
    pub cipher_in: u64,
    /// Ciphertext bytes sent.
    pub cipher_out: u64,
    /// TLS connections established.
    pub connections: u64,
    /// Handshakes that were full.
    pub full_handshakes: u64,
    /// Handshakes that resumed a session.
    pub resumed_handshakes: u64,
    /// Failed operations by class.
    pub errors: BTreeMap<ErrorClass, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Recorder {
        Recorder {
            hists: std::array::from_fn(|_| new_hist()),
            ops: 0,
            bytes_in: 0,
            bytes_out: 0,
            cipher_in: 0,
            cipher_out: 0,
            connections: 0,
            full_handshakes: 0,
            resumed_handshakes: 0,
            errors: BTreeMap::new(),
        }
    }

    /// Records one latency sample.
    #[inline]
    pub fn record(&mut self, m: Metric, d: Duration) {
        self.hists[m as usize].saturating_record(micros(d));
    }

    /// The histogram of `m`.
    pub fn hist(&self, m: Metric) -> &Histogram<u64> {
        &self.hists[m as usize]
    }

    /// Counts a failed operation.
    pub fn error(&mut self, class: ErrorClass) {
        *self.errors.entry(class).or_insert(0) += 1;
    }

    /// Total failed operations.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Recorder) {
        for (mine, theirs) in self.hists.iter_mut().zip(other.hists.iter()) {
            // Same bounds everywhere, so addition cannot fail.
            let _ = mine.add(theirs);
        }
        self.ops += other.ops;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.cipher_in += other.cipher_in;
        self.cipher_out += other.cipher_out;
        self.connections += other.connections;
        self.full_handshakes += other.full_handshakes;
        self.resumed_handshakes += other.resumed_handshakes;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_per_thread_recorders_adds_histograms_and_counters() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        for i in 1..=900u64 {
            a.record(Metric::Total, Duration::from_micros(i));
        }
        for _ in 0..100 {
            b.record(Metric::Total, Duration::from_millis(50));
        }
        a.ops = 900;
        b.ops = 100;
        b.error(ErrorClass::Timeout);
        a.error(ErrorClass::Timeout);
        let mut total = Recorder::new();
        total.merge(&a);
        total.merge(&b);
        let h = total.hist(Metric::Total);
        assert_eq!(h.len(), 1000);
        assert_eq!(total.ops, 1000);
        assert_eq!(total.errors.get(&ErrorClass::Timeout), Some(&2));
        // p50 comes from thread a's samples, p95 from thread b's: a true merge,
        // not an average of per-thread percentiles.
        assert!(
            (495..=505).contains(&h.value_at_quantile(0.5)),
            "{}",
            h.value_at_quantile(0.5)
        );
        let p95 = h.value_at_quantile(0.95);
        assert!((49_900..=50_100).contains(&p95), "{p95}");
    }

    #[test]
    fn metric_names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::from_name(m.name()), Some(m));
        }
    }
}
