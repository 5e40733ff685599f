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

/// Completes after `d`.
pub fn sleep(d: Duration) -> Sleep {
    sleep_until(Instant::now() + d)
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
pub async fn timeout<F: Future>(d: Duration, fut: F) -> Result<F::Output, Elapsed> {
    timeout_at(Instant::now() + d, fut).await
}

/// Runs `fut` until `at` at the latest. The timer is armed only if `fut`
/// does not complete on its first poll.
pub async fn timeout_at<F: Future>(at: Instant, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let mut timer: Option<Sleep> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let t = timer.get_or_insert_with(|| sleep_until(at));
        match Pin::new(t).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
