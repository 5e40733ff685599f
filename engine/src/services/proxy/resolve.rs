//! Upstream names to addresses: once when the proxy is built, at each
//! reload, and again every `resolve_interval` while it runs.
//!
//! ```text
//!  Proxy::new / prepare (caller's thread: the binary's main thread)
//!    every name of the settings resolved (an IP literal is its address);
//!    a new name that fails: ResolveError, nothing built or swapped
//!  thread `proxy-resolve` (started with the first settings that have a
//!  name and an interval; blocking lookups are fine here, never on a shard)
//!    loop: wait resolve_interval (a reload restarts the wait) ─▶ resolve
//!          each distinct name once ─▶ every upstream of that name, in any
//!          pool: still listed? stays : moves to the first address
//! ```
//!
//! An upstream keeps its address while the resolver still lists it, so a
//! DNS server that rotates its answers does not move it. A move is logged
//! once (name, old, new) and counted; the upstream's health starts over as
//! a new upstream's does (up, no streak, not skipped after a failed
//! connect), its counters go on, and the health checker is woken to check
//! the new address at once. A failed lookup keeps the last address: it is
//! counted per upstream (`uringtls_upstream_resolve_failures_total`) and
//! logged once per run of failures of the name, and once when it resolves
//! again.

use super::pool::{Pools, Resolved, Upstream};
use super::stats::UpstreamStats;
use super::{ProxySettings, UpstreamAddr, UpstreamHost, DEFAULT_POOL};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The binary's default `upstream_resolve_interval`: names follow DNS
/// within half a minute, for one lookup per name per interval.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
/// Shortest `upstream_resolve_interval` accepted.
pub const MIN_RESOLVE_INTERVAL: Duration = Duration::from_millis(10);
/// How often a re-resolution thread with the interval turned off looks
/// whether its proxy is still there.
const IDLE_LOOK: Duration = Duration::from_secs(60);

/// Turns an upstream's host name into addresses.
///
/// Called where the proxy is built or reloaded ([`Proxy::new`],
/// [`Proxy::prepare`]: the caller's thread) and on the proxy's
/// `proxy-resolve` thread, never on a shard: it may block. The default is
/// [`SystemResolver`]; a closure `Fn(&str, u16) -> io::Result<Vec<SocketAddr>>`
/// is one too (a test's fake).
///
/// [`Proxy::new`]: super::Proxy::new
/// [`Proxy::prepare`]: super::Proxy::prepare
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host` (a name, never an IP literal) at `port`,
    /// in the resolver's order. An empty list counts as a failure.
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

impl<F> Resolve for F
where
    F: Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
{
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        self(host, port)
    }
}

/// The system's resolver (`getaddrinfo`: `/etc/hosts`, then DNS, as
/// `/etc/nsswitch.conf` says).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
}

/// An upstream name that does not resolve where it must: when the proxy
/// is built, or at a reload that brings the name in.
#[derive(Debug)]
#[non_exhaustive]
pub enum ResolveError {
    /// The resolver failed.
    Failed {
        /// The upstream as written (`HOST:PORT`).
        upstream: String,
        /// Its pool: [`DEFAULT_POOL`] (`upstream`) or the route's pattern.
        pool: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The resolver answered no address.
    NoAddress {
        /// The upstream as written (`HOST:PORT`).
        upstream: String,
        /// Its pool: [`DEFAULT_POOL`] (`upstream`) or the route's pattern.
        pool: String,
    },
}

impl ResolveError {
    /// The upstream as written.
    pub fn upstream(&self) -> &str {
        match self {
            ResolveError::Failed { upstream, .. } | ResolveError::NoAddress { upstream, .. } => {
                upstream
            }
        }
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (upstream, pool) = match self {
            ResolveError::Failed { upstream, pool, .. }
            | ResolveError::NoAddress { upstream, pool } => (upstream, pool),
        };
        let place = match pool.as_str() {
            DEFAULT_POOL => "in `upstream`".to_owned(),
            route => format!("in route `{route}`"),
        };
        write!(f, "proxy upstream `{upstream}` ({place}) ")?;
        match self {
            ResolveError::Failed { source, .. } => write!(f, "does not resolve: {source}")?,
            ResolveError::NoAddress { .. } => write!(f, "resolves to no address")?,
        }
        write!(
            f,
            "; fix the name or its DNS record, or write the upstream's IP address"
        )
    }
}

impl std::error::Error for ResolveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResolveError::Failed { source, .. } => Some(source),
            ResolveError::NoAddress { .. } => None,
        }
    }
}

/// Why a lookup gave no address.
#[derive(Debug)]
enum LookupError {
    /// The resolver failed.
    Failed(io::Error),
    /// It answered no address.
    Empty,
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LookupError::Failed(e) => e.fmt(f),
            LookupError::Empty => f.write_str("no address"),
        }
    }
}

/// Looks `host` up; an empty answer is an error too.
fn lookup(resolver: &dyn Resolve, host: &str, port: u16) -> Result<Vec<SocketAddr>, LookupError> {
    match resolver.resolve(host, port) {
        Ok(addrs) if addrs.is_empty() => Err(LookupError::Empty),
        Ok(addrs) => Ok(addrs),
        Err(e) => Err(LookupError::Failed(e)),
    }
}

/// The address to use among `addrs` (not empty): `keep` while it is still
/// listed, else the first.
fn pick(addrs: &[SocketAddr], keep: Option<SocketAddr>) -> SocketAddr {
    keep.filter(|k| addrs.contains(k)).unwrap_or(addrs[0])
}

/// The upstreams of `pools` named `name`.
fn named<'a>(pools: &'a Pools, name: &'a str) -> impl Iterator<Item = &'a Arc<Upstream>> + 'a {
    pools
        .all()
        .flat_map(|p| &p.upstreams)
        .filter(move |u| u.name == name)
}

/// The address of every upstream of `s`, by name. A name `old` already
/// serves keeps its address while the resolver still lists it, and keeps
/// it too (logged, counted) when the lookup fails; a new name that fails
/// is the error.
pub(super) fn resolve_all(
    s: &ProxySettings,
    resolver: &dyn Resolve,
    old: Option<&Pools>,
) -> Result<Resolved, ResolveError> {
    let pools = std::iter::once((DEFAULT_POOL.to_owned(), &s.upstreams))
        .chain(s.routes.iter().map(|r| (r.key.to_string(), &r.upstreams)));
    let mut out = Resolved::new();
    for (pool, up) in pools.flat_map(|(p, ups)| ups.iter().map(move |u| (p.clone(), u))) {
        if out.contains_key(&up.name) {
            continue;
        }
        let host = match &up.host {
            UpstreamHost::Ip(ip) => {
                out.insert(up.name.clone(), SocketAddr::new(*ip, up.port));
                continue;
            }
            UpstreamHost::Name(h) => h,
        };
        let known = old.and_then(|o| named(o, &up.name).next().map(|u| u.current()));
        let at = match (lookup(resolver, host, up.port), known) {
            (Ok(addrs), keep) => pick(&addrs, keep),
            (Err(e), Some(at)) => {
                for u in old.into_iter().flat_map(|o| named(o, &up.name)) {
                    UpstreamStats::bump(&u.stats.resolve_failures);
                }
                tracing::warn!(upstream = %up.name, error = %e, address = %at, "cannot resolve the upstream name at reload; keeping its current address");
                at
            }
            (Err(e), None) => return Err(failure(up, pool, e)),
        };
        out.insert(up.name.clone(), at);
    }
    Ok(out)
}

/// The error for `up` of `pool`, from the lookup's.
fn failure(up: &UpstreamAddr, pool: String, e: LookupError) -> ResolveError {
    let upstream = up.name.clone();
    match e {
        LookupError::Failed(source) => ResolveError::Failed {
            upstream,
            pool,
            source,
        },
        LookupError::Empty => ResolveError::NoAddress { upstream, pool },
    }
}

/// One re-resolution of every name of `pools`, each looked up once.
/// `failing` holds the names whose last lookup failed (to log a run of
/// failures once). Returns whether an upstream moved.
pub(super) fn round(pools: &Pools, resolver: &dyn Resolve, failing: &mut HashSet<String>) -> bool {
    let mut names: BTreeMap<&str, (&str, u16)> = BTreeMap::new();
    for u in pools.all().flat_map(|p| &p.upstreams) {
        if let UpstreamHost::Name(h) = &u.host {
            names.entry(&u.name).or_insert((h, u.port));
        }
    }
    failing.retain(|n| names.contains_key(n.as_str()));
    let mut moved = false;
    for (name, (host, port)) in names {
        match lookup(resolver, host, port) {
            Ok(addrs) => {
                tracing::debug!(upstream = %name, addresses = ?addrs, "upstream name resolved");
                if failing.remove(name) {
                    tracing::info!(upstream = %name, "the upstream name resolves again");
                }
                let mut change = None;
                for u in named(pools, name) {
                    let was = u.current();
                    if !addrs.contains(&was) {
                        u.move_to(addrs[0]);
                        change.get_or_insert((was, addrs[0]));
                    }
                }
                if let Some((old, new)) = change {
                    moved = true;
                    tracing::info!(upstream = %name, %old, %new, "the upstream name resolves to a new address; new connections go there, its health starts over");
                }
            }
            Err(e) => {
                let mut at = None;
                for u in named(pools, name) {
                    UpstreamStats::bump(&u.stats.resolve_failures);
                    at.get_or_insert(u.current());
                }
                if failing.insert(name.to_owned()) {
                    let address = at.map(|a| a.to_string()).unwrap_or_default();
                    tracing::warn!(upstream = %name, error = %e, %address, "cannot resolve the upstream name again; keeping its last address until it resolves");
                }
            }
        }
    }
    moved
}

/// Whether `pools` have a name to resolve again.
fn wanted(pools: &Pools) -> bool {
    pools.settings.resolve_interval.is_some()
        && pools
            .all()
            .flat_map(|p| &p.upstreams)
            .any(|u| matches!(u.host, UpstreamHost::Name(_)))
}

/// What wakes the thread: a reload (restart the wait) or the proxy gone.
#[derive(Debug, Default)]
struct Signal {
    state: Mutex<Wake>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct Wake {
    woken: bool,
    stop: bool,
}

/// Why [`Signal::wait`] returned.
enum Woke {
    Stop,
    Reload,
    Timeout,
}

impl Signal {
    fn set(&self, f: impl FnOnce(&mut Wake)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        self.cv.notify_all();
    }

    /// Waits `pause`, or less if woken.
    fn wait(&self, pause: Duration) -> Woke {
        let deadline = Instant::now().checked_add(pause);
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if w.stop {
                return Woke::Stop;
            }
            if std::mem::take(&mut w.woken) {
                return Woke::Reload;
            }
            w = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Woke::Timeout;
                    }
                    let waited = self.cv.wait_timeout(w, left);
                    waited.unwrap_or_else(|p| p.into_inner()).0
                }
                None => self.cv.wait(w).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }
}

/// The re-resolution thread of one proxy: started once, woken by reloads,
/// stopped when the proxy (its last clone) is dropped.
#[derive(Debug, Default)]
pub(crate) struct Refresher {
    started: AtomicBool,
    signal: Arc<Signal>,
}

impl Refresher {
    /// Starts the thread if `table` has a name to resolve again and it is
    /// not running yet; otherwise restarts its wait (new settings).
    pub fn update(
        &self,
        table: &Arc<ArcSwap<Pools>>,
        resolver: &Arc<dyn Resolve>,
        checker: Arc<Notify>,
    ) {
        if wanted(&table.load()) && !self.started.swap(true, Ordering::SeqCst) {
            let (weak, resolver) = (Arc::downgrade(table), resolver.clone());
            let signal = self.signal.clone();
            let spawned = std::thread::Builder::new()
                .name("proxy-resolve".into())
                .spawn(move || run(weak, resolver, signal, checker));
            if let Err(e) = spawned {
                self.started.store(false, Ordering::SeqCst);
                tracing::error!(error = %e, "cannot start the upstream re-resolution thread; upstream addresses stay as resolved until a reload");
            }
            return;
        }
        self.signal.set(|w| w.woken = true);
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.signal.set(|w| w.stop = true);
    }
}

/// Rounds of re-resolution until the proxy is gone.
fn run(
    table: Weak<ArcSwap<Pools>>,
    resolver: Arc<dyn Resolve>,
    signal: Arc<Signal>,
    checker: Arc<Notify>,
) {
    let mut failing = HashSet::new();
    loop {
        let Some(pause) = table
            .upgrade()
            .map(|t| t.load().settings.resolve_interval.unwrap_or(IDLE_LOOK))
        else {
            return;
        };
        match signal.wait(pause) {
            Woke::Stop => return,
            Woke::Reload => continue,
            Woke::Timeout => {}
        }
        let Some(pools) = table.upgrade().map(|t| t.load_full()) else {
            return;
        };
        if pools.settings.resolve_interval.is_some() && round(&pools, &*resolver, &mut failing) {
            checker.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::proxy::{HealthSettings, Proxy, Route};
    use std::sync::atomic::AtomicUsize;

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A resolver whose answer for every name is set by the test.
    #[derive(Default)]
    struct Fake(Mutex<Option<Vec<SocketAddr>>>);

    impl Fake {
        fn answer(&self, a: Option<Vec<SocketAddr>>) {
            *self.0.lock().expect("lock") = a;
        }
    }

    impl Resolve for Fake {
        fn resolve(&self, _: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
            self.0
                .lock()
                .expect("lock")
                .clone()
                .ok_or_else(|| io::Error::other("fake failure"))
        }
    }

    fn settings(names: &[&str]) -> ProxySettings {
        ProxySettings {
            upstreams: names
                .iter()
                .map(|n| n.parse().expect("HOST:PORT"))
                .collect(),
            ..ProxySettings::default()
        }
    }

    /// The default pool's upstreams of `p`.
    fn default_pool(p: &Proxy) -> Vec<Arc<Upstream>> {
        let t = p.pools.load_full();
        let d = t.all().next().expect("default pool");
        d.upstreams.clone()
    }

    #[test]
    fn a_name_that_does_not_resolve_when_the_proxy_is_built_is_an_error_naming_it() {
        let fake = Arc::new(Fake::default());
        let mut s = settings(&["127.0.0.1:1"]);
        s.routes = vec![Route {
            key: "a.test=x:1"
                .parse::<super::super::RouteOption>()
                .expect("p")
                .key()
                .expect("k"),
            upstreams: vec!["backend.test:80".parse().expect("HOST:PORT")],
        }];
        match Proxy::with_resolver(s.clone(), fake.clone()) {
            Err(e @ ResolveError::Failed { .. }) => {
                assert_eq!(e.upstream(), "backend.test:80");
                let text = e.to_string();
                assert!(
                    text.starts_with(
                        "proxy upstream `backend.test:80` (in route `a.test`) does not resolve: fake failure"
                    ),
                    "{text}"
                );
            }
            other => panic!("expected a resolve failure, got {other:?}"),
        }
        fake.answer(Some(Vec::new()));
        assert!(matches!(
            Proxy::with_resolver(s.clone(), fake.clone()),
            Err(ResolveError::NoAddress { .. })
        ));
        fake.answer(Some(vec![at(7)]));
        let p = Proxy::with_resolver(s, fake).expect("resolves");
        let t = p.pools.load_full();
        let route = t.all().nth(1).expect("route pool");
        assert_eq!(route.upstreams[0].current(), at(7));
    }

    #[test]
    fn ip_literals_never_reach_the_resolver() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let count = move |_: &str, _: u16| -> io::Result<Vec<SocketAddr>> {
            c.fetch_add(1, Ordering::SeqCst);
            Err(io::Error::other("no"))
        };
        let p = Proxy::with_resolver(settings(&["127.0.0.1:5", "[::1]:6"]), Arc::new(count))
            .expect("literals need no resolver");
        let ups = default_pool(&p);
        assert_eq!(ups[0].current(), at(5));
        assert_eq!(ups[1].current(), "[::1]:6".parse().expect("v6"));
        let mut failing = HashSet::new();
        assert!(!round(
            &p.pools.load_full(),
            &|_: &str, _: u16| Err(io::Error::other("x")),
            &mut failing
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(failing.is_empty());
    }

    #[test]
    fn a_moved_name_moves_its_upstreams_and_their_health_starts_over() {
        let fake = Arc::new(Fake::default());
        fake.answer(Some(vec![at(1)]));
        let mut s = settings(&["backend.test:80", "other.test:80"]);
        s.health = Some(HealthSettings::default());
        let p = Proxy::with_resolver(s, fake.clone()).expect("resolves");
        let ups = default_pool(&p);
        let rules = HealthSettings::default();
        for _ in 0..rules.fails {
            ups[0].health.record(false, &rules);
        }
        assert!(!ups[0].health.is_up());
        let table = p.pools.load_full();
        let pool = table.all().next().expect("default pool");
        assert!(
            pool.mark_down(0, Instant::now()),
            "skipped after a failed connect"
        );
        assert!(!ups[0].usable(Instant::now()));
        UpstreamStats::bump(&ups[0].stats.connects);
        let mut failing = HashSet::new();
        // Still listed (a rotated answer): nobody moves.
        fake.answer(Some(vec![at(2), at(1)]));
        assert!(!round(&p.pools.load_full(), &*fake, &mut failing));
        assert_eq!(ups[0].current(), at(1));
        assert!(!ups[0].health.is_up(), "not moved: health kept");
        fake.answer(Some(vec![at(3), at(4)]));
        assert!(round(&p.pools.load_full(), &*fake, &mut failing));
        assert_eq!((ups[0].current(), ups[1].current()), (at(3), at(3)));
        assert!(ups[0].health.is_up(), "moved: health starts over");
        assert!(ups[0].usable(Instant::now()), "and the skip is lifted");
        assert_eq!(
            ups[0].stats.connects.load(Ordering::Relaxed),
            1,
            "counters go on"
        );
        assert_eq!(ups[0].stats.address_changes.load(Ordering::Relaxed), 1);
    }

    /// Counts warn events.
    struct Warns(Arc<AtomicUsize>);
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warns {
        fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            if *e.metadata().level() == tracing::Level::WARN {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn a_failed_lookup_keeps_the_address_counts_each_time_and_warns_once_per_run() {
        use tracing_subscriber::layer::SubscriberExt;
        let fake = Arc::new(Fake::default());
        fake.answer(Some(vec![at(1)]));
        let p = Proxy::with_resolver(settings(&["backend.test:80"]), fake.clone()).expect("ok");
        let up = default_pool(&p).remove(0);
        let warns = Arc::new(AtomicUsize::new(0));
        let sub = tracing_subscriber::registry().with(Warns(warns.clone()));
        tracing::subscriber::with_default(sub, || {
            let mut failing = HashSet::new();
            let mut step = |answer: Option<Vec<SocketAddr>>| {
                fake.answer(answer);
                round(&p.pools.load_full(), &*fake, &mut failing);
            };
            step(None);
            step(None);
            step(None);
            assert_eq!(warns.load(Ordering::SeqCst), 1, "one warning per run");
            step(Some(vec![at(1)]));
            step(None);
            assert_eq!(warns.load(Ordering::SeqCst), 2, "a new run warns again");
        });
        assert_eq!(up.current(), at(1), "the last address is kept");
        assert_eq!(up.stats.resolve_failures.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn at_reload_a_new_name_that_fails_refuses_and_a_known_one_keeps_its_address() {
        let fake = Arc::new(Fake::default());
        fake.answer(Some(vec![at(1)]));
        let p = Proxy::with_resolver(settings(&["backend.test:80"]), fake.clone()).expect("ok");
        let before = default_pool(&p);
        fake.answer(None);
        let e = p
            .reload(settings(&["backend.test:80", "new.test:80"]))
            .expect_err("the new name does not resolve");
        assert_eq!(e.upstream(), "new.test:80");
        assert!(
            Arc::ptr_eq(&default_pool(&p)[0], &before[0]),
            "nothing changed"
        );
        p.reload(settings(&["backend.test:80", "127.0.0.1:9"]))
            .expect("a known name keeps its address");
        let after = default_pool(&p);
        assert!(
            Arc::ptr_eq(&after[0], &before[0]),
            "same upstream, state kept"
        );
        assert_eq!(after[0].current(), at(1));
        assert_eq!(after[1].current(), at(9));
    }

    #[test]
    fn the_thread_moves_an_upstream_on_its_interval_and_ends_with_the_proxy() {
        let answer = Arc::new(Mutex::new(at(1)));
        let (tx, calls) = std::sync::mpsc::channel();
        let a = answer.clone();
        let tx = Mutex::new(tx);
        let fake = move |_: &str, _: u16| -> io::Result<Vec<SocketAddr>> {
            let _ = tx.lock().expect("lock").send(());
            Ok(vec![*a.lock().expect("lock")])
        };
        let mut s = settings(&["backend.test:80"]);
        s.resolve_interval = Some(MIN_RESOLVE_INTERVAL);
        let p = Proxy::with_resolver(s, Arc::new(fake)).expect("ok");
        calls.recv_timeout(Duration::from_secs(10)).expect("built");
        let up = default_pool(&p).remove(0);
        *answer.lock().expect("lock") = at(2);
        // Lookups signalled by now may have read the old answer; of the
        // next two, the first reads the new one and its round moves the
        // upstream before the second starts.
        while calls.try_recv().is_ok() {}
        for _ in 0..2 {
            calls
                .recv_timeout(Duration::from_secs(10))
                .expect("re-resolved on the interval");
        }
        assert_eq!(up.current(), at(2));
        let signal = p.refresher.signal.clone();
        drop(p);
        assert!(signal.state.lock().expect("lock").stop, "told to stop");
    }
}
