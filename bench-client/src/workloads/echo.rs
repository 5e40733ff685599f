//! Echo round trips: write a message (in chunks), read the same bytes back
//! and check them. Used by `echo`, `bulk --direction upload` and the
//! `--request echo` of the handshake workloads.

use super::http::ReadBuf;
use super::OpTimes;
use crate::stats::errors::{ErrorClass, ProtocolError, Unanswered};
use std::time::Instant;
use uringtls_runtime::tls::ClientStream;

/// Message size of a one-shot echo (`handshake --request echo`).
pub const ONE_SHOT_SIZE: usize = 16;

/// The protocol name in [`ErrorClass::WrongService`].
const PROTOCOL: &str = "echo";

/// A recognisable payload of `len` bytes: `@` then `abc...z` repeated.
///
/// `@` cannot start an HTTP request (it is not a method character), so an
/// HTTP server answers `400` at once instead of waiting for the rest of a
/// request head: `echo` against the wrong service fails in a round trip,
/// not after the server's header timeout.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| match i {
            0 => b'@',
            i => b'a' + ((i - 1) % 26) as u8,
        })
        .collect()
}

/// Sends `size` bytes, `chunk` at a time (each chunk is `msg`'s first bytes),
/// reading each chunk's echo before sending the next, so neither side's
/// socket buffers can fill up and deadlock.
///
/// `fresh`: nothing has been echoed on this connection yet. A close or a
/// non-echo reply before the first echoed byte is then
/// [`ErrorClass::WrongService`].
pub async fn round_trip(
    s: &mut ClientStream,
    rb: &mut ReadBuf,
    t: &mut OpTimes,
    msg: &[u8],
    size: usize,
    chunk: usize,
    fresh: bool,
) -> Result<bool, ErrorClass> {
    let mut answered = !fresh;
    let mut left = size;
    while left > 0 {
        let n = chunk.min(left).min(msg.len());
        if n == 0 {
            return Err(ErrorClass::Protocol(ProtocolError::EmptyEcho));
        }
        s.write_all(&msg[..n])
            .await
            .map_err(|e| ErrorClass::io(&e))?;
        s.flush().await.map_err(|e| ErrorClass::io(&e))?;
        t.bytes_out += n as u64;
        let mut got = 0;
        while got < n {
            if rb.data().is_empty() {
                if let Err(e) = rb.fill(s, t).await {
                    return Err(if answered {
                        e
                    } else {
                        e.before_first_answer(PROTOCOL)
                    });
                }
            }
            let d = rb.data();
            let take = d.len().min(n - got);
            if d[..take] != msg[got..got + take] {
                return Err(if answered {
                    ErrorClass::Protocol(ProtocolError::EchoMismatch)
                } else {
                    ErrorClass::WrongService {
                        protocol: PROTOCOL,
                        reply: Unanswered::of_reply(d),
                    }
                });
            }
            answered = true;
            rb.consume(take);
            got += take;
        }
        left -= n;
    }
    t.done.push(Instant::now());
    Ok(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pattern_is_printable_and_sized() {
        let p = super::pattern(30);
        assert_eq!(p.len(), 30);
        assert_eq!(&p[..3], b"@ab");
        assert_eq!(p[27], b'a');
        assert!(p.iter().all(|b| b.is_ascii_graphic()));
    }

    #[test]
    fn an_echo_message_is_a_malformed_http_request_from_its_first_byte() {
        // What an HTTP server sees: an error at once, not a partial request.
        let mut headers = [httparse::EMPTY_HEADER; 4];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(&super::pattern(16)).is_err());
    }
}
