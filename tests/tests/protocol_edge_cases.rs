//! Protocol edge cases against the engine, driven with crafted records from
//! a raw TCP client (and rustls where a real handshake is needed): rejected
//! 0-RTT data, the alert every fatal error ends with, the TLS 1.2 alert for
//! a missing client certificate, certificate selection that never shows
//! another hosted name, and plain HTTP on the TLS port.

use rustls::client::ClientSessionStore;
use rustls::crypto::cipher::{
    InboundOpaqueMessage, MessageDecrypter, MessageEncrypter, OutboundChunks, OutboundPlainMessage,
};
use rustls::{ConnectionTrafficSecrets, ContentType, ProtocolVersion, SupportedCipherSuite};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use uringtls_tests::{
    any_cert_client_config, connect_to, start_engine, start_engine_with_certs, test_certs,
    tls_over, EngineProc, TestCerts, WAIT,
};

const HANDSHAKE_FAILURE: u8 = 40;
const UNEXPECTED_MESSAGE: u8 = 10;
const DECODE_ERROR: u8 = 50;
const ILLEGAL_PARAMETER: u8 = 47;
const CERTIFICATE_REQUIRED: u8 = 116;

fn echo_engine(certs: &TestCerts) -> EngineProc {
    start_engine_with_certs(certs, &["--shards", "1", "--service", "echo"])
}

fn record(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![typ, 0x03, 0x03];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

/// A handshake message (`typ`, 24-bit length, body).
fn handshake(typ: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![typ];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.extend_from_slice(body);
    m
}

fn vec16(items: &[u16]) -> Vec<u8> {
    let mut v = ((items.len() * 2) as u16).to_be_bytes().to_vec();
    for i in items {
        v.extend_from_slice(&i.to_be_bytes());
    }
    v
}

fn extension(typ: u16, body: &[u8]) -> Vec<u8> {
    let mut e = typ.to_be_bytes().to_vec();
    e.extend_from_slice(&(body.len() as u16).to_be_bytes());
    e.extend_from_slice(body);
    e
}

const ECDHE_ECDSA_AES128_GCM: u16 = 0xc02b;
const ECDHE_RSA_AES128_GCM: u16 = 0xc02f;
const ECDSA_P256_SHA256: u16 = 0x0403;
const RSA_PSS_SHA256: u16 = 0x0804;
const RSA_PKCS1_SHA256: u16 = 0x0401;
const RSA_PKCS1_SHA1: u16 = 0x0201;

/// A TLS 1.2 ClientHello message offering `suites` and signature `schemes`
/// (X25519 and P-256 key exchange), with `sni` if given.
fn client_hello12(sni: Option<&str>, suites: &[u16], schemes: &[u16]) -> Vec<u8> {
    let mut b = vec![0x03, 0x03];
    b.extend_from_slice(&[0x5a; 32]); // random
    b.push(0); // no session id
    b.extend_from_slice(&vec16(suites));
    b.extend_from_slice(&[1, 0]); // null compression
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let mut list = vec![0];
        list.extend_from_slice(&(name.len() as u16).to_be_bytes());
        list.extend_from_slice(name.as_bytes());
        let mut body = (list.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(&list);
        exts.extend(extension(0, &body));
    }
    exts.extend(extension(10, &vec16(&[0x001d, 0x0017])));
    exts.extend(extension(11, &[1, 0]));
    exts.extend(extension(13, &vec16(schemes)));
    exts.extend(extension(0xff01, &[0]));
    b.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    b.extend_from_slice(&exts);
    handshake(1, &b)
}

fn connect(e: &EngineProc) -> TcpStream {
    let s = TcpStream::connect(e.addr()).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.set_write_timeout(Some(WAIT)).expect("timeout");
    s
}

/// Reads what the server sends until it closes (or resets), bounded by the
/// socket timeout.
fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("server neither closed nor answered within {WAIT:?}")
            }
            Err(_) => return got,
        }
    }
}

/// The records in `bytes`: (type, payload).
fn records(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut v = Vec::new();
    while let [typ, _, _, hi, lo, rest @ ..] = bytes {
        let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
        v.push((*typ, rest[..n].to_vec()));
        bytes = &rest[n..];
    }
    v
}

/// The whole records in `bytes`, as sent.
fn raw_records(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    while bytes.len() >= 5 {
        let n = (5 + usize::from(u16::from_be_bytes([bytes[3], bytes[4]]))).min(bytes.len());
        v.push(bytes[..n].to_vec());
        bytes = &bytes[n..];
    }
    v
}

/// The plaintext alerts in `bytes`: (level, description).
fn alerts(bytes: &[u8]) -> Vec<(u8, u8)> {
    records(bytes)
        .into_iter()
        .filter(|(t, p)| *t == 21 && p.len() == 2)
        .map(|(_, p)| (p[0], p[1]))
        .collect()
}

/// Sends `bytes`, then reads the server's answer up to its close and
/// returns the alerts in it.
fn alerts_for(e: &EngineProc, bytes: &[u8]) -> Vec<(u8, u8)> {
    let mut s = connect(e);
    // The server may close (after its alert) before it has read all.
    let _ = s.write_all(bytes);
    alerts(&read_to_close(&mut s))
}

/// A TLS 1.2 handshake up to the server's ServerHelloDone; returns the
/// socket and the handshake messages the server sent.
fn tls12_until_server_done(e: &EngineProc, hello: &[u8]) -> (TcpStream, Vec<Vec<u8>>) {
    let mut s = connect(e);
    s.write_all(&record(22, hello)).expect("hello");
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    for _ in 0..100 {
        let n = s.read(&mut buf).expect("server flight");
        assert!(n > 0, "server closed: {:?}", alerts(&got));
        got.extend_from_slice(&buf[..n]);
        let hs: Vec<u8> = records(&got)
            .into_iter()
            .filter(|(t, _)| *t == 22)
            .flat_map(|(_, p)| p)
            .collect();
        let mut msgs = Vec::new();
        let mut rest = &hs[..];
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([0, rest[1], rest[2], rest[3]]) as usize;
            if rest.len() < 4 + len {
                break;
            }
            msgs.push(rest[..4 + len].to_vec());
            rest = &rest[4 + len..];
        }
        if msgs.last().is_some_and(|m| m[0] == 14) {
            return (s, msgs);
        }
    }
    panic!("no ServerHelloDone");
}

// ---- item 2: every fatal error ends with an alert ----

#[test]
fn a_client_hello_over_64_kib_gets_decode_error() {
    let certs = test_certs();
    let e = echo_engine(&certs);
    let mut hello = client_hello12(Some("localhost"), &[ECDHE_ECDSA_AES128_GCM], &[0x0403]);
    // Grown to 70,000 bytes with a padding extension's worth of zeros,
    // announced as such, in 16 KiB records.
    hello.resize(70_000, 0);
    let len = (hello.len() - 4) as u32;
    hello[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    let wire: Vec<u8> = hello.chunks(16_384).flat_map(|c| record(22, c)).collect();
    assert_eq!(alerts_for(&e, &wire), vec![(2, DECODE_ERROR)]);
}

#[test]
fn more_than_four_warning_alerts_get_unexpected_message() {
    let certs = test_certs();
    let e = echo_engine(&certs);
    let wire: Vec<u8> = (0..6).flat_map(|_| record(21, &[1, 90])).collect();
    assert_eq!(alerts_for(&e, &wire), vec![(2, UNEXPECTED_MESSAGE)]);
}

#[test]
fn a_record_inside_a_fragmented_handshake_message_gets_unexpected_message() {
    let certs = test_certs();
    let e = echo_engine(&certs);
    let hello = client_hello12(Some("localhost"), &[ECDHE_ECDSA_AES128_GCM], &[0x0403]);
    let (one, two) = hello.split_at(30);
    // A zero-length application-data record, then a warning alert, in the
    // middle of the ClientHello.
    for between in [record(23, &[]), record(21, &[1, 90])] {
        let mut wire = record(22, one);
        wire.extend(between);
        wire.extend(record(22, two));
        assert_eq!(alerts_for(&e, &wire), vec![(2, UNEXPECTED_MESSAGE)]);
    }
}

#[test]
fn a_client_key_exchange_mixed_with_ccs_gets_unexpected_message() {
    let certs = test_certs();
    let e = echo_engine(&certs);
    let hello = client_hello12(
        Some("localhost"),
        &[ECDHE_ECDSA_AES128_GCM],
        &[ECDSA_P256_SHA256],
    );
    let (mut s, _) = tls12_until_server_done(&e, &hello);
    let mut point = vec![32];
    point.extend_from_slice(&[9; 32]);
    let cke = handshake(16, &point);
    let (one, two) = cke.split_at(10);
    let mut wire = record(22, one);
    wire.extend(record(20, &[1]));
    wire.extend(record(22, two));
    let _ = s.write_all(&wire);
    assert_eq!(
        alerts(&read_to_close(&mut s)),
        vec![(2, UNEXPECTED_MESSAGE)]
    );
}

#[test]
fn an_empty_ecdh_public_value_gets_an_alert() {
    let certs = test_certs();
    let e = echo_engine(&certs);
    let hello = client_hello12(
        Some("localhost"),
        &[ECDHE_ECDSA_AES128_GCM],
        &[ECDSA_P256_SHA256],
    );
    let (mut s, _) = tls12_until_server_done(&e, &hello);
    let _ = s.write_all(&record(22, &handshake(16, &[0])));
    let got = alerts(&read_to_close(&mut s));
    assert!(
        got == vec![(2, DECODE_ERROR)] || got == vec![(2, ILLEGAL_PARAMETER)],
        "{got:?}"
    );
}

#[test]
fn a_tls12_client_whose_schemes_the_key_cannot_make_gets_handshake_failure() {
    let certs = test_certs(); // an ECDSA key
    let e = echo_engine(&certs);
    let hello = client_hello12(
        Some("localhost"),
        &[ECDHE_ECDSA_AES128_GCM],
        &[RSA_PKCS1_SHA1],
    );
    assert_eq!(
        alerts_for(&e, &record(22, &hello)),
        vec![(2, HANDSHAKE_FAILURE)]
    );
}

/// A client whose keys can be taken out after the handshake (the engine
/// picks TLS 1.3 and AES-128-GCM, its first choice).
fn extractable_client() -> Arc<rustls::ClientConfig> {
    let mut cfg = (*any_cert_client_config()).clone();
    cfg.enable_secret_extraction = true;
    Arc::new(cfg)
}

fn aead() -> &'static dyn rustls::crypto::cipher::Tls13AeadAlgorithm {
    match rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256 {
        SupportedCipherSuite::Tls13(s) => s.aead_alg,
        _ => unreachable!("a TLS 1.3 suite"),
    }
}

/// After a TLS 1.3 handshake, sends `records` (content type, plaintext)
/// encrypted with the client's keys; returns the alerts the server sent
/// back (decrypted) before it closed.
fn encrypted_alerts_for(e: &EngineProc, records_to_send: &[(u8, &[u8])]) -> Vec<Vec<u8>> {
    let c = connect_to(e.addr(), &extractable_client(), "localhost").expect("handshake");
    let rustls::StreamOwned { conn, mut sock } = c;
    let secrets = conn.dangerous_extract_secrets().expect("secrets");
    let (mut tx_seq, ConnectionTrafficSecrets::Aes128Gcm { key, iv }) = secrets.tx else {
        panic!("AES-128-GCM expected");
    };
    let mut enc: Box<dyn MessageEncrypter> = aead().encrypter(key, iv);
    let mut wire = Vec::new();
    for (typ, plain) in records_to_send {
        let msg = OutboundPlainMessage {
            typ: ContentType::from(*typ),
            version: ProtocolVersion::TLSv1_2,
            payload: OutboundChunks::Single(plain),
        };
        wire.extend(enc.encrypt(msg, tx_seq).expect("encrypt").encode());
        tx_seq += 1;
    }
    // The server may close (after its alert) before it has read all.
    let _ = sock.write_all(&wire);
    let got = read_to_close(&mut sock);
    // The server's records after the handshake (tickets, then the alert),
    // decrypted in order.
    let (mut rx_seq, ConnectionTrafficSecrets::Aes128Gcm { key, iv }) = secrets.rx else {
        panic!("AES-128-GCM expected");
    };
    let mut dec: Box<dyn MessageDecrypter> = aead().decrypter(key, iv);
    let mut seen = Vec::new();
    for (typ, mut payload) in records(&got) {
        assert_eq!(typ, 23, "only encrypted records after the handshake");
        let m = dec
            .decrypt(
                InboundOpaqueMessage::new(
                    ContentType::ApplicationData,
                    ProtocolVersion::TLSv1_2,
                    &mut payload,
                ),
                rx_seq,
            )
            .expect("decrypt");
        rx_seq += 1;
        if m.typ == ContentType::Alert {
            seen.push(m.payload.to_vec());
        }
    }
    seen
}

#[test]
fn a_tls13_record_with_no_content_type_gets_an_alert() {
    let certs = test_certs();
    let e = echo_engine(&certs);
    // Content type 0: the inner plaintext is all zeros (the payload then a
    // zero type byte), which has no content type.
    for inner in [&[][..], &[0u8; 16][..]] {
        assert_eq!(
            encrypted_alerts_for(&e, &[(0, inner)]),
            vec![vec![2, DECODE_ERROR]],
            "inner {inner:?}"
        );
    }
}

#[test]
fn encrypted_protocol_errors_get_an_alert() {
    let certs = test_certs();
    let e = echo_engine(&certs);
    let key_update = [24u8, 0, 0, 1, 0];
    // What rustls closed on without an alert gets `decode_error` (see
    // docs/security.md); what it already answered keeps its alert.
    type Records<'a> = Vec<(u8, &'a [u8])>;
    let cases: [(&str, Records, u8); 4] = [
        (
            "a KeyUpdate in two records, application data between",
            vec![(22, &key_update[..2]), (23, b"x"), (22, &key_update[2..])],
            DECODE_ERROR,
        ),
        (
            "a KeyUpdate in two records, a zero-length record between",
            vec![(22, &key_update[..3]), (23, b""), (22, &key_update[3..])],
            DECODE_ERROR,
        ),
        ("five warning alerts", vec![(21, &[1, 90]); 5], DECODE_ERROR),
        (
            "data after a KeyUpdate in its record",
            vec![(22, &[24, 0, 0, 1, 0, 23, 0, 0, 1, 0])],
            UNEXPECTED_MESSAGE,
        ),
    ];
    let wrong: Vec<_> = cases
        .iter()
        .map(|(what, recs, alert)| (what, alert, encrypted_alerts_for(&e, recs)))
        .filter(|(_, alert, got)| *got != vec![vec![2, **alert]])
        .collect();
    assert!(
        wrong.is_empty(),
        "(case, expected alert, alerts received): {wrong:?}"
    );
}

// ---- item 1: rejected 0-RTT data is skipped, the handshake completes ----

/// A client config that offers 0-RTT data to `localhost`: it holds a ticket
/// (allowing 16 KiB of early data) from an in-process server, which the
/// engine does not know and which would not make it accept 0-RTT anyway.
fn early_data_client(record: usize) -> Arc<rustls::ClientConfig> {
    let mut cfg = (*any_cert_client_config()).clone();
    cfg.enable_early_data = true;
    cfg.max_fragment_size = Some(record + 5);
    let store = Arc::new(rustls::client::ClientSessionMemoryCache::new(8));
    cfg.resumption = rustls::client::Resumption::store(store.clone());
    let cfg = Arc::new(cfg);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("der");
    let mut scfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)
    .expect("server config");
    // Stateful tickets: rustls allows 0-RTT only with those.
    scfg.max_early_data_size = 16_384;
    let mut srv = rustls::ServerConnection::new(Arc::new(scfg)).expect("server");
    let mut c = rustls::ClientConnection::new(cfg.clone(), "localhost".try_into().expect("name"))
        .expect("client");
    // Flights both ways, tickets included (a fixed number of rounds: the
    // exchange is in memory).
    for _ in 0..6 {
        let mut wire = Vec::new();
        c.write_tls(&mut wire).expect("write");
        srv.read_tls(&mut &wire[..]).expect("read");
        srv.process_new_packets().expect("issuing server");
        wire.clear();
        srv.write_tls(&mut wire).expect("write");
        c.read_tls(&mut &wire[..]).expect("read");
        c.process_new_packets().expect("client");
    }
    let name = "localhost".try_into().expect("name");
    let ticket = store
        .take_tls13_ticket(&name)
        .expect("a ticket from the issuing server");
    assert!(ticket.max_early_data_size() > 0);
    store.insert_tls13_ticket(name, ticket);
    cfg
}

/// Connects with `early` bytes of 0-RTT data in records of `record` bytes
/// (with the client's CCS moved between them when `ccs_between`), then
/// checks that the handshake completes and an echo comes back.
fn early_data_round(e: &EngineProc, early: usize, record_size: usize, ccs_between: bool) {
    let cfg = early_data_client(record_size);
    let mut conn =
        rustls::ClientConnection::new(cfg, "localhost".try_into().expect("name")).expect("client");
    let data = vec![b'e'; early];
    let mut ed = conn.early_data().expect("the client offers early data");
    assert_eq!(ed.write(&data).expect("early write"), early);
    let mut first = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut first).expect("client flight");
    }
    // The hello, perhaps a CCS, the early data records; with
    // `ccs_between`, a CCS goes after the first early data record.
    let recs = raw_records(&first);
    let ccs = recs
        .iter()
        .find(|r| r[0] == 20)
        .cloned()
        .unwrap_or_else(|| record(20, &[1]));
    let early_records: Vec<&Vec<u8>> = recs.iter().filter(|r| r[0] == 23).collect();
    assert!(!early_records.is_empty(), "early data records");
    let mut wire = recs[0].clone();
    assert_eq!(wire[0], 22, "the hello first");
    if ccs_between {
        wire.extend_from_slice(early_records[0]);
        wire.extend_from_slice(&ccs);
        for r in &early_records[1..] {
            wire.extend_from_slice(r);
        }
    } else {
        for r in &recs[1..] {
            wire.extend_from_slice(r);
        }
    }
    let mut sock = connect(e);
    sock.write_all(&wire).expect("first flight");
    let mut c = rustls::StreamOwned::new(conn, sock);
    while c.conn.is_handshaking() {
        if let Err(err) = c.conn.complete_io(&mut c.sock) {
            panic!("early {early} in records of {record_size} (ccs between: {ccs_between}): {err}");
        }
    }
    assert!(!c.conn.is_early_data_accepted());
    c.write_all(b"ping").expect("write");
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).expect("echo");
    assert_eq!(&buf, b"ping");
}

#[test]
fn rejected_early_data_is_skipped_and_the_handshake_completes() {
    let certs = test_certs();
    let e = echo_engine(&certs);
    for (early, record_size, ccs) in [
        (5_000, 16_384, false),
        (6_000, 16_384, false),
        (16_000, 16_384, false),
        (6_000, 1_500, false),
        (16_000, 4_000, true),
        (6_000, 2_000, true),
    ] {
        early_data_round(&e, early, record_size, ccs);
    }
}

// ---- item 3: a TLS 1.2 client without a certificate ----

fn alert_received(err: &std::io::Error) -> Option<rustls::AlertDescription> {
    match err.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(a) => Some(*a),
        _ => None,
    }
}

#[test]
fn a_client_without_certificate_gets_the_alert_of_its_version() {
    let certs = test_certs();
    let e = start_engine_with_certs(
        &certs,
        &[
            "--shards",
            "1",
            "--service",
            "echo",
            "--client-auth",
            "required",
            "--client-ca",
            certs.ca.to_str().expect("utf8"),
        ],
    );
    for (version, expected) in [
        (&rustls::version::TLS12, HANDSHAKE_FAILURE),
        (&rustls::version::TLS13, CERTIFICATE_REQUIRED),
    ] {
        let cfg = uringtls_tests::client_config(&certs.ca_der, &[version]);
        let sock = TcpStream::connect(e.addr()).expect("connect");
        // TLS 1.3 clients learn of it after their Finished: on read.
        let err = match tls_over(sock, &cfg, "localhost") {
            Err(err) => err,
            Ok(mut c) => {
                let _ = c.write_all(b"ping");
                c.read(&mut [0u8; 4]).expect_err("refused")
            }
        };
        assert_eq!(
            alert_received(&err).map(u8::from),
            Some(expected),
            "{version:?}: {err}"
        );
    }
}

// ---- item 4: another hosted name's certificate is never served ----

#[test]
fn an_rsa_only_client_is_never_sent_another_names_certificate() {
    let certs = test_certs();
    let a = certs.issue(&["a.test"], "a", "a", false);
    let api = certs.issue(&["api.test"], "api", "api", true);
    let api_pair = format!("{},{}", api.cert.display(), api.key.display());
    let e = start_engine(&[
        "--shards",
        "1",
        "--service",
        "echo",
        "--cert",
        a.cert.to_str().expect("utf8"),
        "--key",
        a.key.to_str().expect("utf8"),
        "--extra-cert",
        &api_pair,
    ]);
    let rsa_hello = |sni| {
        client_hello12(
            sni,
            &[ECDHE_RSA_AES128_GCM],
            &[RSA_PSS_SHA256, RSA_PKCS1_SHA256],
        )
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for sni in [Some("b.test"), Some("a.test"), None] {
        let mut s = connect(&e);
        let _ = s.write_all(&record(22, &rsa_hello(sni)));
        let got = read_to_close(&mut s);
        assert!(
            !contains(&got, api.der.as_ref()),
            "{sni:?}: api.test's certificate was sent"
        );
        assert_eq!(alerts(&got), vec![(2, HANDSHAKE_FAILURE)], "{sni:?}");
    }
    // Asked by name, api.test's certificate is served.
    let (_, msgs) = tls12_until_server_done(&e, &rsa_hello(Some("api.test")));
    assert!(msgs
        .iter()
        .any(|m| m[0] == 11 && contains(m, api.der.as_ref())));
    // And an ECDSA client gets the default for an unknown name.
    let c = connect_to(e.addr(), &any_cert_client_config(), "b.test").expect("handshake");
    assert_eq!(uringtls_tests::served_leaf(&c), a.der);
}

// ---- item 18: plain HTTP on the TLS port ----

#[test]
fn plain_http_gets_a_400_saying_this_is_a_tls_port() {
    let certs = test_certs();
    let e = start_engine_with_certs(&certs, &["--shards", "1", "--service", "http"]);
    let mut s = connect(&e);
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let got = String::from_utf8(read_to_close(&mut s)).expect("text answer");
    assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got}");
    assert!(got.contains("Connection: close\r\n"), "{got}");
    assert!(got.ends_with("This is a TLS port: send HTTPS (https://) requests to it.\n"));
}
