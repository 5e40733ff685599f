//! Metrics: per-shard counting, merged on scrape, served as Prometheus text.
//!
//! ```text
//!  shard thread:  ShardMetrics (Cell/RefCell, touched only by this thread)
//!                   └─ scrape request (channel) → ShardSnapshot (+ getrusage(RUSAGE_THREAD))
//!  metrics thread: GET /metrics → ask every shard (hub) → encode (prometheus-client)
//! ```
//!
//! The hot path does plain, unsynchronised increments on its own shard's
//! cells: no locks, no atomics. A scrape sends each shard a request over a
//! channel; the shard answers from its own thread between two connection
//! events, which is also where its CPU time (`RUSAGE_THREAD`) can be read.
//!
//! - [`Counters`], [`ShardMetrics`]: what each shard counts; [`ShardCounts`]:
//!   a shard's counts as the snapshot reads them.
//! - [`snapshot`]: the `Send` copy a shard hands to a scrape.
//! - [`hub`]: scrape requests to the shards, last answers kept.
//! - [`export`]: the Prometheus families (names listed in `docs/operations.md`).
//! - [`server`]: the `/metrics` HTTP endpoint, a plain std thread.
//! - [`access`]: the optional one-line-per-connection access log.
//! - [`json_log`]: the JSON log line format (`null` for absent values).
//! - [`tls_counts`]: session-cache and ticket counters (wrappers rustls calls).
//! - [`reloads`]: reloads applied and refused (process-wide).

pub mod access;
pub mod export;
pub mod hub;
pub mod json_log;
pub(crate) mod names;
pub mod reloads;
pub mod server;
pub mod snapshot;
pub mod tls_counts;

pub use hub::MetricsHub;
pub use snapshot::ShardSnapshot;

use crate::limits::Refusal;
use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::Duration;

/// Why an admitted connection ended (the `reason` label of
/// `uringtls_connections_closed_total`).
///
/// It is also an error type: a service or the stream that ends a
/// connection for one of these reasons returns
/// `io::Error::new(kind, reason)` (see [`CloseReason::error`]), and
/// [`CloseReason::of_service_error`] reads the variant back. Nothing is
/// classified by message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The service finished and the connection closed cleanly
    /// (`close_notify` from the client, or the service ended it).
    Normal,
    /// The handshake did not finish within the handshake timeout.
    HandshakeTimeout,
    /// The handshake failed (bad peer, alert, reset, EOF).
    HandshakeFailed,
    /// http: request headers not complete within the header timeout.
    HeaderTimeout,
    /// Nothing received within the idle timeout.
    IdleTimeout,
    /// The peer did not read within the write timeout.
    WriteTimeout,
    /// Reset, protocol error or other I/O error after the handshake
    /// (including a request cut off by the client's close).
    Error,
    /// The service panicked (contained to this connection).
    Panic,
    /// http: a request (headers and body) not complete within the request
    /// timeout.
    RequestTimeout,
    /// The client closed its side (TCP FIN) without `close_notify` where
    /// closing is normal: between requests (http), at any point (echo),
    /// or once the proxied exchange has ended.
    Eof,
}

impl CloseReason {
    /// Every reason, in index order.
    pub const ALL: [CloseReason; 10] = [
        CloseReason::Normal,
        CloseReason::HandshakeTimeout,
        CloseReason::HandshakeFailed,
        CloseReason::HeaderTimeout,
        CloseReason::IdleTimeout,
        CloseReason::WriteTimeout,
        CloseReason::Error,
        CloseReason::Panic,
        CloseReason::RequestTimeout,
        CloseReason::Eof,
    ];

    /// Metric and access-log label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Normal => "normal",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::HandshakeFailed => "handshake_failed",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::Error => "error",
            CloseReason::Panic => "panic",
            CloseReason::RequestTimeout => "request_timeout",
            CloseReason::Eof => "eof",
        }
    }

    /// An `io::Error` of `kind` that carries this reason (its message is
    /// [`Display`](std::fmt::Display)'s).
    pub fn error(self, kind: io::ErrorKind) -> io::Error {
        io::Error::new(kind, self)
    }

    /// Classifies the error a service returned: the reason it carries (see
    /// [`error`](Self::error)) if any; otherwise `TimedOut` is the idle
    /// timeout, `UnexpectedEof` (the stream's "closed without
    /// `close_notify`", which a service passes on where a close is normal)
    /// is [`Eof`](Self::Eof), anything else [`Error`](Self::Error).
    pub fn of_service_error(e: &io::Error) -> CloseReason {
        if let Some(r) = e.get_ref().and_then(|i| i.downcast_ref::<CloseReason>()) {
            return *r;
        }
        if let Some(i) = e.get_ref() {
            if i.is::<crate::tls::stream::WriteTimedOut>() {
                return CloseReason::WriteTimeout;
            }
            if i.is::<crate::tls::duplex::TruncatedRecord>() {
                return CloseReason::Error;
            }
        }
        match e.kind() {
            io::ErrorKind::TimedOut => CloseReason::IdleTimeout,
            io::ErrorKind::UnexpectedEof => CloseReason::Eof,
            _ => CloseReason::Error,
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseReason::Normal => "closed",
            CloseReason::HandshakeTimeout => "handshake timeout",
            CloseReason::HandshakeFailed => "handshake failed",
            CloseReason::HeaderTimeout => "header timeout: request headers not complete in time",
            CloseReason::RequestTimeout => "request timeout: request not complete in time",
            CloseReason::IdleTimeout => "read timeout",
            CloseReason::WriteTimeout => "write timeout: peer is not reading",
            CloseReason::Error => "connection error",
            CloseReason::Panic => "service panicked",
            CloseReason::Eof => "peer closed connection without sending TLS close_notify",
        })
    }
}

impl std::error::Error for CloseReason {}

/// Upper bounds (seconds) of the handshake-duration histogram buckets; the
/// last bucket is `+Inf`.
pub const HANDSHAKE_BUCKETS: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

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
    /// Times freed memory was returned to the OS (`malloc_trim`).
    pub memory_trims: Cell<u64>,
    /// Times accept paused because `max_handshakes` handshakes were in progress.
    pub handshake_budget_pauses: Cell<u64>,
    /// Handshakes cut off, stale, to make room within `max_handshakes`.
    pub handshake_evictions: Cell<u64>,
}

impl Counters {
    /// Adds one to `c`.
    pub fn bump(c: &Cell<u64>) {
        c.set(c.get() + 1);
    }
}

/// A snapshot of fresh counts for shard `id` with `accepted` connections
/// (tests of this module).
#[cfg(test)]
pub(crate) fn test_snapshot(id: usize, accepted: u64) -> ShardSnapshot {
    let (c, m) = (Counters::default(), ShardMetrics::default());
    c.accepted.set(accepted);
    ShardSnapshot::take(ShardCounts {
        id,
        active: 0,
        handshakes: 0,
        io_backend: "uring",
        counters: &c,
        metrics: &m,
    })
}

/// One shard's counts, as [`ShardSnapshot::take`] reads them (built by
/// the shard's state, so that metrics need not know it).
#[derive(Debug, Clone, Copy)]
pub struct ShardCounts<'a> {
    /// Shard index.
    pub id: usize,
    /// Live connections.
    pub active: usize,
    /// Handshakes in progress.
    pub handshakes: usize,
    /// The I/O backend the shard runs on.
    pub io_backend: &'static str,
    /// The shard's counters.
    pub counters: &'a Counters,
    /// The shard's metrics beyond the counters.
    pub metrics: &'a ShardMetrics,
}

/// Counters one shard keeps besides [`Counters`]. Only its
/// thread touches them.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    closed: [Cell<u64>; CloseReason::ALL.len()],
    refused: [Cell<u64>; Refusal::ALL.len()],
    /// Failed handshakes by reason (alert or error kind); a few dozen labels at most.
    failed_by: RefCell<Vec<(String, u64)>>,
    hs_buckets: [Cell<u64>; HANDSHAKE_BUCKETS.len() + 1],
    hs_sum: Cell<f64>,
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
    /// Completed handshakes by (protocol version, cipher suite).
    sessions: RefCell<Vec<((rustls::ProtocolVersion, rustls::CipherSuite), u64)>>,
    upstream_errors: RefCell<Vec<(&'static str, u64)>>,
    fd_exhaustion: Cell<u64>,
    /// Connections accepted per listener: (name, address, count), one
    /// entry per listener, each counted by its accept loop.
    listeners: RefCell<Vec<ListenerCount>>,
}

/// A listener's name, its address, and its accepted connections.
type ListenerCount = (String, String, Rc<Cell<u64>>);

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

fn bump_label<K: PartialEq>(v: &RefCell<Vec<(K, u64)>>, key: K) {
    let mut v = v.borrow_mut();
    match v.iter_mut().find(|(k, _)| *k == key) {
        Some((_, n)) => *n += 1,
        None => v.push((key, 1)),
    }
}

impl ShardMetrics {
    /// A connection refused at accept.
    pub fn refused(&self, why: Refusal) {
        bump(&self.refused[why.index()]);
    }

    /// An admitted connection ended; `bytes` are ciphertext (in, out).
    pub fn closed(&self, why: CloseReason, bytes: (u64, u64)) {
        bump(&self.closed[why as usize]);
        self.bytes_in.set(self.bytes_in.get() + bytes.0);
        self.bytes_out.set(self.bytes_out.get() + bytes.1);
    }

    /// A handshake completed after `took`.
    pub fn handshake_done(
        &self,
        took: Duration,
        version: Option<rustls::ProtocolVersion>,
        suite: Option<rustls::CipherSuite>,
    ) {
        let secs = took.as_secs_f64();
        let i = HANDSHAKE_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(HANDSHAKE_BUCKETS.len());
        bump(&self.hs_buckets[i]);
        self.hs_sum.set(self.hs_sum.get() + secs);
        if let (Some(v), Some(s)) = (version, suite) {
            bump_label(&self.sessions, (v, s));
        }
    }

    /// A handshake failed with `e` (see [`failure_label`]).
    pub fn handshake_failed(&self, e: &io::Error) {
        let label = failure_label(e);
        let mut v = self.failed_by.borrow_mut();
        match v.iter_mut().find(|(k, _)| *k == label) {
            Some((_, n)) => *n += 1,
            None => v.push((label, 1)),
        }
    }

    /// Hook for the proxy service: an upstream (backend) error of `kind`,
    /// e.g. `connect`, `reset`, `timeout`. Keep kinds few and static.
    pub fn upstream_error(&self, kind: &'static str) {
        bump_label(&self.upstream_errors, kind);
    }

    /// Accept paused for lack of file descriptors (once per episode).
    pub fn fd_exhaustion_episode(&self) {
        bump(&self.fd_exhaustion);
    }

    /// The accepted-connections counter of listener `name` on `addr`
    /// (its accept loop bumps it).
    pub fn listener(&self, name: &str, addr: std::net::SocketAddr) -> Rc<Cell<u64>> {
        let c = Rc::new(Cell::new(0));
        self.listeners
            .borrow_mut()
            .push((name.to_owned(), addr.to_string(), c.clone()));
        c
    }
}

/// A bounded label for a failed handshake: `alert_<description>` when the
/// peer sent an alert, the rustls error kind otherwise (`invalid_message`,
/// `peer_incompatible`, ...), or `eof` / `reset` / `io` for socket-level ends.
pub fn failure_label(e: &io::Error) -> String {
    if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return match t {
            rustls::Error::AlertReceived(a) => format!("alert_{}", names::alert(*a)),
            other => names::tls_error(other).to_owned(),
        };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => "eof".into(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "reset".into(),
        io::ErrorKind::TimedOut => "timeout".into(),
        _ => "io".into(),
    }
}

/// `PeerIncompatible` → `peer_incompatible`.
pub(crate) fn snake(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let mut prev_lower = false;
    for c in s.chars().filter(|c| c.is_ascii_alphanumeric()) {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_labels_are_short_and_bounded() {
        let alert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        );
        assert_eq!(failure_label(&alert), "alert_unknown_ca");
        let bad = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(failure_label(&bad), "invalid_message");
        assert_eq!(
            failure_label(&io::Error::from(io::ErrorKind::UnexpectedEof)),
            "eof"
        );
        assert_eq!(
            failure_label(&io::Error::from(io::ErrorKind::ConnectionReset)),
            "reset"
        );
    }

    #[test]
    fn service_errors_map_to_close_reasons_by_variant_not_message() {
        let t = io::ErrorKind::TimedOut;
        assert_eq!(
            CloseReason::of_service_error(&CloseReason::WriteTimeout.error(t)),
            CloseReason::WriteTimeout
        );
        assert_eq!(
            CloseReason::of_service_error(&CloseReason::HeaderTimeout.error(t)),
            CloseReason::HeaderTimeout
        );
        // The message alone decides nothing.
        assert_eq!(
            CloseReason::of_service_error(&io::Error::new(t, "write timeout: peer is not reading")),
            CloseReason::IdleTimeout
        );
        assert_eq!(
            CloseReason::of_service_error(&io::Error::new(t, "read timeout")),
            CloseReason::IdleTimeout
        );
        assert_eq!(
            CloseReason::of_service_error(&io::Error::from(io::ErrorKind::UnexpectedEof)),
            CloseReason::Eof
        );
        // A request cut off by the close is an error, though also an EOF.
        assert_eq!(
            CloseReason::of_service_error(&CloseReason::Error.error(io::ErrorKind::UnexpectedEof)),
            CloseReason::Error
        );
        assert_eq!(
            CloseReason::of_service_error(&io::Error::from(io::ErrorKind::ConnectionReset)),
            CloseReason::Error
        );
    }

    #[test]
    fn handshake_durations_land_in_their_bucket() {
        let m = ShardMetrics::default();
        m.handshake_done(Duration::from_micros(80), None, None);
        m.handshake_done(Duration::from_millis(3), None, None);
        m.handshake_done(Duration::from_secs(60), None, None);
        assert_eq!(m.hs_buckets[0].get(), 1);
        assert_eq!(m.hs_buckets[5].get(), 1, "3 ms is in the 5 ms bucket");
        assert_eq!(m.hs_buckets[HANDSHAKE_BUCKETS.len()].get(), 1, "+Inf");
    }
}
