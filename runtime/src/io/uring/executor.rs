//! The executor: tasks, their wakers and the ready queue, and the loop
//! that polls woken tasks, fires timers and enters the ring.
//!
//! A task is a boxed future in a slot of `Driver::tasks`, woken through an
//! `Arc<TaskWaker>` with our own vtable (so the driver can recognise its
//! tasks' wakers and remember a task by id). Wakes on the runtime's own
//! thread go to a thread-local list; wakes from other threads go to the
//! shared `ReadyQueue` and write the eventfd if the loop is parked.

use super::{Driver, ROOT};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Wake, Waker};
use std::time::{Duration, Instant};

thread_local! {
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

/// Woken task ids, shared with wakers (which may run on other threads).
pub(super) struct ReadyQueue {
    pub(super) ids: Mutex<Vec<usize>>,
    /// The loop is (about to be) parked in `io_uring_enter`: a waker must
    /// write the eventfd.
    pub(super) parked: AtomicBool,
    /// Owned here, not by the driver: a waker on another thread may
    /// outlive the runtime, and must never write to a closed (or reused)
    /// descriptor.
    pub(super) efd: OwnedFd,
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

pub(super) struct TaskWaker {
    pub(super) id: usize,
    pub(super) queued: AtomicBool,
    pub(super) ready: Arc<ReadyQueue>,
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
/// (see [`Waiter`](super::op::Waiter)).
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
pub(super) fn task_waker(w: Arc<TaskWaker>) -> Waker {
    let raw = RawWaker::new(Arc::into_raw(w).cast::<()>(), &TASK_WAKER_VTABLE);
    // SAFETY: the vtable's functions uphold the `RawWaker` contract for a
    // data pointer from `Arc::<TaskWaker>::into_raw` that carries one count,
    // which is what `raw` holds.
    unsafe { Waker::from_raw(raw) }
}

pub(super) struct Task {
    pub(super) fut: Option<Pin<Box<dyn Future<Output = ()>>>>,
    /// The task's waker (made once, at spawn; taken out with `fut` while
    /// the task is polled, so a poll clones no `Arc`).
    pub(super) waker: Option<Waker>,
    pub(super) flag: Arc<TaskWaker>,
}

impl Driver {
    pub(super) fn spawn(&self, fut: Pin<Box<dyn Future<Output = ()>>>) {
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

    pub(super) fn poll_task(&self, id: usize) {
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
    pub(super) fn own_task(&self, w: &Waker) -> Option<usize> {
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
    pub(super) fn wake_task(&self, id: usize) {
        if id == ROOT {
            Wake::wake_by_ref(&self.root);
        } else if let Some(Some(t)) = self.tasks.borrow().get(id) {
            Wake::wake_by_ref(&t.flag);
        }
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

    pub(super) fn run<F: Future>(self: &Rc<Self>, fut: F) -> F::Output {
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
}
