//! Reload outcomes, process-wide (`uringtls_reloads_total{result}`): a
//! reload runs on the control thread, not on a shard, so these are two
//! atomics rather than per-shard cells.

use std::sync::atomic::{AtomicU64, Ordering};

static APPLIED: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Counts a reload (SIGHUP or a watched file's change) applied or refused.
pub fn note(applied: bool) {
    let c = if applied { &APPLIED } else { &REFUSED };
    c.fetch_add(1, Ordering::Relaxed);
}

/// (applied, refused) so far.
pub fn counts() -> (u64, u64) {
    (
        APPLIED.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
    )
}
