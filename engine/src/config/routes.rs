//! The proxy's routes (`route`) and active health checks (`health_*`):
//! their checks per source, and the resolved settings. The fields live in
//! [`Options`] with the rest; defaults and reasons in `docs/operations.md`.

use super::{is_host_port, parse_upstreams, ConfigError, Options, Origin, Sources};
use crate::services::proxy::{
    check_routes, HealthSettings, Route, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HEALTH_FAILS,
    DEFAULT_HEALTH_PASSES, MIN_HEALTH_INTERVAL, MIN_RESOLVE_INTERVAL,
};

impl Options {
    /// Checks the routes and health settings present in one source.
    pub(super) fn check_routes(&self, o: Origin<'_>) -> Result<(), ConfigError> {
        if let Some(routes) = &self.route {
            check_routes(routes).map_err(|e| {
                o.invalid(
                    "route",
                    e,
                    "write PATTERN=HOST:PORT[,HOST:PORT...] with PATTERN `a.test`, `*.b.test`, \
                     `a.test@h2` or `@h2` (TOML: [[route]] with sni, alpn, upstreams), each \
                     pattern once",
                )
            })?;
            for (r, u) in routes
                .iter()
                .flat_map(|r| r.upstreams.iter().map(move |u| (r, u)))
            {
                if !is_host_port(u) {
                    return Err(o.invalid(
                        "route",
                        format!(
                            "route `{}`: `{u}` is not HOST:PORT",
                            r.key().map(|k| k.to_string()).unwrap_or_default()
                        ),
                        "write e.g. 127.0.0.1:8080 or backend.local:80",
                    ));
                }
            }
        }
        if let Some(d) = self.health_interval {
            if d.0 < MIN_HEALTH_INTERVAL {
                return Err(o.invalid(
                    "health_interval",
                    format!("{:?} is below 10ms", d.0),
                    "use e.g. `2s` (leave it out to turn active checks off)",
                ));
            }
        }
        if let Some(d) = self
            .upstream_resolve_interval
            .and_then(|d| d.0)
            .filter(|d| *d < MIN_RESOLVE_INTERVAL)
        {
            return Err(o.invalid(
                "upstream_resolve_interval",
                format!("{d:?} is below 10ms"),
                "use e.g. `30s`, or `off` to resolve names only at start and reload",
            ));
        }
        if self.health_timeout.is_some_and(|d| d.0.is_zero()) {
            return Err(o.invalid(
                "health_timeout",
                "a zero timeout",
                "use a positive duration such as `2s` (default: upstream_connect_timeout)",
            ));
        }
        for (name, n) in [
            ("health_fails", self.health_fails),
            ("health_passes", self.health_passes),
        ] {
            if n == Some(0) {
                return Err(o.invalid(
                    name,
                    "0 checks",
                    "use 1 or more (defaults: 3 fails, 2 passes)",
                ));
            }
        }
        Ok(())
    }

    /// The routes with their upstreams parsed, names not resolved (merged
    /// options).
    pub(super) fn route_settings(&self, src: &Sources) -> Result<Vec<Route>, ConfigError> {
        let origin = src.of(|f| f.route.is_some());
        self.route
            .iter()
            .flatten()
            .map(|r| {
                let key = r
                    .key()
                    .map_err(|e| origin.invalid("route", e, "fix the route"))?;
                let upstreams = parse_upstreams(&r.upstreams).map_err(|e| {
                    origin.invalid(
                        "route",
                        format!("route `{key}`: {e}"),
                        "write e.g. 127.0.0.1:8080 or backend.local:80",
                    )
                })?;
                Ok(Route { key, upstreams })
            })
            .collect()
    }

    /// The health-check settings (`None` without `health_interval`).
    pub(super) fn health_settings(&self) -> Option<HealthSettings> {
        let connect = self
            .upstream_connect_timeout
            .map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.0);
        self.health_interval.map(|i| HealthSettings {
            interval: i.0,
            timeout: self.health_timeout.map_or(connect, |d| d.0),
            fails: self.health_fails.unwrap_or(DEFAULT_HEALTH_FAILS),
            passes: self.health_passes.unwrap_or(DEFAULT_HEALTH_PASSES),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::flags;
    use super::super::ServiceKind;
    use clap::Parser;
    use std::io::Write;
    use std::time::Duration;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    fn refused(args: &[&str]) -> String {
        flags(args).resolve().expect_err("refused").to_string()
    }

    #[test]
    fn routes_come_from_repeated_flags_and_the_proxy_starts_without_a_default_pool() {
        let s = flags(&[
            "--service",
            "proxy",
            "--route",
            "a.test=127.0.0.1:9001,127.0.0.1:9002",
            "--route",
            "*.b.test@h2=127.0.0.1:9003",
        ])
        .resolve()
        .expect("routes alone are enough");
        assert_eq!(s.service, ServiceKind::Proxy);
        assert!(s.proxy.upstreams.is_empty());
        assert_eq!(s.proxy.routes.len(), 2);
        assert_eq!(s.proxy.routes[0].key.to_string(), "a.test");
        assert_eq!(s.proxy.routes[0].upstreams.len(), 2);
        assert_eq!(s.proxy.routes[1].key.to_string(), "*.b.test@h2");
        assert!(s.proxy.health.is_none(), "checks are off by default");
    }

    #[test]
    fn routes_and_health_come_from_the_file() {
        let f = file(
            "service = \"proxy\"\nhealth_interval = \"2s\"\nhealth_fails = 4\n\
             [[route]]\nsni = \"*.b.test\"\nupstreams = [\"127.0.0.1:9003\"]\n\
             [[route]]\nalpn = \"h2\"\nupstreams = [\"127.0.0.1:9004\"]\n",
        );
        let path = f.path().to_str().expect("utf8");
        let s = flags(&["--config", path]).resolve().expect("ok");
        let keys: Vec<String> = s.proxy.routes.iter().map(|r| r.key.to_string()).collect();
        assert_eq!(keys, ["*.b.test", "@h2"]);
        let h = s.proxy.health.expect("on");
        assert_eq!(
            (h.interval, h.fails, h.passes, h.timeout),
            (
                Duration::from_secs(2),
                4,
                2,
                crate::services::proxy::DEFAULT_CONNECT_TIMEOUT
            )
        );
    }

    #[test]
    fn route_mistakes_name_the_flag_or_file_and_what_is_wrong() {
        let e = refused(&["--route", "a..test=127.0.0.1:1"]);
        assert!(
            e.starts_with("flag --route: `a..test` is not a server name"),
            "{e}"
        );
        let e = refused(&[
            "--route",
            "a.test=127.0.0.1:1",
            "--route",
            "A.test=127.0.0.1:2",
        ]);
        assert!(
            e.starts_with("flag --route: route `a.test` is given twice"),
            "{e}"
        );
        let e = refused(&["--route", "a.test=nohostport"]);
        assert!(
            e.contains("route `a.test`: `nohostport` is not HOST:PORT"),
            "{e}"
        );
        assert!(
            super::super::Options::try_parse_from(["uringtls", "--route", "a.test"]).is_err(),
            "no `=`: clap refuses the value"
        );
        let e = refused(&["--route", "a.test="]);
        assert!(e.contains("route `a.test` lists no upstream"), "{e}");
        let f = file("[[route]]\nsni = \"*.\"\nupstreams = [\"127.0.0.1:1\"]\n");
        let path = f.path().to_str().expect("utf8");
        let e = refused(&["--config", path]);
        assert!(
            e.starts_with(&format!("{path}: field `route`: `*.` is not")),
            "{e}"
        );
        let f = file("[[route]]\nsni = \"a.test\"\nupstream = [\"127.0.0.1:1\"]\n");
        let path = f.path().to_str().expect("utf8");
        let e = refused(&["--config", path]);
        assert!(e.contains(path) && e.contains("upstream"), "{e}");
    }

    #[test]
    fn an_unresolvable_route_upstream_passes_the_config_and_the_proxy_names_the_route() {
        let bad = format!("{}.invalid:80", "a".repeat(64));
        let f = file(&format!(
            "service = \"proxy\"\n[[route]]\nsni = \"a.test\"\nupstreams = [\"{bad}\"]\n"
        ));
        let path = f.path().to_str().expect("utf8");
        let s = flags(&["--config", path])
            .resolve()
            .expect("the configuration resolves no name");
        let e = crate::services::proxy::Proxy::new(s.proxy).expect_err("does not resolve");
        assert!(
            e.to_string().starts_with(&format!(
                "proxy upstream `{bad}` (in route `a.test`) does not resolve"
            )),
            "{e}"
        );
    }

    #[test]
    fn the_resolve_interval_defaults_to_30s_turns_off_and_a_short_one_is_named() {
        let proxy = ["--service", "proxy", "--upstream", "backend.test:80"];
        let s = flags(&proxy).resolve().expect("ok");
        assert_eq!(s.proxy.resolve_interval, Some(Duration::from_secs(30)));
        for off in ["off", "0"] {
            let args = [&proxy[..], &["--upstream-resolve-interval", off]].concat();
            assert_eq!(
                flags(&args).resolve().expect("ok").proxy.resolve_interval,
                None
            );
        }
        let f = file("upstream_resolve_interval = \"5s\"\n");
        let path = f.path().to_str().expect("utf8");
        let s = flags(&[&proxy[..], &["--config", path]].concat())
            .resolve()
            .expect("ok");
        assert_eq!(s.proxy.resolve_interval, Some(Duration::from_secs(5)));
        let e = refused(&["--upstream-resolve-interval", "1ms"]);
        assert!(
            e.starts_with("flag --upstream-resolve-interval: 1ms is below 10ms"),
            "{e}"
        );
        let f = file("upstream_resolve_interval = \"soon\"\n");
        let path = f.path().to_str().expect("utf8");
        let e = refused(&["--config", path]);
        assert!(
            e.contains("upstream_resolve_interval") && e.contains("`off`"),
            "{e}"
        );
    }

    #[test]
    fn health_mistakes_are_named() {
        let e = refused(&["--health-interval", "1ms"]);
        assert!(e.starts_with("flag --health-interval:"), "{e}");
        let e = refused(&["--health-fails", "0"]);
        assert!(e.starts_with("flag --health-fails: 0 checks"), "{e}");
        let e = refused(&["--health-passes", "0"]);
        assert!(e.starts_with("flag --health-passes: 0 checks"), "{e}");
        let e = refused(&["--health-timeout", "0s"]);
        assert!(e.starts_with("flag --health-timeout:"), "{e}");
        let s = flags(&[
            "--health-interval",
            "1s",
            "--upstream-connect-timeout",
            "3s",
        ])
        .resolve()
        .expect("ok");
        assert_eq!(
            s.proxy.health.expect("on").timeout,
            Duration::from_secs(3),
            "the check timeout defaults to the connect timeout"
        );
    }
}
