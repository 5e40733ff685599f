//! Active health checks of the proxy's upstreams.
//!
//! ```text
//!  thread `proxy-health` (epoll runtime of its own; started with the first
//!  settings that turn checks on, before the sandbox or after: it needs
//!  only socket/connect/epoll calls, which the seccomp list allows)
//!    loop: load the current Pools ─▶ one check per distinct address, all
//!          at once ─▶ each pool's upstreams record pass/fail ─▶ wait
//!          health_interval (or a reload's wake-up)
//! ```
//!
//! A check is [`check`]: a TCP connect within `health_timeout` (the place
//! where a TLS handshake goes for TLS upstreams). An upstream leaves its
//! pool after `health_fails` failed checks in a row and comes back after
//! `health_passes` passed checks in a row ([`Streak::step`]); each change
//! is logged once (warn on down, info on up). The checker runs off the
//! shards: a slow or dead upstream never costs a shard a timer or a
//! socket, and the checks keep their pace whatever the client load.

use super::pool::Pools;
use super::upstream_tls::UpstreamTls;
use super::UpstreamAddr;
use arc_swap::ArcSwap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// Default failed checks in a row that take an upstream out.
pub const DEFAULT_HEALTH_FAILS: u32 = 3;
/// Default passed checks in a row that bring it back.
pub const DEFAULT_HEALTH_PASSES: u32 = 2;
/// Shortest `health_interval` accepted.
pub const MIN_HEALTH_INTERVAL: Duration = Duration::from_millis(10);
/// How often a checker with checks turned off looks whether its proxy is
/// still there.
const IDLE_LOOK: Duration = Duration::from_secs(60);

/// Active health-check settings (`health_interval` given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// Time from the end of one round of checks to the start of the next.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Failed checks in a row that take an upstream out of its pool.
    pub fails: u32,
    /// Passed checks in a row that bring it back.
    pub passes: u32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            interval: Duration::from_secs(5),
            timeout: super::DEFAULT_CONNECT_TIMEOUT,
            fails: DEFAULT_HEALTH_FAILS,
            passes: DEFAULT_HEALTH_PASSES,
        }
    }
}

/// An upstream's run of check results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Streak {
    /// In its pool.
    pub up: bool,
    /// Failed checks in a row (while up).
    pub fails: u32,
    /// Passed checks in a row (while down).
    pub passes: u32,
}

impl Default for Streak {
    fn default() -> Self {
        Streak {
            up: true,
            fails: 0,
            passes: 0,
        }
    }
}

/// A change of an upstream's state, to log once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// It failed `fails` checks in a row: out of its pool.
    Down,
    /// It passed `passes` checks in a row: back in.
    Up,
}

impl Streak {
    /// The streak after one check that passed (`ok`) or failed.
    pub fn step(self, ok: bool, rules: &HealthSettings) -> (Streak, Option<Change>) {
        match (self.up, ok) {
            (true, true) => (Streak { fails: 0, ..self }, None),
            (true, false) if self.fails + 1 >= rules.fails => (
                Streak {
                    up: false,
                    fails: 0,
                    passes: 0,
                },
                Some(Change::Down),
            ),
            (true, false) => (
                Streak {
                    fails: self.fails + 1,
                    ..self
                },
                None,
            ),
            (false, false) => (Streak { passes: 0, ..self }, None),
            (false, true) if self.passes + 1 >= rules.passes => {
                (Streak::default(), Some(Change::Up))
            }
            (false, true) => (
                Streak {
                    passes: self.passes + 1,
                    ..self
                },
                None,
            ),
        }
    }
}

/// An upstream's active health: read by every shard (one atomic), written
/// by the checker.
#[derive(Debug, Default)]
pub(crate) struct Health {
    down: AtomicBool,
    streak: Mutex<Streak>,
}

impl Health {
    /// In its pool (always, while checks are off).
    pub fn is_up(&self) -> bool {
        !self.down.load(Ordering::Relaxed)
    }

    /// Records one check; returns the change it made, if any.
    pub fn record(&self, ok: bool, rules: &HealthSettings) -> Option<Change> {
        let mut s = self.streak.lock().unwrap_or_else(|p| p.into_inner());
        let (next, change) = s.step(ok, rules);
        *s = next;
        self.down.store(!next.up, Ordering::Relaxed);
        change
    }

    /// Back to up, no streak (checks turned off).
    pub fn reset(&self) {
        *self.streak.lock().unwrap_or_else(|p| p.into_inner()) = Streak::default();
        self.down.store(false, Ordering::Relaxed);
    }
}

/// Why a check failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum CheckError {
    /// The connect failed (refused, unreachable, reset).
    Connect(io::Error),
    /// No answer within `health_timeout`.
    Timeout(Duration),
    /// The TLS handshake with it failed (`upstream_tls`): the counted kind
    /// (as in `uringtls_upstream_errors_total`) and the error.
    Tls(&'static str, io::Error),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Connect(e) => write!(f, "connect failed: {e}"),
            CheckError::Timeout(d) => write!(f, "no answer within {d:?}"),
            CheckError::Tls(kind, e) => write!(f, "TLS handshake failed ({kind}): {e}"),
        }
    }
}

impl std::error::Error for CheckError {}

/// One health check of `up` at `at` (its current address): a TCP connect
/// within `timeout`, then, with
/// `upstream_tls`, the TLS handshake (certificate verified) within what is
/// left of it, then a close (`close_notify` first over TLS).
pub(crate) async fn check(
    at: SocketAddr,
    up: &UpstreamAddr,
    timeout: Duration,
    tls: Option<&UpstreamTls>,
) -> Result<(), CheckError> {
    let started = std::time::Instant::now();
    let conn = match crate::io::time::timeout(timeout, crate::io::Conn::connect(at)).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return Err(CheckError::Connect(e)),
        Err(_) => return Err(CheckError::Timeout(timeout)),
    };
    let Some(tls) = tls else {
        drop(conn);
        return Ok(());
    };
    let left = timeout.saturating_sub(started.elapsed());
    match tls.handshake(conn, up, None, left).await {
        Ok(mut stream) => {
            // A polite end; the check passed whatever the close does.
            let _ = crate::io::time::timeout(left.max(Duration::from_millis(100)), stream.close())
                .await;
            Ok(())
        }
        Err(f) if f.kind == "tls_handshake_timeout" => Err(CheckError::Timeout(timeout)),
        Err(f) => Err(CheckError::Tls(f.kind, f.error)),
    }
}

/// The checker of one proxy: started once, woken by reloads.
#[derive(Debug, Default)]
pub(crate) struct Checker {
    started: AtomicBool,
    wake: Arc<Notify>,
}

impl Checker {
    /// Starts the checker thread if `pools` want checks and it is not
    /// running yet; otherwise wakes it (new settings take effect at once).
    pub fn update(&self, table: &Arc<ArcSwap<Pools>>) {
        let wanted = table.load().settings.health.is_some();
        if wanted && !self.started.swap(true, Ordering::SeqCst) {
            let (weak, wake) = (Arc::downgrade(table), self.wake.clone());
            let spawned = std::thread::Builder::new()
                .name("proxy-health".into())
                .spawn(move || run_thread(weak, wake));
            if let Err(e) = spawned {
                self.started.store(false, Ordering::SeqCst);
                tracing::error!(error = %e, "cannot start the health-check thread; upstreams are not checked");
            }
            return;
        }
        self.wake.notify_one();
    }

    /// What wakes the checker for a round now (an upstream moved to a new
    /// address gets checked at once).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}

fn run_thread(table: Weak<ArcSwap<Pools>>, wake: Arc<Notify>) {
    let opts = crate::io::RingOptions {
        backend: crate::io::Backend::Epoll,
        ..crate::io::RingOptions::default()
    };
    match crate::io::Runtime::new(&opts) {
        Ok(rt) => rt.block_on(run(table, wake)),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the health-check runtime; upstreams are not checked")
        }
    }
}

/// Rounds of checks until the proxy is gone.
async fn run(table: Weak<ArcSwap<Pools>>, wake: Arc<Notify>) {
    loop {
        let Some(pools) = table.upgrade().map(|t| t.load_full()) else {
            return;
        };
        let pause = match pools.settings.health {
            Some(rules) => {
                round(&pools, &rules).await;
                rules.interval
            }
            None => IDLE_LOOK,
        };
        drop(pools);
        tokio::select! {
            _ = wake.notified() => {}
            _ = crate::io::time::sleep(pause) => {}
        }
    }
}

/// One check per distinct address, all at once; then every upstream of
/// every pool at that address records the result.
async fn round(pools: &Pools, rules: &HealthSettings) {
    let mut targets: Vec<(SocketAddr, UpstreamAddr)> = Vec::new();
    for p in pools.all() {
        for u in &p.upstreams {
            let at = u.current();
            if !targets.iter().any(|t| t.0 == at) {
                targets.push((at, u.addr.clone()));
            }
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (i, (at, t)) in targets.iter().cloned().enumerate() {
        let (tx, timeout) = (tx.clone(), rules.timeout);
        let tls = pools.settings.tls.clone();
        crate::io::spawn(async move {
            let _ = tx.send((i, check(at, &t, timeout, tls.as_deref()).await));
        });
    }
    drop(tx);
    let mut results: Vec<Option<Result<(), CheckError>>> = targets.iter().map(|_| None).collect();
    while let Some((i, r)) = rx.recv().await {
        results[i] = Some(r);
    }
    let result_of = |a: SocketAddr| {
        targets
            .iter()
            .position(|t| t.0 == a)
            .and_then(|i| results[i].as_ref())
    };
    for p in pools.all() {
        for u in &p.upstreams {
            // An upstream moved meanwhile (re-resolution) waits for the
            // next round: this result is about its old address.
            let Some(r) = result_of(u.current()) else {
                continue;
            };
            u.stats.checked(r.is_ok());
            match (u.health.record(r.is_ok(), rules), r) {
                (Some(Change::Down), Err(e)) => tracing::warn!(
                    pool = %p.label, upstream = %u.name, error = %e, fails = rules.fails,
                    "upstream failed its health checks; out of its pool until it passes {}", rules.passes
                ),
                (Some(Change::Up), _) => tracing::info!(
                    pool = %p.label, upstream = %u.name, passes = rules.passes,
                    "upstream passed its health checks; back in its pool"
                ),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(fails: u32, passes: u32) -> HealthSettings {
        HealthSettings {
            fails,
            passes,
            ..HealthSettings::default()
        }
    }

    /// The states after each result of `results` (`+` pass, `-` fail).
    fn run(results: &str, r: &HealthSettings) -> (String, Vec<Change>) {
        let h = Health::default();
        let mut ups = String::new();
        let mut changes = Vec::new();
        for c in results.chars() {
            changes.extend(h.record(c == '+', r));
            ups.push(if h.is_up() { 'U' } else { 'D' });
        }
        (ups, changes)
    }

    #[test]
    fn an_upstream_goes_down_after_n_failures_in_a_row_only() {
        let r = rules(3, 2);
        assert_eq!(run("--+--+", &r).0, "UUUUUU", "a pass restarts the count");
        let (ups, changes) = run("---", &r);
        assert_eq!(ups, "UUD");
        assert_eq!(changes, [Change::Down], "the change is reported once");
        assert_eq!(run("-----", &r).1, [Change::Down]);
    }

    #[test]
    fn it_comes_back_after_m_passes_in_a_row_only() {
        let r = rules(1, 2);
        let (ups, changes) = run("-+-++-", &r);
        assert_eq!(ups, "DDDDUD");
        assert_eq!(changes, [Change::Down, Change::Up, Change::Down]);
    }

    #[test]
    fn thresholds_of_one_flip_at_once_and_a_reset_brings_it_back() {
        let r = rules(1, 1);
        assert_eq!(run("-+-+", &r).0, "DUDU");
        let h = Health::default();
        h.record(false, &r);
        assert!(!h.is_up());
        h.reset();
        assert!(h.is_up());
        assert_eq!(
            h.record(false, &rules(2, 1)),
            None,
            "the streak was reset too"
        );
    }

    #[test]
    fn a_check_passes_on_a_listening_port_and_fails_on_a_closed_one() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let open = l.local_addr().expect("addr");
        let closed = {
            let c = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            c.local_addr().expect("addr")
        };
        let rt = crate::io::Runtime::new(&crate::io::RingOptions {
            backend: crate::io::Backend::Epoll,
            ..crate::io::RingOptions::default()
        })
        .expect("runtime");
        let up = UpstreamAddr::from(open);
        let t = Duration::from_secs(5);
        assert!(rt.block_on(check(open, &up, t, None)).is_ok());
        assert!(matches!(
            rt.block_on(check(closed, &up, t, None)),
            Err(CheckError::Connect(_))
        ));
    }
}
