//! `--json FILE`: every figure of the summary, machine-readable. Latencies
//! are microseconds, rates per second, bytes as counts.

use super::summary::{op_unit, warnings};
use super::{LatencyStats, Report};
use crate::stats::Metric;
use serde_json::{json, Map, Value};

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
    json!({
        "workload": p.name,
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
            Some(Err(e)) => json!({ "source": r.server_source, "error": e }),
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
        let plan = crate::cli::resolve::test_plan(&["--rate", "1000", "-c", "8"]);
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
    }
}
