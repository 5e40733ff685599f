//! The PROXY protocol header (v1 or v2) a load balancer in front sends
//! before the client's bytes (`accept_proxy`): read before the TLS
//! handshake, parsed with `ppp`, and turned into the client's address.
//!
//! ```text
//! balancer ─▶ "PROXY TCP4 203.0.113.7 198.51.100.1 51000 443\r\n" ClientHello...
//!             └──────────── read here ────────────────────┘ └ fed to TLS ┘
//! ```
//!
//! Bytes read past the header (the ClientHello, when it came in the same
//! segment) are handed back for the TLS session to take first. The read is
//! bounded by the caller (the handshake deadline and budget) and by
//! [`MAX_HEADER`].

use crate::io::Conn;
use ppp::v2::{Addresses, Command};
use ppp::{HeaderResult, PartialResult};
use std::net::SocketAddr;

/// Longest header accepted, bytes. A v1 header is at most 107; a v2 header
/// is 16 bytes plus its addresses and TLVs (a cloud balancer's TLVs take a
/// few hundred bytes).
pub(crate) const MAX_HEADER: usize = 4096;

/// What the header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A client's connection relayed by the balancer: its addresses.
    Client {
        /// The client's address.
        peer: SocketAddr,
        /// The address the client connected to (the balancer's).
        local: SocketAddr,
    },
    /// The balancer's own connection (v2 `LOCAL`, e.g. a health check; v1
    /// `UNKNOWN`; or addresses that are not IP): served with the
    /// connection's own addresses.
    Balancer,
}

/// A header read off the connection.
#[derive(Debug)]
pub(crate) struct Received {
    /// What it says.
    pub(crate) origin: Origin,
    /// Bytes read past it, for the TLS session to take first.
    pub(crate) rest: Vec<u8>,
}

/// Why no header could be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum HeaderError {
    /// The peer closed before sending anything (a balancer's TCP check).
    #[error("closed before sending a PROXY header")]
    Closed,
    /// The peer closed in the middle of the header.
    #[error("closed in the middle of the PROXY header")]
    Truncated,
    /// The bytes are not a PROXY header.
    #[error("not a PROXY protocol header: {0}")]
    Invalid(String),
    /// Longer than [`MAX_HEADER`].
    #[error("PROXY header longer than {MAX_HEADER} bytes")]
    TooLong,
    /// The socket read failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Parses the header at the start of `input`: `Ok(None)` while more bytes
/// are needed, else what it says and its length.
pub(crate) fn parse(input: &[u8]) -> Result<Option<(Origin, usize)>, HeaderError> {
    if v1_unfinished(input) {
        // `ppp` judges a v1 line cut short as invalid at some cuts (a port
        // cut at its end): a line is parsed whole, once its end is here.
        return match input.len() < V1_MAX {
            true => Ok(None),
            false => Err(HeaderError::TooLong),
        };
    }
    let res = HeaderResult::parse(input);
    if res.is_incomplete() {
        if input.len() >= MAX_HEADER || v2_claims_too_long(input) {
            return Err(HeaderError::TooLong);
        }
        return Ok(None);
    }
    match res {
        HeaderResult::V1(Ok(h)) => {
            use ppp::v1::Addresses as A;
            let origin = match h.addresses {
                A::Tcp4(a) => Origin::Client {
                    peer: (a.source_address, a.source_port).into(),
                    local: (a.destination_address, a.destination_port).into(),
                },
                A::Tcp6(a) => Origin::Client {
                    peer: (a.source_address, a.source_port).into(),
                    local: (a.destination_address, a.destination_port).into(),
                },
                A::Unknown => Origin::Balancer,
            };
            Ok(Some((origin, h.header.len())))
        }
        HeaderResult::V2(Ok(h)) => {
            let origin = match (h.command, h.addresses) {
                (Command::Proxy, Addresses::IPv4(a)) => Origin::Client {
                    peer: (a.source_address, a.source_port).into(),
                    local: (a.destination_address, a.destination_port).into(),
                },
                (Command::Proxy, Addresses::IPv6(a)) => Origin::Client {
                    peer: (a.source_address, a.source_port).into(),
                    local: (a.destination_address, a.destination_port).into(),
                },
                // LOCAL, or addresses we cannot use (unspecified, unix).
                _ => Origin::Balancer,
            };
            Ok(Some((origin, h.len())))
        }
        HeaderResult::V1(Err(ppp::v1::BinaryParseError::Parse(
            ppp::v1::ParseError::HeaderTooLong,
        ))) => Err(HeaderError::TooLong),
        HeaderResult::V1(Err(e)) => Err(HeaderError::Invalid(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(HeaderError::Invalid(e.to_string())),
    }
}

/// Longest v1 header, its `\r\n` included.
const V1_MAX: usize = 107;

/// Whether `input` is (the start of) a v1 header without its end yet.
fn v1_unfinished(input: &[u8]) -> bool {
    const PREFIX: &[u8] = b"PROXY ";
    let n = input.len().min(PREFIX.len());
    input[..n] == PREFIX[..n] && !input.windows(2).any(|w| w == b"\r\n")
}

/// Whether `input` starts a v2 header whose length field is past
/// [`MAX_HEADER`] (refused before the rest is read).
fn v2_claims_too_long(input: &[u8]) -> bool {
    match input {
        [head @ .., hi, lo] if head.len() == V2_FIXED - 2 => {
            head.starts_with(ppp::v2::PROTOCOL_PREFIX)
                && V2_FIXED + usize::from(u16::from_be_bytes([*hi, *lo])) > MAX_HEADER
        }
        _ if input.len() > V2_FIXED => v2_claims_too_long(&input[..V2_FIXED]),
        _ => false,
    }
}

/// Bytes of a v2 header before its addresses: signature, version and
/// command, family and protocol, length.
const V2_FIXED: usize = 16;

/// Reads the header off `conn`. Unbounded in time: the caller puts the
/// deadline around it.
pub(crate) async fn read(conn: &Conn) -> Result<Received, HeaderError> {
    let mut got: Vec<u8> = Vec::new();
    loop {
        let chunk = conn
            .recv(None, 512, crate::tls::stream::READ_BUF)
            .await
            .map_err(HeaderError::Io)?;
        if chunk.is_empty() {
            return Err(if got.is_empty() {
                HeaderError::Closed
            } else {
                HeaderError::Truncated
            });
        }
        got.extend_from_slice(&chunk);
        drop(chunk);
        if let Some((origin, len)) = parse(&got)? {
            got.drain(..len);
            return Ok(Received { origin, rest: got });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    fn v2(command: Command, peer: &str, local: &str) -> Vec<u8> {
        ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | command,
            ppp::v2::Protocol::Stream,
            (addr(peer), addr(local)),
        )
        .build()
        .expect("v2 header")
    }

    #[test]
    fn v1_tcp4_and_tcp6_give_the_clients_address_and_their_length() {
        let h = b"PROXY TCP4 203.0.113.7 198.51.100.1 51000 443\r\n";
        let mut input = h.to_vec();
        input.extend_from_slice(b"\x16\x03\x01");
        let (origin, len) = parse(&input).expect("valid").expect("complete");
        assert_eq!(
            origin,
            Origin::Client {
                peer: addr("203.0.113.7:51000"),
                local: addr("198.51.100.1:443"),
            }
        );
        assert_eq!(len, h.len(), "the ClientHello after it is not taken");
        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 443\r\n";
        let (origin, len) = parse(h).expect("valid").expect("complete");
        assert_eq!(
            origin,
            Origin::Client {
                peer: addr("[2001:db8::7]:51000"),
                local: addr("[2001:db8::1]:443"),
            }
        );
        assert_eq!(len, h.len());
    }

    #[test]
    fn v1_unknown_is_the_balancers_own_connection() {
        let h = b"PROXY UNKNOWN\r\n";
        assert_eq!(parse(h).expect("valid"), Some((Origin::Balancer, h.len())));
    }

    #[test]
    fn v2_proxy_gives_the_client_and_local_gives_the_balancer() {
        let mut h = v2(Command::Proxy, "203.0.113.7:51000", "198.51.100.1:443");
        let len = h.len();
        h.extend_from_slice(b"\x16\x03\x01\x02\x00");
        assert_eq!(
            parse(&h).expect("valid"),
            Some((
                Origin::Client {
                    peer: addr("203.0.113.7:51000"),
                    local: addr("198.51.100.1:443"),
                },
                len
            ))
        );
        let h = v2(Command::Proxy, "[2001:db8::7]:1", "[2001:db8::1]:443");
        assert!(matches!(
            parse(&h).expect("valid"),
            Some((Origin::Client { peer, .. }, _)) if peer == addr("[2001:db8::7]:1")
        ));
        // LOCAL as HAProxy writes it for its checks: no addresses.
        let mut local = ppp::v2::PROTOCOL_PREFIX.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(parse(&local).expect("valid"), Some((Origin::Balancer, 16)));
        // LOCAL with addresses: they are ignored.
        let h = v2(Command::Local, "203.0.113.7:51000", "198.51.100.1:443");
        assert_eq!(
            parse(&h).expect("valid").map(|(o, _)| o),
            Some(Origin::Balancer)
        );
    }

    #[test]
    fn a_truncated_header_asks_for_more_at_every_cut() {
        let v1 = b"PROXY TCP4 203.0.113.7 198.51.100.1 51000 443\r\n".to_vec();
        let v2 = v2(Command::Proxy, "203.0.113.7:51000", "198.51.100.1:443");
        for h in [v1, v2] {
            for cut in 0..h.len() {
                assert!(
                    matches!(parse(&h[..cut]), Ok(None)),
                    "{cut} of {} bytes: {:?}",
                    h.len(),
                    parse(&h[..cut])
                );
            }
            assert!(matches!(parse(&h), Ok(Some(_))));
        }
    }

    #[test]
    fn garbage_and_a_bare_client_hello_are_not_headers() {
        for bad in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"GET / HTTP/1.1\r\n",
            b"PROXY TCP4 nonsense 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 203.0.113.7 198.51.100.1 51000 99999\r\n",
            b"PROXY UDP4 203.0.113.7 198.51.100.1 1 2\r\n",
            // A v2 signature with version 1.
            b"\r\n\r\n\0\r\nQUIT\n\x11\x11\x00\x0c",
        ] {
            let e = parse(bad).expect_err("refused");
            assert!(matches!(e, HeaderError::Invalid(_)), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn oversized_headers_are_refused_before_they_are_read() {
        // v1 without its end past 107 bytes.
        let long = format!("PROXY TCP4 {}", "1".repeat(120));
        assert!(matches!(parse(long.as_bytes()), Err(HeaderError::TooLong)));
        // v2 announcing 60000 bytes: refused on its first 16.
        let mut h = ppp::v2::PROTOCOL_PREFIX.to_vec();
        h.extend_from_slice(&[0x21, 0x11]);
        h.extend_from_slice(&60000u16.to_be_bytes());
        assert!(matches!(parse(&h), Err(HeaderError::TooLong)));
        // Up to the limit is fine.
        let mut h = ppp::v2::PROTOCOL_PREFIX.to_vec();
        h.extend_from_slice(&[0x21, 0x11]);
        let body = (MAX_HEADER - 16) as u16;
        h.extend_from_slice(&body.to_be_bytes());
        h.extend_from_slice(&[127, 0, 0, 2, 127, 0, 0, 1, 0, 1, 1, 187]);
        h.resize(MAX_HEADER, 0x04); // NOOP TLVs' type byte, as filler
        assert!(matches!(parse(&h[..MAX_HEADER - 1]), Ok(None)));
        assert!(matches!(
            parse(&h),
            Ok(Some((Origin::Client { .. }, MAX_HEADER)))
        ));
    }
}
