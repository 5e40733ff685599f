//! Session-cache and ticket counters, which rustls does not keep: thin
//! wrappers around the shared session store and ticketer.
//!
//! rustls calls the store and the ticketer from the handshake, that is on
//! the shard thread that owns the connection, so the counts go to
//! thread-local cells: no atomics, no shared cache line, and the shard's
//! scrape snapshot (taken on the same thread) reads its own share.
//!
//! Installed in `tls::server` (the store is wrapped; `TicketKeys` calls the
//! `note_*` helpers). Elsewhere, wrap once, where the store and ticketer are created (they are shared by
//! all shards and kept across reloads):
//!
//! ```ignore
//! cfg.session_storage = metrics::tls_counts::CountingStore::wrap(cache);
//! cfg.ticketer = metrics::tls_counts::CountingTicketer::wrap(ticketer);
//! ```
//!
//! or, inside an own `ProducesTickets` implementation, call
//! [`note_ticket_issued`] / [`note_ticket_decrypt`].

#[cfg(test)]
use rustls::server::ProducesTickets;
use rustls::server::StoresServerSessions;
use std::cell::Cell;
use std::sync::Arc;

/// This thread's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsCounts {
    /// Session-cache lookups that found a session (TLS 1.2 session IDs,
    /// TLS 1.3 stateful resumption).
    pub cache_hits: u64,
    /// Session-cache lookups that found nothing.
    pub cache_misses: u64,
    /// Tickets encrypted (sent to clients).
    pub tickets_issued: u64,
    /// Tickets a client presented that decrypted (resumption possible).
    pub tickets_accepted: u64,
    /// Tickets a client presented that did not decrypt (unknown or rotated-out key, garbage).
    pub tickets_rejected: u64,
}

thread_local! {
    static COUNTS: Cell<TlsCounts> = const { Cell::new(TlsCounts {
        cache_hits: 0, cache_misses: 0, tickets_issued: 0, tickets_accepted: 0, tickets_rejected: 0,
    }) };
}

fn count(f: impl FnOnce(&mut TlsCounts)) {
    COUNTS.with(|c| {
        let mut v = c.get();
        f(&mut v);
        c.set(v);
    });
}

/// Counts a ticket issued (for ticketers that are not wrapped).
pub fn note_ticket_issued() {
    count(|c| c.tickets_issued += 1);
}

/// Counts a presented ticket that did (`true`) or did not decrypt.
pub fn note_ticket_decrypt(ok: bool) {
    count(|c| match ok {
        true => c.tickets_accepted += 1,
        false => c.tickets_rejected += 1,
    });
}

/// The calling thread's counts so far.
pub fn this_thread() -> TlsCounts {
    COUNTS.with(Cell::get)
}

/// A session store that counts hits and misses.
#[derive(Debug)]
pub struct CountingStore(pub Arc<dyn StoresServerSessions>);

impl CountingStore {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn StoresServerSessions>) -> Arc<dyn StoresServerSessions> {
        Arc::new(CountingStore(inner))
    }

    fn tally(found: Option<Vec<u8>>) -> Option<Vec<u8>> {
        count(|c| match found {
            Some(_) => c.cache_hits += 1,
            None => c.cache_misses += 1,
        });
        found
    }
}

impl StoresServerSessions for CountingStore {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        Self::tally(self.0.get(key))
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        Self::tally(self.0.take(key))
    }

    fn can_cache(&self) -> bool {
        self.0.can_cache()
    }
}

/// A ticketer that counts tickets issued, accepted and rejected (the
/// engine's own ticketer counts itself; this wraps others, in tests).
#[cfg(test)]
#[derive(Debug)]
pub struct CountingTicketer(pub Arc<dyn ProducesTickets>);

#[cfg(test)]
impl CountingTicketer {
    /// Wraps `inner`.
    pub fn wrap(inner: Arc<dyn ProducesTickets>) -> Arc<dyn ProducesTickets> {
        Arc::new(CountingTicketer(inner))
    }
}

#[cfg(test)]
impl ProducesTickets for CountingTicketer {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let t = self.0.encrypt(plain);
        if t.is_some() {
            count(|c| c.tickets_issued += 1);
        }
        t
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let p = self.0.decrypt(cipher);
        count(|c| match p {
            Some(_) => c.tickets_accepted += 1,
            None => c.tickets_rejected += 1,
        });
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_ticketer_counts_land_on_the_calling_thread() {
        std::thread::spawn(|| {
            let store = CountingStore::wrap(rustls::server::ServerSessionMemoryCache::new(16));
            store.put(b"k".to_vec(), b"v".to_vec());
            assert!(store.get(b"k").is_some());
            assert!(store.get(b"nope").is_none());
            let t = CountingTicketer::wrap(
                rustls::crypto::aws_lc_rs::Ticketer::new().expect("ticketer"),
            );
            let ticket = t.encrypt(b"state").expect("ticket");
            assert!(t.decrypt(&ticket).is_some());
            assert!(t.decrypt(b"garbage").is_none());
            let c = this_thread();
            assert_eq!((c.cache_hits, c.cache_misses), (1, 1));
            assert_eq!(
                (c.tickets_issued, c.tickets_accepted, c.tickets_rejected),
                (1, 1, 1)
            );
        })
        .join()
        .expect("thread");
        assert_eq!(
            this_thread(),
            TlsCounts::default(),
            "other threads see none of it"
        );
    }
}
