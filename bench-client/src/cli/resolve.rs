//! From parsed flags to a run: validate, build the [`Plan`] and the
//! [`OutputOptions`], and hand them to [`crate::runner`].

use super::units::parse_cpus;
use super::{Cli, Command, Common, Direction, HttpArgs, RequestKind};
use crate::error::{Error, Usage};
use crate::output;
use crate::plan::fleet::{self, Fleet, WorkerTag};
use crate::plan::target::Target;
use crate::plan::{OutputOptions, Plan};
use crate::stats::server::ServerMetrics;
use crate::workloads::{http::build_request, OneShot, WorkloadSpec};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Largest piece of an `echo` message written before reading its echo.
pub const ECHO_CHUNK: usize = 64 * 1024;

/// Default worker threads per CPU (one runtime per core, so that latency
/// never includes waiting for another of our own threads).
pub const WORKERS_PER_CPU: usize = 1;

/// Connections used at most by `--quick`.
pub const QUICK_CONNECTIONS: usize = 4;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, Error> {
    let (name, common, spec) = match cli.command {
        Command::Merge(a) => {
            output::merge::run(&a.options())?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Plot(a) => {
            output::plot::run(&a.options())?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Handshake {
            common,
            request,
            http,
        } => {
            let spec = WorkloadSpec::Handshake(one_shot(request, &http, &common)?);
            ("handshake", common, spec)
        }
        Command::Resume {
            common,
            request,
            http,
        } => {
            if request == RequestKind::None {
                eprintln!("bench-client: note: without a request TLS 1.3 tickets may not arrive before the close; expect full handshakes");
            }
            let spec = WorkloadSpec::Resume(one_shot(request, &http, &common)?);
            ("resume", common, spec)
        }
        Command::Http {
            common,
            http,
            pipeline,
        } => {
            let spec = http_spec(&http, &common, pipeline.max(1))?;
            ("http", common, spec)
        }
        Command::Echo { common, size } => {
            let size = size.max(1) as usize;
            // Larger messages go in 64 KiB pieces, each echoed back before the
            // next, so neither side's socket buffers can fill up and deadlock.
            let chunk = size.min(ECHO_CHUNK);
            ("echo", common, WorkloadSpec::Echo { size, chunk })
        }
        Command::Bulk {
            common,
            http,
            direction,
            size,
            chunk,
            record_size,
        } => {
            return bulk(
                common,
                http,
                direction,
                size,
                chunk,
                record_size.map(|r| r as usize),
            );
        }
    };
    execute(name, common, spec, None)
}

fn bulk(
    common: Common,
    http: HttpArgs,
    dir: Direction,
    size: u64,
    chunk: u64,
    record: Option<usize>,
) -> Result<ExitCode, Error> {
    let spec = match dir {
        Direction::Download => http_spec(&http, &common, 1)?,
        Direction::Upload => WorkloadSpec::Echo {
            size: size.max(1) as usize,
            chunk: chunk.clamp(1, size.max(1)) as usize,
        },
    };
    execute("bulk", common, spec, record)
}

fn target(common: &Common) -> Result<Target, Error> {
    Ok(Target::parse(&common.target).map_err(Usage::Target)?)
}

fn http_spec(http: &HttpArgs, common: &Common, pipeline: usize) -> Result<WorkloadSpec, Error> {
    let t = target(common)?;
    let one = build_request(
        &http.method,
        &t.path,
        &t.host_header(),
        &http.headers,
        false,
    )
    .map_err(Usage::Request)?;
    Ok(WorkloadSpec::Http {
        request: one.repeat(pipeline),
        pipeline,
        head: http.method.eq_ignore_ascii_case("HEAD"),
    })
}

fn one_shot(kind: RequestKind, http: &HttpArgs, common: &Common) -> Result<OneShot, Error> {
    Ok(match kind {
        RequestKind::None => OneShot::None,
        RequestKind::Echo => OneShot::Echo,
        RequestKind::Http => {
            let t = target(common)?;
            OneShot::Http(
                build_request(&http.method, &t.path, &t.host_header(), &http.headers, true)
                    .map_err(Usage::Request)?,
            )
        }
    })
}

/// Builds the plan from the shared flags.
fn plan(
    name: &'static str,
    mut c: Common,
    workload: WorkloadSpec,
    record: Option<usize>,
) -> Result<Plan, Error> {
    if c.quick {
        // With a quota (-n) the quota ends the run, bounded by the given
        // --duration: a slow (debug, loaded) machine still completes it.
        if c.requests.is_none() {
            c.duration = Duration::from_secs(1);
        }
        c.warmup = Duration::ZERO;
        c.connections = c.connections.min(QUICK_CONNECTIONS);
        c.interval = Duration::from_millis(200);
    }
    if c.connections == 0 {
        return Err(Usage::NoConnection.into());
    }
    if c.threads == Some(0) {
        return Err(Usage::NoThread.into());
    }
    if c.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(Usage::Rate.into());
    }
    if c.interval < Duration::from_millis(10) {
        return Err(Usage::Interval.into());
    }
    let fleet = c.worker.map(|tag| Fleet {
        tag,
        rate: c.rate,
        connections: c.connections,
        requests: c.requests,
    });
    if let Some(f) = &fleet {
        take_share(&mut c, f.tag)?;
    }
    if let Some(at) = c.start_at {
        fleet::until(at, SystemTime::now(), "at start-up").map_err(Usage::StartAt)?;
    }
    let cpus = if c.no_pin {
        Vec::new()
    } else if let Some(list) = &c.cpus {
        parse_cpus(list).map_err(Usage::Cpus)?
    } else {
        core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|id| id.id)
            .collect()
    };
    let cpu_count = if cpus.is_empty() {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cpus.len()
    };
    let threads = c
        .threads
        .unwrap_or(cpu_count * WORKERS_PER_CPU)
        .min(c.connections);
    let target = target(&c)?;
    if !c.tls.insecure && c.tls.ca.is_none() && target.addr.ip().is_loopback() {
        // A loopback target without --ca is a local test server, most often
        // with a self-signed certificate (uringtls's default): benchmark it
        // as wrk and h2load would, and say so. --ca turns verification on.
        eprintln!(
            "bench-client: note: certificate not verified (loopback target {} and no --ca; pass --ca FILE to verify)",
            target.addr
        );
        c.tls.insecure = true;
    }
    let tls_options = c.tls.options();
    let mut tls = crate::tls::client_config(&tls_options).map_err(Usage::Tls)?;
    tls.max_fragment_size = record;
    let server_name = crate::tls::server_name(&tls_options, &target.host).map_err(Usage::Tls)?;
    Ok(Plan {
        name,
        workload,
        target,
        server_name,
        tls,
        connections: c.connections,
        threads,
        cpus,
        rate: c.rate,
        duration: c.duration,
        warmup: c.warmup,
        requests: c.requests,
        timeout: c.timeout,
        interval: c.interval,
        io_backend: c.io_backend,
        fleet,
        start_at: c.start_at,
    })
}

/// Resolves the flags, then runs the plan.
fn execute(
    name: &'static str,
    common: Common,
    spec: WorkloadSpec,
    record: Option<usize>,
) -> Result<ExitCode, Error> {
    let out = &common.output;
    let outputs = OutputOptions {
        latency: out.latency,
        hgrm: out.hgrm.clone(),
        hlog: out.hlog.clone(),
        json: out.json.clone(),
        csv: out.csv.clone(),
        server_metrics: None,
        quiet: common.quiet,
    };
    let server_metrics = out.server_metrics.clone();
    let plan = plan(name, common, spec, record)?;
    let outputs = OutputOptions {
        server_metrics: server_metrics
            .as_deref()
            .map(ServerMetrics::parse)
            .transpose()
            .map_err(Usage::ServerMetrics)?,
        ..outputs
    };
    crate::runner::run(plan, &outputs)?;
    Ok(ExitCode::SUCCESS)
}

/// Replaces the fleet's `--connections`, `--rate` and `--requests` in `c`
/// by worker `tag`'s share; a share of nothing is an error.
fn take_share(c: &mut Common, tag: WorkerTag) -> Result<(), Error> {
    let starved = |flag: &'static str, total: String| Usage::Starved { flag, total, tag };
    let conns = tag.share_count(c.connections as u64);
    if conns == 0 {
        return Err(starved("--connections", c.connections.to_string()).into());
    }
    c.connections = conns as usize;
    if let Some(r) = c.rate {
        let share = tag.share_rate(r);
        if share <= 0.0 {
            return Err(starved("--rate", r.to_string()).into());
        }
        c.rate = Some(share);
    }
    if let Some(total) = c.requests {
        let share = tag.share_count(total);
        if share == 0 {
            return Err(starved("--requests", total.to_string()).into());
        }
        c.requests = Some(share);
    }
    Ok(())
}

/// A plan for unit tests (`bench-client http 127.0.0.1:1 -k` plus `extra` flags).
#[cfg(test)]
pub(crate) fn test_plan(extra: &[&str]) -> Plan {
    use clap::Parser;
    let mut args = vec!["bench-client", "http", "127.0.0.1:1", "-k"];
    args.extend_from_slice(extra);
    let cli = Cli::try_parse_from(args).expect("test flags parse");
    let Command::Http {
        common,
        http,
        pipeline,
    } = cli.command
    else {
        unreachable!("http subcommand")
    };
    let spec = http_spec(&http, &common, pipeline).expect("spec");
    plan("http", common, spec, None).expect("plan")
}

#[cfg(test)]
mod tests {
    use super::test_plan;
    use uringtls_runtime::io::Backend;

    fn plan_error(extra: &[&str]) -> String {
        use clap::Parser;
        let mut args = vec!["bench-client", "http", "127.0.0.1:1", "-k"];
        args.extend_from_slice(extra);
        let cli = super::Cli::try_parse_from(args).expect("flags parse");
        let super::Command::Http { common, http, .. } = cli.command else {
            unreachable!("http subcommand")
        };
        let spec = super::http_spec(&http, &common, 1).expect("spec");
        match super::plan("http", common, spec, None) {
            Ok(_) => panic!("plan accepted {extra:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn workers_share_the_fleet_totals_exactly() {
        let plans: Vec<_> = (1..=3)
            .map(|i| {
                let w = format!("{i}/3");
                test_plan(&["--worker", &w, "-c", "7", "--rate", "600.5", "-n", "11"])
            })
            .collect();
        let conns: Vec<usize> = plans.iter().map(|p| p.connections).collect();
        assert_eq!(conns, [3, 2, 2]);
        let rates: Vec<f64> = plans.iter().filter_map(|p| p.rate).collect();
        assert_eq!(rates, [200.5, 200.0, 200.0]);
        let reqs: Vec<u64> = plans.iter().filter_map(|p| p.requests).collect();
        assert_eq!(reqs, [4, 4, 3]);
        // Threads follow the worker's own connections.
        assert!(plans.iter().all(|p| p.threads <= p.connections));
    }

    #[test]
    fn a_share_of_nothing_or_a_start_time_passed_is_refused_naming_the_flag() {
        let e = plan_error(&["--worker", "3/3", "-c", "2"]);
        assert!(
            e.starts_with("--connections 2 is the fleet's total with --worker 3/3"),
            "{e}"
        );
        assert!(e.contains("give --connections 3 or more"), "{e}");
        let e = plan_error(&["--worker", "3/3", "-c", "3", "-n", "2"]);
        assert!(e.starts_with("--requests 2 is the fleet's total"), "{e}");
        let e = plan_error(&["--worker", "3/3", "-c", "3", "--rate", "2"]);
        assert!(e.starts_with("--rate 2 is the fleet's total"), "{e}");
        let e = plan_error(&["--start-at", "2020-01-01T00:00:00Z"]);
        assert!(
            e.starts_with("--start-at 1577836800.000 (Unix seconds) passed"),
            "{e}"
        );
        assert!(e.contains("at start-up"), "{e}");
    }

    #[test]
    fn the_tls_flags_default_to_the_tls_options_default() {
        use clap::Parser;
        let cli =
            super::Cli::try_parse_from(["bench-client", "http", "127.0.0.1:1"]).expect("parse");
        let super::Command::Http { common, .. } = cli.command else {
            unreachable!("http subcommand")
        };
        assert_eq!(common.tls.options(), crate::plan::TlsOptions::default());
    }

    #[test]
    fn workers_park_in_epoll_unless_the_uring_backend_is_asked_for() {
        assert_eq!(test_plan(&[]).io_backend, Backend::TokioUring);
        assert_eq!(
            test_plan(&["--io-backend", "uring"]).io_backend,
            Backend::Uring
        );
    }
}
