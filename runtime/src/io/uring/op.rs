//! Operations: the lifecycle of one submission from its SQE to the
//! collection of its result, and of multishot operations.
//!
//! Ownership: the memory an SQE points at is owned by the [`Op`] (its
//! `data`) until the completion arrives. If the `Op` is dropped first, that
//! memory moves into the driver's slot (`OpSlot::Orphan`) and is freed when
//! the completion comes, never before. An accept's orphaned result (a new
//! fd) is closed then.

use super::{Driver, CANCEL_UD, MULTI_QUEUE_CAP, WAKE_UD};
use io_uring::cqueue;
use io_uring::{opcode, squeue};
use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::os::fd::{FromRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Who a waiting operation's completion wakes: one of this driver's tasks,
/// by id (no waker cloned per operation), or any other waker.
pub(super) enum Waiter {
    Nobody,
    Task(usize),
    Other(Waker),
}

pub(super) enum OpSlot {
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
pub(super) struct Multi {
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
pub(super) struct Ops {
    slots: Vec<OpSlot>,
    free: Vec<usize>,
    pub(super) in_flight: usize,
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
pub(super) fn close_fd_result(res: i32) {
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

impl Driver {
    /// Submits `entry`, whose kernel-visible memory lives in `data`.
    ///
    /// # Safety
    ///
    /// Every pointer in `entry` must point into memory that `data` owns
    /// and that does not move when `data` moves (a `Vec`'s or a `Box`'s heap
    /// allocation, not `data` itself), or into memory that outlives the
    /// driver (the provided-buffer pool, a leaked buffer). The driver keeps
    /// `data` alive until the completion arrives, even if the returned
    /// [`Op`] is dropped first (it becomes an orphan), so the kernel never
    /// writes into or reads from freed memory. File descriptors in `entry`
    /// need no such care: the kernel holds its own reference for the
    /// operation. `entry`'s `user_data` is overwritten.
    pub(crate) unsafe fn submit<T: 'static>(
        self: &Rc<Self>,
        entry: squeue::Entry,
        data: T,
    ) -> Op<T> {
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
    ///
    /// # Safety
    ///
    /// `entry` may point at no memory but the driver's provided-buffer
    /// pool (buffer selection), which outlives every operation.
    pub(crate) unsafe fn submit_multi(self: &Rc<Self>, entry: squeue::Entry) -> MultiOp {
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

    /// Delivers every posted completion; returns how many there were.
    pub(super) fn reap(&self) -> u64 {
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

    /// Cancels everything still in flight and waits (briefly) for the
    /// kernel to let go of the memory those operations point at.
    pub(super) fn shutdown(&self) {
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
    pub(super) fn kernel_holds_ops(&self) -> bool {
        let ops = self.ops.borrow();
        let done = ops
            .slots
            .iter()
            .filter(|s| matches!(s, OpSlot::Done(..)))
            .count();
        ops.in_flight > done
    }
}
