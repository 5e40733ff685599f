//! Timers: a sorted map of (instant, sequence) → waker in the driver,
//! fired once per loop turn against the loop's clock; [`Sleep`] (one
//! deadline) and [`LazyTimer`] (a deadline that moves, re-armed lazily).

use super::{driver, Driver, CURRENT};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

impl Driver {
    /// Wakes due timers; returns the time until the next one.
    pub(super) fn fire_timers(&self) -> Option<Duration> {
        let now = Instant::now();
        self.now.set(now);
        let mut timers = self.timers.borrow_mut();
        if timers.is_empty() {
            return None;
        }
        while let Some(entry) = timers.first_entry() {
            if entry.key().0 > now {
                return Some(entry.key().0 - now);
            }
            if let Some(s) = &self.stats {
                s.borrow_mut().timer_late_us.add_us(now - entry.key().0);
            }
            entry.remove().wake();
        }
        None
    }

    fn register_timer(&self, at: Instant, waker: &Waker) -> u64 {
        #[cfg(any(test, feature = "test-hooks"))]
        self.timer_registrations
            .set(self.timer_registrations.get() + 1);
        let seq = self.timer_seq.get().wrapping_add(1);
        self.timer_seq.set(seq);
        self.timers.borrow_mut().insert((at, seq), waker.clone());
        seq
    }

    fn update_timer(&self, at: Instant, seq: u64, waker: &Waker) -> bool {
        match self.timers.borrow_mut().get_mut(&(at, seq)) {
            Some(w) => {
                if !w.will_wake(waker) {
                    *w = waker.clone();
                }
                true
            }
            None => false,
        }
    }

    fn cancel_timer(&self, at: Instant, seq: u64) {
        self.timers.borrow_mut().remove(&(at, seq));
    }
}

/// A timer on the current thread's runtime.
pub(crate) struct Sleep {
    deadline: Instant,
    seq: Option<u64>,
}

impl Sleep {
    pub(crate) fn until(deadline: Instant) -> Sleep {
        Sleep {
            deadline,
            seq: None,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    pub(crate) fn reset(&mut self, deadline: Instant) {
        if let Some(seq) = self.seq.take() {
            driver().cancel_timer(self.deadline, seq);
        }
        self.deadline = deadline;
    }

    pub(crate) fn poll_sleep(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let d = driver();
        if d.now.get() >= self.deadline {
            if let Some(seq) = self.seq.take() {
                d.cancel_timer(self.deadline, seq);
            }
            return Poll::Ready(());
        }
        match self.seq {
            Some(seq) if d.update_timer(self.deadline, seq, cx.waker()) => {}
            _ => self.seq = Some(d.register_timer(self.deadline, cx.waker())),
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(seq) = self.seq.take() {
            if let Some(d) = CURRENT.with(|c| c.borrow().clone()) {
                d.cancel_timer(self.deadline, seq);
            }
        }
    }
}

/// A timer kept for many waits, each with its own deadline (a connection's
/// read or write deadline): moving the deadline later touches nothing, so a
/// keep-alive connection does not insert and remove a timer per request.
/// Its registration stays at the earliest deadline asked for; when that
/// fires before the deadline in force, the waiting task is polled once and
/// the timer registers again at the later instant.
pub(crate) struct LazyTimer {
    /// The registered entry `(instant, seq)` and the waker it holds, while
    /// it has not fired (an entry whose instant the loop clock has passed
    /// has fired: `fire_timers` removes those before the clock moves on).
    reg: Option<(Instant, u64, Waker)>,
}

impl LazyTimer {
    pub(crate) const fn new() -> LazyTimer {
        LazyTimer { reg: None }
    }

    /// Ready once the loop clock has reached `at`; otherwise `cx` is woken
    /// no later than `at` (possibly earlier: poll again).
    pub(crate) fn poll_at(&mut self, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let d = driver();
        let now = d.now.get();
        if now >= at {
            if let Some((k, seq, _)) = self.reg.take() {
                if k > now {
                    d.cancel_timer(k, seq);
                }
            }
            return Poll::Ready(());
        }
        if let Some((k, seq, w)) = &mut self.reg {
            if *k > now {
                if *k <= at {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                        d.update_timer(*k, *seq, w);
                    }
                    return Poll::Pending;
                }
                // Registered later than now needed: move it earlier.
                d.cancel_timer(*k, *seq);
            }
        }
        let w = cx.waker().clone();
        let seq = d.register_timer(at, &w);
        self.reg = Some((at, seq, w));
        Poll::Pending
    }
}

impl Drop for LazyTimer {
    fn drop(&mut self) {
        if let Some((k, seq, _)) = self.reg.take() {
            if let Some(d) = CURRENT.with(|c| c.borrow().clone()) {
                if k > d.now.get() {
                    d.cancel_timer(k, seq);
                }
            }
        }
    }
}
