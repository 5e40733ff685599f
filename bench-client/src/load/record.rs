//! From one operation's timings to histogram samples, and the
//! coordinated-omission correction (see [`pacing`](super::pacing) for the
//! schedule and `docs/bench-client.md` for the method).

use crate::stats::errors::ErrorClass;
use crate::stats::{Metric, Recorder};
use crate::workloads::OpTimes;
use std::time::Instant;

/// The reference time for coordinated-omission correction. An operation
/// intended at `at` can start once the slot is free (`free_at`, its previous
/// reply is in); any further delay until `woke` is our own timer waking late
/// (tokio timers have 1 ms granularity), not the server's doing, so the
/// reference moves forward by that much. A slot held up by a slow reply
/// keeps `at` as its reference: that wait is exactly what the correction
/// must charge.
pub fn client_lag_removed(at: Instant, free_at: Instant, woke: Instant) -> Instant {
    at + woke.saturating_duration_since(at.max(free_at))
}

/// Turns one operation's timings into samples. In open loop, `Total` is
/// measured from the intended send time (corrected) and `Uncorrected` from
/// the actual one; in closed loop both would be equal, so only `Total` is kept.
pub fn record_op(r: &mut Recorder, t: &OpTimes, res: Result<(), ErrorClass>, open_loop: bool) {
    if let Some(d) = t.connect {
        r.record(Metric::Connect, d);
    }
    if let Some(d) = t.handshake {
        r.record(Metric::Handshake, d);
        r.connections += 1;
        if t.resumed == Some(true) {
            r.resumed_handshakes += 1;
        } else {
            r.full_handshakes += 1;
        }
    }
    if let Some(d) = t.ttfb {
        r.record(Metric::Ttfb, d);
    }
    for &done in &t.done {
        if open_loop {
            r.record(Metric::Total, done.saturating_duration_since(t.intended));
            r.record(Metric::Uncorrected, done.saturating_duration_since(t.start));
        } else {
            r.record(Metric::Total, done.saturating_duration_since(t.start));
        }
    }
    r.ops += t.done.len() as u64;
    r.bytes_in += t.bytes_in;
    r.bytes_out += t.bytes_out;
    r.cipher_in += t.cipher_in;
    r.cipher_out += t.cipher_out;
    if let Some(s) = t.bad_status {
        r.error(ErrorClass::BadStatus(s));
    }
    if let Err(e) = res {
        r.error(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::pacing::Pacer;
    use std::time::Duration;

    /// One slot at 1000 ops/s for 10 s against a server answering in 10 µs,
    /// except one 1 s stall at t = 5 s. The slot behaves exactly like the real
    /// loop: it sends at max(intended, previous reply).
    fn scripted_stall(open_loop: bool) -> Recorder {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, 1000.0, 0, 1);
        let mut rec = Recorder::new();
        let mut free_at = start;
        let mut stalled = false;
        for _ in 0..10_000 {
            let intended = pacer.next_intended();
            let send = intended.max(free_at);
            let service = if !stalled && send >= start + Duration::from_secs(5) {
                stalled = true;
                Duration::from_secs(1)
            } else {
                Duration::from_micros(10)
            };
            let done = send + service;
            let mut t = OpTimes::new(if open_loop { intended } else { send });
            t.start = send;
            t.done.push(done);
            record_op(&mut rec, &t, Ok(()), open_loop);
            free_at = done;
        }
        rec
    }

    fn ms(us: u64) -> f64 {
        us as f64 / 1000.0
    }

    #[test]
    fn a_scripted_stall_shows_in_corrected_percentiles_but_hides_in_uncorrected_ones() {
        let rec = scripted_stall(true);
        let corr = rec.hist(Metric::Total);
        let raw = rec.hist(Metric::Uncorrected);
        assert_eq!(corr.len(), 10_000);
        // ~1000 sends were due during the stall; their waits fall linearly
        // from 1 s (by 0.99 ms per send), so the 100th worst waited ~902 ms
        // and the 500th worst ~506 ms.
        let p99 = ms(corr.value_at_quantile(0.99));
        let p95 = ms(corr.value_at_quantile(0.95));
        let p90 = ms(corr.value_at_quantile(0.90));
        assert!((895.0..=910.0).contains(&p99), "corrected p99 {p99} ms");
        assert!((498.0..=512.0).contains(&p95), "corrected p95 {p95} ms");
        // The 1000th worst waited ~10 ms; the median never saw the stall.
        assert!((5.0..=15.0).contains(&p90), "corrected p90 {p90} ms");
        assert!(ms(corr.value_at_quantile(0.5)) < 0.1);
        assert!(
            (999.0..=1001.0).contains(&ms(corr.max())),
            "max {}",
            corr.max()
        );
        // Uncorrected: only the one request that hit the stall saw it.
        assert!(ms(raw.value_at_quantile(0.9999)) < 1.0);
        assert!((999.0..=1001.0).contains(&ms(raw.max())));
    }

    #[test]
    fn late_timer_wakeups_are_not_charged_but_waiting_for_a_reply_is() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Slot idle since t0, op due at 10 ms, timer fired at 10.8 ms: reference 10.8 ms.
        assert_eq!(
            client_lag_removed(t0 + ms(10), t0, t0 + Duration::from_micros(10_800)),
            t0 + Duration::from_micros(10_800)
        );
        // Previous reply came at 50 ms, op was due at 10 ms, sent at once: reference stays 10 ms.
        assert_eq!(
            client_lag_removed(t0 + ms(10), t0 + ms(50), t0 + ms(50)),
            t0 + ms(10)
        );
    }

    #[test]
    fn closed_loop_records_total_only() {
        let rec = scripted_stall(false);
        assert_eq!(rec.hist(Metric::Uncorrected).len(), 0);
        assert!(ms(rec.hist(Metric::Total).value_at_quantile(0.99)) < 1.0);
    }
}
