//! TLS over the runtime's sockets.
//!
//! - [`session`]: sans-I/O logic between byte buffers and a rustls
//!   connection (server or client).
//! - [`stream`]: that logic driven over an [`io::Conn`](crate::io::Conn).
//! - [`duplex`]: a TLS stream and a plain socket pumped both ways at once
//!   (a proxy's data path).
//! - [`relay`]: two TLS streams pumped both ways at once (a proxy to a TLS
//!   upstream).
//! - [`trial`]: TLS 1.3 suites that report record decryptions to the
//!   session (rejected 0-RTT data skipped once); a server's crypto provider
//!   goes through [`trial::observe`].

pub mod duplex;
pub mod records;
pub mod relay;
pub mod session;
pub mod stream;
pub mod trial;

#[cfg(test)]
pub(crate) mod testing;

pub use session::ServerConn;
pub use stream::{ClientStream, ServerStream, TlsStream};
