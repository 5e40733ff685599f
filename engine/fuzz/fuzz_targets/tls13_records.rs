//! The engine's own TLS 1.3 record layer (`runtime/src/tls/records.rs`) on
//! arbitrary records from a client that completed a real handshake: each
//! input is a sequence of records, each with any inner content type,
//! content and padding, sealed under the client's real keys (so they
//! decrypt and reach the parsing behind the AEAD), plus raw bytes between
//! them, arbitrarily fragmented.
//!
//! Checks: no panic; `ingest` takes all it is given; everything the server
//! sends back (echoed data, KeyUpdate answers, alerts) opens under the
//! client's keys, in order.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, OnceLock};
use uringtls::__private::session::{ServerConn, Session};
use uringtls_runtime::tls::records::RawPeer;

fn server_config() -> Arc<rustls::ServerConfig> {
    static CFG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CFG.get_or_init(|| {
        let settings = uringtls::SettingsBuilder::new()
            .build()
            .expect("default settings");
        uringtls::__private::server_config(&settings).expect("default TLS config")
    })
    .clone()
}

/// The engine's default identity is a fresh self-signed certificate.
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn client_config() -> Arc<rustls::ClientConfig> {
    static CFG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CFG.get_or_init(|| {
        let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer))
        .with_no_client_auth();
        c.enable_secret_extraction = true;
        Arc::new(c)
    })
    .clone()
}

fn pump<A, B>(from: &mut Session<A>, to: &mut Session<B>)
where
    A: uringtls::__private::session::TlsConn,
    B: uringtls::__private::session::TlsConn,
{
    let mut wire = Vec::new();
    from.take_output(&mut wire);
    to.ingest(&mut wire).expect("handshake");
}

/// A client and a server session whose records the server has taken over,
/// the client's record layer held by a `RawPeer`.
fn connected() -> (RawPeer, Session<ServerConn>) {
    let name = ServerName::try_from("localhost").expect("name");
    let mut c = Session::new(UnbufferedClientConnection::new(client_config(), name).expect("client"));
    let mut s = Session::new(ServerConn::new(server_config()).expect("server"));
    s.set_hand_over_after(0);
    c.ingest(&mut []).expect("client hello");
    for _ in 0..4 {
        pump(&mut c, &mut s);
        pump(&mut s, &mut c);
    }
    assert!(!c.is_handshaking() && !s.is_handshaking(), "handshake");
    s.write_plaintext(b"hi").expect("server write");
    assert!(s.records_handed_over());
    pump(&mut s, &mut c);
    (RawPeer::new(c), s)
}

fuzz_target!(|data: &[u8]| {
    let (mut peer, mut s) = connected();
    // The records: [flags, type, len, pad, content...]: flags bit 0 sends
    // `len` raw bytes instead of a sealed record; the low 6 bits of the
    // next flags byte cut the wire into pieces.
    let mut wire = Vec::new();
    let mut rest = data;
    let mut cut = 0usize;
    while let [flags, typ, len, pad, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (content, tail) = tail.split_at(len);
        rest = tail;
        cut = usize::from(flags >> 2);
        if flags & 1 == 1 {
            wire.extend_from_slice(content);
            continue;
        }
        // Content over 255 bytes: repeated (a full 16 KiB record, or more).
        let content = if flags & 2 == 2 {
            content.repeat(1 + (16 * 1024 + 1) / content.len().max(1))
        } else {
            content.to_vec()
        };
        wire.extend(peer.seal(*typ, &content, usize::from(*pad)));
        if *typ == 22 && content.len() == 5 && content[..4] == [24, 0, 0, 1] {
            // The server's read key moves on after a KeyUpdate.
            peer.next_tx_key();
        }
    }
    let mut pos = 0;
    let mut buf = [0u8; 4096];
    while pos < wire.len() {
        let n = if cut == 0 { wire.len() - pos } else { cut.min(wire.len() - pos) };
        let mut piece = wire[pos..pos + n].to_vec();
        pos += n;
        let res = s.ingest(&mut piece);
        let mut out = s.take_out();
        // All the server sends opens under the client's keys.
        let _ = peer.open_all(&mut out);
        let Ok(got) = res else {
            return;
        };
        assert_eq!(got.consumed, piece.len(), "input not all taken");
        loop {
            match s.read_plaintext(&mut buf) {
                Ok(Some(0)) | Err(_) => return,
                Ok(Some(n)) => {
                    s.write_plaintext(&buf[..n]).expect("echo");
                    let mut out = s.take_out();
                    let _ = peer.open_all(&mut out);
                }
                Ok(None) => break,
            }
        }
    }
});
