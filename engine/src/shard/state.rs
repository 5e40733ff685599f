//! Per-shard state: connection count, drain flag and counters. Lives in an
//! `Rc` on its shard's thread; no atomics, no locks.

use std::cell::Cell;
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
