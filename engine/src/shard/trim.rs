//! Giving freed heap memory back to the OS after a flood of connections.
//!
//! glibc's `malloc` keeps what a closed connection freed for reuse: the
//! top of each arena is returned once it is free, but the pages of chunks
//! freed in the middle (most of them, after thousands of connections
//! allocated side by side) stay resident. A server that survived a flood
//! would keep the flood's footprint. `malloc_trim(0)` releases every whole
//! free page of every arena (`madvise(MADV_DONTNEED)`), including the
//! per-thread arenas glibc gives each shard, so one call serves all shards.
//!
//! When: a shard asks for a trim once its connection count has fallen to
//! half of its highest value since its last trim, and by at least
//! [`TRIM_MIN_DROP`](crate::state::TRIM_MIN_DROP) connections ([`trim_due`](crate::state::trim_due)). The request is one flag
//! and a wake-up, on the close path; the trim runs in a task of its own,
//! at most once per [`TRIM_INTERVAL`] in the whole process (another
//! shard's trim also delays this one, since each trim covers every arena).
//! A steady connection count never asks; a benchmark's connection churn
//! below [`TRIM_MIN_DROP`](crate::state::TRIM_MIN_DROP) never asks.
//!
//! The allocator itself stays glibc's (a decaying allocator such as
//! jemalloc is a separate, measured decision). Without glibc (musl), no
//! trim happens and the counter stays at 0.

use crate::state::ShardState;
#[cfg(test)]
use crate::state::{trim_due, TRIM_MIN_DROP};
use std::rc::Rc;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Shortest time between two trims in the process.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// When the last trim of the process ran (all shards share the allocator).
static LAST_TRIM: Mutex<Option<Instant>> = Mutex::new(None);

/// Takes the process's trim slot at `now`, or says how long to wait for it.
fn claim(last: &mut Option<Instant>, now: Instant) -> Result<(), Duration> {
    match *last {
        Some(t) if now < t + TRIM_INTERVAL => Err(t + TRIM_INTERVAL - now),
        _ => {
            *last = Some(now);
            Ok(())
        }
    }
}

/// The shard's trim task: waits for a request, then for the process's
/// slot, then trims if the drop that asked is still there.
pub(crate) async fn run(state: Rc<ShardState>) {
    loop {
        state.trim_requested().await;
        if !wait_for_slot(&state).await {
            // New connections came meanwhile: the next fall asks again.
            continue;
        }
        let (before, started) = (resident_bytes(), Instant::now());
        if !malloc_trim() {
            state.trim_done(false);
            continue;
        }
        let took = started.elapsed();
        state.trim_done(true);
        let after = resident_bytes();
        let returned = before.saturating_sub(after);
        const MIB: u64 = 1 << 20;
        if returned >= MIB {
            tracing::info!(
                shard = state.id,
                returned_mib = returned / MIB,
                rss_mib = after / MIB,
                connections = state.active(),
                took_us = took.as_micros() as u64,
                "returned freed memory to the OS"
            );
        } else {
            tracing::debug!(
                shard = state.id,
                returned_kib = returned / 1024,
                took_us = took.as_micros() as u64,
                "memory trim"
            );
        }
    }
}

/// Waits for the process's trim slot and takes it; false (slot not taken)
/// once the fall that asked for the trim is gone.
async fn wait_for_slot(state: &ShardState) -> bool {
    loop {
        if !state.trim_still_due() {
            return false;
        }
        let slot = claim(
            &mut LAST_TRIM.lock().unwrap_or_else(PoisonError::into_inner),
            Instant::now(),
        );
        match slot {
            Ok(()) => return true,
            Err(wait) => crate::io::time::sleep(wait).await,
        }
    }
}

/// `malloc_trim(0)`; false where the allocator has none.
fn malloc_trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes the allocator's own locks and only
        // releases pages no allocation uses; any thread may call it.
        unsafe { libc::malloc_trim(0) };
        true
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The process's resident set, bytes (0 if /proc cannot be read).
fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trim_is_due_after_a_large_fall_only() {
        assert!(trim_due(3000, 1500));
        assert!(trim_due(3000, 0));
        assert!(!trim_due(3000, 1501), "not yet half");
        assert!(trim_due(TRIM_MIN_DROP, 0));
        assert!(!trim_due(TRIM_MIN_DROP - 1, 0), "too few to matter");
        assert!(!trim_due(200, 100), "half, but only 100 fewer");
        assert!(!trim_due(0, 0));
    }

    #[test]
    fn trims_are_one_interval_apart_in_the_process() {
        let t0 = Instant::now();
        let mut last = None;
        assert_eq!(claim(&mut last, t0), Ok(()));
        let half = TRIM_INTERVAL / 2;
        assert_eq!(claim(&mut last, t0 + half), Err(TRIM_INTERVAL - half));
        assert_eq!(claim(&mut last, t0 + TRIM_INTERVAL), Ok(()));
        assert_eq!(last, Some(t0 + TRIM_INTERVAL));
    }

    #[test]
    fn resident_set_is_read() {
        assert!(resident_bytes() > 0);
    }
}
