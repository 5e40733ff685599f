//! The access log: one line per admitted connection, at its end, through
//! `tracing` with target `uringtls::access` (so it follows `--log-format`
//! and can be filtered on its own, e.g. `--log-level warn,uringtls::access=info`).
//!
//! Fields: `client`, `sni`, `alpn`, `version`, `cipher`, `resumed`,
//! `bytes_in`, `bytes_out` (ciphertext), `duration_ms` (rounded to the
//! microsecond), `close` (a [`CloseReason`] label) and, for a failed
//! handshake, `handshake_error` (the label of
//! `uringtls_handshakes_failed_total`) and `alert` (the TLS alert: the one
//! the client sent, or the one the error calls for). A value that is not
//! known is left out: `null` in JSON, absent from human lines. Nothing
//! secret is ever recorded: no keys, no session IDs or tickets, no payload.
//! Client-supplied strings (SNI) are escaped.

use super::CloseReason;
use rustls::AlertDescription;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// What is known about a connection when it ends.
#[derive(Debug, Clone, Default)]
pub struct ConnRecord {
    /// SNI the client sent (escaped), if any.
    pub sni: Option<String>,
    /// Negotiated ALPN protocol (escaped).
    pub alpn: Option<String>,
    /// TLS version, e.g. `TLSv1_3`.
    pub version: Option<String>,
    /// Cipher suite.
    pub cipher: Option<String>,
    /// Whether the handshake resumed a session.
    pub resumed: bool,
    /// Why the handshake failed (see [`super::failure_label`]).
    pub handshake_error: Option<String>,
    /// The alert of a failed handshake, e.g. `unknown_ca`.
    pub alert: Option<String>,
}

impl ConnRecord {
    /// Captures what the handshake negotiated.
    pub fn of(tls: &crate::tls::ServerConn) -> ConnRecord {
        ConnRecord {
            sni: tls.server_name().map(|s| s.escape_debug().to_string()),
            alpn: tls
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).escape_debug().to_string()),
            version: tls.protocol_version().map(super::names::version),
            cipher: tls
                .negotiated_cipher_suite()
                .map(|s| super::names::suite(s.suite())),
            resumed: matches!(tls.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
            handshake_error: None,
            alert: None,
        }
    }

    /// Adds why the handshake failed, if it did.
    pub fn with_handshake_error(mut self, e: Option<&io::Error>) -> ConnRecord {
        if let Some(e) = e {
            self.handshake_error = Some(super::failure_label(e));
            self.alert = alert_of(e).map(super::names::alert);
        }
        self
    }

    /// Writes the access-log line.
    pub fn emit(&self, client: SocketAddr, close: CloseReason, bytes: (u64, u64), took: Duration) {
        tracing::info!(
            target: "uringtls::access",
            %client,
            sni = shown(&self.sni),
            alpn = shown(&self.alpn),
            version = shown(&self.version),
            cipher = shown(&self.cipher),
            resumed = self.resumed,
            bytes_in = bytes.0,
            bytes_out = bytes.1,
            duration_ms = millis(took),
            close = %close.label(),
            handshake_error = shown(&self.handshake_error),
            alert = shown(&self.alert),
            "connection"
        );
    }
}

/// A field recorded as text (unquoted in human lines), or not at all
/// (`null` in JSON) when there is no value.
fn shown(v: &Option<String>) -> Option<tracing::field::DisplayValue<&str>> {
    v.as_deref().map(tracing::field::display)
}

/// `took` in milliseconds, rounded to the microsecond (`0.924`, not
/// `0.9243539999999999`): an integer count of microseconds over 1000 is the
/// double nearest that decimal, which prints as it.
pub fn millis(took: Duration) -> f64 {
    let micros = took.as_nanos().saturating_add(500) / 1000;
    // Exact below 2^53 µs (285 years).
    micros as f64 / 1000.0
}

/// The alert of a failed handshake: the one the client sent, or the one
/// rustls derives from the error (a malformed message, a rejected client
/// certificate, no common ALPN protocol). `None` for socket-level ends and other errors.
fn alert_of(e: &io::Error) -> Option<AlertDescription> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(a) => Some(*a),
        rustls::Error::InvalidMessage(m) => Some(AlertDescription::from(*m)),
        rustls::Error::InvalidCertificate(c) => Some(AlertDescription::from(c.clone())),
        rustls::Error::NoApplicationProtocol => Some(AlertDescription::NoApplicationProtocol),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_rounded_to_the_microsecond() {
        assert_eq!(millis(Duration::from_nanos(924_354)), 0.924);
        assert_eq!(millis(Duration::from_nanos(924_500)), 0.925);
        assert_eq!(
            format!("{}", millis(Duration::from_nanos(924_354))),
            "0.924"
        );
        assert_eq!(millis(Duration::from_secs(2)), 2000.0);
    }

    #[test]
    fn a_failed_handshake_names_its_alert() {
        let got = |e: rustls::Error| {
            let r = ConnRecord::default()
                .with_handshake_error(Some(&io::Error::new(io::ErrorKind::InvalidData, e)));
            (r.handshake_error, r.alert)
        };
        assert_eq!(
            got(rustls::Error::AlertReceived(AlertDescription::UnknownCA)),
            (Some("alert_unknown_ca".into()), Some("unknown_ca".into()))
        );
        assert_eq!(
            got(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::InvalidContentType
            )),
            (Some("invalid_message".into()), Some("decode_error".into()))
        );
        let eof = ConnRecord::default()
            .with_handshake_error(Some(&io::Error::from(io::ErrorKind::UnexpectedEof)));
        assert_eq!(
            (eof.handshake_error.as_deref(), eof.alert),
            (Some("eof"), None)
        );
        let none = ConnRecord::default().with_handshake_error(None);
        assert_eq!((none.handshake_error, none.alert), (None, None));
    }
}
