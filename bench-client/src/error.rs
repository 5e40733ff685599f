//! Why a run did not happen or did not produce results.

use std::fmt;

/// Why a run did not happen or did not produce results.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Bad flags (exit 2).
    Usage(String),
    /// The target cannot be used: nothing listening, untrusted certificate, not TLS.
    Target(String),
    /// Worker threads could not start (io_uring unavailable, ...).
    Start(String),
    /// An output file could not be written.
    Output(String),
    /// The run happened but no operation succeeded.
    Failed(String),
}

impl Error {
    /// Process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m)
            | Error::Target(m)
            | Error::Start(m)
            | Error::Output(m)
            | Error::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}
