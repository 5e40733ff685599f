//! The one system call the loop makes: `io_uring_enter`, submitting what
//! is queued and, when the loop has nothing else to do, waiting for a
//! completion or the next timer (`IORING_ENTER_EXT_ARG` timeout).

use super::Driver;
use io_uring::{squeue, types};
use std::time::Duration;

impl Driver {
    /// Queues one SQE (submitted with the next `io_uring_enter`).
    pub(super) fn push(&self, entry: &squeue::Entry) {
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

    /// One `io_uring_enter`: submit what is queued; wait for a completion
    /// (bounded by `timeout`) when `wait` is set.
    pub(super) fn enter(&self, wait: bool, timeout: Option<Duration>) {
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
        if wait && self.no_iowait.get() {
            flags |= IORING_ENTER_NO_IOWAIT;
            // Tests: an unknown flag beside it, refused as a kernel
            // before 6.15 refuses this one.
            #[cfg(test)]
            if self.refuse_no_iowait.get() {
                flags |= 1 << 31;
            }
        }
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
            if e.raw_os_error() == Some(libc::EINVAL) && flags & IORING_ENTER_NO_IOWAIT != 0 {
                // A kernel before 6.15 refuses the flag (nothing was
                // submitted or waited for): wait as iowait from now on.
                self.no_iowait.set(false);
                drop(ring);
                return self.enter(wait, timeout);
            }
            match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                _ => tracing::error!(error = %e, "io_uring_enter failed"),
            }
        }
    }
}

const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_ENTER_SQ_WAKEUP: u32 = 2;
const IORING_ENTER_EXT_ARG: u32 = 8;
/// Linux 6.15+: the wait is not accounted as iowait (see
/// `Driver::no_iowait`).
const IORING_ENTER_NO_IOWAIT: u32 = 1 << 7;

/// `struct io_uring_getevents_arg`.
#[repr(C)]
struct GetEventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}
