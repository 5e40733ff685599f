//! `peer-tokio`: the standard Rust stack, as a user would write it in an
//! afternoon: one tokio current-thread runtime (epoll), tokio-rustls, hyper
//! 1 (HTTP/1.1), a task per connection. TLS settings and bodies are
//! uringtls's (see the `peers` library).
//!
//! `peer-tokio --listen 127.0.0.1:8443 --cert cert.pem --key key.pem
//! [--body-size N] [--no-resumption] [--cpu N]`
#![forbid(unsafe_code)]

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, SERVER};
use hyper::{Request, Response};
use std::convert::Infallible;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

fn main() {
    peers::main_with(|l, cfg, body| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(serve(l, cfg, Bytes::from(body)))
    });
}

async fn serve(
    l: std::net::TcpListener,
    cfg: Arc<rustls::ServerConfig>,
    body: Bytes,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(l)?;
    let acceptor = TlsAcceptor::from(cfg);
    loop {
        // Accept errors (EMFILE, ECONNABORTED) end one connection, not the server.
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, body) = (acceptor.clone(), body.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let mut r = Response::new(Full::new(body.clone()));
                    r.headers_mut()
                        .insert(SERVER, HeaderValue::from_static("peer-tokio"));
                    r.headers_mut()
                        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    async move { Ok::<_, Infallible>(r) }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}
