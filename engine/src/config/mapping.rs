//! From options to [`Settings`]: [`Options::resolve`] checks the flags and
//! the file each on its own (`validate.rs`), merges them (a flag over the
//! file over the default), and maps the result into `Settings` (`finish`):
//! defaults filled in, checks across fields, files of the upstream TLS
//! loaded. Upstream names are parsed, not resolved (the proxy resolves
//! them when it is built). `[[listener]]` tables are resolved
//! the same way, each over the top level (`listeners.rs`).

use super::upstreams::parse_upstreams;
use super::validate::{parse_cpus, parse_listen};
use super::{
    listeners, upstream_tls, ByteSize, ConfigError, HttpLimits, HumanDuration, ListenerConfig,
    LogFormat, Operations, Options, Origin, ServiceKind, TlsVersion, DEFAULT_BACKLOG,
    DEFAULT_DEFER_ACCEPT, DEFAULT_GRACE, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LISTEN, DEFAULT_MAX_CONNS, DEFAULT_SESSION_CACHE, DEFAULT_TLS13_TICKETS,
    DEFAULT_WRITE_TIMEOUT,
};
use crate::io::RingOptions;
use crate::tls::TlsSettings;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The resolved, validated settings the engine runs with.
///
/// Built by [`SettingsBuilder`](crate::SettingsBuilder) (in code or from
/// TOML) or by the binary from its flags and file; either way validated
/// once, before anything is bound. Its fields can be read; groups whose
/// types are internal (TLS, operations, limits) are set through the
/// builder's TOML.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address (with `[[listener]]` tables: the first listener's).
    pub listen: SocketAddr,
    /// CPU of each shard (its length is the shard count).
    pub cpus: Vec<usize>,
    /// Listen backlog per shard.
    pub backlog: u32,
    /// Longest wait for a connection's first bytes before it is accepted
    /// (zero: off).
    pub defer_accept: Duration,
    /// Ring setup.
    pub ring: RingOptions,
    /// TLS settings.
    pub tls: TlsSettings,
    /// Proxy service settings (upstreams, PROXY protocol).
    pub proxy: crate::services::proxy::ProxySettings,
    /// Service.
    pub service: ServiceKind,
    /// http body size (`None`: `hello world\n`).
    pub body_size: Option<usize>,
    /// http header limit.
    pub max_header: usize,
    /// Handshake deadline.
    pub handshake_timeout: Duration,
    /// Idle deadline.
    pub idle_timeout: Duration,
    /// Write deadline.
    pub write_timeout: Duration,
    /// Per-shard connection cap.
    pub max_conns: usize,
    /// Drain grace period.
    pub grace: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: Option<String>,
    /// Limits, header timeout, metrics, access log, privileges.
    pub ops: Operations,
    /// http request limits (body size, request timeout).
    pub http: HttpLimits,
    /// Settings that were given but have no effect, one sentence each (the
    /// binary logs them at start).
    pub warnings: Vec<String>,
    /// Reload when the files loaded change (see `crate::watch`).
    pub watch_files: bool,
    /// Sandbox the process after start-up (binary only).
    pub sandbox: bool,
    /// ACME (`None`: no `acme_domain`).
    pub acme: Option<crate::acme::AcmeSettings>,
    /// With `[[listener]]` tables, every listener served, in order (the
    /// top level first when it has a `listen` of its own); empty without
    /// tables: the top level is then the only listener. See
    /// [`Settings::each_listener`].
    pub listeners: Vec<ListenerConfig>,
}

macro_rules! merge_fields {
    ($hi:expr, $lo:expr, $($f:ident),* $(,)?) => {
        Options { config: $hi.config.or($lo.config), $($f: $hi.$f.or($lo.$f),)* }
    };
}

impl Options {
    /// Flags over file over defaults, validated.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        self.check(Origin::Flag)?;
        let sources = Sources {
            flags: self.clone(),
            file: self.config.clone(),
            listener: None,
        };
        let file = match &self.config {
            Some(p) => {
                let f = Options::load_file(p)?;
                f.check(Origin::File(p))?;
                f
            }
            None => Options::default(),
        };
        let m = merge_fields!(
            self,
            file,
            listen,
            shards,
            cpus,
            backlog,
            defer_accept,
            ring_entries,
            coop_taskrun,
            sqpoll_idle_ms,
            recv_multishot,
            io_backend,
            cert,
            key,
            session_cache,
            tls13_tickets,
            tls12,
            alpn,
            extra_cert,
            tls_min_version,
            tls_max_version,
            cipher_suites,
            kx_groups,
            client_auth,
            client_ca,
            ticket_key_file,
            ticket_rotation,
            service,
            body_size,
            max_header,
            upstream,
            upstream_connect_timeout,
            upstream_fail_timeout,
            proxy_protocol,
            upstream_http,
            handshake_timeout,
            idle_timeout,
            write_timeout,
            max_conns,
            grace,
            log_format,
            log_level,
            header_timeout,
            max_conns_total,
            max_conns_per_ip,
            conn_rate_per_ip,
            conn_burst_per_ip,
            per_ip_ipv6_prefix,
            allow,
            deny,
            metrics_listen,
            access_log,
            user,
            group,
            insecure_key_permissions,
            max_body,
            request_timeout,
            max_handshakes,
            ticket_secret_file,
            watch_files,
            cert_dir,
            cert_compression,
            tls13_engine_records,
            sandbox,
            acme_domain,
            acme_directory,
            acme_email,
            acme_cache,
            acme_ca,
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
            listener,
        );
        listeners::resolve(m, &sources)
    }

    /// Turns merged options into settings; cross-field checks.
    pub(super) fn finish(self, src: &Sources) -> Result<Settings, ConfigError> {
        let ops = self.operations()?;
        let http = self.http_limits();
        let listen = parse_listen(self.listen.as_deref().unwrap_or(DEFAULT_LISTEN))
            .map_err(|p| Origin::Flag.invalid("listen", p, "write IP:PORT"))?;
        if let Some(m) = ops.metrics_listen.filter(|m| same_port(*m, listen)) {
            return Err(src.of(|f| f.metrics_listen.is_some()).invalid(
                "metrics_listen",
                format!("{m} is the TLS listener's own port (listen = {listen})"),
                "give /metrics a port of its own, e.g. 127.0.0.1:9100",
            ));
        }
        let available = available_cpus();
        let cpus = match (&self.cpus, self.shards) {
            (Some(list), shards) => {
                let list = parse_cpus(list)
                    .map_err(|p| Origin::Flag.invalid("cpus", p, "write a list such as `0,2-3`"))?;
                match shards {
                    Some(n) if n > list.len() => {
                        return Err(Origin::Flag.invalid(
                            "shards",
                            format!("{n} shards but only {} CPUs listed in cpus", list.len()),
                            "list one CPU per shard, or lower shards",
                        ))
                    }
                    Some(n) => list.into_iter().take(n).collect(),
                    None => list,
                }
            }
            (None, Some(n)) => (0..n).map(|i| available[i % available.len()]).collect(),
            (None, None) => available.clone(),
        };
        if let Some(bad) = cpus.iter().find(|c| !available.contains(c)) {
            return Err(Origin::Flag.invalid(
                "cpus",
                format!("CPU {bad} is not available to this process (available: {available:?})"),
                "choose CPUs from the available list",
            ));
        }
        let mut warnings = self.no_effect_warnings(cpus.len(), available.len());
        let acme = self.acme_settings(src, &mut warnings)?;
        let (routes, health) = (self.route_settings(src)?, self.health_settings());
        let upstream_tls = self.upstream_tls_wanted();
        let alpn = self
            .alpn
            .unwrap_or_else(|| vec!["http/1.1".into()])
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(String::into_bytes)
            .collect();
        let d = |v: Option<HumanDuration>, def| v.map(|h| h.0).unwrap_or(def);
        let (tls12, tls13) = versions(self.tls12, self.tls_min_version, self.tls_max_version)?;
        if self
            .client_auth
            .is_some_and(|a| a != crate::tls::ClientAuth::None)
            && self.client_ca.is_none()
        {
            return Err(Origin::Flag.invalid(
                "client_ca",
                "client_auth is on but no CA bundle is given",
                "give client_ca, a PEM file of the CAs that issue client certificates",
            ));
        }
        let mut proxy = crate::services::proxy::ProxySettings {
            upstreams: parse_upstreams(self.upstream.as_deref().unwrap_or_default()).map_err(
                |p| {
                    src.of(|f| f.upstream.is_some()).invalid(
                        "upstream",
                        p,
                        "write e.g. 127.0.0.1:8080 or backend.local:80",
                    )
                },
            )?,
            connect_timeout: d(
                self.upstream_connect_timeout,
                crate::services::proxy::DEFAULT_CONNECT_TIMEOUT,
            ),
            fail_timeout: d(
                self.upstream_fail_timeout,
                crate::services::proxy::DEFAULT_FAIL_TIMEOUT,
            ),
            proxy_protocol: self.proxy_protocol,
            upstream_http: self.upstream_http.unwrap_or(false),
            routes,
            health,
            tls: None,
            resolve_interval: self.upstream_resolve_interval.map_or(
                Some(crate::services::proxy::DEFAULT_RESOLVE_INTERVAL),
                |d| d.0,
            ),
        };
        // Every upstream TLS may reach, the default pool's and the routes',
        // must have a usable server name.
        let every_upstream: Vec<_> = proxy
            .upstreams
            .iter()
            .chain(proxy.routes.iter().flat_map(|r| &r.upstreams))
            .cloned()
            .collect();
        proxy.tls = upstream_tls::load_upstream_tls(upstream_tls, src, &every_upstream)?;
        if self.ticket_key_file.is_some() && self.ticket_secret_file.is_some() {
            return Err(src.of(|f| f.ticket_secret_file.is_some()).invalid(
                "ticket_secret_file",
                "is given together with ticket_key_file; ticket keys come from one or the other",
                "keep ticket_secret_file (keys derived per period, nothing to rotate by hand) \
                 or ticket_key_file (keys listed by you), not both",
            ));
        }
        if self.service == Some(ServiceKind::Proxy)
            && proxy.upstreams.is_empty()
            && proxy.routes.is_empty()
        {
            return Err(Origin::Flag.invalid(
                "upstream",
                "the proxy service has no upstream",
                "give at least one --upstream HOST:PORT (or a --route)",
            ));
        }
        Ok(Settings {
            listen,
            cpus,
            backlog: self.backlog.unwrap_or(DEFAULT_BACKLOG),
            defer_accept: self.defer_accept.map_or(DEFAULT_DEFER_ACCEPT, |d| d.0),
            ring: RingOptions {
                entries: self.ring_entries.unwrap_or(crate::io::DEFAULT_RING_ENTRIES),
                coop_taskrun: self.coop_taskrun.unwrap_or(true),
                sqpoll_idle_ms: self.sqpoll_idle_ms,
                recv_multishot: self.recv_multishot.unwrap_or(true),
                backend: self.io_backend.unwrap_or_default(),
            },
            tls: TlsSettings {
                cert: self.cert,
                key: self.key,
                extra_certs: self.extra_cert.unwrap_or_default(),
                session_cache: self.session_cache.unwrap_or(DEFAULT_SESSION_CACHE),
                tls13_tickets: self.tls13_tickets.unwrap_or(DEFAULT_TLS13_TICKETS),
                tls12,
                tls13,
                alpn,
                cipher_suites: self.cipher_suites,
                kx_groups: self.kx_groups,
                client_auth: self.client_auth.unwrap_or_default(),
                client_ca: self.client_ca,
                ticket_rotation: d(
                    self.ticket_rotation,
                    match self.ticket_secret_file {
                        Some(_) => crate::tls::tickets::DEFAULT_SECRET_ROTATION,
                        None => crate::tls::tickets::DEFAULT_ROTATION,
                    },
                ),
                ticket_key_file: self.ticket_key_file,
                ticket_secret_file: self.ticket_secret_file,
                cert_dir: self.cert_dir,
                cert_compression: self.cert_compression.unwrap_or(true),
                engine_records: self.tls13_engine_records.unwrap_or(true),
            },
            proxy,
            service: self.service.unwrap_or(ServiceKind::Http),
            body_size: self.body_size.map(ByteSize::as_usize),
            max_header: self.max_header.map_or(
                crate::services::http::DEFAULT_MAX_HEADER,
                ByteSize::as_usize,
            ),
            handshake_timeout: d(self.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT),
            idle_timeout: d(self.idle_timeout, DEFAULT_IDLE_TIMEOUT),
            write_timeout: d(self.write_timeout, DEFAULT_WRITE_TIMEOUT),
            max_conns: self.max_conns.unwrap_or(DEFAULT_MAX_CONNS),
            grace: d(self.grace, DEFAULT_GRACE),
            log_format: self.log_format.unwrap_or(LogFormat::Human),
            log_level: self.log_level,
            ops,
            http,
            warnings,
            watch_files: self.watch_files.unwrap_or(true),
            sandbox: self.sandbox.unwrap_or(true),
            acme,
            listeners: Vec::new(),
        })
    }
}

/// Where each merged value came from: the flag if one was given, else the
/// file (for errors found after merging).
pub(super) struct Sources {
    pub(super) flags: Options,
    pub(super) file: Option<PathBuf>,
    /// While resolving a `[[listener]]` table: its index and its own
    /// values (a value it sets is named `listener[i].field`).
    pub(super) listener: Option<(usize, Options)>,
}

impl Sources {
    pub(super) fn of(&self, by_flag: impl Fn(&Options) -> bool) -> Origin<'_> {
        if let Some((i, own)) = &self.listener {
            if by_flag(own) {
                return Origin::Listener(listeners::file_name(self.file.as_deref()), *i);
            }
        }
        match &self.file {
            Some(p) if !by_flag(&self.flags) => Origin::File(p),
            _ => Origin::Flag,
        }
    }
}

/// Whether two listen addresses would take the same port (an unspecified
/// address overlaps every address of its family; port 0 is never shared).
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Which versions are on, from `tls12` and the min/max bounds.
fn versions(
    tls12: Option<bool>,
    lo: Option<TlsVersion>,
    hi: Option<TlsVersion>,
) -> Result<(bool, bool), ConfigError> {
    let lo = lo.unwrap_or(TlsVersion::V1_2);
    let hi = hi.unwrap_or(TlsVersion::V1_3);
    let v12 = tls12.unwrap_or(true) && lo <= TlsVersion::V1_2;
    let v13 = hi >= TlsVersion::V1_3;
    if lo > hi || !(v12 || v13) {
        return Err(Origin::Flag.invalid(
            "tls_min_version",
            "no TLS version is left (check tls12, tls_min_version, tls_max_version)",
            "allow at least one of 1.2 and 1.3",
        ));
    }
    Ok((v12, v13))
}

/// CPUs this process may run on.
pub fn available_cpus() -> Vec<usize> {
    match core_affinity::get_core_ids() {
        Some(ids) if !ids.is_empty() => ids.into_iter().map(|c| c.id).collect(),
        _ => vec![0],
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{file, flags, refused_file};
    use super::super::*;
    use super::*;
    use std::path::Path;

    #[test]
    fn defaults_are_documented_values() {
        let s = flags(&[]).resolve().expect("ok");
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.cpus, available_cpus());
        assert_eq!(s.tls.session_cache, DEFAULT_SESSION_CACHE);
        assert_eq!(s.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT);
        assert_eq!(s.service, ServiceKind::Http);
        assert!(s.ring.coop_taskrun);
    }

    #[test]
    fn flags_override_the_file() {
        let f = file(
            "shards = 1\nidle_timeout = \"5s\"\nservice = \"echo\"\nlisten = \"[::1]:9000\"\n",
        );
        let path = f.path().to_str().expect("utf8");
        let s = flags(&["--config", path, "--idle-timeout", "7s"])
            .resolve()
            .expect("ok");
        assert_eq!(s.idle_timeout, Duration::from_secs(7));
        assert_eq!(s.service, ServiceKind::Echo);
        assert_eq!(s.cpus.len(), 1);
        assert_eq!(s.listen.to_string(), "[::1]:9000");
    }

    #[test]
    fn defer_accept_defaults_on_comes_from_file_or_flag_and_a_long_one_is_named() {
        assert_eq!(
            flags(&[]).resolve().expect("ok").defer_accept,
            DEFAULT_DEFER_ACCEPT
        );
        let f = file("defer_accept = \"0s\"\n");
        let path = f.path().to_str().expect("utf8");
        let s = flags(&["--config", path]).resolve().expect("ok");
        assert_eq!(s.defer_accept, Duration::ZERO);
        let s = flags(&["--config", path, "--defer-accept", "3s"])
            .resolve()
            .expect("ok");
        assert_eq!(s.defer_accept, Duration::from_secs(3));
        let (path, e) = refused_file("defer_accept = \"2h\"\n");
        assert!(
            e.contains(&path) && e.contains("defer_accept") && e.contains("at most 1h"),
            "{e}"
        );
    }

    #[test]
    fn termination_settings_come_from_flags_and_the_file() {
        let f = file(
            "service = \"proxy\"\nupstream = [\"127.0.0.1:9\"]\nproxy_protocol = \"v2\"\n\
             upstream_http = true\n\
             tls_min_version = \"1.3\"\nclient_auth = \"optional\"\nclient_ca = \"ca.pem\"\n\
             ticket_rotation = \"1h\"\n[[extra_cert]]\ncert = \"a.pem\"\nkey = \"a.key\"\n",
        );
        let path = f.path().to_str().expect("utf8");
        let s = flags(&["--config", path, "--extra-cert", "b.pem,b.key"])
            .resolve()
            .expect("ok");
        assert_eq!(s.service, ServiceKind::Proxy);
        assert_eq!(
            s.proxy.upstreams[0].literal(),
            Some("127.0.0.1:9".parse().expect("addr"))
        );
        assert!(s.proxy.upstream_http);
        assert!(!s.tls.tls12 && s.tls.tls13);
        assert_eq!(s.tls.client_auth, crate::tls::ClientAuth::Optional);
        assert_eq!(s.tls.ticket_rotation, Duration::from_secs(3600));
        assert_eq!(
            s.tls.extra_certs.len(),
            1,
            "the flag overrides the file's list"
        );
        assert_eq!(s.tls.extra_certs[0].cert, PathBuf::from("b.pem"));
    }

    #[test]
    fn tls13_engine_records_default_on_and_turn_off_from_the_file_or_a_flag() {
        assert!(flags(&[]).resolve().expect("ok").tls.engine_records);
        let f = file("tls13_engine_records = false\n");
        let path = f.path().to_str().expect("utf8");
        let s = flags(&["--config", path]).resolve().expect("ok");
        assert!(!s.tls.engine_records);
        let s = flags(&["--tls13-engine-records", "false"])
            .resolve()
            .expect("ok");
        assert!(!s.tls.engine_records);
        let (path, e) = refused_file("tls13_engine_records = \"maybe\"\n");
        assert!(
            e.contains(&path) && e.contains("tls13_engine_records"),
            "{e}"
        );
    }

    #[test]
    fn metrics_on_the_tls_port_is_refused_as_our_own_listener() {
        let e = flags(&[
            "--listen",
            "127.0.0.1:8443",
            "--metrics-listen",
            "0.0.0.0:8443",
        ])
        .resolve()
        .expect_err("refused")
        .to_string();
        assert!(
            e.starts_with("flag --metrics-listen: 0.0.0.0:8443 is the TLS listener's own port"),
            "{e}"
        );
        let (path, e) = refused_file("metrics_listen = \"127.0.0.1:8443\"\n");
        assert!(
            e.starts_with(&format!("{path}: field `metrics_listen`")),
            "{e}"
        );
        assert!(
            flags(&["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
                .resolve()
                .is_ok()
        );
    }

    #[test]
    fn a_ticket_secret_defaults_to_12h_periods_and_excludes_a_key_file() {
        let s = flags(&["--ticket-secret-file", "/s"])
            .resolve()
            .expect("ok");
        assert_eq!(s.tls.ticket_rotation, Duration::from_secs(12 * 3600));
        assert_eq!(s.tls.ticket_secret_file.as_deref(), Some(Path::new("/s")));
        let s = flags(&["--ticket-secret-file", "/s", "--ticket-rotate", "2s"])
            .resolve()
            .expect("ok");
        assert_eq!(s.tls.ticket_rotation, Duration::from_secs(2));
        let s = flags(&[]).resolve().expect("ok");
        assert_eq!(s.tls.ticket_rotation, Duration::from_secs(6 * 3600));
        let e = flags(&["--ticket-secret-file", "/s", "--ticket-key-file", "/k"])
            .resolve()
            .expect_err("both")
            .to_string();
        assert!(
            e.starts_with("flag --ticket-secret-file:") && e.contains("ticket_key_file"),
            "{e}"
        );
        let f = file("ticket_secret_file = \"/s\"\nticket_rotate = \"1h\"\n");
        let path = f.path().to_str().expect("utf8");
        let s = flags(&["--config", path]).resolve().expect("ok");
        assert_eq!(s.tls.ticket_rotation, Duration::from_secs(3600));
        let e = flags(&["--config", path, "--ticket-key-file", "/k"])
            .resolve()
            .expect_err("both")
            .to_string();
        assert!(
            e.starts_with(&format!("{path}: field `ticket_secret_file`")),
            "{e}"
        );
    }

    #[test]
    fn files_are_watched_by_default_and_a_cert_dir_is_a_tls_setting() {
        let s = flags(&[]).resolve().expect("ok");
        assert!(s.watch_files && s.tls.cert_dir.is_none());
        let s = flags(&["--watch-files", "false", "--cert-dir", "/certs"])
            .resolve()
            .expect("ok");
        assert!(!s.watch_files);
        assert_eq!(s.tls.cert_dir.as_deref(), Some(Path::new("/certs")));
    }
}
