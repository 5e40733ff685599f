//! ACME's metrics: orders by outcome, and the time left on the managed
//! certificate that expires first. Process-wide (the control thread's),
//! rendered with the shards' families on each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

/// How an order ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A certificate was issued and installed.
    Issued,
    /// The ACME server refused (a problem document, or an invalid order).
    Refused,
    /// The server could not be reached or answered nonsense, or a local
    /// failure (cache write, key generation).
    Failed,
}

impl Outcome {
    const ALL: [Outcome; 3] = [Outcome::Issued, Outcome::Refused, Outcome::Failed];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Issued => "issued",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
        }
    }
}

/// Counters and expiry times, updated by the control thread.
#[derive(Debug, Default)]
pub struct AcmeMetrics {
    orders: [AtomicU64; 3],
    not_after: Mutex<HashMap<String, SystemTime>>,
}

impl AcmeMetrics {
    /// Counts one order.
    pub fn order(&self, o: Outcome) {
        self.orders[o as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Orders ended with `o` so far.
    pub fn orders(&self, o: Outcome) -> u64 {
        self.orders[o as usize].load(Ordering::Relaxed)
    }

    /// Records the expiry of the certificate serving `name`.
    pub fn expires(&self, name: &str, at: SystemTime) {
        self.lock().insert(name.to_owned(), at);
    }

    /// Seconds until the earliest managed certificate expires (negative
    /// once expired); `None` while no name has a certificate.
    pub fn earliest_expiry_secs(&self, now: SystemTime) -> Option<i64> {
        let earliest = self.lock().values().min().copied()?;
        Some(match earliest.duration_since(now) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SystemTime>> {
        self.not_after.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Collector for AcmeMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let mut m = enc.encode_descriptor(
            "acme_orders",
            "ACME orders by outcome (issued, refused by the server, failed to reach it).",
            None,
            MetricType::Counter,
        )?;
        for o in Outcome::ALL {
            ConstCounter::new(self.orders(o))
                .encode(m.encode_family(&[("outcome", o.label())])?)?;
        }
        if let Some(s) = self.earliest_expiry_secs(SystemTime::now()) {
            let m = enc.encode_descriptor(
                "acme_certificate_expiry_seconds",
                "Seconds until the managed certificate that expires first expires.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(s).encode(m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_earliest_expiry_counts_down_and_goes_negative() {
        let m = AcmeMetrics::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(m.earliest_expiry_secs(now), None);
        m.expires("a.test", now + Duration::from_secs(500));
        m.expires("b.test", now + Duration::from_secs(90));
        assert_eq!(m.earliest_expiry_secs(now), Some(90));
        assert_eq!(
            m.earliest_expiry_secs(now + Duration::from_secs(100)),
            Some(-10)
        );
    }

    #[test]
    fn orders_are_counted_per_outcome_in_the_page() {
        let m = std::sync::Arc::new(AcmeMetrics::default());
        m.order(Outcome::Issued);
        m.order(Outcome::Refused);
        m.order(Outcome::Refused);
        let mut reg = prometheus_client::registry::Registry::with_prefix("uringtls");
        reg.register_collector(Box::new(m));
        let mut page = String::new();
        prometheus_client::encoding::text::encode(&mut page, &reg).expect("encode");
        assert!(
            page.contains("uringtls_acme_orders_total{outcome=\"refused\"} 2"),
            "{page}"
        );
        assert!(
            page.contains("uringtls_acme_orders_total{outcome=\"issued\"} 1"),
            "{page}"
        );
        assert!(
            page.contains("uringtls_acme_orders_total{outcome=\"failed\"} 0"),
            "{page}"
        );
    }
}
