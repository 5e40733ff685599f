//! Prometheus families built from shard snapshots (prometheus-client's
//! custom-collector API, OpenMetrics text; rewritten as the Prometheus text
//! format 0.0.4 for scrapers that ask for it). Every family carries a
//! `shard` label; sum over it for the process. Names are listed, with their
//! meaning, in `docs/operations.md`.

use super::ShardSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;

/// One scrape's worth of shard snapshots.
#[derive(Debug)]
pub struct Scrape(pub Vec<ShardSnapshot>);

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// Writes one family: `rows` are (labels, value) for every shard.
fn family<'a, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl Iterator<Item = (Labels<'a>, M)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in rows {
        metric.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Scrape {
    fn counters<'a>(
        &'a self,
        enc: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        f: impl Fn(&'a ShardSnapshot, &'a str) -> Vec<(Labels<'a>, u64)>,
        ids: &'a [String],
    ) -> fmt::Result {
        let rows = self
            .0
            .iter()
            .zip(ids)
            .flat_map(|(s, id)| f(s, id))
            .map(|(l, v)| (l, ConstCounter::new(v)));
        family(enc, name, help, MetricType::Counter, rows)
    }
}

fn by<'a, K: AsRef<str> + 'a>(
    id: &'a str,
    key: &'static str,
    v: &'a [(K, u64)],
) -> Vec<(Labels<'a>, u64)> {
    v.iter()
        .map(|(k, n)| (vec![("shard", id), (key, k.as_ref())], *n))
        .collect()
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let ids: Vec<String> = self.0.iter().map(|s| s.shard.to_string()).collect();
        let one = |v: u64, id| vec![(vec![("shard", id)], v)];
        let e = &mut enc;
        self.counters(
            e,
            "connections_accepted",
            "Connections accepted (admitted or refused).",
            |s, id| one(s.accepted, id),
            &ids,
        )?;
        let active = self.0.iter().zip(&ids).map(|(s, id)| {
            (
                vec![("shard", id.as_str())],
                ConstGauge::new(s.active as i64),
            )
        });
        family(
            e,
            "connections_active",
            "Connections open now.",
            MetricType::Gauge,
            active,
        )?;
        self.counters(
            e,
            "connections_closed",
            "Admitted connections ended, by reason.",
            |s, id| by(id, "reason", &s.closed),
            &ids,
        )?;
        self.counters(
            e,
            "connections_refused",
            "Connections refused at accept, by limit.",
            |s, id| by(id, "limit", &s.refused),
            &ids,
        )?;
        self.counters(
            e,
            "handshakes",
            "TLS handshakes completed, by kind.",
            |s, id| {
                vec![
                    (vec![("shard", id), ("kind", "full")], s.full_handshakes),
                    (
                        vec![("shard", id), ("kind", "resumed")],
                        s.resumed_handshakes,
                    ),
                ]
            },
            &ids,
        )?;
        self.counters(
            e,
            "handshakes_failed",
            "TLS handshakes that failed, by alert or error kind (`timeout`: handshake timeout).",
            |s, id| by(id, "reason", &s.failed_handshakes),
            &ids,
        )?;
        {
            let mut m = e.encode_descriptor(
                "handshake_duration_seconds",
                "Time from accept to handshake complete (includes network round trips).",
                None,
                MetricType::Histogram,
            )?;
            for (s, id) in self.0.iter().zip(&ids) {
                let labels: Labels = vec![("shard", id.as_str())];
                m.encode_family(&labels)?.encode_histogram::<Labels>(
                    s.handshake_seconds_sum,
                    s.handshake_count(),
                    &s.handshake_buckets,
                    None,
                )?;
            }
        }
        self.counters(
            e,
            "received_bytes",
            "Ciphertext bytes received from clients.",
            |s, id| one(s.bytes_in, id),
            &ids,
        )?;
        self.counters(
            e,
            "sent_bytes",
            "Ciphertext bytes sent to clients.",
            |s, id| one(s.bytes_out, id),
            &ids,
        )?;
        self.counters(
            e,
            "tls_sessions",
            "Completed handshakes by protocol version and cipher suite.",
            |s, id| {
                s.sessions
                    .iter()
                    .map(|(v, c, n)| {
                        (
                            vec![
                                ("shard", id),
                                ("version", v.as_str()),
                                ("cipher", c.as_str()),
                            ],
                            *n,
                        )
                    })
                    .collect()
            },
            &ids,
        )?;
        self.counters(
            e,
            "session_cache_lookups",
            "Session-cache lookups (TLS 1.2 session IDs, stateful resumption), by result.",
            |s, id| {
                vec![
                    (vec![("shard", id), ("result", "hit")], s.tls.cache_hits),
                    (vec![("shard", id), ("result", "miss")], s.tls.cache_misses),
                ]
            },
            &ids,
        )?;
        self.counters(
            e,
            "tickets",
            "Session tickets issued, and presented tickets accepted or rejected.",
            |s, id| {
                vec![
                    (
                        vec![("shard", id), ("event", "issued")],
                        s.tls.tickets_issued,
                    ),
                    (
                        vec![("shard", id), ("event", "accepted")],
                        s.tls.tickets_accepted,
                    ),
                    (
                        vec![("shard", id), ("event", "rejected")],
                        s.tls.tickets_rejected,
                    ),
                ]
            },
            &ids,
        )?;
        self.counters(
            e,
            "proxied_connections",
            "proxy: connections handed to an upstream.",
            |s, id| one(s.proxied, id),
            &ids,
        )?;
        self.counters(
            e,
            "upstream_errors",
            "Proxy backend errors, by kind.",
            |s, id| by(id, "kind", &s.upstream_errors),
            &ids,
        )?;
        self.counters(
            e,
            "fd_exhaustion_episodes",
            "Times accept paused because the process ran out of file descriptors.",
            |s, id| one(s.fd_exhaustion_episodes, id),
            &ids,
        )?;
        self.counters(
            e,
            "service_panics",
            "Service panics contained to their connection.",
            |s, id| one(s.panics, id),
            &ids,
        )?;
        self.memory_and_budget(e, &ids)?;
        let (applied, refused) = super::reloads::counts();
        family(
            e,
            "reloads",
            "Reloads (SIGHUP or a watched file's change), by result; a refused one keeps the previous configuration.",
            MetricType::Counter,
            [("applied", applied), ("refused", refused)]
                .map(|(r, n)| (vec![("result", r)], ConstCounter::new(n)))
                .into_iter(),
        )?;
        let cpu = self.0.iter().zip(&ids).map(|(s, id)| {
            (
                vec![("shard", id.as_str())],
                ConstCounter::new(s.cpu_seconds),
            )
        });
        family(
            e,
            "shard_cpu_seconds",
            "CPU time (user+system) of the shard's thread, getrusage(RUSAGE_THREAD).",
            MetricType::Counter,
            cpu,
        )
    }
}

/// The exposition formats served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (`application/openmetrics-text`).
    OpenMetrics,
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Prometheus,
}

impl Format {
    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The format a scraper's `Accept` header asks for: OpenMetrics when it
    /// ranks `application/openmetrics-text` at least as high as any other
    /// type it accepts (as Prometheus does when OpenMetrics is enabled),
    /// else the Prometheus text format (also without `Accept`, or with
    /// only `*/*`, as Prometheus's own Go client answers).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut om, mut other) = (0.0f64, 0.0f64);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            if media == "application/openmetrics-text" {
                om = om.max(q);
            } else if !media.is_empty() {
                other = other.max(q);
            }
        }
        if om > 0.0 && om >= other {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

impl Scrape {
    /// Memory trims and the handshake budget (`shard::trim`, `max_handshakes`).
    fn memory_and_budget(&self, e: &mut DescriptorEncoder, ids: &[String]) -> fmt::Result {
        let one = |v: u64, id| vec![(vec![("shard", id)], v)];
        self.counters(
            e,
            "memory_trims",
            "Times freed heap memory was returned to the OS (malloc_trim) after connections closed.",
            |s, id| one(s.memory_trims, id),
            ids,
        )?;
        let hs = self.0.iter().zip(ids).map(|(s, id)| {
            (
                vec![("shard", id.as_str())],
                ConstGauge::new(s.handshakes_in_progress as i64),
            )
        });
        family(
            e,
            "handshakes_in_progress",
            "TLS handshakes in progress now (bounded by max_handshakes).",
            MetricType::Gauge,
            hs,
        )?;
        let backend = self.0.iter().zip(ids).map(|(s, id)| {
            (
                vec![("shard", id.as_str()), ("backend", s.io_backend)],
                ConstGauge::new(1),
            )
        });
        family(
            e,
            "io_backend",
            "The I/O backend the shard runs on (uring, tokio-uring or epoll): 1.",
            MetricType::Gauge,
            backend,
        )?;
        self.counters(
            e,
            "handshake_budget_pauses",
            "Times accept paused because max_handshakes handshakes were in progress.",
            |s, id| one(s.handshake_budget_pauses, id),
            ids,
        )?;
        self.counters(
            e,
            "handshake_evictions",
            "Handshakes in progress for over a tenth of the handshake timeout, cut off to make room within max_handshakes.",
            |s, id| one(s.handshake_evictions, id),
            ids,
        )?;
        self.counters(
            e,
            "listener_connections_accepted",
            "Connections accepted (admitted or refused), per listener (name and address).",
            |s, id| {
                s.listeners
                    .iter()
                    .map(|(name, addr, n)| {
                        (
                            vec![
                                ("shard", id),
                                ("listener", name.as_str()),
                                ("addr", addr.as_str()),
                            ],
                            *n,
                        )
                    })
                    .collect()
            },
            ids,
        )
    }
}

/// Renders snapshots as an OpenMetrics/Prometheus text exposition.
#[cfg(test)]
pub fn render(snaps: Vec<ShardSnapshot>) -> String {
    render_with(snaps, Vec::new())
}

/// Renders snapshots and process-wide families (see
/// [`MetricsHub::add_collector`](super::MetricsHub::add_collector)).
pub fn render_with(snaps: Vec<ShardSnapshot>, extra: Vec<Box<dyn Collector>>) -> String {
    let mut reg = Registry::with_prefix("uringtls");
    reg.register_collector(Box::new(Scrape(snaps)));
    reg.register_collector(Box::new(crate::process::sandbox::Metrics));
    for c in extra {
        reg.register_collector(c);
    }
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug
    // in a label, and an empty page is the safe answer.
    if prometheus_client::encoding::text::encode(&mut out, &reg).is_err() {
        out.clear();
    }
    out
}

/// Renders snapshots in `format`.
#[cfg(test)]
pub fn render_as(snaps: Vec<ShardSnapshot>, format: Format) -> String {
    render_as_with(snaps, Vec::new(), format)
}

/// Renders snapshots and process-wide families in `format`.
pub fn render_as_with(
    snaps: Vec<ShardSnapshot>,
    extra: Vec<Box<dyn Collector>>,
    format: Format,
) -> String {
    let om = render_with(snaps, extra);
    match format {
        Format::OpenMetrics => om,
        Format::Prometheus => to_prometheus_text(&om),
    }
}

/// Rewrites our OpenMetrics page as Prometheus text 0.0.4. The samples
/// are the same; what differs is that a counter family's `# HELP` and
/// `# TYPE` lines name its samples (`x_total`), not the family (`x`), and
/// that there is no `# EOF` (nor `# UNIT`, which we do not use).
fn to_prometheus_text(om: &str) -> String {
    let mut out = String::with_capacity(om.len() + 512);
    // A family's HELP line, held until its TYPE line says what it is.
    let mut help: Option<(&str, &str)> = None;
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').or(Some((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_string(),
            };
            if let Some((_, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shard_gets_its_own_labelled_series() {
        let mut a = ShardSnapshot {
            shard: 0,
            accepted: 5,
            cpu_seconds: 1.5,
            ..Default::default()
        };
        a.refused = vec![("deny_list", 2)];
        a.sessions = vec![("TLSv1_3".into(), "TLS13_AES_128_GCM_SHA256".into(), 3)];
        a.handshake_buckets = vec![(0.001, 2), (f64::INFINITY, 1)];
        let b = ShardSnapshot {
            shard: 1,
            accepted: 1,
            ..Default::default()
        };
        let text = render(vec![a, b]);
        assert!(
            text.contains("uringtls_connections_accepted_total{shard=\"0\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("uringtls_connections_accepted_total{shard=\"1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("uringtls_shard_cpu_seconds_total{shard=\"0\"} 1.5\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "uringtls_connections_refused_total{shard=\"0\",limit=\"deny_list\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("cipher=\"TLS13_AES_128_GCM_SHA256\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("uringtls_handshake_duration_seconds_count{shard=\"0\"} 3\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn prometheus_text_names_counter_families_by_their_samples_and_has_no_eof() {
        let a = ShardSnapshot {
            shard: 0,
            accepted: 5,
            ..Default::default()
        };
        let text = render_as(vec![a], Format::Prometheus);
        assert!(
            text.contains(
                "# HELP uringtls_connections_accepted_total Connections accepted (admitted or refused).\n\
                 # TYPE uringtls_connections_accepted_total counter\n\
                 uringtls_connections_accepted_total{shard=\"0\"} 5\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("# TYPE uringtls_connections_active gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE uringtls_handshake_duration_seconds histogram\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        // Every family has its HELP line, right before its TYPE line.
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().expect("name");
                assert!(
                    i > 0 && lines[i - 1].starts_with(&format!("# HELP {name} ")),
                    "no HELP for {name}:\n{text}"
                );
            }
        }
    }

    #[test]
    fn the_accept_header_chooses_the_format() {
        use Format::*;
        assert_eq!(Format::negotiate(None), Prometheus);
        assert_eq!(Format::negotiate(Some("*/*")), Prometheus);
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4")),
            Prometheus
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=1.0.0")),
            OpenMetrics
        );
        // What Prometheus 2.x and 3.x send with OpenMetrics enabled.
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
            )),
            OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
            )),
            OpenMetrics
        );
        // ... and without it.
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4;q=1,*/*;q=0.1")),
            Prometheus
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0, text/plain")),
            Prometheus
        );
    }
}
