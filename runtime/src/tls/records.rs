//! TLS 1.3 record protection after the handshake (RFC 8446 §5), done by the
//! session itself.
//!
//! Once a TLS 1.3 server connection has finished its handshake, rustls's
//! part is only the record layer: every record it seals is built in a heap
//! buffer of its own and then copied into ours, and every read goes through
//! its message deframer and state machine. [`Records`] does the same work in
//! place: a record is sealed straight into the buffer that goes to the
//! socket, and opened where it arrived. rustls keeps what only it should:
//! the key schedule ([`KernelConnection`], its kTLS interface), asked for the
//! next traffic secret at each KeyUpdate.
//!
//! What this layer must get right, and where:
//! - nonces: each direction's sequence number starts where rustls left it,
//!   grows by one per record and restarts at 0 only with a new key
//!   (`Key::nonce`); the write side refreshes its key (KeyUpdate) before
//!   the suite's confidentiality limit ([`Records::seal`]);
//! - what a client may send once the handshake is over: application data,
//!   alerts and KeyUpdate; anything else is `unexpected_message`
//!   ([`Records::open`]), with rustls's limits on empty records, warning
//!   alerts and KeyUpdates in a row;
//! - the alert each failure implies, sealed under the current key.
//!
//! The session hands a connection over only once rustls has sealed or
//! opened `session::HAND_OVER_AFTER` records on it, right after it sealed
//! application data and with no input held (`Session::maybe_hand_over` says
//! why). TLS 1.2 connections and client connections stay on rustls
//! throughout.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{AlertDescription, ConnectionTrafficSecrets, Error, InvalidMessage, PeerMisbehaved};

/// Largest plaintext in a record (2^14).
pub const MAX_FRAGMENT: usize = 16 * 1024;
/// Largest ciphertext a TLS 1.3 record may carry (2^14 + 256).
const MAX_CIPHERTEXT: usize = MAX_FRAGMENT + 256;
const HEADER: usize = 5;
const TAG: usize = 16;
/// Bytes a record adds to its plaintext: header, content type, tag.
pub const OVERHEAD: usize = HEADER + 1 + TAG;

/// Bytes of a sealed KeyUpdate record.
pub const KEY_UPDATE_LEN: usize = 4 + 1 + OVERHEAD;
/// Bytes of a sealed alert record.
pub const ALERT_LEN: usize = 2 + OVERHEAD;

const APPLICATION_DATA: u8 = 23;
const HANDSHAKE: u8 = 22;
const ALERT: u8 = 21;
const KEY_UPDATE: u8 = 24;

/// rustls's limits on what a peer may repeat (BoringSSL's, in turn).
const EMPTY_RECORDS_IN_A_ROW: u8 = 32;
const KEY_UPDATES_IN_A_ROW: u8 = 32;
const WARNING_ALERTS: u8 = 4;
/// Past this a direction's sequence number is refused (rustls's soft limit).
const SEQ_LIMIT: u64 = 0xffff_ffff_ffff_0000;

/// One direction's key: AEAD key, IV and the sequence number of the next
/// record.
struct Key {
    key: LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl Key {
    fn new(secrets: ConnectionTrafficSecrets, seq: u64) -> Result<Key, Error> {
        let (alg, key, iv) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => return Err(Error::General("unsupported TLS 1.3 cipher".into())),
        };
        let key = UnboundKey::new(alg, key.as_ref())
            .map_err(|_| Error::General("bad TLS 1.3 traffic key".into()))?;
        let iv = <[u8; aead::NONCE_LEN]>::try_from(iv.as_ref())
            .map_err(|_| Error::General("bad TLS 1.3 traffic IV".into()))?;
        Ok(Key {
            key: LessSafeKey::new(key),
            iv,
            seq,
        })
    }

    /// The per-record nonce (RFC 8446 §5.3): the IV XOR the sequence number.
    fn nonce(&self) -> Nonce {
        let mut n = self.iv;
        for (n, s) in n[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        Nonce::assume_unique_for_key(n)
    }
}

/// What a client's record held, once opened.
pub enum Opened {
    /// Application data, in the record's buffer.
    Data {
        /// Where it starts.
        from: usize,
        /// How long it is.
        len: usize,
    },
    /// Nothing for the application (an empty record, a `user_canceled`).
    Nothing,
    /// A KeyUpdate (the read key has moved on); `answer`: the client asked
    /// for ours ([`Records::seal_key_update`]).
    KeyUpdate {
        /// The client asked for ours.
        answer: bool,
    },
    /// `close_notify`.
    CloseNotify,
}

/// A failure and the alert that goes with it (`None`: the peer's own fatal
/// alert, which gets no answer).
pub type Failure = (Error, Option<AlertDescription>);

/// The record layer of one TLS 1.3 server connection after its handshake.
pub struct Records {
    kernel: KernelConnection<ServerConnectionData>,
    tx: Key,
    rx: Key,
    /// Refresh the write key before this many records (the suite's
    /// confidentiality limit).
    tx_limit: u64,
    empty_in_a_row: u8,
    key_updates_left: u8,
    warnings_left: u8,
}

impl Records {
    /// Takes over from rustls: `secrets` and `kernel` as
    /// `dangerous_into_kernel_connection` returned them.
    pub fn new(
        secrets: rustls::ExtractedSecrets,
        kernel: KernelConnection<ServerConnectionData>,
    ) -> Result<Records, Error> {
        let tx_limit = match kernel.negotiated_cipher_suite() {
            rustls::SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
            _ => return Err(Error::General("not a TLS 1.3 connection".into())),
        }
        .min(SEQ_LIMIT);
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        Ok(Records {
            tx: Key::new(tx, tx_seq)?,
            rx: Key::new(rx, rx_seq)?,
            kernel,
            tx_limit,
            empty_in_a_row: 0,
            key_updates_left: KEY_UPDATES_IN_A_ROW,
            warnings_left: WARNING_ALERTS,
        })
    }

    /// Sets the write key's record limit (tests reach it without sealing
    /// millions of records).
    #[cfg(test)]
    pub(crate) fn set_tx_limit(&mut self, limit: u64) {
        self.tx_limit = limit;
    }

    /// Bytes the records for `len` bytes of plaintext may take, with room
    /// for a KeyUpdate before each.
    pub fn sealed_len(len: usize) -> usize {
        let records = len.div_ceil(MAX_FRAGMENT).max(1);
        len + records * (OVERHEAD + KEY_UPDATE_LEN)
    }

    /// Seals one record of content type `typ` holding `plain` (at most
    /// [`MAX_FRAGMENT`] bytes) into the front of `dst`; returns its length.
    /// `dst` must hold `plain.len() + OVERHEAD` bytes.
    fn seal_one(&mut self, typ: u8, plain: &[u8], dst: &mut [u8]) -> Result<usize, Error> {
        let inner = plain.len() + 1;
        let total = HEADER + inner + TAG;
        if plain.len() > MAX_FRAGMENT || dst.len() < total {
            return Err(Error::General("record does not fit".into()));
        }
        if self.tx.seq >= SEQ_LIMIT {
            return Err(Error::EncryptError);
        }
        let [hi, lo] = ((inner + TAG) as u16).to_be_bytes();
        let header = [APPLICATION_DATA, 3, 3, hi, lo];
        let (head, body) = dst[..total].split_at_mut(HEADER);
        head.copy_from_slice(&header);
        let (ciphertext, type_and_tag) = body.split_at_mut(plain.len());
        // Encrypted from where the plaintext is into the record: no copy of
        // it first (the content type goes in as the extra byte).
        let nonce = self.tx.nonce();
        self.tx
            .key
            .seal_out_of_place_scatter(
                nonce,
                Aad::from(header),
                plain,
                ciphertext,
                &[typ],
                type_and_tag,
            )
            .map_err(|_| Error::EncryptError)?;
        self.tx.seq += 1;
        Ok(total)
    }

    /// Our KeyUpdate (RFC 8446 §4.6.3, `update_not_requested`), sealed
    /// under the current write key into `dst` (at least
    /// [`KEY_UPDATE_LEN`] bytes), then the write key moves on.
    pub fn seal_key_update(&mut self, dst: &mut [u8]) -> Result<usize, Error> {
        let msg = [KEY_UPDATE, 0, 0, 1, 0];
        let n = self.seal_one(HANDSHAKE, &msg, dst)?;
        let (_, secrets) = self.kernel.update_tx_secret()?;
        self.tx = Key::new(secrets, 0)?;
        Ok(n)
    }

    /// Seals `plain` as application data records into `dst` (at least
    /// [`sealed_len`](Self::sealed_len) bytes); returns the bytes written.
    /// Before the write key's confidentiality limit, a KeyUpdate goes first
    /// and the key is refreshed (as rustls does).
    pub fn seal(&mut self, plain: &[u8], dst: &mut [u8]) -> Result<usize, Error> {
        self.seal_typed(APPLICATION_DATA, plain, dst)
    }

    /// Seals an alert record (`close_notify` is a warning, the rest fatal).
    pub fn seal_alert(&mut self, alert: AlertDescription, dst: &mut [u8]) -> Result<usize, Error> {
        let level = if alert == AlertDescription::CloseNotify {
            1
        } else {
            2
        };
        self.seal_typed(ALERT, &[level, u8::from(alert)], dst)
    }

    fn seal_typed(&mut self, typ: u8, plain: &[u8], dst: &mut [u8]) -> Result<usize, Error> {
        let mut written = 0;
        let mut chunks = plain.chunks(MAX_FRAGMENT);
        let mut next = chunks.next();
        while let Some(chunk) = next {
            if self.tx.seq >= self.tx_limit {
                written += self.seal_key_update(&mut dst[written..])?;
            }
            written += self.seal_one(typ, chunk, &mut dst[written..])?;
            next = chunks.next();
        }
        Ok(written)
    }

    /// The length of the record at the front of `input`, once all of it has
    /// arrived (`Ok(None)`: wait for more). Fails on what cannot be a TLS
    /// 1.3 record after the handshake.
    pub fn whole_record(input: &[u8]) -> Result<Option<usize>, Failure> {
        let [typ, _, _, hi, lo, ..] = *input else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if typ != APPLICATION_DATA {
            // Every record after the handshake is protected; a
            // ChangeCipherSpec is only allowed during it (RFC 8446 §5).
            let err = if typ == 20 {
                Error::PeerMisbehaved(PeerMisbehaved::IllegalMiddleboxChangeCipherSpec)
            } else {
                Error::InvalidMessage(InvalidMessage::InvalidContentType)
            };
            return Err((err, Some(AlertDescription::UnexpectedMessage)));
        }
        if len > MAX_CIPHERTEXT {
            return Err((
                Error::PeerSentOversizedRecord,
                Some(AlertDescription::RecordOverflow),
            ));
        }
        Ok((input.len() >= HEADER + len).then_some(HEADER + len))
    }

    /// Opens the whole record `rec` (see [`whole_record`](Self::whole_record))
    /// in place and acts on what it holds.
    pub fn open(&mut self, rec: &mut [u8]) -> Result<Opened, Failure> {
        let header: [u8; HEADER] = rec[..HEADER].try_into().map_err(|_| decode_error())?;
        let body = &mut rec[HEADER..];
        if body.len() < TAG + 1 {
            return Err((Error::DecryptError, Some(AlertDescription::BadRecordMac)));
        }
        if self.rx.seq >= SEQ_LIMIT {
            return Err((Error::DecryptError, Some(AlertDescription::BadRecordMac)));
        }
        let nonce = self.rx.nonce();
        let inner = self
            .rx
            .key
            .open_in_place(nonce, Aad::from(header), body)
            .map_err(|_| (Error::DecryptError, Some(AlertDescription::BadRecordMac)))?;
        self.rx.seq += 1;
        // TLSInnerPlaintext: content, the content type, zero padding.
        let Some(at) = inner.iter().rposition(|&b| b != 0) else {
            return Err((
                Error::PeerMisbehaved(PeerMisbehaved::IllegalTlsInnerPlaintext),
                Some(AlertDescription::UnexpectedMessage),
            ));
        };
        if at > MAX_FRAGMENT {
            return Err((
                Error::PeerSentOversizedRecord,
                Some(AlertDescription::RecordOverflow),
            ));
        }
        let typ = inner[at];
        let content = &inner[..at];
        match typ {
            APPLICATION_DATA => {
                if content.is_empty() {
                    if self.empty_in_a_row == EMPTY_RECORDS_IN_A_ROW {
                        return Err((
                            Error::PeerMisbehaved(PeerMisbehaved::TooManyEmptyFragments),
                            Some(AlertDescription::UnexpectedMessage),
                        ));
                    }
                    self.empty_in_a_row += 1;
                    return Ok(Opened::Nothing);
                }
                self.empty_in_a_row = 0;
                self.key_updates_left = KEY_UPDATES_IN_A_ROW;
                Ok(Opened::Data {
                    from: HEADER,
                    len: at,
                })
            }
            ALERT => self.alert(content),
            HANDSHAKE => {
                self.empty_in_a_row = 0;
                let content: [u8; 5] = match content {
                    [KEY_UPDATE, 0, 0, 1, request] => [KEY_UPDATE, 0, 0, 1, *request],
                    [KEY_UPDATE, ..] if content.len() > 5 && content[1..4] == [0, 0, 1] => {
                        // Records after a KeyUpdate in the same record would
                        // be under the old key (RFC 8446 §5.1).
                        return Err((
                            Error::PeerMisbehaved(PeerMisbehaved::KeyEpochWithPendingFragment),
                            Some(AlertDescription::UnexpectedMessage),
                        ));
                    }
                    // An empty handshake record (RFC 8446 §5.1 forbids
                    // them), or a KeyUpdate of the wrong length.
                    [] | [KEY_UPDATE, ..] => return Err(decode_error()),
                    [typ, ..] => {
                        // Only a KeyUpdate may follow a server's handshake
                        // (no post-handshake authentication is offered);
                        // a message split over records is none of those.
                        return Err((
                            Error::InappropriateHandshakeMessage {
                                expect_types: vec![rustls::HandshakeType::KeyUpdate],
                                got_type: rustls::HandshakeType::from(*typ),
                            },
                            Some(AlertDescription::UnexpectedMessage),
                        ));
                    }
                };
                let requested = match content[4] {
                    0 => false,
                    1 => true,
                    _ => {
                        return Err((
                            Error::InvalidMessage(InvalidMessage::InvalidKeyUpdate),
                            Some(AlertDescription::IllegalParameter),
                        ))
                    }
                };
                if self.key_updates_left == 0 {
                    return Err((
                        Error::PeerMisbehaved(PeerMisbehaved::TooManyKeyUpdateRequests),
                        Some(AlertDescription::UnexpectedMessage),
                    ));
                }
                self.key_updates_left -= 1;
                let (_, secrets) = self
                    .kernel
                    .update_rx_secret()
                    .map_err(|e| (e, Some(AlertDescription::InternalError)))?;
                self.rx =
                    Key::new(secrets, 0).map_err(|e| (e, Some(AlertDescription::InternalError)))?;
                Ok(Opened::KeyUpdate { answer: requested })
            }
            _ => Err((
                Error::InappropriateMessage {
                    expect_types: vec![
                        rustls::ContentType::ApplicationData,
                        rustls::ContentType::Handshake,
                        rustls::ContentType::Alert,
                    ],
                    got_type: rustls::ContentType::from(typ),
                },
                Some(AlertDescription::UnexpectedMessage),
            )),
        }
    }

    /// An alert from the client (RFC 8446 §6): `close_notify` ends its
    /// side; `user_canceled` is tolerated a few times; anything else ends
    /// the connection, unanswered.
    fn alert(&mut self, content: &[u8]) -> Result<Opened, Failure> {
        self.empty_in_a_row = 0;
        let [level, desc] = *content else {
            return Err(decode_error());
        };
        let desc = AlertDescription::from(desc);
        if !matches!(level, 1 | 2) {
            return Err((
                Error::AlertReceived(desc),
                Some(AlertDescription::IllegalParameter),
            ));
        }
        if desc == AlertDescription::CloseNotify {
            return Ok(Opened::CloseNotify);
        }
        if level == 1 {
            if self.warnings_left == 0 {
                return Err((
                    Error::PeerMisbehaved(PeerMisbehaved::TooManyWarningAlertsReceived),
                    Some(AlertDescription::UnexpectedMessage),
                ));
            }
            self.warnings_left -= 1;
            if desc == AlertDescription::UserCanceled {
                return Ok(Opened::Nothing);
            }
            // Warnings are outlawed in TLS 1.3 (but `user_canceled`).
            return Err((
                Error::AlertReceived(desc),
                Some(AlertDescription::DecodeError),
            ));
        }
        Err((Error::AlertReceived(desc), None))
    }
}

fn decode_error() -> Failure {
    (
        Error::InvalidMessage(InvalidMessage::MessageTooShort),
        Some(AlertDescription::DecodeError),
    )
}

/// A client's record layer for tests and fuzzing (`test-hooks`): seals
/// whatever it is told to (any inner content type, padding) and opens the
/// server's records.
#[cfg(any(test, feature = "test-hooks"))]
pub struct RawPeer {
    kernel: KernelConnection<rustls::client::ClientConnectionData>,
    tx: Key,
    rx: Key,
}

#[cfg(any(test, feature = "test-hooks"))]
impl RawPeer {
    /// Takes over a TLS 1.3 client session whose handshake is over (its
    /// config enables secret extraction); what it had not read is dropped.
    pub fn new(c: super::session::Session<rustls::client::UnbufferedClientConnection>) -> RawPeer {
        let (secrets, kernel) = c
            .into_conn()
            .dangerous_into_kernel_connection()
            .expect("kernel connection");
        RawPeer {
            kernel,
            tx: Key::new(secrets.tx.1, secrets.tx.0).expect("tx key"),
            rx: Key::new(secrets.rx.1, secrets.rx.0).expect("rx key"),
        }
    }

    /// One record: `content`, inner type `typ`, `pad` zero bytes of padding.
    pub fn seal(&mut self, typ: u8, content: &[u8], pad: usize) -> Vec<u8> {
        let inner = content.len() + 1 + pad;
        let [hi, lo] = ((inner + TAG) as u16).to_be_bytes();
        let header = [APPLICATION_DATA, 3, 3, hi, lo];
        let mut rec = header.to_vec();
        rec.extend_from_slice(content);
        rec.push(typ);
        rec.resize(HEADER + inner, 0);
        let nonce = self.tx.nonce();
        let tag = self
            .tx
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(header), &mut rec[HEADER..])
            .expect("seal");
        rec.extend_from_slice(tag.as_ref());
        self.tx.seq += 1;
        rec
    }

    /// The client's write key moves on (after it sent a KeyUpdate).
    pub fn next_tx_key(&mut self) {
        let (_, s) = self.kernel.update_tx_secret().expect("tx secret");
        self.tx = Key::new(s, 0).expect("tx key");
    }

    /// Opens the server's records: (inner type, content) each. A KeyUpdate
    /// from the server moves the read key on.
    pub fn open_all(&mut self, mut wire: &mut [u8]) -> Vec<(u8, Vec<u8>)> {
        let mut got = Vec::new();
        while wire.len() >= HEADER {
            let len = HEADER + usize::from(u16::from_be_bytes([wire[3], wire[4]]));
            let (rec, rest) = wire.split_at_mut(len);
            let header: [u8; HEADER] = rec[..HEADER].try_into().expect("header");
            let nonce = self.rx.nonce();
            let inner = self
                .rx
                .key
                .open_in_place(nonce, Aad::from(header), &mut rec[HEADER..])
                .expect("the server's record opens");
            self.rx.seq += 1;
            let at = inner.iter().rposition(|&b| b != 0).expect("content type");
            let (typ, content) = (inner[at], inner[..at].to_vec());
            if typ == HANDSHAKE && content.first() == Some(&KEY_UPDATE) {
                let (_, s) = self.kernel.update_rx_secret().expect("rx secret");
                self.rx = Key::new(s, 0).expect("rx key");
            }
            got.push((typ, content));
            wire = rest;
        }
        got
    }
}
