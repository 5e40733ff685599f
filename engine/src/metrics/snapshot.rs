//! The copy of a shard's counters handed to a scrape (`Send`, owned).

use super::{CloseReason, ShardCounts, ShardMetrics, HANDSHAKE_BUCKETS};
use crate::limits::Refusal;
use std::time::Duration;

/// One shard's counters at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShardSnapshot {
    /// Shard index.
    pub shard: usize,
    /// CPU time (user + system) of the shard's thread, seconds.
    pub cpu_seconds: f64,
    /// Connections accepted (admitted or refused).
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Admitted connections ended, by reason.
    pub closed: Vec<(&'static str, u64)>,
    /// Connections refused at accept, by limit.
    pub refused: Vec<(&'static str, u64)>,
    /// Full handshakes completed.
    pub full_handshakes: u64,
    /// Resumed handshakes completed.
    pub resumed_handshakes: u64,
    /// Failed handshakes by reason (timeouts are `timeout`).
    pub failed_handshakes: Vec<(String, u64)>,
    /// Handshake-duration histogram: (upper bound, count in this bucket).
    pub handshake_buckets: Vec<(f64, u64)>,
    /// Sum of handshake durations, seconds.
    pub handshake_seconds_sum: f64,
    /// Ciphertext bytes received.
    pub bytes_in: u64,
    /// Ciphertext bytes sent.
    pub bytes_out: u64,
    /// Completed handshakes by (TLS version, cipher suite).
    pub sessions: Vec<(String, String, u64)>,
    /// Upstream (proxy backend) errors by kind.
    pub upstream_errors: Vec<(&'static str, u64)>,
    /// Connections the proxy service handed to an upstream.
    pub proxied: u64,
    /// Times accept paused for lack of file descriptors.
    pub fd_exhaustion_episodes: u64,
    /// Service panics contained to their connection.
    pub panics: u64,
    /// Session-cache and ticket counts of this shard's thread.
    pub tls: super::tls_counts::TlsCounts,
    /// Times freed memory was returned to the OS (`malloc_trim`).
    pub memory_trims: u64,
    /// Handshakes in progress now.
    pub handshakes_in_progress: u64,
    /// The I/O backend the shard runs on (`uring`, `tokio-uring`, `epoll`).
    pub io_backend: &'static str,
    /// Times accept paused for the handshake budget (`max_handshakes`).
    pub handshake_budget_pauses: u64,
    /// Stale handshakes cut off to make room within the budget.
    pub handshake_evictions: u64,
    /// Connections accepted per listener: (name, address, count).
    pub listeners: Vec<(String, String, u64)>,
}

impl ShardSnapshot {
    /// Reads a shard's counts on its own shard's thread (the CPU time is
    /// the calling thread's).
    pub fn take(state: ShardCounts<'_>) -> ShardSnapshot {
        let c = state.counters;
        let m: &ShardMetrics = state.metrics;
        let mut failed: Vec<(String, u64)> = m.failed_by.borrow().clone();
        let timeouts = c.handshake_timeouts.get();
        if timeouts > 0 {
            failed.push(("timeout".into(), timeouts));
        }
        let bounds = HANDSHAKE_BUCKETS.iter().copied().chain([f64::INFINITY]);
        ShardSnapshot {
            shard: state.id,
            cpu_seconds: thread_cpu_time().as_secs_f64(),
            accepted: c.accepted.get(),
            active: state.active as u64,
            closed: CloseReason::ALL
                .iter()
                .map(|r| (r.label(), m.closed[*r as usize].get()))
                .collect(),
            refused: Refusal::ALL
                .iter()
                .map(|r| (r.label(), m.refused[r.index()].get()))
                .collect(),
            full_handshakes: c.full_handshakes.get(),
            resumed_handshakes: c.resumed_handshakes.get(),
            failed_handshakes: failed,
            handshake_buckets: bounds.zip(m.hs_buckets.iter().map(|b| b.get())).collect(),
            handshake_seconds_sum: m.hs_sum.get(),
            bytes_in: m.bytes_in.get(),
            bytes_out: m.bytes_out.get(),
            sessions: m
                .sessions
                .borrow()
                .iter()
                .map(|((v, s), n)| (super::names::version(*v), super::names::suite(*s), *n))
                .collect(),
            upstream_errors: {
                // The proxy's own counter: no upstream reachable, or it
                // closed before the PROXY header went out.
                let mut v = vec![("unavailable", c.upstream_failures.get())];
                v.extend(m.upstream_errors.borrow().iter().copied());
                v
            },
            proxied: c.proxied.get(),
            fd_exhaustion_episodes: m.fd_exhaustion.get(),
            panics: c.panics.get(),
            tls: super::tls_counts::this_thread(),
            memory_trims: c.memory_trims.get(),
            handshakes_in_progress: state.handshakes as u64,
            io_backend: state.io_backend,
            handshake_budget_pauses: c.handshake_budget_pauses.get(),
            handshake_evictions: c.handshake_evictions.get(),
            listeners: m
                .listeners
                .borrow()
                .iter()
                .map(|(name, addr, n)| (name.clone(), addr.clone(), n.get()))
                .collect(),
        }
    }

    /// Handshakes counted by the histogram.
    pub fn handshake_count(&self) -> u64 {
        self.handshake_buckets.iter().map(|(_, n)| n).sum()
    }
}

/// CPU time (user + system) consumed by the calling thread so far.
pub fn thread_cpu_time() -> Duration {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; RUSAGE_THREAD only reads the
    // calling thread's accounting. It cannot fail with these arguments.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    if rc != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_grows_with_work_on_this_thread() {
        let before = thread_cpu_time();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        assert!(thread_cpu_time() > before);
    }

    #[test]
    fn a_fresh_shard_snapshot_has_every_label_at_zero() {
        let s = crate::metrics::test_snapshot(3, 0);
        assert_eq!(s.shard, 3);
        assert_eq!(s.closed.len(), CloseReason::ALL.len());
        assert!(s.refused.iter().all(|(_, n)| *n == 0));
        assert_eq!(s.handshake_buckets.last().map(|b| b.0), Some(f64::INFINITY));
        assert_eq!(s.handshake_count(), 0);
    }
}
