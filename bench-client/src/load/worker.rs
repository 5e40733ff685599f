//! A worker thread: pinned to its CPU, with its own io_uring runtime
//! (`uringtls::io`), running its share of the connection slots as tasks.
//! Slots record into the thread's [`Recorder`] (a `RefCell`: tasks of one
//! thread never run at once, so no lock). A ticker hands the recorder to the
//! main thread once per interval.

use super::pacing::Pacer;
use super::Plan;
use crate::stats::cpu::thread_cpu;
use crate::stats::errors::ErrorClass;
use crate::stats::{Metric, Recorder};
use crate::tls::with_resumption;
use crate::workloads::{self, dial::Dialer, OpTimes, Slot};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use uringtls::io::{RingOptions, Runtime};

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
        error: String,
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
    std::thread::Builder::new().name(format!("bench-{idx}")).spawn(move || {
        if let Some(cpu) = plan.cpu_for(idx) {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                eprintln!("bench-client: warning: could not pin worker {idx} to CPU {cpu}");
            }
        }
        let rt = match Runtime::new(&RingOptions::default()) {
            Ok(rt) => rt,
            Err(e) => {
                let error = format!(
                    "worker {idx}: cannot set up io_uring: {e} (is io_uring disabled by kernel.io_uring_disabled or a seccomp policy?)"
                );
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
        uringtls::io::spawn(run_slot(
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
        tokio::time::sleep_until(wake.into()).await;
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
                    tokio::time::sleep_until(at.into()).await;
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

/// The reference time for coordinated-omission correction. An operation
/// intended at `at` can start once the slot is free (`free_at`, its previous
/// reply is in); any further delay until `woke` is our own timer waking late
/// (tokio timers have 1 ms granularity), not the server's doing, so the
/// reference moves forward by that much. A slot held up by a slow reply
/// keeps `at` as its reference: that wait is exactly what the correction
/// must charge.
pub fn client_lag_removed(at: Instant, free_at: Instant, woke: Instant) -> Instant {
    at + woke.saturating_duration_since(at.max(free_at))
}

/// Turns one operation's timings into samples. In open loop, `Total` is
/// measured from the intended send time (corrected) and `Uncorrected` from
/// the actual one; in closed loop both would be equal, so only `Total` is kept.
pub fn record_op(r: &mut Recorder, t: &OpTimes, res: Result<(), ErrorClass>, open_loop: bool) {
    if let Some(d) = t.connect {
        r.record(Metric::Connect, d);
    }
    if let Some(d) = t.handshake {
        r.record(Metric::Handshake, d);
        r.connections += 1;
        if t.resumed == Some(true) {
            r.resumed_handshakes += 1;
        } else {
            r.full_handshakes += 1;
        }
    }
    if let Some(d) = t.ttfb {
        r.record(Metric::Ttfb, d);
    }
    for &done in &t.done {
        if open_loop {
            r.record(Metric::Total, done.saturating_duration_since(t.intended));
            r.record(Metric::Uncorrected, done.saturating_duration_since(t.start));
        } else {
            r.record(Metric::Total, done.saturating_duration_since(t.start));
        }
    }
    r.ops += t.done.len() as u64;
    r.bytes_in += t.bytes_in;
    r.bytes_out += t.bytes_out;
    r.cipher_in += t.cipher_in;
    r.cipher_out += t.cipher_out;
    if let Some(s) = t.bad_status {
        r.error(ErrorClass::BadStatus(s));
    }
    if let Err(e) = res {
        r.error(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One slot at 1000 ops/s for 10 s against a server answering in 10 µs,
    /// except one 1 s stall at t = 5 s. The slot behaves exactly like the real
    /// loop: it sends at max(intended, previous reply).
    fn scripted_stall(open_loop: bool) -> Recorder {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, 1000.0, 0, 1);
        let mut rec = Recorder::new();
        let mut free_at = start;
        let mut stalled = false;
        for _ in 0..10_000 {
            let intended = pacer.next_intended();
            let send = intended.max(free_at);
            let service = if !stalled && send >= start + Duration::from_secs(5) {
                stalled = true;
                Duration::from_secs(1)
            } else {
                Duration::from_micros(10)
            };
            let done = send + service;
            let mut t = OpTimes::new(if open_loop { intended } else { send });
            t.start = send;
            t.done.push(done);
            record_op(&mut rec, &t, Ok(()), open_loop);
            free_at = done;
        }
        rec
    }

    fn ms(us: u64) -> f64 {
        us as f64 / 1000.0
    }

    #[test]
    fn a_scripted_stall_shows_in_corrected_percentiles_but_hides_in_uncorrected_ones() {
        let rec = scripted_stall(true);
        let corr = rec.hist(Metric::Total);
        let raw = rec.hist(Metric::Uncorrected);
        assert_eq!(corr.len(), 10_000);
        // ~1000 sends were due during the stall; their waits fall linearly
        // from 1 s (by 0.99 ms per send), so the 100th worst waited ~902 ms
        // and the 500th worst ~506 ms.
        let p99 = ms(corr.value_at_quantile(0.99));
        let p95 = ms(corr.value_at_quantile(0.95));
        let p90 = ms(corr.value_at_quantile(0.90));
        assert!((895.0..=910.0).contains(&p99), "corrected p99 {p99} ms");
        assert!((498.0..=512.0).contains(&p95), "corrected p95 {p95} ms");
        // The 1000th worst waited ~10 ms; the median never saw the stall.
        assert!((5.0..=15.0).contains(&p90), "corrected p90 {p90} ms");
        assert!(ms(corr.value_at_quantile(0.5)) < 0.1);
        assert!(
            (999.0..=1001.0).contains(&ms(corr.max())),
            "max {}",
            corr.max()
        );
        // Uncorrected: only the one request that hit the stall saw it.
        assert!(ms(raw.value_at_quantile(0.9999)) < 1.0);
        assert!((999.0..=1001.0).contains(&ms(raw.max())));
    }

    #[test]
    fn late_timer_wakeups_are_not_charged_but_waiting_for_a_reply_is() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Slot idle since t0, op due at 10 ms, timer fired at 10.8 ms: reference 10.8 ms.
        assert_eq!(
            client_lag_removed(t0 + ms(10), t0, t0 + Duration::from_micros(10_800)),
            t0 + Duration::from_micros(10_800)
        );
        // Previous reply came at 50 ms, op was due at 10 ms, sent at once: reference stays 10 ms.
        assert_eq!(
            client_lag_removed(t0 + ms(10), t0 + ms(50), t0 + ms(50)),
            t0 + ms(10)
        );
    }

    #[test]
    fn closed_loop_records_total_only() {
        let rec = scripted_stall(false);
        assert_eq!(rec.hist(Metric::Uncorrected).len(), 0);
        assert!(ms(rec.hist(Metric::Total).value_at_quantile(0.99)) < 1.0);
    }

    #[test]
    fn requests_are_split_evenly_over_slots() {
        let quotas: Vec<u64> = (0..3).map(|s| 10 / 3 + u64::from(s < 10 % 3)).collect();
        assert_eq!(quotas, vec![4, 3, 3]);
    }
}
