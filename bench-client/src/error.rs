//! Why a run did not happen or did not produce results: one enum per
//! concern, each variant with the sentence the operator reads (what failed
//! and what to change). The exit code comes from the variant.

use crate::plan::fleet::{StartPassed, WorkerTag};
use crate::plan::target::TargetError;
use crate::stats::errors::ErrorClass;
use std::io;
use std::path::PathBuf;

/// Why `bench-client` stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad flags or inputs (exit 2).
    #[error(transparent)]
    Usage(#[from] Usage),
    /// The target cannot be used: nothing listening, untrusted certificate,
    /// not TLS, not the workload's protocol (found by the probe).
    #[error("{explanation}")]
    Target {
        /// What the probe's operation failed with.
        class: ErrorClass,
        /// One sentence: what failed and what to do about it.
        explanation: String,
    },
    /// io_uring could not be set up for the probe.
    #[error("cannot set up io_uring: {0} (is io_uring disabled by kernel.io_uring_disabled?)")]
    Runtime(#[source] uringtls_runtime::io::SetupError),
    /// A worker thread could not be spawned.
    #[error("cannot start worker thread {index}: {source}")]
    Spawn {
        /// The worker.
        index: usize,
        /// The system's error.
        source: io::Error,
    },
    /// No worker thread started.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    NoWorker(Vec<WorkerError>),
    /// An output file could not be written.
    #[error("{}: {source}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// An interval output (progress, CSV, hlog) could not be written.
    #[error("writing interval output: {0}")]
    Interval(#[source] io::Error),
    /// The run happened but no operation succeeded.
    #[error("no operation succeeded; most frequent error: {explanation}")]
    Failed {
        /// The most frequent error class.
        class: ErrorClass,
        /// What it means, as the probe would say it.
        explanation: String,
    },
}

impl Error {
    /// Process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// `path` could not be written.
    pub fn output(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Output {
            path: path.into(),
            source,
        }
    }
}

/// Flags or inputs that cannot make a run (exit 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Usage {
    /// `--connections 0`.
    #[error("--connections 0: at least one connection is needed")]
    NoConnection,
    /// `--threads 0`.
    #[error("--threads 0: at least one worker thread is needed")]
    NoThread,
    /// `--rate` zero, negative or not a number.
    #[error("--rate must be a positive number of operations per second")]
    Rate,
    /// `--interval` below 10 ms.
    #[error("--interval must be at least 10ms")]
    Interval,
    /// A fleet total that leaves this worker nothing.
    #[error("{flag} {total} is the fleet's total with --worker {tag}: it leaves worker {tag} nothing; give {flag} {} or more", tag.of)]
    Starved {
        /// The flag (`--connections`).
        flag: &'static str,
        /// Its value.
        total: String,
        /// This worker.
        tag: WorkerTag,
    },
    /// `--start-at` already passed.
    #[error(transparent)]
    StartAt(#[from] StartPassed),
    /// The target cannot be parsed or resolved.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// `--cpus` is not a CPU list.
    #[error(transparent)]
    Cpus(#[from] CpuListError),
    /// The HTTP request flags do not make a request.
    #[error(transparent)]
    Request(#[from] crate::workloads::http::RequestError),
    /// The TLS flags do not make a client config.
    #[error(transparent)]
    Tls(#[from] crate::tls::ConfigError),
    /// `--server-metrics` is neither a PID nor a URL.
    #[error(transparent)]
    ServerMetrics(#[from] crate::stats::server::ServerMetricsError),
    /// A `merge` input cannot be read.
    #[error("merge: {0}")]
    Merge(#[from] crate::output::hlog::HlogFileError),
    /// `plot` inputs or labels cannot be used.
    #[error("plot: {0}")]
    Plot(#[from] crate::output::plot_inputs::InputError),
    /// The inputs cannot make the chart asked for.
    #[error(transparent)]
    Chart(#[from] crate::output::plot::ChartError),
}

/// Why `--cpus` is not a CPU list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CpuListError {
    /// An item is neither a CPU number nor a rising range.
    #[error("`{part}` in `{list}` is not a CPU or range (write e.g. `0` or `0,2-3`)")]
    Item {
        /// The item.
        part: String,
        /// The whole list.
        list: String,
    },
    /// The list names no CPU.
    #[error("`{0}` names no CPU")]
    Empty(String),
}

/// Why a worker thread could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Its io_uring runtime could not be set up.
    #[error("worker {index}: cannot set up io_uring: {source} (is io_uring disabled by kernel.io_uring_disabled or a seccomp policy?)")]
    Runtime {
        /// The worker.
        index: usize,
        /// The runtime's error.
        source: uringtls_runtime::io::SetupError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_usage_exits_2_and_everything_else_1() {
        assert_eq!(Error::from(Usage::NoConnection).exit_code(), 2);
        let e = Error::output("out.json", io::Error::from(io::ErrorKind::PermissionDenied));
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().starts_with("out.json: "), "{e}");
        let tag = WorkerTag { index: 3, of: 3 };
        let starved = Usage::Starved {
            flag: "--connections",
            total: "2".into(),
            tag,
        };
        assert_eq!(
            starved.to_string(),
            "--connections 2 is the fleet's total with --worker 3/3: it leaves worker 3/3 nothing; give --connections 3 or more"
        );
    }
}
