//! Sans-I/O TLS session logic: moving bytes between buffers and a rustls
//! connection. Nothing here knows about sockets or io_uring, so it is tested
//! in memory (client and server connections wired back to back).
//!
//! Built on rustls's *unbuffered* API: rustls keeps no receive buffer of its
//! own. Ciphertext is decrypted in place in the buffer it arrived in (on the
//! uring backend, a buffer of the shard's pool), and records are encrypted
//! straight into the buffer that goes to the socket. What a [`Session`]
//! keeps between reads is only what is still owed: the tail of a record
//! that has not fully arrived, plaintext the application has not taken yet,
//! records not yet written. An idle connection holds none of them.

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::CertificateDer;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
    WriteTraffic,
};
use rustls::AlertDescription;
use rustls::CommonState;

pub use super::records::Records;
use super::records::{self, Failure, Opened};
use std::cell::{Cell, RefCell};
use std::io;
use std::sync::Arc;

/// Ciphertext kept for a record (or a handshake message spanning records)
/// that has not fully arrived. Past this the peer is refused: rustls's own
/// buffered API allows 64 KiB handshake messages plus one record.
pub const MAX_HELD: usize = 0xffff + 16 * 1024 + 2048;

/// A failure of the session layer itself (not of rustls's protocol checks),
/// carried to callers inside [`rustls::Error::Other`] so that they classify
/// it by variant ([`SessionError::of`]), never by its message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// rustls could not encode a handshake record into the output buffer.
    #[error("{0}")]
    Encode(EncodeError),
    /// The peer sent 0-RTT data; the server config never accepts it.
    #[error("unexpected early data")]
    UnexpectedEarlyData,
}

impl SessionError {
    /// The session error `e` carries, if it is one.
    pub fn of(e: &rustls::Error) -> Option<&SessionError> {
        match e {
            rustls::Error::Other(o) => o.0.downcast_ref(),
            _ => None,
        }
    }

    /// A short, stable label for metrics (`encode`, `unexpected_early_data`).
    pub fn label(&self) -> &'static str {
        match self {
            SessionError::Encode(_) => "encode",
            SessionError::UnexpectedEarlyData => "unexpected_early_data",
        }
    }
}

impl From<SessionError> for rustls::Error {
    fn from(e: SessionError) -> Self {
        rustls::Error::Other(rustls::OtherError(Arc::new(e)))
    }
}

/// Any unbuffered rustls connection, client or server.
pub trait TlsConn {
    /// The side-specific data (`ServerConnectionData` or `ClientConnectionData`).
    type Data;
    /// Runs rustls over `incoming` (see
    /// [`rustls::unbuffered::UnbufferedConnectionCommon::process_tls_records`]);
    /// `None` once rustls has handed the records over ([`TlsConn::records`]).
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> Option<UnbufferedStatus<'c, 'i, Self::Data>>;
    /// Whether the handshake is still in progress.
    fn is_handshaking(&self) -> bool;
    /// The negotiated protocol version, once known.
    fn protocol_version(&self) -> Option<rustls::ProtocolVersion>;
    /// Whether rustls holds records it wants to send.
    fn rustls_wants_write(&self) -> bool;
    /// Hands record protection over from rustls to the session, where this
    /// side allows it (a TLS 1.3 server whose config enables secret
    /// extraction) and the handshake is over: `Ok(true)` once done.
    fn hand_over_records(&mut self) -> Result<bool, rustls::Error> {
        Ok(false)
    }
    /// The record layer, once handed over.
    fn records(&mut self) -> Option<&mut Records> {
        None
    }
    /// Whether the records have been handed over.
    fn has_records(&self) -> bool {
        false
    }
    /// Whether this is the server side.
    const SERVER: bool;
}

impl TlsConn for UnbufferedClientConnection {
    type Data = rustls::client::ClientConnectionData;
    const SERVER: bool = false;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> Option<UnbufferedStatus<'c, 'i, Self::Data>> {
        Some(self.process_tls_records(incoming))
    }
    fn is_handshaking(&self) -> bool {
        CommonState::is_handshaking(self)
    }
    fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        CommonState::protocol_version(self)
    }
    fn rustls_wants_write(&self) -> bool {
        CommonState::wants_write(self)
    }
}

thread_local! {
    /// The SNI of the ClientHello being processed on this thread, noted by
    /// the certificate resolver (rustls's unbuffered server connection does
    /// not expose it).
    static HELLO_SNI: RefCell<Option<Box<str>>> = const { RefCell::new(None) };
}

/// Notes the server name of the ClientHello rustls is processing on this
/// thread (called by the certificate resolver, which rustls calls for
/// every ClientHello, resumed or not).
pub fn note_hello_sni(name: Option<&str>) {
    HELLO_SNI.with(|s| *s.borrow_mut() = name.map(Box::from));
}

fn take_hello_sni() -> Option<Box<str>> {
    HELLO_SNI.with(|s| s.borrow_mut().take())
}

thread_local! {
    /// Where the last record rustls tried to decrypt on this thread ended
    /// (an address), if that try failed: see [`note_decrypt`].
    static FAILED_DECRYPT_END: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Notes the outcome of a record decryption (called by the decrypters of
/// [`super::trial`]): `Some(end address of the record)` if it failed,
/// `None` if it succeeded.
///
/// A server that declined a client's 0-RTT data skips the records it cannot
/// decrypt (trial decryption, RFC 8446 §4.2.10), up to 16 KiB in all. rustls
/// 0.23 does not count skipped records that end its input as processed: it
/// leaves them to be given again, and tries them again, spending the 16 KiB
/// once per try (rejected early data over 16,384 / 3 = 5,461 bytes failed
/// the handshake). [`Session`] drops those records itself: when the last
/// record rustls tried failed and rustls kept it, it was skipped (a failure
/// after a partial handshake message is fatal in rustls, so nothing rustls
/// holds can follow it).
pub fn note_decrypt(failed_end: Option<usize>) {
    FAILED_DECRYPT_END.with(|c| c.set(failed_end));
}

fn take_failed_decrypt() -> Option<usize> {
    FAILED_DECRYPT_END.with(|c| c.take())
}

/// The server side of a connection: rustls's unbuffered server connection
/// plus the SNI the client sent; after a TLS 1.3 handshake, the session's
/// own record layer ([`Records`]) and what the handshake negotiated.
pub struct ServerConn {
    state: ServerState,
    sni: Option<Box<str>>,
    /// The config allows handing TLS 1.3 records over (it enables secret
    /// extraction).
    may_hand_over: bool,
}

// Every connection starts as `Rustls`, kept inline (boxing it would cost
// every connection an allocation); only a long one becomes `Handed`, whose
// box frees the rustls state.
#[allow(clippy::large_enum_variant)]
enum ServerState {
    Rustls(UnbufferedServerConnection),
    Handed(Box<Handed>),
    /// A hand-over failed half way (the connection fails with it).
    Gone,
}

/// A TLS 1.3 connection after the hand-over: its record layer and what the
/// handshake negotiated (rustls's connection is gone).
struct Handed {
    records: Records,
    alpn: Option<Vec<u8>>,
    suite: rustls::SupportedCipherSuite,
    kind: Option<rustls::HandshakeKind>,
    peer_certificates: Option<Vec<CertificateDer<'static>>>,
}

impl ServerConn {
    /// A fresh server connection on `config`. Once a TLS 1.3 handshake is
    /// over, the session seals and opens records itself when
    /// `config.enable_secret_extraction` is set (see [`Records`]).
    pub fn new(config: Arc<rustls::ServerConfig>) -> Result<ServerConn, rustls::Error> {
        let may_hand_over = config.enable_secret_extraction;
        Ok(ServerConn {
            state: ServerState::Rustls(UnbufferedServerConnection::new(config)?),
            sni: None,
            may_hand_over,
        })
    }

    /// The server name the client asked for (SNI), once its hello is in.
    pub fn server_name(&self) -> Option<&str> {
        self.sni.as_deref()
    }

    /// The ALPN protocol agreed, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match &self.state {
            ServerState::Rustls(c) => c.alpn_protocol(),
            ServerState::Handed(h) => h.alpn.as_deref(),
            ServerState::Gone => None,
        }
    }

    /// The protocol version agreed, once known.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.state {
            ServerState::Rustls(c) => c.protocol_version(),
            ServerState::Handed(_) => Some(rustls::ProtocolVersion::TLSv1_3),
            ServerState::Gone => None,
        }
    }

    /// The cipher suite agreed, once known.
    pub fn negotiated_cipher_suite(&self) -> Option<rustls::SupportedCipherSuite> {
        match &self.state {
            ServerState::Rustls(c) => c.negotiated_cipher_suite(),
            ServerState::Handed(h) => Some(h.suite),
            ServerState::Gone => None,
        }
    }

    /// Whether the handshake was full or resumed, once over.
    pub fn handshake_kind(&self) -> Option<rustls::HandshakeKind> {
        match &self.state {
            ServerState::Rustls(c) => c.handshake_kind(),
            ServerState::Handed(h) => h.kind,
            ServerState::Gone => None,
        }
    }

    /// The client's certificate chain, if it sent one (mTLS).
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match &self.state {
            ServerState::Rustls(c) => c.peer_certificates(),
            ServerState::Handed(h) => h.peer_certificates.as_deref(),
            ServerState::Gone => None,
        }
    }

    /// Whether the handshake is still in progress.
    pub fn is_handshaking(&self) -> bool {
        match &self.state {
            ServerState::Rustls(c) => c.is_handshaking(),
            ServerState::Handed(_) | ServerState::Gone => false,
        }
    }
}

impl TlsConn for ServerConn {
    type Data = rustls::server::ServerConnectionData;
    const SERVER: bool = true;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> Option<UnbufferedStatus<'c, 'i, Self::Data>> {
        let ServerConn { state, sni, .. } = self;
        let ServerState::Rustls(inner) = state else {
            return None;
        };
        if !inner.is_handshaking() {
            return Some(inner.process_tls_records(incoming));
        }
        // The resolver runs inside this call, on this thread.
        take_hello_sni();
        let status = inner.process_tls_records(incoming);
        if let Some(name) = take_hello_sni() {
            *sni = Some(name);
        }
        Some(status)
    }
    fn is_handshaking(&self) -> bool {
        ServerConn::is_handshaking(self)
    }
    fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        ServerConn::protocol_version(self)
    }
    fn rustls_wants_write(&self) -> bool {
        match &self.state {
            ServerState::Rustls(c) => c.wants_write(),
            ServerState::Handed(_) | ServerState::Gone => false,
        }
    }
    fn hand_over_records(&mut self) -> Result<bool, rustls::Error> {
        let ServerState::Rustls(c) = &self.state else {
            return Ok(matches!(self.state, ServerState::Handed(_)));
        };
        if !self.may_hand_over
            || c.is_handshaking()
            || c.wants_write()
            || c.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3)
        {
            return Ok(false);
        }
        let ServerState::Rustls(c) = std::mem::replace(&mut self.state, ServerState::Gone) else {
            return Ok(false);
        };
        let alpn = c.alpn_protocol().map(<[u8]>::to_vec);
        let kind = c.handshake_kind();
        let peer_certificates = c
            .peer_certificates()
            .map(<[CertificateDer<'static>]>::to_vec);
        let (secrets, kernel) = c.dangerous_into_kernel_connection()?;
        let suite = kernel.negotiated_cipher_suite();
        let records = Records::new(secrets, kernel)?;
        self.state = ServerState::Handed(Box::new(Handed {
            records,
            alpn,
            suite,
            kind,
            peer_certificates,
        }));
        Ok(true)
    }
    fn records(&mut self) -> Option<&mut Records> {
        match &mut self.state {
            ServerState::Handed(h) => Some(&mut h.records),
            _ => None,
        }
    }
    fn has_records(&self) -> bool {
        matches!(self.state, ServerState::Handed(_))
    }
}

/// Outcome of feeding ciphertext to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// Bytes of the input taken (always all of it: what rustls could not
    /// process yet is kept by the session).
    pub consumed: usize,
}

/// A TLS session: a rustls connection and the bytes it still owes or is
/// owed. See the module docs.
pub struct Session<C: TlsConn> {
    tls: C,
    /// Ciphertext received and not yet processed (a record's head).
    held: Vec<u8>,
    /// Decrypted bytes the application has not taken, from `plain_pos`.
    plain: Vec<u8>,
    plain_pos: usize,
    /// Records to send (a buffer of the thread's write pool while in use).
    out: OutBuf,
    /// Queue at most this many bytes of records before the caller flushes.
    send_limit: usize,
    /// The peer sent `close_notify`.
    peer_closed: bool,
    /// The peer closed its sending side (TCP FIN).
    eof: bool,
    /// `close_notify` queued.
    close_sent: bool,
    /// A ChangeCipherSpec record was queued (TLS 1.2: what follows is
    /// encrypted).
    ccs_sent: bool,
    /// The peer spoke plain HTTP; a `400` answer is queued.
    plain_http: bool,
    /// The peer's first bytes were a PROXY protocol header (v1 or v2).
    proxy_header: bool,
    /// Application records rustls sealed or opened since the handshake.
    rustls_records: u32,
    /// Hand the records over (see [`TlsConn::hand_over_records`]) once
    /// rustls has done this many.
    hand_over_after: u32,
}

/// Application records a TLS 1.3 server connection leaves to rustls before
/// the session takes them over (at its next write, see
/// `Session::maybe_hand_over`). Taking over costs about 48,000 instructions
/// (rustls derives the traffic keys again to hand them out, and the session
/// sets up its own AEAD keys); each record sealed or opened by the session
/// instead of rustls saves about 950 (a keep-alive request is two). So a
/// connection that makes a handful of requests and closes never pays, and
/// one that stays pays back within its first few dozen (a 1 MiB response
/// is 64 records).
pub const HAND_OVER_AFTER: u32 = 32;

fn tls_io_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn encrypt_error(e: EncryptError) -> io::Error {
    io::Error::other(e)
}

/// Records to send: `buf[..len]`. The bytes of `buf` past `len` are stale
/// data left by an earlier use of the pooled buffer: records are written
/// over them, so only space the buffer never had before is zeroed (zeroing
/// every record's space cost ~4% of the CPU of a 1 MiB response).
#[derive(Default)]
struct OutBuf {
    buf: Vec<u8>,
    len: usize,
}

impl OutBuf {
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The queued records, taken out: exactly them, nothing stale.
    fn take(&mut self) -> Vec<u8> {
        let mut v = std::mem::take(&mut self.buf);
        v.truncate(self.len);
        self.len = 0;
        v
    }

    /// Runs `write` on `need` bytes after the queued records and keeps
    /// what it wrote; retries once with the size it asked for.
    fn write_tail<E>(
        &mut self,
        mut need: usize,
        mut write: impl FnMut(&mut [u8]) -> Result<usize, E>,
        too_small: impl Fn(&E) -> Option<usize>,
    ) -> Result<(), E> {
        if self.buf.capacity() == 0 {
            self.buf = crate::io::take_write_buf_as_left();
            self.len = 0;
        }
        let start = self.len;
        loop {
            let end = start + need;
            if self.buf.len() < end {
                // Exactly what is needed: a doubled capacity could outgrow
                // the write pool's limit and cost a fresh allocation per
                // flush.
                self.buf.reserve_exact(end - self.buf.len());
                self.buf.resize(end, 0);
            }
            match write(&mut self.buf[start..end]) {
                Ok(n) => {
                    self.len = start + n.min(need);
                    return Ok(());
                }
                Err(e) => match too_small(&e) {
                    Some(required) if required > need => need = required,
                    _ => return Err(e),
                },
            }
        }
    }
}

/// The size rustls asked for when the buffer given to `encode` was too small.
fn encode_too_small(e: &EncodeError) -> Option<usize> {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

/// The size rustls asked for when the buffer given to `encrypt` was too small.
fn encrypt_too_small(e: &EncryptError) -> Option<usize> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Some(*required_size)
        }
        _ => None,
    }
}

/// The answer to plain HTTP on the TLS port.
const PLAIN_HTTP_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain\r\n\
Content-Length: 58\r\n\
Connection: close\r\n\
\r\n\
This is a TLS port: send HTTPS (https://) requests to it.\n";

/// Whether `input` starts like an HTTP/1 request line (`GET /`, `POST /`,
/// `OPTIONS *`, `CONNECT host`...): a method in capitals, then a space.
/// The signature a PROXY protocol v2 header starts with.
const PROXY_V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Whether `input`, a connection's first bytes, start a PROXY protocol
/// header: v1 (`PROXY `) or v2 (its signature).
fn looks_like_proxy_header(input: &[u8]) -> bool {
    input.starts_with(b"PROXY ") || input.starts_with(PROXY_V2_SIGNATURE)
}

fn looks_like_http(input: &[u8]) -> bool {
    let method_len = input
        .iter()
        .take(8)
        .take_while(|b| b.is_ascii_uppercase())
        .count();
    (3..=7).contains(&method_len) && input.get(method_len) == Some(&b' ')
}

/// Whether `records` (whole records, as rustls encodes them) hold a
/// ChangeCipherSpec.
fn has_ccs_record(mut records: &[u8]) -> bool {
    while let [typ, _, _, hi, lo, rest @ ..] = records {
        if *typ == 0x14 {
            return true;
        }
        let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
        records = &rest[n..];
    }
    false
}

/// The alert a fatal error implies, for the errors after which rustls
/// queues none. `None`: the peer ended the connection with an alert of its
/// own (nothing to answer).
fn implied_alert(e: &rustls::Error) -> Option<AlertDescription> {
    use rustls::{Error as E, PeerMisbehaved as P};
    Some(match e {
        E::AlertReceived(_) => return None,
        E::InvalidMessage(m) => AlertDescription::from(*m),
        E::DecryptError => AlertDescription::BadRecordMac,
        E::PeerSentOversizedRecord => AlertDescription::RecordOverflow,
        E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            AlertDescription::UnexpectedMessage
        }
        E::NoCertificatesPresented => AlertDescription::HandshakeFailure,
        E::InvalidCertificate(_) => AlertDescription::BadCertificate,
        E::PeerIncompatible(_) | E::NoApplicationProtocol => AlertDescription::HandshakeFailure,
        E::PeerMisbehaved(
            P::IllegalTlsInnerPlaintext
            | P::MessageInterleavedWithHandshakeMessage
            | P::TooManyEmptyFragments
            | P::TooManyWarningAlertsReceived
            | P::TooManyKeyUpdateRequests
            | P::TooManyRenegotiationRequests
            | P::KeyEpochWithPendingFragment
            | P::IllegalMiddleboxChangeCipherSpec
            | P::RejectedEarlyDataInterleavedWithHandshakeMessage,
        ) => AlertDescription::UnexpectedMessage,
        E::PeerMisbehaved(_) => AlertDescription::IllegalParameter,
        _ => AlertDescription::InternalError,
    })
}

/// Upper bound of the records for `len` bytes of plaintext (header, content
/// type, tag and padding of each 16 KiB record).
fn sealed_len(len: usize) -> usize {
    len.saturating_add((len / (16 * 1024) + 1) * 64)
}

/// The write-side action [`Session::drive`] runs once the connection can
/// take application data: encrypt into the records buffer.
type WriteFn<'f, D> = &'f mut dyn FnMut(&mut WriteTraffic<'_, D>, &mut OutBuf);

/// What [`Session::drive`] stops on.
enum Stop {
    /// rustls needs more input.
    NeedInput,
    /// The caller's write-side action ran.
    Wrote,
}

impl<C: TlsConn> Session<C> {
    /// Wraps a fresh rustls connection.
    pub fn new(tls: C) -> Self {
        Session {
            tls,
            held: Vec::new(),
            plain: Vec::new(),
            plain_pos: 0,
            out: OutBuf::default(),
            send_limit: usize::MAX,
            peer_closed: false,
            eof: false,
            close_sent: false,
            ccs_sent: false,
            plain_http: false,
            proxy_header: false,
            rustls_records: 0,
            hand_over_after: HAND_OVER_AFTER,
        }
    }

    /// The rustls connection.
    pub fn conn(&self) -> &C {
        &self.tls
    }

    /// The rustls connection, taken out of the session (what the session
    /// held is dropped).
    pub fn into_conn(self) -> C {
        self.tls
    }

    /// Mutable access to the rustls connection.
    pub fn conn_mut(&mut self) -> &mut C {
        &mut self.tls
    }

    /// How many application records rustls seals or opens before a TLS 1.3
    /// server session takes its records over, at its next write
    /// ([`HAND_OVER_AFTER`] unless set; 0: at the first write after the
    /// handshake).
    pub fn set_hand_over_after(&mut self, records: u32) {
        self.hand_over_after = records;
    }

    /// Whether the session seals and opens the connection's records itself
    /// (see [`Records`]), rustls keeping only the key schedule.
    pub fn records_handed_over(&self) -> bool {
        self.tls.has_records()
    }

    /// Limits the records queued by [`write_plaintext`](Self::write_plaintext)
    /// before the caller must flush.
    pub fn set_send_limit(&mut self, limit: usize) {
        self.send_limit = limit.max(1);
    }

    /// Whether the handshake is still in progress.
    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Whether records are queued for the peer.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Decrypted bytes waiting for the application.
    pub fn plaintext_pending(&self) -> usize {
        self.plain.len() - self.plain_pos
    }

    /// Whether the records queued once the handshake is over may wait for
    /// the first response: only a TLS 1.3 server's, which are its session
    /// tickets. (A TLS 1.2 server's last flight holds its Finished, which
    /// the client waits for; a client's holds its Finished, which the
    /// server waits for.)
    pub fn queued_flight_may_wait(&self) -> bool {
        !self.tls.is_handshaking()
            && self.wants_write()
            && C::SERVER
            && self.tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
    }

    /// Whether received ciphertext waits for the rest of its record.
    pub fn holds_input(&self) -> bool {
        !self.held.is_empty()
    }

    /// Whether the peer sent plain HTTP instead of TLS (its connection
    /// failed; an HTTP `400` saying this is a TLS port is queued instead of
    /// an alert).
    pub fn peer_spoke_plain_http(&self) -> bool {
        self.plain_http
    }

    /// Whether the peer's first bytes were a PROXY protocol header instead
    /// of a ClientHello (its connection failed; nothing is queued for it).
    pub fn peer_sent_proxy_header(&self) -> bool {
        self.proxy_header
    }

    /// Whether the peer has ended its side (`close_notify` or FIN).
    pub fn peer_has_closed(&self) -> bool {
        self.peer_closed || self.eof
    }

    /// Whether the peer ended with `close_notify` (not a FIN alone).
    pub fn peer_closed_cleanly(&self) -> bool {
        self.peer_closed
    }

    /// The decrypted bytes waiting for the application, left in place
    /// (take them with [`consume_plaintext`](Self::consume_plaintext)):
    /// a relay encrypts them for another session straight from here.
    pub fn plaintext(&self) -> &[u8] {
        &self.plain[self.plain_pos..]
    }

    /// Marks the first `n` bytes of [`plaintext`](Self::plaintext) taken.
    pub fn consume_plaintext(&mut self, n: usize) {
        self.consumed_plain(n.min(self.plaintext_pending()));
    }

    /// The records queued for the peer, taken out (the caller writes them
    /// and may give the buffer back to the write pool).
    pub fn take_out(&mut self) -> Vec<u8> {
        self.out.take()
    }

    /// Appends the queued records to `out`.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.out.as_slice());
        crate::io::give_write_buf(self.out.take());
    }

    /// Runs rustls over `incoming` until it needs more input (or, with
    /// `write`, until the connection can take application data and `write`
    /// has run). Handshake records are encoded into `out`, decrypted data
    /// appended to `plain`. Returns the bytes of `incoming` done with.
    fn drive(
        &mut self,
        incoming: &mut [u8],
        mut write: Option<WriteFn<'_, C::Data>>,
    ) -> Result<(usize, Stop), (usize, rustls::Error)> {
        let Session {
            tls,
            plain,
            plain_pos,
            out,
            peer_closed,
            ccs_sent,
            rustls_records,
            ..
        } = self;
        let mut done = 0;
        loop {
            let base = incoming.as_ptr() as usize;
            let len = incoming.len();
            if C::SERVER {
                take_failed_decrypt();
            }
            let Some(UnbufferedStatus { discard, state }) = tls.process(&mut incoming[done..])
            else {
                // rustls has handed the records over (not called then).
                return Ok((done, Stop::NeedInput));
            };
            // Records rustls skipped (rejected 0-RTT data) and left in the
            // input: done with (see `note_decrypt`).
            let skipped = if C::SERVER {
                take_failed_decrypt()
                    .and_then(|end| end.checked_sub(base))
                    .filter(|&end| end > done + discard && end <= len)
                    .map_or(0, |end| end - (done + discard))
            } else {
                0
            };
            let state = state.map_err(|e| (done + discard, e))?;
            let discard = discard + skipped;
            let mut extra = 0;
            match state {
                ConnectionState::ReadTraffic(mut r) => {
                    if *plain_pos == plain.len() {
                        plain.clear();
                        *plain_pos = 0;
                    }
                    while let Some(rec) = r.next_record() {
                        let rec = rec.map_err(|e| (done + discard, e))?;
                        extra += rec.discard;
                        *rustls_records = rustls_records.saturating_add(1);
                        if plain.capacity() == 0 && !rec.payload.is_empty() {
                            // From the thread's pool, not the allocator.
                            *plain = crate::io::take_write_buf();
                        }
                        plain.extend_from_slice(rec.payload);
                    }
                    if write.is_none() && done + discard + extra == len && !tls.rustls_wants_write()
                    {
                        // All input taken and nothing to send: the next call
                        // into rustls would only say so (`WriteTraffic`).
                        return Ok((len, Stop::NeedInput));
                    }
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    let from = out.len();
                    let res = out.write_tail(4096, |dst| e.encode(dst), encode_too_small);
                    if let Err(err) = res {
                        return Err((done + discard, SessionError::Encode(err).into()));
                    }
                    if !*ccs_sent {
                        *ccs_sent = has_ccs_record(&out.as_slice()[from..]);
                    }
                }
                // The encoded records stay queued in `out`, in order; the
                // caller writes them.
                ConnectionState::TransmitTlsData(t) => t.done(),
                ConnectionState::PeerClosed => *peer_closed = true,
                ConnectionState::Closed => {
                    *peer_closed = true;
                    return Ok((done + discard, Stop::NeedInput));
                }
                ConnectionState::WriteTraffic(mut w) => {
                    if let Some(f) = write.take() {
                        f(&mut w, out);
                        return Ok((done + discard, Stop::Wrote));
                    }
                    return Ok((done + discard, Stop::NeedInput));
                }
                ConnectionState::ReadEarlyData(_) => {
                    // The server config never accepts 0-RTT data.
                    return Err((done + discard, SessionError::UnexpectedEarlyData.into()));
                }
                _ => return Ok((done + discard, Stop::NeedInput)),
            }
            done += discard + extra;
        }
    }

    /// After an error: encodes the alert rustls queued (if any) into `out`.
    /// `rest` is what was left of the input (rustls may refer to it). Only
    /// queued records are taken: rustls pops those before it would look at
    /// the input again (which would fail a second time).
    ///
    /// rustls queues no alert for some errors (a TLS 1.3 record with no
    /// content type, a handshake message interleaved with other records, too
    /// many warning alerts, a handshake message over 64 KiB...): then the
    /// alert the error implies is sent here, when our records are still
    /// plaintext (before a TLS 1.3 ServerHello or a TLS 1.2
    /// ChangeCipherSpec: the keys after that are rustls's alone).
    fn queue_alert(&mut self, rest: &mut [u8], err: &rustls::Error) {
        let before = self.out.len();
        while self.tls.rustls_wants_write() {
            let Some(UnbufferedStatus { state, .. }) = self.tls.process(rest) else {
                break;
            };
            let Ok(ConnectionState::EncodeTlsData(mut e)) = state else {
                break;
            };
            if self
                .out
                .write_tail(256, |dst| e.encode(dst), encode_too_small)
                .is_err()
            {
                break;
            }
        }
        let plaintext =
            !self.ccs_sent && self.tls.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3);
        if !plaintext {
            return;
        }
        if C::SERVER && self.tls.protocol_version().is_none() && looks_like_proxy_header(rest) {
            // A PROXY header where none is expected (a balancer whose
            // address is not in the server's list): no TLS client to
            // answer; the caller counts it and closes.
            self.out.len = before;
            self.proxy_header = true;
            return;
        }
        if C::SERVER
            && self.tls.protocol_version().is_none()
            && matches!(err, rustls::Error::InvalidMessage(_))
            && looks_like_http(rest)
        {
            // Plain HTTP sent to the TLS port: say so in HTTP, as nginx does,
            // instead of an alert the client would show as garbage.
            self.out.len = before;
            let _ = self.out.write_tail(
                PLAIN_HTTP_RESPONSE.len(),
                |dst| {
                    dst.copy_from_slice(PLAIN_HTTP_RESPONSE);
                    Ok::<_, ()>(PLAIN_HTTP_RESPONSE.len())
                },
                |_| None,
            );
            self.plain_http = true;
            return;
        }
        if self.out.len() > before {
            // rustls answers a TLS 1.2 client that sent no certificate
            // with `certificate_required`, which only TLS 1.3 defines:
            // TLS 1.2 says `handshake_failure` (RFC 5246 §7.4.6).
            if matches!(err, rustls::Error::NoCertificatesPresented)
                && self.tls.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_2)
            {
                let records = &mut self.out.buf[before..self.out.len];
                if let [0x15, _, _, 0, 2, 2, d] = records {
                    if *d == u8::from(AlertDescription::CertificateRequired) {
                        *d = u8::from(AlertDescription::HandshakeFailure);
                    }
                }
            }
            return;
        }
        if let Some(alert) = implied_alert(err) {
            let record = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, u8::from(alert)];
            let _ = self.out.write_tail(
                record.len(),
                |dst| {
                    dst.copy_from_slice(&record);
                    Ok::<_, ()>(record.len())
                },
                |_| None,
            );
        }
    }

    /// Runs rustls over the held input plus `data`; keeps what it could not
    /// process yet.
    fn run(
        &mut self,
        data: &mut [u8],
        write: Option<WriteFn<'_, C::Data>>,
    ) -> Result<Stop, rustls::Error> {
        if self.tls.records().is_some() {
            return self.run_records(data);
        }
        if C::SERVER
            && write.is_none()
            && self.held.len() + data.len() < 8
            && self.tls.protocol_version().is_none()
            && self
                .held
                .iter()
                .chain(data.iter())
                .all(u8::is_ascii_uppercase)
            && !data.is_empty()
        {
            // Perhaps an HTTP method (no TLS record starts with a letter):
            // wait for the space that would end it (see `looks_like_http`).
            self.held.extend_from_slice(data);
            return Ok(Stop::NeedInput);
        }
        if C::SERVER
            && write.is_none()
            && self.held.len() + data.len() < PROXY_V2_SIGNATURE.len()
            && self.tls.protocol_version().is_none()
            && !data.is_empty()
            && self
                .held
                .iter()
                .chain(data.iter())
                .zip(PROXY_V2_SIGNATURE)
                .all(|(a, b)| a == b)
        {
            // Perhaps a PROXY v2 signature (no TLS record starts with
            // `\r`): wait for all of it (see `looks_like_proxy_header`).
            self.held.extend_from_slice(data);
            return Ok(Stop::NeedInput);
        }
        let res = if self.held.is_empty() {
            // The common case: whole records, decrypted where they arrived.
            match self.drive(data, write) {
                Ok((used, stop)) => {
                    if used < data.len() {
                        self.held.extend_from_slice(&data[used..]);
                    }
                    Ok(stop)
                }
                Err((used, e)) => {
                    let used = used.min(data.len());
                    self.queue_alert(&mut data[used..], &e);
                    Err(e)
                }
            }
        } else {
            let mut held = std::mem::take(&mut self.held);
            held.extend_from_slice(data);
            match self.drive(&mut held, write) {
                Ok((used, stop)) => {
                    if used < held.len() {
                        held.drain(..used);
                        self.held = held;
                    }
                    Ok(stop)
                }
                Err((used, e)) => {
                    let used = used.min(held.len());
                    self.queue_alert(&mut held[used..], &e);
                    Err(e)
                }
            }
        };
        if res.is_ok() && self.held.len() > MAX_HELD {
            // Our limit, not rustls's (a message rustls would take in
            // pieces): refused as rustls refuses an oversized handshake
            // message, with `decode_error`.
            let e = rustls::Error::InvalidMessage(rustls::InvalidMessage::HandshakePayloadTooLarge);
            self.queue_alert(&mut [], &e);
            return Err(e);
        }
        res
    }

    /// Hands a TLS 1.3 server's records over (see [`Records`]) once
    /// rustls has done [`HAND_OVER_AFTER`] of them. Called right after
    /// rustls sealed application data, never after a read: rustls writes a
    /// KeyUpdate it owes the peer only in front of application data, and
    /// keeps it where the hand-over cannot see it until then. And only with
    /// no input held: what rustls keeps of a handshake message split over
    /// records is already decrypted in that buffer and would not open again.
    fn maybe_hand_over(&mut self) -> Result<(), rustls::Error> {
        if C::SERVER
            && self.rustls_records >= self.hand_over_after
            && self.held.is_empty()
            && !self.peer_closed
            && !self.close_sent
            && !self.tls.is_handshaking()
        {
            self.tls.hand_over_records()?;
        }
        Ok(())
    }

    /// [`run`](Self::run) once the records are the session's own: opens the
    /// held input plus `data`; keeps what is not a whole record yet.
    fn run_records(&mut self, data: &mut [u8]) -> Result<Stop, rustls::Error> {
        if self.held.is_empty() {
            let used = self.open_records(data)?;
            if used < data.len() {
                self.held.extend_from_slice(&data[used..]);
            }
        } else {
            let mut held = std::mem::take(&mut self.held);
            held.extend_from_slice(data);
            let used = self.open_records(&mut held)?;
            if used < held.len() {
                held.drain(..used);
                self.held = held;
            }
        }
        Ok(Stop::NeedInput)
    }

    /// Opens every whole record at the front of `input` (see [`Records`]):
    /// application data is appended to `plain`, a requested KeyUpdate is
    /// answered into `out`. Returns the bytes done with. On a failure the
    /// alert it implies is queued, sealed.
    fn open_records(&mut self, input: &mut [u8]) -> Result<usize, rustls::Error> {
        let Session {
            tls,
            plain,
            plain_pos,
            out,
            peer_closed,
            close_sent,
            ..
        } = self;
        let Some(records) = tls.records() else {
            return Ok(0);
        };
        if *plain_pos == plain.len() {
            plain.clear();
            *plain_pos = 0;
        }
        let mut done = 0;
        let failed = |records: &mut Records, out: &mut OutBuf, (err, alert): Failure| {
            if let Some(alert) = alert {
                let _ = out.write_tail(
                    records::ALERT_LEN,
                    |dst| records.seal_alert(alert, dst),
                    |_| None,
                );
            }
            err
        };
        // After `close_notify` the rest is ignored (as rustls does).
        while !*peer_closed {
            let len = match Records::whole_record(&input[done..]) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(f) => return Err(failed(records, out, f)),
            };
            let rec = &mut input[done..done + len];
            done += len;
            match records.open(rec) {
                Ok(Opened::Data { from, len }) => {
                    if plain.capacity() == 0 {
                        // From the thread's pool, not the allocator.
                        *plain = crate::io::take_write_buf();
                    }
                    plain.extend_from_slice(&rec[from..from + len]);
                }
                Ok(Opened::Nothing) => {}
                Ok(Opened::KeyUpdate { answer }) => {
                    // Nothing goes out after our `close_notify`.
                    if answer && !*close_sent {
                        if let Err(e) = out.write_tail(
                            records::KEY_UPDATE_LEN,
                            |dst| records.seal_key_update(dst),
                            |_| None,
                        ) {
                            return Err(failed(
                                records,
                                out,
                                (e, Some(AlertDescription::InternalError)),
                            ));
                        }
                    }
                }
                Ok(Opened::CloseNotify) => *peer_closed = true,
                Err(f) => return Err(failed(records, out, f)),
            }
        }
        Ok(if *peer_closed { input.len() } else { done })
    }

    /// Feeds `data` (ciphertext from the peer) to the session, decrypting
    /// it in place, and processes every complete record. On a protocol
    /// error the alert is queued: flush it before closing.
    pub fn ingest(&mut self, data: &mut [u8]) -> Result<Ingested, rustls::Error> {
        self.run(data, None)?;
        Ok(Ingested {
            consumed: data.len(),
        })
    }

    /// Tells the session that the peer closed its sending side (TCP FIN).
    pub fn ingest_eof(&mut self) -> Result<(), rustls::Error> {
        self.eof = true;
        Ok(())
    }

    /// The clean end, the missing `close_notify`, or nothing.
    fn end_state(&self) -> io::Result<Option<usize>> {
        if self.peer_closed {
            Ok(Some(0))
        } else if self.eof {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer closed connection without sending TLS close_notify",
            ))
        } else {
            Ok(None)
        }
    }

    fn consumed_plain(&mut self, n: usize) {
        self.plain_pos += n;
        if self.plain_pos == self.plain.len() {
            // Nothing kept for an idle connection: the buffer goes back to
            // the thread's pool.
            crate::io::give_write_buf(std::mem::take(&mut self.plain));
            self.plain_pos = 0;
        }
    }

    /// Copies available plaintext into `buf`.
    ///
    /// `Ok(Some(n))` with `n > 0`: data; `Ok(Some(0))`: the peer sent
    /// `close_notify` (clean end); `Ok(None)`: nothing buffered, read more
    /// ciphertext; `Err(UnexpectedEof)`: the peer closed without `close_notify`.
    pub fn read_plaintext(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let avail = &self.plain[self.plain_pos..];
        if avail.is_empty() {
            return if buf.is_empty() {
                Ok(Some(0))
            } else {
                self.end_state()
            };
        }
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consumed_plain(n);
        Ok(Some(n))
    }

    /// Appends available plaintext to `out`, up to `max` bytes in total (no
    /// zero-filling: the buffer grows only by what arrives). Same outcomes as
    /// [`read_plaintext`](Self::read_plaintext): `Some(n > 0)` appended,
    /// `Some(0)` clean end, `None` nothing buffered, `Err(UnexpectedEof)`
    /// closed without `close_notify`.
    pub fn append_plaintext(&mut self, out: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>> {
        let avail = &self.plain[self.plain_pos..];
        if avail.is_empty() {
            return self.end_state();
        }
        let n = avail.len().min(max.saturating_sub(out.len()));
        if n == 0 {
            return Ok(None);
        }
        if out.capacity() == 0 {
            // From the thread's pool, not the allocator (the caller may
            // give it back with `io::give_write_buf`).
            *out = crate::io::take_write_buf();
        }
        out.extend_from_slice(&avail[..n]);
        self.consumed_plain(n);
        Ok(Some(n))
    }

    /// Encrypts plaintext into the queued records; returns how much was
    /// taken (less than `data.len()` when the send limit is reached: flush,
    /// then retry). Fails before the handshake has completed.
    pub fn write_plaintext(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        // Records and their overhead stay within the send limit, so that
        // the buffer fits the write pool (which keeps buffers up to 256 KiB).
        let room = self.send_limit.saturating_sub(self.out.len());
        let room = room.saturating_sub(sealed_len(room) - room);
        if room == 0 {
            return Ok(0);
        }
        let take = data.len().min(room);
        let chunk = &data[..take];
        let Session {
            tls,
            out,
            close_sent,
            ..
        } = self;
        if let Some(records) = tls.records() {
            if *close_sent {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "TLS connection cannot send application data (close_notify sent)",
                ));
            }
            out.write_tail(
                Records::sealed_len(take),
                |dst| records.seal(chunk, dst),
                |_| None,
            )
            .map_err(tls_io_error)?;
            return Ok(take);
        }
        let mut res: io::Result<()> = Ok(());
        let mut f = |w: &mut WriteTraffic<'_, C::Data>, out: &mut OutBuf| {
            res = out
                .write_tail(
                    sealed_len(chunk.len()),
                    |dst| w.encrypt(chunk, dst),
                    encrypt_too_small,
                )
                .map_err(encrypt_error);
        };
        match self.run(&mut [], Some(&mut f)).map_err(tls_io_error)? {
            Stop::Wrote => {
                res?;
                let records =
                    u32::try_from(take.div_ceil(records::MAX_FRAGMENT)).unwrap_or(u32::MAX);
                self.rustls_records = self.rustls_records.saturating_add(records);
                self.maybe_hand_over().map_err(tls_io_error)?;
                Ok(take)
            }
            Stop::NeedInput => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "TLS connection cannot send application data (handshake not complete, or closed)",
            )),
        }
    }

    /// Queues `close_notify` (once). Before the handshake has completed
    /// there is nothing to close cleanly and nothing is queued.
    pub fn send_close_notify(&mut self) {
        if self.close_sent {
            return;
        }
        if let Some(records) = self.tls.records() {
            let _ = self.out.write_tail(
                records::ALERT_LEN,
                |dst| records.seal_alert(AlertDescription::CloseNotify, dst),
                |_| None,
            );
            self.close_sent = true;
            return;
        }
        let mut f = |w: &mut WriteTraffic<'_, C::Data>, out: &mut OutBuf| {
            let _ = out.write_tail(64, |dst| w.queue_close_notify(dst), encrypt_too_small);
        };
        if let Ok(Stop::Wrote) = self.run(&mut [], Some(&mut f)) {
            self.close_sent = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Client = Session<UnbufferedClientConnection>;
    type Server = Session<ServerConn>;

    fn pair() -> (Client, Server) {
        pair_with(rustls::DEFAULT_VERSIONS)
    }

    fn pair_with(versions: &[&'static rustls::SupportedProtocolVersion]) -> (Client, Server) {
        let (server_cfg, cert) = crate::tls::testing::server_config_and_cert();
        pair_on(server_cfg, cert, versions)
    }

    fn pair_on(
        server_cfg: Arc<rustls::ServerConfig>,
        cert: rustls::pki_types::CertificateDer<'static>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> (Client, Server) {
        let client_cfg = client_config(
            cert,
            rustls::crypto::aws_lc_rs::default_provider(),
            versions,
        );
        pair_of(client_cfg, server_cfg)
    }

    /// A client config trusting `cert`.
    fn client_config(
        cert: rustls::pki_types::CertificateDer<'static>,
        provider: rustls::crypto::CryptoProvider,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("root");
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    fn pair_of(
        client_cfg: rustls::ClientConfig,
        server_cfg: Arc<rustls::ServerConfig>,
    ) -> (Client, Server) {
        let client = UnbufferedClientConnection::new(
            Arc::new(client_cfg),
            "localhost".try_into().expect("name"),
        )
        .expect("client");
        let server = ServerConn::new(server_cfg).expect("server");
        (Session::new(client), Session::new(server))
    }

    /// Moves everything `from` wants to send into `to`, `chunk` bytes at a time.
    fn transfer<A: TlsConn, B: TlsConn>(from: &mut Session<A>, to: &mut Session<B>, chunk: usize) {
        let mut wire = Vec::new();
        from.take_output(&mut wire);
        for piece in wire.chunks_mut(chunk.max(1)) {
            let got = to.ingest(piece).expect("ingest");
            assert_eq!(got.consumed, piece.len());
        }
    }

    /// `data` written by `from` (whole), moved to `to`, read there.
    fn deliver<A: TlsConn, B: TlsConn>(
        from: &mut Session<A>,
        to: &mut Session<B>,
        data: &[u8],
    ) -> Vec<u8> {
        assert_eq!(from.write_plaintext(data).expect("write"), data.len());
        transfer(from, to, 1 << 20);
        let mut got = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while let Some(n) = to.read_plaintext(&mut buf).expect("read") {
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// The client refreshes its keys and asks the server to do the same
    /// (`update_requested`); its KeyUpdate goes out with its next record.
    fn ask_for_key_update(c: &mut Client) {
        match c
            .tls
            .process(&mut [])
            .expect("rustls")
            .state
            .expect("client state")
        {
            ConnectionState::WriteTraffic(w) => w.refresh_traffic_keys().expect("key update"),
            other => panic!("client cannot write: {other:?}"),
        }
    }

    fn handshake(c: &mut Client, s: &mut Server, chunk: usize) {
        // The client speaks first.
        c.ingest(&mut []).expect("client hello");
        for _ in 0..10 {
            if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
                return;
            }
            transfer(c, s, chunk);
            transfer(s, c, chunk);
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn only_a_tls13_servers_tickets_may_wait_for_the_first_response() {
        for (version, may_wait) in [
            (&rustls::version::TLS13, true),
            (&rustls::version::TLS12, false),
        ] {
            let (mut c, mut s) = pair_with(&[version]);
            c.ingest(&mut []).expect("client hello");
            // Hello, the server's flight, then the client's last flight.
            transfer(&mut c, &mut s, 1 << 20);
            assert!(!s.queued_flight_may_wait(), "{version:?}: mid-handshake");
            transfer(&mut s, &mut c, 1 << 20);
            transfer(&mut c, &mut s, 1 << 20);
            assert!(!s.is_handshaking(), "{version:?}: server done");
            assert!(
                s.wants_write(),
                "{version:?}: the server's last flight is queued"
            );
            assert_eq!(s.queued_flight_may_wait(), may_wait, "{version:?}");
            assert!(!c.queued_flight_may_wait(), "{version:?}: never a client's");
            // Delivered, the handshake is complete on both sides.
            transfer(&mut s, &mut c, 1 << 20);
            assert!(!c.is_handshaking() && !s.queued_flight_may_wait());
        }
    }

    #[test]
    fn a_key_update_the_client_asks_for_is_answered_and_traffic_goes_on() {
        let (mut c, mut s) = pair();
        handshake(&mut c, &mut s, 1 << 20);
        for round in 0..3 {
            // The client refreshes its keys and asks the server to do the
            // same (`update_requested`); its KeyUpdate goes out with the
            // next record, in one read for the server: a handshake message
            // and application data together.
            ask_for_key_update(&mut c);
            assert_eq!(deliver(&mut c, &mut s, b"ping"), b"ping", "round {round}");
            // The server's answer carries its own KeyUpdate first: the
            // client reads the reply only if both sides moved on.
            assert_eq!(deliver(&mut s, &mut c, b"pong"), b"pong", "round {round}");
        }
    }

    #[test]
    fn handshake_completes_when_records_arrive_one_byte_at_a_time() {
        let (mut c, mut s) = pair();
        handshake(&mut c, &mut s, 1);
        assert_eq!(
            s.conn().protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        assert_eq!(s.conn().server_name(), Some("localhost"));
        assert!(!s.holds_input() && !c.holds_input());
    }

    #[test]
    fn plaintext_round_trips_through_arbitrary_fragmentation() {
        for chunk in [1, 2, 5, 17, 1000, 16_389, 100_000] {
            let (mut c, mut s) = pair();
            handshake(&mut c, &mut s, chunk);
            let msg: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
            let mut got = Vec::new();
            let mut plain = vec![0u8; 4096];
            let mut sent = 0;
            c.set_send_limit(20_000);
            while sent < msg.len() {
                sent += c.write_plaintext(&msg[sent..]).expect("write");
                let mut wire = Vec::new();
                c.take_output(&mut wire);
                for piece in wire.chunks_mut(chunk) {
                    s.ingest(piece).expect("ingest");
                    while let Some(k) = s.read_plaintext(&mut plain).expect("read") {
                        assert!(k > 0);
                        got.extend_from_slice(&plain[..k]);
                    }
                }
            }
            assert_eq!(got, msg, "chunk {chunk}");
            assert!(!s.holds_input(), "chunk {chunk}");
        }
    }

    #[test]
    fn queued_records_are_written_over_stale_pool_bytes_and_taken_out_exactly() {
        // A pooled buffer comes back holding an earlier connection's bytes.
        crate::io::give_write_buf(vec![b'X'; 1000]);
        let mut o = OutBuf::default();
        let wrote = |fill: u8, n: usize| {
            move |dst: &mut [u8]| -> Result<usize, ()> {
                dst[..n].fill(fill);
                Ok(n)
            }
        };
        o.write_tail(600, wrote(b'a', 10), |_| None).expect("write");
        assert_eq!(o.buf.len(), 1000, "the stale bytes were reused, not zeroed");
        // Asked-for space past the stale bytes is added (zeroed).
        o.write_tail(1200, wrote(b'b', 5), |_| None).expect("write");
        assert_eq!(o.buf.len(), 10 + 1200);
        // A refusal keeps what was queued.
        assert!(o.write_tail(8, |_| Err(()), |_| None).is_err());
        assert_eq!(o.as_slice(), b"aaaaaaaaaabbbbb");
        let v = o.take();
        assert_eq!(v, b"aaaaaaaaaabbbbb", "exactly the records, nothing stale");
        assert!(o.is_empty() && o.buf.capacity() == 0);
        // The write pool hands others an empty buffer whatever it holds.
        crate::io::give_write_buf(v);
        assert!(crate::io::take_write_buf().is_empty());
    }

    #[test]
    fn send_limit_bounds_the_queued_records() {
        let (mut c, mut s) = pair();
        handshake(&mut c, &mut s, 4096);
        s.set_send_limit(10_000);
        let big = vec![7u8; 50_000];
        let n = s.write_plaintext(&big).expect("write");
        assert!(n > 0 && n <= 10_000, "{n}");
        assert_eq!(s.write_plaintext(&big[n..]).expect("full"), 0);
        let mut wire = Vec::new();
        s.take_output(&mut wire);
        assert!(wire.len() <= 10_000, "{}", wire.len());
        assert!(s.write_plaintext(&big[n..]).expect("room again") > 0);
    }

    #[test]
    fn records_for_the_default_limit_fit_a_pooled_write_buffer() {
        let (mut c, mut s) = pair();
        handshake(&mut c, &mut s, 4096);
        s.set_send_limit(crate::tls::stream::DEFAULT_SEND_LIMIT);
        // A small flight first (as the tickets before a response), then a
        // large body: the buffer must not outgrow what the pool keeps.
        s.write_plaintext(b"HTTP/1.1 200 OK\r\n\r\n").expect("head");
        let body = vec![1u8; 1 << 20];
        let n = s.write_plaintext(&body).expect("body");
        assert!(n > 200 * 1024, "{n}");
        assert!(s.out.len() <= crate::tls::stream::DEFAULT_SEND_LIMIT);
        assert!(
            s.out.capacity() <= 256 * 1024,
            "capacity {} would not be kept by the write pool",
            s.out.capacity()
        );
    }

    #[test]
    fn garbage_input_is_an_error_and_queues_an_alert() {
        let (_c, mut s) = pair();
        let err = s
            .ingest(&mut b"\x99\x03\x03\x00\x10 not a TLS record".to_vec())
            .unwrap_err();
        assert!(matches!(err, rustls::Error::InvalidMessage(_)), "{err:?}");
        let mut out = Vec::new();
        s.take_output(&mut out);
        assert_eq!(out.first(), Some(&0x15), "alert record expected");
        assert!(!s.peer_spoke_plain_http());
    }

    #[test]
    fn a_proxy_header_in_place_of_a_hello_is_recognised_and_gets_no_answer() {
        let v1 = &b"PROXY TCP4 192.0.2.1 192.0.2.2 5000 443\r\n\x16\x03\x01"[..];
        let v2 = &b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c"[..];
        for header in [v1, v2] {
            let (_c, mut s) = pair();
            // In pieces, the first shorter than a record header.
            let mut h = header.to_vec();
            let (a, b) = h.split_at_mut(3);
            let _ = s.ingest(a).and_then(|_| s.ingest(b)).unwrap_err();
            assert!(s.peer_sent_proxy_header(), "{header:?}");
            assert!(
                !s.peer_spoke_plain_http(),
                "not taken for HTTP (`PROXY ` looks like a method)"
            );
            let mut out = Vec::new();
            s.take_output(&mut out);
            assert!(out.is_empty(), "nothing answered: {out:?}");
        }
        let (_c, mut s) = pair();
        let _ = s.ingest(&mut b"GET / HTTP/1.1\r\n".to_vec()).unwrap_err();
        assert!(!s.peer_sent_proxy_header());
    }

    #[test]
    fn plain_http_gets_a_400_saying_this_is_a_tls_port() {
        for req in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"POST /api HTTP/1.1\r\n",
            b"OPTIONS * HTTP/1.1\r\n",
        ] {
            let (_c, mut s) = pair();
            // In pieces, the first shorter than a record header.
            let mut req = req.to_vec();
            let (a, b) = req.split_at_mut(3);
            s.ingest(a).expect("too short to judge");
            let err = s.ingest(b).unwrap_err();
            assert!(matches!(err, rustls::Error::InvalidMessage(_)), "{err:?}");
            assert!(s.peer_spoke_plain_http());
            let mut out = Vec::new();
            s.take_output(&mut out);
            let text = String::from_utf8(out).expect("text");
            assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
            let (head, body) = text.split_once("\r\n\r\n").expect("head");
            assert!(
                head.contains(&format!("Content-Length: {}", body.len())),
                "{head}"
            );
            assert!(head.contains("Connection: close"), "{head}");
            assert!(body.contains("TLS port"), "{body}");
        }
    }

    #[test]
    fn looks_like_http_needs_a_method_and_a_space() {
        assert!(looks_like_http(b"GET / HTTP/1.0"));
        assert!(looks_like_http(b"CONNECT a:443 HTTP/1.1"));
        assert!(!looks_like_http(b"\x16\x03\x01\x02\x00"));
        assert!(!looks_like_http(b"GE"));
        assert!(!looks_like_http(b"get / HTTP/1.1"));
        assert!(!looks_like_http(b"GETTINGLONG / HTTP/1.1"));
    }

    /// Reads the plaintext alerts in `out`: (level, description) pairs.
    fn alerts(out: &[u8]) -> Vec<(u8, u8)> {
        let mut v = Vec::new();
        let mut rest = out;
        while let [typ, _, _, hi, lo, tail @ ..] = rest {
            let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
            if *typ == 0x15 && n == 2 {
                v.push((tail[0], tail[1]));
            }
            rest = &tail[n..];
        }
        v
    }

    #[test]
    fn errors_rustls_sends_no_alert_for_get_the_alert_they_imply() {
        // More than four warning alerts (user_canceled) before the hello.
        let (_c, mut s) = pair();
        let mut warnings: Vec<u8> = [0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 90].repeat(6);
        assert!(s.ingest(&mut warnings).is_err());
        let mut out = Vec::new();
        s.take_output(&mut out);
        assert_eq!(alerts(&out), vec![(2, 10)], "unexpected_message");

        // A record of another type inside a fragmented ClientHello.
        let (mut c, mut s) = pair();
        c.ingest(&mut []).expect("hello");
        let mut hello = Vec::new();
        c.take_output(&mut hello);
        let body = hello[5..].to_vec();
        let mut wire = Vec::new();
        let (one, two) = body.split_at(20);
        wire.extend_from_slice(&[0x16, 0x03, 0x01, 0x00, one.len() as u8]);
        wire.extend_from_slice(one);
        wire.extend_from_slice(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 90]);
        wire.extend_from_slice(&[0x16, 0x03, 0x01]);
        wire.extend_from_slice(&(two.len() as u16).to_be_bytes());
        wire.extend_from_slice(two);
        assert!(s.ingest(&mut wire).is_err());
        let mut out = Vec::new();
        s.take_output(&mut out);
        assert_eq!(alerts(&out), vec![(2, 10)], "unexpected_message");

        // A handshake message announced over 64 KiB.
        let (_c, mut s) = pair();
        let mut big = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x01, 0x11, 0x70];
        big.resize(5 + 0x4000, 0);
        assert!(s.ingest(&mut big).is_err());
        let mut out = Vec::new();
        s.take_output(&mut out);
        assert_eq!(alerts(&out), vec![(2, 50)], "decode_error");
    }

    #[test]
    fn implied_alerts_follow_the_error_kind() {
        use rustls::{AlertDescription as A, Error as E, PeerMisbehaved as P};
        let cases = [
            (
                E::PeerMisbehaved(P::IllegalTlsInnerPlaintext),
                A::UnexpectedMessage,
            ),
            (
                E::PeerMisbehaved(P::TooManyEmptyFragments),
                A::UnexpectedMessage,
            ),
            (
                E::InvalidMessage(rustls::InvalidMessage::HandshakePayloadTooLarge),
                A::DecodeError,
            ),
            (E::NoCertificatesPresented, A::HandshakeFailure),
            (E::DecryptError, A::BadRecordMac),
        ];
        for (e, a) in cases {
            assert_eq!(implied_alert(&e), Some(a), "{e:?}");
        }
        assert_eq!(implied_alert(&E::AlertReceived(A::HandshakeFailure)), None);
    }

    #[test]
    fn an_endless_partial_message_is_refused() {
        let (_c, mut s) = pair();
        // A handshake record header announcing 16 KiB, then handshake
        // messages announcing 16 MiB: rustls waits for more; we stop it.
        let mut first = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff];
        first.resize(5 + 0x4000, 0);
        let mut res = s.ingest(&mut first);
        for _ in 0..10 {
            if res.is_err() {
                break;
            }
            let mut more = vec![0x16, 0x03, 0x03, 0x40, 0x00];
            more.resize(5 + 0x4000, 0);
            res = s.ingest(&mut more);
        }
        assert!(res.is_err(), "held {} bytes", s.held.len());
    }

    #[test]
    fn eof_without_close_notify_reads_as_unexpected_eof() {
        let (mut c, mut s) = pair();
        handshake(&mut c, &mut s, 4096);
        s.ingest_eof().expect("eof");
        let mut buf = [0u8; 16];
        let err = s.read_plaintext(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn close_notify_reads_as_clean_end() {
        let (mut c, mut s) = pair();
        handshake(&mut c, &mut s, 4096);
        c.send_close_notify();
        transfer(&mut c, &mut s, 4096);
        let mut buf = [0u8; 16];
        assert_eq!(s.read_plaintext(&mut buf).expect("read"), Some(0));
        assert!(s.peer_has_closed());
    }

    #[test]
    fn session_errors_travel_in_rustls_errors_and_come_back_by_variant() {
        let e: rustls::Error = SessionError::UnexpectedEarlyData.into();
        assert!(matches!(
            SessionError::of(&e),
            Some(SessionError::UnexpectedEarlyData)
        ));
        assert_eq!(e.to_string(), "other error: unexpected early data");
        // Words alone are not a session error.
        let general = rustls::Error::General("unexpected early data".into());
        assert!(SessionError::of(&general).is_none());
    }

    #[test]
    fn append_plaintext_takes_up_to_max_then_reports_the_clean_end() {
        let (mut c, mut s) = pair();
        handshake(&mut c, &mut s, 4096);
        let mut out = Vec::new();
        assert_eq!(s.append_plaintext(&mut out, 10).expect("empty"), None);
        c.write_plaintext(b"hello world, twice: hello world")
            .expect("write");
        c.send_close_notify();
        transfer(&mut c, &mut s, 4096);
        assert_eq!(s.append_plaintext(&mut out, 10).expect("some"), Some(10));
        assert_eq!(out, b"hello worl");
        out.clear();
        assert_eq!(s.append_plaintext(&mut out, 100).expect("rest"), Some(21));
        assert_eq!(out, b"d, twice: hello world");
        assert_eq!(s.append_plaintext(&mut out, 100).expect("end"), Some(0));
    }

    /// A TLS 1.3 client resuming with `early` bytes of 0-RTT data (in
    /// records of at most `record` bytes) against a server that declines
    /// it; the client's bytes reach the server `chunk` bytes at a time.
    /// Returns whether the handshake completed and 1-RTT data got through.
    fn rejected_early_data(early: usize, record: usize, chunk: usize) -> Result<(), String> {
        use std::io::{Read, Write};
        let (server_cfg, cert) = crate::tls::testing::server_config_and_cert();
        // A twin config that allows 0-RTT in the tickets it issues (rustls
        // does only with stateful tickets); the server under test does not
        // (whether it resumes or not, it declines the 0-RTT data).
        #[derive(Debug)]
        struct NoTickets;
        impl rustls::server::ProducesTickets for NoTickets {
            fn enabled(&self) -> bool {
                false
            }
            fn lifetime(&self) -> u32 {
                0
            }
            fn encrypt(&self, _: &[u8]) -> Option<Vec<u8>> {
                None
            }
            fn decrypt(&self, _: &[u8]) -> Option<Vec<u8>> {
                None
            }
        }
        let mut issuing = (*server_cfg).clone();
        issuing.max_early_data_size = 16_384;
        issuing.ticketer = Arc::new(NoTickets);
        let issuing = Arc::new(issuing);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("root");
        let mut ccfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        ccfg.enable_early_data = true;
        ccfg.max_fragment_size = Some(record + 5);
        let ccfg = Arc::new(ccfg);
        let name: rustls::pki_types::ServerName<'static> = "localhost".try_into().expect("name");
        // 1. A full handshake with the issuing twin, for a ticket.
        let mut c = rustls::ClientConnection::new(ccfg.clone(), name.clone()).expect("client");
        let mut srv = rustls::ServerConnection::new(issuing).expect("server");
        for _ in 0..10 {
            let mut wire = Vec::new();
            c.write_tls(&mut wire).expect("write");
            srv.read_tls(&mut &wire[..]).expect("read");
            srv.process_new_packets().expect("issuing server");
            wire.clear();
            srv.write_tls(&mut wire).expect("write");
            c.read_tls(&mut &wire[..]).expect("read");
            c.process_new_packets().expect("client");
            if !c.is_handshaking() && !srv.is_handshaking() && !srv.wants_write() {
                break;
            }
        }
        // 2. Resume against the server under test with 0-RTT data.
        let mut c = rustls::ClientConnection::new(ccfg, name).expect("client");
        let payload: Vec<u8> = (0..early).map(|i| (i % 251) as u8).collect();
        let mut ed = c.early_data().ok_or("no early data offered")?;
        let n = ed.write(&payload).map_err(|e| e.to_string())?;
        if n != early {
            return Err(format!("client took {n} of {early} early bytes"));
        }
        let mut s = Server::new(ServerConn::new(server_cfg).expect("server"));
        let mut got = Vec::new();
        for _ in 0..20 {
            let mut wire = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut wire).map_err(|e| e.to_string())?;
            }
            for piece in wire.chunks_mut(chunk) {
                s.ingest(piece).map_err(|e| format!("server: {e:?}"))?;
            }
            let mut plain = [0u8; 256];
            while let Some(k) = s.read_plaintext(&mut plain).map_err(|e| e.to_string())? {
                got.extend_from_slice(&plain[..k]);
                if k == 0 {
                    break;
                }
            }
            if got == b"after" {
                assert!(!c.is_early_data_accepted());
                return Ok(());
            }
            let mut back = Vec::new();
            s.take_output(&mut back);
            c.read_tls(&mut &back[..]).map_err(|e| e.to_string())?;
            c.process_new_packets()
                .map_err(|e| format!("client: {e:?}"))?;
            if !c.is_handshaking() && got.is_empty() {
                c.writer().write_all(b"after").map_err(|e| e.to_string())?;
            }
            let _ = c.reader().read(&mut [0u8; 64]);
        }
        Err("handshake did not finish".into())
    }

    #[test]
    fn rejected_early_data_is_skipped_once_however_it_arrives() {
        // 16,000 bytes: near the 16 KiB rustls skips. Whole records, records
        // split over reads, one byte at a time, several record sizes.
        for (early, record, chunk) in [
            (5_000, 16_384, 1 << 20),
            (6_000, 16_384, 1 << 20),
            (16_000, 16_384, 1 << 20),
            (6_000, 1_000, 1 << 20),
            (16_000, 4_000, 1 << 20),
            (16_000, 16_384, 1_000),
            (16_000, 2_000, 777),
            (6_000, 1_000, 1),
        ] {
            if let Err(e) = rejected_early_data(early, record, chunk) {
                panic!("early {early}, records of {record}, reads of {chunk}: {e}");
            }
        }
    }

    #[test]
    fn writing_before_the_handshake_is_refused_not_lost() {
        let (_c, mut s) = pair();
        let err = s.write_plaintext(b"early").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotConnected);
    }
    /// A TLS 1.3 pair whose client can be taken over by a
    /// [`records::RawPeer`] once the handshake is over.
    fn pair_for_raw_records() -> (Client, Server) {
        let (server_cfg, cert) = crate::tls::testing::server_config_and_cert();
        let mut client_cfg = client_config(
            cert,
            rustls::crypto::aws_lc_rs::default_provider(),
            &[&rustls::version::TLS13],
        );
        client_cfg.enable_secret_extraction = true;
        let (mut c, mut s) = pair_of(client_cfg, server_cfg);
        s.set_hand_over_after(0);
        handshake(&mut c, &mut s, 1 << 20);
        hand_over(&mut c, &mut s);
        (c, s)
    }

    /// The server writes (the hand-over comes after its first write, with
    /// `set_hand_over_after(0)`), the client reads it.
    fn hand_over(c: &mut Client, s: &mut Server) {
        assert!(!s.records_handed_over());
        s.write_plaintext(b"hi").expect("server write");
        assert!(s.records_handed_over());
        transfer(s, c, 1 << 20);
        let mut buf = [0u8; 8];
        assert_eq!(c.read_plaintext(&mut buf).expect("client read"), Some(2));
    }

    /// The server's queued records, opened by `peer`.
    fn server_says(s: &mut Server, peer: &mut records::RawPeer) -> Vec<(u8, Vec<u8>)> {
        let mut wire = s.take_out();
        peer.open_all(&mut wire)
    }

    #[test]
    fn a_tls13_servers_records_are_its_own_after_the_handshake_or_32_records_and_data_flows() {
        // 37 records each way, the server's first: the hand-over comes
        // after its first write (0) or in the middle of its 64 KiB writes
        // (the default, 32 records); the client's come after it.
        let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        for (chunk, after) in [
            (1, 0),
            (7, 0),
            (1000, 0),
            (1 << 20, 0),
            (7, 32),
            (1 << 20, 32),
        ] {
            let (mut c, mut s) = pair();
            s.set_hand_over_after(after);
            s.set_send_limit(64 * 1024);
            handshake(&mut c, &mut s, chunk);
            assert!(!s.records_handed_over(), "chunk {chunk}, after {after}");
            assert_eq!(
                s.conn().protocol_version(),
                Some(rustls::ProtocolVersion::TLSv1_3)
            );
            assert!(s.conn().negotiated_cipher_suite().is_some());
            assert_eq!(s.conn().server_name(), Some("localhost"));
            for (from_client, label) in [(false, "to client"), (true, "to server")] {
                let mut sent = 0;
                let mut got = Vec::new();
                let mut buf = vec![0u8; 70_000];
                let mut handed_at = None;
                while got.len() < big.len() {
                    if sent < big.len() {
                        sent += if from_client {
                            c.write_plaintext(&big[sent..])
                        } else {
                            s.write_plaintext(&big[sent..])
                        }
                        .expect("write");
                        if handed_at.is_none() && s.records_handed_over() {
                            handed_at = Some(sent);
                        }
                    }
                    if from_client {
                        transfer(&mut c, &mut s, chunk.max(512));
                        while let Some(n) = s.read_plaintext(&mut buf).expect("read") {
                            got.extend_from_slice(&buf[..n]);
                        }
                    } else {
                        transfer(&mut s, &mut c, chunk.max(512));
                        while let Some(n) = c.read_plaintext(&mut buf).expect("read") {
                            got.extend_from_slice(&buf[..n]);
                        }
                    }
                }
                assert!(
                    got == big,
                    "chunk {chunk}, {label}: the bytes arrive as sent"
                );
                if !from_client {
                    // In the middle of the stream, with records sealed both
                    // by rustls and by the session.
                    let at = handed_at.expect("handed over");
                    assert!(at < big.len(), "chunk {chunk}, after {after}: at {at}");
                    assert_eq!(at <= 64 * 1024, after == 0, "chunk {chunk}: at {at}");
                }
                assert!(
                    s.records_handed_over(),
                    "chunk {chunk}, {label}: handed over"
                );
            }
            s.send_close_notify();
            transfer(&mut s, &mut c, 1 << 20);
            assert_eq!(c.read_plaintext(&mut [0u8; 8]).expect("clean end"), Some(0));
        }
    }

    #[test]
    fn every_tls13_suite_is_sealed_and_opened_as_rustls_does() {
        use rustls::crypto::aws_lc_rs::{cipher_suite as cs, default_provider};
        for suite in [
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
        ] {
            let (server_cfg, cert) = crate::tls::testing::server_config_and_cert();
            let provider = rustls::crypto::CryptoProvider {
                cipher_suites: vec![suite],
                ..default_provider()
            };
            let client_cfg = client_config(cert, provider, &[&rustls::version::TLS13]);
            let (mut c, mut s) = pair_of(client_cfg, server_cfg);
            s.set_hand_over_after(0);
            handshake(&mut c, &mut s, 1 << 20);
            hand_over(&mut c, &mut s);
            assert_eq!(s.conn().negotiated_cipher_suite(), Some(suite));
            let data: Vec<u8> = (0..40_000u32).map(|i| (i % 253) as u8).collect();
            for round in 0..2 {
                if round == 1 {
                    // The client asks for new keys both ways.
                    ask_for_key_update(&mut c);
                }
                let got = deliver(&mut c, &mut s, &data);
                assert!(got == data, "{suite:?} round {round}: to the server");
                let got = deliver(&mut s, &mut c, &data);
                assert!(got == data, "{suite:?} round {round}: to the client");
            }
        }
    }

    #[test]
    fn a_key_update_rustls_owes_the_client_goes_out_before_the_hand_over() {
        // The client's KeyUpdate asks for ours and is read by rustls; the
        // threshold is reached on that read, but rustls holds its answer
        // until it seals data: the hand-over waits for that write.
        let (mut c, mut s) = pair();
        s.set_hand_over_after(1);
        handshake(&mut c, &mut s, 1 << 20);
        let mut buf = [0u8; 64];
        for round in 0..3 {
            ask_for_key_update(&mut c);
            c.write_plaintext(b"ping").expect("client write");
            transfer(&mut c, &mut s, 1 << 20);
            assert_eq!(s.records_handed_over(), round > 0, "round {round}");
            assert_eq!(s.read_plaintext(&mut buf).expect("server read"), Some(4));
            s.write_plaintext(b"pong").expect("server write");
            assert!(s.records_handed_over(), "round {round}");
            transfer(&mut s, &mut c, 1 << 20);
            assert_eq!(c.read_plaintext(&mut buf).expect("client read"), Some(4));
            assert_eq!(&buf[..4], b"pong", "round {round}");
        }
    }

    #[test]
    fn tls12_and_a_config_without_secret_extraction_stay_with_rustls() {
        let (mut c, mut s) = pair_with(&[&rustls::version::TLS12]);
        s.set_hand_over_after(0);
        handshake(&mut c, &mut s, 1 << 20);
        c.write_plaintext(b"ping").expect("write");
        transfer(&mut c, &mut s, 1 << 20);
        s.write_plaintext(b"pong").expect("write");
        assert!(!s.records_handed_over());
        let (server_cfg, cert) = crate::tls::testing::server_config_and_cert();
        let mut cfg = (*server_cfg).clone();
        cfg.enable_secret_extraction = false;
        let (mut c, mut s) = pair_on(Arc::new(cfg), cert, &[&rustls::version::TLS13]);
        s.set_hand_over_after(0);
        handshake(&mut c, &mut s, 1 << 20);
        c.write_plaintext(b"ping").expect("write");
        transfer(&mut c, &mut s, 1 << 20);
        s.write_plaintext(b"pong").expect("write");
        assert!(!s.records_handed_over());
        let mut buf = [0u8; 8];
        assert_eq!(s.read_plaintext(&mut buf).expect("read"), Some(4));
    }

    #[test]
    fn a_tampered_record_is_refused_with_bad_record_mac_and_the_client_reads_the_alert() {
        let (mut c, mut s) = pair();
        s.set_hand_over_after(0);
        handshake(&mut c, &mut s, 1 << 20);
        hand_over(&mut c, &mut s);
        c.write_plaintext(b"hello").expect("write");
        let mut wire = c.take_out();
        let last = wire.len() - 1;
        wire[last] ^= 1;
        let err = s.ingest(&mut wire).expect_err("tampered");
        assert_eq!(err, rustls::Error::DecryptError);
        let mut alert = s.take_out();
        assert_eq!(
            c.ingest(&mut alert).err(),
            Some(rustls::Error::AlertReceived(AlertDescription::BadRecordMac))
        );
    }

    #[test]
    fn the_write_key_moves_on_before_its_confidentiality_limit() {
        let (c, mut s) = pair_for_raw_records();
        let mut peer = records::RawPeer::new(c);
        // Two records went under this key already (the tickets, in one,
        // and the first write's): a KeyUpdate first, then one before every
        // second record.
        s.tls.records().expect("handed over").set_tx_limit(2);
        let data = vec![7u8; 5 * records::MAX_FRAGMENT];
        assert_eq!(s.write_plaintext(&data).expect("write"), data.len());
        let got = server_says(&mut s, &mut peer);
        let types: Vec<u8> = got.iter().map(|(t, _)| *t).collect();
        assert_eq!(types, [22, 23, 23, 22, 23, 23, 22, 23]);
        let body: Vec<u8> = got
            .into_iter()
            .filter(|(t, _)| *t == 23)
            .flat_map(|(_, b)| b)
            .collect();
        assert!(body == data);
    }

    #[test]
    fn what_a_client_may_not_send_after_the_handshake_gets_the_alert_it_implies() {
        use rustls::AlertDescription as A;
        let big = vec![1u8; records::MAX_FRAGMENT + 1];
        // (what, the client's records, the server's alert; None: none).
        type Case = (&'static str, Vec<(u8, Vec<u8>, usize)>, Option<A>);
        let cases: Vec<Case> = vec![
            (
                "a ClientHello",
                vec![(22, vec![1, 0, 0, 0], 0)],
                Some(A::UnexpectedMessage),
            ),
            (
                "a KeyUpdate with more after it",
                vec![(22, vec![24, 0, 0, 1, 0, 24], 0)],
                Some(A::UnexpectedMessage),
            ),
            (
                "a KeyUpdate asking 2",
                vec![(22, vec![24, 0, 0, 1, 2], 0)],
                Some(A::IllegalParameter),
            ),
            (
                "a short KeyUpdate",
                vec![(22, vec![24, 0, 0], 0)],
                Some(A::DecodeError),
            ),
            (
                "an empty handshake record",
                vec![(22, vec![], 0)],
                Some(A::DecodeError),
            ),
            (
                "a ChangeCipherSpec inside",
                vec![(20, vec![1], 0)],
                Some(A::UnexpectedMessage),
            ),
            (
                "an unknown content type",
                vec![(99, vec![1], 0)],
                Some(A::UnexpectedMessage),
            ),
            (
                "a warning alert",
                vec![(21, vec![1, 40], 0)],
                Some(A::DecodeError),
            ),
            (
                "an alert of three bytes",
                vec![(21, vec![2, 40, 0], 0)],
                Some(A::DecodeError),
            ),
            (
                "an alert of unknown level",
                vec![(21, vec![3, 40], 0)],
                Some(A::IllegalParameter),
            ),
            ("a fatal alert", vec![(21, vec![2, 40], 0)], None),
            (
                "16 KiB + 1 of data",
                vec![(23, big.clone(), 0)],
                Some(A::RecordOverflow),
            ),
            (
                "33 empty records",
                vec![(23, vec![], 0); 33],
                Some(A::UnexpectedMessage),
            ),
            (
                "five user_canceled",
                vec![(21, vec![1, 90], 0); 5],
                Some(A::UnexpectedMessage),
            ),
            (
                "33 KeyUpdates in a row",
                vec![(22, vec![24, 0, 0, 1, 0], 0); 33],
                Some(A::UnexpectedMessage),
            ),
        ];
        for (what, recs, alert) in cases {
            let (c, mut s) = pair_for_raw_records();
            let mut peer = records::RawPeer::new(c);
            let mut wire = Vec::new();
            for (typ, content, pad) in &recs {
                wire.extend(peer.seal(*typ, content, *pad));
                if *typ == 22 && content.first() == Some(&24) && content.len() == 5 {
                    peer.next_tx_key();
                }
            }
            let err = s.ingest(&mut wire).expect_err(what);
            let said = server_says(&mut s, &mut peer);
            let expected: Vec<(u8, Vec<u8>)> = alert
                .map(|a| (21, vec![2, u8::from(a)]))
                .into_iter()
                .collect();
            assert_eq!(said, expected, "{what}: {err:?}");
        }
    }

    #[test]
    fn what_a_client_may_send_after_the_handshake_is_taken() {
        let (c, mut s) = pair_for_raw_records();
        let mut peer = records::RawPeer::new(c);
        let mut wire = Vec::new();
        // Padding, an empty record, a user_canceled, a KeyUpdate that asks
        // for ours (what follows is under the new key), a record split
        // over reads.
        wire.extend(peer.seal(23, b"one ", 100));
        wire.extend(peer.seal(23, b"", 0));
        wire.extend(peer.seal(21, &[1, 90], 0));
        wire.extend(peer.seal(22, &[24, 0, 0, 1, 1], 0));
        peer.next_tx_key();
        wire.extend(peer.seal(23, b"two ", 0));
        wire.extend(peer.seal(23, b"three", 3));
        let cut = wire.len() - 10;
        let (a, b) = wire.split_at_mut(cut);
        s.ingest(a).expect("first part");
        s.ingest(b).expect("second part");
        let mut buf = [0u8; 64];
        let n = s.read_plaintext(&mut buf).expect("read").expect("data");
        assert_eq!(&buf[..n], b"one two three");
        // The server answered the KeyUpdate; its next record is under its
        // new key, which the client opens.
        s.write_plaintext(b"reply").expect("write");
        let said = server_says(&mut s, &mut peer);
        assert_eq!(said, [(22, vec![24, 0, 0, 1, 0]), (23, b"reply".to_vec())]);
        // close_notify ends the client's side; what follows is ignored.
        let mut wire = peer.seal(21, &[1, 0], 0);
        wire.extend(peer.seal(23, b"late", 0));
        s.ingest(&mut wire).expect("close_notify");
        assert_eq!(s.read_plaintext(&mut buf).expect("clean end"), Some(0));
        assert!(s.peer_closed_cleanly());
    }

    #[test]
    fn an_oversized_record_header_is_refused_before_its_body_arrives() {
        let (c, mut s) = pair_for_raw_records();
        let mut peer = records::RawPeer::new(c);
        let mut header = [23u8, 3, 3, 0x41, 0x01]; // 16,641 bytes
        let err = s.ingest(&mut header).expect_err("oversized");
        assert_eq!(err, rustls::Error::PeerSentOversizedRecord);
        let said = server_says(&mut s, &mut peer);
        assert_eq!(
            said,
            [(21, vec![2, u8::from(AlertDescription::RecordOverflow)])]
        );
        // A record whose outer type is not application data.
        let (c, mut s) = pair_for_raw_records();
        let mut peer = records::RawPeer::new(c);
        let mut plain_alert = [21u8, 3, 3, 0, 2, 2, 40];
        s.ingest(&mut plain_alert).expect_err("unprotected record");
        let said = server_says(&mut s, &mut peer);
        assert_eq!(
            said,
            [(21, vec![2, u8::from(AlertDescription::UnexpectedMessage)])]
        );
    }
}

/// rustls's own behaviour, the reason for [`note_decrypt`]: a canary that
/// fails once rustls counts skipped 0-RTT records as processed.
#[cfg(test)]
mod upstream_repro {
    use std::sync::Arc;

    /// Pure rustls (buffered API, 4 KiB reads): a server that declines
    /// 0-RTT data fails the handshake with 9,000 bytes of it (under the
    /// 16 KiB it should skip), because each `process_new_packets` tries the
    /// skipped records again.
    #[test]
    fn rustls_alone_fails_on_9000_bytes_of_declined_early_data() {
        use std::io::Write;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mk = |early: u32| {
            let mut c = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone()], key.clone_key())
                .unwrap();
            c.max_early_data_size = early;
            Arc::new(c)
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let mut ccfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        ccfg.enable_early_data = true;
        let ccfg = Arc::new(ccfg);
        let pump = |c: &mut rustls::ClientConnection, s: &mut rustls::ServerConnection| {
            for _ in 0..6 {
                let mut w = Vec::new();
                while c.wants_write() {
                    c.write_tls(&mut w).unwrap();
                }
                let mut r = &w[..];
                while !r.is_empty() {
                    s.read_tls(&mut r).unwrap();
                    s.process_new_packets()?;
                }
                w.clear();
                s.write_tls(&mut w).unwrap();
                c.read_tls(&mut &w[..]).unwrap();
                c.process_new_packets().unwrap();
            }
            Ok::<_, rustls::Error>(())
        };
        // A ticket allowing 0-RTT, from a server that allows it.
        let mut c =
            rustls::ClientConnection::new(ccfg.clone(), "localhost".try_into().unwrap()).unwrap();
        let mut s = rustls::ServerConnection::new(mk(16_384)).unwrap();
        pump(&mut c, &mut s).unwrap();
        // The same client, 9,000 bytes of 0-RTT data, a server that declines.
        let mut c = rustls::ClientConnection::new(ccfg, "localhost".try_into().unwrap()).unwrap();
        c.early_data().unwrap().write_all(&[7u8; 9000]).unwrap();
        let mut s = rustls::ServerConnection::new(mk(0)).unwrap();
        let res = pump(&mut c, &mut s);
        assert!(
            matches!(res, Err(rustls::Error::DecryptError)),
            "rustls now skips declined 0-RTT records once ({res:?}): the workaround \
             (`note_decrypt`, tls/trial.rs) can go"
        );
    }
}
