//! Byte sizes for flags and TOML: a plain number of bytes (`1048576`), or a
//! number with a unit, binary (`16KiB`, `1MiB`, `2GiB`: powers of 1024) or
//! decimal (`16k`/`16KB`, `1M`/`1MB`, `2G`/`2GB`: powers of 1000), in any
//! case. The same grammar as bench-client's sizes.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::str::FromStr;

/// What a size may be written as (repeated in every error).
pub const ACCEPTED: &str = "write a number of bytes (`1048576`), or a number with KiB, MiB or \
     GiB (powers of 1024, `1MiB`) or k/KB, M/MB, G/GB (powers of 1000, `1MB`)";

/// A byte count written as `1048576`, `16KiB`, `1MiB`, `2GiB` or `1MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size as a `usize` (saturating on 32-bit targets).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size ({ACCEPTED})"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            _ => {
                return Err(format!(
                    "`{s}`: unknown size unit `{}` ({ACCEPTED})",
                    unit.trim()
                ))
            }
        };
        let bytes = (n * mult as f64).round();
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(format!("`{s}` is out of range ({ACCEPTED})"));
        }
        // In range and not negative (no sign is parsed): the cast is exact.
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, m) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n >= m && n % m == 0 {
                return write!(f, "{}{unit}", n / m);
            }
        }
        write!(f, "{n}")
    }
}

impl<'de> de::Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a size: {ACCEPTED}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("a size cannot be negative ({ACCEPTED})")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_bytes_or_binary_units() {
        let p = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(p("1048576"), Ok(1 << 20));
        assert_eq!(p("512B"), Ok(512));
        assert_eq!(p("16KiB"), Ok(16 << 10));
        assert_eq!(p("1MiB"), Ok(1 << 20));
        assert_eq!(p(" 2 GiB "), Ok(2 << 30));
        assert_eq!(p("1.5MiB"), Ok(3 << 19));
        assert_eq!(p("1MB"), Ok(1_000_000));
        assert_eq!(p("4k"), Ok(4_000));
        assert_eq!(p("2gb"), Ok(2_000_000_000));
        for bad in ["-1", "MiB", "1 TiB", "", "1e3", "1..5k"] {
            let e = p(bad).expect_err(bad);
            assert!(
                e.contains("KiB, MiB or GiB") && e.contains("k/KB, M/MB"),
                "{bad}: {e}"
            );
        }
        assert!(p("99999999999999GiB").is_err());
        assert_eq!(ByteSize(1 << 20).to_string(), "1MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }

    #[test]
    fn toml_takes_a_number_or_a_string() {
        #[derive(serde::Deserialize)]
        struct T {
            a: ByteSize,
            b: ByteSize,
        }
        let t: T = toml::from_str("a = 4096\nb = \"1MiB\"\n").expect("ok");
        assert_eq!((t.a.0, t.b.0), (4096, 1 << 20));
        let e = toml::from_str::<T>("a = -1\nb = \"1TB\"\n")
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("KiB, MiB or GiB"), "{e}");
    }
}
