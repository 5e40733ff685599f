//! SI/IEC sizes and human durations on the command line.

use crate::error::CpuListError;
use std::time::Duration;

/// A size or duration flag that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// No number in front.
    #[error("`{0}` is not a size (e.g. 64, 16KiB, 1MB)")]
    NotASize(String),
    /// A size unit we do not know.
    #[error("unknown size unit `{0}` (use k, KiB, M, MiB, G, GiB)")]
    SizeUnit(String),
    /// No number in front.
    #[error("`{0}` is not a duration (e.g. 10s, 500ms, 2m)")]
    NotADuration(String),
    /// A duration unit we do not know.
    #[error("unknown duration unit `{0}` (use us, ms, s, m, h)")]
    DurationUnit(String),
    /// Infinite or negative.
    #[error("`{0}` is not a valid duration")]
    BadDuration(String),
}

/// Splits `12.5KiB` into `(12.5, "KiB")`; `None` if the number is missing.
fn number_and_unit(s: &str) -> Option<(f64, &str)> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    Some((num.parse().ok()?, unit))
}

/// Parses a byte size: `512`, `4k` / `4KB` (1000), `4KiB` (1024), `1M`, `1MiB`, `1G`, `1GiB`.
pub fn parse_size(s: &str) -> Result<u64, UnitError> {
    let (n, unit) = number_and_unit(s).ok_or_else(|| UnitError::NotASize(s.to_string()))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => return Err(UnitError::SizeUnit(other.to_string())),
    };
    Ok((n * mult as f64).round() as u64)
}

/// Parses a duration: `10s`, `500ms`, `2m`, `1h`, `250us`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let (n, unit) = number_and_unit(s).ok_or_else(|| UnitError::NotADuration(s.to_string()))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(UnitError::DurationUnit(other.to_string())),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(UnitError::BadDuration(s.to_string()));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a CPU list such as `1` or `0,2-3`.
pub fn parse_cpus(s: &str) -> Result<Vec<usize>, CpuListError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || CpuListError::Item {
            part: part.to_string(),
            list: s.to_string(),
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(CpuListError::Empty(s.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_si_and_iec_suffixes() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("4k"), Ok(4000));
        assert_eq!(parse_size("16KiB"), Ok(16384));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1.5MB"), Ok(1_500_000));
        assert_eq!(
            parse_size("12 parsecs"),
            Err(UnitError::SizeUnit("parsecs".into()))
        );
    }

    #[test]
    fn durations_accept_common_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(
            parse_duration("soon"),
            Err(UnitError::NotADuration("soon".into()))
        );
    }

    #[test]
    fn cpu_lists_expand_ranges() {
        assert_eq!(parse_cpus("0,2-3"), Ok(vec![0, 2, 3]));
        assert_eq!(
            parse_cpus("3-1"),
            Err(CpuListError::Item {
                part: "3-1".into(),
                list: "3-1".into()
            })
        );
        assert_eq!(parse_cpus(","), Err(CpuListError::Empty(",".into())));
    }
}
