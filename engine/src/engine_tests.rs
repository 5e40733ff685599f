//! The [`Engine`](crate::Engine)'s library methods on a running engine:
//! reload, shutdown, join.

use crate::{Engine, SettingsBuilder};
use rustls::pki_types::CertificateDer;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A self-signed certificate for `localhost` written as PEM files into
/// `dir` (names prefixed `name`); returns (cert, key, the DER to trust).
fn cert_files(dir: &Path, name: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, ck.cert.pem()).expect("cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("mode");
    (cert, key, ck.cert.der().clone())
}

/// One echo exchange over TLS, trusting only `root`; `Err` if the
/// handshake or the exchange fails.
fn echo_once(engine: &Engine, root: &CertificateDer<'static>) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).map_err(|e| e.to_string())?;
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "localhost".try_into().map_err(|_| "name")?;
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(|e| e.to_string())?;
    let sock = std::net::TcpStream::connect(engine.local_addr()).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"ping").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).map_err(|e| e.to_string())?;
    if &buf != b"ping" {
        return Err(format!("echoed {buf:?}"));
    }
    Ok(())
}

fn settings(cert: &Path, key: &Path) -> crate::Settings {
    SettingsBuilder::new()
        .listen("127.0.0.1:0")
        .shards(1)
        .alpn(Vec::<String>::new())
        .cert_files(cert, key)
        .build()
        .expect("settings")
}

#[test]
fn reload_serves_the_new_certificate_and_a_failed_reload_keeps_the_old() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cert_a, key_a, der_a) = cert_files(dir.path(), "a");
    let (cert_b, key_b, der_b) = cert_files(dir.path(), "b");
    let engine =
        Engine::start(&settings(&cert_a, &key_a), crate::services::echo::Echo).expect("start");
    assert_eq!(engine.certificate_chain()[0], der_a);
    echo_once(&engine, &der_a).expect("serves a");
    assert!(echo_once(&engine, &der_b).is_err(), "b is not served yet");

    engine
        .reload(&settings(&cert_b, &key_b))
        .expect("reload to b");
    echo_once(&engine, &der_b).expect("serves b after the reload");
    assert!(echo_once(&engine, &der_a).is_err(), "a is gone");

    let missing = dir.path().join("missing.pem");
    assert!(engine.reload(&settings(&missing, &key_a)).is_err());
    echo_once(&engine, &der_b).expect("still serves b after a refused reload");

    engine.shutdown();
    engine.join();
}

#[test]
fn after_shutdown_and_join_nothing_listens() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cert, key, der) = cert_files(dir.path(), "a");
    let engine = Engine::start(&settings(&cert, &key), crate::services::echo::Echo).expect("start");
    echo_once(&engine, &der).expect("serves");
    let addr = engine.local_addr();
    engine.shutdown();
    engine.join();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the listener is closed once joined"
    );
}

/// Two services of different types behind one enum, one per listener.
enum EchoOrUpper {
    Echo(crate::services::echo::Echo),
    Upper,
}

impl crate::Service for EchoOrUpper {
    async fn serve(&self, s: &mut crate::ServerStream, c: &crate::ConnInfo) -> std::io::Result<()> {
        match self {
            EchoOrUpper::Echo(e) => e.serve(s, c).await,
            EchoOrUpper::Upper => {
                let mut buf = [0u8; 64];
                loop {
                    let n = s.read(&mut buf).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    s.write_all(&buf[..n].to_ascii_uppercase()).await?;
                    s.flush().await?;
                }
            }
        }
    }
}

/// Sends `ping` to `addr` trusting `root`; returns what came back.
fn ping(addr: std::net::SocketAddr, root: &CertificateDer<'static>) -> Result<[u8; 4], String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).map_err(|e| e.to_string())?;
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "localhost".try_into().map_err(|_| "name")?;
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).map_err(|e| e.to_string())?;
    let sock = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"ping").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}

#[test]
fn start_each_gives_every_listener_its_own_service_and_certificate() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cert_a, key_a, der_a) = cert_files(dir.path(), "a");
    let (cert_b, key_b, der_b) = cert_files(dir.path(), "b");
    let toml = format!(
        "shards = 1\nalpn = []\n\
         [[listener]]\nlisten = \"127.0.0.1:0\"\ncert = {cert_a:?}\nkey = {key_a:?}\n\
         [[listener]]\nlisten = \"127.0.0.1:0\"\ncert = {cert_b:?}\nkey = {key_b:?}\n"
    );
    let s = SettingsBuilder::from_toml(&toml)
        .expect("toml")
        .build()
        .expect("settings");
    let one = vec![EchoOrUpper::Upper];
    assert!(
        Engine::start_each(&s, one).is_err(),
        "one service for two listeners"
    );
    let services = vec![
        EchoOrUpper::Echo(crate::services::echo::Echo),
        EchoOrUpper::Upper,
    ];
    let engine = Engine::start_each(&s, services).expect("start");
    let addrs = engine.local_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    assert_eq!(ping(addrs[0], &der_a).expect("echo"), *b"ping");
    assert_eq!(ping(addrs[1], &der_b).expect("upper"), *b"PING");
    assert!(ping(addrs[1], &der_a).is_err(), "listener 1 serves b only");
    engine.shutdown();
    engine.join();
}
