//! Property tests: how bytes are cut up on the wire never changes what
//! comes out.
//!
//! - TLS: the engine's `ServerConfig` (built through its real config path)
//!   and the sans-I/O session driver, against a rustls client, with every
//!   TCP segment boundary chosen by proptest, both directions, TLS 1.3 and
//!   1.2: each side receives exactly the plaintext the other sent.
//! - HTTP: the `http` service's request path fed in arbitrary pieces gives
//!   byte-for-byte the answers it gives to the whole input, for valid
//!   request streams and for arbitrary bytes.
//!
//! Proxy byte preservation over a real engine lives in
//! `reliability_proxy.rs`.

use proptest::prelude::*;
use rustls::client::UnbufferedClientConnection;
use std::sync::{Arc, OnceLock};
use uringtls::__private::session::{ServerConn, Session, TlsConn};
use uringtls::services::http::Http;
use uringtls_tests::{client_config, test_certs, TestCerts};

fn certs() -> &'static TestCerts {
    static CERTS: OnceLock<TestCerts> = OnceLock::new();
    CERTS.get_or_init(test_certs)
}

/// The engine's server config for the test certificate, built the way the
/// engine builds it (flags -> `resolve` -> `TlsState`).
fn server_config() -> Arc<rustls::ServerConfig> {
    static CFG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CFG.get_or_init(|| {
        let c = certs();
        let settings = uringtls::SettingsBuilder::new()
            .cert_files(&c.cert, &c.key)
            .build()
            .expect("settings");
        uringtls::__private::server_config(&settings).expect("tls config")
    })
    .clone()
}

/// Ciphertext in flight one way, delivered in pieces whose sizes cycle
/// through `cuts`.
struct Wire {
    bytes: Vec<u8>,
    cuts: Vec<usize>,
    next: usize,
}

impl Wire {
    fn new(cuts: Vec<usize>) -> Wire {
        Wire {
            bytes: Vec::new(),
            cuts,
            next: 0,
        }
    }

    /// Delivers one piece to `to`, collecting any plaintext into `got`.
    /// Returns false when nothing was pending.
    fn deliver<C: TlsConn>(&mut self, to: &mut Session<C>, got: &mut Vec<u8>) -> bool {
        if self.bytes.is_empty() {
            return false;
        }
        let n = self.cuts[self.next % self.cuts.len()].min(self.bytes.len());
        self.next += 1;
        let mut piece: Vec<u8> = self.bytes.drain(..n).collect();
        let used = to.ingest(&mut piece).expect("ingest").consumed;
        assert_eq!(used, piece.len());
        let mut buf = [0u8; 4096];
        while let Some(k) = to.read_plaintext(&mut buf).expect("plaintext") {
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
        true
    }
}

/// Runs a handshake and two messages each way over wires that cut
/// segments at the given sizes; returns what each side received.
fn exchange(
    version: &'static rustls::SupportedProtocolVersion,
    up_cuts: Vec<usize>,
    down_cuts: Vec<usize>,
    to_server: &[u8],
    to_client: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let cfg = client_config(&certs().ca_der, &[version]);
    let name = "localhost".try_into().expect("name");
    let mut c = Session::new(UnbufferedClientConnection::new(cfg, name).expect("client"));
    let mut s = Session::new(ServerConn::new(server_config()).expect("server"));
    // The client speaks first.
    c.ingest(&mut []).expect("client hello");
    let (mut up, mut down) = (Wire::new(up_cuts), Wire::new(down_cuts));
    let (mut at_server, mut at_client) = (Vec::new(), Vec::new());
    let mut sent_c = 0;
    let mut sent_s = 0;
    for _ in 0..1_000_000 {
        if !c.is_handshaking() {
            sent_c += c
                .write_plaintext(&to_server[sent_c..])
                .expect("client write");
        }
        if !s.is_handshaking() {
            sent_s += s
                .write_plaintext(&to_client[sent_s..])
                .expect("server write");
        }
        c.take_output(&mut up.bytes);
        s.take_output(&mut down.bytes);
        let moved_up = up.deliver(&mut s, &mut at_server);
        let moved_down = down.deliver(&mut c, &mut at_client);
        let all_sent = sent_c == to_server.len() && sent_s == to_client.len();
        if !moved_up && !moved_down && all_sent && !c.is_handshaking() {
            return (at_server, at_client);
        }
    }
    panic!("exchange did not settle");
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1..8usize, 8..600usize, 600..20_000usize], 1..12)
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 0..70_000),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn tls13_plaintext_survives_any_segmentation(
        up in cuts(), down in cuts(), a in payload(), b in payload()
    ) {
        let (at_server, at_client) = exchange(&rustls::version::TLS13, up, down, &a, &b);
        prop_assert_eq!(at_server, a);
        prop_assert_eq!(at_client, b);
    }

    #[test]
    fn tls12_plaintext_survives_any_segmentation(
        up in cuts(), down in cuts(), a in payload(), b in payload()
    ) {
        let (at_server, at_client) = exchange(&rustls::version::TLS12, up, down, &a, &b);
        prop_assert_eq!(at_server, a);
        prop_assert_eq!(at_client, b);
    }
}

/// Drives `Http::process` the way the service does (buffer, skip bodies,
/// answer in batches, stop after a closing answer) over `chunks`.
fn drive(h: &Http, chunks: &[&[u8]]) -> (Vec<u8>, bool) {
    let mut input = Vec::new();
    let mut out = Vec::new();
    let mut skip = 0usize;
    for chunk in chunks {
        let d = skip.min(chunk.len());
        skip -= d;
        input.extend_from_slice(&chunk[d..]);
        if skip > 0 {
            continue;
        }
        // As the service does: more complete requests may wait behind a
        // full output batch (`MAX_OUT`).
        loop {
            let p = h.process(&input, &mut out);
            input.drain(..p.consumed);
            skip = p.skip;
            if p.close {
                return (out, true);
            }
            if p.consumed == 0 || input.is_empty() || skip > 0 {
                break;
            }
        }
    }
    (out, false)
}

/// Cuts `data` at the (sorted, deduplicated) `points`.
fn split_at<'a>(data: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
    let mut pts: Vec<usize> = points.iter().map(|p| p % (data.len() + 1)).collect();
    pts.sort_unstable();
    pts.dedup();
    let mut out = Vec::new();
    let mut at = 0;
    for p in pts.into_iter().chain([data.len()]) {
        out.push(&data[at..p]);
        at = p;
    }
    out
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![Just("GET"), Just("HEAD"), Just("POST")];
    let version = prop_oneof![Just("1.1"), Just("1.0")];
    let conn = prop_oneof![
        Just(""),
        Just("Connection: close\r\n"),
        Just("Connection: keep-alive\r\n")
    ];
    let body = prop::collection::vec(any::<u8>(), 0..40);
    (method, "[a-z/]{1,12}", version, conn, body).prop_map(|(m, path, v, c, body)| {
        let mut r = format!("{m} /{path} HTTP/{v}\r\nHost: x\r\n{c}").into_bytes();
        if m == "POST" {
            r.extend(format!("Content-Length: {}\r\n\r\n", body.len()).bytes());
            r.extend(body);
        } else {
            r.extend(b"\r\n");
        }
        r
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn http_answers_do_not_depend_on_how_requests_are_cut(
        reqs in prop::collection::vec(request(), 1..8),
        points in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let wire = reqs.concat();
        let h = Http::default();
        let whole = drive(&h, &[&wire]);
        prop_assert_eq!(drive(&h, &split_at(&wire, &points)), whole);
    }

    #[test]
    fn http_answers_in_output_batches_do_not_depend_on_cuts(
        reqs in prop::collection::vec(request(), 1..24),
        points in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        // 30 kB bodies: a few answers fill an output batch.
        let h = Http::with_body_size(30_000, uringtls::services::http::DEFAULT_MAX_HEADER);
        let wire = reqs.concat();
        let whole = drive(&h, &[&wire]);
        prop_assert_eq!(drive(&h, &split_at(&wire, &points)), whole);
    }

    #[test]
    fn the_http_header_limit_does_not_depend_on_cuts(
        reqs in prop::collection::vec(request(), 1..8),
        points in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        // The generated header blocks run from ~30 to ~90 bytes: a 64-byte
        // limit refuses some of them (431), whole or cut.
        let h = Http::new(b"x".to_vec(), 64);
        let wire = reqs.concat();
        let whole = drive(&h, &[&wire]);
        prop_assert_eq!(drive(&h, &split_at(&wire, &points)), whole);
    }

    #[test]
    fn http_handling_of_arbitrary_bytes_does_not_depend_on_cuts(
        wire in prop::collection::vec(any::<u8>(), 0..512),
        points in prop::collection::vec(any::<usize>(), 0..16),
    ) {
        let h = Http::default();
        let whole = drive(&h, &[&wire]);
        prop_assert_eq!(drive(&h, &split_at(&wire, &points)), whole);
    }
}
