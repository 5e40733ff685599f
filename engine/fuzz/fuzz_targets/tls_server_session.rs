//! The server-side TLS session driver (`tls::session`: the code between the
//! io_uring buffers and rustls) on arbitrary client bytes, arbitrarily
//! fragmented, with the engine's default `ServerConfig`.
//!
//! Checks: no panic; `ingest` never claims more than it was given; and the
//! driver always makes progress (input consumed, or plaintext to read), so
//! the stream's read loop can never spin on a stuck buffer. Plaintext that
//! arrives is echoed back through `write_plaintext` to exercise that path.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use uringtls::tls::session::{ingest, ingest_eof, read_plaintext, take_output, write_plaintext};

fn config() -> Arc<rustls::ServerConfig> {
    static CFG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CFG.get_or_init(|| {
        let settings = uringtls::config::Options::default()
            .resolve()
            .expect("default settings");
        let state = uringtls::tls::TlsState::new();
        let prepared = state.prepare(&settings.tls).expect("default TLS config");
        state.commit(prepared).0
    })
    .clone()
}

/// Piece lengths from `seed`: 0 means one piece, else 1..=seed bytes.
fn next_len(seed: u8, x: &mut u32) -> usize {
    if seed == 0 {
        return usize::MAX;
    }
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    *x as usize % usize::from(seed) + 1
}

/// Reads out all plaintext and echoes it; returns bytes read, or `None`
/// once the session has ended (close_notify or an error).
fn drain(tls: &mut rustls::ServerConnection, out: &mut Vec<u8>) -> Option<usize> {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match read_plaintext(tls, &mut buf) {
            Ok(Some(0)) | Err(_) => return None,
            Ok(Some(n)) => {
                total += n;
                let _ = write_plaintext(tls, &buf[..n]);
                take_output(tls, out);
            }
            Ok(None) => return Some(total),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, wire)) = data.split_first() else {
        return;
    };
    let Ok(mut tls) = rustls::ServerConnection::new(config()) else {
        return;
    };
    let mut out = Vec::new();
    let mut x = u32::from(seed) | 1;
    let mut rest = wire;
    while !rest.is_empty() {
        let n = next_len(seed, &mut x).min(rest.len());
        let (mut piece, tail) = rest.split_at(n);
        rest = tail;
        while !piece.is_empty() {
            let got = match ingest(&mut tls, piece) {
                Ok(g) => g,
                Err(_) => {
                    // The driver flushes the queued alert, then closes.
                    take_output(&mut tls, &mut out);
                    return;
                }
            };
            assert!(got.consumed <= piece.len());
            piece = &piece[got.consumed..];
            take_output(&mut tls, &mut out);
            let Some(read) = drain(&mut tls, &mut out) else {
                return;
            };
            assert!(
                got.consumed > 0 || read > 0,
                "no progress: input left, nothing consumed, no plaintext"
            );
        }
        out.clear();
    }
    if ingest_eof(&mut tls).is_ok() {
        let _ = drain(&mut tls, &mut out);
    }
    take_output(&mut tls, &mut out);
});
