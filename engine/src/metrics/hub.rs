//! Scrape requests to the shards.
//!
//! Each shard registers at start and runs a small task that answers
//! requests with a [`ShardSnapshot`] taken on its own thread. A scrape asks
//! all shards at once and waits for the answers (bounded); a shard that does
//! not answer in time, or has stopped, is reported with its last answer, so
//! counters never go backwards.

use super::ShardSnapshot;
use prometheus_client::collector::Collector;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc as tmpsc;

type Request = mpsc::SyncSender<ShardSnapshot>;

/// How long a scrape waits for the shards, in total.
pub const SCRAPE_WAIT: Duration = Duration::from_secs(2);

/// The scrape side: one slot per shard.
#[derive(Debug, Default)]
pub struct MetricsHub {
    slots: Mutex<Vec<Slot>>,
    /// Process-wide families rendered after the shards' (ACME's).
    extra: Mutex<Vec<Extra>>,
}

/// Makes a process-wide collector for one scrape.
struct Extra(Box<dyn Fn() -> Box<dyn Collector> + Send + Sync>);

impl std::fmt::Debug for Extra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Extra")
    }
}

#[derive(Debug, Default)]
struct Slot {
    tx: Option<tmpsc::UnboundedSender<Request>>,
    last: Option<ShardSnapshot>,
}

/// The shard side: requests to answer.
#[derive(Debug)]
pub struct ScrapeRequests(tmpsc::UnboundedReceiver<Request>);

impl MetricsHub {
    /// Registers shard `id`; the shard must run [`ScrapeRequests::serve`].
    pub fn register(&self, id: usize) -> ScrapeRequests {
        let (tx, rx) = tmpsc::unbounded_channel();
        let mut slots = self.lock();
        if slots.len() <= id {
            slots.resize_with(id + 1, Slot::default);
        }
        slots[id].tx = Some(tx);
        ScrapeRequests(rx)
    }

    /// Adds process-wide families, rendered on every scrape.
    pub fn add_collector<C: Collector>(&self, c: Arc<C>) {
        self.extra
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Extra(Box::new(move || Box::new(c.clone()))));
    }

    /// The process-wide families, for one scrape.
    pub fn extra(&self) -> Vec<Box<dyn Collector>> {
        let list = self.extra.lock().unwrap_or_else(|p| p.into_inner());
        list.iter().map(|f| (f.0)()).collect()
    }

    /// Records a shard's final counters (called when it stops).
    pub fn publish(&self, snap: ShardSnapshot) {
        let mut slots = self.lock();
        if let Some(s) = slots.get_mut(snap.shard) {
            s.tx = None;
            s.last = Some(snap);
        }
    }

    /// Asks every shard for its counters; waits at most `wait` in total.
    pub fn scrape(&self, wait: Duration) -> Vec<ShardSnapshot> {
        let pending: Vec<(usize, Option<mpsc::Receiver<ShardSnapshot>>)> = self
            .lock()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let rx = s.tx.as_ref().and_then(|tx| {
                    let (reply, rx) = mpsc::sync_channel(1);
                    tx.send(reply).ok().map(|_| rx)
                });
                (i, rx)
            })
            .collect();
        let deadline = Instant::now() + wait;
        let mut fresh = Vec::with_capacity(pending.len());
        for (i, rx) in pending {
            let left = deadline.saturating_duration_since(Instant::now());
            fresh.push((i, rx.and_then(|rx| rx.recv_timeout(left).ok())));
        }
        let mut slots = self.lock();
        fresh
            .into_iter()
            .filter_map(|(i, snap)| {
                let slot = slots.get_mut(i)?;
                if let Some(s) = snap {
                    slot.last = Some(s);
                }
                slot.last.clone()
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        // A panic while holding this lock leaves plain data; keep going.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ScrapeRequests {
    /// Answers scrape requests until the hub is gone (run as a shard task).
    /// `snapshot` reads the shard's counts (see [`ShardSnapshot::take`]).
    pub async fn serve(mut self, snapshot: impl Fn() -> ShardSnapshot) {
        while let Some(reply) = self.0.recv().await {
            let _ = reply.send(snapshot());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_shards_report_their_final_counters() {
        let hub = MetricsHub::default();
        let _req = hub.register(0);
        hub.publish(crate::metrics::test_snapshot(0, 7));
        let got = hub.scrape(Duration::from_millis(10));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].accepted, 7);
    }

    #[test]
    fn a_shard_that_does_not_answer_is_skipped_until_it_has_answered_once() {
        let hub = MetricsHub::default();
        let _req = hub.register(1);
        assert!(hub.scrape(Duration::from_millis(10)).is_empty());
    }
}
