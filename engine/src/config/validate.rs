//! Checks of one source (the flags, the file, a `[[listener]]` table) on its
//! own, before merging, so that an error names where the value came from:
//! [`Options::check`] and the parsers of single values (`listen`, `cpus`).
//! The checks of a group of settings live with the group (`acme.rs`,
//! `http.rs`, `operations.rs`, `routes.rs`, `upstream_tls.rs`); checks
//! across fields of the merged options are made while mapping them
//! (`mapping.rs`).

use super::upstreams::is_host_port;
use super::{
    check_log_filter, ByteSize, ConfigError, CpuListError, ListenAddrError, Options, Origin,
    DEFAULT_BACKLOG, DEFAULT_DEFER_ACCEPT, DEFAULT_MAX_CONNS, DEFAULT_SESSION_CACHE,
};
use crate::io::DEFAULT_RING_ENTRIES;
use crate::services::http::DEFAULT_MAX_HEADER;
use std::net::SocketAddr;
use std::time::Duration;

/// Longest `defer_accept` accepted.
const MAX_DEFER_ACCEPT: Duration = Duration::from_secs(3600);

impl Options {
    /// Checks every value present in this one source.
    pub(super) fn check(&self, o: Origin<'_>) -> Result<(), ConfigError> {
        if let Some(l) = &self.listen {
            parse_listen(l).map_err(|p| {
                o.invalid(
                    "listen",
                    p,
                    "write IP:PORT, e.g. 127.0.0.1:8443 or [::1]:8443",
                )
            })?;
        }
        if self.shards == Some(0) {
            return Err(o.invalid(
                "shards",
                "0 shards cannot serve",
                "use 1 or more (default: one per CPU)",
            ));
        }
        if let Some(c) = &self.cpus {
            parse_cpus(c)
                .map_err(|p| o.invalid("cpus", p, "write a list such as `1` or `0,2-3`"))?;
        }
        if let Some(f) = &self.log_level {
            if let Err(e) = check_log_filter(f) {
                return Err(o.invalid(
                    "log_level",
                    format!("{f:?} is not a log filter: {e}"),
                    "use a level (error, warn, info, debug, trace, off) or `target=level` \
                     directives (`warn,uringtls::access=info`)",
                ));
            }
        }
        if self.backlog == Some(0) {
            return Err(o.invalid(
                "backlog",
                "backlog 0",
                format!("use a positive number (default {DEFAULT_BACKLOG})"),
            ));
        }
        if let Some(d) = self.defer_accept {
            if d.0 > MAX_DEFER_ACCEPT {
                return Err(o.invalid(
                    "defer_accept",
                    format!("{:?} is too long", d.0),
                    format!("use at most 1h (default {DEFAULT_DEFER_ACCEPT:?}; 0 turns it off)"),
                ));
            }
        }
        if let Some(n) = self.ring_entries {
            if !(2..=32_768).contains(&n) {
                return Err(o.invalid(
                    "ring_entries",
                    format!("{n} is out of range"),
                    format!("use 2..=32768 (default {DEFAULT_RING_ENTRIES})"),
                ));
            }
        }
        if self.session_cache == Some(0) {
            return Err(o.invalid(
                "session_cache",
                "a cache of 0 entries",
                format!("use 1 or more (default {DEFAULT_SESSION_CACHE})"),
            ));
        }
        if self.max_conns == Some(0) {
            return Err(o.invalid(
                "max_conns",
                "0 connections per shard",
                format!("use 1 or more (default {DEFAULT_MAX_CONNS})"),
            ));
        }
        if let Some(b) = self.body_size {
            if b.0 > 1 << 30 {
                return Err(o.invalid(
                    "body_size",
                    format!("{} bytes is over 1 GiB", b.0),
                    "use a smaller body",
                ));
            }
        }
        if let Some(h) = self.max_header {
            if h.0 < 64 {
                return Err(o.invalid(
                    "max_header",
                    format!("{} bytes", h.0),
                    format!(
                        "use at least 64 (default {})",
                        ByteSize(DEFAULT_MAX_HEADER as u64)
                    ),
                ));
            }
        }
        for (name, d) in [
            ("handshake_timeout", self.handshake_timeout),
            ("idle_timeout", self.idle_timeout),
            ("write_timeout", self.write_timeout),
        ] {
            if d.is_some_and(|d| d.0.is_zero()) {
                return Err(o.invalid(
                    name,
                    "a zero timeout",
                    "use a positive duration such as `10s`",
                ));
            }
        }
        self.check_operations(o)?;
        self.check_termination(o)?;
        self.check_http(o)?;
        self.check_acme(o)?;
        self.check_routes(o)?;
        self.check_upstream_tls(o)?;
        if self.cert.is_some() != self.key.is_some() {
            let missing = if self.cert.is_some() { "key" } else { "cert" };
            return Err(o.invalid(
                missing,
                "cert and key must be given together",
                format!("give `{missing}` too, or neither for a self-signed certificate"),
            ));
        }
        Ok(())
    }

    /// Checks of the TLS-termination settings present in one source.
    fn check_termination(&self, o: Origin<'_>) -> Result<(), ConfigError> {
        if let (Some(lo), Some(hi)) = (self.tls_min_version, self.tls_max_version) {
            if lo > hi {
                return Err(o.invalid(
                    "tls_min_version",
                    "is above tls_max_version",
                    "lower it or raise tls_max_version",
                ));
            }
        }
        for (name, list) in [
            ("cipher_suites", &self.cipher_suites),
            ("kx_groups", &self.kx_groups),
        ] {
            if list
                .as_ref()
                .is_some_and(|l| l.iter().all(|n| n.trim().is_empty()))
            {
                return Err(o.invalid(
                    name,
                    "an empty list",
                    "name at least one, or leave it out for the defaults",
                ));
            }
        }
        if self.ticket_rotation.is_some_and(|d| d.0.as_secs() == 0) {
            return Err(o.invalid(
                "ticket_rotation",
                "under one second",
                "use a duration such as `6h`",
            ));
        }
        for u in self.upstream.iter().flatten() {
            if !is_host_port(u) {
                return Err(o.invalid(
                    "upstream",
                    format!("`{u}` is not HOST:PORT"),
                    "write e.g. 127.0.0.1:8080 or backend.local:80",
                ));
            }
        }
        Ok(())
    }
}

/// Parses a listen address, `IP:PORT`.
pub(super) fn parse_listen(s: &str) -> Result<SocketAddr, ListenAddrError> {
    s.parse().map_err(|_| ListenAddrError(s.to_owned()))
}

/// CPU numbers at or above this are refused (the kernel's `CPU_SETSIZE` is
/// 1024; larger machines use up to 4096 with the default config). Bounds
/// the expansion of ranges such as `3-5555555555554` (found by fuzzing).
pub(super) const MAX_CPU: usize = 4096;

/// Parses `0,2-3` into `[0, 2, 3]`.
pub fn parse_cpus(s: &str) -> Result<Vec<usize>, CpuListError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |x: &str| {
            let n = x
                .trim()
                .parse::<usize>()
                .map_err(|_| CpuListError::NotANumber(part.to_owned()))?;
            if n >= MAX_CPU {
                return Err(CpuListError::TooLarge(n));
            }
            Ok(n)
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(CpuListError::Backwards(part.to_owned()));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    if out.is_empty() {
        return Err(CpuListError::Empty);
    }
    let mut seen = out.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != out.len() {
        return Err(CpuListError::Twice(s.to_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{flags, refused_file};
    use super::*;
    use clap::Parser;

    #[test]
    fn out_of_range_values_name_the_default_from_its_constant() {
        let err = |args: &[&str]| flags(args).resolve().expect_err("refused").to_string();
        let cases = [
            (
                err(&["--backlog", "0"]),
                format!("flag --backlog: backlog 0; use a positive number (default {DEFAULT_BACKLOG})"),
            ),
            (
                err(&["--defer-accept", "2h"]),
                format!(
                    "flag --defer-accept: 7200s is too long; use at most 1h (default {:?}; 0 turns it off)",
                    DEFAULT_DEFER_ACCEPT
                ),
            ),
            (
                err(&["--ring-entries", "1"]),
                format!("flag --ring-entries: 1 is out of range; use 2..=32768 (default {DEFAULT_RING_ENTRIES})"),
            ),
            (
                err(&["--session-cache", "0"]),
                format!("flag --session-cache: a cache of 0 entries; use 1 or more (default {DEFAULT_SESSION_CACHE})"),
            ),
            (
                err(&["--max-conns", "0"]),
                format!("flag --max-conns: 0 connections per shard; use 1 or more (default {DEFAULT_MAX_CONNS})"),
            ),
            (
                err(&["--max-header", "10"]),
                format!(
                    "flag --max-header: 10 bytes; use at least 64 (default {})",
                    ByteSize(DEFAULT_MAX_HEADER as u64)
                ),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn zero_shards_flag_is_named() {
        let e = flags(&["--shards", "0"]).resolve().unwrap_err().to_string();
        assert!(e.starts_with("flag --shards: 0 shards"), "{e}");
    }

    #[test]
    fn bad_field_in_file_names_file_and_field() {
        let (path, e) = refused_file("listen = \"nonsense\"\n");
        assert!(e.contains(&path) && e.contains("field `listen`"), "{e}");
    }

    #[test]
    fn a_bad_log_filter_is_named_before_anything_starts() {
        let e = flags(&["--log-level", "uringtls=lots"])
            .resolve()
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("--log-level") && e.contains("uringtls=lots"),
            "{e}"
        );
        assert!(flags(&["--log-level", "warn,uringtls::access=info"])
            .resolve()
            .is_ok());
    }

    #[test]
    fn cert_without_key_is_refused() {
        let e = flags(&["--cert", "c.pem"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--key"), "{e}");
    }

    #[test]
    fn cpu_lists_parse_and_reject_nonsense() {
        assert_eq!(parse_cpus("0,2-3"), Ok(vec![0, 2, 3]));
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("a").is_err());
        assert!(parse_cpus("1,1").is_err());
        assert!(
            parse_cpus("3-5555555555554").is_err(),
            "huge range must not be expanded"
        );
        assert!(parse_cpus("4096").is_err());
        let e = flags(&["--cpus", "4000"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains("CPU 4000 is not available"), "{e}");
    }

    #[test]
    fn termination_mistakes_are_named() {
        let err = |args: &[&str]| flags(args).resolve().unwrap_err().to_string();
        let e = err(&["--tls-min-version", "1.3", "--tls-max-version", "1.2"]);
        assert!(e.starts_with("flag --tls-min-version"), "{e}");
        let e = err(&["--client-auth", "required"]);
        assert!(e.contains("--client-ca"), "{e}");
        let e = err(&["--service", "proxy"]);
        assert!(e.contains("--upstream"), "{e}");
        let e = err(&["--upstream", "nohostport"]);
        assert!(
            e.starts_with("flag --upstream: `nohostport` is not HOST:PORT"),
            "{e}"
        );
        assert!(Options::try_parse_from(["uringtls", "--extra-cert", "onlyone.pem"]).is_err());
    }

    #[test]
    fn a_mistyped_log_level_is_refused_from_flags_and_the_file() {
        for bad in ["warning", "verbose", "uringtls=loud"] {
            let e = flags(&["--log-level", bad])
                .resolve()
                .expect_err(bad)
                .to_string();
            assert!(e.starts_with("flag --log-level:") && e.contains(bad), "{e}");
        }
        let (path, e) = refused_file("log_level = \"warning\"\n");
        assert!(
            e.starts_with(&format!("{path}: field `log_level`")) && e.contains("`warning`"),
            "{e}"
        );
    }
}
