//! Loop statistics of the uring backend: where a request's latency can
//! hide inside the shard's loop. Off by default; `URINGTLS_LOOP_STATS=1`
//! in the environment turns them on for every shard (read once per
//! runtime), and each shard prints one summary to stderr when it stops.
//! They cost two clock reads per task poll while on, nothing while off.
//!
//! Figures, each a distribution (log2 buckets of microseconds or counts,
//! reported as the bucket's upper bound):
//! - `turn`: the work of one loop turn (from the end of one
//!   `io_uring_enter` to the start of the next): the longest any completion
//!   reaped at its start can wait before its task is polled, and before
//!   what the task submits reaches the kernel;
//! - `wait`: time parked in `io_uring_enter`;
//! - `reaped`: completions delivered per `io_uring_enter`;
//! - `polls`: task polls per turn;
//! - `longest_poll`: the longest single task poll of each turn;
//! - `timer_late`: how long after its deadline each timer fired.

use std::fmt;
use std::time::{Duration, Instant};

/// Whether the environment asks for loop statistics.
pub(crate) fn wanted() -> bool {
    std::env::var_os("URINGTLS_LOOP_STATS").is_some_and(|v| v != "0" && !v.is_empty())
}

/// A histogram in log2 buckets: bucket `i` holds values in
/// `[2^(i-1), 2^i)` (bucket 0 holds 0).
#[derive(Default)]
pub(crate) struct Hist {
    buckets: [u64; 32],
    n: u64,
    max: u64,
}

impl Hist {
    pub(crate) fn add(&mut self, v: u64) {
        let i = (u64::BITS - v.leading_zeros()) as usize;
        self.buckets[i.min(self.buckets.len() - 1)] += 1;
        self.n += 1;
        self.max = self.max.max(v);
    }

    pub(crate) fn add_us(&mut self, d: Duration) {
        self.add(d.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    /// Upper bound of the bucket holding the `q` quantile (0..=1).
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut seen = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return if i == 0 { 0 } else { (1u64 << i) - 1 };
            }
        }
        self.max
    }
}

impl fmt::Display for Hist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={} p50<={} p90<={} p99<={} p99.9<={} max={}",
            self.n,
            self.quantile(0.5),
            self.quantile(0.9),
            self.quantile(0.99),
            self.quantile(0.999),
            self.max
        )
    }
}

/// One shard's loop statistics.
#[derive(Default)]
pub(crate) struct LoopStats {
    pub(crate) turn_us: Hist,
    pub(crate) wait_us: Hist,
    pub(crate) reaped: Hist,
    pub(crate) polls: Hist,
    pub(crate) longest_poll_us: Hist,
    pub(crate) timer_late_us: Hist,
    /// Within the current turn.
    pub(crate) turn_start: Option<Instant>,
    pub(crate) turn_polls: u64,
    pub(crate) turn_longest: Duration,
}

impl fmt::Display for LoopStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  turn_us       {}", self.turn_us)?;
        writeln!(f, "  wait_us       {}", self.wait_us)?;
        writeln!(f, "  reaped        {}", self.reaped)?;
        writeln!(f, "  polls         {}", self.polls)?;
        writeln!(f, "  longest_poll  {}", self.longest_poll_us)?;
        write!(f, "  timer_late_us {}", self.timer_late_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_bucket_upper_bounds() {
        let mut h = Hist::default();
        for v in [0, 1, 2, 3, 5, 100, 1000] {
            h.add(v);
        }
        assert_eq!(h.quantile(0.0), 0);
        assert_eq!(h.quantile(0.5), 3, "the 4th of 7 values (3) is in [2,4)");
        assert_eq!(h.quantile(1.0), 1023, "1000 is in [512,1024)");
        assert_eq!(h.max, 1000);
        assert_eq!(Hist::default().quantile(0.99), 0);
    }
}
