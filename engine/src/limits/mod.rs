//! Admission control at accept, before any TLS work.
//!
//! Checks, cheapest and most decisive first: allow/deny lists, the shard's
//! connection cap, the global cap, the per-address concurrent cap, the
//! per-address new-connection rate. A refused connection is closed at once
//! (no TLS state is ever allocated for it) and counted by reason.
//!
//! **Per shard, on purpose.** The per-address tables live on each shard and
//! are touched only by its thread (no locks, no atomics). The kernel spreads
//! one address's connections over the `SO_REUSEPORT` listeners by 4-tuple
//! hash, so an address may hold up to `shards × max_conns_per_ip`
//! connections and open `shards × rate` per second in total. That is the
//! bound that matters for each shard's own memory and CPU, it needs no
//! cross-thread traffic, and with one shard it is exact. A global table
//! (shared atomics indexed by a keyed hash) was considered and rejected for
//! now: exact only without collisions, and the concurrent cap would then
//! refuse innocent addresses that share a bucket with a busy one.
//!
//! The **global cap** is the one shared counter: an `AtomicUsize`, touched
//! once at accept and once at close, and only when a global cap is set.
//! Measured here (`global_count_cost` below, release build): ~10 ns per
//! acquire+release pair on one thread, ~15 ns with both cores hammering
//! the same counter, against a full TLS handshake's ~60–150 µs of CPU.
//!
//! IPv6 clients are keyed by their /64 by default (`ipv6_prefix`): one host
//! usually holds a whole /64, so keying on full addresses would let it
//! sidestep the per-address limits.
//!
//! The **handshake budget** (`max_handshakes`) is not a refusal: a shard
//! with that many handshakes in progress does not accept at all until one
//! ends or the oldest is stale (the accept loop in `shard`, see
//! `shard::handshakes`), so waiting connections stay in the kernel's
//! backlog and cost no memory here.
//!
//! Everything that depends on time takes `now` as a parameter, so the tests
//! move the clock instead of sleeping.

pub mod cidr;

pub use cidr::{AccessList, Cidr, ListVerdict};

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Default IPv6 prefix length used as the per-address key.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;
/// Default burst of the per-address rate limit (connections).
pub const DEFAULT_CONN_BURST_PER_IP: u32 = 20;
/// Default handshakes in progress per shard (see [`LimitSettings::max_handshakes`]).
pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;

/// Admission settings shared by every shard.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSettings {
    /// Allow/deny lists.
    pub access: AccessList,
    /// Concurrent connections per client address, per shard. `None`: no cap.
    pub max_conns_per_ip: Option<u32>,
    /// New connections per second per client address, per shard. `None`: no limit.
    pub conn_rate_per_ip: Option<f64>,
    /// Connections an address may open back to back before the rate applies.
    pub conn_burst_per_ip: u32,
    /// IPv6 addresses are keyed by this prefix length.
    pub ipv6_prefix: u8,
    /// Connections over all shards. `None`: only the per-shard cap applies.
    pub max_conns_total: Option<usize>,
    /// Handshakes in progress per shard (accepted, handshake not finished).
    /// At the limit the shard stops accepting until one ends, or until the
    /// oldest has run a tenth of the handshake timeout (then the next
    /// connection takes its slot): new connections wait in the listen
    /// backlog, holding no memory of ours.
    /// Bounds what unauthenticated peers can pin per shard to
    /// `max_handshakes` times what one stalled handshake holds (its input
    /// is capped by `tls::session::MAX_HELD`; ~74 KiB measured for a
    /// stalled 64 KiB ClientHello).
    pub max_handshakes: usize,
    /// Load balancers whose connections start with a PROXY protocol header
    /// (`accept_proxy`): a connection from one of these networks is
    /// admitted on the client address its header names, after the header
    /// is read (see `shard::proxy_in`). Empty: none (the default).
    pub accept_proxy: Vec<Cidr>,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            access: AccessList::default(),
            max_conns_per_ip: None,
            conn_rate_per_ip: None,
            conn_burst_per_ip: DEFAULT_CONN_BURST_PER_IP,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            max_conns_total: None,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            accept_proxy: Vec::new(),
        }
    }
}

/// Which limit refused a connection (the `limit` label of the metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// In the deny list.
    Denied,
    /// Not in the allow list.
    NotAllowed,
    /// The shard's connection cap.
    ShardCap,
    /// The cap over all shards.
    GlobalCap,
    /// The per-address concurrent cap.
    PerIpConns,
    /// The per-address new-connection rate.
    PerIpRate,
    /// Plain HTTP sent to the TLS port (answered `400`, then closed); counted
    /// after accept, when the first bytes arrive.
    PlainHttp,
    /// A connection from an `accept_proxy` network without a valid PROXY
    /// header, or a PROXY header from any other address; counted after
    /// accept, when the first bytes arrive.
    ProxyHeader,
}

impl Refusal {
    /// Every reason, in label order.
    pub const ALL: [Refusal; 8] = [
        Refusal::Denied,
        Refusal::NotAllowed,
        Refusal::ShardCap,
        Refusal::GlobalCap,
        Refusal::PerIpConns,
        Refusal::PerIpRate,
        Refusal::PlainHttp,
        Refusal::ProxyHeader,
    ];

    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Denied => "deny_list",
            Refusal::NotAllowed => "allow_list",
            Refusal::ShardCap => "shard_cap",
            Refusal::GlobalCap => "global_cap",
            Refusal::PerIpConns => "per_ip_conns",
            Refusal::PerIpRate => "per_ip_rate",
            Refusal::PlainHttp => "plain_http",
            Refusal::ProxyHeader => "proxy_header",
        }
    }

    /// Index into per-reason arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl LimitSettings {
    /// Whether a connection from `ip` comes from a load balancer that
    /// sends a PROXY header (`accept_proxy`).
    pub fn is_balancer(&self, ip: IpAddr) -> bool {
        self.accept_proxy.iter().any(|c| c.contains(ip))
    }
}

/// The connection count over all shards.
#[derive(Debug, Default)]
pub struct GlobalCount(AtomicUsize);

impl GlobalCount {
    /// Takes a slot if fewer than `max` are taken.
    pub fn try_acquire(&self, max: usize) -> bool {
        // Relaxed: the count guards no other memory; overshoot is undone at once.
        if self.0.fetch_add(1, Ordering::Relaxed) >= max {
            self.0.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Gives a slot back.
    pub fn release(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Current count.
    #[cfg(test)]
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// Per-address state on one shard.
#[derive(Debug, Clone, Copy)]
struct Entry {
    conns: u32,
    /// GCRA "theoretical arrival time" (since the shard's epoch).
    tat: Duration,
}

/// One shard's admission state.
#[derive(Debug)]
pub struct ShardLimits {
    global: Arc<GlobalCount>,
    table: RefCell<HashMap<u128, Entry>>,
    next_sweep: std::cell::Cell<usize>,
}

/// What an admitted connection holds; give it back with [`ShardLimits::release`].
#[derive(Debug)]
#[must_use]
pub struct Admitted {
    key: Option<u128>,
    global: bool,
}

const MIN_SWEEP: usize = 1024;

impl ShardLimits {
    /// State for one shard; `global` is shared by all shards (touched only
    /// while a global cap is set).
    pub fn new(global: Arc<GlobalCount>) -> ShardLimits {
        ShardLimits {
            global,
            table: RefCell::new(HashMap::new()),
            next_sweep: std::cell::Cell::new(MIN_SWEEP),
        }
    }

    /// Decides, under settings `s` (the ones in force: they may change on
    /// reload), on a new connection from `ip` while the shard holds `active`
    /// connections (of at most `shard_cap`). `now` is time since any fixed
    /// epoch of this shard.
    pub fn admit(
        &self,
        s: &LimitSettings,
        ip: IpAddr,
        active: usize,
        shard_cap: usize,
        now: Duration,
    ) -> Result<Admitted, Refusal> {
        if !s.access.is_empty() {
            match s.access.check(ip) {
                ListVerdict::Admit => {}
                ListVerdict::Denied => return Err(Refusal::Denied),
                ListVerdict::NotAllowed => return Err(Refusal::NotAllowed),
            }
        }
        if active >= shard_cap {
            return Err(Refusal::ShardCap);
        }
        let per_ip = s.max_conns_per_ip.is_some() || s.conn_rate_per_ip.is_some();
        let key = if per_ip {
            Some(self.check_ip(s, key_of(ip, s.ipv6_prefix), now)?)
        } else {
            None
        };
        let global = match s.max_conns_total {
            Some(max) => {
                if !self.global.try_acquire(max) {
                    if let Some(k) = key {
                        self.release_key(k, now);
                    }
                    return Err(Refusal::GlobalCap);
                }
                true
            }
            None => false,
        };
        Ok(Admitted { key, global })
    }

    /// Per-address cap, then rate (GCRA). Counts the connection on success.
    fn check_ip(&self, s: &LimitSettings, key: u128, now: Duration) -> Result<u128, Refusal> {
        let mut table = self.table.borrow_mut();
        let e = table.entry(key).or_insert(Entry { conns: 0, tat: now });
        if s.max_conns_per_ip.is_some_and(|max| e.conns >= max) {
            return Err(Refusal::PerIpConns);
        }
        if let Some(rate) = s.conn_rate_per_ip {
            let interval = Duration::from_secs_f64(1.0 / rate);
            let tolerance = interval * s.conn_burst_per_ip.saturating_sub(1);
            let tat = e.tat.max(now);
            if tat - now > tolerance {
                return Err(Refusal::PerIpRate);
            }
            e.tat = tat + interval;
        }
        e.conns += 1;
        drop(table);
        self.maybe_sweep(now);
        Ok(key)
    }

    /// Gives back what [`admit`](Self::admit) took, when the connection ends.
    pub fn release(&self, a: Admitted, now: Duration) {
        if let Some(k) = a.key {
            self.release_key(k, now);
        }
        if a.global {
            self.global.release();
        }
    }

    fn release_key(&self, key: u128, now: Duration) {
        let mut table = self.table.borrow_mut();
        if let Some(e) = table.get_mut(&key) {
            e.conns = e.conns.saturating_sub(1);
            if e.conns == 0 && e.tat <= now {
                table.remove(&key);
            }
        }
    }

    /// Drops entries with no connection whose rate state has fully
    /// recovered. Amortised: runs when the table doubles past the last sweep.
    fn maybe_sweep(&self, now: Duration) {
        let mut table = self.table.borrow_mut();
        if table.len() < self.next_sweep.get() {
            return;
        }
        table.retain(|_, e| e.conns > 0 || e.tat > now);
        self.next_sweep.set((table.len() * 2).max(MIN_SWEEP));
    }

    /// Addresses tracked on this shard (for tests).
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.table.borrow().len()
    }
}

/// The per-address key: IPv4 as is, IPv6 cut to `v6_prefix` bits.
fn key_of(ip: IpAddr, v6_prefix: u8) -> u128 {
    match ip.to_canonical() {
        // The v4-mapped form: no canonical IPv6 key can take it.
        IpAddr::V4(a) => u128::from(u32::from(a)) | (0xffff << 32),
        IpAddr::V6(a) => {
            let b = u128::from(a);
            match v6_prefix {
                0 => 0,
                p if p >= 128 => b,
                p => b & (u128::MAX << (128 - u32::from(p))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One shard's state with the settings in force.
    struct Shard {
        s: LimitSettings,
        l: ShardLimits,
    }

    impl Shard {
        fn admit(
            &self,
            ip: IpAddr,
            active: usize,
            cap: usize,
            now: Duration,
        ) -> Result<Admitted, Refusal> {
            self.l.admit(&self.s, ip, active, cap, now)
        }

        fn release(&self, a: Admitted, now: Duration) {
            self.l.release(a, now)
        }

        fn tracked(&self) -> usize {
            self.l.tracked()
        }
    }

    fn limits(f: impl FnOnce(&mut LimitSettings)) -> Shard {
        let mut s = LimitSettings::default();
        f(&mut s);
        Shard {
            s,
            l: ShardLimits::new(Arc::default()),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    const T0: Duration = Duration::from_secs(100);

    #[test]
    fn per_ip_cap_refuses_the_next_connection_from_that_address_only() {
        let l = limits(|s| s.max_conns_per_ip = Some(2));
        let a1 = l.admit(ip("127.0.0.1"), 0, 100, T0).expect("1st");
        let _a2 = l.admit(ip("127.0.0.1"), 1, 100, T0).expect("2nd");
        assert_eq!(
            l.admit(ip("127.0.0.1"), 2, 100, T0).unwrap_err(),
            Refusal::PerIpConns
        );
        let _b = l.admit(ip("127.0.0.2"), 2, 100, T0).expect("other address");
        l.release(a1, T0);
        let _a3 = l.admit(ip("127.0.0.1"), 2, 100, T0).expect("after a close");
    }

    #[test]
    fn rate_limit_allows_the_burst_then_one_per_interval() {
        let l = limits(|s| {
            s.conn_rate_per_ip = Some(10.0);
            s.conn_burst_per_ip = 3;
        });
        let a = ip("192.0.2.1");
        for i in 0..3 {
            let t = l
                .admit(a, 0, 100, T0)
                .unwrap_or_else(|e| panic!("burst {i}: {e:?}"));
            l.release(t, T0);
        }
        assert_eq!(l.admit(a, 0, 100, T0).unwrap_err(), Refusal::PerIpRate);
        let t = l
            .admit(a, 0, 100, T0 + Duration::from_millis(100))
            .expect("one interval later");
        l.release(t, T0 + Duration::from_millis(100));
        assert_eq!(
            l.admit(a, 0, 100, T0 + Duration::from_millis(100))
                .unwrap_err(),
            Refusal::PerIpRate
        );
        assert!(
            l.admit(ip("192.0.2.2"), 0, 100, T0).is_ok(),
            "other addresses have their own budget"
        );
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_prefix() {
        let l = limits(|s| s.max_conns_per_ip = Some(1));
        let _a = l.admit(ip("2001:db8::1"), 0, 100, T0).expect("first");
        assert_eq!(
            l.admit(ip("2001:db8::2"), 0, 100, T0).unwrap_err(),
            Refusal::PerIpConns,
            "same /64"
        );
        assert!(
            l.admit(ip("2001:db8:0:1::1"), 0, 100, T0).is_ok(),
            "another /64"
        );
    }

    #[test]
    fn lists_and_caps_refuse_with_their_reason() {
        let l = limits(|s| {
            s.access.deny = vec!["127.0.0.2".parse().expect("cidr")];
            s.access.allow = vec!["127.0.0.0/8".parse().expect("cidr")];
        });
        assert_eq!(
            l.admit(ip("127.0.0.2"), 0, 10, T0).unwrap_err(),
            Refusal::Denied
        );
        assert_eq!(
            l.admit(ip("10.0.0.1"), 0, 10, T0).unwrap_err(),
            Refusal::NotAllowed
        );
        assert_eq!(
            l.admit(ip("127.0.0.1"), 10, 10, T0).unwrap_err(),
            Refusal::ShardCap
        );
        assert!(l.admit(ip("127.0.0.1"), 9, 10, T0).is_ok());
    }

    #[test]
    fn global_cap_is_shared_and_undone_on_refusal() {
        let s = LimitSettings {
            max_conns_total: Some(2),
            max_conns_per_ip: Some(5),
            ..LimitSettings::default()
        };
        let g = Arc::new(GlobalCount::default());
        let shard = |s: &LimitSettings| Shard {
            s: s.clone(),
            l: ShardLimits::new(g.clone()),
        };
        let (a, b) = (shard(&s), shard(&s));
        let x = a.admit(ip("127.0.0.1"), 0, 10, T0).expect("a");
        let _y = b.admit(ip("127.0.0.1"), 0, 10, T0).expect("b");
        assert_eq!(
            a.admit(ip("127.0.0.3"), 1, 10, T0).unwrap_err(),
            Refusal::GlobalCap
        );
        assert_eq!(g.get(), 2);
        assert_eq!(
            a.tracked(),
            1,
            "the refused address's per-IP slot was given back"
        );
        a.release(x, T0);
        assert!(b.admit(ip("127.0.0.3"), 1, 10, T0).is_ok());
    }

    /// `cargo test -p uringtls --release --lib global_count_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn global_count_cost() {
        const N: u32 = 10_000_000;
        for threads in [1, 2] {
            let g = Arc::new(GlobalCount::default());
            let t = std::time::Instant::now();
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    let g = g.clone();
                    std::thread::spawn(move || {
                        for _ in 0..N {
                            if g.try_acquire(usize::MAX) {
                                g.release();
                            }
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().expect("join"));
            let ns = t.elapsed().as_nanos() as f64 / f64::from(N);
            println!("{threads} thread(s): {ns:.1} ns per acquire+release pair");
        }
    }

    #[test]
    fn new_settings_apply_to_the_next_connection() {
        let mut l = limits(|_| {});
        assert!(l.admit(ip("192.0.2.7"), 0, 10, T0).is_ok());
        l.s.access.deny = vec!["192.0.2.0/24".parse().expect("cidr")];
        assert_eq!(
            l.admit(ip("192.0.2.7"), 0, 10, T0).unwrap_err(),
            Refusal::Denied
        );
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let l = limits(|s| s.conn_rate_per_ip = Some(1000.0));
        for i in 0..5000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let t = l.admit(a, 0, 100_000, T0).expect("admit");
            l.release(t, T0);
        }
        let later = T0 + Duration::from_secs(1);
        let t = l.admit(ip("192.0.2.9"), 0, 100_000, later).expect("admit");
        l.release(t, later);
        for i in 0..MIN_SWEEP as u32 * 4 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            let t = l.admit(a, 0, 100_000, later).expect("admit");
            l.release(t, later);
        }
        assert!(l.tracked() < 5000, "old entries swept: {}", l.tracked());
    }
}
