//! Certificate compression (RFC 8879): a TLS 1.3 client that offers it
//! (rustls with brotli/zlib, as browsers do) receives the chain compressed,
//! so fewer handshake bytes; one that does not, or a server started with
//! `--cert-compression false`, gets the chain as it is.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use uringtls_tests::{set_mode, start_engine, write, EngineProc, WAIT};

/// A socket that counts the bytes read from it.
struct Counted(TcpStream, u64);

impl Read for Counted {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(b)?;
        self.1 += n as u64;
        Ok(n)
    }
}

impl Write for Counted {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Bytes the client read from the socket until its handshake completed
/// (TLS 1.3: the server's whole first flight, certificate included).
fn handshake_bytes(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> u64 {
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut s = Counted(sock, 0);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut c = rustls::ClientConnection::new(cfg.clone(), name).expect("client");
    while c.is_handshaking() {
        c.complete_io(&mut s).expect("handshake");
    }
    s.1
}

/// An RSA 2048 chain of three (leaf, intermediate, root) in `dir`:
/// (chain file, key file, root DER).
fn rsa_chain(dir: &Path) -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let alg = &rcgen::PKCS_RSA_SHA256;
    let ca_params = |cn: &str| {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, "uringtls test");
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p
    };
    let root_key = rcgen::KeyPair::generate_for(alg).expect("key");
    let root_params = ca_params("uringtls test root");
    let root = root_params.self_signed(&root_key).expect("root");
    let root_issuer = rcgen::Issuer::new(root_params, root_key);
    let mid_key = rcgen::KeyPair::generate_for(alg).expect("key");
    let mid_params = ca_params("uringtls test intermediate");
    let mid = mid_params
        .clone()
        .signed_by(&mid_key, &root_issuer)
        .expect("mid");
    let mid_issuer = rcgen::Issuer::new(mid_params, mid_key);
    let leaf_key = rcgen::KeyPair::generate_for(alg).expect("key");
    let mut leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "uringtls test");
    let leaf = leaf_params.signed_by(&leaf_key, &mid_issuer).expect("leaf");
    let chain = write(
        dir,
        "chain.pem",
        &format!("{}{}{}", leaf.pem(), mid.pem(), root.pem()),
    );
    let key = write(dir, "leaf.key", &leaf_key.serialize_pem());
    set_mode(&key, 0o600);
    (
        chain.to_str().expect("utf8").into(),
        key.to_str().expect("utf8").into(),
        root.der().clone(),
    )
}

fn client(
    root: &rustls::pki_types::CertificateDer<'static>,
    offer: bool,
) -> Arc<rustls::ClientConfig> {
    let mut cfg = (*uringtls_tests::client_config(root, &[&rustls::version::TLS13])).clone();
    assert!(
        !cfg.cert_decompressors.is_empty(),
        "rustls built without brotli/zlib: check the workspace rustls features"
    );
    if !offer {
        cfg.cert_decompressors = Vec::new();
    }
    Arc::new(cfg)
}

fn engine(chain: &str, key: &str, compression: &str) -> EngineProc {
    start_engine(&[
        "--cert",
        chain,
        "--key",
        key,
        "--cert-compression",
        compression,
    ])
}

#[test]
fn a_client_offering_compression_gets_a_compressed_chain_and_fewer_handshake_bytes() {
    let dir = tempfile::tempdir().expect("tmp");
    let (chain, key, root) = rsa_chain(dir.path());
    let (offers, plain) = (client(&root, true), client(&root, false));
    let on = engine(&chain, &key, "true");
    let compressed = handshake_bytes(on.addr(), &offers);
    let uncompressed = handshake_bytes(on.addr(), &plain);
    eprintln!("handshake bytes received: {compressed} compressed, {uncompressed} plain");
    assert!(
        compressed * 10 < uncompressed * 9,
        "compressed {compressed} is not 10% below {uncompressed}"
    );

    let off = engine(&chain, &key, "false");
    assert_eq!(
        handshake_bytes(off.addr(), &offers),
        uncompressed,
        "with --cert-compression false the chain goes as it is"
    );
    assert_eq!(handshake_bytes(off.addr(), &plain), uncompressed);
}
