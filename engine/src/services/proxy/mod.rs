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
//!
//! With `upstream_tls` the upstream connection is TLS too
//! ([`upstream_tls`]: verified, resumed from a client session cache shared
//! by all shards), and the bytes are pumped by [`relay::relay`] between
//! the two sessions instead of [`duplex::splice`].

use super::{ConnInfo, Service};
use crate::metrics::Counters;
use crate::tls::{duplex, ServerStream};
use arc_swap::ArcSwap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use uringtls_runtime::tls::relay;

mod header;
mod pool;
pub mod upstream_tls;

use header::proxy_header;
#[doc(hidden)] // internal: reached by the fuzz targets through `__private`
pub use header::{encode_header, TlsFacts, PP2_TYPE_CLIENT_SUBJECT};
use pool::Pool;
use upstream_tls::UpstreamTls;

/// Default time allowed to connect to an upstream.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time an upstream that failed is skipped.
pub const DEFAULT_FAIL_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle limit of a proxied connection when the stream has no read timeout.
const FALLBACK_IDLE: Duration = Duration::from_secs(3600);

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
    /// TLS to the upstreams (`upstream_tls`), loaded; `None`: plain TCP.
    pub tls: Option<Arc<UpstreamTls>>,
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
        if let Some(tls) = &pool.settings.tls {
            let limit = pool.settings.connect_timeout;
            let alpn = stream.tls().alpn_protocol();
            let mut up_tls = match tls.handshake(upstream, up, alpn, limit).await {
                Ok(s) => s,
                Err(f) => return upstream_tls_failed(stream, conn, tls, up, f, &pool).await,
            };
            return relayed(relay::relay(stream, &mut up_tls, idle).await, conn, up);
        }
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

/// The upstream's TLS handshake failed: counted by kind (a refused
/// certificate as `tls_verify_*`), logged at warn at most every few
/// seconds, and the client closed as when no upstream connects.
async fn upstream_tls_failed(
    stream: &mut ServerStream,
    conn: &ConnInfo,
    tls: &UpstreamTls,
    up: &UpstreamAddr,
    f: upstream_tls::HandshakeFailure,
    pool: &Pool,
) -> io::Result<()> {
    // Here a per-upstream counter (`up.name`, `f.kind`) can join.
    conn.count_upstream_error(f.kind);
    if tls.warn_now() {
        tracing::warn!(upstream = %up.name, kind = f.kind, error = %f.error, "upstream TLS handshake failed; closing the client connection");
    } else {
        tracing::debug!(upstream = %up.name, kind = f.kind, error = %f.error, "upstream TLS handshake failed");
    }
    if pool.settings.upstream_http && speaks_http1(stream.tls()) {
        return bad_gateway(stream).await;
    }
    Ok(())
}

/// The outcome of a TLS-to-TLS relay, as the plain splice's.
fn relayed(
    res: io::Result<duplex::SpliceStats>,
    conn: &ConnInfo,
    up: &UpstreamAddr,
) -> io::Result<()> {
    match res {
        Ok(stats) => {
            tracing::debug!(peer = %conn.peer, upstream = %up.name, up = stats.to_plain, down = stats.from_plain, "proxied over TLS");
            if stats.peer_eof {
                return Err(crate::metrics::CloseReason::Eof.error(io::ErrorKind::UnexpectedEof));
            }
            Ok(())
        }
        Err(e) => {
            if e.get_ref().is_some_and(|i| i.is::<relay::UpstreamSide>()) {
                conn.count_upstream_error("tls_relay");
                tracing::debug!(peer = %conn.peer, upstream = %up.name, error = %e, "upstream ended the relay");
                // The client is not at fault: its connection ends as an
                // error of ours, not of its TLS.
                return Err(crate::metrics::CloseReason::Error.error(e.kind()));
            }
            Err(e)
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
