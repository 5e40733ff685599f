//! What one keep-alive connection costs the server thread per request on
//! the uring runtime: timers registered and heap allocations (counted by
//! the test build's allocator, [`crate::test_alloc`]).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// A server TLS stream over an accepted socket (inside a runtime).
fn server_stream(
    s: std::net::TcpStream,
    cfg: Arc<rustls::ServerConfig>,
) -> crate::tls::ServerStream {
    let conn = crate::io::Conn::from_std(s).expect("conn");
    let tls = crate::tls::ServerConn::new(cfg).expect("session");
    crate::tls::ServerStream::new(conn, tls)
}

fn timer_registrations() -> u64 {
    crate::io::test_hooks::timer_registrations().expect("a uring runtime runs")
}

/// Serves `requests` keep-alive requests from a rustls client thread with
/// the http service on this thread's uring runtime; returns the timers
/// registered and the heap allocations made on this thread while serving.
fn serve_keep_alive(requests: usize) -> (u64, u64) {
    use crate::services::Service;
    let (cfg, cert) = crate::tls::tests::server_config_and_cert();
    let rt = crate::io::Runtime::new(&crate::io::RingOptions {
        backend: crate::io::Backend::Uring,
        ..crate::io::RingOptions::default()
    })
    .expect("uring runtime");
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let client = std::thread::spawn(move || {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("root");
        let cc = rustls::ClientConfig::builder_with_provider(Arc::new(crate::tls::provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(Arc::new(cc), name).expect("client");
        let tcp = std::net::TcpStream::connect(addr).expect("connect");
        let mut s = rustls::StreamOwned::new(conn, tcp);
        let mut answered = 0;
        let mut buf = [0u8; 4096];
        for _ in 0..requests {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("request");
            let mut got = Vec::new();
            while !got.ends_with(b"hello world\n") {
                let n = std::io::Read::read(&mut s, &mut buf).expect("response");
                assert!(n > 0, "server closed early");
                got.extend_from_slice(&buf[..n]);
            }
            answered += 1;
        }
        answered
    });
    let counts = rt.block_on(async move {
        let (std_conn, peer) = l.accept().expect("accept");
        let mut stream = server_stream(std_conn, cfg);
        stream.set_write_timeout(Some(Duration::from_secs(10)));
        stream.handshake_lazy().await.expect("handshake");
        stream.set_read_timeout(Some(Duration::from_secs(60)));
        let info = crate::services::ConnInfo::new(peer, addr);
        let (timers, allocs) = (timer_registrations(), crate::test_alloc::this_thread());
        // Serves until the client closes after its last request (without
        // close_notify: an error or a clean end, either way).
        let _ = crate::services::http::Http::default()
            .serve(&mut stream, &info)
            .await;
        (
            timer_registrations() - timers,
            crate::test_alloc::this_thread() - allocs,
        )
    });
    assert_eq!(client.join().expect("client"), requests);
    counts
}

#[test]
fn a_keep_alive_connection_arms_no_timer_per_request() {
    let (timers, _) = serve_keep_alive(200);
    assert!(
        timers <= 4,
        "{timers} timers registered for 200 keep-alive requests (want a few per connection)"
    );
}

#[test]
fn a_keep_alive_request_allocates_nothing_once_the_records_are_the_engines() {
    // The difference between two connections cancels the per-connection
    // allocations (handshake, buffers' first growth, the records' hand-over
    // after 32 records: both connections make more than 16 requests).
    // rustls's unbuffered API made two per request (a heap copy of the
    // record it seals, one while handling the record it opens); the
    // engine's own TLS 1.3 record layer makes none.
    let (_, few) = serve_keep_alive(50);
    let (_, many) = serve_keep_alive(250);
    let per_request = many.saturating_sub(few) as f64 / 200.0;
    eprintln!("heap allocations per keep-alive request on the server thread: {per_request:.2}");
    assert!(
        per_request <= 0.05,
        "{per_request:.2} allocations per keep-alive request; the engine should make none"
    );
}

/// The state an idle keep-alive connection keeps besides the TLS stream is
/// the http service's future waiting for the next request (boxed, see
/// `shard::Shard::drive`): it must not hold room for a second copy of the
/// read (the `async fn` form of `io::unless` stored its argument and a
/// pinned copy: 1,408 bytes; 816 since). The bound leaves room for
/// compiler changes; a failure means the idle wait grew.
#[test]
fn the_http_service_waits_for_a_request_in_a_small_future() {
    use crate::services::Service;
    fn size_of_future<F: std::future::Future>(_: &F) -> usize {
        std::mem::size_of::<F>()
    }
    let rt = crate::io::Runtime::new(&crate::io::RingOptions::default()).expect("runtime");
    let (cfg, _) = crate::tls::tests::server_config_and_cert();
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let _client = std::net::TcpStream::connect(addr).expect("connect");
    let (s, peer) = l.accept().expect("accept");
    let size = rt.block_on(async move {
        let mut stream = server_stream(s, cfg);
        let info = crate::services::ConnInfo::new(peer, addr);
        let http = crate::services::http::Http::default();
        let fut = http.serve(&mut stream, &info);
        size_of_future(&fut)
    });
    assert!(
        size <= 1024,
        "the http service's future is {size} bytes (816 when written): an idle connection keeps it"
    );
}
