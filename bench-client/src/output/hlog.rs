//! `--hlog FILE`: an HdrHistogram V2 interval log (the `hdrhistogram`
//! crate's writer, readable by the Java `HistogramLogProcessor` and by
//! `bench-client merge`). Each measured interval gets one line per metric,
//! tagged with the metric name (`Tag=total`, `Tag=connect`, ...). Values are
//! microseconds. A header comment `#requested_duration_s: 2.000` keeps the
//! measuring time asked for, so that `merge` can tell a run that overran it.
//!
//! A worker of a fleet (`--worker I/N`) says so in a header comment
//! (`#worker: 2/3`), and every run ends its log with one comment line
//! holding its counters as JSON (`#result: {"ops":...,"errors":...,
//! "client_cpu":...}`): what the histograms cannot carry (errors by class,
//! bytes, our own CPU) reaches `merge` in the same file. Comment lines are
//! ignored by other HdrHistogram tools.

use crate::load::run::{Interval, IntervalSink};
use crate::plan::fleet::WorkerTag;
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
/// The header comment holding the worker tag (`I/N`).
const WORKER: &str = "worker:";
/// The closing comment holding the run's counters (JSON).
const RESULT: &str = "result:";

/// The header comment for worker `tag` (pass it to [`HlogWriter::new`]).
pub fn worker_comment(tag: WorkerTag) -> String {
    format!("{WORKER} {tag}")
}

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
        comments: &[String],
        start: SystemTime,
        requested: Duration,
    ) -> std::io::Result<Self> {
        HlogWriter::new(
            BufWriter::new(File::create(path)?),
            comments,
            start,
            requested,
        )
    }
}

impl<W: Write> HlogWriter<W> {
    /// Writes the header (`comments`, one line each; StartTime/BaseTime =
    /// `start`; the `requested` measuring time) to `out`.
    pub fn new(
        mut out: W,
        comments: &[String],
        start: SystemTime,
        requested: Duration,
    ) -> std::io::Result<Self> {
        let mut ser = V2DeflateSerializer::new();
        let mut header = IntervalLogWriterBuilder::new();
        for c in comments {
            header.add_comment(c);
        }
        header
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

    /// Appends the run's closing `#result: {...}` line.
    pub fn result(&mut self, counters: &serde_json::Value) -> std::io::Result<()> {
        writeln!(self.out, "#{RESULT} {counters}")?;
        self.out.flush()
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
    /// `#[StartTime: ...]`: when measuring started (Unix seconds).
    pub start_time: Option<f64>,
    /// The worker tag (`--worker`), if the run had one.
    pub worker: Option<WorkerTag>,
    /// The run's closing `#result:` counters (`None` if the run did not
    /// finish, or in logs of other tools).
    pub result: Option<serde_json::Value>,
    /// The `total` histogram of each interval, in order.
    pub timeline: Vec<IntervalTotal>,
}

/// One interval of the `total` metric, for plots over time.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalTotal {
    /// Start, seconds since measuring started.
    pub start: f64,
    /// Length, seconds.
    pub len: f64,
    /// Operations completed in it.
    pub count: u64,
    /// Its 99th percentile, µs.
    pub p99_us: u64,
}

impl HlogData {
    /// Seconds covered by the log's intervals.
    pub fn seconds(&self) -> f64 {
        self.span.map(|(a, b)| (b - a).max(0.0)).unwrap_or(0.0)
    }
}

/// Why an interval log cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HlogError {
    /// The file cannot be read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The text is not an interval log.
    #[error("not an interval log ({0:?})")]
    NotALog(hdrhistogram::serialization::interval_log::LogIteratorError),
    /// A histogram is not base64.
    #[error("bad histogram encoding: {0}")]
    Encoding(#[from] base64::DecodeError),
    /// A histogram does not decode.
    #[error("bad histogram: {0:?}")]
    Histogram(hdrhistogram::serialization::DeserializeError),
    /// A histogram does not fit the bounds every bench-client histogram has.
    #[error("histogram out of range: {0:?}")]
    OutOfRange(hdrhistogram::AdditionError),
    /// No histogram at all.
    #[error("no interval histograms found (was it written with --hlog?)")]
    Empty,
}

/// An interval log that cannot be read, and its file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct HlogFileError {
    /// The file.
    pub path: std::path::PathBuf,
    /// Why it cannot be read.
    pub source: HlogError,
}

/// Reads and sums an interval log.
pub fn read(path: &Path) -> Result<HlogData, HlogFileError> {
    let in_file = |source| HlogFileError {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(|e| in_file(e.into()))?;
    parse(&bytes).map_err(in_file)
}

/// Parses and sums an interval log held in memory.
pub fn parse(bytes: &[u8]) -> Result<HlogData, HlogError> {
    let mut data = HlogData {
        per_tag: BTreeMap::new(),
        span: None,
        intervals: 0,
        requested: comment(bytes, REQUESTED).and_then(|t| {
            let secs: f64 = t.split_whitespace().next()?.parse().ok()?;
            (secs.is_finite() && secs > 0.0).then_some(secs)
        }),
        start_time: None,
        worker: comment(bytes, WORKER).and_then(|t| WorkerTag::parse(t).ok()),
        result: comment(bytes, RESULT).and_then(|t| serde_json::from_str(t).ok()),
        timeline: Vec::new(),
    };
    let mut de = Deserializer::new();
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(HlogError::NotALog)?;
        let ilh = match entry {
            LogEntry::Interval(ilh) => ilh,
            LogEntry::StartTime(t) => {
                data.start_time.get_or_insert(t.as_secs_f64());
                continue;
            }
            LogEntry::BaseTime(_) => continue,
        };
        let raw = base64::engine::general_purpose::STANDARD.decode(ilh.encoded_histogram())?;
        let h: Histogram<u64> = de
            .deserialize(&mut raw.as_slice())
            .map_err(HlogError::Histogram)?;
        let tag = ilh
            .tag()
            .map(|t| t.as_str().to_string())
            .unwrap_or_else(|| "total".into());
        let start = ilh.start_timestamp().as_secs_f64();
        let end = start + ilh.duration().as_secs_f64();
        if tag == Metric::Total.name() {
            data.timeline.push(IntervalTotal {
                start,
                len: ilh.duration().as_secs_f64(),
                count: h.len(),
                p99_us: h.value_at_quantile(0.99),
            });
        }
        let sum = data.per_tag.entry(tag).or_insert_with(new_hist);
        sum.add(&h).map_err(HlogError::OutOfRange)?;
        data.span = Some(match data.span {
            Some((a, b)) => (a.min(start), b.max(end)),
            None => (start, end),
        });
        data.intervals += 1;
    }
    if data.intervals == 0 {
        return Err(HlogError::Empty);
    }
    Ok(data)
}

/// The text after the last `#key` comment line, trimmed.
fn comment<'a>(bytes: &'a [u8], key: &str) -> Option<&'a str> {
    bytes.split(|&b| b == b'\n').rev().find_map(|line| {
        let rest = line.strip_prefix(b"#")?.strip_prefix(key.as_bytes())?;
        Some(std::str::from_utf8(rest).ok()?.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Recorder;

    #[test]
    fn written_intervals_read_back_summed_per_tag() {
        let tag = WorkerTag { index: 2, of: 3 };
        let mut w = HlogWriter::new(
            Vec::new(),
            &["test".into(), worker_comment(tag)],
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_767_225_600_250),
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
        w.result(&serde_json::json!({"ops": 300, "errors": {"total": 0}}))
            .expect("result");
        let text = w.into_inner();
        let s = String::from_utf8(text.clone()).expect("utf8");
        assert!(s.contains("#[StartTime: 1767225600.250"), "{s}");
        assert!(s.contains("\n#worker: 2/3\n"), "{s}");
        assert!(
            s.ends_with("#result: {\"errors\":{\"total\":0},\"ops\":300}\n"),
            "{s}"
        );
        assert!(s.contains("Tag=total,0.000,1.000,"), "{s}");
        let data = parse(&text).expect("parse");
        assert_eq!(data.intervals, 6);
        assert_eq!(data.per_tag["total"].len(), 300);
        assert_eq!(data.per_tag["connect"].len(), 3);
        assert_eq!(data.per_tag["total"].max(), 300);
        assert_eq!(data.seconds(), 3.0);
        assert_eq!(data.requested, Some(2.5));
        assert_eq!(data.start_time, Some(1_767_225_600.25));
        assert_eq!(data.worker, Some(tag));
        assert_eq!(
            data.result.as_ref().map(|r| r["ops"].clone()),
            Some(300.into())
        );
        let counts: Vec<(f64, u64)> = data.timeline.iter().map(|i| (i.start, i.count)).collect();
        assert_eq!(counts, [(0.0, 100), (1.0, 100), (2.0, 100)]);
        assert_eq!(data.timeline[2].p99_us, 297);
    }

    #[test]
    fn a_log_without_the_requested_duration_header_reads_as_unknown() {
        let mut w = HlogWriter::new(
            Vec::new(),
            &["test".into()],
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
        let data = parse(old.as_bytes()).expect("parse");
        assert_eq!(data.requested, None);
        assert_eq!((data.worker, data.result), (None, None));
    }

    #[test]
    fn a_log_without_histograms_or_a_missing_file_is_an_error_naming_it() {
        let e = parse(b"#[StartTime: 1767225600.000 (seconds since epoch)]\n").expect_err("empty");
        assert!(matches!(e, HlogError::Empty), "{e:?}");
        let e = read(Path::new("/nonexistent/run.hlog")).expect_err("missing");
        assert!(matches!(e.source, HlogError::Io(_)), "{e:?}");
        assert!(e.to_string().starts_with("/nonexistent/run.hlog: "), "{e}");
    }
}
