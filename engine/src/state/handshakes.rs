//! Handshakes in progress on one shard, for the budget `max_handshakes`.
//!
//! A handshake is counted from admission to its end (done, failed, timed
//! out). With the budget full the accept loop does not accept, so new
//! connections wait in the kernel's backlog, unread; except that once the
//! oldest handshake has been in progress for a tenth of the handshake
//! timeout ([`stale_after`]) the loop accepts again, and each connection
//! it accepts while the budget is full cuts off the oldest stale one. A genuine
//! client finishes in a round trip or two; one that stalls (a ClientHello
//! cut short, one byte a second) would otherwise hold its slot, and so
//! block every new client, for the whole handshake timeout.
//!
//! Times are passed in (`now`), so the tests move the clock.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How long a handshake may be in progress before, with the budget full,
/// it is cut off to make room: a tenth of the handshake timeout.
pub fn stale_after(handshake_timeout: Duration) -> Duration {
    handshake_timeout / 10
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Ended,
    Evicted,
}

/// One handshake in progress.
#[derive(Debug)]
pub(crate) struct Entry {
    started: Instant,
    phase: Cell<Phase>,
    evict: Notify,
}

impl Entry {
    /// Completes once the handshake is cut off to make room.
    pub(crate) async fn evicted(&self) {
        loop {
            let wait = self.evict.notified();
            if self.phase.get() == Phase::Evicted {
                return;
            }
            wait.await;
        }
    }
}

/// The handshakes in progress of one shard, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Handshakes {
    running: Cell<usize>,
    /// Started handshakes, oldest first; ended ones are dropped lazily.
    order: RefCell<VecDeque<Rc<Entry>>>,
    /// The accept loop waits for room.
    waiter: Cell<bool>,
    ended: Notify,
}

impl Handshakes {
    /// Handshakes in progress.
    pub(crate) fn count(&self) -> usize {
        self.running.get()
    }

    /// Counts a new handshake, started at `now`.
    pub(crate) fn start(&self, now: Instant) -> Rc<Entry> {
        let e = Rc::new(Entry {
            started: now,
            phase: Cell::new(Phase::Running),
            evict: Notify::new(),
        });
        self.running.set(self.running.get() + 1);
        let mut order = self.order.borrow_mut();
        order.push_back(e.clone());
        // Ended entries behind a long-running one accumulate: drop them
        // once they are half the queue (amortised O(1) per start).
        if order.len() > 2 * self.running.get() + 64 {
            order.retain(|e| e.phase.get() == Phase::Running);
        }
        e
    }

    /// The handshake of `e` ended (unless it was cut off already).
    pub(crate) fn end(&self, e: &Entry) {
        if e.phase.get() == Phase::Running {
            e.phase.set(Phase::Ended);
            self.running.set(self.running.get().saturating_sub(1));
        }
        if self.waiter.get() {
            self.ended.notify_waiters();
        }
    }

    /// When the oldest handshake in progress will have been in progress
    /// for `stale` (`None`: none in progress).
    pub(crate) fn stale_at(&self, stale: Duration) -> Option<Instant> {
        let mut order = self.order.borrow_mut();
        while order
            .front()
            .is_some_and(|e| e.phase.get() != Phase::Running)
        {
            order.pop_front();
        }
        order.front().map(|e| e.started + stale)
    }

    /// Cuts off the oldest handshake if it has been in progress for at
    /// least `stale` at `now`. `Err(when)`: none is that old; `when` is
    /// when the oldest will be (`None`: none in progress).
    pub(crate) fn evict_stale(&self, now: Instant, stale: Duration) -> Result<(), Option<Instant>> {
        let mut order = self.order.borrow_mut();
        while let Some(e) = order.front() {
            if e.phase.get() != Phase::Running {
                order.pop_front();
                continue;
            }
            let at = e.started + stale;
            if now < at {
                return Err(Some(at));
            }
            e.phase.set(Phase::Evicted);
            e.evict.notify_one();
            order.pop_front();
            self.running.set(self.running.get().saturating_sub(1));
            return Ok(());
        }
        Err(None)
    }

    /// Completes once fewer than `max` handshakes are in progress.
    pub(crate) async fn room(&self, max: usize) {
        loop {
            let wait = self.ended.notified();
            if self.running.get() < max {
                self.waiter.set(false);
                return;
            }
            self.waiter.set(true);
            wait.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: Duration = Duration::from_secs(1);

    #[test]
    fn handshakes_are_counted_until_they_end() {
        let h = Handshakes::default();
        let t0 = Instant::now();
        let a = h.start(t0);
        let b = h.start(t0);
        assert_eq!(h.count(), 2);
        h.end(&a);
        h.end(&a);
        assert_eq!(h.count(), 1, "ending twice counts once");
        h.end(&b);
        assert_eq!(h.count(), 0);
    }

    #[test]
    fn only_a_handshake_older_than_the_stale_age_is_cut_off_oldest_first() {
        let h = Handshakes::default();
        let t0 = Instant::now();
        let old = h.start(t0);
        let young = h.start(t0 + STALE / 2);
        assert_eq!(h.stale_at(STALE), Some(t0 + STALE));
        assert_eq!(h.evict_stale(t0 + STALE / 2, STALE), Err(Some(t0 + STALE)));
        assert_eq!(h.evict_stale(t0 + STALE, STALE), Ok(()));
        assert_eq!(old.phase.get(), Phase::Evicted);
        assert_eq!(h.count(), 1);
        h.end(&old);
        assert_eq!(h.count(), 1, "the cut-off one was already uncounted");
        assert_eq!(
            h.evict_stale(t0 + STALE, STALE),
            Err(Some(t0 + STALE / 2 + STALE)),
            "the next is still young"
        );
        h.end(&young);
        assert_eq!(h.evict_stale(t0 + STALE * 9, STALE), Err(None));
        assert_eq!(h.stale_at(STALE), None);
    }

    #[test]
    fn ended_handshakes_do_not_pile_up_behind_a_long_one() {
        let h = Handshakes::default();
        let t0 = Instant::now();
        let _long = h.start(t0);
        for _ in 0..10_000 {
            let e = h.start(t0);
            h.end(&e);
        }
        assert!(
            h.order.borrow().len() <= 2 + 64,
            "{}",
            h.order.borrow().len()
        );
    }

    #[test]
    fn the_stale_age_is_a_tenth_of_the_handshake_timeout() {
        assert_eq!(stale_after(Duration::from_secs(10)), Duration::from_secs(1));
    }
}
