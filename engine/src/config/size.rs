//! Byte sizes for flags and TOML: `1MiB`, `512KiB`, `2GiB`, `1MB`, or a bare
//! number of bytes.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::str::FromStr;

/// A size in bytes written as `65536`, `64KiB`, `1MiB`, `1GiB` (powers of
/// 1024) or `64kB`, `1MB`, `1GB` (powers of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// What a size may look like, for error messages.
const ACCEPTED: &str =
    "write bytes (`1048576`) or a unit: B, KiB, MiB, GiB (1024) or kB, MB, GB (1000)";

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" | "k" => 1 << 10,
            "mib" | "m" => 1 << 20,
            "gib" | "g" => 1 << 30,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            _ => return Err(format!("`{s}`: unknown unit `{}`; {ACCEPTED}", unit.trim())),
        };
        let not_a_size = || format!("`{s}` is not a size; {ACCEPTED}");
        let bytes = if num.contains('.') {
            // `1.5MiB`: whole bytes only.
            let n: f64 = num.parse().map_err(|_| not_a_size())?;
            let b = (n * mult as f64).round();
            (b < u64::MAX as f64).then_some(b as u64)
        } else {
            num.parse::<u64>()
                .map_err(|_| not_a_size())?
                .checked_mul(mult)
        };
        bytes
            .map(ByteSize)
            .ok_or_else(|| format!("`{s}` is out of range"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

impl<'de> de::Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"1MiB\", \"64KiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bytes_and_units() {
        let p = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(p("1048576"), Ok(1 << 20));
        assert_eq!(p("1MiB"), Ok(1 << 20));
        assert_eq!(p("64 KiB"), Ok(64 << 10));
        assert_eq!(p("2g"), Ok(2 << 30));
        assert_eq!(p("1MB"), Ok(1_000_000));
        assert_eq!(p("10b"), Ok(10));
        assert_eq!(p("1.5KiB"), Ok(1536));
        assert!(p("1..5KiB").unwrap_err().contains("not a size"));
        assert!(p("-1").is_err());
        assert!(p("5 parsecs")
            .unwrap_err()
            .contains("unknown unit `parsecs`; write bytes"));
        assert!(p("MiB").unwrap_err().contains("not a size"));
        assert!(p("99999999999GiB").unwrap_err().contains("out of range"));
    }

    #[test]
    fn toml_takes_numbers_and_strings() {
        #[derive(serde::Deserialize)]
        struct T {
            a: ByteSize,
            b: ByteSize,
        }
        let t: T = toml::from_str("a = 4096\nb = \"2MiB\"\n").expect("parse");
        assert_eq!((t.a.0, t.b.0), (4096, 2 << 20));
        assert!(toml::from_str::<T>("a = -1\nb = 1\n").is_err());
    }
}
