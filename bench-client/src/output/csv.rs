//! `--csv FILE`: one row per interval (warmup rows flagged), for plotting.

use crate::load::run::{Interval, IntervalSink};
use crate::stats::Metric;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Column names, in order.
pub const HEADER: &str = "interval,start_s,len_s,warmup,ops,ops_per_s,mb_in_per_s,mb_out_per_s,p50_us,p90_us,p99_us,p99_9_us,max_us,errors,active_connections,full_handshakes,resumed_handshakes";

/// Writes the CSV.
pub struct Csv<W: Write> {
    out: W,
}

impl Csv<BufWriter<File>> {
    /// Creates `path` and writes the header.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Csv::new(BufWriter::new(File::create(path)?))
    }
}

impl<W: Write> Csv<W> {
    /// Writes the header to `out`.
    pub fn new(mut out: W) -> std::io::Result<Self> {
        writeln!(out, "{HEADER}")?;
        Ok(Csv { out })
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> IntervalSink for Csv<W> {
    fn interval(&mut self, iv: &Interval) -> std::io::Result<()> {
        let secs = iv.len.as_secs_f64().max(1e-9);
        let h = iv.rec.hist(Metric::Total);
        let q = |x| h.value_at_quantile(x);
        writeln!(
            self.out,
            "{},{:.3},{:.3},{},{},{:.1},{:.3},{:.3},{},{},{},{},{},{},{},{},{}",
            iv.index,
            iv.start.as_secs_f64(),
            secs,
            u8::from(iv.warmup),
            iv.rec.ops,
            iv.rec.ops as f64 / secs,
            iv.rec.bytes_in as f64 / 1e6 / secs,
            iv.rec.bytes_out as f64 / 1e6 / secs,
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            h.max(),
            iv.rec.error_count(),
            iv.active,
            iv.rec.full_handshakes,
            iv.rec.resumed_handshakes
        )?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Recorder;
    use std::time::Duration;

    #[test]
    fn rows_have_as_many_fields_as_the_header() {
        let mut rec = Recorder::new();
        rec.ops = 500;
        rec.record(Metric::Total, Duration::from_micros(80));
        let iv = Interval {
            index: 0,
            warmup: false,
            start: Duration::ZERO,
            len: Duration::from_millis(500),
            rec,
            active: 4,
        };
        let mut csv = Csv::new(Vec::new()).expect("header");
        csv.interval(&iv).expect("row");
        let text = String::from_utf8(csv.into_inner()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].split(',').count(), HEADER.split(',').count());
        assert!(
            lines[1].starts_with("0,0.000,0.500,0,500,1000.0,"),
            "{}",
            lines[1]
        );
    }
}
