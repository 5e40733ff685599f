//! The access log: one line per admitted connection, at its end, through
//! `tracing` with target `uringtls::access` (so it follows `--log-format`
//! and can be filtered on its own, e.g. `--log-level warn,uringtls::access=info`).
//!
//! Fields: `client`, `sni`, `alpn`, `version`, `cipher`, `resumed`,
//! `bytes_in`, `bytes_out` (ciphertext), `duration_ms`, `close` (a
//! [`CloseReason`] label). Nothing secret is ever recorded: no keys, no
//! session IDs or tickets, no payload. Client-supplied strings (SNI) are
//! escaped.

use super::CloseReason;
use std::net::SocketAddr;
use std::time::Duration;

/// What is known about a connection when it ends.
#[derive(Debug, Clone, Default)]
pub struct ConnRecord {
    /// SNI the client sent (escaped), `-` if none.
    pub sni: Option<String>,
    /// Negotiated ALPN protocol (escaped).
    pub alpn: Option<String>,
    /// TLS version, e.g. `TLSv1_3`.
    pub version: Option<String>,
    /// Cipher suite.
    pub cipher: Option<String>,
    /// Whether the handshake resumed a session.
    pub resumed: bool,
}

impl ConnRecord {
    /// Captures what the handshake negotiated.
    pub fn of(tls: &crate::tls::ServerConn) -> ConnRecord {
        ConnRecord {
            sni: tls.server_name().map(|s| s.escape_debug().to_string()),
            alpn: tls
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).escape_debug().to_string()),
            version: tls.protocol_version().map(|v| format!("{v:?}")),
            cipher: tls
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite())),
            resumed: matches!(tls.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
        }
    }

    /// Writes the access-log line.
    pub fn emit(&self, client: SocketAddr, close: CloseReason, bytes: (u64, u64), took: Duration) {
        let d = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
        tracing::info!(
            target: "uringtls::access",
            %client,
            sni = %d(&self.sni),
            alpn = %d(&self.alpn),
            version = %d(&self.version),
            cipher = %d(&self.cipher),
            resumed = self.resumed,
            bytes_in = bytes.0,
            bytes_out = bytes.1,
            duration_ms = took.as_secs_f64() * 1e3,
            close = %close.label(),
            "connection"
        );
    }
}
