//! `proxy`: TLS termination in front of plain TCP upstreams.
//!
//! Per connection: pick the pool (the route that best matches the client's
//! server name and ALPN, else the default pool `upstream`; see `route.rs`),
//! pick an upstream of it (round robin over the healthy ones), connect
//! within `upstream_connect_timeout`, optionally send a PROXY protocol
//! v1/v2 header, then pump bytes both ways with [`duplex::splice`]
//! (half-close and backpressure included; design in
//! `docs/design/proxy.md`).
//!
//! An upstream that fails to connect is marked down for
//! `upstream_fail_timeout` and skipped meanwhile; the connection tries the
//! next healthy one of its pool. With `health_interval`, a checker thread
//! also connects to every upstream and takes one out of its pool after
//! `health_fails` failures in a row, until `health_passes` passes (see
//! `health.rs`). If none connects, or no route matches and there is no
//! default pool, the client gets a clean close (`close_notify`, FIN) and
//! `uringtls_upstream_errors_total{kind}` moves (`unavailable`,
//! `no_route`). With `upstream_http` (the upstreams speak HTTP/1.1) and a
//! client that negotiated `http/1.1` or no ALPN, the client first gets a
//! `502 Bad Gateway` answer to its request (`bad_gateway`).
//!
//! Upstream names are resolved when the proxy is built ([`Proxy::new`],
//! before the binary binds its listeners) and at each reload, then again every
//! `resolve_interval` on a thread of the proxy's own (`proxy-resolve`,
//! `resolve.rs`): a DNS lookup blocks, so it never runs on a shard. A
//! shard reads an upstream's current address once per connect (an
//! [`ArcSwap`] load). The settings carry names as written
//! ([`UpstreamAddr`]); only an IP literal needs no resolver.
//!
//! The routing table lives in an [`ArcSwap`], replaced whole on reload
//! (upstreams unchanged keep their health and counters); connections
//! already proxied keep their upstream.
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
mod health;
mod pool;
mod resolve;
mod route;
mod stats;
pub mod upstream_tls;

use header::proxy_header;
#[doc(hidden)] // internal: reached by the fuzz targets through `__private`
pub use header::{encode_header, TlsFacts, PP2_TYPE_CLIENT_SUBJECT};
pub use health::{
    HealthSettings, DEFAULT_HEALTH_FAILS, DEFAULT_HEALTH_PASSES, MIN_HEALTH_INTERVAL,
};
use pool::Pools;
pub use pool::DEFAULT_POOL;
pub use resolve::{
    Resolve, ResolveError, SystemResolver, DEFAULT_RESOLVE_INTERVAL, MIN_RESOLVE_INTERVAL,
};
pub use route::{check_routes, NamePattern, RouteError, RouteKey, RouteOption};
pub use stats::ProxyMetrics;
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

/// An upstream as configured (`HOST:PORT`, `[v6]:PORT`), not resolved:
/// the proxy resolves a name when it is built, at each reload and every
/// [`ProxySettings::resolve_interval`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamAddr {
    /// As written in the configuration (metrics and logs name it so).
    pub name: String,
    /// Its host: an IP address (used as is) or a name to resolve.
    pub host: UpstreamHost,
    /// Its port.
    pub port: u16,
}

/// The host part of an [`UpstreamAddr`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UpstreamHost {
    /// An IP literal: no resolver involved, never re-resolved.
    Ip(std::net::IpAddr),
    /// A name, resolved by the proxy's [`Resolve`].
    Name(String),
}

/// The text is not `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not HOST:PORT")]
pub struct NotHostPort(pub String);

impl std::str::FromStr for UpstreamAddr {
    type Err = NotHostPort;

    /// Parses `HOST:PORT` or `[v6]:PORT`; an IP host is parsed here, a
    /// name is kept for the resolver.
    fn from_str(s: &str) -> Result<UpstreamAddr, NotHostPort> {
        let bad = || NotHostPort(s.to_owned());
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        let host = match host.parse() {
            Ok(ip) => UpstreamHost::Ip(ip),
            Err(_) => UpstreamHost::Name(host.to_owned()),
        };
        Ok(UpstreamAddr {
            name: s.to_owned(),
            host,
            port,
        })
    }
}

impl From<SocketAddr> for UpstreamAddr {
    /// An upstream at an IP address (named by it).
    fn from(a: SocketAddr) -> UpstreamAddr {
        UpstreamAddr {
            name: a.to_string(),
            host: UpstreamHost::Ip(a.ip()),
            port: a.port(),
        }
    }
}

impl UpstreamAddr {
    /// The address of an IP literal; `None` for a name.
    pub fn literal(&self) -> Option<SocketAddr> {
        match self.host {
            UpstreamHost::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            UpstreamHost::Name(_) => None,
        }
    }
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
    /// Routes by server name and ALPN, each to a pool of its own;
    /// `upstreams` is the default pool.
    pub routes: Vec<Route>,
    /// Active health checks (`None`: off, the default).
    pub health: Option<HealthSettings>,
    /// TLS to the upstreams (`upstream_tls`), loaded; `None`: plain TCP.
    pub tls: Option<Arc<UpstreamTls>>,
    /// How often upstream names are resolved again while running (`None`:
    /// never, the default here; the binary's default is
    /// [`DEFAULT_RESOLVE_INTERVAL`]).
    pub resolve_interval: Option<Duration>,
}

/// A route and its upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// What it matches.
    pub key: RouteKey,
    /// Its pool, in round-robin order.
    pub upstreams: Vec<UpstreamAddr>,
}

/// The proxy service. Clones share the routing table, so the binary keeps
/// one to [`reload`](Proxy::reload) it.
#[derive(Clone)]
pub struct Proxy {
    pools: Arc<ArcSwap<Pools>>,
    checker: Arc<health::Checker>,
    resolver: Arc<dyn Resolve>,
    refresher: Arc<resolve::Refresher>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("pools", &self.pools)
            .finish_non_exhaustive()
    }
}

/// New proxy settings with their names resolved, ready to
/// [`commit`](Proxy::commit) (see [`Proxy::prepare`]).
#[derive(Debug)]
pub struct Prepared(Pools);

impl Proxy {
    /// A proxy to `settings.upstreams` and routes, names resolved by the
    /// system's resolver ([`SystemResolver`]); starts the health checker
    /// thread if `settings.health` asks for checks, and the re-resolution
    /// thread if `settings.resolve_interval` is set and a name is
    /// configured. A name that does not resolve is an error naming it.
    pub fn new(settings: ProxySettings) -> Result<Proxy, ResolveError> {
        Proxy::with_resolver(settings, Arc::new(SystemResolver))
    }

    /// [`new`](Self::new) with names resolved by `resolver`, now, at each
    /// reload and on the interval (a test's fake, a resolver of your own).
    pub fn with_resolver(
        settings: ProxySettings,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Proxy, ResolveError> {
        let addrs = resolve::resolve_all(&settings, &*resolver, None)?;
        let pools = Pools::new(settings, None, &addrs);
        pools.activate();
        let p = Proxy {
            pools: Arc::new(ArcSwap::from_pointee(pools)),
            checker: Arc::default(),
            resolver,
            refresher: Arc::default(),
        };
        p.checker.update(&p.pools);
        p.refresher.update(&p.pools, &p.resolver, p.checker.waker());
        Ok(p)
    }

    /// Replaces the upstreams, routes, health and resolution settings (new
    /// connections only): [`prepare`](Self::prepare) then
    /// [`commit`](Self::commit). On error nothing changed.
    pub fn reload(&self, settings: ProxySettings) -> Result<(), ResolveError> {
        let p = self.prepare(settings)?;
        self.commit(p);
        Ok(())
    }

    /// Resolves the names of `settings` and builds the new routing table,
    /// changing nothing yet (the binary prepares every listener's proxy
    /// before it swaps anything). A name new to this proxy that does not
    /// resolve is an error; a name already in service that fails keeps its
    /// current address (logged). Upstreams unchanged (same pool, name and
    /// address) keep their health and counters.
    pub fn prepare(&self, settings: ProxySettings) -> Result<Prepared, ResolveError> {
        let old = self.pools.load_full();
        let addrs = resolve::resolve_all(&settings, &*self.resolver, Some(&old))?;
        Ok(Prepared(Pools::new(settings, Some(&old), &addrs)))
    }

    /// Installs what [`prepare`](Self::prepare) built (new connections
    /// only; connections already proxied keep their upstream); the health
    /// checker starts a round at once, the re-resolution thread a new
    /// wait (the names were just resolved).
    pub fn commit(&self, p: Prepared) {
        p.0.activate();
        self.pools.store(Arc::new(p.0));
        self.checker.update(&self.pools);
        self.refresher
            .update(&self.pools, &self.resolver, self.checker.waker());
    }

    /// The per-upstream metrics (`uringtls_upstream_*`), a collector the
    /// binary adds to its `/metrics` page.
    pub fn metrics(&self) -> Arc<ProxyMetrics> {
        Arc::new(ProxyMetrics::new(&self.pools))
    }
}

impl Service for Proxy {
    async fn serve(&self, stream: &mut ServerStream, conn: &ConnInfo) -> io::Result<()> {
        let pools = self.pools.load_full();
        let counters = &conn.shard.counters;
        let tls = stream.tls();
        let Some(pool) = pools.pick(tls.server_name(), tls.alpn_protocol()) else {
            conn.count_upstream_error("no_route");
            tracing::debug!(peer = %conn.peer, sni = ?tls.server_name(), "no route and no default pool; closing the client connection");
            if pools.settings.upstream_http && speaks_http1(stream.tls()) {
                return bad_gateway(stream).await;
            }
            return Ok(());
        };
        let Some((upstream, up)) = pool.connect().await else {
            Counters::bump(&counters.upstream_failures);
            // Counted; logged at debug only, so that a dead backend cannot
            // flood the log at the client connection rate (going down is
            // logged once per upstream).
            tracing::debug!(peer = %conn.peer, "no upstream reachable; closing the client connection");
            if pools.settings.upstream_http && speaks_http1(stream.tls()) {
                return bad_gateway(stream).await;
            }
            return Ok(());
        };
        Counters::bump(&counters.proxied);
        let _active = up.stats.open();
        if let Some(version) = pools.settings.proxy_protocol {
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
        if let Some(tls) = &pools.settings.tls {
            let limit = pools.settings.connect_timeout;
            let alpn = stream.tls().alpn_protocol();
            let mut up_tls = match tls.handshake(upstream, up, alpn, limit).await {
                Ok(s) => s,
                Err(f) => {
                    let http = pools.settings.upstream_http;
                    return upstream_tls_failed(stream, conn, tls, up, f, http).await;
                }
            };
            return relayed(relay::relay(stream, &mut up_tls, idle).await, conn, up);
        }
        match duplex::splice(stream, &upstream, idle).await {
            Ok(stats) => {
                up.stats.relayed(stats.to_plain, stats.from_plain);
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
    up: &pool::Upstream,
    f: upstream_tls::HandshakeFailure,
    upstream_http: bool,
) -> io::Result<()> {
    stats::UpstreamStats::bump(&up.stats.tls_failures);
    conn.count_upstream_error(f.kind);
    if tls.warn_now() {
        tracing::warn!(upstream = %up.name, kind = f.kind, error = %f.error, "upstream TLS handshake failed; closing the client connection");
    } else {
        tracing::debug!(upstream = %up.name, kind = f.kind, error = %f.error, "upstream TLS handshake failed");
    }
    if upstream_http && speaks_http1(stream.tls()) {
        return bad_gateway(stream).await;
    }
    Ok(())
}

/// The outcome of a TLS-to-TLS relay, as the plain splice's.
fn relayed(
    res: io::Result<duplex::SpliceStats>,
    conn: &ConnInfo,
    up: &pool::Upstream,
) -> io::Result<()> {
    match res {
        Ok(stats) => {
            up.stats.relayed(stats.to_plain, stats.from_plain);
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
