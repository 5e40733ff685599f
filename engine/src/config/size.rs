//! Byte sizes for flags and TOML: a plain number of bytes (`1048576`), or a
//! whole number with a binary unit (`512B`, `16KiB`, `1MiB`, `2GiB`).
//!
//! Decimal units (`KB`, `MB`) are refused rather than guessed: `1MB` could
//! mean 1,000,000 or 1,048,576 bytes, and the error says which to write.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;
use std::str::FromStr;

/// What a size may be written as (repeated in every error).
pub const ACCEPTED: &str =
    "write a number of bytes (`1048576`) or a whole number with B, KiB, MiB or GiB (`1MiB`)";

/// A byte count written as `1048576`, `16KiB`, `1MiB` or `2GiB`.
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
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a size ({ACCEPTED})"))?;
        let mult: u64 = match unit.trim() {
            "" | "B" | "b" => 1,
            "KiB" | "kib" | "KIB" => 1 << 10,
            "MiB" | "mib" | "MIB" => 1 << 20,
            "GiB" | "gib" | "GIB" => 1 << 30,
            other => {
                return Err(format!(
                    "`{s}`: unknown size unit `{other}` ({ACCEPTED}; decimal units such as KB \
                     or MB are not accepted)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("`{s}` is out of range"))
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
        for bad in ["1MB", "1.5MiB", "-1", "MiB", "1 TiB", ""] {
            let e = p(bad).expect_err(bad);
            assert!(e.contains("KiB, MiB or GiB"), "{bad}: {e}");
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
        let e = toml::from_str::<T>("a = -1\nb = \"1MB\"\n")
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("KiB, MiB or GiB"), "{e}");
    }
}
