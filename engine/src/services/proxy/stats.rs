//! Per-upstream metrics: atomics in each upstream, bumped by every shard
//! and by the health checker, read by the `/metrics` thread through
//! [`ProxyMetrics`] (a process-wide collector, like ACME's).
//!
//! Families (`pool` is `default` or the route's pattern, `upstream` the
//! upstream as configured, `HOST:PORT`):
//! `uringtls_upstream_up`, `uringtls_upstream_connects_total`,
//! `uringtls_upstream_connect_failures_total`,
//! `uringtls_upstream_tls_failures_total`,
//! `uringtls_upstream_health_checks_total{result}`,
//! `uringtls_upstream_sent_bytes_total`, `uringtls_upstream_received_bytes_total`,
//! `uringtls_upstream_active_connections`,
//! `uringtls_upstream_resolve_failures_total`,
//! `uringtls_upstream_address_changes_total`.

use super::pool::{Pools, Upstream};
use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

/// Counters of one upstream of one pool.
#[derive(Debug, Default)]
pub(crate) struct UpstreamStats {
    /// Client connections connected to it.
    pub connects: AtomicU64,
    /// Client connections whose connect to it failed or timed out.
    pub connect_failures: AtomicU64,
    /// Client connections whose TLS handshake with it failed (a refused
    /// certificate included; `upstream_tls`).
    pub tls_failures: AtomicU64,
    checks_passed: AtomicU64,
    checks_failed: AtomicU64,
    /// Plaintext bytes relayed to it (from clients).
    sent: AtomicU64,
    /// Plaintext bytes relayed from it (to clients).
    received: AtomicU64,
    active: AtomicI64,
    /// Re-resolutions of its name that failed (the last address kept).
    pub resolve_failures: AtomicU64,
    /// Times a re-resolution moved it to another address.
    pub address_changes: AtomicU64,
}

impl UpstreamStats {
    /// Adds one to `c`.
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A health check passed (`ok`) or failed.
    pub fn checked(&self, ok: bool) {
        Self::bump(if ok {
            &self.checks_passed
        } else {
            &self.checks_failed
        });
    }

    /// A relay ended having moved `sent` bytes to the upstream and
    /// `received` from it.
    pub fn relayed(&self, sent: u64, received: u64) {
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.received.fetch_add(received, Ordering::Relaxed);
    }

    /// One more connection to it; one less when the guard drops.
    pub fn open(&self) -> Active<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        Active(self)
    }
}

/// A live connection to an upstream (see [`UpstreamStats::open`]).
pub(crate) struct Active<'a>(&'a UpstreamStats);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The collector of the per-upstream families of one proxy, or of the
/// proxies of several listeners (each series then also labelled
/// `listener`); renders the pools in force at each scrape (nothing once a
/// proxy is gone).
#[derive(Debug)]
pub struct ProxyMetrics(Vec<(Option<String>, Weak<ArcSwap<Pools>>)>);

type Series<'a> = Vec<(Vec<(&'static str, &'a str)>, &'a Upstream)>;

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &Series<'_>,
    value: impl Fn(&Upstream) -> u64,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, u) in series {
        ConstCounter::new(value(u)).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &Series<'_>,
    value: impl Fn(&Upstream) -> i64,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, u) in series {
        ConstGauge::new(value(u)).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for ProxyMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let tables: Vec<(Option<&str>, Arc<Pools>)> = self
            .0
            .iter()
            .filter_map(|(l, w)| Some((l.as_deref(), w.upgrade()?.load_full())))
            .collect();
        let series: Series<'_> = tables
            .iter()
            .flat_map(|(listener, pools)| {
                pools.all().flat_map(move |p| {
                    p.upstreams.iter().map(move |u| {
                        let mut labels = Vec::with_capacity(3);
                        if let Some(l) = listener {
                            labels.push(("listener", *l));
                        }
                        labels.push(("pool", p.label.as_str()));
                        labels.push(("upstream", u.name.as_str()));
                        (labels, &**u)
                    })
                })
            })
            .collect();
        if series.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let e = &mut enc;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            e,
            "upstream_up",
            "proxy: 1 if client connections may go to the upstream (up by its health checks, not skipped after a failed connect), else 0.",
            &series,
            |u| i64::from(u.usable(now)),
        )?;
        counter(
            e,
            "upstream_connects",
            "proxy: client connections connected to the upstream.",
            &series,
            |u| load(&u.stats.connects),
        )?;
        counter(
            e,
            "upstream_connect_failures",
            "proxy: client connections whose connect to the upstream failed or timed out (the next upstream was tried).",
            &series,
            |u| load(&u.stats.connect_failures),
        )?;
        counter(
            e,
            "upstream_tls_failures",
            "proxy: client connections whose TLS handshake with the upstream failed (upstream_tls; the kind is in uringtls_upstream_errors_total).",
            &series,
            |u| load(&u.stats.tls_failures),
        )?;
        let mut m = e.encode_descriptor(
            "upstream_health_checks",
            "proxy: active health checks of the upstream by result (pass, fail).",
            None,
            MetricType::Counter,
        )?;
        for (labels, u) in &series {
            for (result, n) in [
                ("pass", &u.stats.checks_passed),
                ("fail", &u.stats.checks_failed),
            ] {
                let mut l = labels.clone();
                l.push(("result", result));
                ConstCounter::new(load(n)).encode(m.encode_family(&l)?)?;
            }
        }
        counter(
            e,
            "upstream_sent_bytes",
            "proxy: plaintext bytes relayed to the upstream, counted when a relay ends normally.",
            &series,
            |u| load(&u.stats.sent),
        )?;
        counter(
            e,
            "upstream_received_bytes",
            "proxy: plaintext bytes relayed from the upstream, counted when a relay ends normally.",
            &series,
            |u| load(&u.stats.received),
        )?;
        gauge(
            e,
            "upstream_active_connections",
            "proxy: client connections relayed to the upstream now.",
            &series,
            |u| u.stats.active.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "upstream_resolve_failures",
            "proxy: re-resolutions of the upstream's name that failed (its last address kept; upstream_resolve_interval).",
            &series,
            |u| load(&u.stats.resolve_failures),
        )?;
        counter(
            e,
            "upstream_address_changes",
            "proxy: times a re-resolution moved the upstream to another address (new connections go there).",
            &series,
            |u| load(&u.stats.address_changes),
        )
    }
}

impl ProxyMetrics {
    /// For a proxy's table.
    pub(super) fn new(table: &Arc<ArcSwap<Pools>>) -> ProxyMetrics {
        ProxyMetrics(vec![(None, Arc::downgrade(table))])
    }

    /// For the proxies of several listeners, each series labelled with its
    /// listener's name (`listener[i]`, `top level`).
    pub fn of_listeners<'a>(
        proxies: impl IntoIterator<Item = (&'a str, &'a super::Proxy)>,
    ) -> ProxyMetrics {
        ProxyMetrics(
            proxies
                .into_iter()
                .map(|(name, p)| (Some(name.to_owned()), Arc::downgrade(&p.pools)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Proxy, ProxySettings, UpstreamAddr};
    use std::net::SocketAddr;

    #[test]
    fn every_upstream_of_every_pool_has_its_series_with_value_labels() {
        let up = |n: &str| n.parse::<UpstreamAddr>().expect("HOST:PORT");
        let local = |_: &str, port: u16| Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]);
        let p = Proxy::with_resolver(
            ProxySettings {
                upstreams: vec![up("backend.local:80")],
                routes: vec![super::super::Route {
                    key: "*.b.test@h2=x:1"
                        .parse::<super::super::RouteOption>()
                        .expect("p")
                        .key()
                        .expect("k"),
                    upstreams: vec![up("10.0.0.1:443")],
                }],
                ..ProxySettings::default()
            },
            std::sync::Arc::new(local),
        )
        .expect("resolves");
        let mut reg = prometheus_client::registry::Registry::with_prefix("uringtls");
        reg.register_collector(Box::new(p.metrics()));
        let mut page = String::new();
        prometheus_client::encoding::text::encode(&mut page, &reg).expect("encode");
        for want in [
            "uringtls_upstream_up{pool=\"default\",upstream=\"backend.local:80\"} 1",
            "uringtls_upstream_up{pool=\"*.b.test@h2\",upstream=\"10.0.0.1:443\"} 1",
            "uringtls_upstream_connects_total{pool=\"default\",upstream=\"backend.local:80\"} 0",
            "uringtls_upstream_health_checks_total{pool=\"default\",upstream=\"backend.local:80\",result=\"fail\"} 0",
            "uringtls_upstream_active_connections{pool=\"*.b.test@h2\",upstream=\"10.0.0.1:443\"} 0",
            "uringtls_upstream_resolve_failures_total{pool=\"default\",upstream=\"backend.local:80\"} 0",
            "uringtls_upstream_address_changes_total{pool=\"default\",upstream=\"backend.local:80\"} 0",
        ] {
            assert!(page.contains(want), "{want} missing from:\n{page}");
        }
        drop(p);
        let mut page = String::new();
        prometheus_client::encoding::text::encode(&mut page, &reg).expect("encode");
        assert!(!page.contains("upstream_up"), "gone with the proxy: {page}");
    }
}
