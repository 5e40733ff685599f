//! `proxy`: TLS termination in front of plain TCP upstreams.
//!
//! Per connection: pick an upstream (round robin over the healthy ones),
//! connect within `upstream_connect_timeout`, optionally send a PROXY
//! protocol v1/v2 header, then pump bytes both ways with
//! [`duplex::splice`] (half-close and
//! backpressure included; design in `docs/design/proxy.md`).
//!
//! An upstream that fails to connect is marked down for
//! `upstream_fail_timeout` and skipped meanwhile; the connection tries the
//! next healthy one. If none connects, the client gets a clean close
//! (`close_notify`, FIN) and the shard's `upstream_failures` counter moves.
//! With `upstream_http` (the upstreams speak HTTP/1.1) and a client that
//! negotiated `http/1.1` or no ALPN, the client first gets a
//! `502 Bad Gateway` answer to its request (`bad_gateway`).
//!
//! Upstream names are resolved at start and at each reload only (a DNS
//! lookup would block the shard): after a DNS change, reload.
//!
//! The upstream list lives in an [`ArcSwap`], replaced whole on reload;
//! connections already proxied keep their upstream.

use super::{ConnInfo, Service};
use crate::io::Conn;
use crate::metrics::Counters;
use crate::tls::{duplex, PeerIdentity, ServerStream};
use arc_swap::ArcSwap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Default time allowed to connect to an upstream.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time an upstream that failed is skipped.
pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle limit of a proxied connection when the stream has no read timeout.
const FALLBACK_IDLE: Duration = Duration::from_secs(3600);
/// PROXY v2 TLV carrying the client certificate's full subject DN (from
/// the custom range 0xE0..=0xEF; documented in `docs/deployment.md`).
#[doc(hidden)] // internal: reached by the fuzz targets through `__private`
pub const PP2_TYPE_CLIENT_SUBJECT: u8 = 0xE0;
const PP2_CLIENT_SSL: u8 = 0x01;
const PP2_CLIENT_CERT_CONN: u8 = 0x02;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
const PP2_SUBTYPE_SSL_CIPHER: u8 = 0x23;

/// Which PROXY protocol header to send to upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// Text header: client and local address only.
    V1,
    /// Binary header with TLVs: ALPN, SNI (authority), TLS version and
    /// cipher, client-certificate CN and subject.
    V2,
}

/// An upstream as configured (`HOST:PORT`) and as resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAddr {
    /// As written in the configuration.
    pub name: String,
    /// Resolved address (at start and at each reload).
    pub addr: SocketAddr,
}

/// Proxy settings.
#[derive(Debug, Clone, Default)]
pub struct ProxySettings {
    /// Upstreams, in round-robin order.
    pub upstreams: Vec<UpstreamAddr>,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time an upstream that failed is skipped.
    pub fail_timeout: Duration,
    /// Header to send first, if any.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// The upstreams speak HTTP/1.1: a client that cannot be relayed gets
    /// `502 Bad Gateway` before the close. Default false.
    pub upstream_http: bool,
}

/// The upstreams and their health; shared by all shards, replaced on reload.
#[derive(Debug)]
pub(crate) struct Pool {
    settings: ProxySettings,
    /// Milliseconds since `epoch` until which upstream `i` is skipped.
    down_until: Vec<AtomicU64>,
    next: AtomicUsize,
    epoch: Instant,
}

impl Pool {
    /// A pool with every upstream healthy.
    pub fn new(settings: ProxySettings) -> Pool {
        let down_until = settings
            .upstreams
            .iter()
            .map(|_| AtomicU64::new(0))
            .collect();
        Pool {
            settings,
            down_until,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    fn ms(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Upstream indices to try at `now`: the healthy ones in round-robin
    /// order; if all are down, the next one anyway (one attempt, so that
    /// recovery is noticed without waiting out the fail timeout).
    pub fn order(&self, now: Instant) -> Vec<usize> {
        let n = self.down_until.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let t = self.ms(now);
        let healthy: Vec<usize> = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.down_until[i].load(Ordering::Relaxed) <= t)
            .collect();
        if healthy.is_empty() {
            vec![start]
        } else {
            healthy
        }
    }

    /// Marks upstream `i` down from `now` for the fail timeout; true if it
    /// was up (so that a down upstream is logged once, not per connection).
    pub fn mark_down(&self, i: usize, now: Instant) -> bool {
        let t = self.ms(now);
        let until = t.saturating_add(self.settings.fail_timeout.as_millis() as u64);
        self.down_until
            .get(i)
            .is_some_and(|d| d.swap(until, Ordering::Relaxed) <= t)
    }

    /// Connects to the first upstream of [`order`](Self::order) that answers.
    async fn connect(&self) -> Option<(Conn, &UpstreamAddr)> {
        for i in self.order(Instant::now()) {
            let up = &self.settings.upstreams[i];
            let attempt = Conn::connect(up.addr);
            let problem =
                match crate::io::time::timeout(self.settings.connect_timeout, attempt).await {
                    Ok(Ok(c)) => {
                        let _ = c.set_nodelay(true);
                        return Some((c, up));
                    }
                    Ok(Err(e)) => format!("upstream connect failed: {e}"),
                    Err(_) => "upstream connect timed out".to_string(),
                };
            if self.mark_down(i, Instant::now()) {
                let skip = self.settings.fail_timeout;
                tracing::warn!(upstream = %up.name, ?skip, "{problem}; skipping it for a while");
            } else {
                tracing::debug!(upstream = %up.name, "{problem}");
            }
        }
        None
    }
}

/// The proxy service. Clones share the upstream pool, so the binary keeps
/// one to [`reload`](Proxy::reload) it.
#[derive(Debug, Clone)]
pub struct Proxy {
    pool: Arc<ArcSwap<Pool>>,
}

impl Proxy {
    /// A proxy to `settings.upstreams`.
    pub fn new(settings: ProxySettings) -> Proxy {
        Proxy {
            pool: Arc::new(ArcSwap::from_pointee(Pool::new(settings))),
        }
    }

    /// Replaces the upstreams (new connections only; health starts fresh).
    pub fn reload(&self, settings: ProxySettings) {
        self.pool.store(Arc::new(Pool::new(settings)));
    }
}

impl Service for Proxy {
    async fn serve(&self, stream: &mut ServerStream, conn: &ConnInfo) -> io::Result<()> {
        let pool = self.pool.load_full();
        let counters = &conn.shard.counters;
        let Some((upstream, up)) = pool.connect().await else {
            Counters::bump(&counters.upstream_failures);
            // Counted; logged at debug only, so that a dead backend cannot
            // flood the log at the client connection rate (going down is
            // logged once per upstream).
            tracing::debug!(peer = %conn.peer, "no upstream reachable; closing the client connection");
            if pool.settings.upstream_http && speaks_http1(stream.tls()) {
                return bad_gateway(stream).await;
            }
            return Ok(());
        };
        Counters::bump(&counters.proxied);
        if let Some(version) = pool.settings.proxy_protocol {
            let header = proxy_header(version, conn, stream.tls())?;
            let (res, _) = upstream.write_all(header).await;
            if let Err(e) = res {
                Counters::bump(&counters.upstream_failures);
                tracing::warn!(upstream = %up.name, error = %e, "upstream closed before the PROXY header was sent");
                upstream.abort();
                return Ok(());
            }
        }
        let idle = stream.read_timeout().unwrap_or(FALLBACK_IDLE);
        match duplex::splice(stream, &upstream, idle).await {
            Ok(stats) => {
                tracing::debug!(peer = %conn.peer, upstream = %up.name, up = stats.to_plain, down = stats.from_plain, "proxied");
                if stats.peer_eof {
                    // Both directions ended; the client's end was a FIN
                    // without close_notify: counted as `eof`.
                    return Err(
                        crate::metrics::CloseReason::Eof.error(io::ErrorKind::UnexpectedEof)
                    );
                }
                Ok(())
            }
            Err(e) => {
                upstream.abort();
                Err(e)
            }
        }
    }
}

/// Body of the `502 Bad Gateway` answer.
const BAD_GATEWAY_BODY: &str = "no upstream is reachable\n";
/// How long [`bad_gateway`] waits for the request head, and then for the
/// client to close after the answer.
const BAD_GATEWAY_WAIT: Duration = Duration::from_secs(2);
/// Request bytes [`bad_gateway`] reads (and drops) at most, before and
/// after its answer.
const BAD_GATEWAY_READ_MAX: usize = 64 * 1024;

/// Whether the client talks HTTP/1.x: ALPN `http/1.1` or `http/1.0`, or no
/// ALPN at all (with `upstream_http` set, the upstream protocol is HTTP).
fn speaks_http1(tls: &crate::tls::ServerConn) -> bool {
    matches!(
        tls.alpn_protocol(),
        None | Some(b"http/1.1") | Some(b"http/1.0")
    )
}

/// The whole `502` answer: status, `Connection: close`, a short body.
pub(crate) fn bad_gateway_response() -> String {
    format!(
        "HTTP/1.1 502 Bad Gateway\r\nServer: uringtls\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BAD_GATEWAY_BODY}",
        BAD_GATEWAY_BODY.len()
    )
}

/// Answers `502 Bad Gateway`: waits (briefly) for the end of the request
/// head so that the answer follows the request, writes the answer and
/// `close_notify`, then reads what the client still sends until it closes
/// (also briefly), so that closing with unread input does not reset the
/// connection before the client has read the answer.
async fn bad_gateway(stream: &mut ServerStream) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let mut head: Vec<u8> = Vec::new();
    let wait_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < BAD_GATEWAY_READ_MAX {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    // A client gone, or one that sends no complete head in time, is
    // answered anyway (the answer may be lost; nothing more to do).
    let _ = crate::io::time::timeout(BAD_GATEWAY_WAIT, wait_head).await;
    stream.write_all(bad_gateway_response().as_bytes()).await?;
    stream.close().await?;
    let mut left = BAD_GATEWAY_READ_MAX;
    let linger = async {
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = crate::io::time::timeout(BAD_GATEWAY_WAIT, linger).await;
    Ok(())
}

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

fn proxy_header(
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

    fn pool(n: usize) -> Pool {
        let upstreams = (0..n)
            .map(|i| UpstreamAddr {
                name: format!("u{i}"),
                addr: SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
            })
            .collect();
        Pool::new(ProxySettings {
            upstreams,
            fail_timeout: Duration::from_secs(10),
            ..ProxySettings::default()
        })
    }

    #[test]
    fn round_robin_starts_one_further_each_time() {
        let p = pool(3);
        let now = Instant::now();
        let firsts: Vec<usize> = (0..4).map(|_| p.order(now)[0]).collect();
        assert_eq!(firsts, [0, 1, 2, 0]);
    }

    #[test]
    fn a_failed_upstream_is_skipped_until_the_fail_timeout_passes() {
        let p = pool(2);
        let now = Instant::now();
        p.mark_down(0, now);
        assert_eq!(p.order(now), [1]);
        assert_eq!(p.order(now + Duration::from_secs(5)), [1]);
        assert_eq!(p.order(now + Duration::from_secs(11)).len(), 2);
    }

    #[test]
    fn when_all_are_down_one_is_still_tried() {
        let p = pool(2);
        let now = Instant::now();
        p.mark_down(0, now);
        p.mark_down(1, now);
        assert_eq!(p.order(now).len(), 1);
    }

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
