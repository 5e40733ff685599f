//! Kernel TCP counters around a run (`/proc/net/netstat`, `TcpExt`): the
//! listen-queue overflows and SYN cookies that backlog experiments are about.

use std::collections::BTreeMap;

/// The counters recorded per run.
pub const COUNTERS: [&str; 3] = ["ListenOverflows", "ListenDrops", "SyncookiesSent"];

/// Parses the `TcpExt:` header/value line pair.
pub fn parse(text: &str) -> BTreeMap<String, u64> {
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return BTreeMap::new();
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        .filter(|(n, _)| COUNTERS.contains(n))
        .filter_map(|(n, v)| Some((n.to_string(), v.parse().ok()?)))
        .collect()
}

/// The current counters of this network namespace.
pub fn read() -> BTreeMap<String, u64> {
    std::fs::read_to_string("/proc/net/netstat")
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// `after - before` per counter.
pub fn delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, a)| (k.clone(), a.saturating_sub(*before.get(k).unwrap_or(a))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcpext_counters_are_read_and_subtracted() {
        let t = "TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops\n\
                 TcpExt: 3 0 10 12\nIpExt: InNoRoutes\nIpExt: 0\n";
        let before = parse(t);
        assert_eq!(before["ListenOverflows"], 10);
        assert_eq!(before.len(), 3);
        let mut after = before.clone();
        after.insert("ListenOverflows".into(), 25);
        assert_eq!(delta(&before, &after)["ListenOverflows"], 15);
        assert_eq!(delta(&before, &after)["ListenDrops"], 0);
    }
}
