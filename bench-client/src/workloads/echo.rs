//! Echo round trips: write a message (in chunks), read the same bytes back
//! and check them. Used by `echo`, `bulk --direction upload` and the
//! `--request echo` of the handshake workloads.

use super::http::ReadBuf;
use super::OpTimes;
use crate::stats::errors::ErrorClass;
use std::time::Instant;
use uringtls::tls::ClientStream;

/// Message size of a one-shot echo (`handshake --request echo`).
pub const ONE_SHOT_SIZE: usize = 16;

/// A recognisable payload of `len` bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Sends `size` bytes, `chunk` at a time (each chunk is `msg`'s first bytes),
/// reading each chunk's echo before sending the next, so neither side's
/// socket buffers can fill up and deadlock.
pub async fn round_trip(
    s: &mut ClientStream,
    rb: &mut ReadBuf,
    t: &mut OpTimes,
    msg: &[u8],
    size: usize,
    chunk: usize,
) -> Result<bool, ErrorClass> {
    let mut left = size;
    while left > 0 {
        let n = chunk.min(left).min(msg.len());
        if n == 0 {
            return Err(ErrorClass::Protocol("empty echo message".into()));
        }
        s.write_all(&msg[..n])
            .await
            .map_err(|e| ErrorClass::io(&e))?;
        s.flush().await.map_err(|e| ErrorClass::io(&e))?;
        t.bytes_out += n as u64;
        let mut got = 0;
        while got < n {
            if rb.data().is_empty() {
                rb.fill(s, t).await?;
            }
            let d = rb.data();
            let take = d.len().min(n - got);
            if d[..take] != msg[got..got + take] {
                return Err(ErrorClass::Protocol(
                    "echo reply differs from what was sent".into(),
                ));
            }
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
        assert_eq!(&p[..3], b"abc");
        assert_eq!(p[26], b'a');
    }
}
