//! A worker thread: pinned to its CPU, with its own io_uring runtime
//! (`uringtls_runtime::io`), running its share of the connection slots as tasks.
//! Slots record into the thread's [`Recorder`] (a `RefCell`: tasks of one
//! thread never run at once, so no lock). A ticker hands the recorder to the
//! main thread once per interval.

use super::pacing::Pacer;
use super::record::{client_lag_removed, record_op};
use crate::plan::Plan;
use crate::stats::cpu::thread_cpu;
use crate::stats::Recorder;
use crate::tls::with_resumption;
use crate::workloads::{self, dial::Dialer, OpTimes, Slot};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use uringtls_runtime::io::{RingOptions, Runtime};

/// Longest the ticker sleeps before looking at the stop flag again.
const STOP_POLL: Duration = Duration::from_millis(50);
/// Session-store entries per resuming slot (one server name is enough).
const SESSIONS_PER_SLOT: usize = 4;

/// The run's time line, shared by all threads.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Load starts.
    pub start: Instant,
    /// Measuring starts (`start + warmup`).
    pub measure: Instant,
    /// Load stops.
    pub deadline: Instant,
}

/// What a worker sends to the main thread.
#[derive(Debug)]
pub enum Msg {
    /// One interval of one thread.
    Snapshot(Box<Snapshot>),
    /// The thread could not start.
    Failed {
        /// Worker index.
        thread: usize,
        /// What went wrong.
        error: crate::error::WorkerError,
    },
}

/// One thread's measurements over one interval.
#[derive(Debug)]
pub struct Snapshot {
    /// Worker index.
    pub thread: usize,
    /// Interval index (same across threads).
    pub tick: u64,
    /// The interval lies in the warmup (not counted).
    pub warmup: bool,
    /// The thread's final snapshot.
    pub last: bool,
    /// Interval end, since `Clock::start`.
    pub end: Duration,
    /// What was measured.
    pub rec: Recorder,
    /// Most connections open at once during the interval.
    pub active: u64,
    /// Most connections open at once so far.
    pub peak: u64,
    /// On the last snapshot: CPU time used since measuring started, and the wall time.
    pub busy: Option<(Duration, Duration)>,
}

/// State shared by the slots of one thread.
struct Shared {
    rec: RefCell<Recorder>,
    open_loop: bool,
    active: Cell<u64>,
    peak: Cell<u64>,
    /// Most connections open at once during the current interval.
    interval_peak: Cell<u64>,
    live_slots: Cell<usize>,
    stop: Arc<AtomicBool>,
    deadline: Instant,
}

impl Shared {
    fn finished(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }

    fn connections(&self, delta: i64) {
        let a = self.active.get().saturating_add_signed(delta);
        self.active.set(a);
        self.peak.set(self.peak.get().max(a));
        self.interval_peak.set(self.interval_peak.get().max(a));
    }
}

/// Starts worker `idx`.
pub fn spawn(
    idx: usize,
    plan: Arc<Plan>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    tx: Sender<Msg>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("bench-{idx}"))
        .spawn(move || {
            if let Some(cpu) = plan.cpu_for(idx) {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                    eprintln!("bench-client: warning: could not pin worker {idx} to CPU {cpu}");
                }
            }
            let ring = RingOptions {
                backend: plan.io_backend,
                ..RingOptions::default()
            };
            let rt = match Runtime::new(&ring) {
                Ok(rt) => rt,
                Err(e) => {
                    let error = crate::error::WorkerError::Runtime {
                        index: idx,
                        source: e,
                    };
                    let _ = tx.send(Msg::Failed { thread: idx, error });
                    return;
                }
            };
            rt.block_on(thread_main(idx, plan, clock, stop, tx));
        })
}

async fn thread_main(
    idx: usize,
    plan: Arc<Plan>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    tx: Sender<Msg>,
) {
    let shared = Rc::new(Shared {
        rec: RefCell::new(Recorder::new()),
        open_loop: plan.rate.is_some(),
        active: Cell::new(0),
        peak: Cell::new(0),
        interval_peak: Cell::new(0),
        live_slots: Cell::new(0),
        stop,
        deadline: clock.deadline,
    });
    let spec = Rc::new(plan.workload.clone());
    let thread_cfg = with_resumption(&plan.tls, 0);
    let dialer = Dialer {
        addr: plan.target.addr,
        name: plan.server_name.clone(),
        config: thread_cfg,
        timeout: plan.timeout,
    };
    for s in (idx..plan.connections).step_by(plan.threads) {
        let d = if spec.resumes() {
            dialer.with_config(with_resumption(&plan.tls, SESSIONS_PER_SLOT))
        } else {
            dialer.clone()
        };
        let slot = Slot::new(d, &spec);
        let pacer = plan
            .rate
            .map(|r| Pacer::new(clock.start, r, s, plan.connections));
        shared.live_slots.set(shared.live_slots.get() + 1);
        uringtls_runtime::io::spawn(run_slot(
            shared.clone(),
            spec.clone(),
            slot,
            pacer,
            plan.quota(s),
        ));
    }
    ticker(idx, &plan, clock, &shared, &tx).await;
}

/// Hands over a snapshot every interval until the run ends.
async fn ticker(idx: usize, plan: &Plan, clock: Clock, sh: &Shared, tx: &Sender<Msg>) {
    let warm = clock.measure > clock.start;
    let mut next = if warm {
        clock.measure
    } else {
        clock.measure + plan.interval
    };
    let mut next_is_warm = warm;
    let mut tick = 0u64;
    let mut cpu0 = (thread_cpu(), Instant::now());
    loop {
        let wake = next.min(clock.deadline).min(Instant::now() + STOP_POLL);
        uringtls_runtime::io::time::sleep_until(wake).await;
        let now = Instant::now();
        let done = sh.finished() || sh.live_slots.get() == 0;
        if done || now >= next {
            let rec = sh.rec.replace(Recorder::new());
            let busy = done.then(|| (thread_cpu().saturating_sub(cpu0.0), now - cpu0.1));
            let snap = Snapshot {
                thread: idx,
                tick,
                warmup: if done {
                    now < clock.measure
                } else {
                    next_is_warm
                },
                last: done,
                end: now - clock.start,
                rec,
                active: sh.interval_peak.replace(sh.active.get()),
                peak: sh.peak.get(),
                busy,
            };
            if tx.send(Msg::Snapshot(Box::new(snap))).is_err() || done {
                return;
            }
            if next_is_warm {
                cpu0 = (thread_cpu(), now);
            }
            next_is_warm = false;
            next += plan.interval;
            tick += 1;
        }
    }
}

/// One connection slot: repeat the workload's operation until the run ends
/// or the slot's quota is used.
async fn run_slot(
    sh: Rc<Shared>,
    spec: Rc<workloads::WorkloadSpec>,
    mut slot: Slot,
    mut pacer: Option<Pacer>,
    quota: Option<u64>,
) {
    let one_shot = spec.one_shot();
    let mut t = OpTimes::new(Instant::now());
    let res = workloads::prepare(&spec, &mut slot, &mut t).await;
    record_op(&mut sh.rec.borrow_mut(), &t, res, sh.open_loop);
    let mut connected = slot.stream.is_some();
    sh.connections(i64::from(connected));
    if let Some(p) = pacer.as_mut() {
        p.skip_to(Instant::now());
    }
    let mut n = 0u64;
    let mut free_at = Instant::now();
    while !sh.finished() && quota.is_none_or(|q| n < q) {
        let intended = match pacer.as_mut() {
            Some(p) => {
                let at = p.next_intended();
                if at > Instant::now() {
                    uringtls_runtime::io::time::sleep_until(at).await;
                    if sh.finished() {
                        break;
                    }
                }
                client_lag_removed(at, free_at, Instant::now())
            }
            None => Instant::now(),
        };
        t.reset(intended);
        if one_shot {
            sh.connections(1);
        }
        let res = workloads::op(&spec, &mut slot, &mut t).await;
        if one_shot {
            sh.connections(-1);
        } else if slot.stream.is_some() != connected {
            connected = !connected;
            sh.connections(if connected { 1 } else { -1 });
        }
        record_op(&mut sh.rec.borrow_mut(), &t, res, sh.open_loop);
        free_at = Instant::now();
        n += 1;
    }
    if connected {
        sh.connections(-1);
    }
    sh.live_slots.set(sh.live_slots.get() - 1);
}
