//! Timers that work on either I/O backend.
//!
//! Engine and bench-client code use these instead of `tokio::time` (which
//! needs a tokio runtime, and the `uring` backend is not one).

use super::uring;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
pub use std::time::{Duration, Instant};

/// A timer: completes at its deadline.
pub struct Sleep {
    inner: SleepInner,
}

enum SleepInner {
    Tokio(Pin<Box<tokio::time::Sleep>>),
    Uring(uring::Sleep),
}

/// The time now, for computing deadlines. On the uring backend this is the
/// time read once per turn of the shard's loop (a clock read per deadline
/// showed in profiles); it lags the true time by at most that turn's work,
/// so a deadline computed from it is early by as much, never late.
pub fn now() -> Instant {
    uring::now().unwrap_or_else(Instant::now)
}

/// Completes after `d`.
pub fn sleep(d: Duration) -> Sleep {
    sleep_until(now() + d)
}

/// Completes at `at`.
pub fn sleep_until(at: Instant) -> Sleep {
    let inner = if uring::is_current() {
        SleepInner::Uring(uring::Sleep::until(at))
    } else {
        SleepInner::Tokio(Box::pin(tokio::time::sleep_until(
            tokio::time::Instant::from_std(at),
        )))
    };
    Sleep { inner }
}

impl Sleep {
    /// Moves the deadline (the timer may already have fired).
    pub fn reset(&mut self, at: Instant) {
        match &mut self.inner {
            SleepInner::Tokio(s) => s.as_mut().reset(tokio::time::Instant::from_std(at)),
            SleepInner::Uring(s) => s.reset(at),
        }
    }

    /// The deadline.
    pub fn deadline(&self) -> Instant {
        match &self.inner {
            SleepInner::Tokio(s) => s.deadline().into_std(),
            SleepInner::Uring(s) => s.deadline(),
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().inner {
            SleepInner::Tokio(s) => s.as_mut().poll(cx),
            SleepInner::Uring(s) => s.poll_sleep(cx),
        }
    }
}

/// A timer a connection keeps for its whole life and points at a new
/// deadline for each wait (its read deadline, its write deadline). Unlike a
/// fresh [`timeout`] per wait, moving the deadline later costs nothing on
/// the uring backend (see `uring::LazyTimer`): a keep-alive connection arms
/// no timer per request. Nothing is allocated until the first wait that
/// does not complete at once.
#[derive(Default)]
pub struct Deadline {
    inner: DeadlineInner,
}

#[derive(Default)]
enum DeadlineInner {
    #[default]
    Unused,
    Tokio(Pin<Box<tokio::time::Sleep>>),
    Uring(uring::LazyTimer),
}

impl Deadline {
    /// A timer with no deadline yet.
    pub fn new() -> Deadline {
        Deadline::default()
    }

    /// Ready once `at` has passed; otherwise `cx` is woken by then.
    pub fn poll_at(&mut self, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        if matches!(self.inner, DeadlineInner::Unused) {
            self.inner = if uring::is_current() {
                DeadlineInner::Uring(uring::LazyTimer::new())
            } else {
                DeadlineInner::Tokio(Box::pin(tokio::time::sleep_until(
                    tokio::time::Instant::from_std(at),
                )))
            };
        }
        match &mut self.inner {
            DeadlineInner::Uring(t) => t.poll_at(at, cx),
            DeadlineInner::Tokio(s) => {
                let at = tokio::time::Instant::from_std(at);
                if s.deadline() != at {
                    s.as_mut().reset(at);
                }
                s.as_mut().poll(cx)
            }
            DeadlineInner::Unused => Poll::Pending,
        }
    }

    /// Runs `fut` until `at` at the latest, on this timer.
    pub fn within<F: Future>(&mut self, at: Instant, fut: F) -> Within<'_, F> {
        Within {
            fut,
            at,
            timer: self,
        }
    }
}

/// The future of [`Deadline::within`].
pub struct Within<'a, F> {
    fut: F,
    at: Instant,
    timer: &'a mut Deadline,
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is structurally pinned (never moved out of `self`
        // nor accessed unpinned); the other fields are Unpin and only
        // accessed by `&mut`.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        poll_until(fut, this.at, this.timer, cx)
    }
}

/// `fut` first; if it is pending, the timer at `at`.
fn poll_until<F: Future>(
    fut: Pin<&mut F>,
    at: Instant,
    timer: &mut Deadline,
    cx: &mut Context<'_>,
) -> Poll<Result<F::Output, Elapsed>> {
    if let Poll::Ready(v) = fut.poll(cx) {
        return Poll::Ready(Ok(v));
    }
    match timer.poll_at(at, cx) {
        Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
        Poll::Pending => Poll::Pending,
    }
}

/// The deadline of a [`timeout`] passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// Runs `fut` for at most `d`.
pub fn timeout<F: Future>(d: Duration, fut: F) -> Timeout<F> {
    timeout_at(now() + d, fut)
}

/// Runs `fut` until `at` at the latest. The timer is armed only if `fut`
/// does not complete on its first poll.
pub fn timeout_at<F: Future>(at: Instant, fut: F) -> Timeout<F> {
    Timeout {
        fut,
        at,
        timer: Deadline::new(),
    }
}

/// The future of [`timeout`] / [`timeout_at`]. A plain struct rather than
/// an `async fn`: the wrapped future is stored once, not copied into each
/// layer of generated state (connection tasks stay small).
pub struct Timeout<F> {
    fut: F,
    at: Instant,
    /// Nothing is allocated or registered until a poll finds `fut` pending.
    timer: Deadline,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `fut` is structurally pinned: it is never moved out of
        // `self` nor accessed unpinned; the other fields are Unpin and
        // are only accessed by `&mut`.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above; `this.fut` stays where it is for as long as
        // the `Timeout` lives.
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        poll_until(fut, this.at, &mut this.timer, cx)
    }
}
