//! `--hlog FILE`: an HdrHistogram V2 interval log (the `hdrhistogram`
//! crate's writer, readable by the Java `HistogramLogProcessor` and by
//! `bench-client merge`). Each measured interval gets one line per metric,
//! tagged with the metric name (`Tag=total`, `Tag=connect`, ...). Values are
//! microseconds. A header comment `#requested_duration_s: 2.000` keeps the
//! measuring time asked for, so that `merge` can tell a run that overran it.

use crate::load::run::{Interval, IntervalSink};
use crate::stats::{new_hist, Metric};
use base64::Engine;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// The header comment holding the requested measuring time (seconds).
const REQUESTED: &str = "requested_duration_s:";

/// Writes the interval log.
pub struct HlogWriter<W: Write> {
    out: W,
    ser: V2DeflateSerializer,
}

impl HlogWriter<BufWriter<File>> {
    /// Creates `path` and writes the header (StartTime/BaseTime `start`,
    /// `requested` measuring time).
    pub fn create(
        path: &Path,
        comment: &str,
        start: SystemTime,
        requested: Duration,
    ) -> std::io::Result<Self> {
        HlogWriter::new(
            BufWriter::new(File::create(path)?),
            comment,
            start,
            requested,
        )
    }
}

impl<W: Write> HlogWriter<W> {
    /// Writes the header (comment, StartTime/BaseTime = `start`, the
    /// `requested` measuring time) to `out`.
    pub fn new(
        mut out: W,
        comment: &str,
        start: SystemTime,
        requested: Duration,
    ) -> std::io::Result<Self> {
        let mut ser = V2DeflateSerializer::new();
        IntervalLogWriterBuilder::new()
            .add_comment(comment)
            .add_comment(&format!(
                "{REQUESTED} {:.3} (measuring time asked for, warmup excluded)",
                requested.as_secs_f64()
            ))
            .add_comment(
                "values are microseconds; tags: connect, handshake, ttfb, total, total_uncorrected",
            )
            .with_start_time(start)
            .with_base_time(start)
            .begin_log_with(&mut out, &mut ser)?;
        writeln!(out, "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"")?;
        Ok(HlogWriter { out, ser })
    }

    /// Appends one histogram.
    pub fn write(
        &mut self,
        h: &Histogram<u64>,
        start: Duration,
        len: Duration,
        tag: &str,
    ) -> std::io::Result<()> {
        // A builder without headers writes nothing itself; it only gives us a
        // writer borrowing `out` for this one line.
        let mut w = IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.ser)?;
        w.write_histogram(h, start, len, Tag::new(tag))
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write> IntervalSink for HlogWriter<W> {
    fn interval(&mut self, iv: &Interval) -> std::io::Result<()> {
        if iv.warmup {
            return Ok(());
        }
        for m in Metric::ALL {
            let h = iv.rec.hist(m);
            if m == Metric::Total || !h.is_empty() {
                self.write(h, iv.start, iv.len, m.name())?;
            }
        }
        self.out.flush()
    }
}

/// What one interval log holds, histograms added up per tag.
#[derive(Debug)]
pub struct HlogData {
    /// Sum of all intervals, per tag (untagged lines count as `total`).
    pub per_tag: BTreeMap<String, Histogram<u64>>,
    /// Earliest interval start and latest interval end (log time, seconds).
    pub span: Option<(f64, f64)>,
    /// Interval lines read.
    pub intervals: usize,
    /// The measuring time the run asked for (`None` in logs of other tools
    /// and of older bench-client versions).
    pub requested: Option<f64>,
}

impl HlogData {
    /// Seconds covered by the log's intervals.
    pub fn seconds(&self) -> f64 {
        self.span.map(|(a, b)| (b - a).max(0.0)).unwrap_or(0.0)
    }
}

/// Reads and sums an interval log.
pub fn read(path: &Path) -> Result<HlogData, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses and sums an interval log held in memory.
pub fn parse(bytes: &[u8]) -> Result<HlogData, String> {
    let mut data = HlogData {
        per_tag: BTreeMap::new(),
        span: None,
        intervals: 0,
        requested: requested(bytes),
    };
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(|e| format!("not an interval log ({e:?})"))?;
        let LogEntry::Interval(ilh) = entry else {
            continue;
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(ilh.encoded_histogram())
            .map_err(|e| format!("bad histogram encoding: {e}"))?;
        let h: Histogram<u64> = de
            .deserialize(&mut raw.as_slice())
            .map_err(|e| format!("bad histogram: {e:?}"))?;
        let tag = ilh
            .tag()
            .map(|t| t.as_str().to_string())
            .unwrap_or_else(|| "total".into());
        let sum = data.per_tag.entry(tag).or_insert_with(new_hist);
        sum.add(&h)
            .map_err(|e| format!("histogram out of range: {e:?}"))?;
        let start = ilh.start_timestamp().as_secs_f64();
        let end = start + ilh.duration().as_secs_f64();
        data.span = Some(match data.span {
            Some((a, b)) => (a.min(start), b.max(end)),
            None => (start, end),
        });
        data.intervals += 1;
    }
    if data.intervals == 0 {
        return Err("no interval histograms found (was it written with --hlog?)".into());
    }
    Ok(data)
}

/// The `#requested_duration_s:` header value, if any.
fn requested(bytes: &[u8]) -> Option<f64> {
    bytes.split(|&b| b == b'\n').find_map(|line| {
        let rest = line
            .strip_prefix(b"#")?
            .strip_prefix(REQUESTED.as_bytes())?;
        let text = std::str::from_utf8(rest).ok()?;
        let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
        (secs.is_finite() && secs > 0.0).then_some(secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Recorder;

    #[test]
    fn written_intervals_read_back_summed_per_tag() {
        let mut w = HlogWriter::new(
            Vec::new(),
            "test",
            SystemTime::UNIX_EPOCH,
            Duration::from_millis(2500),
        )
        .expect("header");
        for i in 0..3u64 {
            let mut rec = Recorder::new();
            for v in 1..=100u64 {
                rec.record(Metric::Total, Duration::from_micros(v * (i + 1)));
            }
            rec.record(Metric::Connect, Duration::from_micros(50));
            let iv = Interval {
                index: i,
                warmup: false,
                start: Duration::from_secs(i),
                len: Duration::from_secs(1),
                rec,
                active: 1,
            };
            w.interval(&iv).expect("write");
        }
        let text = w.into_inner();
        let s = String::from_utf8(text.clone()).expect("utf8");
        assert!(s.contains("#[StartTime: 0.000"), "{s}");
        assert!(s.contains("Tag=total,0.000,1.000,"), "{s}");
        let data = parse(&text).expect("parse");
        assert_eq!(data.intervals, 6);
        assert_eq!(data.per_tag["total"].len(), 300);
        assert_eq!(data.per_tag["connect"].len(), 3);
        assert_eq!(data.per_tag["total"].max(), 300);
        assert_eq!(data.seconds(), 3.0);
        assert_eq!(data.requested, Some(2.5));
    }

    #[test]
    fn a_log_without_the_requested_duration_header_reads_as_unknown() {
        let mut w = HlogWriter::new(
            Vec::new(),
            "test",
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
        )
        .expect("header");
        w.write(&new_hist(), Duration::ZERO, Duration::from_secs(1), "total")
            .expect("write");
        let text = String::from_utf8(w.into_inner()).expect("utf8");
        let old: String = text
            .lines()
            .filter(|l| !l.contains(REQUESTED))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(parse(old.as_bytes()).expect("parse").requested, None);
    }
}
