//! Generating load: the [`Plan`] (what the flags resolved to), worker threads
//! ([`worker`]), open-loop pacing ([`pacing`]) and coordinated-omission
//! correction ([`record`]), the main thread's collection
//! loop ([`run`]), file-descriptor limits ([`limits`]) and the pre-flight
//! probe that turns a bad target into a clear error ([`probe`]).

pub mod limits;
pub mod pacing;
pub mod probe;
pub mod record;
pub mod run;
pub mod worker;

use crate::cli::target::Target;
use crate::workloads::WorkloadSpec;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::fmt;
use std::time::Duration;

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
    pub fleet: Option<crate::cli::fleet::Fleet>,
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

/// Why a run did not happen or did not produce results.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Bad flags (exit 2).
    Usage(String),
    /// The target cannot be used: nothing listening, untrusted certificate, not TLS.
    Target(String),
    /// Worker threads could not start (io_uring unavailable, ...).
    Start(String),
    /// An output file could not be written.
    Output(String),
    /// The run happened but no operation succeeded.
    Failed(String),
}

impl Error {
    /// Process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m)
            | Error::Target(m)
            | Error::Start(m)
            | Error::Output(m)
            | Error::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}
