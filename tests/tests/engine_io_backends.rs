//! Every I/O backend (uring, tokio-uring, epoll) serves the same protocol: keep-alive HTTP, a large echo
//! (many receives, pool buffers and the heap path), and the SIGTERM drain.

use std::io::{Read, Write};
use uringtls_tests::{
    client_config, connect, engine_fails, read_response, start_engine_with_certs, test_certs,
};

/// SIGTERM; the engine must drain and exit 0.
fn stop_cleanly(e: &mut uringtls_tests::EngineProc, backend: &str) {
    e.signal(libc::SIGTERM);
    let code = e.wait().code();
    assert_eq!(code, Some(0), "backend {backend}: {}", e.stderr());
}

fn serve_and_drain(backend: &str) {
    let certs = test_certs();
    let mut e = start_engine_with_certs(&certs, &["--shards", "2", "--io-backend", backend]);
    let cfg = client_config(&certs.ca_der, &[&rustls::version::TLS13]);
    for _ in 0..2 {
        let mut c = connect(e.addr(), &cfg).expect("connect");
        for _ in 0..3 {
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("write");
            c.flush().expect("flush");
            let (status, _, body) = read_response(&mut c).expect("response");
            assert_eq!(status, "HTTP/1.1 200 OK", "backend {backend}");
            assert_eq!(body, b"hello world\n");
        }
    }
    stop_cleanly(&mut e, backend);
}

fn echo_large(backend: &str) {
    let certs = test_certs();
    let mut e = start_engine_with_certs(
        &certs,
        &[
            "--shards",
            "1",
            "--service",
            "echo",
            "--io-backend",
            backend,
        ],
    );
    let cfg = client_config(&certs.ca_der, &[&rustls::version::TLS13]);
    let mut c = connect(e.addr(), &cfg).expect("connect");
    // 1 MiB of a pattern, written and read back in pieces.
    let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    let mut back = vec![0u8; data.len()];
    let mut got = 0;
    for piece in data.chunks(64 * 1024) {
        c.write_all(piece).expect("write");
        c.flush().expect("flush");
        let want = got + piece.len();
        while got < want {
            let n = c.read(&mut back[got..want]).expect("read");
            assert!(n > 0, "backend {backend}: closed early");
            got += n;
        }
    }
    assert!(back == data, "backend {backend}: echoed bytes differ");
    drop(c);
    stop_cleanly(&mut e, backend);
}

#[test]
fn uring_backend_serves_keep_alive_and_drains() {
    serve_and_drain("uring");
}

#[test]
fn tokio_uring_backend_serves_keep_alive_and_drains() {
    serve_and_drain("tokio-uring");
}

#[test]
fn uring_backend_echoes_a_mebibyte_intact() {
    echo_large("uring");
}

#[test]
fn tokio_uring_backend_echoes_a_mebibyte_intact() {
    echo_large("tokio-uring");
}

#[test]
fn epoll_backend_serves_keep_alive_and_drains() {
    serve_and_drain("epoll");
}

#[test]
fn epoll_backend_echoes_a_mebibyte_intact() {
    echo_large("epoll");
}

#[test]
fn an_unknown_backend_is_refused_naming_the_choices() {
    let (code, err) = engine_fails(&["--io-backend", "kqueue"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--io-backend"), "{err}");
    for choice in ["auto", "uring", "tokio-uring", "epoll"] {
        assert!(err.contains(choice), "{choice}: {err}");
    }
}
