//! Several bench-client processes as one load generator: `--worker I/N`
//! gives this process its share of the fleet's `--rate`, `--connections`
//! and `--requests`, and `--start-at TIME` makes every worker start at the
//! same instant, so that their interval logs line up for `merge`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// This process's place in a fleet: worker `index` (1-based) of `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerTag {
    /// 1-based index.
    pub index: u32,
    /// Workers in the fleet.
    pub of: u32,
}

impl fmt::Display for WorkerTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.of)
    }
}

/// `--worker` that is not `I/N` with 1 <= I <= N.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not I/N with 1 <= I <= N (e.g. --worker 2/3; I counts from 1)")]
pub struct WorkerTagError(pub String);

/// `--start-at` that is not a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StartAtError {
    /// Digits and dots that are not a number.
    #[error("`{0}` is not a number of Unix seconds")]
    NotSeconds(String),
    /// Neither seconds nor RFC 3339.
    #[error("`{0}` is neither Unix seconds nor an RFC 3339 time (e.g. 2026-01-01T12:00:00Z, or `date -d '+1 min' +%s`)")]
    NotATime(String),
}

impl WorkerTag {
    /// Parses `I/N` (1 <= I <= N).
    pub fn parse(s: &str) -> Result<WorkerTag, WorkerTagError> {
        let bad = || WorkerTagError(s.to_string());
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let of: u32 = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || index > of {
            return Err(bad());
        }
        Ok(WorkerTag { index, of })
    }

    /// This worker's share of an integer total: `total / N`, the first
    /// `total % N` workers one more, so the shares add up to `total`.
    pub fn share_count(self, total: u64) -> u64 {
        let n = u64::from(self.of);
        let i = u64::from(self.index - 1);
        total / n + u64::from(i < total % n)
    }

    /// This worker's share of a rate: the whole part is split like
    /// [`share_count`](Self::share_count) and the remainder (below N, maybe
    /// fractional) goes to the first workers one unit at a time, so the
    /// shares add up to `total`.
    pub fn share_rate(self, total: f64) -> f64 {
        let n = f64::from(self.of);
        let i = f64::from(self.index - 1);
        let base = (total / n).floor();
        let rest = total - base * n;
        base + (rest - i).clamp(0.0, 1.0)
    }
}

/// What the fleet as a whole was asked for (reported beside this worker's share).
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// This worker.
    pub tag: WorkerTag,
    /// The fleet's `--rate`.
    pub rate: Option<f64>,
    /// The fleet's `--connections`.
    pub connections: usize,
    /// The fleet's `--requests`.
    pub requests: Option<u64>,
}

/// Parses `--start-at`: Unix seconds (`1767225600`, `1767225600.5`) or an
/// RFC 3339 time (`2026-01-01T00:00:00Z`, `2026-01-01T01:00:00.250+01:00`).
pub fn parse_start_at(s: &str) -> Result<SystemTime, StartAtError> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let secs: f64 = t
            .parse()
            .map_err(|_| StartAtError::NotSeconds(s.to_string()))?;
        return Ok(UNIX_EPOCH + Duration::from_secs_f64(secs));
    }
    rfc3339(t).ok_or_else(|| StartAtError::NotATime(s.to_string()))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`, `T` or a space between.
fn rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<9}", &frac[..digits.min(9)]);
        nanos = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = rest.get(1..)?;
            if o.len() != 5 || o.as_bytes()[2] != b':' {
                return None;
            }
            let (h, m): (i64, i64) = (o[0..2].parse().ok()?, o[3..5].parse().ok()?);
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the Unix epoch.
pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A `--start-at` time that had already passed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "--start-at {:.3} (Unix seconds) passed {:.3}s ago {when}: every worker must wait for the same future instant; give a later time (e.g. `--start-at $(($(date +%s) + 30))`)",
    unix_secs(*at),
    late.as_secs_f64()
)]
pub struct StartPassed {
    /// The start time asked for.
    pub at: SystemTime,
    /// How long ago it was.
    pub late: Duration,
    /// At which step it was found so (`at start-up`).
    pub when: &'static str,
}

/// How long until `at`, or the error for a start time already passed
/// (`when` says at which step it was found so).
pub fn until(at: SystemTime, now: SystemTime, when: &'static str) -> Result<Duration, StartPassed> {
    at.duration_since(now).map_err(|late| StartPassed {
        at,
        late: late.duration(),
        when,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_tags_parse_one_based() {
        assert_eq!(WorkerTag::parse("2/3"), Ok(WorkerTag { index: 2, of: 3 }));
        for bad in ["0/3", "4/3", "3", "a/3", "1/0", ""] {
            let e = WorkerTag::parse(bad).expect_err(bad);
            assert_eq!(e, WorkerTagError(bad.into()));
            assert!(e.to_string().contains("I/N"), "{e}");
        }
        assert_eq!(WorkerTag { index: 1, of: 3 }.to_string(), "1/3");
    }

    #[test]
    fn shares_add_up_to_the_total_with_the_remainder_on_the_first_workers() {
        let tags = |n| (1..=n).map(move |index| WorkerTag { index, of: n });
        let counts: Vec<u64> = tags(3).map(|t| t.share_count(10)).collect();
        assert_eq!(counts, [4, 3, 3]);
        let counts: Vec<u64> = tags(4).map(|t| t.share_count(7)).collect();
        assert_eq!(counts, [2, 2, 2, 1]);
        let rates: Vec<f64> = tags(3).map(|t| t.share_rate(1000.0)).collect();
        assert_eq!(rates, [334.0, 333.0, 333.0]);
        let rates: Vec<f64> = tags(4).map(|t| t.share_rate(10.5)).collect();
        assert_eq!(rates, [3.0, 3.0, 2.5, 2.0]);
        for total in [600.0, 7.25, 1e6 + 1.0] {
            let sum: f64 = tags(7).map(|t| t.share_rate(total)).sum();
            assert_eq!(sum, total);
        }
    }

    #[test]
    fn start_times_parse_as_unix_seconds_or_rfc3339() {
        let at = |s| unix_secs(parse_start_at(s).expect(s));
        assert_eq!(at("1767225600"), 1_767_225_600.0);
        assert_eq!(at("1767225600.5"), 1_767_225_600.5);
        assert_eq!(at("2026-01-01T00:00:00Z"), 1_767_225_600.0);
        assert_eq!(at("2026-01-01 01:00:00.25+01:00"), 1_767_225_600.25);
        assert_eq!(at("2025-12-31T19:00:00-05:00"), 1_767_225_600.0);
        assert_eq!(at("2024-02-29T12:00:00Z"), 1_709_208_000.0);
        for bad in [
            "tomorrow",
            "2026-13-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "-5",
        ] {
            assert!(parse_start_at(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_start_time_already_passed_is_an_error_naming_the_flag() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let e = until(UNIX_EPOCH + Duration::from_secs(997), now, "at start-up")
            .expect_err("passed")
            .to_string();
        assert!(e.starts_with("--start-at 997.000"), "{e}");
        assert!(e.contains("passed 3.000s ago at start-up"), "{e}");
        assert_eq!(
            until(UNIX_EPOCH + Duration::from_secs(1002), now, "x"),
            Ok(Duration::from_secs(2))
        );
    }
}
