//! The target: `https://HOST:PORT/PATH` or `HOST:PORT`, resolved once.

use std::net::{SocketAddr, ToSocketAddrs};

/// Why a target cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// A scheme other than `https://`.
    #[error("target `{target}`: scheme `{scheme}` is not supported (bench-client speaks TLS: use https://)")]
    Scheme {
        /// The target as given.
        target: String,
        /// Its scheme.
        scheme: String,
    },
    /// No `HOST:PORT` could be read.
    #[error("target `{target}`: cannot read HOST:PORT from `{authority}` (write e.g. https://127.0.0.1:8443/)")]
    HostPort {
        /// The target as given.
        target: String,
        /// The part that should have been `HOST:PORT`.
        authority: String,
    },
    /// The host name could not be resolved.
    #[error("target `{target}`: cannot resolve `{host}`: {source}")]
    Resolve {
        /// The target as given.
        target: String,
        /// The host.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The host name resolved to nothing.
    #[error("target `{target}`: `{host}` resolves to no address")]
    NoAddress {
        /// The target as given.
        target: String,
        /// The host.
        host: String,
    },
}

/// Where the load goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resolved address (the first one the resolver returns).
    pub addr: SocketAddr,
    /// Host as written (SNI default, `Host:` header).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Request path (HTTP workloads), `/` by default.
    pub path: String,
}

impl Target {
    /// Parses and resolves `s`.
    pub fn parse(s: &str) -> Result<Target, TargetError> {
        let target = || s.to_string();
        let rest = match s.split_once("://") {
            Some(("https", r)) => r,
            Some((scheme, _)) => {
                return Err(TargetError::Scheme {
                    target: target(),
                    scheme: scheme.to_string(),
                })
            }
            None => s,
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = split_host_port(authority).ok_or_else(|| TargetError::HostPort {
            target: target(),
            authority: authority.to_string(),
        })?;
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|source| TargetError::Resolve {
                target: target(),
                host: host.clone(),
                source,
            })?
            .next()
            .ok_or_else(|| TargetError::NoAddress {
                target: target(),
                host: host.clone(),
            })?;
        Ok(Target {
            addr,
            host,
            port,
            path: path.to_string(),
        })
    }

    /// `Host:` header value.
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn split_host_port(a: &str) -> Option<(String, u16)> {
    if let Some(rest) = a.strip_prefix('[') {
        let (h, p) = rest.split_once("]")?;
        let port = match p.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if p.is_empty() => 443,
            None => return None,
        };
        return Some((h.to_string(), port));
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => Some((h.to_string(), p.parse().ok()?)),
        Some(_) => None,
        None if !a.is_empty() => Some((a.to_string(), 443)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_with_path_and_bare_host_port_both_parse() {
        let t = Target::parse("https://127.0.0.1:8443/index.html").expect("url");
        assert_eq!(t.addr, "127.0.0.1:8443".parse().expect("addr"));
        assert_eq!(t.path, "/index.html");
        let t = Target::parse("127.0.0.1:9000").expect("bare");
        assert_eq!(t.path, "/");
        assert_eq!(t.host_header(), "127.0.0.1:9000");
        let t = Target::parse("https://[::1]:8443/").expect("v6");
        assert_eq!(t.host, "::1");
    }

    #[test]
    fn plaintext_scheme_is_refused_with_a_hint() {
        let e = Target::parse("http://127.0.0.1:80/").unwrap_err();
        assert!(matches!(&e, TargetError::Scheme { scheme, .. } if scheme == "http"));
        assert!(e.to_string().contains("use https://"), "{e}");
    }
}
