//! The PROXY protocol header (v1 or v2 with TLVs) sent to upstreams.

use super::{ConnInfo, ProxyProtocol};
use crate::tls::PeerIdentity;
use std::io;
use std::net::SocketAddr;

/// PROXY v2 TLV carrying the client certificate's full subject DN (from
/// the custom range 0xE0..=0xEF; documented in `docs/deployment.md`).
#[doc(hidden)] // internal: reached by the fuzz targets through `__private`
pub const PP2_TYPE_CLIENT_SUBJECT: u8 = 0xE0;
const PP2_CLIENT_SSL: u8 = 0x01;
const PP2_CLIENT_CERT_CONN: u8 = 0x02;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;

/// What goes into a PROXY header besides the addresses.
#[derive(Debug, Default, Clone)]
#[doc(hidden)] // internal: reached by the fuzz targets through `__private`
pub struct TlsFacts<'a> {
    /// SNI.
    pub sni: Option<&'a str>,
    /// Negotiated ALPN protocol.
    pub alpn: Option<&'a [u8]>,
    /// `TLSv1_3`-style version name.
    pub version: Option<String>,
    /// Cipher suite name.
    pub cipher: Option<String>,
    /// Verified client certificate.
    pub client: Option<&'a PeerIdentity>,
}

pub(super) fn proxy_header(
    version: ProxyProtocol,
    conn: &ConnInfo,
    tls: &crate::tls::ServerConn,
) -> io::Result<Vec<u8>> {
    let facts = TlsFacts {
        sni: tls.server_name(),
        alpn: tls.alpn_protocol(),
        version: tls.protocol_version().map(crate::metrics::names::version),
        cipher: tls
            .negotiated_cipher_suite()
            .map(|c| crate::metrics::names::suite(c.suite())),
        client: conn.peer_identity.as_ref(),
    };
    encode_header(version, conn.peer, conn.local, &facts)
}

/// Encodes a PROXY header (pure; tested with the `ppp` parser).
#[doc(hidden)] // internal: reached by the fuzz targets through `__private`
pub fn encode_header(
    version: ProxyProtocol,
    peer: SocketAddr,
    local: SocketAddr,
    f: &TlsFacts<'_>,
) -> io::Result<Vec<u8>> {
    use ppp::v2::{Builder, Command, Protocol, Type, Version};
    if version == ProxyProtocol::V1 {
        return Ok(ppp::v1::Addresses::from((peer, local))
            .to_string()
            .into_bytes());
    }
    let mut b = Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (peer, local),
    );
    if let Some(alpn) = f.alpn {
        b = b.write_tlv(Type::ALPN, alpn)?;
    }
    if let Some(sni) = f.sni {
        b = b.write_tlv(Type::Authority, sni.as_bytes())?;
    }
    // PP2_TYPE_SSL: client flags, verify result (0 = verified), sub-TLVs.
    let flags = PP2_CLIENT_SSL
        | if f.client.is_some() {
            PP2_CLIENT_CERT_CONN
        } else {
            0
        };
    let mut ssl = vec![flags, 0, 0, 0, 0];
    let cn = f.client.and_then(|c| c.common_name.as_deref());
    for (kind, value) in [
        (PP2_SUBTYPE_SSL_VERSION, f.version.as_deref()),
        (PP2_SUBTYPE_SSL_CIPHER, f.cipher.as_deref()),
        (PP2_SUBTYPE_SSL_CN, cn),
    ] {
        if let Some(v) = value {
            let len = u16::try_from(v.len()).map_err(io::Error::other)?;
            ssl.push(kind);
            ssl.extend_from_slice(&len.to_be_bytes());
            ssl.extend_from_slice(v.as_bytes());
        }
    }
    b = b.write_tlv(Type::SSL, &ssl)?;
    if let Some(c) = f.client {
        b = b.write_tlv(PP2_TYPE_CLIENT_SUBJECT, c.subject.as_bytes())?;
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (SocketAddr, SocketAddr) {
        (
            "192.0.2.7:51000".parse().expect("peer"),
            "198.51.100.1:443".parse().expect("local"),
        )
    }

    #[test]
    fn v1_header_carries_both_addresses() {
        let (peer, local) = addrs();
        let h = encode_header(ProxyProtocol::V1, peer, local, &TlsFacts::default()).expect("v1");
        assert_eq!(h, b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 443\r\n");
    }

    #[test]
    fn v2_header_parses_back_with_addresses_and_tlvs() {
        let (peer, local) = addrs();
        let id = PeerIdentity {
            subject: "CN=alice, O=Example".into(),
            common_name: Some("alice".into()),
            cert: Vec::new().into(),
        };
        let f = TlsFacts {
            sni: Some("api.example.com"),
            alpn: Some(b"h2"),
            version: Some("TLSv1_3".into()),
            cipher: None,
            client: Some(&id),
        };
        let h = encode_header(ProxyProtocol::V2, peer, local, &f).expect("v2");
        let parsed = ppp::v2::Header::try_from(&h[..]).expect("parse");
        assert_eq!(parsed.addresses, ppp::v2::Addresses::from((peer, local)));
        let tlvs: Vec<(u8, Vec<u8>)> = parsed
            .tlvs()
            .map(|t| t.expect("tlv"))
            .map(|t| (t.kind, t.value.to_vec()))
            .collect();
        assert!(tlvs.contains(&(0x01, b"h2".to_vec())));
        assert!(tlvs.contains(&(0x02, b"api.example.com".to_vec())));
        assert!(tlvs.contains(&(PP2_TYPE_CLIENT_SUBJECT, b"CN=alice, O=Example".to_vec())));
        let ssl = &tlvs.iter().find(|t| t.0 == 0x20).expect("ssl tlv").1;
        assert_eq!(ssl[0], PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN);
        assert!(ssl.windows(5).any(|w| w == b"alice"));
    }
}
