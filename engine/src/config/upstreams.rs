//! Upstream addresses (`upstream`, a route's upstreams): `HOST:PORT`
//! parsing, checked per source, and resolution of each name to its first
//! address when the settings are resolved (at start and at each reload).

use super::UpstreamError;

/// Splits `HOST:PORT` (`[v6]:PORT` too); `None` if it is not that.
pub(super) fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host, port.parse().ok()?)).filter(|(h, _)| !h.is_empty())
}

/// Resolves each `HOST:PORT` (first address of each name).
pub(super) fn resolve_upstreams(
    list: &[String],
) -> Result<Vec<crate::services::proxy::UpstreamAddr>, UpstreamError> {
    use std::net::ToSocketAddrs;
    list.iter()
        .map(|u| {
            let (host, port) =
                split_host_port(u).ok_or_else(|| UpstreamError::NotHostPort(u.clone()))?;
            let addr = (host, port)
                .to_socket_addrs()
                .map_err(|source| UpstreamError::Resolve {
                    upstream: u.clone(),
                    source,
                })?
                .next()
                .ok_or_else(|| UpstreamError::NoAddress(u.clone()))?;
            Ok(crate::services::proxy::UpstreamAddr {
                name: u.clone(),
                addr,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{file, flags, refused_file};

    #[test]
    fn an_unresolvable_upstream_from_the_file_names_the_file_not_a_flag() {
        // A 64-byte label is refused by the resolver itself: no DNS query leaves.
        let bad = format!("{}.invalid:80", "a".repeat(64));
        let (path, e) = refused_file(&format!("service = \"proxy\"\nupstream = [\"{bad}\"]\n"));
        assert!(
            e.starts_with(&format!("{path}: field `upstream`: cannot resolve")),
            "{e}"
        );
        let f = file(&format!("upstream = [\"{bad}\"]\n"));
        let p = f.path().to_str().expect("utf8");
        let e = flags(&["--config", p, "--upstream", &bad])
            .resolve()
            .expect_err("refused")
            .to_string();
        assert!(e.starts_with("flag --upstream: cannot resolve"), "{e}");
    }
}
