//! `--json FILE`: every figure of the summary, machine-readable. Latencies
//! are microseconds, rates per second, bytes as counts.

use super::percentiles::TICKS_PER_HALF;
use super::summary::{op_unit, warnings};
use super::{LatencyStats, Report};
use crate::plan::fleet::unix_secs;
use crate::stats::Metric;
use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// The keys of [`document`] repeated in the `--hlog`'s closing `#result:`
/// line, for `merge`.
pub const RESULT_KEYS: [&str; 11] = [
    "workload",
    "worker",
    "start_at_unix_s",
    "started_unix_s",
    "ops",
    "ops_per_s",
    "bytes_in",
    "bytes_out",
    "errors",
    "client_cpu",
    "load",
];

/// The run's counters for the `--hlog`'s closing line: [`RESULT_KEYS`] of
/// the JSON document.
pub fn result(r: &Report<'_>) -> Value {
    let doc = document(r);
    let picked: Map<String, Value> = RESULT_KEYS
        .iter()
        .filter_map(|k| Some((k.to_string(), doc.get(*k)?.clone())))
        .collect();
    Value::Object(picked)
}

/// `[percentile, µs]` pairs of `h` at HdrHistogram's usual steps (what an
/// `.hgrm` lists), for percentile plots.
pub fn distribution(h: &Histogram<u64>) -> Vec<[f64; 2]> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(TICKS_PER_HALF)
        .map(|v| [v.quantile_iterated_to(), v.value_iterated_to() as f64])
        .collect()
}

/// Builds the JSON document.
pub fn document(r: &Report<'_>) -> Value {
    let p = r.plan;
    let o = r.outcome;
    let t = &o.total;
    let mut latency = Map::new();
    for m in Metric::ALL {
        let h = t.hist(m);
        if !h.is_empty() {
            latency.insert(m.name().into(), json!(LatencyStats::of(h)));
        }
    }
    let errors: Map<String, Value> = t.errors.iter().map(|(k, v)| (k.key(), json!(v))).collect();
    let (mb_in, mb_out) = r.mb_per_sec();
    let worker = p.fleet.as_ref().map(|f| {
        json!({
            "tag": f.tag.to_string(),
            "index": f.tag.index,
            "of": f.tag.of,
            "fleet_rate": f.rate,
            "fleet_connections": f.connections,
            "fleet_requests": f.requests,
        })
    });
    json!({
        "workload": p.name,
        "worker": worker,
        "start_at_unix_s": p.start_at.map(unix_secs),
        "started_unix_s": unix_secs(r.started),
        "target": {
            "url": format!("https://{}{}", p.target.host_header(), p.target.path),
            "addr": p.target.addr.to_string(),
        },
        "load": {
            "model": if p.rate.is_some() { "open" } else { "closed" },
            "rate_requested": p.rate,
            "connections_requested": p.connections,
            "connections_achieved": o.peak_connections,
            "threads": p.threads,
            "duration_s": o.measured.as_secs_f64(),
            "warmup_s": p.warmup.as_secs_f64(),
            "requests_limit": p.requests,
        },
        "tls": r.negotiated,
        "ops": t.ops,
        "ops_per_s": r.ops_per_sec(),
        "op_unit": op_unit(p.name),
        "bytes_in": t.bytes_in,
        "bytes_out": t.bytes_out,
        "ciphertext_in": t.cipher_in,
        "ciphertext_out": t.cipher_out,
        "records_in_estimate": r.records_in().map(|(n, _)| n),
        "record_in_mean_bytes": r.records_in().map(|(_, b)| b),
        "mb_per_s_in": mb_in,
        "mb_per_s_out": mb_out,
        "connections_opened": t.connections,
        "handshakes": {
            "full": t.full_handshakes,
            "resumed": t.resumed_handshakes,
            "resumed_share": r.resumed_share(),
        },
        "errors": {
            "total": t.error_count(),
            "by_class": errors,
        },
        "latency_us": latency,
        "latency_distribution_us": { "total": distribution(t.hist(Metric::Total)) },
        "latency_corrected": p.rate.is_some(),
        "client_cpu": {
            "user_s": o.process_cpu.user.as_secs_f64(),
            "system_s": o.process_cpu.system.as_secs_f64(),
            "cores": r.client_cores(),
            "worker_busy": o.thread_busy,
            "cpu_busy": r.cpu_busy().into_iter().map(|(k, b)| (k, json!(b))).collect::<Map<String, Value>>(),
            "saturated": !r.saturated().is_empty(),
        },
        "server_cpu": match &o.server_cpu {
            None => Value::Null,
            Some(Ok(cpu)) => json!({
                "source": r.server_source,
                "cpu_s": cpu.as_secs_f64(),
                "us_per_op": r.server_us_per_op(),
            }),
            Some(Err(e)) => json!({ "source": r.server_source, "error": e.to_string() }),
        },
        "warnings": warnings(r),
    })
}

/// Serializes the document, pretty-printed.
pub fn render(r: &Report<'_>) -> String {
    serde_json::to_string_pretty(&document(r)).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::run::Outcome;
    use crate::stats::cpu::ProcessCpu;
    use crate::stats::errors::ErrorClass;
    use crate::stats::Recorder;
    use crate::tls::Negotiated;
    use std::time::Duration;

    #[test]
    fn json_parses_and_carries_every_summary_figure() {
        let plan = crate::plan::Plan {
            rate: Some(1000.0),
            connections: 8,
            // One worker pinned to CPU 0, 95% busy below: saturated.
            cpus: vec![0],
            ..crate::plan::test_plan()
        };
        let mut total = Recorder::new();
        total.ops = 2000;
        total.bytes_in = 4_000_000;
        for v in 1..=2000u64 {
            total.record(Metric::Total, Duration::from_micros(v));
            total.record(Metric::Uncorrected, Duration::from_micros(v / 2));
        }
        total.error(ErrorClass::TlsAlert("handshake_failure".into()));
        total.error(ErrorClass::BadStatus(503));
        let outcome = Outcome {
            total,
            measured: Duration::from_secs(2),
            peak_connections: 8,
            thread_busy: vec![0.95],
            process_cpu: ProcessCpu {
                user: Duration::from_secs(1),
                system: Duration::from_secs(1),
            },
            wall: Duration::from_secs(2),
            server_cpu: Some(Ok(Duration::from_millis(20))),
            failed_threads: vec![],
        };
        let neg = Negotiated {
            version: "TLSv1_3".into(),
            ..Negotiated::default()
        };
        let r = Report {
            plan: &plan,
            outcome: &outcome,
            negotiated: &neg,
            server_source: Some("/proc/1/stat".into()),
            warnings: vec![],
            started: std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        };
        let v: Value = serde_json::from_str(&render(&r)).expect("valid JSON");
        assert_eq!(v["ops"], 2000);
        assert_eq!(v["ops_per_s"], 1000.0);
        assert_eq!(v["mb_per_s_in"], 2.0);
        assert_eq!(v["load"]["model"], "open");
        assert_eq!(v["load"]["connections_achieved"], 8);
        assert_eq!(v["latency_us"]["total"]["p50_us"], 1000);
        assert!(v["latency_us"]["total_uncorrected"]["p99_us"]
            .as_u64()
            .is_some());
        assert_eq!(v["errors"]["by_class"]["tls_alert:handshake_failure"], 1);
        assert_eq!(v["errors"]["by_class"]["status:503"], 1);
        assert_eq!(v["server_cpu"]["us_per_op"], 10.0);
        assert_eq!(v["client_cpu"]["saturated"], true);
        assert_eq!(v["tls"]["version"], "TLSv1_3");
        assert_eq!(v["started_unix_s"], 1_767_225_600.0);
        assert_eq!(v["worker"], Value::Null);
        let dist = v["latency_distribution_us"]["total"]
            .as_array()
            .expect("distribution");
        assert!(dist.len() > 20, "{dist:?}");
        assert_eq!(dist.last().expect("last")[0], 1.0);
        let picked = result(&r);
        assert_eq!(picked["ops"], 2000);
        assert_eq!(picked["errors"]["by_class"]["status:503"], 1);
        assert_eq!(picked["client_cpu"]["saturated"], true);
        assert!(
            picked.get("latency_us").is_none(),
            "histograms stay in the log"
        );
    }

    #[test]
    fn a_worker_reports_its_tag_and_the_fleet_totals_beside_its_share() {
        // Worker 1/3's share of --rate 1000 -c 8 -n 100 (shares: cli::resolve's tests).
        let tag = crate::plan::fleet::WorkerTag { index: 1, of: 3 };
        let plan = crate::plan::Plan {
            rate: Some(334.0),
            connections: 3,
            requests: Some(34),
            fleet: Some(crate::plan::fleet::Fleet {
                tag,
                rate: Some(1000.0),
                connections: 8,
                requests: Some(100),
            }),
            ..crate::plan::test_plan()
        };
        let outcome = Outcome {
            total: Recorder::new(),
            measured: Duration::from_secs(1),
            peak_connections: 3,
            thread_busy: vec![0.5],
            process_cpu: ProcessCpu::default(),
            wall: Duration::from_secs(1),
            server_cpu: None,
            failed_threads: vec![],
        };
        let r = Report {
            plan: &plan,
            outcome: &outcome,
            negotiated: &Negotiated::default(),
            server_source: None,
            warnings: vec![],
            started: std::time::UNIX_EPOCH,
        };
        let w = &document(&r)["worker"];
        assert_eq!(w["tag"], "1/3");
        assert_eq!((w["index"].as_u64(), w["of"].as_u64()), (Some(1), Some(3)));
        assert_eq!(w["fleet_rate"], 1000.0);
        assert_eq!(w["fleet_connections"], 8);
        assert_eq!(w["fleet_requests"], 100);
        assert_eq!(result(&r)["worker"]["tag"], "1/3");
    }
}
