//! The I/O layer that uringtls (the server engine), bench-client (the load
//! generator) and the tuning runner share.
//!
//! - [`io`]: the I/O boundary: per-thread runtimes on three backends (our
//!   own io_uring executor, tokio-uring, and tokio's epoll reactor where
//!   io_uring is unavailable), TCP [`io::Listener`] and [`io::Conn`] with
//!   owned buffers, [`io::spawn`], and timers ([`io::time`]) that work on
//!   all of them.
//! - [`tls`]: rustls sessions driven sans-I/O ([`tls::session`]) and over a
//!   [`io::Conn`] ([`tls::stream`]): the server and client TLS streams.
//!
//! Nothing here knows about services, configuration, metrics or shards:
//! what a caller needs to know about an ending (a timeout, a peer that
//! stopped reading) comes back as a value (see [`tls::stream::WriteTimedOut`]).
//! The rules for the ring's memory and for cancellation are in `DESIGN.md`
//! beside this crate's `Cargo.toml`.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

pub mod io;
pub mod tls;
