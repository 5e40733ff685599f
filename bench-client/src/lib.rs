//! # bench-client
//!
//! A TLS load generator: full and resumed handshake rates, HTTP/1.1
//! keep-alive, echo round trips and bulk transfers, closed or open loop
//! (wrk2-style coordinated-omission correction), HdrHistogram percentiles.
//!
//! ```text
//!  main thread: parse flags -> probe the target once (clear errors) -> start workers
//!    └─ worker thread i (pinned to a CPU, own io_uring runtime via uringtls_runtime::io)
//!         ├─ slot tasks: one per connection, each a workload loop
//!         │    └─ pacer (open loop) -> op (connect, TLS, request) -> thread-local recorder
//!         └─ ticker: every interval, hands its recorder to the main thread (mpsc)
//!  main thread: merges interval snapshots -> progress line, CSV, hlog; totals -> summary
//! ```
//!
//! - [`cli`]: flags, sizes, durations, resolved into a [`plan::Plan`] and
//!   [`plan::OutputOptions`]; a fleet worker's share (`--worker I/N`).
//! - [`plan`]: what a run is (target, fleet tag and `--start-at`, TLS
//!   options), the values every layer below the command line takes.
//! - [`runner`]: a plan run end to end: probe, outputs, load, reports.
//! - [`error`]: why a run did not happen or produced nothing (exit codes).
//! - [`tls`]: the rustls `ClientConfig` (versions, suites, groups, ALPN, trust).
//! - [`load`]: threads, pacing, the run loop, fd limits, the target probe.
//! - [`workloads`]: handshake, resume, http, echo, bulk.
//! - [`stats`]: per-thread recorders, error classes, CPU accounting.
//! - [`output`]: progress, summary, `--latency`, `.hgrm`, `.hlog`, JSON, CSV,
//!   `merge` (several machines added up exactly) and `plot` (SVG charts drawn
//!   by the workspace's `plotting` crate).
//!
//! Nothing on the hot path is shared between threads: each worker records
//! into its own histograms, handed over once per interval.

pub mod cli;
pub mod error;
pub mod load;
pub mod output;
pub mod plan;
pub mod runner;
pub mod stats;
pub mod tls;
pub mod workloads;

use std::process::ExitCode;

/// Runs the `bench-client` command with the process's arguments.
pub fn cli_main() -> ExitCode {
    cli::main()
}
