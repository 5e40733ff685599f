//! Sans-I/O TLS session logic: moving bytes between buffers and a rustls
//! connection. Nothing here knows about sockets or io_uring, so it is tested
//! in memory (client and server connections wired back to back).

use rustls::{ConnectionCommon, SideData};
use std::io;
use std::ops::DerefMut;

/// Any rustls connection, client or server.
pub trait TlsConn: DerefMut<Target = ConnectionCommon<Self::Data>> {
    /// The side-specific data (`ServerConnectionData` or `ClientConnectionData`).
    type Data: SideData;
}

impl TlsConn for rustls::ServerConnection {
    type Data = rustls::server::ServerConnectionData;
}

impl TlsConn for rustls::ClientConnection {
    type Data = rustls::client::ClientConnectionData;
}

/// Outcome of feeding ciphertext to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// Bytes of the input that rustls took. Less than the input when rustls's
    /// plaintext buffer is full: read plaintext, then feed the rest again.
    pub consumed: usize,
}

/// Feeds `data` (ciphertext from the peer) to `tls` and processes every
/// complete record. On a protocol error rustls has queued an alert, which the
/// caller should flush with [`take_output`] before closing.
pub fn ingest<C: TlsConn>(tls: &mut C, data: &[u8]) -> Result<Ingested, rustls::Error> {
    let mut consumed = 0;
    while consumed < data.len() {
        let mut rest = &data[consumed..];
        match tls.read_tls(&mut rest) {
            Ok(0) => break,
            Ok(n) => consumed += n,
            // rustls refuses more input while its plaintext buffer is full.
            Err(_) => break,
        }
        tls.process_new_packets()?;
    }
    Ok(Ingested { consumed })
}

/// Tells the session that the peer closed its sending side (TCP FIN).
pub fn ingest_eof<C: TlsConn>(tls: &mut C) -> Result<(), rustls::Error> {
    let mut empty: &[u8] = &[];
    // Reading zero bytes records EOF inside rustls.
    let _ = tls.read_tls(&mut empty);
    tls.process_new_packets().map(|_| ())
}

/// Appends every pending outgoing record (handshake, alerts, application
/// data) to `out`.
pub fn take_output<C: TlsConn>(tls: &mut C, out: &mut Vec<u8>) {
    while tls.wants_write() {
        match tls.write_tls(out) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

/// Copies available plaintext into `buf`.
///
/// `Ok(Some(n))` with `n > 0`: data; `Ok(Some(0))`: the peer sent
/// `close_notify` (clean end); `Ok(None)`: nothing buffered, read more
/// ciphertext; `Err(UnexpectedEof)`: the peer closed without `close_notify`.
pub fn read_plaintext<C: TlsConn>(tls: &mut C, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match io::Read::read(&mut tls.reader(), buf) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Appends available plaintext to `out`, up to `max` bytes in total (no
/// zero-filling: the buffer grows only by what arrives). Same outcomes as
/// [`read_plaintext`]: `Some(n > 0)` appended, `Some(0)` clean end, `None`
/// nothing buffered, `Err(UnexpectedEof)` closed without `close_notify`.
pub fn append_plaintext<C: TlsConn>(
    tls: &mut C,
    out: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<usize>> {
    let mut reader = tls.reader();
    let mut total = 0;
    while out.len() < max {
        let chunk = match io::BufRead::fill_buf(&mut reader) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || total > 0 => break,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            if total == 0 {
                return Ok(Some(0));
            }
            break;
        }
        let n = chunk.len().min(max - out.len());
        out.extend_from_slice(&chunk[..n]);
        io::BufRead::consume(&mut reader, n);
        total += n;
    }
    Ok((total > 0).then_some(total))
}

/// Queues plaintext for encryption; returns how much was taken (less than
/// `data.len()` when the outgoing buffer limit is reached: flush, then retry).
pub fn write_plaintext<C: TlsConn>(tls: &mut C, data: &[u8]) -> usize {
    io::Write::write(&mut tls.writer(), data).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn pair() -> (rustls::ClientConnection, rustls::ServerConnection) {
        let (server_cfg, cert) = crate::tls::tests::server_config_and_cert();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("root");
        let client_cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client = rustls::ClientConnection::new(
            Arc::new(client_cfg),
            "localhost".try_into().expect("name"),
        )
        .expect("client");
        let server = rustls::ServerConnection::new(server_cfg).expect("server");
        (client, server)
    }

    /// Moves everything `from` wants to send into `to`, `chunk` bytes at a time.
    fn transfer<A: TlsConn, B: TlsConn>(from: &mut A, to: &mut B, chunk: usize) {
        let mut wire = Vec::new();
        take_output(from, &mut wire);
        for piece in wire.chunks(chunk.max(1)) {
            let got = ingest(to, piece).expect("ingest");
            assert_eq!(got.consumed, piece.len());
        }
    }

    fn handshake(c: &mut rustls::ClientConnection, s: &mut rustls::ServerConnection, chunk: usize) {
        for _ in 0..10 {
            if !c.is_handshaking() && !s.is_handshaking() {
                return;
            }
            transfer(c, s, chunk);
            transfer(s, c, chunk);
        }
        panic!("handshake did not finish");
    }

    #[test]
    fn handshake_completes_when_records_arrive_one_byte_at_a_time() {
        let (mut c, mut s) = pair();
        handshake(&mut c, &mut s, 1);
        assert_eq!(s.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
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
            while sent < msg.len() {
                sent += write_plaintext(&mut c, &msg[sent..]);
                let mut wire = Vec::new();
                take_output(&mut c, &mut wire);
                for mut piece in wire.chunks(chunk) {
                    // Feed, reading plaintext out whenever rustls's buffer is full.
                    while !piece.is_empty() {
                        let used = ingest(&mut s, piece).expect("ingest").consumed;
                        piece = &piece[used..];
                        while let Some(k) = read_plaintext(&mut s, &mut plain).expect("read") {
                            if k == 0 {
                                break;
                            }
                            got.extend_from_slice(&plain[..k]);
                        }
                    }
                }
            }
            assert_eq!(got, msg, "chunk {chunk}");
        }
    }

    #[test]
    fn garbage_input_is_an_error_and_queues_an_alert() {
        let (_c, mut s) = pair();
        let err = ingest(&mut s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err();
        assert!(matches!(err, rustls::Error::InvalidMessage(_)), "{err:?}");
        let mut out = Vec::new();
        take_output(&mut s, &mut out);
        assert_eq!(out.first(), Some(&0x15), "alert record expected");
    }

    #[test]
    fn eof_without_close_notify_reads_as_unexpected_eof() {
        let (mut c, mut s) = pair();
        handshake(&mut c, &mut s, 4096);
        ingest_eof(&mut s).expect("eof");
        let mut buf = [0u8; 16];
        let err = read_plaintext(&mut s, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn close_notify_reads_as_clean_end() {
        let (mut c, mut s) = pair();
        handshake(&mut c, &mut s, 4096);
        c.send_close_notify();
        transfer(&mut c, &mut s, 4096);
        let mut buf = [0u8; 16];
        assert_eq!(read_plaintext(&mut s, &mut buf).expect("read"), Some(0));
    }

    #[test]
    fn append_plaintext_takes_up_to_max_then_reports_the_clean_end() {
        let (mut c, mut s) = pair();
        handshake(&mut c, &mut s, 4096);
        let mut out = Vec::new();
        assert_eq!(append_plaintext(&mut s, &mut out, 10).expect("empty"), None);
        write_plaintext(&mut c, b"hello world, twice: hello world");
        c.send_close_notify();
        transfer(&mut c, &mut s, 4096);
        assert_eq!(
            append_plaintext(&mut s, &mut out, 10).expect("some"),
            Some(10)
        );
        assert_eq!(out, b"hello worl");
        out.clear();
        assert_eq!(
            append_plaintext(&mut s, &mut out, 100).expect("rest"),
            Some(21)
        );
        assert_eq!(out, b"d, twice: hello world");
        assert_eq!(
            append_plaintext(&mut s, &mut out, 100).expect("end"),
            Some(0)
        );
    }
}
