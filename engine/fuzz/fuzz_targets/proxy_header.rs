//! The PROXY protocol header writer (`services::proxy::encode_header`)
//! round-tripped through the `ppp` crate's parser, for arbitrary addresses
//! and TLS facts (SNI, ALPN, version, cipher, client certificate names).
//!
//! Checks: the header parses back; the addresses are the ones given (or
//! `UNKNOWN`/unspecified when the two families differ, as the spec says);
//! every v2 TLV and SSL sub-TLV carries exactly the bytes given.
//!
//! Finding (first run): with mixed address families the v2 header is
//! UNSPEC and `ppp` then sees no TLVs; unreachable from a real socket.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::CertificateDer;
use std::net::{IpAddr, SocketAddr};
use uringtls::__private::{encode_header, TlsFacts, PP2_TYPE_CLIENT_SUBJECT};
use uringtls::services::proxy::ProxyProtocol;
use uringtls::PeerIdentity;

#[derive(Arbitrary, Debug)]
struct Input {
    v2: bool,
    peer: (IpAddr, u16),
    local: (IpAddr, u16),
    sni: Option<String>,
    alpn: Option<Vec<u8>>,
    version: Option<String>,
    cipher: Option<String>,
    client: Option<(String, Option<String>)>,
}

/// Sub-TLVs of a PP2_TYPE_SSL value, after its 5-byte client/verify prefix.
fn ssl_subtlvs(v: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = &v[5..];
    while rest.len() >= 3 {
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        assert!(rest.len() >= 3 + len, "SSL sub-TLV overruns its TLV");
        out.push((rest[0], rest[3..3 + len].to_vec()));
        rest = &rest[3 + len..];
    }
    assert!(rest.is_empty(), "trailing bytes in the SSL TLV");
    out
}

fn check_v1(h: &[u8], peer: SocketAddr, local: SocketAddr) {
    let parsed = ppp::v1::Header::try_from(h).expect("v1 header parses");
    let want = ppp::v1::Addresses::from((peer, local));
    assert_eq!(parsed.addresses, want);
    assert_eq!(parsed.header.len(), h.len(), "v1 header has trailing bytes");
}

fn check_v2(h: &[u8], peer: SocketAddr, local: SocketAddr, f: &TlsFacts<'_>) {
    let parsed = ppp::v2::Header::try_from(h).expect("v2 header parses");
    assert_eq!(parsed.len(), h.len(), "v2 length field disagrees");
    assert_eq!(parsed.addresses, ppp::v2::Addresses::from((peer, local)));
    let tlvs: Vec<(u8, Vec<u8>)> = parsed
        .tlvs()
        .map(|t| t.expect("tlv parses"))
        .map(|t| (t.kind, t.value.to_vec()))
        .collect();
    let find = |k: u8| tlvs.iter().find(|t| t.0 == k).map(|t| t.1.clone());
    assert_eq!(find(0x01).as_deref(), f.alpn);
    assert_eq!(find(0x02).as_deref(), f.sni.map(str::as_bytes));
    let ssl = find(0x20).expect("SSL TLV always sent");
    assert_eq!(ssl[0] & 0x02 != 0, f.client.is_some(), "cert flag");
    let subs = ssl_subtlvs(&ssl);
    let sub = |k: u8| subs.iter().find(|t| t.0 == k).map(|t| t.1.clone());
    assert_eq!(
        sub(0x21).as_deref(),
        f.version.as_deref().map(str::as_bytes)
    );
    assert_eq!(sub(0x23).as_deref(), f.cipher.as_deref().map(str::as_bytes));
    let cn = f.client.and_then(|c| c.common_name.as_deref());
    assert_eq!(sub(0x22).as_deref(), cn.map(str::as_bytes));
    let subject = f.client.map(|c| c.subject.as_bytes());
    assert_eq!(find(PP2_TYPE_CLIENT_SUBJECT).as_deref(), subject);
}

fuzz_target!(|input: Input| {
    let peer = SocketAddr::new(input.peer.0, input.peer.1);
    let local = SocketAddr::new(input.local.0, input.local.1);
    let client = input.client.map(|(subject, common_name)| PeerIdentity {
        subject,
        common_name,
        cert: CertificateDer::from(Vec::new()),
    });
    let facts = TlsFacts {
        sni: input.sni.as_deref(),
        alpn: input.alpn.as_deref(),
        version: input.version,
        cipher: input.cipher,
        client: client.as_ref(),
    };
    let version = if input.v2 {
        ProxyProtocol::V2
    } else {
        ProxyProtocol::V1
    };
    // Inputs are far below the 64 KiB a v2 header can hold: encoding must work.
    let h = encode_header(version, peer, local, &facts).expect("encode");
    match version {
        ProxyProtocol::V1 => check_v1(&h, peer, local),
        // One TCP socket's two ends share a family (IPv4 clients of a
        // dual-stack listener are `::ffff:a.b.c.d` on both), so mixed
        // families never reach the writer. If they did, the header says
        // UNSPEC, which `ppp` reads as "the rest is address bytes": it must
        // still parse, but carries no TLVs a reader could see.
        ProxyProtocol::V2 if peer.is_ipv4() != local.is_ipv4() => {
            let parsed = ppp::v2::Header::try_from(&h[..]).expect("v2 header parses");
            assert_eq!(parsed.addresses, ppp::v2::Addresses::Unspecified);
        }
        ProxyProtocol::V2 => check_v2(&h, peer, local, &facts),
    }
});
