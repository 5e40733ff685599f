//! The upstreams of the proxy service and their passive health: round
//! robin over the healthy ones, an upstream that failed skipped for the
//! fail timeout.

use super::{ProxySettings, UpstreamAddr};
use crate::io::Conn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// The upstreams and their health; shared by all shards, replaced on reload.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(super) settings: ProxySettings,
    /// Milliseconds since `epoch` until which upstream `i` is skipped.
    down_until: Vec<AtomicU64>,
    next: AtomicUsize,
    epoch: Instant,
}

impl Pool {
    /// A pool with every upstream healthy.
    pub fn new(settings: ProxySettings) -> Pool {
        let down_until = settings
            .upstreams
            .iter()
            .map(|_| AtomicU64::new(0))
            .collect();
        Pool {
            settings,
            down_until,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Upstream indices to try at `now`: the healthy ones in round-robin
    /// order; if all are down, the next one anyway (one attempt, so that
    /// recovery is noticed without waiting out the fail timeout).
    pub fn order(&self, now: Instant) -> Vec<usize> {
        let n = self.down_until.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let t = self.ms(now);
        let healthy: Vec<usize> = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.down_until[i].load(Ordering::Relaxed) <= t)
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
        let t = self.ms(now);
        let until = t.saturating_add(self.settings.fail_timeout.as_millis() as u64);
        self.down_until
            .get(i)
            .is_some_and(|d| d.swap(until, Ordering::Relaxed) <= t)
    }

    /// Connects to the first upstream of [`order`](Self::order) that answers.
    pub(super) async fn connect(&self) -> Option<(Conn, &UpstreamAddr)> {
        for i in self.order(Instant::now()) {
            let up = &self.settings.upstreams[i];
            let attempt = Conn::connect(up.addr);
            let problem =
                match crate::io::time::timeout(self.settings.connect_timeout, attempt).await {
                    Ok(Ok(c)) => {
                        let _ = c.set_nodelay(true);
                        return Some((c, up));
                    }
                    Ok(Err(e)) => format!("upstream connect failed: {e}"),
                    Err(_) => "upstream connect timed out".to_string(),
                };
            if self.mark_down(i, Instant::now()) {
                let skip = self.settings.fail_timeout;
                tracing::warn!(upstream = %up.name, ?skip, "{problem}; skipping it for a while");
            } else {
                tracing::debug!(upstream = %up.name, "{problem}");
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::ProxySettings;
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;

    fn pool(n: usize) -> Pool {
        let upstreams = (0..n)
            .map(|i| UpstreamAddr {
                name: format!("u{i}"),
                addr: SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
            })
            .collect();
        Pool::new(ProxySettings {
            upstreams,
            fail_timeout: Duration::from_secs(10),
            ..ProxySettings::default()
        })
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
}
