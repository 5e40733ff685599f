//! Upstream addresses (`upstream`, a route's upstreams): `HOST:PORT`
//! parsed, checked per source. No name is resolved here: the settings
//! carry each upstream as written (an IP literal parsed, a name kept), and
//! the proxy resolves names when it is built, at each reload and every
//! `upstream_resolve_interval` (`services/proxy/resolve.rs`).

use super::UpstreamError;
use crate::services::proxy::UpstreamAddr;

/// Whether `s` is `HOST:PORT` (`[v6]:PORT` too).
pub(super) fn is_host_port(s: &str) -> bool {
    s.parse::<UpstreamAddr>().is_ok()
}

/// Parses each `HOST:PORT`, resolving nothing.
pub(super) fn parse_upstreams(list: &[String]) -> Result<Vec<UpstreamAddr>, UpstreamError> {
    list.iter()
        .map(|u| u.parse().map_err(|_| UpstreamError::NotHostPort(u.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{file, flags, refused_file};
    use crate::services::proxy::UpstreamHost;

    /// A name no resolver accepts (a 64-byte label): if the configuration
    /// resolved names, no settings could be built with it.
    fn unresolvable() -> String {
        format!("{}.invalid:80", "a".repeat(64))
    }

    #[test]
    fn upstream_names_are_not_resolved_by_the_configuration() {
        let bad = unresolvable();
        let f = file(&format!(
            "service = \"proxy\"\nupstream = [\"{bad}\", \"127.0.0.1:9\"]\n\
             [[route]]\nsni = \"a.test\"\nupstreams = [\"{bad}\"]\n"
        ));
        let p = f.path().to_str().expect("utf8");
        let s = flags(&["--config", p]).resolve().expect("no DNS here");
        let up = &s.proxy.upstreams[0];
        assert_eq!(up.name, bad);
        assert_eq!(
            (&up.host, up.port),
            (&UpstreamHost::Name(bad[..bad.len() - 3].to_owned()), 80)
        );
        assert_eq!(up.literal(), None);
        assert_eq!(
            s.proxy.upstreams[1].literal(),
            Some("127.0.0.1:9".parse().expect("addr")),
            "an IP literal is parsed here"
        );
        assert_eq!(s.proxy.routes[0].upstreams[0].name, bad);
        // The proxy built from these settings resolves, and names it.
        let e = crate::services::proxy::Proxy::new(s.proxy).expect_err("does not resolve");
        assert_eq!(e.upstream(), bad);
        assert!(
            e.to_string().starts_with(&format!(
                "proxy upstream `{bad}` (in `upstream`) does not resolve"
            )),
            "{e}"
        );
    }

    #[test]
    fn a_malformed_upstream_is_still_a_config_error_naming_file_or_flag() {
        let (path, e) = refused_file("service = \"proxy\"\nupstream = [\"backend.test\"]\n");
        assert!(
            e.starts_with(&format!(
                "{path}: field `upstream`: `backend.test` is not HOST:PORT"
            )),
            "{e}"
        );
        let e = flags(&["--service", "proxy", "--upstream", "[::1]:http"])
            .resolve()
            .expect_err("refused")
            .to_string();
        assert!(
            e.starts_with("flag --upstream: `[::1]:http` is not HOST:PORT"),
            "{e}"
        );
    }
}
