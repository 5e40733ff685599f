//! Open-loop pacing (wrk2's model). The total rate R is split over the C
//! connection slots: slot i sends at R/C per second, its k-th operation
//! *intended* at `start + (i/C + k) * C/R`. A slot never sends before the
//! intended time; when it is late (the previous reply came back late) it
//! sends at once, and the latency is still measured from the intended time.
//! That is the coordinated-omission correction: a server stall delays every
//! operation that *should* have been sent during it, and each one is
//! charged the wait, not just the one request that hit the stall.

use std::time::{Duration, Instant};

/// The schedule of one connection slot.
#[derive(Debug, Clone)]
pub struct Pacer {
    base: Instant,
    /// Nanoseconds between this slot's operations.
    period_ns: f64,
    /// This slot's phase within a period, in nanoseconds.
    offset_ns: f64,
    k: u64,
}

impl Pacer {
    /// Slot `slot` of `slots`, sharing `rate` operations per second, schedule starting at `start`.
    pub fn new(start: Instant, rate: f64, slot: usize, slots: usize) -> Pacer {
        let slots = slots.max(1) as f64;
        let period_ns = slots / rate.max(f64::MIN_POSITIVE) * 1e9;
        Pacer {
            base: start,
            period_ns,
            offset_ns: period_ns * slot as f64 / slots,
            k: 0,
        }
    }

    /// Time between this slot's operations.
    pub fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns as u64)
    }

    fn at(&self, k: u64) -> Instant {
        self.base + Duration::from_nanos((self.offset_ns + k as f64 * self.period_ns) as u64)
    }

    /// The intended start of the next operation (then advances).
    pub fn next_intended(&mut self) -> Instant {
        let t = self.at(self.k);
        self.k += 1;
        t
    }

    /// Drops scheduled operations before `now` (used once, after the slot's
    /// connection is set up, so set-up time is not charged to requests).
    pub fn skip_to(&mut self, now: Instant) {
        while self.at(self.k) < now {
            self.k += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_together_send_at_the_requested_rate_evenly_spread() {
        let start = Instant::now();
        let slots = 4;
        let mut pacers: Vec<Pacer> = (0..slots)
            .map(|i| Pacer::new(start, 1000.0, i, slots))
            .collect();
        let mut times: Vec<Duration> = Vec::new();
        for p in &mut pacers {
            for _ in 0..250 {
                times.push(p.next_intended() - start);
            }
        }
        times.sort();
        // 1000 operations in one second, one every millisecond.
        assert_eq!(times.len(), 1000);
        for (i, t) in times.iter().enumerate() {
            let want = Duration::from_millis(i as u64);
            let diff = t.abs_diff(want);
            assert!(diff < Duration::from_micros(2), "op {i} at {t:?}");
        }
        assert_eq!(pacers[0].period(), Duration::from_millis(4));
    }

    #[test]
    fn skip_to_drops_the_backlog_of_set_up_time() {
        let start = Instant::now();
        let mut p = Pacer::new(start, 100.0, 0, 1);
        p.skip_to(start + Duration::from_millis(35));
        assert_eq!(p.next_intended() - start, Duration::from_millis(40));
    }
}
