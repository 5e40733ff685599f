//! `http`: a minimal HTTP/1.1 responder for real clients (curl, wrk, h2load).
//!
//! Every request gets the same fixed body. Keep-alive by default, pipelining
//! (all complete requests in a read are answered with one write),
//! `Connection: close`, HTTP/1.0, `HEAD`, request bodies by `Content-Length`
//! (read and discarded). Errors, each closing the connection:
//! - `400` on a malformed request, and on any doubt about where a request
//!   ends (RFC 9112 section 6.3): a `Content-Length` that is not plain
//!   digits (`+5`, `5, 5`, `0x5`), more than one `Content-Length`, or
//!   `Content-Length` together with `Transfer-Encoding` (the desync
//!   primitives of request smuggling);
//! - `413` when the `Content-Length` exceeds the body limit;
//! - `431` when the header block (request line to the blank line) exceeds
//!   the header limit, exactly, however it arrives;
//! - `501` for `Transfer-Encoding` (chunked request bodies).
//!
//! A request must arrive whole (headers and body) within the request
//! timeout of its first byte, its headers within the header timeout.
//!
//! The protocol logic is [`Http::process`], a pure function over byte
//! buffers, tested (and fuzzed) without sockets.

use super::{ConnInfo, Service};
use crate::metrics::CloseReason;
use crate::tls::ServerStream;
use std::io;
use std::time::Duration;

/// Default http header-read timeout: a request's headers must arrive
/// within this time of its first byte.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Default time to read one request, from its first byte to the end of its
/// body (headers included).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Default response body.
pub const DEFAULT_BODY: &[u8] = b"hello world\n";
/// Default limit of the request header block (bytes).
pub const DEFAULT_MAX_HEADER: usize = 8 * 1024;
/// Default limit of a request body (bytes), as nginx's `client_max_body_size`.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
const MAX_HEADERS: usize = 64;
/// Plaintext read size per call (bytes).
const READ_CHUNK: usize = 4096;
/// Responses queued from one batch of pipelined requests before they are
/// written (bytes); bounds a connection's output buffer to this plus one
/// response.
pub(crate) const MAX_OUT: usize = 64 * 1024;
/// Bodies up to this size are copied into the output batch with their
/// header (pipelined small responses go out in one write); larger ones are
/// encrypted straight from the responder's copy (a 1 MiB body copied per
/// response cost ~10% of the CPU per response, plus page faults).
pub(crate) const INLINE_BODY: usize = 16 * 1024;

/// The HTTP/1.1 responder.
#[derive(Debug, Clone)]
pub struct Http {
    body: Vec<u8>,
    head_keepalive: Vec<u8>,
    head_close: Vec<u8>,
    max_header: usize,
    header_timeout: Duration,
    max_body: usize,
    request_timeout: Duration,
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
    /// [`Http::body`] after it (bodies over `INLINE_BODY` are written
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
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// Sets the body limit (bytes): a request with a larger
    /// `Content-Length` gets `413` and the connection closes.
    pub fn with_max_body(mut self, bytes: usize) -> Http {
        self.max_body = bytes;
        self
    }

    /// Sets the request timeout: a request (headers and body) must arrive
    /// within this time of its first byte.
    pub fn with_request_timeout(mut self, t: Duration) -> Http {
        self.request_timeout = t;
        self
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
            // Left uninitialised: httparse writes the headers it finds
            // (filling 64 empty ones cost ~250 instructions per request).
            let mut headers =
                [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut []);
            match req.parse_with_uninit_headers(rest, &mut headers) {
                Ok(httparse::Status::Complete(len)) => {
                    if len > self.max_header {
                        return refuse(out, input.len(), "431 Request Header Fields Too Large");
                    }
                    let meta = RequestMeta::of(&req);
                    let content_length = match meta.framing {
                        Framing::Ambiguous => return refuse(out, input.len(), "400 Bad Request"),
                        Framing::Chunked => return refuse(out, input.len(), "501 Not Implemented"),
                        Framing::Length(n) if n > self.max_body as u64 => {
                            return refuse(out, input.len(), "413 Content Too Large")
                        }
                        // At most `max_body`, so it fits.
                        Framing::Length(n) => n as usize,
                    };
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
                    let skip = content_length.min(avail);
                    consumed += skip;
                    let left = content_length - skip;
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
                    // Exact: the block is already longer than the limit.
                    if rest.len() > self.max_header {
                        return refuse(out, input.len(), "431 Request Header Fields Too Large");
                    }
                    return Progress {
                        consumed,
                        skip: 0,
                        close: false,
                        body: false,
                    };
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return refuse(out, input.len(), "431 Request Header Fields Too Large");
                }
                Err(_) => return refuse(out, input.len(), "400 Bad Request"),
            }
        }
    }
}

/// Answers `status` and closes: all of the `input_len` bytes are dropped
/// (nothing after a refused request is read).
fn refuse(out: &mut Vec<u8>, input_len: usize, status: &str) -> Progress {
    error(out, status);
    Progress {
        consumed: input_len,
        skip: 0,
        close: true,
        body: false,
    }
}

/// Where a request's body ends (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length` bytes (0 without the header); saturates at `u64::MAX`.
    Length(u64),
    /// `Transfer-Encoding` alone: not implemented.
    Chunked,
    /// Malformed or conflicting: which bytes are the body is in doubt.
    Ambiguous,
}

struct RequestMeta {
    head: bool,
    close: bool,
    framing: Framing,
}

impl RequestMeta {
    fn of(req: &httparse::Request<'_, '_>) -> RequestMeta {
        let http10 = req.version == Some(0);
        let mut close = http10;
        // How many Content-Length fields, and the last one's value (`None`:
        // not plain digits).
        let mut lengths = 0;
        let mut length = None;
        let mut transfer_encoding = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("connection") {
                let v = h.value.to_ascii_lowercase();
                if v.windows(5).any(|w| w == b"close") {
                    close = true;
                } else if v.windows(10).any(|w| w == b"keep-alive") {
                    close = false;
                }
            } else if h.name.eq_ignore_ascii_case("content-length") {
                lengths += 1;
                length = content_length(h.value);
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                transfer_encoding = true;
            }
        }
        // A second Content-Length, even an equal one, is refused as nginx
        // does (RFC 9110 section 8.6 allows either).
        let framing = match (transfer_encoding, lengths, length) {
            (false, 0, _) => Framing::Length(0),
            (false, 1, Some(n)) => Framing::Length(n),
            (true, 0, _) => Framing::Chunked,
            _ => Framing::Ambiguous,
        };
        RequestMeta {
            head: req.method == Some("HEAD"),
            close,
            framing,
        }
    }
}

/// A `Content-Length` value: `1*DIGIT` between optional spaces or tabs
/// (saturating at `u64::MAX`), else `None`.
fn content_length(value: &[u8]) -> Option<u64> {
    let ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !ows(b)).unwrap_or(value.len());
    let end = value.iter().rposition(|b| !ows(b)).map_or(start, |i| i + 1);
    let v = &value[start..end];
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
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
        // Set while a request (headers, then body) is being read: all of it
        // must have arrived by then, however it trickles.
        let mut request_deadline: Option<crate::io::time::Instant> = None;
        // Set once a request has been answered: from then on, waiting for
        // input is keep-alive idleness, which a drain may end.
        let mut answered = false;
        loop {
            let before = input.len();
            let n = if input.is_empty() && skip == 0 {
                // No request in hand: the next one's clocks start at its
                // first byte, not during this wait.
                header_deadline = None;
                request_deadline = None;
                if input.capacity() > 0 {
                    crate::io::give_write_buf(std::mem::take(&mut input));
                }
                if out.capacity() > 0 {
                    crate::io::give_write_buf(std::mem::take(&mut out));
                }
                // The idle timeout bounds the whole wait for a request's
                // first bytes: the stream's read deadline is one instant for
                // the whole call, so a TLS record trickled a byte at a time
                // (each socket read within the timeout) does not extend it.
                // The stream's own timer serves every request's wait (no
                // timer armed per request).
                let got = if answered {
                    // Idle between requests: a drain ends the connection here.
                    conn.read_append_unless_draining(stream, &mut input, READ_CHUNK)
                        .await
                } else {
                    // The first request is awaited even while draining: the
                    // client connected before the stop and may not have had
                    // time to send it (the grace period bounds the wait).
                    stream.read_append(&mut input, READ_CHUNK).await.map(Some)
                };
                match got? {
                    None | Some(0) => return Ok(()),
                    Some(n) => n,
                }
            } else {
                let now = crate::io::time::now();
                let request = *request_deadline.get_or_insert(now + self.request_timeout);
                let (deadline, reason) = if skip > 0 {
                    (request, CloseReason::RequestTimeout)
                } else {
                    // Headers still incomplete: the earlier of the two.
                    let header = *header_deadline.get_or_insert(now + self.header_timeout);
                    earlier(header, request)
                };
                match crate::io::time::timeout_at(
                    deadline,
                    stream.read_append(&mut input, READ_CHUNK),
                )
                .await
                {
                    Err(_) => return Err(reason.error(io::ErrorKind::TimedOut)),
                    Ok(r) => match r.map_err(cut_off)? {
                        0 => return Ok(()),
                        n => n,
                    },
                }
            };
            // Body bytes of a request being skipped are dropped here.
            let drop_now = skip.min(n);
            skip -= drop_now;
            input.drain(before..before + drop_now);
            if skip > 0 {
                continue;
            }
            if drop_now > 0 {
                // That body is done; what follows is the next request.
                request_deadline = None;
            }
            if !input.is_empty() {
                // Both clocks start at the request's first byte.
                let now = crate::io::time::now();
                header_deadline.get_or_insert(now + self.header_timeout);
                request_deadline.get_or_insert(now + self.request_timeout);
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
                    if p.skip == 0 {
                        request_deadline = None;
                    }
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

/// The earlier of the header and request deadlines, with the timeout it
/// stands for.
fn earlier(
    header: crate::io::time::Instant,
    request: crate::io::time::Instant,
) -> (crate::io::time::Instant, CloseReason) {
    if header <= request {
        (header, CloseReason::HeaderTimeout)
    } else {
        (request, CloseReason::RequestTimeout)
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

    /// A request whose header block (request line to the blank line) is
    /// exactly `len` bytes.
    fn request_of(len: usize) -> Vec<u8> {
        let fixed = b"GET / HTTP/1.1\r\nX-Pad: \r\n\r\n".len();
        let mut r = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        r.extend(std::iter::repeat_n(b'a', len - fixed));
        r.extend(b"\r\n\r\n");
        assert_eq!(r.len(), len);
        r
    }

    #[test]
    fn the_header_limit_is_exact_whether_or_not_the_block_is_complete() {
        for (limit, len, refused) in [
            (DEFAULT_MAX_HEADER, DEFAULT_MAX_HEADER, false),
            (DEFAULT_MAX_HEADER, DEFAULT_MAX_HEADER + 1, true),
            (DEFAULT_MAX_HEADER, 9_000, true),
            (DEFAULT_MAX_HEADER, 12_200, true),
            (1024, 1024, false),
            (1024, 1025, true),
            (1024, 3_000, true),
        ] {
            let h = Http::new(DEFAULT_BODY.to_vec(), limit);
            // Whole, and cut anywhere inside the block: the same answer.
            let req = request_of(len);
            for cut in [req.len(), len / 2, limit, limit + 1] {
                let mut out = Vec::new();
                let mut p = h.process(&req[..cut.min(req.len())], &mut out);
                if !p.close && cut < req.len() {
                    p = h.process(&req[p.consumed..], &mut out);
                }
                let text = String::from_utf8(out).expect("utf8");
                let want = if refused {
                    "HTTP/1.1 431"
                } else {
                    "HTTP/1.1 200"
                };
                assert!(
                    text.starts_with(want),
                    "limit {limit}, {len}-byte header cut at {cut}: {text:?}"
                );
                assert_eq!(p.close, refused);
            }
        }
    }

    #[test]
    fn conflicting_or_malformed_content_length_gets_400_and_close() {
        for req in [
            // Two lengths: the classic desync (the last one used to win).
            &b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nabcdeGET / HTTP/1.1\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nabcde",
            b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nabcde",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nabcde",
            b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5a\r\n\r\nabcde",
            b"POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\nabcde",
            b"POST / HTTP/1.1\r\nContent-Length: 5 5\r\n\r\nabcde",
            b"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
            // Both framings (RFC 9112 section 6.1): refused whatever the order.
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        ] {
            let (out, p) = run(req);
            assert!(
                out.starts_with("HTTP/1.1 400 Bad Request\r\n") && out.contains("Connection: close"),
                "{:?}: {out:?}",
                String::from_utf8_lossy(req)
            );
            assert_eq!(out.matches("HTTP/1.1").count(), 1, "nothing answered after it");
            assert!(p.close && p.skip == 0);
        }
        // Plain digits (with surrounding spaces) are fine.
        let ok = b"POST / HTTP/1.1\r\nContent-Length:  007 \r\n\r\nabcdefg";
        let (out, p) = run(ok);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert_eq!((p.consumed, p.skip, p.close), (ok.len(), 0, false));
    }

    #[test]
    fn a_body_over_the_limit_gets_413_and_close_before_any_of_it_is_read() {
        let h = Http::default().with_max_body(100);
        let mut out = Vec::new();
        let at_limit = b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n";
        let p = h.process(at_limit, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 200 OK"));
        assert_eq!((p.consumed, p.skip, p.close), (at_limit.len(), 100, false));
        for req in [
            &b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\nabc"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ] {
            let mut out = Vec::new();
            let p = h.process(req, &mut out);
            let text = String::from_utf8(out).expect("utf8");
            assert!(
                text.starts_with("HTTP/1.1 413 Content Too Large\r\n")
                    && text.contains("Connection: close"),
                "{text:?}"
            );
            assert_eq!((p.consumed, p.skip, p.close), (req.len(), 0, true));
        }
        // The default is 1 MiB.
        let (out, _) = run(b"POST / HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        let (out, _) = run(b"POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    }

    #[test]
    fn transfer_encoding_alone_is_not_implemented() {
        for te in ["chunked", "gzip, chunked", "identity"] {
            let req = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n");
            let (out, p) = run(req.as_bytes());
            assert!(out.starts_with("HTTP/1.1 501"), "{te}: {out}");
            assert!(p.close);
        }
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
