//! `http`: a minimal HTTP/1.1 responder for real clients (curl, wrk, h2load).
//!
//! Every request gets the same fixed body. Keep-alive by default, pipelining
//! (all complete requests in a read are answered with one write),
//! `Connection: close`, HTTP/1.0, `HEAD`, request bodies by `Content-Length`
//! (read and discarded). Errors: `400` on a malformed request, `431` when the
//! header block exceeds the limit, `501` for chunked request bodies; each of
//! these closes the connection.
//!
//! The protocol logic is [`Http::process`], a pure function over byte
//! buffers, tested (and fuzzed) without sockets.

use super::{ConnInfo, Service};
use crate::metrics::CloseReason;
use crate::tls::ServerStream;
use std::io;
use std::time::Duration;

/// Default response body.
pub const DEFAULT_BODY: &[u8] = b"hello world\n";
/// Default limit of the request header block (bytes).
pub const DEFAULT_MAX_HEADER: usize = 8 * 1024;
const MAX_HEADERS: usize = 64;
/// Plaintext read size per call (bytes).
const READ_CHUNK: usize = 4096;
/// Responses queued from one batch of pipelined requests before they are
/// written (bytes); bounds a connection's output buffer to this plus one
/// response.
pub const MAX_OUT: usize = 64 * 1024;
/// Bodies up to this size are copied into the output batch with their
/// header (pipelined small responses go out in one write); larger ones are
/// encrypted straight from the responder's copy (a 1 MiB body copied per
/// response cost ~10% of the CPU per response, plus page faults).
pub const INLINE_BODY: usize = 16 * 1024;

/// The HTTP/1.1 responder.
#[derive(Debug, Clone)]
pub struct Http {
    body: Vec<u8>,
    head_keepalive: Vec<u8>,
    head_close: Vec<u8>,
    max_header: usize,
    header_timeout: Duration,
}

/// What [`Http::process`] did with the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes fully handled (requests answered, bodies skipped).
    pub consumed: usize,
    /// Bytes of a request body still to skip after `consumed`.
    pub skip: usize,
    /// The connection must close after the output is sent.
    pub close: bool,
    /// The last response's body is not in the output: send
    /// [`Http::body`] after it (bodies over [`INLINE_BODY`] are written
    /// from the responder's own copy instead of being copied per response).
    pub body: bool,
}

impl Http {
    /// A responder sending `body` to every request.
    pub fn new(body: Vec<u8>, max_header: usize) -> Http {
        let head = |conn: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nServer: uringtls\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
                body.len()
            )
            .into_bytes()
        };
        Http {
            head_keepalive: head("keep-alive"),
            head_close: head("close"),
            body,
            max_header,
            header_timeout: crate::config::DEFAULT_HEADER_TIMEOUT,
        }
    }

    /// Sets the header-read timeout: a request's headers must be complete
    /// within this time of its first byte, however slowly they trickle in.
    pub fn with_header_timeout(mut self, t: Duration) -> Http {
        self.header_timeout = t;
        self
    }

    /// A responder with a body of `size` bytes (`hello world\n` repeated).
    pub fn with_body_size(size: usize, max_header: usize) -> Http {
        let body = DEFAULT_BODY.iter().copied().cycle().take(size).collect();
        Http::new(body, max_header)
    }

    /// The body sent with every `200` response.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Answers every complete request in `input`, appending responses to
    /// `out`. Stops at the first incomplete request, or after a request that
    /// closes the connection.
    pub fn process(&self, input: &[u8], out: &mut Vec<u8>) -> Progress {
        let mut consumed = 0;
        loop {
            let rest = &input[consumed..];
            if rest.is_empty() {
                return Progress {
                    consumed,
                    skip: 0,
                    close: false,
                    body: false,
                };
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(rest) {
                Ok(httparse::Status::Complete(len)) => {
                    let meta = RequestMeta::of(&req);
                    if meta.bad {
                        error(out, "400 Bad Request");
                        return Progress {
                            consumed: input.len(),
                            skip: 0,
                            close: true,
                            body: false,
                        };
                    }
                    if meta.chunked {
                        error(out, "501 Not Implemented");
                        return Progress {
                            consumed: input.len(),
                            skip: 0,
                            close: true,
                            body: false,
                        };
                    }
                    let close = meta.close;
                    out.extend_from_slice(if close {
                        &self.head_close
                    } else {
                        &self.head_keepalive
                    });
                    let body = !meta.head && self.body.len() > INLINE_BODY;
                    if !meta.head && !body {
                        out.extend_from_slice(&self.body);
                    }
                    consumed += len;
                    let avail = input.len() - consumed;
                    let skip = meta.content_length.min(avail);
                    consumed += skip;
                    let left = meta.content_length - skip;
                    // Pipelined requests stop at MAX_OUT so that a 16 KiB read
                    // of tiny requests cannot make `out` grow without bound;
                    // the caller processes the rest after writing (and after
                    // a body sent separately, which must come next).
                    if close || left > 0 || out.len() >= MAX_OUT || body {
                        return Progress {
                            consumed,
                            skip: left,
                            close,
                            body,
                        };
                    }
                }
                Ok(httparse::Status::Partial) => {
                    if rest.len() > self.max_header {
                        error(out, "431 Request Header Fields Too Large");
                        return Progress {
                            consumed: input.len(),
                            skip: 0,
                            close: true,
                            body: false,
                        };
                    }
                    return Progress {
                        consumed,
                        skip: 0,
                        close: false,
                        body: false,
                    };
                }
                Err(httparse::Error::TooManyHeaders) => {
                    error(out, "431 Request Header Fields Too Large");
                    return Progress {
                        consumed: input.len(),
                        skip: 0,
                        close: true,
                        body: false,
                    };
                }
                Err(_) => {
                    error(out, "400 Bad Request");
                    return Progress {
                        consumed: input.len(),
                        skip: 0,
                        close: true,
                        body: false,
                    };
                }
            }
        }
    }
}

struct RequestMeta {
    head: bool,
    close: bool,
    chunked: bool,
    bad: bool,
    content_length: usize,
}

impl RequestMeta {
    fn of(req: &httparse::Request<'_, '_>) -> RequestMeta {
        let http10 = req.version == Some(0);
        let mut m = RequestMeta {
            head: req.method == Some("HEAD"),
            close: http10,
            chunked: false,
            bad: false,
            content_length: 0,
        };
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("connection") {
                let v = h.value.to_ascii_lowercase();
                if v.windows(5).any(|w| w == b"close") {
                    m.close = true;
                } else if v.windows(10).any(|w| w == b"keep-alive") {
                    m.close = false;
                }
            } else if h.name.eq_ignore_ascii_case("content-length") {
                match std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                {
                    Some(n) => m.content_length = n,
                    None => m.bad = true,
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                m.chunked = true;
            }
        }
        m
    }
}

fn error(out: &mut Vec<u8>, status: &str) {
    out.extend_from_slice(
        format!("HTTP/1.1 {status}\r\nServer: uringtls\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
}

impl Default for Http {
    fn default() -> Self {
        Http::new(DEFAULT_BODY.to_vec(), DEFAULT_MAX_HEADER)
    }
}

impl Service for Http {
    async fn serve(&self, stream: &mut ServerStream, conn: &ConnInfo) -> io::Result<()> {
        // Buffers exist only while a request is in hand: an idle keep-alive
        // connection holds none (`input` grows by what arrives, up to the
        // header limit for large headers; `out` comes from the thread's pool).
        let mut input: Vec<u8> = Vec::new();
        let mut out: Vec<u8> = Vec::new();
        let mut skip = 0usize;
        // Set while a request's headers are incomplete (slowloris bound).
        let mut header_deadline: Option<crate::io::time::Instant> = None;
        // Set once a request has been answered: from then on, waiting for
        // input is keep-alive idleness, which a drain may end.
        let mut answered = false;
        loop {
            let before = input.len();
            let n = if input.is_empty() && skip == 0 {
                if input.capacity() > 0 {
                    input = Vec::new();
                }
                if out.capacity() > 0 {
                    crate::io::give_write_buf(std::mem::take(&mut out));
                }
                // The idle timeout bounds the whole wait for a request's
                // first bytes: a TLS record trickled a byte at a time (each
                // socket read within the timeout) does not extend it.
                // One timer for the wait: the stream's own per-read deadline
                // would be the same instant, so it is off meanwhile.
                let idle = stream.read_timeout();
                stream.set_read_timeout(None);
                let got = if answered {
                    // Idle between requests: a drain ends the connection here.
                    within(
                        idle,
                        conn.read_append_unless_draining(stream, &mut input, READ_CHUNK),
                    )
                    .await
                } else {
                    // The first request is awaited even while draining: the
                    // client connected before the stop and may not have had
                    // time to send it (the grace period bounds the wait).
                    within(idle, async {
                        stream.read_append(&mut input, READ_CHUNK).await.map(Some)
                    })
                    .await
                };
                stream.set_read_timeout(idle);
                match got?? {
                    None | Some(0) => return Ok(()),
                    Some(n) => n,
                }
            } else if skip == 0 {
                let deadline = *header_deadline
                    .get_or_insert_with(|| crate::io::time::now() + self.header_timeout);
                match crate::io::time::timeout_at(
                    deadline,
                    stream.read_append(&mut input, READ_CHUNK),
                )
                .await
                {
                    Err(_) => return Err(CloseReason::HeaderTimeout.error(io::ErrorKind::TimedOut)),
                    Ok(r) => match r.map_err(cut_off)? {
                        0 => return Ok(()),
                        n => n,
                    },
                }
            } else {
                match stream
                    .read_append(&mut input, READ_CHUNK)
                    .await
                    .map_err(cut_off)?
                {
                    0 => return Ok(()),
                    n => n,
                }
            };
            // Body bytes of a request being skipped are dropped here.
            let drop_now = skip.min(n);
            skip -= drop_now;
            input.drain(before..before + drop_now);
            if skip > 0 {
                continue;
            }
            if header_deadline.is_none() {
                // The headers' clock starts at the request's first byte.
                header_deadline = Some(crate::io::time::now() + self.header_timeout);
            }
            loop {
                if out.capacity() == 0 {
                    out = crate::io::take_write_buf();
                }
                let p = self.process(&input, &mut out);
                input.drain(..p.consumed);
                skip = p.skip;
                if p.consumed > 0 {
                    header_deadline = None;
                    answered = true;
                }
                if !out.is_empty() {
                    stream.write_all(&out).await?;
                    if p.body {
                        stream.write_all(&self.body).await?;
                    }
                }
                if p.close {
                    // No flush: the engine's close() sends the response and
                    // close_notify in one write.
                    return Ok(());
                }
                if !out.is_empty() {
                    stream.flush().await?;
                    out.clear();
                }
                if conn.draining() && input.is_empty() && skip == 0 {
                    return Ok(());
                }
                // More complete requests may wait behind a full output batch.
                if p.consumed == 0 || input.is_empty() || skip > 0 {
                    break;
                }
            }
        }
    }
}

/// A close without `close_notify` in the middle of a request is an error
/// (the request was cut off), not the normal end between requests.
fn cut_off(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        CloseReason::Error.error(io::ErrorKind::UnexpectedEof)
    } else {
        e
    }
}

/// Runs `fut` within `limit` (if any); past it, a `TimedOut` error.
async fn within<T>(
    limit: Option<Duration>,
    fut: impl std::future::Future<Output = T>,
) -> io::Result<T> {
    match limit {
        Some(t) => crate::io::time::timeout(t, fut)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timeout")),
        None => Ok(fut.await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (String, Progress) {
        let mut out = Vec::new();
        let p = Http::default().process(input, &mut out);
        (String::from_utf8(out).expect("utf8"), p)
    }

    #[test]
    fn get_is_answered_with_the_body_and_kept_alive() {
        let (out, p) = run(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(out.contains("Connection: keep-alive"));
        assert!(out.ends_with("\r\n\r\nhello world\n"));
        assert!(!p.close);
        assert_eq!(p.consumed, 27);
    }

    #[test]
    fn pipelined_requests_get_answers_in_order() {
        let (out, p) =
            run(b"GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\nGET /4 HT");
        assert_eq!(out.matches("200 OK").count(), 3);
        assert_eq!(out.matches("hello world").count(), 2, "HEAD has no body");
        assert_eq!(p.consumed, 19 + 20 + 19);
    }

    #[test]
    fn connection_close_and_http10_close() {
        let (out, p) = run(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert!(p.close);
        assert_eq!(out.matches("200 OK").count(), 1);
        assert!(out.contains("Connection: close"));
        let (_, p) = run(b"GET / HTTP/1.0\r\n\r\n");
        assert!(p.close);
        let (_, p) = run(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(!p.close);
    }

    #[test]
    fn garbage_gets_400_and_close() {
        let (out, p) = run(b"\x16\x03\x01garbage\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 400 Bad Request"));
        assert!(p.close);
    }

    #[test]
    fn oversized_headers_get_431() {
        let mut req = b"GET / HTTP/1.1\r\n".to_vec();
        req.extend(std::iter::repeat_n(b'a', DEFAULT_MAX_HEADER + 10));
        let (out, p) = run(&req);
        assert!(out.starts_with("HTTP/1.1 431"));
        assert!(p.close);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            many.extend(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        assert!(run(&many).0.starts_with("HTTP/1.1 431"));
    }

    #[test]
    fn request_bodies_are_skipped_even_when_split() {
        let (out, p) =
            run(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcdeGET / HTTP/1.1\r\n\r\n");
        assert_eq!(out.matches("200 OK").count(), 2);
        assert_eq!(p.skip, 0);
        let (_, p) = run(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
        assert_eq!(p.skip, 7);
        assert_eq!(p.consumed, 42);
    }

    #[test]
    fn pipelined_output_is_bounded_per_batch() {
        let h = Http::with_body_size(10_000, DEFAULT_MAX_HEADER);
        let req = b"GET / HTTP/1.1\r\n\r\n".repeat(100);
        let mut out = Vec::new();
        let p = h.process(&req, &mut out);
        assert!(out.len() < MAX_OUT + 11_000, "{}", out.len());
        assert!(p.consumed < req.len() && p.consumed % 18 == 0 && !p.close);
    }

    #[test]
    fn chunked_bodies_are_refused() {
        let (out, p) = run(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 501"));
        assert!(p.close);
    }

    #[test]
    fn body_size_is_honoured() {
        let h = Http::with_body_size(INLINE_BODY, DEFAULT_MAX_HEADER);
        let mut out = Vec::new();
        let p = h.process(b"GET / HTTP/1.1\r\n\r\n", &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains(&format!("Content-Length: {INLINE_BODY}\r\n")));
        assert!(out.ends_with(h.body()) && h.body().len() == INLINE_BODY && !p.body);
    }

    #[test]
    fn a_large_body_is_left_to_be_sent_after_its_header_in_order() {
        let h = Http::with_body_size(100_000, DEFAULT_MAX_HEADER);
        let req = b"GET / HTTP/1.1\r\n\r\nHEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let mut out = Vec::new();
        let p = h.process(req, &mut out);
        let text = String::from_utf8(out.clone()).expect("utf8");
        // Only the header: the body goes next, before any later response.
        assert!(text.starts_with("HTTP/1.1 200 OK") && text.ends_with("\r\n\r\n"));
        assert!(text.contains("Content-Length: 100000\r\n"));
        assert_eq!((p.consumed, p.body, p.close), (18, true, false));
        // HEAD has no body, so it batches with the next GET's header.
        out.clear();
        let p = h.process(&req[18..], &mut out);
        assert_eq!(String::from_utf8_lossy(&out).matches("200 OK").count(), 2);
        assert_eq!((p.consumed, p.body), (req.len() - 18, true));
    }

    #[test]
    fn every_split_point_gives_the_same_answers() {
        let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\n\r\n";
        let (whole, _) = run(req);
        let h = Http::default();
        for split in 0..req.len() {
            let mut out = Vec::new();
            let mut input = req[..split].to_vec();
            let p = h.process(&input, &mut out);
            input.drain(..p.consumed);
            let mut skip = p.skip;
            let mut tail = &req[split..];
            let d = skip.min(tail.len());
            skip -= d;
            tail = &tail[d..];
            assert_eq!(skip, 0);
            input.extend_from_slice(tail);
            h.process(&input, &mut out);
            assert_eq!(
                String::from_utf8(out).expect("utf8"),
                whole,
                "split at {split}"
            );
        }
    }
}
