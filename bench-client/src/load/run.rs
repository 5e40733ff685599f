//! The main thread during a run: start the workers, merge their interval
//! snapshots (an interval is complete once every thread has sent it or
//! finished), feed each merged interval to the outputs (progress, CSV, hlog),
//! add the measured ones into the run total, and sample CPU before/after.

use super::worker::{self, Clock, Msg, Snapshot};
use crate::error::Error;
use crate::plan::Plan;
use crate::stats::cpu::ProcessCpu;
use crate::stats::server::{ServerMetrics, ServerMetricsError};
use crate::stats::Recorder;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One interval, all threads merged.
#[derive(Debug)]
pub struct Interval {
    /// Index (0-based, warmup interval included).
    pub index: u64,
    /// In the warmup (not counted in the totals).
    pub warmup: bool,
    /// Interval start, since measuring started (negative warmup is clamped to 0).
    pub start: Duration,
    /// Interval length.
    pub len: Duration,
    /// What was measured.
    pub rec: Recorder,
    /// Most connections open at once during it (sum over threads).
    pub active: u64,
}

/// Something that consumes intervals as they complete.
pub trait IntervalSink {
    /// Called once per merged interval, in order.
    fn interval(&mut self, iv: &Interval) -> std::io::Result<()>;
}

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    /// Everything measured after the warmup.
    pub total: Recorder,
    /// Measured wall time.
    pub measured: Duration,
    /// Most connections open at once (summed over threads' peaks).
    pub peak_connections: u64,
    /// Per worker: share of its wall time spent on CPU while measuring.
    pub thread_busy: Vec<f64>,
    /// Our process's CPU over the whole run, and the run's wall time.
    pub process_cpu: ProcessCpu,
    /// Whole run wall time (warmup included).
    pub wall: Duration,
    /// Server CPU time over the measured phase, or why it is unknown.
    pub server_cpu: Option<Result<Duration, ServerMetricsError>>,
    /// Workers that failed to start.
    pub failed_threads: Vec<crate::error::WorkerError>,
}

#[derive(Default)]
struct Pending {
    rec: Option<Recorder>,
    active: u64,
    end: Duration,
    warmup: bool,
}

/// Runs `plan`, feeding intervals to `sinks`.
pub fn run(
    plan: Arc<Plan>,
    server: Option<&ServerMetrics>,
    sinks: &mut [&mut dyn IntervalSink],
) -> Result<Outcome, Error> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Ctrl-C ends the run early and still prints the summary.
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let cpu_start = ProcessCpu::now();
    let start = Instant::now();
    let clock = Clock {
        start,
        measure: start + plan.warmup,
        deadline: start + plan.warmup + plan.duration,
    };
    let mut server_before = match server {
        Some(s) if plan.warmup.is_zero() => Some(s.sample()),
        _ => None,
    };
    let (tx, rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(plan.threads);
    for i in 0..plan.threads {
        let h = worker::spawn(i, plan.clone(), clock, stop.clone(), tx.clone())
            .map_err(|source| Error::Spawn { index: i, source })?;
        handles.push(h);
    }
    drop(tx);

    let threads = plan.threads;
    let mut high: Vec<Option<u64>> = vec![None; threads];
    let mut done = vec![false; threads];
    let mut peaks = vec![0u64; threads];
    let mut busy = vec![0.0; threads];
    let mut failed = Vec::new();
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut total = Recorder::new();
    let mut prev_end = Duration::ZERO;
    let mut measured_end = Duration::ZERO;
    let mut sink_error = None;

    while done.iter().any(|d| !d) {
        if let (Some(s), None) = (server, &server_before) {
            if Instant::now() >= clock.measure {
                server_before = Some(s.sample());
            }
        }
        let wait = clock
            .measure
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let msg = match rx.recv_timeout(if server_before.is_none() && server.is_some() {
            wait
        } else {
            Duration::from_secs(1)
        }) {
            Ok(m) => m,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let snap: Box<Snapshot> = match msg {
            Msg::Snapshot(s) => s,
            Msg::Failed { thread, error } => {
                // A thread that failed to start sends nothing else.
                failed.push(error);
                done[thread] = true;
                continue;
            }
        };
        let t = snap.thread;
        high[t] = Some(snap.tick);
        peaks[t] = peaks[t].max(snap.peak);
        if snap.last {
            done[t] = true;
            if let Some((cpu, wall)) = snap.busy {
                busy[t] = cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9);
            }
        }
        let p = pending.entry(snap.tick).or_default();
        p.active += snap.active;
        p.end = p.end.max(snap.end);
        p.warmup |= snap.warmup;
        match &mut p.rec {
            Some(r) => r.merge(&snap.rec),
            None => p.rec = Some(snap.rec),
        }
        // Emit every interval that no thread can still contribute to.
        while let Some((&k, _)) = pending.iter().next() {
            let complete = (0..threads).all(|i| done[i] || high[i].is_some_and(|h| h >= k));
            if !complete {
                break;
            }
            let Some(p) = pending.remove(&k) else { break };
            let rec = p.rec.unwrap_or_default();
            let warm = plan.warmup.as_nanos() > 0;
            let iv = Interval {
                index: k,
                warmup: p.warmup,
                start: prev_end.saturating_sub(if warm { plan.warmup } else { Duration::ZERO }),
                len: p.end.saturating_sub(prev_end),
                rec,
                active: p.active,
            };
            prev_end = p.end;
            if !iv.warmup {
                total.merge(&iv.rec);
                measured_end = p.end;
            }
            for s in sinks.iter_mut() {
                if let Err(e) = s.interval(&iv) {
                    sink_error.get_or_insert(e);
                }
            }
        }
    }
    for h in handles {
        let _ = h.join();
    }
    if let Some(e) = sink_error {
        return Err(Error::Interval(e));
    }
    if failed.len() == threads {
        return Err(Error::NoWorker(failed));
    }
    let server_cpu = server.map(|s| {
        let after = s.sample()?;
        let before = server_before.unwrap_or(Err(ServerMetricsError::NoStartSample))?;
        Ok(after.saturating_sub(before))
    });
    Ok(Outcome {
        total,
        measured: measured_end.saturating_sub(plan.warmup),
        peak_connections: peaks.iter().sum(),
        thread_busy: busy,
        process_cpu: ProcessCpu::now().since(&cpu_start),
        wall: start.elapsed(),
        server_cpu,
        failed_threads: failed,
    })
}
