//! The command line: one subcommand per workload, shared load/TLS/output
//! flags, resolved into a [`Plan`](crate::plan::Plan) before anything runs
//! (`resolve`); [`crate::runner`] runs it. Nothing below this module
//! reads flags: it hands them down as [`crate::plan`] values.

pub(crate) mod resolve;
pub mod units;

use crate::output::merge::MergeOptions;
use crate::output::plot::{PlotKind, PlotOptions};
use crate::plan::fleet;
use crate::plan::{TlsOptions, TlsVersion};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// A TLS load generator: handshake rates, keep-alive requests, echo, bulk.
#[derive(Debug, Parser)]
#[command(name = "bench-client", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The workloads, and `merge`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Full TLS handshakes per second: a new connection per operation, no resumption.
    Handshake {
        #[command(flatten)]
        common: Common,
        /// What to send on each connection after the handshake.
        #[arg(long, value_enum, default_value_t = RequestKind::None)]
        request: RequestKind,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Resumed TLS handshakes per second (tickets / session IDs reused); reports the share resumed.
    Resume {
        #[command(flatten)]
        common: Common,
        /// What to send on each connection (a round trip is needed to receive TLS 1.3 tickets).
        #[arg(long, value_enum, default_value_t = RequestKind::Http)]
        request: RequestKind,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// HTTP/1.1 keep-alive requests; checks status codes.
    Http {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        http: HttpArgs,
        /// Requests in flight per connection (HTTP/1.1 pipelining depth).
        #[arg(long, default_value_t = 1, value_name = "N")]
        pipeline: usize,
    },
    /// Fixed-size messages echoed back (needs an echo server); latency per round trip.
    Echo {
        #[command(flatten)]
        common: Common,
        /// Message size (SI/IEC suffixes: 64, 4k, 1KiB).
        #[arg(long, default_value = "64", value_parser = units::parse_size, value_name = "BYTES")]
        size: u64,
    },
    /// Throughput of large transfers: download a sized HTTP response, or upload through echo.
    Bulk {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        http: HttpArgs,
        /// download: GET the target path (size set by the server); upload: send --size through echo.
        #[arg(long, value_enum, default_value_t = Direction::Download)]
        direction: Direction,
        /// Upload: bytes sent (and echoed back) per operation.
        #[arg(long, default_value = "1MiB", value_parser = units::parse_size, value_name = "BYTES")]
        size: u64,
        /// Upload: bytes written before reading the echo back.
        #[arg(long, default_value = "64KiB", value_parser = units::parse_size, value_name = "BYTES")]
        chunk: u64,
        /// Largest TLS record we send (rustls max_fragment_size); default: 16 KiB records.
        #[arg(long, value_parser = units::parse_size, value_name = "BYTES")]
        record_size: Option<u64>,
    },
    /// Adds up the `.hlog` files of several runs (e.g. several client machines) into one report.
    Merge(MergeArgs),
    /// Draws runs as an SVG: latency percentile curves, throughput and p99 over time, or the phases of one run.
    Plot(PlotArgs),
}

/// What a handshake/resume connection sends after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RequestKind {
    /// Nothing: handshake, close_notify, close.
    None,
    /// One HTTP request (`Connection: close`), response read and checked.
    Http,
    /// One 16-byte message, echo read back.
    Echo,
}

/// Bulk direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    /// Server to client (HTTP GET of a sized body).
    Download,
    /// Client to server and back (echo).
    Upload,
}

/// Flags every workload takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Target: https://HOST:PORT/PATH, or HOST:PORT.
    pub target: String,
    /// Concurrent connections (closed loop: each as fast as it can).
    #[arg(short, long, default_value_t = 16, value_name = "N")]
    pub connections: usize,
    /// Open loop: operations per second across all connections (wrk2-style, latency from intended send time).
    #[arg(short, long, value_name = "OPS")]
    pub rate: Option<f64>,
    /// Measured run time (e.g. 10s, 500ms, 2m).
    #[arg(short, long, default_value = "10s", value_parser = units::parse_duration)]
    pub duration: std::time::Duration,
    /// Time run before measuring (results discarded).
    #[arg(short, long, default_value = "0s", value_parser = units::parse_duration)]
    pub warmup: std::time::Duration,
    /// Stop after this many operations (split evenly over connections).
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,
    /// Worker threads, one io_uring runtime each, pinned round-robin over --cpus
    /// [default: one per CPU, at most one per connection].
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// CPUs to pin worker threads to, e.g. `0` or `0,2-3` [default: the CPUs this process may run on].
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Do not pin worker threads.
    #[arg(long)]
    pub no_pin: bool,
    /// I/O runtime of each worker thread: `tokio-uring` (parks in epoll) or
    /// `uring` (parks in io_uring_enter for one completion, so the server
    /// has to wake it ~5x as often; see docs/benchmarks.md).
    #[arg(long, value_enum, default_value_t = uringtls_runtime::io::Backend::TokioUring)]
    pub io_backend: uringtls_runtime::io::Backend,
    /// Deadline for connect, and for each read/write.
    #[arg(long, default_value = "10s", value_parser = units::parse_duration)]
    pub timeout: std::time::Duration,
    /// Progress line / CSV row / hlog interval length.
    #[arg(long, default_value = "1s", value_parser = units::parse_duration)]
    pub interval: std::time::Duration,
    /// CI smoke mode: 1 s (with -n: the quota, within --duration), no
    /// warmup, at most 4 connections, 200 ms intervals.
    #[arg(long)]
    pub quick: bool,
    /// No progress line.
    #[arg(short, long)]
    pub quiet: bool,
    /// Run as worker I of N (1-based) of several bench-clients: --rate,
    /// --connections and --requests are then the whole fleet's, this worker
    /// takes its share, and --hlog/--json are tagged I/N for `merge`.
    #[arg(long, value_name = "I/N", value_parser = fleet::WorkerTag::parse)]
    pub worker: Option<fleet::WorkerTag>,
    /// Start the load at this instant (Unix seconds, or RFC 3339 such as
    /// 2026-01-01T12:00:00Z), so that every worker's intervals line up; a
    /// time already passed is an error.
    #[arg(long, value_name = "TIME", value_parser = fleet::parse_start_at)]
    pub start_at: Option<std::time::SystemTime>,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// TLS flags.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// TLS version.
    #[arg(long = "tls", value_enum, default_value_t = TlsVersion::Any)]
    pub version: TlsVersion,
    /// Cipher suites to offer, comma separated (e.g. TLS13_AES_128_GCM_SHA256) [default: rustls's].
    #[arg(long, value_delimiter = ',', value_name = "SUITE")]
    pub cipher: Vec<String>,
    /// Key-exchange groups to offer, comma separated (x25519, secp256r1, secp384r1, x25519mlkem768).
    #[arg(long, value_delimiter = ',', value_name = "GROUP")]
    pub group: Vec<String>,
    /// ALPN protocols to offer, comma separated (e.g. http/1.1).
    #[arg(long, value_delimiter = ',', value_name = "PROTO")]
    pub alpn: Vec<String>,
    /// Server name sent (SNI) and verified [default: the target host].
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    /// Do not send SNI.
    #[arg(long)]
    pub no_sni: bool,
    /// Trust this CA (PEM) instead of the system store.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Do not verify the server certificate (signatures are still checked).
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// Client certificate chain (PEM), for servers requiring mTLS.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Offer certificate compression (RFC 8879: brotli, zlib; TLS 1.3), as
    /// browsers do; `false` to measure what a server sends without it.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub cert_compression: bool,
}

/// HTTP request flags.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// Request method.
    #[arg(long, default_value = "GET")]
    pub method: String,
}

/// Output flags.
#[derive(Debug, Clone, Args, Default)]
pub struct OutputArgs {
    /// Print the full latency distribution (wrk2 / HdrHistogram text format).
    #[arg(long)]
    pub latency: bool,
    /// Write the total-latency percentile distribution (.hgrm) here.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Write an HdrHistogram V2 interval log (one histogram per metric per interval) here.
    #[arg(long, value_name = "FILE")]
    pub hlog: Option<PathBuf>,
    /// Write every summary figure as JSON here (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write one CSV row per interval here.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
    /// Server CPU per operation: a uringtls metrics URL (http://HOST:PORT/metrics) or a local PID.
    #[arg(long, value_name = "URL|PID")]
    pub server_metrics: Option<String>,
}

/// `merge` flags.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// Interval logs written with --hlog.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print the full distribution of the merged total latency.
    #[arg(long)]
    pub latency: bool,
    /// Write the merged total-latency distribution (.hgrm) here.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Write the merged figures as JSON here (`-` for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// `plot` flags.
#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// Runs to draw: --json reports, --hlog interval logs, .hgrm
    /// distributions (`merge`'s --json and --hgrm too).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The SVG file to write.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// What to draw.
    #[arg(long, value_enum, default_value_t = PlotKind::Percentiles)]
    pub kind: PlotKind,
    /// Legend name of each input, in order (repeatable) [default: the
    /// worker tag (`worker 2/3`) or the file name without extension].
    #[arg(long, value_name = "NAME")]
    pub label: Vec<String>,
    /// Chart title.
    #[arg(long)]
    pub title: Option<String>,
    /// Also write one self-contained HTML page: a summary table and every
    /// chart these inputs allow.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

impl TlsArgs {
    /// The TLS layer's options these flags stand for.
    pub fn options(&self) -> TlsOptions {
        TlsOptions {
            version: self.version,
            cipher: self.cipher.clone(),
            group: self.group.clone(),
            alpn: self.alpn.clone(),
            sni: self.sni.clone(),
            no_sni: self.no_sni,
            ca: self.ca.clone(),
            insecure: self.insecure,
            cert: self.cert.clone(),
            key: self.key.clone(),
            cert_compression: self.cert_compression,
        }
    }
}

impl MergeArgs {
    /// What `merge` is asked to do.
    pub fn options(&self) -> MergeOptions {
        MergeOptions {
            files: self.files.clone(),
            latency: self.latency,
            hgrm: self.hgrm.clone(),
            json: self.json.clone(),
        }
    }
}

impl PlotArgs {
    /// What `plot` is asked to draw.
    pub fn options(&self) -> PlotOptions {
        PlotOptions {
            files: self.files.clone(),
            output: self.output.clone(),
            kind: self.kind,
            labels: self.label.clone(),
            title: self.title.clone(),
            html: self.html.clone(),
        }
    }
}

/// Runs the command line; exit 0 on success, 1 when the run failed (target
/// unreachable, every operation failed), 2 on bad usage.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match resolve::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench-client: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
