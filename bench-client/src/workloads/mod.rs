//! The workloads. Each is one kind of *operation* that a connection slot
//! repeats: a new TLS connection (`handshake`, `resume`), an HTTP request on a
//! kept-alive connection (`http`, `bulk` download), a round trip through an
//! echo server (`echo`, `bulk` upload).
//!
//! An operation fills an [`OpTimes`]; the slot loop in
//! [`load::worker`](crate::load) turns it into histogram samples.

pub mod dial;
pub mod echo;
pub mod http;

use crate::stats::errors::ErrorClass;
use dial::Dialer;
use std::time::{Duration, Instant};
use uringtls_runtime::tls::ClientStream;

/// What to do after the handshake on a one-shot connection.
#[derive(Debug, Clone)]
pub enum OneShot {
    /// Nothing: close_notify and close.
    None,
    /// One HTTP request (prebuilt, `Connection: close`).
    Http(Vec<u8>),
    /// One small echo round trip.
    Echo,
}

/// A workload, as resolved from the command line.
#[derive(Debug, Clone)]
pub enum WorkloadSpec {
    /// Full handshakes: a new connection per operation, no resumption.
    Handshake(OneShot),
    /// Resumed handshakes: a new connection per operation reusing the slot's session.
    Resume(OneShot),
    /// Keep-alive HTTP: `request` holds `pipeline` copies of the request.
    Http {
        /// The request bytes (all pipelined copies).
        request: Vec<u8>,
        /// Responses expected per operation.
        pipeline: usize,
        /// Request method is HEAD (responses have no body).
        head: bool,
    },
    /// Echo round trips of `size` bytes, written `chunk` bytes at a time.
    Echo {
        /// Bytes per operation.
        size: usize,
        /// Bytes written before reading the echo back.
        chunk: usize,
    },
}

impl WorkloadSpec {
    /// True when every operation opens a new connection.
    pub fn one_shot(&self) -> bool {
        matches!(self, WorkloadSpec::Handshake(_) | WorkloadSpec::Resume(_))
    }

    /// True when each slot needs its own session store (resumption).
    pub fn resumes(&self) -> bool {
        matches!(self, WorkloadSpec::Resume(_))
    }
}

/// Timings and byte counts of one operation.
#[derive(Debug)]
pub struct OpTimes {
    /// When the operation should have started (open loop); equals `start` in closed loop.
    pub intended: Instant,
    /// When the operation's first byte was sent (after a reconnect, if any).
    pub start: Instant,
    /// TCP connect time, if the operation connected.
    pub connect: Option<Duration>,
    /// TLS handshake time, if the operation connected.
    pub handshake: Option<Duration>,
    /// Whether that handshake resumed a session.
    pub resumed: Option<bool>,
    /// Time to the first response byte.
    pub ttfb: Option<Duration>,
    /// Completion time of each successful response (several when pipelining).
    pub done: Vec<Instant>,
    /// An HTTP 4xx/5xx status was received (counted as an error; the
    /// connection is kept).
    pub bad_status: Option<u16>,
    /// Plaintext bytes received.
    pub bytes_in: u64,
    /// Plaintext bytes sent.
    pub bytes_out: u64,
    /// Ciphertext bytes received / sent (TLS records, handshakes included).
    pub cipher_in: u64,
    /// Ciphertext bytes sent.
    pub cipher_out: u64,
}

impl OpTimes {
    /// Fresh timings for an operation intended to start at `intended`.
    pub fn new(intended: Instant) -> OpTimes {
        OpTimes {
            intended,
            start: intended,
            connect: None,
            handshake: None,
            resumed: None,
            ttfb: None,
            done: Vec::with_capacity(4),
            bad_status: None,
            bytes_in: 0,
            bytes_out: 0,
            cipher_in: 0,
            cipher_out: 0,
        }
    }

    /// Clears for reuse (keeps the `done` allocation).
    pub fn reset(&mut self, intended: Instant) {
        let mut done = std::mem::take(&mut self.done);
        done.clear();
        *self = OpTimes {
            done,
            ..OpTimes::new(intended)
        };
    }

    /// Adds the ciphertext moved between two `byte_counts()` readings.
    pub fn count_ciphertext(&mut self, before: (u64, u64), after: (u64, u64)) {
        self.cipher_in += after.0.saturating_sub(before.0);
        self.cipher_out += after.1.saturating_sub(before.1);
    }

    /// Notes the first response byte (once).
    pub fn first_byte(&mut self) {
        if self.ttfb.is_none() {
            self.ttfb = Some(self.start.elapsed());
        }
    }
}

/// Per-connection-slot state, reused across operations.
pub struct Slot {
    /// How this slot connects (its own session store when resuming).
    pub dialer: Dialer,
    /// The kept-alive connection, if any.
    pub stream: Option<ClientStream>,
    /// Plaintext read buffer.
    pub rbuf: http::ReadBuf,
    /// Echo payload.
    pub msg: Vec<u8>,
    /// The kept-alive connection has answered an operation since its
    /// handshake (a close before that is [`ErrorClass::WrongService`] for echo).
    pub answered: bool,
}

impl Slot {
    /// A slot connecting with `dialer`.
    pub fn new(dialer: Dialer, spec: &WorkloadSpec) -> Slot {
        let msg_len = match spec {
            WorkloadSpec::Echo { chunk, .. } => *chunk,
            WorkloadSpec::Handshake(OneShot::Echo) | WorkloadSpec::Resume(OneShot::Echo) => {
                echo::ONE_SHOT_SIZE
            }
            _ => 0,
        };
        Slot {
            dialer,
            stream: None,
            rbuf: http::ReadBuf::new(),
            msg: echo::pattern(msg_len),
            answered: false,
        }
    }
}

/// Runs one operation of `spec` on `slot`.
pub async fn op(spec: &WorkloadSpec, slot: &mut Slot, t: &mut OpTimes) -> Result<(), ErrorClass> {
    match spec {
        WorkloadSpec::Handshake(then) | WorkloadSpec::Resume(then) => one_shot(then, slot, t).await,
        WorkloadSpec::Http {
            request,
            pipeline,
            head,
        } => {
            connect_if_needed(slot, t).await?;
            let Slot { stream, rbuf, .. } = slot;
            let Some(s) = stream.as_mut() else {
                return Err(ErrorClass::Closed);
            };
            t.start = Instant::now();
            let before = s.byte_counts();
            let res = http::exchange(s, rbuf, t, request, *pipeline, *head).await;
            t.count_ciphertext(before, s.byte_counts());
            settle(slot, res)
        }
        WorkloadSpec::Echo { size, chunk } => {
            connect_if_needed(slot, t).await?;
            let Slot {
                stream,
                rbuf,
                msg,
                answered,
                ..
            } = slot;
            let Some(s) = stream.as_mut() else {
                return Err(ErrorClass::Closed);
            };
            t.start = Instant::now();
            let before = s.byte_counts();
            let res = echo::round_trip(s, rbuf, t, msg, *size, *chunk, !*answered).await;
            t.count_ciphertext(before, s.byte_counts());
            settle(slot, res)
        }
    }
}

/// Set-up before a slot's first measured operation: keep-alive workloads
/// connect (connect and handshake times are recorded); `resume` runs one
/// full handshake to obtain a session, recorded only if it fails.
pub async fn prepare(
    spec: &WorkloadSpec,
    slot: &mut Slot,
    t: &mut OpTimes,
) -> Result<(), ErrorClass> {
    match spec {
        WorkloadSpec::Handshake(_) => Ok(()),
        WorkloadSpec::Resume(then) => {
            let res = one_shot(then, slot, t).await;
            t.reset(Instant::now());
            res
        }
        _ => connect_if_needed(slot, t).await,
    }
}

/// Opens the slot's kept-alive connection if it has none.
async fn connect_if_needed(slot: &mut Slot, t: &mut OpTimes) -> Result<(), ErrorClass> {
    if slot.stream.is_none() {
        slot.rbuf.clear();
        slot.answered = false;
        slot.stream = Some(slot.dialer.dial(t).await?);
    }
    Ok(())
}

/// Drops the connection after an error, or when the server asked to close
/// (`Ok(true)`); the next operation reconnects.
fn settle(slot: &mut Slot, res: Result<bool, ErrorClass>) -> Result<(), ErrorClass> {
    slot.answered |= res.is_ok();
    if !matches!(res, Ok(false)) {
        slot.stream = None;
    }
    res.map(|_| ())
}

/// A new connection: handshake, optional request, close.
async fn one_shot(then: &OneShot, slot: &mut Slot, t: &mut OpTimes) -> Result<(), ErrorClass> {
    t.start = Instant::now();
    let mut stream = slot.dialer.dial(t).await?;
    slot.rbuf.clear();
    let res = one_shot_exchange(then, &mut stream, slot, t).await;
    t.count_ciphertext((0, 0), stream.byte_counts());
    res
}

async fn one_shot_exchange(
    then: &OneShot,
    stream: &mut ClientStream,
    slot: &mut Slot,
    t: &mut OpTimes,
) -> Result<(), ErrorClass> {
    match then {
        OneShot::None => {
            // Best effort: the server may already be gone, which is not our error.
            let _ = stream.close().await;
            t.done.push(Instant::now());
            Ok(())
        }
        OneShot::Http(req) => {
            let req_start = Instant::now();
            let ttfb_base = t.start;
            t.start = req_start;
            let res = http::exchange(stream, &mut slot.rbuf, t, req, 1, false).await;
            t.start = ttfb_base;
            if res.is_ok() {
                // A clean TLS close, as browsers and h2load do; best effort.
                let _ = stream.close().await;
            }
            res.map(|_| ())
        }
        OneShot::Echo => {
            let req_start = Instant::now();
            let base = t.start;
            t.start = req_start;
            let n = slot.msg.len();
            let res = echo::round_trip(stream, &mut slot.rbuf, t, &slot.msg, n, n, true).await;
            t.start = base;
            if res.is_ok() {
                let _ = stream.close().await;
            }
            res.map(|_| ())
        }
    }
}
