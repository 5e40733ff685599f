//! The schema of every setting: [`Options`], at once the clap argument
//! struct (`--name`) and the serde file struct (`name = ...`), its enums,
//! and the `DEFAULT_*` values that `mapping.rs` fills in for a setting
//! given nowhere. Every field is optional, so that a flag overrides the
//! file, which overrides the default; each field's doc line (the `--help`
//! text) names its unit and default.

use super::{ByteSize, ConfigError, DurationOrOff, HumanDuration};
use clap::{Parser, ValueEnum};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Default listen backlog per shard.
pub const DEFAULT_BACKLOG: u32 = 4096;
/// Default longest wait for a connection's first bytes before accepting it
/// anyway (`TCP_DEFER_ACCEPT`).
pub const DEFAULT_DEFER_ACCEPT: Duration = Duration::from_secs(10);
/// Default shared session-cache size (entries).
pub const DEFAULT_SESSION_CACHE: usize = 65_536;
/// Default TLS 1.3 tickets per handshake (clients use one per reconnect).
pub const DEFAULT_TLS13_TICKETS: usize = 1;
/// Default handshake timeout.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default idle timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default write timeout.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default drain grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Default per-shard connection cap.
pub const DEFAULT_MAX_CONNS: usize = 65_536;

/// Which built-in service runs on decrypted streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// Writes back what it reads.
    Echo,
    /// Minimal HTTP/1.1 responder with a fixed body.
    Http,
    /// TLS termination in front of plain TCP upstreams (`upstream`).
    Proxy,
}

/// A TLS protocol version, for `tls_min_version` / `tls_max_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[value(name = "1.2")]
    #[serde(rename = "1.2")]
    V1_2,
    /// TLS 1.3.
    #[value(name = "1.3")]
    #[serde(rename = "1.3")]
    V1_3,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Every setting, from flags (`--name`) or the TOML file (`name = ...`).
#[derive(Debug, Clone, Default, Parser, Deserialize)]
#[command(
    name = "uringtls",
    version,
    about = "io_uring shard-per-core TLS server"
)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// TOML file with these same settings (flags override it).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on, IPv4 or IPv6 [default: 127.0.0.1:8443].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Number of shards (threads, one per CPU) [default: one per available CPU].
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// CPUs to pin shards to, e.g. `1` or `0,2-3` [default: the first N CPUs].
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
    /// Listen backlog per shard (connections) [default: 4096].
    #[arg(long, value_name = "N")]
    pub backlog: Option<u32>,
    /// Accept a connection once its first bytes (the ClientHello) have
    /// arrived, waiting at most this long (TCP_DEFER_ACCEPT); `0` accepts
    /// on the TCP handshake [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub defer_accept: Option<HumanDuration>,
    /// io_uring submission-queue entries per shard [default: 1024].
    #[arg(long, value_name = "N")]
    pub ring_entries: Option<u32>,
    /// IORING_SETUP_COOP_TASKRUN on the shard rings [default: true].
    #[arg(long, value_name = "BOOL")]
    pub coop_taskrun: Option<bool>,
    /// IORING_SETUP_SQPOLL with this idle time, milliseconds [default: off].
    #[arg(long, value_name = "MS")]
    pub sqpoll_idle_ms: Option<u32>,
    /// Multishot receives on the uring backend: one receive per connection
    /// stays armed across reads [default: true].
    #[arg(long, value_name = "BOOL")]
    pub recv_multishot: Option<bool>,
    /// I/O backend of the shard runtimes: `auto` (io_uring where available,
    /// else epoll with a warning), `uring`, `tokio-uring` or `epoll`
    /// [default: auto].
    #[arg(long, value_name = "NAME")]
    pub io_backend: Option<crate::io::Backend>,

    /// Certificate chain, PEM [default: generate a self-signed certificate].
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Shared TLS session-cache entries [default: 65536].
    #[arg(long, value_name = "N")]
    pub session_cache: Option<usize>,
    /// TLS 1.3 tickets sent per handshake [default: 1].
    #[arg(long, value_name = "N")]
    pub tls13_tickets: Option<usize>,
    /// Allow TLS 1.2 besides TLS 1.3 [default: true].
    #[arg(long, value_name = "BOOL")]
    pub tls12: Option<bool>,
    /// ALPN protocols, comma-separated, in preference order [default: http/1.1].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub alpn: Option<Vec<String>>,
    /// More certificates, chosen by SNI against their subjectAltNames (exact
    /// and `*.` wildcard); repeat the flag. TOML: `[[extra_cert]]` tables
    /// with `cert` and `key`. `--cert`/`--key` stay the default certificate.
    #[arg(long, value_name = "CERT,KEY")]
    pub extra_cert: Option<Vec<crate::tls::CertPair>>,
    /// Lowest TLS version accepted: 1.2 or 1.3 [default: 1.2].
    #[arg(long, value_enum, value_name = "VERSION")]
    pub tls_min_version: Option<TlsVersion>,
    /// Highest TLS version accepted: 1.2 or 1.3 [default: 1.3].
    #[arg(long, value_enum, value_name = "VERSION")]
    pub tls_max_version: Option<TlsVersion>,
    /// Cipher suites, comma-separated, in preference order, by rustls, IANA
    /// or OpenSSL name, e.g. `TLS13_AES_128_GCM_SHA256`, `TLS_AES_128_GCM_SHA256`,
    /// `ECDHE-ECDSA-AES128-GCM-SHA256` [default: AES-128-GCM, AES-256-GCM, ChaCha20].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub cipher_suites: Option<Vec<String>>,
    /// Key-exchange groups, comma-separated, in preference order, e.g.
    /// `X25519MLKEM768,X25519` [default: X25519, secp256r1, secp384r1, X25519MLKEM768].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub kx_groups: Option<Vec<String>>,
    /// Client certificates: none, optional or required [default: none].
    #[arg(long, value_enum)]
    pub client_auth: Option<crate::tls::ClientAuth>,
    /// CA bundle (PEM) client certificates must chain to (with client_auth).
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Ticket-key file shared by a fleet (hex lines; first encrypts, all
    /// decrypt; mode 0600/0640) [default: in-memory keys].
    #[arg(long, value_name = "FILE")]
    pub ticket_key_file: Option<PathBuf>,
    /// Rotation period of in-memory ticket keys (or of keys derived from
    /// `ticket_secret_file`), and lifetime hint of every ticket; also
    /// `--ticket-rotate` [default: 6h; 12h with ticket_secret_file].
    #[arg(long, value_name = "DURATION", visible_alias = "ticket-rotate")]
    #[serde(alias = "ticket_rotate")]
    pub ticket_rotation: Option<HumanDuration>,

    /// Service on decrypted streams [default: http].
    #[arg(long, value_enum)]
    pub service: Option<ServiceKind>,
    /// http: response body size, bytes or with a unit (`1MiB`, `64k`) [default: 12, `hello world\n`].
    #[arg(long, value_name = "SIZE")]
    pub body_size: Option<ByteSize>,
    /// http: request header limit, bytes or with a unit (`16KiB`) (431 beyond) [default: 8KiB].
    #[arg(long, value_name = "SIZE")]
    pub max_header: Option<ByteSize>,
    /// proxy: upstream HOST:PORT; repeat (or comma-separate) for round robin.
    /// Names are resolved when the proxy starts, at each reload (SIGHUP) and
    /// every upstream_resolve_interval, never per connection.
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
    pub upstream: Option<Vec<String>>,
    /// proxy: time allowed to connect to an upstream [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub upstream_connect_timeout: Option<HumanDuration>,
    /// proxy: an upstream that failed to connect is skipped this long [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub upstream_fail_timeout: Option<HumanDuration>,
    /// proxy: send a PROXY protocol header (v1 or v2) to the upstream [default: none].
    #[arg(long, value_enum)]
    pub proxy_protocol: Option<crate::services::proxy::ProxyProtocol>,
    /// proxy: the upstreams speak HTTP/1.1; when none can be reached, an HTTP/1.1
    /// client (ALPN http/1.1 or none) gets `502 Bad Gateway` before the close [default: false].
    #[arg(long, value_name = "BOOL")]
    pub upstream_http: Option<bool>,

    /// A client must finish its handshake within this time [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub handshake_timeout: Option<HumanDuration>,
    /// Close a connection idle (nothing received) this long [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<HumanDuration>,
    /// Close a connection whose peer does not read for this long [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub write_timeout: Option<HumanDuration>,
    /// Maximum connections per shard; more are closed at once [default: 65536].
    #[arg(long, value_name = "N")]
    pub max_conns: Option<usize>,
    /// On SIGINT/SIGTERM, time for in-flight connections to finish [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub grace: Option<HumanDuration>,
    /// http: a request's headers must arrive within this time of its first
    /// byte (slowloris) [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub header_timeout: Option<HumanDuration>,

    /// Connections over all shards; more are closed at accept [default: no cap].
    #[arg(long, value_name = "N")]
    pub max_conns_total: Option<usize>,
    /// Concurrent connections per client address, enforced per shard [default: no cap].
    #[arg(long, value_name = "N")]
    pub max_conns_per_ip: Option<u32>,
    /// New connections per second per client address, enforced per shard [default: no limit].
    #[arg(long, value_name = "RATE")]
    pub conn_rate_per_ip: Option<f64>,
    /// Connections a client address may open back to back before the rate applies [default: 20].
    #[arg(long, value_name = "N")]
    pub conn_burst_per_ip: Option<u32>,
    /// IPv6 clients are counted per prefix of this length for the per-address limits [default: 64].
    #[arg(long, value_name = "BITS")]
    pub per_ip_ipv6_prefix: Option<u8>,
    /// Only these client networks are served, CIDR, comma-separated [default: all].
    #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
    pub allow: Option<Vec<String>>,
    /// These client networks are refused at accept, CIDR, comma-separated [default: none].
    #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
    pub deny: Option<Vec<String>>,

    /// Serve Prometheus metrics at http://ADDR/metrics [default: off].
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// One log line per connection, target `uringtls::access` [default: false].
    #[arg(long, value_name = "BOOL")]
    pub access_log: Option<bool>,
    /// After binding and reading keys, drop to this user (name or uid) [default: stay].
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Group to drop to with `user` (name or gid) [default: the user's primary group].
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Start even if the private key is readable by group or others [default: false].
    #[arg(long, value_name = "BOOL")]
    pub insecure_key_permissions: Option<bool>,

    /// Log format [default: human].
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter: a level (error, warn, info, debug, trace, off) or
    /// `target=level` directives, e.g. `warn,uringtls::access=info` [default: info, or RUST_LOG].
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// http: largest request body, bytes or e.g. `64KiB`, `1MiB`; a larger
    /// `Content-Length` gets 413 and the connection closes [default: 1MiB].
    #[arg(long, value_name = "SIZE")]
    pub max_body: Option<ByteSize>,
    /// http: a request (headers and body) must arrive within this time of
    /// its first byte [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub request_timeout: Option<HumanDuration>,
    /// Handshakes in progress per shard; at the limit the shard stops
    /// accepting (new connections wait in the backlog) until one ends or
    /// the oldest has run a tenth of the handshake timeout, which is then
    /// cut off. Worst case ~74 KiB each [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_handshakes: Option<usize>,
    /// Secret shared by a fleet (at least 32 bytes, mode 0600): each
    /// instance derives the ticket key of every rotation period from it
    /// (HKDF), so tickets resume across instances with no key distribution.
    /// Exclusive with ticket_key_file [default: off].
    #[arg(long, value_name = "FILE")]
    pub ticket_secret_file: Option<PathBuf>,
    /// Reload when a certificate, key, CA, ticket-key or ticket-secret file
    /// (or cert_dir) changes, as on SIGHUP (inotify on their directories;
    /// Kubernetes Secret updates included) [default: true].
    #[arg(long, value_name = "BOOL")]
    pub watch_files: Option<bool>,
    /// Directory of `NAME.pem` + `NAME.key` pairs, each chosen by SNI
    /// against its subjectAltNames (like extra_cert); pairs added or
    /// removed are picked up on reload (and by watch_files) [default: none].
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Send the certificate chain compressed (RFC 8879: brotli or zlib,
    /// TLS 1.3) to clients that offer it: fewer bytes, often one round
    /// trip less for long chains [default: true].
    #[arg(long, value_name = "BOOL")]
    pub cert_compression: Option<bool>,
    /// After a TLS 1.3 handshake, seal and open records in the engine
    /// (rustls keeps the key schedule): no allocation or second copy per
    /// record. `false` leaves them to rustls [default: true].
    #[arg(long, value_name = "BOOL")]
    pub tls13_engine_records: Option<bool>,
    /// After start-up, fence the process in: io_uring restrictions,
    /// seccomp allow-list, Landlock read-only file access (see
    /// docs/security.md); restart to change [default: true].
    #[arg(long, value_name = "BOOL")]
    pub sandbox: Option<bool>,

    /// Obtain and renew a certificate for this name with ACME (TLS-ALPN-01
    /// on the TLS listener, which must be reachable on port 443 under this
    /// name); repeat for more names. Needs --acme-cache. TOML: a list.
    #[arg(long, value_name = "NAME")]
    pub acme_domain: Option<Vec<String>>,
    /// ACME directory URL [default: Let's Encrypt production; staging:
    /// `https://acme-staging-v02.api.letsencrypt.org/directory`].
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,
    /// Contact e-mail of the ACME account [default: none].
    #[arg(long, value_name = "ADDRESS")]
    pub acme_email: Option<String>,
    /// Directory for the ACME account key, certificates and keys (created
    /// 0700; files 0600); instances sharing it order one at a time.
    #[arg(long, value_name = "DIR")]
    pub acme_cache: Option<PathBuf>,
    /// Extra CA roots (PEM) trusted for the ACME server's HTTPS, beside the
    /// system's (a private ACME server) [default: none].
    #[arg(long, value_name = "FILE")]
    pub acme_ca: Option<PathBuf>,
    /// Load balancers that send a PROXY protocol header (v1 or v2), CIDR,
    /// comma-separated or repeated: a connection from these networks must
    /// start with one, and is served as the client it names [default: none].
    #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
    pub accept_proxy: Option<Vec<String>>,

    /// proxy: a route by server name and/or ALPN to a pool of its own:
    /// `NAME=UP[,UP...]`, `*.SUFFIX=...` (one or more labels), `NAME@ALPN=...`
    /// or `@ALPN=...`; repeat the flag. The most specific name wins (exact,
    /// then the longest wildcard), then a matching ALPN. TOML: `[[route]]`
    /// tables with `sni`, `alpn`, `upstreams`. `upstream` stays the default
    /// pool [default: none].
    #[arg(long, value_name = "PATTERN=HOST:PORT,...")]
    pub route: Option<Vec<crate::services::proxy::RouteOption>>,
    /// proxy: check every upstream (a TCP connect) this often [default: off].
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<HumanDuration>,
    /// proxy: failed checks in a row that take an upstream out of its pool [default: 3].
    #[arg(long, value_name = "N")]
    pub health_fails: Option<u32>,
    /// proxy: passed checks in a row that bring it back [default: 2].
    #[arg(long, value_name = "N")]
    pub health_passes: Option<u32>,
    /// proxy: time a health check may take [default: upstream_connect_timeout].
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<HumanDuration>,

    /// proxy: speak TLS to the upstreams, their certificates verified
    /// [default: false].
    #[arg(long, value_name = "BOOL")]
    pub upstream_tls: Option<bool>,
    /// proxy: CA bundle (PEM) the upstreams' certificates must chain to
    /// [default: the Mozilla roots compiled in (webpki-roots)].
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// proxy: server name sent to and verified against every upstream
    /// [default: each upstream's host as written in `upstream`; an IP is
    /// verified as an IP SAN, with no SNI sent].
    #[arg(long, value_name = "NAME")]
    pub upstream_sni: Option<String>,
    /// proxy: client certificate chain (PEM) for mTLS to the upstreams;
    /// needs upstream_key [default: none].
    #[arg(long, value_name = "FILE")]
    pub upstream_cert: Option<PathBuf>,
    /// proxy: private key (PEM) of upstream_cert [default: none].
    #[arg(long, value_name = "FILE")]
    pub upstream_key: Option<PathBuf>,
    /// proxy: ALPN offered to the upstreams, comma-separated, or
    /// `passthrough` (the protocol the client negotiated) [default: none].
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub upstream_alpn: Option<Vec<String>>,
    /// proxy: resolve upstream names again this often, off the shards; a name
    /// that moved takes new connections to its new address; `off` (or 0):
    /// only at start and reload [default: 30s].
    #[arg(long, value_name = "DURATION|off")]
    pub upstream_resolve_interval: Option<DurationOrOff>,

    /// More listeners in one process (TOML only, `[[listener]]` tables):
    /// each table's own settings over the top level's; see
    /// [`Settings::listeners`](super::Settings::listeners).
    #[arg(skip)]
    #[serde(default)]
    pub listener: Option<Vec<toml::Table>>,
}

impl Options {
    /// Loads the TOML file named by `--config`, if any.
    pub fn load_file(path: &Path) -> Result<Options, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{file, flags, refused_file};
    use super::*;

    #[test]
    fn the_io_backend_comes_from_the_file_and_a_bad_one_is_named() {
        assert_eq!(
            flags(&[]).resolve().expect("ok").ring.backend,
            crate::io::Backend::Auto
        );
        let f = file("io_backend = \"tokio-uring\"\n");
        let path = f.path().to_str().expect("utf8");
        let s = flags(&["--config", path]).resolve().expect("ok");
        assert_eq!(s.ring.backend, crate::io::Backend::TokioUring);
        let f = file("io_backend = \"epoll\"\n");
        let path = f.path().to_str().expect("utf8");
        let s = flags(&["--config", path]).resolve().expect("ok");
        assert_eq!(s.ring.backend, crate::io::Backend::Epoll);
        let (path, e) = refused_file("io_backend = \"kqueue\"\n");
        assert!(e.contains(&path) && e.contains("io_backend"), "{e}");
    }

    #[test]
    fn unknown_key_in_file_is_reported_with_its_name() {
        let (path, e) = refused_file("shardz = 3\n");
        assert!(e.contains(&path) && e.contains("shardz"), "{e}");
    }

    #[test]
    fn missing_config_file_is_named() {
        let e = flags(&["--config", "/nonexistent/u.toml"])
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/u.toml"), "{e}");
    }

    #[test]
    fn sizes_take_binary_units_in_flags_and_the_file() {
        let s = flags(&["--body-size", "1MiB", "--max-header", "16KiB"])
            .resolve()
            .expect("ok");
        assert_eq!((s.body_size, s.max_header), (Some(1 << 20), 16 << 10));
        let f = file("body_size = \"2KiB\"\nmax_header = 4096\n");
        let path = f.path().to_str().expect("utf8");
        let s = flags(&["--config", path]).resolve().expect("ok");
        assert_eq!((s.body_size, s.max_header), (Some(2048), 4096));
        let (path, e) = refused_file("body_size = \"1TB\"\n");
        assert!(
            e.contains(&path) && e.contains("body_size") && e.contains("KiB, MiB or GiB"),
            "{e}"
        );
        let e = Options::try_parse_from(["uringtls", "--body-size", "1MiBs"])
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("--body-size") && e.contains("KiB, MiB or GiB"),
            "{e}"
        );
    }

    #[test]
    fn durations_list_what_is_accepted_in_flags_and_the_file() {
        let (path, e) = refused_file("idle_timeout = \"5 days\"\n");
        assert!(
            e.contains(&path)
                && e.contains("idle_timeout")
                && e.contains("us, ms, s, m (or min), h"),
            "{e}"
        );
        let f = file("idle_timeout = 5\n");
        let path = f.path().to_str().expect("utf8");
        let s = flags(&["--config", path, "--grace", "5"])
            .resolve()
            .expect("ok");
        assert_eq!(
            (s.idle_timeout, s.grace),
            (Duration::from_secs(5), Duration::from_secs(5)),
            "a bare number is seconds in both"
        );
    }
}
