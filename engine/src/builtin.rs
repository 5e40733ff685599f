//! The built-in services behind one type, so that listeners with
//! different services share the shards' one service type (the binary's
//! `[[listener]]` tables): [`BuiltIn`] dispatches each connection to its
//! listener's service. Built from the binary's settings, it sits above
//! `services/` and `config/` (neither imports the other).

use crate::config::{ServiceKind, Settings};
use crate::services::proxy::{Proxy, ResolveError};
use crate::services::{echo::Echo, http::Http, ConnInfo, Service};
use crate::tls::ServerStream;
use std::io;

/// One listener's built-in service.
#[derive(Debug, Clone)]
pub enum BuiltIn {
    /// `echo`.
    Echo(Echo),
    /// `http`.
    Http(Http),
    /// `proxy` (a handle: reloads swap its upstreams).
    Proxy(Proxy),
}

impl BuiltIn {
    /// The service `s` asks for, with its settings. The proxy resolves its
    /// upstream names here (blocking; see [`Proxy::new`]): a name that
    /// does not resolve is the error.
    pub fn of(s: &Settings) -> Result<BuiltIn, ResolveError> {
        Ok(match s.service {
            ServiceKind::Echo => BuiltIn::Echo(Echo),
            ServiceKind::Http => BuiltIn::Http(http(s)),
            ServiceKind::Proxy => BuiltIn::Proxy(Proxy::new(s.proxy.clone())?),
        })
    }

    /// The proxy handle, if this is the proxy service.
    pub fn proxy(&self) -> Option<&Proxy> {
        match self {
            BuiltIn::Proxy(p) => Some(p),
            _ => None,
        }
    }
}

/// The http service of `s` (body, header and request limits).
pub fn http(s: &Settings) -> Http {
    let http = match s.body_size {
        Some(n) => Http::with_body_size(n, s.max_header),
        None => Http::new(crate::services::http::DEFAULT_BODY.to_vec(), s.max_header),
    };
    http.with_header_timeout(s.ops.header_timeout)
        .with_max_body(s.http.max_body)
        .with_request_timeout(s.http.request_timeout)
}

impl Service for BuiltIn {
    async fn serve(&self, stream: &mut ServerStream, conn: &ConnInfo) -> io::Result<()> {
        match self {
            BuiltIn::Echo(e) => e.serve(stream, conn).await,
            BuiltIn::Http(h) => h.serve(stream, conn).await,
            BuiltIn::Proxy(p) => p.serve(stream, conn).await,
        }
    }
}
