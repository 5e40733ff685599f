//! The live line, one per interval, on stderr (stdout stays for the summary):
//! `[  3.0s] 123.45k req/s  1.48 MB/s in  p50 87us  p99 1.24ms  errors 0  conns 64/64`.

use super::{fmt_si, fmt_us};
use crate::load::run::{Interval, IntervalSink};
use crate::stats::Metric;
use std::io::Write;

/// Prints the progress line.
pub struct Progress {
    /// Unit of an operation per second (`req/s`, `conn/s`, ...).
    pub unit: &'static str,
    /// Connections requested.
    pub connections: usize,
}

impl Progress {
    /// The line for `iv`.
    pub fn line(&self, iv: &Interval) -> String {
        let secs = iv.len.as_secs_f64().max(1e-9);
        let h = iv.rec.hist(Metric::Total);
        let when = if iv.warmup {
            "warmup".to_string()
        } else {
            format!("{:5.1}s", (iv.start + iv.len).as_secs_f64())
        };
        format!(
            "[{when}] {} {}  {:.2} MB/s in  p50 {}  p99 {}  errors {}  conns {}/{}",
            fmt_si(iv.rec.ops as f64 / secs),
            self.unit,
            iv.rec.bytes_in as f64 / 1e6 / secs,
            fmt_us(h.value_at_quantile(0.5) as f64),
            fmt_us(h.value_at_quantile(0.99) as f64),
            iv.rec.error_count(),
            iv.active,
            self.connections
        )
    }
}

impl IntervalSink for Progress {
    fn interval(&mut self, iv: &Interval) -> std::io::Result<()> {
        let line = self.line(iv);
        let mut err = std::io::stderr().lock();
        // A closed stderr must not end the run.
        let _ = writeln!(err, "{line}");
        Ok(())
    }
}
