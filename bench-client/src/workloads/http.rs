//! HTTP/1.1 over a TLS stream: prebuilt requests, response heads parsed in
//! place (`httparse`), bodies skipped without copying them anywhere but the
//! one reused read buffer. Content-Length, chunked and read-until-close
//! bodies are understood; pipelining sends N requests and reads N responses.

use super::OpTimes;
use crate::stats::errors::{ErrorClass, ProtocolError};
use std::time::Instant;
use uringtls_runtime::tls::ClientStream;

/// Plaintext read buffer size per connection.
pub const READ_BUF: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// Why the `--header` flags do not make a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A header without `:` or without a name.
    #[error("--header `{0}`: write `Name: value`")]
    NotAHeader(String),
    /// A header with a line break in it.
    #[error("--header `{0}`: line breaks are not allowed")]
    LineBreak(String),
}

/// Builds one request. `extra` are `Name: value` headers; a user `Host`
/// header replaces the default one.
pub fn build_request(
    method: &str,
    path: &str,
    host: &str,
    extra: &[String],
    close: bool,
) -> Result<Vec<u8>, RequestError> {
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    let mut has_host = false;
    for h in extra {
        let (name, value) = h
            .split_once(':')
            .filter(|(n, _)| !n.trim().is_empty())
            .ok_or_else(|| RequestError::NotAHeader(h.clone()))?;
        if h.contains(['\r', '\n']) {
            return Err(RequestError::LineBreak(h.clone()));
        }
        has_host |= name.trim().eq_ignore_ascii_case("host");
        req.push_str(&format!("{}: {}\r\n", name.trim(), value.trim()));
    }
    if !has_host {
        req.push_str(&format!("Host: {host}\r\n"));
    }
    if close {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    Ok(req.into_bytes())
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, including the blank line.
    pub len: usize,
    /// Status code.
    pub status: u16,
    /// Body framing.
    pub body: Body,
    /// The server will close after this response.
    pub close: bool,
}

/// Parses a response head from `data`: `Ok(None)` if incomplete.
pub fn parse_head(data: &[u8], head_request: bool) -> Result<Option<Head>, ProtocolError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(data) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(ProtocolError::MalformedHead(e.to_string())),
    };
    let status = resp.code.unwrap_or(0);
    let mut close = resp.version == Some(0);
    let (mut length, mut chunked) = (None, false);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok());
            length = Some(v.ok_or(ProtocolError::MalformedContentLength)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .windows(7)
                .any(|w| w.eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = h.value.to_ascii_lowercase();
            close = v.windows(5).any(|w| w == b"close")
                || (close && !v.windows(10).any(|w| w == b"keep-alive"));
        }
    }
    let body = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Body::Empty
    } else if chunked {
        Body::Chunked
    } else if let Some(n) = length {
        Body::Length(n)
    } else {
        close = true;
        Body::UntilClose
    };
    Ok(Some(Head {
        len,
        status,
        body,
        close,
    }))
}

/// The per-connection plaintext buffer: `buf[start..end]` is unread data.
pub struct ReadBuf {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Default for ReadBuf {
    fn default() -> Self {
        ReadBuf::new()
    }
}

impl ReadBuf {
    /// An empty buffer of [`READ_BUF`] bytes.
    pub fn new() -> ReadBuf {
        ReadBuf {
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Forgets buffered data (new connection).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Unread data.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Marks `n` bytes as read.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.clear();
        }
    }

    /// Reads more plaintext; returns how much. A close is `Err(Closed)`.
    pub async fn fill(
        &mut self,
        s: &mut ClientStream,
        t: &mut OpTimes,
    ) -> Result<usize, ErrorClass> {
        if self.end == self.buf.len() {
            if self.start == 0 {
                return Err(ErrorClass::Protocol(ProtocolError::HeadTooLarge));
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = s
            .read(&mut self.buf[self.end..])
            .await
            .map_err(|e| ErrorClass::io(&e))?;
        if n == 0 {
            return Err(ErrorClass::Closed);
        }
        t.first_byte();
        t.bytes_in += n as u64;
        self.end += n;
        Ok(n)
    }

    /// Skips `n` body bytes (buffered first, then read and dropped).
    async fn skip(
        &mut self,
        s: &mut ClientStream,
        t: &mut OpTimes,
        mut n: u64,
    ) -> Result<(), ErrorClass> {
        loop {
            let take = n.min(self.data().len() as u64);
            self.consume(take as usize);
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill(s, t).await?;
        }
    }

    /// Reads one CRLF-terminated line (without the CRLF) and returns its length.
    async fn line(
        &mut self,
        s: &mut ClientStream,
        t: &mut OpTimes,
    ) -> Result<(usize, u64), ErrorClass> {
        loop {
            if let Some(i) = self.data().windows(2).position(|w| w == b"\r\n") {
                let line = &self.data()[..i];
                let size = chunk_size(line);
                self.consume(i + 2);
                return Ok((i, size.unwrap_or(u64::MAX)));
            }
            self.fill(s, t).await?;
        }
    }

    /// Skips a chunked body, trailers included.
    async fn skip_chunked(
        &mut self,
        s: &mut ClientStream,
        t: &mut OpTimes,
    ) -> Result<(), ErrorClass> {
        loop {
            let (_, size) = self.line(s, t).await?;
            if size == u64::MAX {
                return Err(ErrorClass::Protocol(ProtocolError::MalformedChunkSize));
            }
            if size == 0 {
                // Trailers until an empty line.
                while self.line(s, t).await?.0 > 0 {}
                return Ok(());
            }
            self.skip(s, t, size + 2).await?;
        }
    }

    /// Reads and drops everything until the server closes.
    async fn drain(&mut self, s: &mut ClientStream, t: &mut OpTimes) -> Result<(), ErrorClass> {
        loop {
            self.clear();
            match self.fill(s, t).await {
                Ok(_) => {}
                Err(ErrorClass::Closed) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

fn chunk_size(line: &[u8]) -> Option<u64> {
    let hex = line.split(|&b| b == b';').next()?;
    u64::from_str_radix(std::str::from_utf8(hex).ok()?.trim(), 16).ok()
}

/// Sends `request` (holding `pipeline` requests) and reads `pipeline`
/// responses. `Ok(true)`: the server will close the connection. A 4xx/5xx
/// status is not a transport error: it is noted in `t.bad_status` and the
/// connection is kept.
pub async fn exchange(
    s: &mut ClientStream,
    rb: &mut ReadBuf,
    t: &mut OpTimes,
    request: &[u8],
    pipeline: usize,
    head: bool,
) -> Result<bool, ErrorClass> {
    s.write_all(request).await.map_err(|e| ErrorClass::io(&e))?;
    s.flush().await.map_err(|e| ErrorClass::io(&e))?;
    t.bytes_out += request.len() as u64;
    for i in 0..pipeline {
        let h = loop {
            match parse_head(rb.data(), head).map_err(ErrorClass::Protocol)? {
                Some(h) => break h,
                None => {
                    rb.fill(s, t).await?;
                }
            }
        };
        rb.consume(h.len);
        match h.body {
            Body::Empty => {}
            Body::Length(n) => rb.skip(s, t, n).await?,
            Body::Chunked => rb.skip_chunked(s, t).await?,
            Body::UntilClose => rb.drain(s, t).await?,
        }
        if h.status >= 400 {
            t.bad_status.get_or_insert(h.status);
        } else {
            t.done.push(Instant::now());
        }
        if h.close {
            return if i + 1 == pipeline {
                Ok(true)
            } else {
                Err(ErrorClass::Closed)
            };
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_host_and_optional_close() {
        let r =
            build_request("GET", "/x", "127.0.0.1:8443", &["X-A: 1".into()], true).expect("req");
        assert_eq!(
            String::from_utf8(r).expect("utf8"),
            "GET /x HTTP/1.1\r\nX-A: 1\r\nHost: 127.0.0.1:8443\r\nConnection: close\r\n\r\n"
        );
        let r = build_request("GET", "/", "h", &["host: other".into()], false).expect("req");
        assert!(!String::from_utf8(r).expect("utf8").contains("Host: h"));
        assert_eq!(
            build_request("GET", "/", "h", &["nocolon".into()], false),
            Err(RequestError::NotAHeader("nocolon".into()))
        );
        let split = "X-A: 1\r\nX-B: 2".to_string();
        assert_eq!(
            build_request("GET", "/", "h", std::slice::from_ref(&split), false),
            Err(RequestError::LineBreak(split))
        );
    }

    #[test]
    fn heads_give_status_framing_and_close() {
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello world\n",
            false,
        )
        .expect("ok")
        .expect("complete");
        assert_eq!(
            (h.status, h.body, h.close, h.len),
            (200, Body::Length(12), false, 39)
        );
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            false,
        )
        .expect("ok")
        .expect("complete");
        assert_eq!((h.body, h.close), (Body::Chunked, true));
        let h = parse_head(b"HTTP/1.0 503 No\r\n\r\n", false)
            .expect("ok")
            .expect("complete");
        assert_eq!((h.status, h.body, h.close), (503, Body::UntilClose, true));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true)
            .expect("ok")
            .expect("complete");
        assert_eq!(h.body, Body::Empty);
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-", false), Ok(None));
        assert!(parse_head(b"\x16\x03\x01garbage\r\n\r\n", false).is_err());
    }

    #[test]
    fn chunk_sizes_are_hex_with_optional_extensions() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"0;name=v"), Some(0));
        assert_eq!(chunk_size(b"zz"), None);
    }
}
