//! Same-library peers for `tuning/compare`: TLS servers written the way a
//! Rust user would write them, configured like uringtls so that the harness
//! compares the engine, not the TLS settings.
//!
//! What every peer shares (this module): the flags, the rustls
//! `ServerConfig` (rustls 0.23 + aws-lc-rs, AES-128-GCM preferred and
//! `ignore_client_order`, a 65,536-entry session cache, the aws-lc-rs
//! ticketer, one TLS 1.3 ticket per handshake, ALPN http/1.1), the body
//! (`hello world\n`, or `--body-size` bytes of it repeated, for every path,
//! as uringtls's `http` service), the listening socket, CPU pinning, and
//! exit 0 on SIGTERM. See docs/benchmarks.md, "Peers".
#![forbid(unsafe_code)]

use rustls::crypto::CryptoProvider;
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// The response body without `--body-size` (uringtls's default).
pub const BODY: &[u8] = b"hello world\n";
/// Session cache entries (uringtls's default).
pub const SESSION_CACHE: usize = 65_536;
/// Listen backlog (nginx's in tuning/compare/servers.py).
pub const BACKLOG: i32 = 4096;

/// Flags common to every peer.
#[derive(Debug, clap::Parser)]
pub struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8443.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Certificate chain (PEM).
    #[arg(long)]
    pub cert: PathBuf,
    /// Private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// Response body size in bytes (`hello world\n` repeated, cut at size)
    /// [default: the 12-byte `hello world\n`].
    #[arg(long)]
    pub body_size: Option<usize>,
    /// No tickets, no session cache, TLS 1.3 only: every handshake is full
    /// (like uringtls with `--tls13-tickets 0 --tls12 false`).
    #[arg(long)]
    pub no_resumption: bool,
    /// Pin the process to this CPU.
    #[arg(long)]
    pub cpu: Option<usize>,
}

/// The body for every `200` response.
pub fn body(size: Option<usize>) -> Vec<u8> {
    match size {
        Some(n) => BODY.iter().copied().cycle().take(n).collect(),
        None => BODY.to_vec(),
    }
}

/// aws-lc-rs with uringtls's suite order (AES-128-GCM first).
fn provider() -> CryptoProvider {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    p
}

/// The server config, as uringtls builds it by default (or without any
/// resumption with `--no-resumption`).
pub fn server_config(a: &Args) -> Result<Arc<ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(&a.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--cert {}: {e}", a.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&a.key)
        .map_err(|e| format!("--key {}: {e}", a.key.display()))?;
    let versions: &[&rustls::SupportedProtocolVersion] = if a.no_resumption {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("--cert/--key: {e}"))?;
    cfg.ignore_client_order = true;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if a.no_resumption {
        cfg.session_storage = Arc::new(NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
    } else {
        cfg.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        cfg.ticketer =
            rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| format!("ticketer: {e}"))?;
        cfg.send_tls13_tickets = 1;
    }
    Ok(Arc::new(cfg))
}

/// A non-blocking listening socket on `addr` (SO_REUSEADDR, backlog
/// [`BACKLOG`]).
pub fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// Pins the calling thread (call before the runtime starts) and makes
/// SIGTERM and SIGINT exit the process with status 0 at once (a thread that
/// sleeps in `sigwait` until then).
pub fn setup(a: &Args) -> Result<(), String> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(|e| format!("signal handler: {e}"))?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            std::process::exit(0);
        }
    });
    if let Some(id) = a.cpu {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            return Err(format!("--cpu {id}: cannot pin to that CPU"));
        }
    }
    Ok(())
}

/// Parses the flags and runs `serve` with the listener, config and body;
/// prints `listening on ADDR` once bound (how tests learn a port-0
/// address), errors to stderr with exit status 1.
pub fn main_with<F>(serve: F)
where
    F: FnOnce(std::net::TcpListener, Arc<ServerConfig>, Vec<u8>) -> std::io::Result<()>,
{
    let a = <Args as clap::Parser>::parse();
    let run = || -> Result<(), String> {
        let cfg = server_config(&a)?;
        setup(&a)?;
        let l = listener(a.listen).map_err(|e| format!("--listen {}: {e}", a.listen))?;
        println!(
            "listening on {}",
            l.local_addr().map_err(|e| e.to_string())?
        );
        serve(l, cfg, body(a.body_size)).map_err(|e| format!("serve: {e}"))
    };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
