//! The `uring` backend: one io_uring per shard thread, driven by our own
//! single-threaded executor, built on the `io-uring` crate directly.
//!
//! What it does that tokio-uring cannot:
//! - the ring is set up `SINGLE_ISSUER | DEFER_TASKRUN` (completion work runs
//!   only when this thread asks for events, in one batch, never as an
//!   interrupt), and the thread parks *in* `io_uring_enter` — one syscall per
//!   loop that both submits and waits, with the next timer as its timeout;
//! - receives pick their buffer from a provided-buffer ring
//!   ([`bufring`]) when data arrives, so an idle connection holds no receive
//!   buffer.
//!
//! The loop: poll every woken task once; fire due timers; then one
//! `io_uring_enter` that submits what the tasks queued and either just
//! collects completions (more tasks are ready) or waits for the first
//! completion, the next timer, or a wake from another thread (an eventfd
//! read is always in flight on the ring for that).
//!
//! Tokio's synchronisation primitives (`watch`, `Notify`, `mpsc`) and
//! `tokio::select!` work unchanged on this executor: they only need wakers,
//! and ours are thread-safe. Tokio's *timers* do not (they need a tokio
//! runtime): engine code uses [`crate::io::time`] instead.

pub(crate) mod bufring;
pub(crate) mod net;
pub mod restrict;
mod stats;

use bufring::BufRing;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Wake, Waker};
use std::time::{Duration, Instant};

/// user_data of the eventfd read that wakes a parked loop.
const WAKE_UD: u64 = u64::MAX;
/// user_data of the cancels issued at shutdown and for a listener's
/// accepts (their completions are ignored).
const CANCEL_UD: u64 = u64::MAX - 1;
/// Task id of the future given to `block_on`.
const ROOT: usize = usize::MAX;

/// Receive buffers per shard in the provided-buffer ring.
pub(crate) const POOL_BUFFERS: u16 = 256;
/// Size of each (one maximal TLS record plus headroom).
pub(crate) const POOL_BUF_SIZE: usize = 16 * 1024 + 512;
/// Completions a multishot operation may hold before the driver cancels
/// it: a connection that is not read (a proxy's slow backend, a busy
/// service) keeps about this many pool buffers, and the rest of its data
/// waits in the socket, under TCP flow control, until it reads again.
pub(crate) const MULTI_QUEUE_CAP: usize = 4;
/// Bytes one multishot receive takes before the kernel ends it (Linux
/// 6.16+, `optlen`; the next read arms it again): the kernel bound on
/// what one connection pulls into the pool in one go, which the driver's
/// cap above can only act on after the fact.
pub(crate) const MULTI_RECV_BYTES: u32 = (MULTI_QUEUE_CAP * POOL_BUF_SIZE) as u32;

thread_local! {
    static CURRENT: RefCell<Option<Rc<Driver>>> = const { RefCell::new(None) };
    /// Wakes from the thread the runtime runs on (completions, timers,
    /// one task waking another) go here, without the shared queue's lock.
    static LOCAL: LocalReady = const {
        LocalReady {
            owner: Cell::new(std::ptr::null()),
            ids: RefCell::new(Vec::new()),
        }
    };
}

/// The thread-local half of the ready queue of the runtime running on this
/// thread (`owner`).
struct LocalReady {
    owner: Cell<*const ReadyQueue>,
    ids: RefCell<Vec<usize>>,
}

/// Queues `id` locally if `q` is the queue of the runtime running on this
/// thread; false otherwise (the caller takes the shared queue).
fn push_local(q: &Arc<ReadyQueue>, id: usize) -> bool {
    LOCAL
        .try_with(|l| {
            if l.owner.get() != Arc::as_ptr(q) {
                return false;
            }
            match l.ids.try_borrow_mut() {
                Ok(mut ids) => {
                    ids.push(id);
                    true
                }
                Err(_) => false,
            }
        })
        .unwrap_or(false)
}

/// Makes `q` the local queue of this thread while `Driver::run` runs,
/// and puts back the previous one (a runtime nested in another's task)
/// when dropped.
struct LocalOwner {
    prev: *const ReadyQueue,
    prev_ids: Vec<usize>,
}

impl LocalOwner {
    fn set(q: &Arc<ReadyQueue>) -> LocalOwner {
        LOCAL.with(|l| LocalOwner {
            prev: l.owner.replace(Arc::as_ptr(q)),
            prev_ids: std::mem::take(&mut *l.ids.borrow_mut()),
        })
    }
}

impl Drop for LocalOwner {
    fn drop(&mut self) {
        let _ = LOCAL.try_with(|l| {
            l.owner.set(self.prev);
            *l.ids.borrow_mut() = std::mem::take(&mut self.prev_ids);
        });
    }
}

/// The driver of the current thread. Panics outside a uring runtime: the
/// facade in `io/mod.rs` only calls in here when this backend is current.
pub(crate) fn driver() -> Rc<Driver> {
    CURRENT.with(|c| {
        c.borrow()
            .clone()
            .expect("uring backend used outside its runtime")
    })
}

/// The loop's clock (see [`crate::io::time::now`]), when a uring runtime
/// runs on this thread.
pub(crate) fn now() -> Option<Instant> {
    CURRENT.with(|c| c.borrow().as_ref().map(|d| d.now.get()))
}

/// Whether a uring runtime is running on this thread.
pub(crate) fn is_current() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

/// Woken task ids, shared with wakers (which may run on other threads).
struct ReadyQueue {
    ids: Mutex<Vec<usize>>,
    /// The loop is (about to be) parked in `io_uring_enter`: a waker must
    /// write the eventfd.
    parked: AtomicBool,
    /// Owned here, not by the driver: a waker on another thread may
    /// outlive the runtime, and must never write to a closed (or reused)
    /// descriptor.
    efd: OwnedFd,
}

impl ReadyQueue {
    fn push(&self, id: usize) {
        match self.ids.lock() {
            Ok(mut q) => q.push(id),
            Err(p) => p.into_inner().push(id),
        }
        if self.parked.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid u64 to the eventfd this
            // queue owns (open for as long as the queue, hence any waker,
            // exists).
            unsafe { libc::write(self.efd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    fn take(&self, into: &mut Vec<usize>) {
        let mut q = match self.ids.lock() {
            Ok(q) => q,
            Err(p) => p.into_inner(),
        };
        std::mem::swap(&mut *q, into);
    }

    fn is_empty(&self) -> bool {
        match self.ids.lock() {
            Ok(q) => q.is_empty(),
            Err(p) => p.into_inner().is_empty(),
        }
    }
}

struct TaskWaker {
    id: usize,
    queued: AtomicBool,
    ready: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) && !push_local(&self.ready, self.id) {
            self.ready.push(self.id);
        }
    }
}

/// The vtable of our tasks' wakers: the data pointer is an
/// `Arc<TaskWaker>` (from `Arc::into_raw`) carrying the waker's count.
/// Having our own (rather than `Waker::from`) lets the driver recognise its
/// tasks' wakers and remember a task by id instead of cloning its waker
/// (see [`Waiter`]).
static TASK_WAKER_VTABLE: RawWakerVTable = RawWakerVTable::new(
    task_waker_clone,
    task_waker_wake,
    task_waker_wake_by_ref,
    task_waker_drop,
);

unsafe fn task_waker_clone(p: *const ()) -> RawWaker {
    // SAFETY: `p` came from `Arc::<TaskWaker>::into_raw` (see `task_waker`)
    // and the waker being cloned holds one count, so the Arc is alive.
    unsafe { Arc::increment_strong_count(p.cast::<TaskWaker>()) };
    RawWaker::new(p, &TASK_WAKER_VTABLE)
}

unsafe fn task_waker_wake(p: *const ()) {
    // SAFETY: as above; this takes over the count of the waker consumed.
    let w = unsafe { Arc::from_raw(p.cast::<TaskWaker>()) };
    Wake::wake_by_ref(&w);
}

unsafe fn task_waker_wake_by_ref(p: *const ()) {
    // SAFETY: as above; the borrowed waker keeps its count: the Arc made
    // here is not dropped.
    let w = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(p.cast::<TaskWaker>()) });
    Wake::wake_by_ref(&*w);
}

unsafe fn task_waker_drop(p: *const ()) {
    // SAFETY: as above; gives back the count of the waker dropped.
    drop(unsafe { Arc::from_raw(p.cast::<TaskWaker>()) });
}

/// A waker for `w`'s task, with [`TASK_WAKER_VTABLE`].
fn task_waker(w: Arc<TaskWaker>) -> Waker {
    let raw = RawWaker::new(Arc::into_raw(w).cast::<()>(), &TASK_WAKER_VTABLE);
    // SAFETY: the vtable's functions uphold the `RawWaker` contract for a
    // data pointer from `Arc::<TaskWaker>::into_raw` that carries one count,
    // which is what `raw` holds.
    unsafe { Waker::from_raw(raw) }
}

/// Who a waiting operation's completion wakes: one of this driver's tasks,
/// by id (no waker cloned per operation), or any other waker.
enum Waiter {
    Nobody,
    Task(usize),
    Other(Waker),
}

struct Task {
    fut: Option<Pin<Box<dyn Future<Output = ()>>>>,
    /// The task's waker (made once, at spawn; taken out with `fut` while
    /// the task is polled, so a poll clones no `Arc`).
    waker: Option<Waker>,
    flag: Arc<TaskWaker>,
}

enum OpSlot {
    Vacant,
    /// Submitted; the future waits, to be woken as this says.
    Waiting(Waiter),
    /// Completed: result and CQE flags, not yet collected.
    Done(i32, u32),
    /// The future was dropped while the kernel still owned its resources:
    /// they are kept here until the completion arrives. `true`: the
    /// result is a new fd (an accept) that nobody will take, to close.
    Orphan(#[allow(dead_code)] Box<dyn Any>, bool),
    /// A multishot operation (see [`MultiOp`]).
    Multi(Box<Multi>),
    /// A multishot operation whose owner is gone while the kernel still
    /// holds it (a cancel is on its way): the buffers its completions
    /// carry go back to the pool, and the slot is released at its last.
    MultiOrphan,
}

/// A multishot operation's completions not yet taken, in order.
struct Multi {
    queue: VecDeque<(i32, u32)>,
    waker: Option<Waker>,
    /// The kernel still holds the operation: its last completion had
    /// `IORING_CQE_F_MORE`.
    armed: bool,
    /// The operation ends without a further cancel: one was sent (the
    /// queue reached [`MULTI_QUEUE_CAP`]), or its socket was shut down.
    ending: bool,
}

#[derive(Default)]
struct Ops {
    slots: Vec<OpSlot>,
    free: Vec<usize>,
    in_flight: usize,
}

impl Ops {
    fn insert(&mut self) -> usize {
        self.in_flight += 1;
        if let Some(i) = self.free.pop() {
            self.slots[i] = OpSlot::Waiting(Waiter::Nobody);
            i
        } else {
            self.slots.push(OpSlot::Waiting(Waiter::Nobody));
            self.slots.len() - 1
        }
    }

    fn release(&mut self, i: usize) {
        self.slots[i] = OpSlot::Vacant;
        self.free.push(i);
    }
}

/// Everything one shard thread's runtime owns.
pub(crate) struct Driver {
    ring: RefCell<IoUring>,
    ops: RefCell<Ops>,
    pub(crate) bufs: Option<BufRing>,
    timers: RefCell<BTreeMap<(Instant, u64), Waker>>,
    timer_seq: Cell<u64>,
    /// The loop's clock: read once per turn.
    now: Cell<Instant>,
    tasks: RefCell<Vec<Option<Task>>>,
    free_tasks: RefCell<Vec<usize>>,
    ready: Arc<ReadyQueue>,
    root: Arc<TaskWaker>,
    /// Where the eventfd read lands. Leaked on purpose (8 bytes per
    /// runtime): the read is always in flight, and the kernel must never
    /// write into freed memory, however the runtime ends.
    efd_buf: *mut u8,
    efd_armed: Cell<bool>,
    /// Receives are multishot (`IORING_RECV_MULTISHOT`), see [`net::Conn`];
    /// turned off if the kernel refuses the first one.
    pub(crate) recv_multishot: Cell<bool>,
    /// A multishot receive has completed with data: the kernel takes them.
    pub(crate) recv_multishot_seen: Cell<bool>,
    /// Tests: multishot receives carry `MSG_WAITALL`, which every kernel
    /// refuses for them (as one before 6.16 refuses their byte limit).
    #[cfg(test)]
    pub(crate) refuse_multishot: Cell<bool>,
    /// Multishot operations to cancel once `reap` is done with the ring.
    cancel_later: RefCell<Vec<usize>>,
    /// Loop statistics, when asked for (see [`stats`]).
    stats: Option<RefCell<stats::LoopStats>>,
    /// Tests: submission queue entries queued so far.
    #[cfg(test)]
    pub(crate) sqes: Cell<u64>,
    /// Tests: timers registered so far.
    #[cfg(test)]
    pub(crate) timer_registrations: Cell<u64>,
}

/// How the backend sets its ring up.
pub(crate) struct Setup {
    pub entries: u32,
    pub sqpoll_idle_ms: Option<u32>,
    pub recv_multishot: bool,
    /// Restrict the ring to the engine's operations ([`restrict`]).
    pub restrict: bool,
}

impl Driver {
    fn new(setup: &Setup) -> io::Result<Driver> {
        let mut b = IoUring::builder();
        restrict::start_disabled(&mut b, setup.restrict);
        match setup.sqpoll_idle_ms {
            // SQPOLL submits from a kernel thread: DEFER_TASKRUN needs the
            // submitter to be this thread, and the kernel refuses
            // COOP_TASKRUN with SQPOLL, so it stands alone.
            Some(idle) => {
                b.setup_sqpoll(idle);
            }
            None => {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_coop_taskrun();
            }
        }
        b.setup_cqsize(setup.entries.saturating_mul(4).max(4096));
        let ring = b.build(setup.entries)?;
        // SAFETY: eventfd(2) with valid flags; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        let efd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A kernel without provided-buffer rings still works: every
        // receive then uses a heap buffer.
        let bufs = BufRing::new(&ring, POOL_BUFFERS, POOL_BUF_SIZE).ok();
        restrict::restrict_and_enable(&ring, setup.restrict)?;
        let ready = Arc::new(ReadyQueue {
            ids: Mutex::new(Vec::with_capacity(256)),
            parked: AtomicBool::new(false),
            efd,
        });
        let root = Arc::new(TaskWaker {
            id: ROOT,
            queued: AtomicBool::new(true),
            ready: ready.clone(),
        });
        Ok(Driver {
            ring: RefCell::new(ring),
            ops: RefCell::new(Ops::default()),
            bufs,
            timers: RefCell::new(BTreeMap::new()),
            timer_seq: Cell::new(0),
            now: Cell::new(Instant::now()),
            tasks: RefCell::new(Vec::new()),
            free_tasks: RefCell::new(Vec::new()),
            ready,
            root,
            efd_buf: Box::into_raw(Box::new([0u8; 8])).cast::<u8>(),
            efd_armed: Cell::new(false),
            recv_multishot: Cell::new(setup.recv_multishot),
            recv_multishot_seen: Cell::new(false),
            #[cfg(test)]
            refuse_multishot: Cell::new(false),
            cancel_later: RefCell::new(Vec::new()),
            stats: stats::wanted().then(|| RefCell::new(stats::LoopStats::default())),
            #[cfg(test)]
            sqes: Cell::new(0),
            #[cfg(test)]
            timer_registrations: Cell::new(0),
        })
    }

    /// Queues one SQE (submitted with the next `io_uring_enter`).
    fn push(&self, entry: &squeue::Entry) {
        #[cfg(test)]
        self.sqes.set(self.sqes.get() + 1);
        let mut ring = self.ring.borrow_mut();
        loop {
            // SAFETY: every entry pushed here points only at memory that the
            // op's owner keeps alive until its completion (see `submit`).
            if unsafe { ring.submission().push(entry) }.is_ok() {
                return;
            }
            // Queue full: hand what is queued to the kernel and retry.
            if let Err(e) = ring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) {
                    tracing::error!(error = %e, "io_uring submit failed");
                }
                drop(ring);
                self.reap();
                ring = self.ring.borrow_mut();
            }
        }
    }

    /// Submits `entry`, whose kernel-visible memory lives in `data`.
    pub(crate) fn submit<T: 'static>(self: &Rc<Self>, entry: squeue::Entry, data: T) -> Op<T> {
        let id = self.ops.borrow_mut().insert();
        self.push(&entry.user_data(id as u64));
        Op {
            driver: self.clone(),
            id,
            data: Some(data),
            fd_result: false,
        }
    }

    /// Submits a multishot `entry` (one that references no memory of ours
    /// but the pool's): its completions queue up in the driver until
    /// [`MultiOp::poll_next`] takes them.
    pub(crate) fn submit_multi(self: &Rc<Self>, entry: squeue::Entry) -> MultiOp {
        let id = {
            let mut ops = self.ops.borrow_mut();
            let id = ops.insert();
            ops.slots[id] = OpSlot::Multi(Box::new(Multi {
                queue: VecDeque::new(),
                waker: None,
                armed: true,
                ending: false,
            }));
            id
        };
        self.push(&entry.user_data(id as u64));
        MultiOp {
            driver: self.clone(),
            id,
        }
    }

    /// Asks the kernel to cancel operation `id` (fire and forget: the
    /// operation itself completes, with `-ECANCELED` or its result).
    pub(crate) fn cancel(&self, id: usize) {
        let e = opcode::AsyncCancel::new(id as u64)
            .build()
            .user_data(CANCEL_UD);
        self.push(&e);
    }

    fn arm_wake(&self) {
        if self.efd_armed.get() {
            return;
        }
        let e = opcode::Read::new(types::Fd(self.ready.efd.as_raw_fd()), self.efd_buf, 8)
            .build()
            .user_data(WAKE_UD);
        self.push(&e);
        self.efd_armed.set(true);
    }

    /// Delivers every posted completion; returns how many there were.
    fn reap(&self) -> u64 {
        let mut ring = self.ring.borrow_mut();
        let mut ops = self.ops.borrow_mut();
        let mut reaped = 0;
        for cqe in ring.completion() {
            reaped += 1;
            let ud = cqe.user_data();
            if ud == WAKE_UD {
                self.efd_armed.set(false);
                continue;
            }
            let i = ud as usize;
            let Some(slot) = ops.slots.get_mut(i) else {
                continue;
            };
            let flags = cqe.flags();
            let last = !cqueue::more(flags);
            match slot {
                OpSlot::Multi(m) => {
                    m.queue.push_back((cqe.result(), flags));
                    if let Some(w) = &m.waker {
                        w.wake_by_ref();
                    }
                    let cap = !last && m.queue.len() >= MULTI_QUEUE_CAP && !m.ending;
                    m.armed = !last;
                    m.ending |= cap;
                    if last {
                        ops.in_flight -= 1;
                    }
                    if cap {
                        self.cancel_later.borrow_mut().push(i);
                    }
                    continue;
                }
                OpSlot::MultiOrphan => {
                    self.give_back_selected(flags);
                    if last {
                        ops.in_flight -= 1;
                        ops.release(i);
                    }
                    continue;
                }
                _ => {}
            }
            match std::mem::replace(slot, OpSlot::Done(cqe.result(), flags)) {
                OpSlot::Waiting(w) => match w {
                    Waiter::Task(id) => self.wake_task(id),
                    Waiter::Other(w) => w.wake(),
                    Waiter::Nobody => {}
                },
                OpSlot::Orphan(keep, fd_result) => {
                    // The owner is gone: release what the kernel held.
                    drop(keep);
                    if fd_result {
                        close_fd_result(cqe.result());
                    }
                    self.give_back_selected(flags);
                    ops.in_flight -= 1;
                    ops.release(i);
                }
                other => {
                    // A completion for a slot that is not waiting: cannot
                    // happen (one CQE per single-shot op); keep the state.
                    *slot = other;
                }
            }
        }
        drop(ops);
        drop(ring);
        if !self.cancel_later.borrow().is_empty() {
            let capped = std::mem::take(&mut *self.cancel_later.borrow_mut());
            for id in capped {
                self.cancel(id);
            }
        }
        reaped
    }

    /// Gives back the pool buffer a completion's `flags` name, if any.
    pub(crate) fn give_back_selected(&self, flags: u32) {
        if let (Some(bid), Some(bufs)) = (cqueue::buffer_select(flags), &self.bufs) {
            bufs.give_back(bid);
        }
    }

    /// One `io_uring_enter`: submit what is queued; wait for a completion
    /// (bounded by `timeout`) when `wait` is set.
    fn enter(&self, wait: bool, timeout: Option<Duration>) {
        let mut ring = self.ring.borrow_mut();
        let mut flags = IORING_ENTER_GETEVENTS;
        let (to_submit, wakeup) = {
            let mut sq = ring.submission();
            sq.sync();
            (sq.len() as u32, sq.need_wakeup())
        };
        if ring.params().is_setup_sqpoll() && wakeup {
            flags |= IORING_ENTER_SQ_WAKEUP;
        }
        // The exact count: the kernel skips waiting for events when it
        // submits fewer entries than asked.
        let to_submit = if ring.params().is_setup_sqpoll() {
            0
        } else {
            to_submit
        };
        let res = if wait {
            let ts = timeout.map(types::Timespec::from);
            let args = GetEventsArg {
                sigmask: 0,
                sigmask_sz: 0,
                min_wait_usec: 0,
                ts: ts
                    .as_ref()
                    .map_or(0, |t| t as *const types::Timespec as u64),
            };
            // SAFETY: IORING_ENTER_EXT_ARG with a correctly laid out
            // `io_uring_getevents_arg` (and timespec) that outlive the call.
            unsafe {
                ring.submitter()
                    .enter(to_submit, 1, flags | IORING_ENTER_EXT_ARG, Some(&args))
            }
        } else {
            // SAFETY: a plain enter without argument.
            unsafe {
                ring.submitter()
                    .enter::<libc::sigset_t>(to_submit, 0, flags, None)
            }
        };
        if let Err(e) = res {
            match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                _ => tracing::error!(error = %e, "io_uring_enter failed"),
            }
        }
    }

    fn spawn(&self, fut: Pin<Box<dyn Future<Output = ()>>>) {
        let mut tasks = self.tasks.borrow_mut();
        let id = match self.free_tasks.borrow_mut().pop() {
            Some(id) => id,
            None => {
                tasks.push(None);
                tasks.len() - 1
            }
        };
        let flag = Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(true),
            ready: self.ready.clone(),
        });
        tasks[id] = Some(Task {
            fut: Some(fut),
            waker: Some(task_waker(flag.clone())),
            flag,
        });
        drop(tasks);
        if !push_local(&self.ready, id) {
            self.ready.push(id);
        }
    }

    fn poll_task(&self, id: usize) {
        let (mut fut, waker) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(Some(task)) = tasks.get_mut(id) else {
                return;
            };
            let (Some(fut), Some(waker)) = (task.fut.take(), task.waker.take()) else {
                return;
            };
            task.flag.queued.store(false, Ordering::Release);
            (fut, waker)
        };
        let mut cx = Context::from_waker(&waker);
        let t0 = self.stats.as_ref().map(|_| Instant::now());
        // A panicking task ends alone (as on tokio): the shard and its
        // other connections carry on. Its future is dropped (which closes
        // its sockets); a panic while dropping is contained too.
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
        if let (Some(s), Some(t0)) = (&self.stats, t0) {
            let mut s = s.borrow_mut();
            s.turn_polls += 1;
            s.turn_longest = s.turn_longest.max(t0.elapsed());
        }
        match polled {
            Ok(Poll::Ready(())) | Err(_) => {
                if polled.is_err() {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(fut)));
                } else {
                    drop(fut);
                }
                self.tasks.borrow_mut()[id] = None;
                self.free_tasks.borrow_mut().push(id);
            }
            Ok(Poll::Pending) => {
                if let Some(Some(task)) = self.tasks.borrow_mut().get_mut(id) {
                    task.fut = Some(fut);
                    task.waker = Some(waker);
                }
            }
        }
    }

    /// The id of the task `w` wakes, if it is one of this driver's tasks.
    fn own_task(&self, w: &Waker) -> Option<usize> {
        if !std::ptr::eq(w.vtable(), &TASK_WAKER_VTABLE) {
            return None;
        }
        // SAFETY: a waker with our vtable has an `Arc<TaskWaker>` pointer
        // as its data (see `task_waker`), kept alive by `w`'s count.
        let tw = unsafe { &*w.data().cast::<TaskWaker>() };
        Arc::ptr_eq(&tw.ready, &self.ready).then_some(tw.id)
    }

    /// Wakes task `id` (nothing if it has ended; a task that took over its
    /// id gets a spurious wake, which futures tolerate).
    fn wake_task(&self, id: usize) {
        if id == ROOT {
            Wake::wake_by_ref(&self.root);
        } else if let Some(Some(t)) = self.tasks.borrow().get(id) {
            Wake::wake_by_ref(&t.flag);
        }
    }

    /// Wakes due timers; returns the time until the next one.
    fn fire_timers(&self) -> Option<Duration> {
        let now = Instant::now();
        self.now.set(now);
        let mut timers = self.timers.borrow_mut();
        if timers.is_empty() {
            return None;
        }
        while let Some(entry) = timers.first_entry() {
            if entry.key().0 > now {
                return Some(entry.key().0 - now);
            }
            if let Some(s) = &self.stats {
                s.borrow_mut().timer_late_us.add_us(now - entry.key().0);
            }
            entry.remove().wake();
        }
        None
    }

    fn register_timer(&self, at: Instant, waker: &Waker) -> u64 {
        #[cfg(test)]
        self.timer_registrations
            .set(self.timer_registrations.get() + 1);
        let seq = self.timer_seq.get().wrapping_add(1);
        self.timer_seq.set(seq);
        self.timers.borrow_mut().insert((at, seq), waker.clone());
        seq
    }

    fn update_timer(&self, at: Instant, seq: u64, waker: &Waker) -> bool {
        match self.timers.borrow_mut().get_mut(&(at, seq)) {
            Some(w) => {
                if !w.will_wake(waker) {
                    *w = waker.clone();
                }
                true
            }
            None => false,
        }
    }

    fn cancel_timer(&self, at: Instant, seq: u64) {
        self.timers.borrow_mut().remove(&(at, seq));
    }

    /// Moves the woken task ids, local and shared, into `batch`.
    fn take_ready(&self, batch: &mut Vec<usize>) {
        self.ready.take(batch);
        LOCAL.with(|l| batch.append(&mut l.ids.borrow_mut()));
    }

    /// Whether a task is woken (locally or from another thread).
    fn has_ready(&self) -> bool {
        LOCAL.with(|l| !l.ids.borrow().is_empty()) || !self.ready.is_empty()
    }

    fn run<F: Future>(self: &Rc<Self>, fut: F) -> F::Output {
        let _local = LocalOwner::set(&self.ready);
        let mut fut = std::pin::pin!(fut);
        let mut batch: Vec<usize> = Vec::with_capacity(256);
        let mut root_ready = true;
        loop {
            if root_ready {
                root_ready = false;
                self.root.queued.store(false, Ordering::Release);
                let waker = task_waker(self.root.clone());
                let mut cx = Context::from_waker(&waker);
                if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                    return v;
                }
            }
            self.take_ready(&mut batch);
            for id in batch.drain(..) {
                if id == ROOT {
                    root_ready = true;
                } else {
                    self.poll_task(id);
                }
            }
            let next_timer = self.fire_timers();
            self.arm_wake();
            let entered = self.turn_ends();
            if root_ready || self.has_ready() {
                self.enter(false, None);
            } else {
                self.ready.parked.store(true, Ordering::SeqCst);
                if self.ready.is_empty() {
                    self.enter(true, next_timer);
                }
                self.ready.parked.store(false, Ordering::SeqCst);
            }
            let reaped = self.reap();
            self.turn_starts(entered, reaped);
        }
    }

    /// Loop statistics: the turn's work is done; returns when.
    fn turn_ends(&self) -> Option<Instant> {
        let s = self.stats.as_ref()?;
        let mut s = s.borrow_mut();
        let now = Instant::now();
        if let Some(t) = s.turn_start.take() {
            s.turn_us.add_us(now - t);
            let (polls, longest) = (s.turn_polls, s.turn_longest);
            s.polls.add(polls);
            s.longest_poll_us.add_us(longest);
        }
        s.turn_polls = 0;
        s.turn_longest = Duration::ZERO;
        Some(now)
    }

    /// Loop statistics: `io_uring_enter` (entered at `entered`) returned
    /// with `reaped` completions; a turn starts.
    fn turn_starts(&self, entered: Option<Instant>, reaped: u64) {
        if let (Some(s), Some(entered)) = (&self.stats, entered) {
            let mut s = s.borrow_mut();
            let now = Instant::now();
            s.wait_us.add_us(now - entered);
            s.reaped.add(reaped);
            s.turn_start = Some(now);
        }
    }

    /// Cancels everything still in flight and waits (briefly) for the
    /// kernel to let go of the memory those operations point at.
    fn shutdown(&self) {
        // Tasks first: their ops become orphans holding their buffers.
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        drop(tasks);
        let pending: Vec<usize> = {
            let ops = self.ops.borrow();
            (0..ops.slots.len())
                .filter(|&i| match &ops.slots[i] {
                    OpSlot::Orphan(..) | OpSlot::Waiting(_) | OpSlot::MultiOrphan => true,
                    OpSlot::Multi(m) => m.armed,
                    OpSlot::Vacant | OpSlot::Done(..) => false,
                })
                .collect()
        };
        for i in pending {
            self.cancel(i);
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while self.kernel_holds_ops() && Instant::now() < deadline {
            self.enter(true, Some(Duration::from_millis(10)));
            self.reap();
        }
    }

    /// Whether some operation is still in the kernel's hands (in flight,
    /// not merely completed and uncollected).
    fn kernel_holds_ops(&self) -> bool {
        let ops = self.ops.borrow();
        let done = ops
            .slots
            .iter()
            .filter(|s| matches!(s, OpSlot::Done(..)))
            .count();
        ops.in_flight > done
    }
}

const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_ENTER_SQ_WAKEUP: u32 = 2;
const IORING_ENTER_EXT_ARG: u32 = 8;

/// `struct io_uring_getevents_arg`.
#[repr(C)]
struct GetEventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

/// An operation in flight; resolves to (result, CQE flags, its resources).
pub(crate) struct Op<T: 'static> {
    driver: Rc<Driver>,
    id: usize,
    data: Option<T>,
    /// The result is a new fd (an accept): closed if nobody collects it.
    fd_result: bool,
}

impl<T: 'static> Op<T> {
    /// Marks the result as a new fd, closed if the op is dropped before
    /// its result is collected.
    pub(crate) fn with_fd_result(mut self) -> Op<T> {
        self.fd_result = true;
        self
    }

    /// The op's id, for [`Driver::cancel`].
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    /// The driver the op runs on.
    pub(crate) fn driver(&self) -> &Rc<Driver> {
        &self.driver
    }

    /// Whether the op has completed, without collecting its result;
    /// otherwise `cx` is woken when it does.
    pub(crate) fn poll_done(&mut self, cx: &mut Context<'_>) -> bool {
        let mut ops = self.driver.ops.borrow_mut();
        match &mut ops.slots[self.id] {
            OpSlot::Waiting(w) => {
                wait_on(w, cx, &self.driver);
                false
            }
            _ => true,
        }
    }

    /// Whether the op has completed (its result not yet collected).
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.driver.ops.borrow().slots[self.id], OpSlot::Done(..))
    }
}

/// Makes `cx`'s task the one a waiting op's completion wakes: by id if it
/// is one of `d`'s tasks, else by a clone of its waker.
fn wait_on(w: &mut Waiter, cx: &Context<'_>, d: &Driver) {
    match d.own_task(cx.waker()) {
        Some(id) => *w = Waiter::Task(id),
        None => match w {
            Waiter::Other(o) if o.will_wake(cx.waker()) => {}
            _ => *w = Waiter::Other(cx.waker().clone()),
        },
    }
}

/// Keeps `cx`'s waker as the one a waiting op's completion wakes.
fn wait_with(w: &mut Option<Waker>, cx: &Context<'_>) {
    match w {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *w = Some(cx.waker().clone()),
    }
}

/// Closes the fd an orphaned accept produced (a negative result is an
/// error: nothing to close).
fn close_fd_result(res: i32) {
    if res >= 0 {
        // SAFETY: the kernel just created this fd for an operation whose
        // owner is gone: nobody else holds it.
        drop(unsafe { OwnedFd::from_raw_fd(res) });
    }
}

impl<T: 'static> Future for Op<T> {
    type Output = (i32, u32, T);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `Op` is Unpin (no self-references; T's memory is on the heap).
        let this = self.get_mut();
        let mut ops = this.driver.ops.borrow_mut();
        match &mut ops.slots[this.id] {
            OpSlot::Done(res, flags) => {
                let (res, flags) = (*res, *flags);
                ops.in_flight -= 1;
                ops.release(this.id);
                drop(ops);
                match this.data.take() {
                    Some(d) => Poll::Ready((res, flags, d)),
                    None => Poll::Pending,
                }
            }
            OpSlot::Waiting(w) => {
                wait_on(w, cx, &this.driver);
                Poll::Pending
            }
            _ => Poll::Pending,
        }
    }
}

impl<T: 'static> Unpin for Op<T> {}

impl<T: 'static> Drop for Op<T> {
    fn drop(&mut self) {
        let Some(data) = self.data.take() else {
            return;
        };
        let mut ops = self.driver.ops.borrow_mut();
        match &ops.slots[self.id] {
            OpSlot::Done(res, flags) => {
                // Completed but never collected: release now.
                if self.fd_result {
                    close_fd_result(*res);
                }
                if let (Some(bid), Some(bufs)) = (cqueue::buffer_select(*flags), &self.driver.bufs)
                {
                    bufs.give_back(bid);
                }
                ops.in_flight -= 1;
                ops.release(self.id);
            }
            _ => ops.slots[self.id] = OpSlot::Orphan(Box::new(data), self.fd_result),
        }
    }
}

/// A multishot operation in flight: one submission, one completion per
/// event until the kernel ends it (a completion without
/// `IORING_CQE_F_MORE`: an error, end of file, an empty pool, or a cancel).
/// Completions wait in the driver, in order, until taken; none is lost if
/// the future waiting for one is dropped. Dropping the `MultiOp` cancels
/// the operation and gives back the pool buffers of what was not taken.
pub(crate) struct MultiOp {
    driver: Rc<Driver>,
    id: usize,
}

impl MultiOp {
    /// The next completion (result, flags); `None` once the kernel has
    /// ended the operation and every completion was taken.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<(i32, u32)>> {
        let mut ops = self.driver.ops.borrow_mut();
        let OpSlot::Multi(m) = &mut ops.slots[self.id] else {
            return Poll::Ready(None);
        };
        if let Some(c) = m.queue.pop_front() {
            return Poll::Ready(Some(c));
        }
        if !m.armed {
            return Poll::Ready(None);
        }
        wait_with(&mut m.waker, cx);
        Poll::Pending
    }

    /// Whether a completion is waiting or the operation has ended;
    /// otherwise `cx` is woken when either happens.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> bool {
        let mut ops = self.driver.ops.borrow_mut();
        match &mut ops.slots[self.id] {
            OpSlot::Multi(m) if m.queue.is_empty() && m.armed => {
                wait_with(&mut m.waker, cx);
                false
            }
            _ => true,
        }
    }

    /// Notes that the operation's socket was shut down, which ends it
    /// (with end of file): dropping it then sends no cancel.
    pub(crate) fn ends_by_shutdown(&self) {
        if let OpSlot::Multi(m) = &mut self.driver.ops.borrow_mut().slots[self.id] {
            m.ending = true;
        }
    }

    /// Completions waiting, and whether the kernel still holds it.
    #[cfg(test)]
    pub(crate) fn state(&self) -> (usize, bool) {
        match &self.driver.ops.borrow().slots[self.id] {
            OpSlot::Multi(m) => (m.queue.len(), m.armed),
            _ => (0, false),
        }
    }

    /// Whether completions wait to be taken.
    pub(crate) fn has_queued(&self) -> bool {
        matches!(&self.driver.ops.borrow().slots[self.id], OpSlot::Multi(m) if !m.queue.is_empty())
    }

    /// Whether it can still deliver: the kernel holds it, or completions
    /// wait to be taken.
    pub(crate) fn is_live(&self) -> bool {
        matches!(&self.driver.ops.borrow().slots[self.id], OpSlot::Multi(m) if m.armed || !m.queue.is_empty())
    }
}

impl Drop for MultiOp {
    fn drop(&mut self) {
        let mut ops = self.driver.ops.borrow_mut();
        let Some(slot) = ops.slots.get_mut(self.id) else {
            return;
        };
        if !matches!(slot, OpSlot::Multi(_)) {
            return;
        }
        let OpSlot::Multi(m) = std::mem::replace(slot, OpSlot::MultiOrphan) else {
            return;
        };
        for (_, flags) in &m.queue {
            self.driver.give_back_selected(*flags);
        }
        if m.armed {
            // Released at its last completion.
            drop(ops);
            if !m.ending {
                self.driver.cancel(self.id);
            }
        } else {
            ops.release(self.id);
        }
    }
}

/// A per-thread runtime of this backend.
pub(crate) struct Runtime {
    driver: Rc<Driver>,
}

impl Runtime {
    pub(crate) fn new(setup: &Setup) -> io::Result<Runtime> {
        Ok(Runtime {
            driver: Rc::new(Driver::new(setup)?),
        })
    }

    pub(crate) fn block_on<F: Future>(&self, fut: F) -> F::Output {
        let prev = CURRENT.with(|c| c.borrow_mut().replace(self.driver.clone()));
        struct Restore(Option<Rc<Driver>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let prev = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = prev);
            }
        }
        let _restore = Restore(prev);
        let out = self.driver.run(fut);
        if let Some(s) = &self.driver.stats {
            let t = std::thread::current();
            eprintln!(
                "uringtls loop stats ({}):\n{}",
                t.name().unwrap_or("unnamed thread"),
                s.take()
            );
        }
        out
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let prev = CURRENT.with(|c| c.borrow_mut().replace(self.driver.clone()));
        self.driver.shutdown();
        CURRENT.with(|c| *c.borrow_mut() = prev);
        if self.driver.kernel_holds_ops() {
            // The kernel may still write into buffers some operations point
            // at: leak them rather than free memory it could touch.
            let ops = std::mem::take(&mut *self.driver.ops.borrow_mut());
            std::mem::forget(ops);
        }
    }
}

/// Spawns a task on the current thread's runtime.
pub(crate) fn spawn<F: Future<Output = ()> + 'static>(fut: F) {
    driver().spawn(Box::pin(fut));
}

/// A timer on the current thread's runtime.
pub(crate) struct Sleep {
    deadline: Instant,
    seq: Option<u64>,
}

impl Sleep {
    pub(crate) fn until(deadline: Instant) -> Sleep {
        Sleep {
            deadline,
            seq: None,
        }
    }

    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    pub(crate) fn reset(&mut self, deadline: Instant) {
        if let Some(seq) = self.seq.take() {
            driver().cancel_timer(self.deadline, seq);
        }
        self.deadline = deadline;
    }

    pub(crate) fn poll_sleep(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let d = driver();
        if d.now.get() >= self.deadline {
            if let Some(seq) = self.seq.take() {
                d.cancel_timer(self.deadline, seq);
            }
            return Poll::Ready(());
        }
        match self.seq {
            Some(seq) if d.update_timer(self.deadline, seq, cx.waker()) => {}
            _ => self.seq = Some(d.register_timer(self.deadline, cx.waker())),
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(seq) = self.seq.take() {
            if let Some(d) = CURRENT.with(|c| c.borrow().clone()) {
                d.cancel_timer(self.deadline, seq);
            }
        }
    }
}

/// A timer kept for many waits, each with its own deadline (a connection's
/// read or write deadline): moving the deadline later touches nothing, so a
/// keep-alive connection does not insert and remove a timer per request.
/// Its registration stays at the earliest deadline asked for; when that
/// fires before the deadline in force, the waiting task is polled once and
/// the timer registers again at the later instant.
pub(crate) struct LazyTimer {
    /// The registered entry `(instant, seq)` and the waker it holds, while
    /// it has not fired (an entry whose instant the loop clock has passed
    /// has fired: `fire_timers` removes those before the clock moves on).
    reg: Option<(Instant, u64, Waker)>,
}

impl LazyTimer {
    pub(crate) const fn new() -> LazyTimer {
        LazyTimer { reg: None }
    }

    /// Ready once the loop clock has reached `at`; otherwise `cx` is woken
    /// no later than `at` (possibly earlier: poll again).
    pub(crate) fn poll_at(&mut self, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        let d = driver();
        let now = d.now.get();
        if now >= at {
            if let Some((k, seq, _)) = self.reg.take() {
                if k > now {
                    d.cancel_timer(k, seq);
                }
            }
            return Poll::Ready(());
        }
        if let Some((k, seq, w)) = &mut self.reg {
            if *k > now {
                if *k <= at {
                    if !w.will_wake(cx.waker()) {
                        *w = cx.waker().clone();
                        d.update_timer(*k, *seq, w);
                    }
                    return Poll::Pending;
                }
                // Registered later than now needed: move it earlier.
                d.cancel_timer(*k, *seq);
            }
        }
        let w = cx.waker().clone();
        let seq = d.register_timer(at, &w);
        self.reg = Some((at, seq, w));
        Poll::Pending
    }
}

impl Drop for LazyTimer {
    fn drop(&mut self) {
        if let Some((k, seq, _)) = self.reg.take() {
            if let Some(d) = CURRENT.with(|c| c.borrow().clone()) {
                if k > d.now.get() {
                    d.cancel_timer(k, seq);
                }
            }
        }
    }
}

/// A no-op through the ring: every completion posted before it has been
/// delivered when it returns.
pub(crate) async fn settle() {
    let d = driver();
    let _ = d.submit(opcode::Nop::new().build(), ()).await;
}

#[cfg(test)]
mod tests;
