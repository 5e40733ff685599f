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
//!
//! Files: [`executor`] (tasks, wakers, the loop), [`op`] (an operation's
//! life from SQE to result, multishot operations, orphans), [`timer`]
//! (timers, `Sleep`, `LazyTimer`), [`sys`] (`io_uring_enter`, its wait
//! not counted as iowait), [`net`] (sockets over the ring), [`bufring`]
//! (the provided-buffer pool),
//! `stats` (loop statistics). This file: the driver's state, its set-up
//! and the per-thread runtime.
//!
//! The ring's one safety rule: an SQE may point only at memory that stays
//! valid until its completion. [`Driver::submit`] is `unsafe` for that
//! reason; its callers say, each in a `SAFETY:` line, which owner keeps
//! the memory alive.

pub(crate) mod bufring;
mod executor;
pub(crate) mod net;
mod op;
pub mod restrict;
mod stats;
mod sys;
mod timer;

use executor::{ReadyQueue, Task, TaskWaker};
use op::Ops;
pub(crate) use op::{MultiOp, Op};
pub(crate) use timer::{LazyTimer, Sleep};

use bufring::BufRing;
use io_uring::{opcode, types, IoUring};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Instant;

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
    /// Tests: waits carry an unknown flag beside `IORING_ENTER_NO_IOWAIT`,
    /// which the kernel refuses as one before 6.15 refuses that flag.
    #[cfg(test)]
    pub(crate) refuse_no_iowait: Cell<bool>,
    /// Waits pass `IORING_ENTER_NO_IOWAIT`: a shard parked in
    /// `io_uring_enter` with receives in flight is idle, not waiting for
    /// a disk, but the kernel counts it as iowait unless told (monitoring
    /// then shows a quiet shard's CPU 100% in iowait). Turned off the
    /// first time the kernel refuses the flag (before 6.15).
    pub(crate) no_iowait: Cell<bool>,
    /// Multishot operations to cancel once `reap` is done with the ring.
    cancel_later: RefCell<Vec<usize>>,
    /// Loop statistics, when asked for (see [`stats`]).
    stats: Option<RefCell<stats::LoopStats>>,
    /// Tests: submission queue entries queued so far.
    #[cfg(test)]
    pub(crate) sqes: Cell<u64>,
    /// Tests: timers registered so far.
    #[cfg(any(test, feature = "test-hooks"))]
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
            no_iowait: Cell::new(true),
            #[cfg(test)]
            refuse_multishot: Cell::new(false),
            #[cfg(test)]
            refuse_no_iowait: Cell::new(false),
            cancel_later: RefCell::new(Vec::new()),
            stats: stats::wanted().then(|| RefCell::new(stats::LoopStats::default())),
            #[cfg(test)]
            sqes: Cell::new(0),
            #[cfg(any(test, feature = "test-hooks"))]
            timer_registrations: Cell::new(0),
        })
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

/// A no-op through the ring: every completion posted before it has been
/// delivered when it returns.
pub(crate) async fn settle() {
    let d = driver();
    // SAFETY: a no-op points at no memory.
    let _ = unsafe { d.submit(opcode::Nop::new().build(), ()) }.await;
}

#[cfg(test)]
mod tests;
