//! What a shard shares with its connections: connection count, drain flag,
//! handshakes in progress, the memory-trim trigger, and the shard's
//! counters and metrics. Lives in an `Rc` on its shard's thread; no
//! atomics, no locks.
//!
//! A layer of its own, below `services` (whose `ConnInfo` holds one) and
//! beside `metrics` (which it holds; `metrics` reads it only through
//! [`ShardCounts`](crate::metrics::ShardCounts)); `shard` drives it.

pub(crate) mod handshakes;

pub use crate::metrics::Counters;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use tokio::sync::Notify;

/// The state one shard shares with its connections.
#[derive(Debug)]
pub struct ShardState {
    /// Shard index.
    pub id: usize,
    /// Counters.
    pub counters: Counters,
    /// Metrics beyond the counters (closed/refused by reason, histogram, bytes...).
    pub metrics: crate::metrics::ShardMetrics,
    active: Cell<usize>,
    draining: Cell<bool>,
    drain: Notify,
    /// Connections waiting idle for their next request, to wake at the
    /// drain: one slot per connection, kept across its waits (see
    /// [`poll_drain`](Self::poll_drain)).
    drain_wakers: RefCell<Vec<Option<Waker>>>,
    drain_free: RefCell<Vec<usize>>,
    idle: Notify,
    /// Highest `active` since the last memory trim (see [`trim_due`]).
    trim_peak: Cell<usize>,
    /// A trim was asked for and has not run yet.
    trim_asked: Cell<bool>,
    trim: Notify,
    /// The I/O backend the shard runs on (`uring`, `tokio-uring`, `epoll`).
    pub io_backend: Cell<&'static str>,
    /// Handshakes in progress (admitted, handshake not ended yet).
    pub(crate) hs: handshakes::Handshakes,
}

/// Fewest connections a shard's count must have fallen by, since its last
/// trim, before it asks for one: smaller drops free too little to matter
/// (an idle TLS connection holds ~8 KiB) and would make connection churn
/// pay for trims (see `shard/trim.rs`).
pub const TRIM_MIN_DROP: usize = 128;

/// Whether a shard whose connection count peaked at `peak` since its last
/// trim, and is `active` now, should ask for a trim.
pub fn trim_due(peak: usize, active: usize) -> bool {
    active <= peak / 2 && peak - active >= TRIM_MIN_DROP
}

impl ShardState {
    /// What the metrics read of this shard (see
    /// [`ShardSnapshot::take`](crate::metrics::ShardSnapshot::take)).
    pub fn counts(&self) -> crate::metrics::ShardCounts<'_> {
        crate::metrics::ShardCounts {
            id: self.id,
            active: self.active(),
            handshakes: self.handshakes(),
            io_backend: self.io_backend.get(),
            counters: &self.counters,
            metrics: &self.metrics,
        }
    }

    /// Fresh state for shard `id`.
    pub fn new(id: usize) -> ShardState {
        ShardState {
            id,
            counters: Counters::default(),
            metrics: crate::metrics::ShardMetrics::default(),
            active: Cell::new(0),
            draining: Cell::new(false),
            drain: Notify::new(),
            drain_wakers: RefCell::new(Vec::new()),
            drain_free: RefCell::new(Vec::new()),
            idle: Notify::new(),
            trim_peak: Cell::new(0),
            trim_asked: Cell::new(false),
            trim: Notify::new(),
            io_backend: Cell::new("uring"),
            hs: handshakes::Handshakes::default(),
        }
    }

    /// Live connections on this shard.
    pub fn active(&self) -> usize {
        self.active.get()
    }

    pub(crate) fn conn_opened(&self) {
        let n = self.active.get() + 1;
        self.active.set(n);
        if n > self.trim_peak.get() {
            self.trim_peak.set(n);
        }
    }

    pub(crate) fn conn_closed(&self) {
        let n = self.active.get().saturating_sub(1);
        self.active.set(n);
        if n == 0 {
            self.idle.notify_waiters();
        }
        if !self.trim_asked.get() && trim_due(self.trim_peak.get(), n) {
            self.trim_asked.set(true);
            self.trim.notify_one();
        }
    }

    /// Completes once a memory trim is asked for.
    pub(crate) async fn trim_requested(&self) {
        self.trim.notified().await
    }

    /// Whether the fall that asked for a trim is still there.
    pub(crate) fn trim_still_due(&self) -> bool {
        let due = trim_due(self.trim_peak.get(), self.active.get());
        if !due {
            self.trim_asked.set(false);
        }
        due
    }

    /// A trim ran (`trimmed`), or could not (no allocator support): the
    /// next one is measured from the count now.
    pub(crate) fn trim_done(&self, trimmed: bool) {
        self.trim_peak.set(self.active.get());
        self.trim_asked.set(false);
        if trimmed {
            Counters::bump(&self.counters.memory_trims);
        }
    }

    /// Handshakes in progress on this shard.
    pub fn handshakes(&self) -> usize {
        self.hs.count()
    }

    /// Counts a handshake in progress until the slot is dropped.
    pub(crate) fn handshake_started(self: &Rc<Self>) -> HandshakeSlot {
        let entry = self.hs.start(std::time::Instant::now());
        HandshakeSlot(self.clone(), entry)
    }

    /// Whether the shard is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Starts the drain: idle connections are told to close.
    pub(crate) fn start_drain(&self) {
        self.draining.set(true);
        self.drain.notify_waiters();
        for w in self.drain_wakers.borrow_mut().iter_mut() {
            if let Some(w) = w.take() {
                w.wake();
            }
        }
    }

    /// Ready once draining has started; otherwise `cx` is woken when it
    /// does. `slot` is the caller's registration, kept between calls so
    /// that waiting again with the same waker registers nothing (unlike a
    /// `Notify` waiter per wait); give it back with
    /// [`leave_drain`](Self::leave_drain).
    pub(crate) fn poll_drain(&self, slot: &Cell<Option<usize>>, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_draining() {
            return Poll::Ready(());
        }
        let mut wakers = self.drain_wakers.borrow_mut();
        let i = match slot.get() {
            Some(i) => i,
            None => {
                let i = self.drain_free.borrow_mut().pop().unwrap_or_else(|| {
                    wakers.push(None);
                    wakers.len() - 1
                });
                slot.set(Some(i));
                i
            }
        };
        match &mut wakers[i] {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Gives back a registration of [`poll_drain`](Self::poll_drain).
    pub(crate) fn leave_drain(&self, slot: &Cell<Option<usize>>) {
        if let Some(i) = slot.take() {
            if let Some(w) = self.drain_wakers.borrow_mut().get_mut(i) {
                *w = None;
            }
            self.drain_free.borrow_mut().push(i);
        }
    }

    /// Completes once draining starts.
    pub async fn drained(&self) {
        let wait = self.drain.notified();
        if self.is_draining() {
            return;
        }
        wait.await
    }

    /// Completes once no connection is left.
    pub async fn all_closed(&self) {
        loop {
            let wait = self.idle.notified();
            if self.active.get() == 0 {
                return;
            }
            wait.await;
        }
    }
}

/// One handshake in progress (see [`ShardState::handshake_started`]); the
/// count drops, and a paused accept loop wakes, when it is dropped.
#[derive(Debug)]
pub(crate) struct HandshakeSlot(Rc<ShardState>, Rc<handshakes::Entry>);

impl HandshakeSlot {
    /// Completes once the budget cuts this handshake off to make room.
    pub(crate) async fn evicted(&self) {
        self.1.evicted().await
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.hs.end(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_fall_in_connections_asks_for_one_trim() {
        let st = ShardState::new(0);
        (0..300).for_each(|_| st.conn_opened());
        (0..149).for_each(|_| st.conn_closed());
        assert!(!st.trim_asked.get(), "151 open: not yet half of 300");
        st.conn_closed();
        assert!(st.trim_asked.get(), "150 open: half of the peak, 150 fewer");
        assert!(st.trim_still_due());
        st.trim_done(true);
        assert_eq!(st.counters.memory_trims.get(), 1);
        (0..100).for_each(|_| st.conn_closed());
        assert!(!st.trim_asked.get(), "100 fewer than at the trim: too few");
        (0..50).for_each(|_| st.conn_closed());
        assert!(st.trim_asked.get(), "all 150 closed since the trim");
    }

    #[test]
    fn a_trim_asked_for_is_dropped_when_connections_come_back() {
        let st = ShardState::new(0);
        (0..300).for_each(|_| st.conn_opened());
        (0..300).for_each(|_| st.conn_closed());
        (0..200).for_each(|_| st.conn_opened());
        assert!(!st.trim_still_due());
        assert!(!st.trim_asked.get(), "the next fall asks again");
    }

    #[test]
    fn handshakes_are_counted_until_their_slot_is_dropped() {
        let st = Rc::new(ShardState::new(0));
        let a = st.handshake_started();
        let b = st.handshake_started();
        assert_eq!(st.handshakes(), 2);
        drop(a);
        assert_eq!(st.handshakes(), 1);
        drop(b);
        assert_eq!(st.handshakes(), 0);
    }
}
