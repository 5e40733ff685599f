//! Server CPU per in-memory TLS 1.3 handshake: the engine's TLS 1.3 suites
//! (keyed HKDF, `uringtls::tls::hkdf`) against rustls's aws-lc-rs suites as
//! they come. Everything else is the same: certificate (ECDSA P-256),
//! X25519, AES-128-GCM, one ticket per handshake.
//!
//! No sockets: a rustls client and server talk through memory on one
//! thread, and only the server's calls are timed (thread CPU time), so the
//! figure is the server's TLS work alone, without the kernel and without
//! the machine's scheduling noise. Rounds alternate the two variants.
//!
//! Run: `cargo run --release --example handshake_cpu [ROUNDS] [HANDSHAKES]`
//! (defaults 7 and 2000).

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use std::time::Duration;

/// CPU time of this thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn provider(keyed: bool) -> CryptoProvider {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    p.cipher_suites = vec![rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256];
    p.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    if keyed {
        p.cipher_suites = p
            .cipher_suites
            .into_iter()
            .map(uringtls::tls::hkdf::keyed)
            .collect();
    }
    p
}

fn server(
    keyed: bool,
    cert: &CertificateDer<'static>,
    key: &PrivateKeyDer<'static>,
) -> Arc<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(provider(keyed)))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key.clone_key())
        .expect("certificate");
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().expect("ticketer");
    cfg.send_tls13_tickets = 1;
    Arc::new(cfg)
}

fn client(cert: &CertificateDer<'static>, resume: bool) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).expect("root");
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider(false)))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(cfg)
}

/// One handshake plus the server's tickets delivered; returns the server's
/// CPU time and whether it resumed.
fn handshake(c: &Arc<ClientConfig>, s: &Arc<ServerConfig>) -> (Duration, bool) {
    let mut cli =
        ClientConnection::new(c.clone(), "localhost".try_into().expect("name")).expect("client");
    let mut wire = Vec::new();
    let mut spent = Duration::ZERO;
    let t = thread_cpu();
    let mut srv = ServerConnection::new(s.clone()).expect("server");
    spent += thread_cpu() - t;
    for _ in 0..10 {
        wire.clear();
        while cli.wants_write() {
            cli.write_tls(&mut wire).expect("client write");
        }
        let t = thread_cpu();
        let mut rd = &wire[..];
        while !rd.is_empty() {
            srv.read_tls(&mut rd).expect("server read");
        }
        srv.process_new_packets().expect("server process");
        wire.clear();
        while srv.wants_write() {
            srv.write_tls(&mut wire).expect("server write");
        }
        spent += thread_cpu() - t;
        let mut rd = &wire[..];
        while !rd.is_empty() {
            cli.read_tls(&mut rd).expect("client read");
        }
        cli.process_new_packets().expect("client process");
        if !cli.is_handshaking() && !srv.is_handshaking() && !cli.wants_write() && wire.is_empty() {
            break;
        }
    }
    assert!(!srv.is_handshaking(), "handshake did not finish");
    let resumed = srv.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let t = thread_cpu();
    drop(srv);
    spent += thread_cpu() - t;
    (spent, resumed)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(7, |a| a.parse().expect("ROUNDS"));
    let n: usize = args.next().map_or(2000, |a| a.parse().expect("HANDSHAKES"));
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let servers = [server(false, &cert, &key), server(true, &cert, &key)];
    let names = ["aws-lc-rs HKDF", "keyed HKDF"];
    // [variant][full, resumed] -> µs per handshake, one entry per round.
    let mut results = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    println!("server CPU per TLS 1.3 handshake, {n} handshakes per cell, {rounds} rounds");
    for round in 0..rounds {
        // Alternate which variant goes first.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for v in order {
            for (kind, resume) in [(0, false), (1, true)] {
                let c = client(&cert, resume);
                if resume {
                    // One full handshake first, for the ticket.
                    handshake(&c, &servers[v]);
                }
                let mut total = Duration::ZERO;
                for _ in 0..n {
                    let (spent, resumed) = handshake(&c, &servers[v]);
                    assert_eq!(resumed, resume, "resumption as intended");
                    total += spent;
                }
                let us = total.as_secs_f64() * 1e6 / n as f64;
                results[v][kind].push(us);
                println!(
                    "round {} {:>15} {:>8} {:7.1} us",
                    round + 1,
                    names[v],
                    ["full", "resumed"][kind],
                    us
                );
            }
        }
    }
    for (kind, label) in ["full", "resumed"].iter().enumerate() {
        let base = median(results[0][kind].clone());
        let keyed = median(results[1][kind].clone());
        let per_round: Vec<f64> = results[1][kind]
            .iter()
            .zip(&results[0][kind])
            .map(|(k, b)| k / b)
            .collect();
        println!(
            "{label:>8}: aws-lc-rs HKDF {base:.1} us, keyed HKDF {keyed:.1} us, ratio {:.3} (per round median {:.3})",
            keyed / base,
            median(per_round)
        );
    }
}
