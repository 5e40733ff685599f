//! The final text summary on stdout.

use super::{fmt_secs, fmt_si, fmt_us, LatencyStats, Report};
use crate::stats::Metric;
use std::fmt::Write;

/// Renders the summary.
pub fn render(r: &Report<'_>) -> String {
    let p = r.plan;
    let o = r.outcome;
    let t = &o.total;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} https://{}{} ({}): {} measured, {}, {} thread{}",
        p.name,
        p.target.host_header(),
        p.target.path,
        p.target.addr,
        fmt_secs(o.measured),
        p.load_model(),
        p.threads,
        if p.threads == 1 { "" } else { "s" }
    );
    if let Some(f) = &p.fleet {
        let share = |mine: String, all: String, what: &str| format!("{mine} of {all} {what}");
        let mut parts = vec![share(
            p.connections.to_string(),
            f.connections.to_string(),
            "connections",
        )];
        if let (Some(mine), Some(all)) = (p.rate, f.rate) {
            parts.push(share(mine.to_string(), all.to_string(), "ops/s"));
        }
        if let (Some(mine), Some(all)) = (p.requests, f.requests) {
            parts.push(share(mine.to_string(), all.to_string(), "operations"));
        }
        let _ = writeln!(
            s,
            "  worker:       {} of the fleet: {}",
            f.tag,
            parts.join(", ")
        );
    }
    let n = r.negotiated;
    let _ = writeln!(
        s,
        "  TLS:          {} {} {}{}; handshake: {} bytes received (probe)",
        n.version,
        n.cipher_suite,
        n.group,
        n.alpn
            .as_deref()
            .map(|a| format!(", ALPN {a}"))
            .unwrap_or_default(),
        n.handshake_bytes_in
    );
    let _ = writeln!(
        s,
        "  connections:  {} requested, {} achieved (most open at once)",
        p.connections, o.peak_connections
    );
    let unit = op_unit(p.name);
    let _ = writeln!(
        s,
        "  operations:   {} ok, {} errors",
        t.ops,
        t.error_count()
    );
    let _ = writeln!(s, "  rate:         {} {unit}", fmt_si(r.ops_per_sec()));
    let (mb_in, mb_out) = r.mb_per_sec();
    let _ = writeln!(
        s,
        "  throughput:   {mb_in:.2} MB/s in, {mb_out:.2} MB/s out (plaintext)"
    );
    if let Some((records, size)) = r.records_in().filter(|_| p.name == "bulk") {
        let _ = writeln!(
            s,
            "  TLS records:  ~{records} received, ~{size:.0} plaintext bytes each (estimated from ciphertext overhead)"
        );
    }
    if let Some(share) = r.resumed_share().filter(|_| p.workload.resumes()) {
        let _ = writeln!(
            s,
            "  handshakes:   {} full, {} resumed ({:.1}% resumed)",
            t.full_handshakes,
            t.resumed_handshakes,
            share * 100.0
        );
    }
    if !p.workload.resumes() {
        let _ = writeln!(
            s,
            "  handshakes:   {} full, {} resumed",
            t.full_handshakes, t.resumed_handshakes
        );
    }
    s.push('\n');
    let _ = writeln!(
        s,
        "  latency          {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "p50", "p90", "p99", "p99.9", "p99.99", "max", "count"
    );
    for m in Metric::ALL {
        let h = t.hist(m);
        if h.is_empty() {
            continue;
        }
        let l = LatencyStats::of(h);
        let label = match (m, p.rate.is_some()) {
            (Metric::Total, true) => "total (corr.)",
            (Metric::Uncorrected, _) => "total (uncorr.)",
            _ => m.name(),
        };
        let _ = writeln!(
            s,
            "  {label:<15} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            fmt_us(l.p50_us as f64),
            fmt_us(l.p90_us as f64),
            fmt_us(l.p99_us as f64),
            fmt_us(l.p99_9_us as f64),
            fmt_us(l.p99_99_us as f64),
            fmt_us(l.max_us as f64),
            l.count
        );
    }
    if !t.errors.is_empty() {
        s.push_str("\n  errors:\n");
        let mut by_count: Vec<_> = t.errors.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1));
        for (class, count) in by_count {
            let _ = writeln!(s, "    {count:>10}  {class}");
        }
    }
    s.push('\n');
    let cpu = &o.process_cpu;
    let busy: Vec<String> = r
        .cpu_busy()
        .iter()
        .map(|(c, b)| format!("{c} {:.0}%", b * 100.0))
        .collect();
    let _ = writeln!(
        s,
        "  client CPU:   {:.2} cores (user {}, system {}); busy {}",
        r.client_cores(),
        fmt_secs(cpu.user),
        fmt_secs(cpu.system),
        busy.join(" ")
    );
    match (&o.server_cpu, r.server_us_per_op()) {
        (Some(Ok(cpu)), Some(per_op)) => {
            let _ = writeln!(
                s,
                "  server CPU:   {per_op:.1} us per {} ({} over {}, from {})",
                unit.trim_end_matches("/s"),
                fmt_secs(*cpu),
                fmt_secs(o.measured),
                r.server_source.as_deref().unwrap_or("?")
            );
        }
        (Some(Err(e)), _) => {
            let _ = writeln!(s, "  server CPU:   unknown: {e}");
        }
        _ => {}
    }
    for w in warnings(r) {
        let _ = writeln!(s, "  WARNING: {w}");
    }
    s
}

/// Warnings worth printing with any output format.
pub fn warnings(r: &Report<'_>) -> Vec<String> {
    let mut w = r.warnings.clone();
    for (cpu, busy) in r.saturated() {
        w.push(format!(
            "bench-client kept {cpu} {:.0}% busy: it was saturated itself, so these figures may measure the client, not the server (give it more CPUs with --cpus, or add client machines and `merge`)",
            busy * 100.0
        ));
    }
    if (r.outcome.peak_connections as usize) < r.plan.connections && !r.plan.workload.one_shot() {
        w.push(format!(
            "only {} of {} requested connections were open at once",
            r.outcome.peak_connections, r.plan.connections
        ));
    }
    for f in &r.outcome.failed_threads {
        w.push(f.to_string());
    }
    w
}

/// `req/s`, `conn/s`, ... for a workload name.
pub fn op_unit(name: &str) -> &'static str {
    match name {
        "handshake" | "resume" => "conn/s",
        "http" => "req/s",
        "echo" => "msg/s",
        _ => "op/s",
    }
}
