//! `[[listener]]` tables: several listeners in one process.
//!
//! Each table is one listener: its own address, service, certificates and
//! per-connection limits. A field a table does not set comes from the top
//! level (flags over file over defaults, as for one listener); a field it
//! sets wins over the top level, flags included. Process-wide settings
//! (shards, ring, ticket keys, logs, metrics, privileges, ACME...) are
//! refused in a table: they belong to the top level.
//!
//! The top level is a listener too when it has a `listen` of its own (the
//! flag `--listen` or `listen` at the top of the file): it comes first.
//! Without it, the tables are the only listeners. Without tables, the top
//! level is the only listener, as always.

use super::{ConfigError, Options, Origin, ServiceKind, Settings, Sources};
use std::net::SocketAddr;
use std::path::Path;

/// One listener the process serves.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// How messages name it: `listener[i]` (the table's index in the file,
    /// from 0) or `top level`.
    pub name: String,
    /// Its settings: the table's own values over the top level's. Its own
    /// `listeners` is empty.
    pub settings: Settings,
}

/// What messages call the top level when it is a listener.
pub const TOP_LEVEL: &str = "top level";

/// Declares the fields a `[[listener]]` table may set: the list of their
/// names, and `overlay`, which puts a table's values over the top level's.
macro_rules! listener_fields {
    ($($f:ident),* $(,)?) => {
        /// Fields a `[[listener]]` table may set.
        pub const LISTENER_FIELDS: &[&str] = &[$(stringify!($f)),*];

        /// `own`'s values over `base`'s, for the listener fields.
        fn overlay(own: Options, mut base: Options) -> Options {
            $(if own.$f.is_some() { base.$f = own.$f; })*
            base.listener = None;
            base
        }
    };
}

listener_fields!(
    listen,
    service,
    body_size,
    max_header,
    max_body,
    request_timeout,
    header_timeout,
    upstream,
    upstream_connect_timeout,
    upstream_fail_timeout,
    proxy_protocol,
    upstream_http,
    cert,
    key,
    extra_cert,
    cert_dir,
    alpn,
    tls12,
    tls_min_version,
    tls_max_version,
    cipher_suites,
    kx_groups,
    client_auth,
    client_ca,
    cert_compression,
    tls13_engine_records,
    handshake_timeout,
    idle_timeout,
    write_timeout,
    max_conns,
    max_conns_per_ip,
    conn_rate_per_ip,
    conn_burst_per_ip,
    per_ip_ipv6_prefix,
    allow,
    deny,
    access_log,
    accept_proxy,
    route,
    health_interval,
    health_fails,
    health_passes,
    health_timeout,
    upstream_tls,
    upstream_ca,
    upstream_sni,
    upstream_cert,
    upstream_key,
    upstream_alpn,
    upstream_resolve_interval,
);

/// The merged options (flags over file) into settings, with one entry in
/// `listeners` per listener when the file has `[[listener]]` tables.
pub(super) fn resolve(m: Options, src: &Sources) -> Result<Settings, ConfigError> {
    let tables = m.listener.clone().unwrap_or_default();
    let top_listens = m.listen.is_some();
    let mut top = m.clone().finish(src)?;
    let path = file_name(src.file.as_deref());
    if tables.is_empty() {
        return Ok(top);
    }
    let mut out = Vec::new();
    if top_listens {
        out.push(ListenerConfig {
            name: TOP_LEVEL.into(),
            settings: top.clone(),
        });
    }
    // Per listener, the warnings its own table's values cause (the top
    // level's own, when it listens, are all its warnings).
    let mut own_warnings: Vec<Vec<String>> =
        out.iter().map(|l| l.settings.warnings.clone()).collect();
    for (i, t) in tables.iter().enumerate() {
        let (s, own) = one(path, i, t, &m, src)?;
        own_warnings.push(own);
        out.push(ListenerConfig {
            name: format!("listener[{i}]"),
            settings: s,
        });
    }
    check_distinct(path, &out)?;
    top.warnings = warnings(&out, &own_warnings);
    top.listen = out[0].settings.listen;
    top.listeners = out;
    Ok(top)
}

/// Where tables come from, for messages: the config file, or (no file:
/// only [`SettingsBuilder::from_toml`](crate::SettingsBuilder::from_toml)
/// can give tables then) the TOML string.
pub(super) fn file_name(file: Option<&Path>) -> &Path {
    file.unwrap_or(Path::new("(TOML given to SettingsBuilder::from_toml)"))
}

/// Table `i`: its own values checked, then over the top level's.
/// Returns its settings and the warnings its own values cause.
fn one(
    path: &Path,
    i: usize,
    t: &toml::Table,
    top: &Options,
    src: &Sources,
) -> Result<(Settings, Vec<String>), ConfigError> {
    let o = Origin::Listener(path, i);
    let own: Options = toml::Value::Table(t.clone())
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid {
            origin: format!("{}: table `listener[{i}]`", path.display()),
            problem: e.message().trim_end().to_owned(),
            fix: format!(
                "a [[listener]] table takes these fields: {}",
                LISTENER_FIELDS.join(", ")
            ),
        })?;
    if let Some(k) = t.keys().find(|k| !LISTENER_FIELDS.contains(&k.as_str())) {
        return Err(o.invalid(
            k,
            "is a process-wide setting, not one of a listener",
            format!("set `{k}` at the top level of the file (every listener shares it)"),
        ));
    }
    own.check(o)?;
    if own.listen.is_none() {
        return Err(o.invalid(
            "listen",
            "is missing: each [[listener]] table needs an address of its own",
            "add e.g. listen = \"0.0.0.0:443\" to the table",
        ));
    }
    let eff = overlay(own.clone(), top.clone());
    if eff.service == Some(ServiceKind::Proxy)
        && eff.upstream.as_ref().is_none_or(Vec::is_empty)
        && eff.route.as_ref().is_none_or(Vec::is_empty)
    {
        return Err(o.invalid(
            "upstream",
            "the proxy service has no upstream",
            "give upstream = [\"HOST:PORT\"] or [[listener.route]] tables in the table (or \
             at the top level, for every listener)",
        ));
    }
    // What the table's own values cause, with the service it ends up with.
    let probe = Options {
        service: eff.service,
        ..own.clone()
    };
    let own_warnings = probe.no_effect_warnings(1, 1);
    let src = Sources {
        flags: src.flags.clone(),
        file: src.file.clone(),
        listener: Some((i, own)),
    };
    Ok((eff.finish(&src)?, own_warnings))
}

/// The warnings of several listeners: one that holds for every listener
/// once, as it is (the setting does nothing anywhere); one that holds for
/// some only if the listener's own table caused it, prefixed with its name
/// (a top-level value meant for other listeners is not warned about where
/// it has no use).
fn warnings(out: &[ListenerConfig], own: &[Vec<String>]) -> Vec<String> {
    let mut w: Vec<String> = Vec::new();
    for (l, own) in out.iter().zip(own) {
        for x in &l.settings.warnings {
            if out.iter().all(|o| o.settings.warnings.contains(x)) {
                if !w.contains(x) {
                    w.push(x.clone());
                }
            } else if own.contains(x) {
                w.push(format!("{}: {x}", l.name));
            }
        }
    }
    w
}

/// No two listeners may take the same port (an unspecified address takes
/// it on every address of its family; port 0 is never shared).
fn check_distinct(path: &Path, out: &[ListenerConfig]) -> Result<(), ConfigError> {
    for (n, a) in out.iter().enumerate() {
        for b in &out[n + 1..] {
            let (x, y) = (a.settings.listen, b.settings.listen);
            if overlap(x, y) {
                let problem = if x == y {
                    format!("both listen on {x}")
                } else {
                    format!(
                        "{x} and {y} take the same port (an unspecified address takes it on \
                         every address)"
                    )
                };
                return Err(ConfigError::Invalid {
                    origin: format!("{}: {} and {}", path.display(), a.name, b.name),
                    problem,
                    fix: "give each listener an address of its own (another port or IP)".into(),
                });
            }
        }
    }
    Ok(())
}

fn overlap(x: SocketAddr, y: SocketAddr) -> bool {
    x.port() == y.port()
        && x.port() != 0
        && x.is_ipv4() == y.is_ipv4()
        && (x.ip() == y.ip() || x.ip().is_unspecified() || y.ip().is_unspecified())
}

impl Settings {
    /// Every listener to serve, in order: `listeners` with `[[listener]]`
    /// tables, else the top level alone (named `top level`).
    pub fn each_listener(&self) -> Vec<ListenerConfig> {
        if self.listeners.is_empty() {
            vec![ListenerConfig {
                name: TOP_LEVEL.into(),
                settings: self.clone(),
            }]
        } else {
            self.listeners.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::flags;
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("tmp");
        f.write_all(text.as_bytes()).expect("write");
        f
    }

    fn resolve_file(text: &str, extra: &[&str]) -> (String, Result<Settings, ConfigError>) {
        let f = file(text);
        let path = f.path().to_str().expect("utf8").to_owned();
        let mut args = vec!["--config", path.as_str()];
        args.extend_from_slice(extra);
        let r = flags(&args).resolve();
        (path, r)
    }

    const TWO: &str = "idle_timeout = \"9s\"\nmax_conns_per_ip = 5\n\
        [[listener]]\nlisten = \"127.0.0.1:7001\"\nservice = \"echo\"\n\
        [[listener]]\nlisten = \"127.0.0.1:7002\"\nidle_timeout = \"3s\"\ndeny = [\"10.0.0.0/8\"]\n";

    #[test]
    fn without_tables_the_top_level_is_the_only_listener() {
        let s = flags(&["--listen", "127.0.0.1:7000"])
            .resolve()
            .expect("ok");
        assert!(s.listeners.is_empty());
        let each = s.each_listener();
        assert_eq!(each.len(), 1);
        assert_eq!(each[0].name, "top level");
        assert_eq!(each[0].settings.listen.to_string(), "127.0.0.1:7000");
    }

    #[test]
    fn a_table_inherits_what_it_does_not_set_and_overrides_what_it_sets() {
        let (_, r) = resolve_file(TWO, &[]);
        let s = r.expect("ok");
        let l = &s.listeners;
        assert_eq!(l.len(), 2, "no top-level listen: the tables only");
        assert_eq!(l[0].name, "listener[0]");
        assert_eq!(l[0].settings.listen.to_string(), "127.0.0.1:7001");
        assert_eq!(l[0].settings.service, ServiceKind::Echo);
        assert_eq!(l[0].settings.idle_timeout, Duration::from_secs(9));
        assert_eq!(l[0].settings.ops.limits.max_conns_per_ip, Some(5));
        assert_eq!(l[1].settings.service, ServiceKind::Http, "the default");
        assert_eq!(l[1].settings.idle_timeout, Duration::from_secs(3));
        assert_eq!(l[1].settings.ops.limits.max_conns_per_ip, Some(5));
        assert!(l[0].settings.ops.limits.access.deny.is_empty());
        assert!(!l[1].settings.ops.limits.access.deny.is_empty());
        assert_eq!(s.listen, l[0].settings.listen, "the first one served");
    }

    #[test]
    fn a_top_level_listen_is_one_more_listener_first_and_a_table_wins_over_a_flag() {
        let (_, r) = resolve_file(TWO, &["--listen", "127.0.0.1:7000", "--idle-timeout", "1s"]);
        let s = r.expect("ok");
        let names: Vec<_> = s.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["top level", "listener[0]", "listener[1]"]);
        assert_eq!(s.listeners[0].settings.listen.to_string(), "127.0.0.1:7000");
        let idle: Vec<_> = s
            .listeners
            .iter()
            .map(|l| l.settings.idle_timeout.as_secs())
            .collect();
        assert_eq!(
            idle,
            [1, 1, 3],
            "the flag over the file, the table over both"
        );
    }

    #[test]
    fn a_table_takes_its_own_balancers_routes_and_health_settings() {
        let text = "[[listener]]\nlisten = \"127.0.0.1:7001\"\nservice = \"proxy\"\n\
                    accept_proxy = [\"10.0.0.0/8\"]\nhealth_interval = \"2s\"\n\
                    [[listener.route]]\nsni = \"a.test\"\nupstreams = [\"127.0.0.1:9001\"]\n\
                    [[listener]]\nlisten = \"127.0.0.1:7002\"\n";
        let (_, r) = resolve_file(text, &[]);
        let s = r.expect("a proxy listener with routes and no upstream starts");
        let (a, b) = (&s.listeners[0].settings, &s.listeners[1].settings);
        assert_eq!(a.ops.limits.accept_proxy.len(), 1);
        assert!(
            b.ops.limits.accept_proxy.is_empty(),
            "not inherited from a sibling"
        );
        assert_eq!(a.proxy.routes.len(), 1);
        assert_eq!(a.proxy.routes[0].upstreams[0].name, "127.0.0.1:9001");
        assert!(a.proxy.health.is_some());
        assert!(b.proxy.routes.is_empty() && b.proxy.health.is_none());
    }

    #[test]
    fn two_listeners_on_one_address_are_refused_naming_file_and_both() {
        let text = "[[listener]]\nlisten = \"127.0.0.1:7001\"\n\
                    [[listener]]\nlisten = \"127.0.0.1:7002\"\n\
                    [[listener]]\nlisten = \"0.0.0.0:7001\"\n";
        let (path, r) = resolve_file(text, &[]);
        let e = r.expect_err("refused").to_string();
        assert!(
            e.starts_with(&format!("{path}: listener[0] and listener[2]:"))
                && e.contains("another port or IP"),
            "{e}"
        );
        let (path, r) = resolve_file(
            "[[listener]]\nlisten = \"127.0.0.1:7000\"\n",
            &["--listen", "127.0.0.1:7000"],
        );
        let e = r.expect_err("refused").to_string();
        assert!(
            e.starts_with(&format!(
                "{path}: top level and listener[0]: both listen on"
            )),
            "{e}"
        );
        let (_, r) = resolve_file(
            "[[listener]]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nlisten = \"127.0.0.1:0\"\n\
             [[listener]]\nlisten = \"[::]:7001\"\n[[listener]]\nlisten = \"0.0.0.0:7001\"\n",
            &[],
        );
        assert!(r.is_ok(), "port 0 twice, and v4/v6 on one port, are fine");
    }

    #[test]
    fn a_bad_field_in_a_table_names_the_file_the_table_and_the_field() {
        let bad = |text: &str| resolve_file(text, &[]);
        let (path, r) = bad("[[listener]]\nlisten = \"127.0.0.1:7001\"\n\
             [[listener]]\nlisten = \"127.0.0.1:7002\"\nupstream = [\"nohostport\"]\n");
        let e = r.expect_err("refused").to_string();
        assert!(
            e.starts_with(&format!(
                "{path}: field `listener[1].upstream`: `nohostport`"
            )),
            "{e}"
        );
        let (path, r) = bad("[[listener]]\nlisten = \"127.0.0.1:7001\"\nservice = \"proxy\"\n");
        let e = r.expect_err("refused").to_string();
        assert!(
            e.starts_with(&format!("{path}: field `listener[0].upstream`: the proxy")),
            "{e}"
        );
        let (path, r) = bad("[[listener]]\nservice = \"echo\"\n");
        let e = r.expect_err("refused").to_string();
        assert!(
            e.starts_with(&format!("{path}: field `listener[0].listen`: is missing")),
            "{e}"
        );
        let (path, r) = bad("[[listener]]\nlisten = \"127.0.0.1:7001\"\nshards = 2\n");
        let e = r.expect_err("refused").to_string();
        assert!(
            e.starts_with(&format!(
                "{path}: field `listener[0].shards`: is a process-wide"
            )),
            "{e}"
        );
        let (path, r) = bad("[[listener]]\nlisten = \"127.0.0.1:7001\"\nidle_timeot = \"1s\"\n");
        let e = r.expect_err("refused").to_string();
        assert!(
            e.starts_with(&format!("{path}: table `listener[0]`:")) && e.contains("idle_timeot"),
            "{e}"
        );
        let (path, r) = bad("[[listener]]\nlisten = \"127.0.0.1:7001\"\nmax_conns = 0\n");
        let e = r.expect_err("refused").to_string();
        assert!(
            e.starts_with(&format!("{path}: field `listener[0].max_conns`")),
            "{e}"
        );
    }

    #[test]
    fn tables_given_to_the_settings_builder_are_listeners_too() {
        let s = crate::SettingsBuilder::from_toml(TWO)
            .expect("toml")
            .build()
            .expect("ok");
        assert_eq!(s.listeners.len(), 2);
        let e = crate::SettingsBuilder::from_toml("[[listener]]\nlisten = \"x\"\n")
            .expect("toml")
            .build()
            .expect_err("refused")
            .to_string();
        assert!(
            e.starts_with("(TOML given to SettingsBuilder::from_toml): field `listener[0].listen`"),
            "{e}"
        );
    }

    #[test]
    fn a_setting_without_effect_is_warned_where_it_was_set_or_if_it_does_nothing_anywhere() {
        let proxy = "[[listener]]\nlisten = \"127.0.0.1:7001\"\nservice = \"proxy\"\n";
        // A top-level upstream for the proxy listener: no warning for the
        // http one that inherits it.
        let (_, r) = resolve_file(
            &format!(
                "upstream = [\"127.0.0.1:9\"]\n{proxy}\
                 [[listener]]\nlisten = \"127.0.0.1:7002\"\n"
            ),
            &[],
        );
        let s = r.expect("ok");
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        // Set in the echo listener's own table: warned, naming it.
        let (_, r) = resolve_file(
            &format!(
                "upstream = [\"127.0.0.1:9\"]\n{proxy}\
                 [[listener]]\nlisten = \"127.0.0.1:7002\"\nservice = \"echo\"\n\
                 upstream_http = true\n"
            ),
            &[],
        );
        let w = r.expect("ok").warnings;
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("listener[1]: `upstream_http` has no effect with the echo"),
            "{w:?}"
        );
        // No listener uses it: warned once, as with one listener.
        let (_, r) = resolve_file(
            "upstream = [\"127.0.0.1:9\"]\n[[listener]]\nlisten = \"127.0.0.1:7001\"\n\
             [[listener]]\nlisten = \"127.0.0.1:7002\"\n",
            &[],
        );
        let w = r.expect("ok").warnings;
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("`upstream` has no effect"), "{w:?}");
    }

    #[test]
    fn certificates_and_proxy_upstreams_are_per_listener() {
        let (_, r) = resolve_file(
            "cert = \"/top.pem\"\nkey = \"/top.key\"\n\
             [[listener]]\nlisten = \"127.0.0.1:7001\"\n\
             [[listener]]\nlisten = \"127.0.0.1:7002\"\ncert = \"/b.pem\"\nkey = \"/b.key\"\n\
             service = \"proxy\"\nupstream = [\"127.0.0.1:9\"]\n\
             [[listener.extra_cert]]\ncert = \"/x.pem\"\nkey = \"/x.key\"\n",
            &[],
        );
        let s = r.expect("ok");
        let l = &s.listeners;
        assert_eq!(
            l[0].settings.tls.cert.as_deref(),
            Some(Path::new("/top.pem"))
        );
        assert_eq!(l[1].settings.tls.cert.as_deref(), Some(Path::new("/b.pem")));
        assert_eq!(l[1].settings.tls.extra_certs.len(), 1);
        assert_eq!(l[1].settings.proxy.upstreams[0].name, "127.0.0.1:9");
        assert!(l[0].settings.proxy.upstreams.is_empty());
    }
}
