//! Settings that were given but do nothing: each gets one sentence that
//! names the setting and what to change. They do not stop the start (the
//! configuration is valid), but an operator must not believe they apply.

use super::{Options, ServiceKind, TlsVersion};

impl Options {
    /// Warnings for merged options; `shards` is the shard count resolved,
    /// `cpus` the CPUs available to the process.
    pub(super) fn no_effect_warnings(&self, shards: usize, cpus: usize) -> Vec<String> {
        let mut w = Vec::new();
        let service = self.service.unwrap_or(ServiceKind::Http);
        if service != ServiceKind::Proxy {
            let name = if service == ServiceKind::Http {
                "http"
            } else {
                "echo"
            };
            let given = [
                ("upstream", self.upstream.is_some()),
                ("proxy_protocol", self.proxy_protocol.is_some()),
                ("upstream_http", self.upstream_http.is_some()),
                (
                    "upstream_connect_timeout",
                    self.upstream_connect_timeout.is_some(),
                ),
                (
                    "upstream_fail_timeout",
                    self.upstream_fail_timeout.is_some(),
                ),
                ("route", self.route.is_some()),
                ("health_interval", self.health_interval.is_some()),
                ("health_fails", self.health_fails.is_some()),
                ("health_passes", self.health_passes.is_some()),
                ("health_timeout", self.health_timeout.is_some()),
                ("upstream_tls", self.upstream_tls.is_some()),
                ("upstream_ca", self.upstream_ca.is_some()),
                ("upstream_sni", self.upstream_sni.is_some()),
                ("upstream_cert", self.upstream_cert.is_some()),
                ("upstream_key", self.upstream_key.is_some()),
                ("upstream_alpn", self.upstream_alpn.is_some()),
                (
                    "upstream_resolve_interval",
                    self.upstream_resolve_interval.is_some(),
                ),
            ];
            for (field, _) in given.iter().filter(|(_, set)| *set) {
                w.push(format!(
                    "`{field}` has no effect with the {name} service (only `service = \"proxy\"` \
                     connects upstream): remove it, or set service to proxy"
                ));
            }
        }
        if service == ServiceKind::Proxy {
            w.extend(self.proxy_warnings());
            for field in self.upstream_tls_unused() {
                w.push(format!(
                    "`{field}` has no effect without `upstream_tls = true` (the upstreams are \
                     reached over plain TCP): set upstream_tls to true, or remove it"
                ));
            }
        }
        let h2 = self
            .alpn
            .iter()
            .flatten()
            .any(|p| p.trim().eq_ignore_ascii_case("h2"));
        if service == ServiceKind::Http && h2 {
            w.push(
                "`alpn` offers h2 but the http service speaks only HTTP/1.1: a client that picks \
                 h2 (curl --http2) fails; remove h2 from alpn"
                    .into(),
            );
        }
        if self.tls12 == Some(false) && self.tls_min_version == Some(TlsVersion::V1_2) {
            w.push(
                "`tls_min_version = 1.2` has no effect with `tls12 = false` (TLS 1.2 stays off): \
                 set tls_min_version to 1.3, or drop tls12 = false to allow TLS 1.2"
                    .into(),
            );
        }
        if self.insecure_key_permissions == Some(true) {
            if self.key.is_none() && self.extra_cert.as_ref().is_none_or(|v| v.is_empty()) {
                w.push(
                    "`insecure_key_permissions` has no effect: no private key file is given \
                     (self-signed certificate)"
                        .into(),
                );
            } else {
                w.push(
                    "`insecure_key_permissions` is on: a private key readable by group or others \
                     is accepted; make the key files mode 0600 and drop this setting"
                        .into(),
                );
            }
        }
        if self.io_backend == Some(crate::io::Backend::Epoll) {
            let given = [
                ("ring_entries", self.ring_entries.is_some()),
                ("coop_taskrun", self.coop_taskrun.is_some()),
                ("sqpoll_idle_ms", self.sqpoll_idle_ms.is_some()),
                ("recv_multishot", self.recv_multishot.is_some()),
            ];
            for (field, _) in given.iter().filter(|(_, set)| *set) {
                w.push(format!(
                    "`{field}` has no effect with `io_backend = \"epoll\"` (no io_uring ring): \
                     remove it, or choose auto, uring or tokio-uring"
                ));
            }
        }
        if self.cpus.is_none() && shards > cpus {
            w.push(format!(
                "`shards` = {shards} is more than the {cpus} CPUs available: shards share CPUs \
                 (one shard per CPU is the design); lower shards to {cpus} or less"
            ));
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use super::super::Options;
    use clap::Parser;

    pub(super) fn warnings(args: &[&str]) -> Vec<String> {
        let mut v = vec!["uringtls"];
        v.extend_from_slice(args);
        Options::try_parse_from(v)
            .expect("parse")
            .resolve()
            .expect("valid")
            .warnings
    }

    #[test]
    fn settings_without_effect_are_named() {
        assert!(warnings(&[]).is_empty());
        let w = warnings(&["--upstream", "127.0.0.1:9", "--proxy-protocol", "v1"]);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("`upstream` has no effect with the http service"));
        assert!(w[1].starts_with("`proxy_protocol` has no effect"));
        assert!(warnings(&["--service", "proxy", "--upstream", "127.0.0.1:9"]).is_empty());
        let w = warnings(&["--alpn", "h2,http/1.1"]);
        assert!(w[0].contains("h2") && w[0].contains("HTTP/1.1"), "{w:?}");
        assert!(warnings(&["--service", "echo", "--alpn", "h2"]).is_empty());
        let w = warnings(&["--tls12", "false", "--tls-min-version", "1.2"]);
        assert!(w[0].contains("tls_min_version = 1.2"), "{w:?}");
        let w = warnings(&["--insecure-key-permissions", "true"]);
        assert!(w[0].contains("insecure_key_permissions"), "{w:?}");
        let w = warnings(&["--upstream-tls", "true", "--upstream-sni", "b.test"]);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].starts_with("`upstream_tls` has no effect with the http service"));
        assert!(w[1].starts_with("`upstream_sni` has no effect with the http service"));
        let w = warnings(&[
            "--service",
            "proxy",
            "--upstream",
            "127.0.0.1:9",
            "--upstream-alpn",
            "h2",
        ]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("`upstream_alpn` has no effect without `upstream_tls = true`"),
            "{w:?}"
        );
        let many = (super::super::available_cpus().len() + 1).to_string();
        let w = warnings(&["--shards", &many]);
        assert!(w[0].contains("shards share CPUs"), "{w:?}");
    }
}

impl Options {
    /// Proxy settings that do nothing: health settings without
    /// `health_interval`, a route for an ALPN protocol the server does not
    /// offer (no client can negotiate it).
    fn proxy_warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.health_interval.is_none() {
            let given = [
                ("health_fails", self.health_fails.is_some()),
                ("health_passes", self.health_passes.is_some()),
                ("health_timeout", self.health_timeout.is_some()),
            ];
            for (field, _) in given.iter().filter(|(_, set)| *set) {
                w.push(format!(
                    "`{field}` has no effect without `health_interval` (active health checks are \
                     off): set health_interval, or remove {field}"
                ));
            }
        }
        let mut every = self
            .upstream
            .iter()
            .flatten()
            .chain(self.route.iter().flatten().flat_map(|r| &r.upstreams));
        let literal = |u: &String| {
            u.parse::<crate::services::proxy::UpstreamAddr>()
                .is_ok_and(|a| a.literal().is_some())
        };
        if self
            .upstream_resolve_interval
            .is_some_and(|d| d.0.is_some())
            && every.all(literal)
        {
            w.push(
                "`upstream_resolve_interval` has no effect: every upstream is an IP address                  (only names are resolved again); remove it, or name the upstreams"
                    .into(),
            );
        }
        let offered: Vec<String> = self.alpn.clone().unwrap_or_else(|| vec!["http/1.1".into()]);
        for r in self.route.iter().flatten() {
            if let Some(a) = r
                .alpn
                .as_deref()
                .filter(|a| !offered.iter().any(|o| o == a))
            {
                w.push(format!(
                    "route for ALPN `{a}` never matches: the server does not offer {a} \
                     (alpn = {offered:?}); add it to alpn, or remove the route"
                ));
            }
        }
        w
    }
}

#[cfg(test)]
mod proxy_tests {
    use super::tests::warnings;

    #[test]
    fn routes_and_health_settings_without_effect_are_named() {
        let w = warnings(&["--route", "a.test=127.0.0.1:9", "--health-interval", "1s"]);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("`route` has no effect with the http service"),
            "{w:?}"
        );
        assert!(w[1].starts_with("`health_interval` has no effect"), "{w:?}");
        let proxy = ["--service", "proxy", "--upstream", "127.0.0.1:9"];
        let w = warnings(&[&proxy[..], &["--health-fails", "2"]].concat());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("without `health_interval`"), "{w:?}");
        let w = warnings(&[&proxy[..], &["--route", "@h2=127.0.0.1:9"]].concat());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("ALPN `h2` never matches"), "{w:?}");
        let w = warnings(&[&proxy[..], &["--upstream-resolve-interval", "5s"]].concat());
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("`upstream_resolve_interval` has no effect: every upstream is an IP"),
            "{w:?}"
        );
        let named = [
            "--upstream-resolve-interval",
            "5s",
            "--route",
            "a.test=backend.test:80",
        ];
        assert!(warnings(&[&proxy[..], &named].concat()).is_empty());
        let off = ["--upstream-resolve-interval", "off"];
        assert!(warnings(&[&proxy[..], &off].concat()).is_empty());
        let ok = [
            &proxy[..],
            &["--alpn", "h2,http/1.1", "--route", "@h2=127.0.0.1:9"],
            &["--health-interval", "1s", "--health-fails", "2"],
        ]
        .concat();
        assert!(warnings(&ok).is_empty());
    }
}
