//! # tuning-runner
//!
//! Kernel-tuning experiments anyone can repeat: an experiment file (TOML)
//! declares the server command and knobs to vary, the sysctls to vary, the
//! bench-client workloads and the repetitions; `uringtls-tune run` expands
//! the matrix, runs it interleaved with the server pinned to CPU 1 and
//! bench-client to CPU 0, and writes a row per run, a summary and plots.
//! The machine's sysctls are put back on exit, on error and on Ctrl-C.
//!
//! ```text
//! experiment.toml -> experiment (parse, validate) -> matrix (cells, schedule)
//!   -> run (sysctl apply | server | bench-client, per run) -> results
//!      (runs.csv/json -> summary.md/json -> *.svg)
//! ```
//!
//! - [`experiment`]: the file format, defaults, validation.
//! - [`matrix`]: cells (the cartesian product) and the interleaved schedule.
//! - [`sysctl`]: the sysctl root, profiles, [`sysctl::Saved`] (restore guard).
//! - [`run`]: the driver, processes, Ctrl-C.
//! - [`results`]: rows, per-cell medians and spread, SVG plots.

pub mod experiment;
pub mod machine;
pub mod matrix;
pub mod results;
pub mod run;
pub mod sysctl;
