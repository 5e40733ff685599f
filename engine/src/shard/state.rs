//! Per-shard state: connection count, drain flag and counters. Lives in an
//! `Rc` on its shard's thread; no atomics, no locks.

use std::cell::{Cell, RefCell};
use std::task::{Context, Poll, Waker};
use tokio::sync::Notify;

/// Counters of one shard (plain cells: only the shard's thread touches them).
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted.
    pub accepted: Cell<u64>,
    /// Connections refused by the per-shard cap.
    pub refused: Cell<u64>,
    /// Full handshakes completed.
    pub full_handshakes: Cell<u64>,
    /// Resumed handshakes completed.
    pub resumed_handshakes: Cell<u64>,
    /// Handshakes that failed (bad peer, alert, reset).
    pub failed_handshakes: Cell<u64>,
    /// Handshakes cut off by the handshake timeout.
    pub handshake_timeouts: Cell<u64>,
    /// Service panics contained to their connection.
    pub panics: Cell<u64>,
    /// proxy: connections handed to an upstream.
    pub proxied: Cell<u64>,
    /// proxy: connections closed because no upstream could be reached.
    pub upstream_failures: Cell<u64>,
}

impl Counters {
    /// Adds one to `c`.
    pub fn bump(c: &Cell<u64>) {
        c.set(c.get() + 1);
    }
}

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
}

impl ShardState {
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
        }
    }

    /// Live connections on this shard.
    pub fn active(&self) -> usize {
        self.active.get()
    }

    pub(crate) fn conn_opened(&self) {
        self.active.set(self.active.get() + 1);
    }

    pub(crate) fn conn_closed(&self) {
        let n = self.active.get().saturating_sub(1);
        self.active.set(n);
        if n == 0 {
            self.idle.notify_waiters();
        }
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
