//! `peer-monoio`: the other io_uring runtime Rust users pick (ByteDance's
//! monolake is built on it): one monoio runtime on its io_uring driver,
//! monoio-rustls, a task per connection, and a minimal HTTP/1.1 responder
//! (httparse; keep-alive, `Connection: close`, HTTP/1.0). TLS settings and
//! bodies are uringtls's (see the `peers` library).
//!
//! `peer-monoio --listen 127.0.0.1:8443 --cert cert.pem --key key.pem
//! [--body-size N] [--no-resumption] [--cpu N]`
#![forbid(unsafe_code)]

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio_rustls::TlsAcceptor;
use std::sync::Arc;

/// Plaintext read size per call (uringtls's `http` service reads 4 KiB).
const READ_CHUNK: usize = 4096;
/// Longest request head accepted before the connection is closed.
const MAX_HEAD: usize = 8 * 1024;

/// What every response is made of; leaked once, so that monoio's owned
/// writes take `&'static` slices without a copy per response.
struct Responses {
    head_keepalive: &'static [u8],
    head_close: &'static [u8],
    body: &'static [u8],
    /// Head and body in one buffer, for bodies of at most `READ_CHUNK`.
    whole: Option<(&'static [u8], &'static [u8])>,
}

impl Responses {
    fn new(body: Vec<u8>) -> Responses {
        let head = |conn: &str| {
            let h = format!(
                "HTTP/1.1 200 OK\r\nServer: peer-monoio\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
                body.len()
            );
            &*Box::leak(h.into_bytes().into_boxed_slice())
        };
        let (head_keepalive, head_close) = (head("keep-alive"), head("close"));
        let join = |h: &[u8]| &*Box::leak([h, &body].concat().into_boxed_slice());
        let whole = (body.len() <= READ_CHUNK).then(|| (join(head_keepalive), join(head_close)));
        Responses {
            head_keepalive,
            head_close,
            body: Box::leak(body.into_boxed_slice()),
            whole,
        }
    }
}

fn main() {
    peers::main_with(|l, cfg, body| {
        let responses: &'static Responses = Box::leak(Box::new(Responses::new(body)));
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .build()?
            .block_on(serve(l, cfg, responses))
    });
}

async fn serve(
    l: std::net::TcpListener,
    cfg: Arc<rustls::ServerConfig>,
    r: &'static Responses,
) -> std::io::Result<()> {
    let listener = monoio::net::TcpListener::from_std(l)?;
    let acceptor = TlsAcceptor::from(cfg);
    loop {
        // Accept errors (EMFILE, ECONNABORTED) end one connection, not the server.
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        monoio::spawn(async move {
            if let Ok(tls) = acceptor.accept(tcp).await {
                let _ = connection(tls, r).await;
            }
        });
    }
}

/// Answers requests until the client closes, asks to close, or errs.
async fn connection<S: AsyncReadRent + AsyncWriteRent>(
    mut s: S,
    r: &'static Responses,
) -> std::io::Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = Vec::with_capacity(READ_CHUNK);
    loop {
        // Every complete request in `pending`, in order.
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            let len = match req.parse(&pending) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) if pending.len() <= MAX_HEAD => break,
                _ => return Ok(()),
            };
            let conn = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("connection"));
            let close = match conn {
                Some(h) if h.value.eq_ignore_ascii_case(b"close") => true,
                Some(h) if h.value.eq_ignore_ascii_case(b"keep-alive") => false,
                _ => req.version == Some(0),
            };
            pending.drain(..len);
            match r.whole {
                Some((ka, cl)) => s.write_all(if close { cl } else { ka }).await.0?,
                None => {
                    s.write_all(if close {
                        r.head_close
                    } else {
                        r.head_keepalive
                    })
                    .await
                    .0?;
                    s.write_all(r.body).await.0?
                }
            };
            if close {
                return s.shutdown().await;
            }
        }
        let (n, buf) = s.read(chunk).await;
        if n? == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&buf);
        chunk = buf;
    }
}
