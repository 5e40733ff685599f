//! The server's CPU time, sampled before and after the measured phase:
//! from the engine's Prometheus endpoint (the counter
//! `uringtls_shard_cpu_seconds_total`, summed over shards) or, for any
//! server on this machine, from `/proc/PID/stat` (utime + stime).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The engine's per-shard CPU counter.
pub const CPU_COUNTER: &str = "uringtls_shard_cpu_seconds_total";

/// Why the server's CPU time cannot be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerMetricsError {
    /// `--server-metrics` is neither a PID nor an `http://` URL.
    #[error(
        "--server-metrics `{0}`: give a PID on this machine or an http://HOST:PORT/metrics URL"
    )]
    Spec(String),
    /// `/proc/PID/stat` cannot be read.
    #[error(
        "--server-metrics {pid}: cannot read /proc/{pid}/stat: {source} (is the process running?)"
    )]
    ProcStat {
        /// The process.
        pid: u32,
        /// The system's error.
        source: std::io::Error,
    },
    /// `/proc/PID/stat` does not read as expected.
    #[error("/proc/{0}/stat: unexpected format")]
    ProcFormat(u32),
    /// The metrics URL could not be fetched.
    #[error("--server-metrics http://{authority}{path}: {source}")]
    Fetch {
        /// `host:port`.
        authority: String,
        /// Request path.
        path: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// The metrics host resolves to nothing.
    #[error("--server-metrics: `{0}` resolves to no address")]
    NoAddress(String),
    /// The metrics URL answered something other than 200.
    #[error("--server-metrics http://{authority}{path}: got `{status}`, expected 200")]
    Status {
        /// `host:port`.
        authority: String,
        /// Request path.
        path: String,
        /// The status line received.
        status: String,
    },
    /// The metrics page has no CPU counter.
    #[error("http://{authority}{path}: no `{CPU_COUNTER}` samples (is this a uringtls metrics endpoint?)")]
    NoCounter {
        /// `host:port`.
        authority: String,
        /// Request path.
        path: String,
    },
    /// No sample was taken when measuring started.
    #[error("no sample at the start")]
    NoStartSample,
}

/// Where the server's CPU time comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMetrics {
    /// A local process.
    Pid(u32),
    /// A plain-HTTP Prometheus endpoint.
    Url {
        /// `host:port`.
        authority: String,
        /// Request path.
        path: String,
    },
}

impl ServerMetrics {
    /// Parses `--server-metrics`: a PID or `http://HOST:PORT/PATH`.
    pub fn parse(s: &str) -> Result<ServerMetrics, ServerMetricsError> {
        if let Ok(pid) = s.parse::<u32>() {
            return Ok(ServerMetrics::Pid(pid));
        }
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| ServerMetricsError::Spec(s.to_string()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/metrics"),
        };
        Ok(ServerMetrics::Url {
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// Human description for the summary.
    pub fn describe(&self) -> String {
        match self {
            ServerMetrics::Pid(p) => format!("/proc/{p}/stat"),
            ServerMetrics::Url { authority, path } => {
                format!("http://{authority}{path} ({CPU_COUNTER})")
            }
        }
    }

    /// The server's total CPU time so far.
    pub fn sample(&self) -> Result<Duration, ServerMetricsError> {
        match self {
            ServerMetrics::Pid(pid) => {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map_err(|source| ServerMetricsError::ProcStat { pid: *pid, source })?;
                let ticks = parse_proc_stat(&stat).ok_or(ServerMetricsError::ProcFormat(*pid))?;
                Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks()))
            }
            ServerMetrics::Url { authority, path } => {
                let body = http_get(authority, path)?;
                let secs = sum_counter(&body, CPU_COUNTER).ok_or_else(|| {
                    ServerMetricsError::NoCounter {
                        authority: authority.clone(),
                        path: path.clone(),
                    }
                })?;
                Ok(Duration::from_secs_f64(secs.max(0.0)))
            }
        }
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime (clock ticks) from a `/proc/PID/stat` line. The command
/// name may contain spaces and parentheses, so fields are counted from the
/// last `)`.
pub fn parse_proc_stat(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Sums every sample of `name` (any labels) in a Prometheus text exposition.
pub fn sum_counter(text: &str, name: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // Exactly this metric: followed by labels or a space.
        let value_part = if let Some(labels) = rest.strip_prefix('{') {
            match labels.find('}') {
                Some(i) => &labels[i + 1..],
                None => continue,
            }
        } else if rest.starts_with(' ') {
            rest
        } else {
            continue;
        };
        if let Some(v) = value_part
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

fn http_get(authority: &str, path: &str) -> Result<String, ServerMetricsError> {
    let err = |source: std::io::Error| ServerMetricsError::Fetch {
        authority: authority.to_string(),
        path: path.to_string(),
        source,
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(err)?
        .next()
        .ok_or_else(|| ServerMetricsError::NoAddress(authority.to_string()))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(err)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(err)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(err)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        let status = head.lines().next().unwrap_or("");
        return Err(ServerMetricsError::Status {
            authority: authority.to_string(),
            path: path.to_string(),
            status: status.to_string(),
        });
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_fields_are_counted_after_the_command_name() {
        let line =
            "1234 (my (odd) srv) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_proc_stat(line), Some(325));
    }

    #[test]
    fn cpu_counter_is_summed_over_shards() {
        let text = "# HELP uringtls_shard_cpu_seconds_total CPU\n\
                    # TYPE uringtls_shard_cpu_seconds_total counter\n\
                    uringtls_shard_cpu_seconds_total{shard=\"0\"} 1.5\n\
                    uringtls_shard_cpu_seconds_total{shard=\"1\"} 2.25\n\
                    uringtls_shard_cpu_seconds_total_created{shard=\"1\"} 99\n\
                    uringtls_connections_total 7\n";
        assert_eq!(sum_counter(text, CPU_COUNTER), Some(3.75));
        assert_eq!(sum_counter("other 1\n", CPU_COUNTER), None);
    }

    #[test]
    fn flag_accepts_pid_or_url() {
        assert_eq!(
            ServerMetrics::parse("42").expect("pid"),
            ServerMetrics::Pid(42)
        );
        assert_eq!(
            ServerMetrics::parse("http://127.0.0.1:9100/metrics").expect("url"),
            ServerMetrics::Url {
                authority: "127.0.0.1:9100".into(),
                path: "/metrics".into()
            }
        );
        let e = ServerMetrics::parse("ftp://x").expect_err("ftp");
        assert!(
            matches!(&e, ServerMetricsError::Spec(s) if s == "ftp://x"),
            "{e:?}"
        );
        assert!(e.to_string().contains("give a PID"), "{e}");
    }
}
