//! Human durations for flags and TOML: `10s`, `500ms`, `2m`, `1h`, or a bare
//! number of seconds.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What a duration may be written as (repeated in every error).
pub const ACCEPTED: &str = "write a number with one of the units us, ms, s, m (or min), h, \
     e.g. `10s` or `500ms`; a bare number is seconds";

/// A duration written as `10s`, `500ms`, `2m`, `1h` or plain seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration ({ACCEPTED})"))?;
        let secs = match unit.trim() {
            "" | "s" => n,
            "ms" => n / 1e3,
            "us" => n / 1e6,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            other => {
                return Err(format!(
                    "`{s}`: unknown duration unit `{other}` ({ACCEPTED})"
                ))
            }
        };
        if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
            return Err(format!("`{s}` is out of range ({ACCEPTED})"));
        }
        Ok(HumanDuration(Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl<'de> de::Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a duration: {ACCEPTED}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                u64::try_from(v)
                    .map(|s| HumanDuration(Duration::from_secs(s)))
                    .map_err(|_| E::custom(format!("a duration cannot be negative ({ACCEPTED})")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<HumanDuration, E> {
                format!("{v}").parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration that can be turned off: `off` or `0`, else as
/// [`HumanDuration`] (`30s`). `None` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationOrOff(pub Option<Duration>);

impl FromStr for DurationOrOff {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(DurationOrOff(None));
        }
        let d: HumanDuration = s.parse().map_err(|e: String| format!("{e}; or `off`"))?;
        Ok(DurationOrOff(Some(d.0).filter(|d| !d.is_zero())))
    }
}

impl<'de> de::Deserialize<'de> for DurationOrOff {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationOrOff;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "`off` or a duration: {ACCEPTED}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationOrOff, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationOrOff, E> {
                format!("{v}").parse().map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationOrOff, E> {
                format!("{v}").parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_and_zero_turn_an_interval_off() {
        let p = |s: &str| s.parse::<DurationOrOff>().map(|d| d.0);
        assert_eq!(p("off"), Ok(None));
        assert_eq!(p("OFF"), Ok(None));
        assert_eq!(p("0"), Ok(None));
        assert_eq!(p("0s"), Ok(None));
        assert_eq!(p("30s"), Ok(Some(Duration::from_secs(30))));
        let e = p("never").expect_err("refused");
        assert!(
            e.contains("bare number is seconds") && e.ends_with("or `off`"),
            "{e}"
        );
        let t: toml::Table = toml::from_str("a = \"off\"\nb = 5\nc = \"2m\"").expect("toml");
        let get = |k: &str| {
            t[k].clone()
                .try_into::<DurationOrOff>()
                .map(|d| d.0)
                .expect(k)
        };
        assert_eq!(get("a"), None);
        assert_eq!(get("b"), Some(Duration::from_secs(5)));
        assert_eq!(get("c"), Some(Duration::from_secs(120)));
    }

    #[test]
    fn parses_units() {
        let p = |s: &str| s.parse::<HumanDuration>().map(|d| d.0);
        assert_eq!(p("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(p("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(p("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(p("3"), Ok(Duration::from_secs(3)));
        assert_eq!(p("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(p("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(p("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(p("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["ten", "5 days", "1d", "-1s", ""] {
            let e = p(bad).expect_err(bad);
            assert!(
                e.contains("us, ms, s, m (or min), h") && e.contains("bare number is seconds"),
                "{bad}: {e}"
            );
        }
    }
}
