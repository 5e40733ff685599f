//! Error classes: what went wrong, and whose fault it looks like.
//!
//! Every failed operation is counted under exactly one class; the summary
//! lists them by count. Classes are cheap to compare and sort, so a worker
//! keeps them in a small ordered map.

use std::fmt;
use std::io;

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// TCP connect failed (refused, unreachable, timed out).
    Connect(ConnectFailure),
    /// The server sent a TLS alert (by name, e.g. `handshake_failure`).
    TlsAlert(String),
    /// TLS failed on our side (certificate not trusted, bad record, ...):
    /// what kind of failure, and rustls's name for it (`unknown_issuer`).
    Tls {
        /// The kind, which decides what the operator is told to do.
        kind: TlsFailure,
        /// rustls's name for the failure, snake case.
        detail: String,
    },
    /// No answer within `--timeout`.
    Timeout,
    /// The connection was reset (RST, broken pipe).
    Reset,
    /// The server closed the connection in the middle of an operation.
    Closed,
    /// HTTP status outside 2xx/3xx.
    BadStatus(u16),
    /// The reply made no sense (malformed HTTP, echo mismatch, ...).
    Protocol(ProtocolError),
    /// The TLS handshake succeeded, then the server closed the connection or
    /// answered something else before answering `protocol` once on it
    /// (e.g. `echo` against an HTTP server): probably the wrong service.
    WrongService {
        /// The workload's protocol (`echo`).
        protocol: &'static str,
        /// What the server did instead.
        reply: Unanswered,
    },
}

/// Why a TCP connect failed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// Nothing listening (RST).
    #[error("connection refused")]
    Refused,
    /// No answer within `--timeout` (or the kernel's).
    #[error("timeout")]
    Timeout,
    /// No route to the host.
    #[error("host unreachable")]
    HostUnreachable,
    /// No route to the network.
    #[error("network unreachable")]
    NetworkUnreachable,
    /// Out of local ports.
    #[error("no local port available")]
    NoLocalPort,
    /// Anything else, as the system says it.
    #[error("{0}")]
    Other(String),
}

/// How a reply made no sense.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The HTTP response head does not parse (httparse's reason).
    #[error("malformed HTTP response: {0}")]
    MalformedHead(String),
    /// A `Content-Length` that is not a number.
    #[error("malformed Content-Length")]
    MalformedContentLength,
    /// A chunk size line that is not hex.
    #[error("malformed chunk size")]
    MalformedChunkSize,
    /// A response head that does not fit the read buffer.
    #[error("response head larger than the 64 KiB read buffer")]
    HeadTooLarge,
    /// An echo message of no bytes.
    #[error("empty echo message")]
    EmptyEcho,
    /// The echo came back different.
    #[error("echo reply differs from what was sent")]
    EchoMismatch,
    /// Another socket error, as the system says it.
    #[error("{0}")]
    Io(String),
}

/// The kinds of TLS failure on our side that call for different fixes
/// (see [`ErrorClass::Tls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate is not trusted or not valid.
    InvalidCertificate,
    /// The server sent something that is not TLS (a plaintext server?).
    InvalidMessage,
    /// The server does not support what we offered.
    PeerIncompatible,
    /// Anything else.
    Other,
}

impl TlsFailure {
    /// The key prefix (`invalid_certificate`), `None` for [`TlsFailure::Other`].
    fn key(self) -> Option<&'static str> {
        match self {
            TlsFailure::InvalidCertificate => Some("invalid_certificate"),
            TlsFailure::InvalidMessage => Some("invalid_message"),
            TlsFailure::PeerIncompatible => Some("peer_incompatible"),
            TlsFailure::Other => None,
        }
    }
}

/// What a server did instead of answering the workload's protocol on a
/// fresh connection (see [`ErrorClass::WrongService`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Unanswered {
    /// Closed (or reset) the connection before sending any byte.
    Closed,
    /// Sent an HTTP response (`HTTP/...`).
    Http,
    /// Sent other bytes.
    Other,
}

impl Unanswered {
    /// Classifies the first bytes a server sent in place of an echo.
    pub fn of_reply(reply: &[u8]) -> Unanswered {
        let n = reply.len().min(5);
        if n > 0 && reply[..n] == b"HTTP/"[..n] {
            Unanswered::Http
        } else {
            Unanswered::Other
        }
    }

    fn key(self) -> &'static str {
        match self {
            Unanswered::Closed => "closed",
            Unanswered::Http => "http_reply",
            Unanswered::Other => "other_reply",
        }
    }
}

impl ErrorClass {
    /// A short stable key for JSON/CSV (`connect`, `tls_alert:handshake_failure`, `status:503`...).
    pub fn key(&self) -> String {
        match self {
            ErrorClass::Connect(why) => format!("connect:{}", why.to_string().replace(' ', "_")),
            ErrorClass::TlsAlert(a) => format!("tls_alert:{a}"),
            ErrorClass::Tls { .. } => format!("tls:{}", self.tls_reason()),
            ErrorClass::Timeout => "timeout".into(),
            ErrorClass::Reset => "reset".into(),
            ErrorClass::Closed => "closed".into(),
            ErrorClass::BadStatus(s) => format!("status:{s}"),
            ErrorClass::Protocol(why) => format!("protocol:{why}"),
            ErrorClass::WrongService { protocol, reply } => {
                format!("wrong_service:{protocol}:{}", reply.key())
            }
        }
    }

    /// `invalid_certificate:unknown_issuer`: a TLS failure's kind and
    /// detail (empty for other classes).
    pub fn tls_reason(&self) -> String {
        match self {
            ErrorClass::Tls { kind, detail } => match kind.key() {
                Some(k) => format!("{k}:{detail}"),
                None => detail.clone(),
            },
            _ => String::new(),
        }
    }

    /// Classifies a failed TCP connect.
    pub fn connect(e: &io::Error) -> ErrorClass {
        let why = match e.kind() {
            io::ErrorKind::ConnectionRefused => ConnectFailure::Refused,
            io::ErrorKind::TimedOut => ConnectFailure::Timeout,
            io::ErrorKind::HostUnreachable => ConnectFailure::HostUnreachable,
            io::ErrorKind::NetworkUnreachable => ConnectFailure::NetworkUnreachable,
            io::ErrorKind::AddrNotAvailable => ConnectFailure::NoLocalPort,
            _ => ConnectFailure::Other(e.to_string()),
        };
        ErrorClass::Connect(why)
    }

    /// Classifies a failed read/write/handshake on an established socket.
    pub fn io(e: &io::Error) -> ErrorClass {
        if let Some(tls) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return ErrorClass::tls(tls);
        }
        match e.kind() {
            io::ErrorKind::TimedOut => ErrorClass::Timeout,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => ErrorClass::Reset,
            io::ErrorKind::UnexpectedEof => ErrorClass::Closed,
            _ => ErrorClass::Protocol(ProtocolError::Io(e.to_string())),
        }
    }

    /// `self`, from a connection on which the server has not answered
    /// `protocol` once since the handshake: a close or reset then means
    /// "wrong service" ([`ErrorClass::WrongService`]), not a failed operation.
    pub fn before_first_answer(self, protocol: &'static str) -> ErrorClass {
        match self {
            ErrorClass::Closed | ErrorClass::Reset => ErrorClass::WrongService {
                protocol,
                reply: Unanswered::Closed,
            },
            other => other,
        }
    }

    /// Classifies a rustls error.
    pub fn tls(e: &rustls::Error) -> ErrorClass {
        let tls = |kind, detail| ErrorClass::Tls { kind, detail };
        match e {
            rustls::Error::AlertReceived(a) => ErrorClass::TlsAlert(alert_name(*a)),
            rustls::Error::InvalidCertificate(c) => {
                tls(TlsFailure::InvalidCertificate, snake(&format!("{c:?}")))
            }
            rustls::Error::InvalidMessage(m) => {
                tls(TlsFailure::InvalidMessage, snake(&format!("{m:?}")))
            }
            rustls::Error::PeerIncompatible(p) => {
                tls(TlsFailure::PeerIncompatible, snake(&format!("{p:?}")))
            }
            other => tls(TlsFailure::Other, snake(&format!("{other:?}"))),
        }
    }
}

/// `handshake_failure`; an alert rustls has no name for: `alert_description:0x7b`.
fn alert_name(a: rustls::AlertDescription) -> String {
    match a.as_str() {
        Some(name) => snake(name),
        None => format!("alert_description:0x{:x}", u8::from(a)),
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorClass::Connect(why) => write!(f, "connect: {why}"),
            ErrorClass::TlsAlert(a) => write!(f, "TLS alert from server: {a}"),
            ErrorClass::Tls { .. } => write!(f, "TLS: {}", self.tls_reason()),
            ErrorClass::Timeout => write!(f, "timeout"),
            ErrorClass::Reset => write!(f, "connection reset"),
            ErrorClass::Closed => write!(f, "closed by server mid-operation"),
            ErrorClass::BadStatus(s) => write!(f, "HTTP status {s}"),
            ErrorClass::Protocol(why) => write!(f, "protocol: {why}"),
            ErrorClass::WrongService { protocol, reply } => match reply {
                Unanswered::Closed => write!(
                    f,
                    "server closed after the TLS handshake without answering the {protocol} protocol — wrong service?"
                ),
                Unanswered::Http => write!(
                    f,
                    "server answered HTTP after the TLS handshake instead of the {protocol} protocol — wrong service?"
                ),
                Unanswered::Other => write!(
                    f,
                    "server answered something other than the {protocol} protocol after the TLS handshake — wrong service?"
                ),
            },
        }
    }
}

/// `HandshakeFailure` -> `handshake_failure`; keeps only the variant name
/// (drops any `(...)` payload beyond the first level).
fn snake(debug: &str) -> String {
    let mut out = String::with_capacity(debug.len() + 4);
    for (i, c) in debug.chars().enumerate() {
        match c {
            'A'..='Z' => {
                if i > 0 && !out.ends_with(['_', ':']) {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            }
            '(' | '{' => out.push(':'),
            ')' | '}' | '"' | ' ' => {}
            ',' => out.push('_'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::AlertDescription;

    fn wrap(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn alerts_are_classified_by_name() {
        let c = ErrorClass::io(&wrap(rustls::Error::AlertReceived(
            AlertDescription::HandshakeFailure,
        )));
        assert_eq!(c, ErrorClass::TlsAlert("handshake_failure".into()));
        assert_eq!(c.key(), "tls_alert:handshake_failure");
        let unknown = ErrorClass::tls(&rustls::Error::AlertReceived(AlertDescription::Unknown(
            0x7b,
        )));
        assert_eq!(unknown.key(), "tls_alert:alert_description:0x7b");
    }

    #[test]
    fn untrusted_certificates_and_plaintext_replies_are_tls_errors() {
        let c = ErrorClass::io(&wrap(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        )));
        assert_eq!(
            c,
            ErrorClass::Tls {
                kind: TlsFailure::InvalidCertificate,
                detail: "unknown_issuer".into()
            }
        );
        assert_eq!(c.key(), "tls:invalid_certificate:unknown_issuer");
        assert_eq!(c.to_string(), "TLS: invalid_certificate:unknown_issuer");
        let c = ErrorClass::io(&wrap(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        )));
        assert_eq!(
            c,
            ErrorClass::Tls {
                kind: TlsFailure::InvalidMessage,
                detail: "invalid_content_type".into()
            }
        );
        assert_eq!(c.key(), "tls:invalid_message:invalid_content_type");
        let c = ErrorClass::tls(&rustls::Error::HandshakeNotComplete);
        assert_eq!(c.key(), "tls:handshake_not_complete");
    }

    #[test]
    fn socket_errors_map_to_timeout_reset_closed() {
        assert_eq!(
            ErrorClass::io(&io::Error::from(io::ErrorKind::TimedOut)),
            ErrorClass::Timeout
        );
        assert_eq!(
            ErrorClass::io(&io::Error::from(io::ErrorKind::ConnectionReset)),
            ErrorClass::Reset
        );
        assert_eq!(
            ErrorClass::io(&io::Error::from(io::ErrorKind::UnexpectedEof)),
            ErrorClass::Closed
        );
        let refused = ErrorClass::connect(&io::Error::from(io::ErrorKind::ConnectionRefused));
        assert_eq!(refused, ErrorClass::Connect(ConnectFailure::Refused));
        assert_eq!(refused.to_string(), "connect: connection refused");
        assert_eq!(refused.key(), "connect:connection_refused");
        let odd = ErrorClass::io(&io::Error::other("odd failure"));
        assert_eq!(
            odd,
            ErrorClass::Protocol(ProtocolError::Io("odd failure".into()))
        );
        assert_eq!(odd.key(), "protocol:odd failure");
    }

    #[test]
    fn a_close_before_the_first_answer_is_a_wrong_service_not_a_handshake_error() {
        for early in [ErrorClass::Closed, ErrorClass::Reset] {
            let c = early.before_first_answer("echo");
            assert_eq!(
                c,
                ErrorClass::WrongService {
                    protocol: "echo",
                    reply: Unanswered::Closed
                }
            );
            assert_eq!(c.key(), "wrong_service:echo:closed");
            assert_eq!(
                c.to_string(),
                "server closed after the TLS handshake without answering the echo protocol — wrong service?"
            );
        }
        // A timeout or an alert keeps its own class.
        assert_eq!(
            ErrorClass::Timeout.before_first_answer("echo"),
            ErrorClass::Timeout
        );
        let alert = ErrorClass::TlsAlert("certificate_required".into());
        assert_eq!(alert.clone().before_first_answer("echo"), alert);
    }

    #[test]
    fn a_foreign_first_reply_is_told_apart_from_http() {
        assert_eq!(
            Unanswered::of_reply(b"HTTP/1.1 400 Bad Request\r\n"),
            Unanswered::Http
        );
        assert_eq!(Unanswered::of_reply(b"HT"), Unanswered::Http);
        assert_eq!(Unanswered::of_reply(b"SSH-2.0"), Unanswered::Other);
        let c = ErrorClass::WrongService {
            protocol: "echo",
            reply: Unanswered::Http,
        };
        assert_eq!(c.key(), "wrong_service:echo:http_reply");
        assert!(c.to_string().contains("wrong service?"), "{c}");
    }
}
