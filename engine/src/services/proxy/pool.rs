//! The pools of upstreams of the proxy service and their health: round
//! robin over the healthy upstreams of a pool; an upstream that failed a
//! client's connect skipped for the fail timeout (passive health); one that
//! failed `health_fails` checks in a row out until it passes
//! `health_passes` (active health, `health.rs`).
//!
//! [`Pools`] is the routing table (`route.rs`) with a pool per route and
//! the default pool (`upstream`); shared by all shards and the health
//! checker, replaced whole on reload. Upstreams that are unchanged across a
//! reload (same pool, same name, same address) keep their state: health,
//! passive skip and counters.
//!
//! An upstream's current address sits in an [`ArcSwap`] (one load per
//! connect); the re-resolution thread (`resolve.rs`) moves it when its name
//! resolves elsewhere, and the upstream's health starts over as a new
//! upstream's does (up, no streak, not skipped); its counters go on.

use super::health::Health;
use super::route::{best, RouteKey};
use super::stats::UpstreamStats;
use super::{ProxySettings, UpstreamAddr};
use crate::io::Conn;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The label of the default pool (`upstream`) in metrics and logs.
pub const DEFAULT_POOL: &str = "default";

/// One upstream of one pool, with its health and counters.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// As configured.
    pub(super) addr: UpstreamAddr,
    /// Where connections go now (resolved from `addr`).
    current: ArcSwap<SocketAddr>,
    /// Milliseconds since [`epoch`] until which it is skipped (passive).
    down_until: AtomicU64,
    /// Active health (always up while checks are off).
    pub(super) health: Health,
    pub(super) stats: UpstreamStats,
}

impl std::ops::Deref for Upstream {
    type Target = UpstreamAddr;

    fn deref(&self) -> &UpstreamAddr {
        &self.addr
    }
}

/// Process-wide origin of the passive-health timestamps (one for all
/// pools, so that a state kept across a reload stays meaningful).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn ms(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_millis()).unwrap_or(u64::MAX)
}

impl Upstream {
    fn new(addr: UpstreamAddr, at: SocketAddr) -> Upstream {
        Upstream {
            addr,
            current: ArcSwap::from_pointee(at),
            down_until: AtomicU64::new(0),
            health: Health::default(),
            stats: UpstreamStats::default(),
        }
    }

    /// The address connections go to now.
    pub fn current(&self) -> SocketAddr {
        **self.current.load()
    }

    /// Moves it to `to` (its name resolved elsewhere): health starts over
    /// as a new upstream's (up, no streak, not skipped); counters go on.
    /// Returns the address it had.
    pub(super) fn move_to(&self, to: SocketAddr) -> SocketAddr {
        let was = *self.current.swap(Arc::new(to));
        self.health.reset();
        self.down_until.store(0, Ordering::Relaxed);
        UpstreamStats::bump(&self.stats.address_changes);
        was
    }

    /// Whether client connections may go to it at `now`: up by the health
    /// checks and not skipped after a failed connect.
    pub fn usable(&self, now: Instant) -> bool {
        self.health.is_up() && self.down_until.load(Ordering::Relaxed) <= ms(now)
    }
}

/// The upstreams of one route (or the default pool) and their round robin.
#[derive(Debug)]
pub(crate) struct Pool {
    /// `default`, or the route's pattern (`*.b.test`, `a.test@h2`).
    pub(super) label: String,
    pub(super) upstreams: Vec<Arc<Upstream>>,
    next: AtomicUsize,
    connect_timeout: Duration,
    fail_timeout: Duration,
}

impl Pool {
    /// A pool of `ups`, at the addresses `resolved` gives their names,
    /// reusing the state of `old` upstreams of the same pool, name and
    /// address.
    fn new(
        label: String,
        ups: &[UpstreamAddr],
        s: &ProxySettings,
        old: &HashMap<(&str, &str, SocketAddr), &Arc<Upstream>>,
        resolved: &Resolved,
    ) -> Pool {
        let upstreams = ups
            .iter()
            .filter_map(|a| {
                let at = *resolved.get(&a.name)?;
                Some(match old.get(&(label.as_str(), a.name.as_str(), at)) {
                    Some(u) => Arc::clone(u),
                    None => Arc::new(Upstream::new(a.clone(), at)),
                })
            })
            .collect();
        Pool {
            label,
            upstreams,
            next: AtomicUsize::new(0),
            connect_timeout: s.connect_timeout,
            fail_timeout: s.fail_timeout,
        }
    }

    /// Upstream indices to try at `now`: the usable ones in round-robin
    /// order; if none is, the next one anyway (one attempt, so that
    /// recovery is noticed without waiting out the fail timeout).
    pub fn order(&self, now: Instant) -> Vec<usize> {
        let n = self.upstreams.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let healthy: Vec<usize> = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.upstreams[i].usable(now))
            .collect();
        if healthy.is_empty() {
            vec![start]
        } else {
            healthy
        }
    }

    /// Marks upstream `i` down from `now` for the fail timeout; true if it
    /// was up (so that a down upstream is logged once, not per connection).
    pub fn mark_down(&self, i: usize, now: Instant) -> bool {
        let t = ms(now);
        let until = t.saturating_add(self.fail_timeout.as_millis() as u64);
        self.upstreams
            .get(i)
            .is_some_and(|u| u.down_until.swap(until, Ordering::Relaxed) <= t)
    }

    /// Connects to the first upstream of [`order`](Self::order) that
    /// answers: a connect failure tries the next one (nothing of the
    /// client's has been forwarded yet).
    pub(super) async fn connect(&self) -> Option<(Conn, &Upstream)> {
        for i in self.order(Instant::now()) {
            let up = &self.upstreams[i];
            let attempt = Conn::connect(up.current());
            let problem = match crate::io::time::timeout(self.connect_timeout, attempt).await {
                Ok(Ok(c)) => {
                    let _ = c.set_nodelay(true);
                    UpstreamStats::bump(&up.stats.connects);
                    return Some((c, up));
                }
                Ok(Err(e)) => format!("upstream connect failed: {e}"),
                Err(_) => "upstream connect timed out".to_string(),
            };
            UpstreamStats::bump(&up.stats.connect_failures);
            if self.mark_down(i, Instant::now()) {
                let skip = self.fail_timeout;
                tracing::warn!(pool = %self.label, upstream = %up.name, ?skip, "{problem}; skipping it for a while");
            } else {
                tracing::debug!(pool = %self.label, upstream = %up.name, "{problem}");
            }
        }
        None
    }
}

/// The routing table: a pool per route, the default pool, the settings
/// they came from.
#[derive(Debug)]
pub(crate) struct Pools {
    pub(super) settings: ProxySettings,
    keys: Vec<RouteKey>,
    routed: Vec<Arc<Pool>>,
    default: Option<Arc<Pool>>,
}

/// The address of each upstream, by its name as written (`resolve.rs`
/// fills it in with every name of the settings).
pub(crate) type Resolved = HashMap<String, SocketAddr>;

impl Pools {
    /// The pools of `settings`, each upstream at its address in
    /// `resolved`; upstreams unchanged from `old` keep their state.
    pub fn new(settings: ProxySettings, old: Option<&Pools>, resolved: &Resolved) -> Pools {
        let kept: HashMap<(&str, &str, SocketAddr), &Arc<Upstream>> = old
            .iter()
            .flat_map(|o| o.all())
            .flat_map(|p| {
                p.upstreams
                    .iter()
                    .map(move |u| ((p.label.as_str(), u.name.as_str(), u.current()), u))
            })
            .collect();
        let pool = |label: String, ups: &[UpstreamAddr]| {
            Arc::new(Pool::new(label, ups, &settings, &kept, resolved))
        };
        let default = (!settings.upstreams.is_empty())
            .then(|| pool(DEFAULT_POOL.into(), &settings.upstreams));
        let routed = settings
            .routes
            .iter()
            .map(|r| pool(r.key.to_string(), &r.upstreams))
            .collect();
        let keys = settings.routes.iter().map(|r| r.key.clone()).collect();
        Pools {
            keys,
            routed,
            default,
            settings,
        }
    }

    /// Called as the table goes into service: with health checks off,
    /// every upstream counts as up (also one kept from a table that had
    /// them on).
    pub fn activate(&self) {
        if self.settings.health.is_none() {
            for p in self.all() {
                p.upstreams.iter().for_each(|u| u.health.reset());
            }
        }
    }

    /// The pool for a connection with server name `sni` and ALPN `alpn`:
    /// the best route's, else the default pool; `None` if neither.
    pub fn pick(&self, sni: Option<&str>, alpn: Option<&[u8]>) -> Option<&Pool> {
        if self.keys.is_empty() {
            return self.default.as_deref();
        }
        match best(self.keys.iter(), sni, alpn) {
            Some(i) => self.routed.get(i).map(|p| &**p),
            None => self.default.as_deref(),
        }
    }

    /// Every pool: the default one first, then the routes' in order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.default.iter().chain(&self.routed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ProxySettings, Route};
    use super::*;
    use std::time::Duration;

    fn addr(i: usize) -> UpstreamAddr {
        format!("u{i}:{}", 1000 + i).parse().expect("HOST:PORT")
    }

    /// Every name of `s` at 127.0.0.1 and its port.
    fn resolved(s: &ProxySettings) -> Resolved {
        s.upstreams
            .iter()
            .chain(s.routes.iter().flat_map(|r| &r.upstreams))
            .map(|u| (u.name.clone(), SocketAddr::from(([127, 0, 0, 1], u.port))))
            .collect()
    }

    fn pools(s: ProxySettings, old: Option<&Pools>) -> Pools {
        let r = resolved(&s);
        let p = Pools::new(s, old, &r);
        p.activate();
        p
    }

    fn settings(n: usize) -> ProxySettings {
        ProxySettings {
            upstreams: (0..n).map(addr).collect(),
            fail_timeout: Duration::from_secs(10),
            ..ProxySettings::default()
        }
    }

    fn pool(n: usize) -> Arc<Pool> {
        let p = pools(settings(n), None);
        let first = Arc::clone(p.all().next().expect("default pool"));
        first
    }

    #[test]
    fn round_robin_starts_one_further_each_time() {
        let p = pool(3);
        let now = Instant::now();
        let firsts: Vec<usize> = (0..4).map(|_| p.order(now)[0]).collect();
        assert_eq!(firsts, [0, 1, 2, 0]);
    }

    #[test]
    fn a_failed_upstream_is_skipped_until_the_fail_timeout_passes() {
        let p = pool(2);
        let now = Instant::now();
        p.mark_down(0, now);
        assert_eq!(p.order(now), [1]);
        assert_eq!(p.order(now + Duration::from_secs(5)), [1]);
        assert_eq!(p.order(now + Duration::from_secs(11)).len(), 2);
    }

    #[test]
    fn when_all_are_down_one_is_still_tried() {
        let p = pool(2);
        let now = Instant::now();
        p.mark_down(0, now);
        p.mark_down(1, now);
        assert_eq!(p.order(now).len(), 1);
    }

    #[test]
    fn an_upstream_down_by_its_health_checks_is_left_out() {
        let mut s = settings(2);
        s.health = Some(super::super::HealthSettings::default());
        let table = pools(s.clone(), None);
        let p = table.all().next().expect("default");
        let rules = s.health.expect("on");
        for _ in 0..rules.fails {
            p.upstreams[1].health.record(false, &rules);
        }
        let now = Instant::now();
        assert_eq!(p.order(now), [0]);
        assert_eq!(p.order(now), [0]);
    }

    #[test]
    fn routes_get_pools_of_their_own_and_the_default_takes_the_rest() {
        let mut s = settings(1);
        s.routes = vec![Route {
            key: "a.test=x:1"
                .parse::<super::super::RouteOption>()
                .expect("p")
                .key()
                .expect("k"),
            upstreams: vec![addr(7)],
        }];
        let table = pools(s, None);
        let label = |n: &str| table.pick(Some(n), None).map(|p| p.label.clone());
        assert_eq!(label("a.test").as_deref(), Some("a.test"));
        assert_eq!(label("other.test").as_deref(), Some(DEFAULT_POOL));
        let mut s = settings(0);
        s.routes = Vec::new();
        assert!(pools(s, None).pick(Some("a.test"), None).is_none());
    }

    #[test]
    fn unchanged_upstreams_keep_their_state_across_a_reload_and_changed_ones_start_fresh() {
        let mut s = settings(2);
        s.health = Some(super::super::HealthSettings::default());
        let old = pools(s.clone(), None);
        let rules = s.health.expect("on");
        for u in &old.all().next().expect("default").upstreams {
            for _ in 0..rules.fails {
                u.health.record(false, &rules);
            }
        }
        let mut moved = resolved(&s);
        moved.insert("u1:1001".into(), SocketAddr::from(([127, 0, 0, 1], 2000)));
        let new = Pools::new(s.clone(), Some(&old), &moved);
        new.activate();
        let p = new.all().next().expect("default");
        assert!(
            !p.upstreams[0].health.is_up(),
            "same name and address: kept"
        );
        assert!(p.upstreams[1].health.is_up(), "new address: fresh");
        // Checks turned off: every upstream counts as up again.
        s.health = None;
        let off = Pools::new(s, Some(&new), &moved);
        assert!(
            !off.all().next().expect("default").upstreams[0]
                .health
                .is_up(),
            "not yet in service: nothing changed"
        );
        off.activate();
        assert!(off.all().next().expect("default").upstreams[0]
            .health
            .is_up());
    }
}
