//! What a run is: the [`Plan`] the command line resolves to, and the
//! types it is made of ([`target::Target`], the fleet's
//! [`fleet::WorkerTag`] and [`fleet::Fleet`], the TLS
//! [`TlsOptions`]). The layers below the command line (`tls`, `load`,
//! `output`) take these values; none of them reads flags.

pub mod fleet;
pub mod target;

use crate::stats::server::ServerMetrics;
use crate::workloads::WorkloadSpec;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::path::PathBuf;
use std::time::Duration;
use target::Target;

/// A fully resolved run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Subcommand name (`http`, `handshake`, ...).
    pub name: &'static str,
    /// What each operation does.
    pub workload: WorkloadSpec,
    /// Where it goes.
    pub target: Target,
    /// Verified name / SNI.
    pub server_name: ServerName<'static>,
    /// Base TLS config (resumption disabled; workers derive theirs).
    pub tls: ClientConfig,
    /// Concurrent connection slots.
    pub connections: usize,
    /// Worker threads.
    pub threads: usize,
    /// CPU per worker thread (cycled); empty: no pinning.
    pub cpus: Vec<usize>,
    /// Open loop: operations per second overall.
    pub rate: Option<f64>,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
    /// Stop after this many operations.
    pub requests: Option<u64>,
    /// Connect and per-read/write deadline.
    pub timeout: Duration,
    /// Progress / CSV / hlog interval.
    pub interval: Duration,
    /// I/O runtime of each worker thread.
    pub io_backend: uringtls_runtime::io::Backend,
    /// `--worker`: this process's place in a fleet and the fleet's totals
    /// (`rate`, `connections` and `requests` above are this worker's share).
    pub fleet: Option<fleet::Fleet>,
    /// `--start-at`: when the load starts.
    pub start_at: Option<std::time::SystemTime>,
}

impl Plan {
    /// The CPU worker `i` is pinned to.
    pub fn cpu_for(&self, i: usize) -> Option<usize> {
        (!self.cpus.is_empty()).then(|| self.cpus[i % self.cpus.len()])
    }

    /// Operations slot `slot` may run (`None`: unlimited).
    pub fn quota(&self, slot: usize) -> Option<u64> {
        let n = self.requests?;
        let c = self.connections as u64;
        Some(n / c + u64::from((slot as u64) < n % c))
    }

    /// "closed loop" or "open loop at R/s".
    pub fn load_model(&self) -> String {
        match self.rate {
            Some(r) => format!("open loop at {r} ops/s"),
            None => "closed loop".into(),
        }
    }
}

/// What a run writes besides the summary (the output flags), resolved.
#[derive(Debug, Clone, Default)]
pub struct OutputOptions {
    /// Print the full latency distribution.
    pub latency: bool,
    /// Write the total-latency distribution (.hgrm) here.
    pub hgrm: Option<PathBuf>,
    /// Write an HdrHistogram interval log here.
    pub hlog: Option<PathBuf>,
    /// Write the JSON report here (`-`: stdout).
    pub json: Option<PathBuf>,
    /// Write one CSV row per interval here.
    pub csv: Option<PathBuf>,
    /// Where the server's CPU time comes from.
    pub server_metrics: Option<ServerMetrics>,
    /// No progress line.
    pub quiet: bool,
}

/// TLS protocol version selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsVersion {
    /// TLS 1.2 only.
    #[value(name = "1.2")]
    V12,
    /// TLS 1.3 only.
    #[value(name = "1.3")]
    V13,
    /// Either (1.3 preferred).
    Any,
}

/// What the client offers and trusts (the `--tls`, `--cipher`, ... flags),
/// from which [`crate::tls::client_config`] builds the rustls config.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsOptions {
    /// Protocol versions offered.
    pub version: TlsVersion,
    /// Cipher suites offered, by rustls name; empty: rustls's.
    pub cipher: Vec<String>,
    /// Key-exchange groups offered, by rustls name; empty: rustls's.
    pub group: Vec<String>,
    /// ALPN protocols offered.
    pub alpn: Vec<String>,
    /// Server name sent and verified, in place of the target host.
    pub sni: Option<String>,
    /// Send no SNI.
    pub no_sni: bool,
    /// CA to trust in place of the system store.
    pub ca: Option<PathBuf>,
    /// Skip certificate verification.
    pub insecure: bool,
    /// Client certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    pub key: Option<PathBuf>,
    /// Offer certificate compression.
    pub cert_compression: bool,
}

impl Default for TlsOptions {
    /// What the flags default to.
    fn default() -> Self {
        TlsOptions {
            version: TlsVersion::Any,
            cipher: Vec::new(),
            group: Vec::new(),
            alpn: Vec::new(),
            sni: None,
            no_sni: false,
            ca: None,
            insecure: false,
            cert: None,
            key: None,
            cert_compression: true,
        }
    }
}

/// A plan for unit tests below the command line: 16 connections of HTTP
/// keep-alive to 127.0.0.1:1 (never dialled), closed loop, 10 s.
#[cfg(test)]
pub(crate) fn test_plan() -> Plan {
    use std::sync::Arc;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Plan {
        name: "http",
        workload: WorkloadSpec::Http {
            request: b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n".to_vec(),
            pipeline: 1,
            head: false,
        },
        target: Target::parse("127.0.0.1:1").expect("target"),
        server_name: ServerName::try_from("127.0.0.1").expect("name"),
        tls,
        connections: 16,
        threads: 1,
        cpus: Vec::new(),
        rate: None,
        duration: Duration::from_secs(10),
        warmup: Duration::ZERO,
        requests: None,
        timeout: Duration::from_secs(10),
        interval: Duration::from_secs(1),
        io_backend: uringtls_runtime::io::Backend::TokioUring,
        fleet: None,
        start_at: None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn requests_are_split_evenly_over_slots() {
        let mut plan = super::test_plan();
        assert_eq!(plan.quota(0), None);
        plan.connections = 3;
        plan.requests = Some(10);
        let quotas: Vec<Option<u64>> = (0..3).map(|s| plan.quota(s)).collect();
        assert_eq!(quotas, vec![Some(4), Some(3), Some(3)]);
    }
}
