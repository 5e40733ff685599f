//! The server-side TLS session driver (`tls::session`: the code between the
//! io_uring buffers and rustls) on arbitrary client bytes, arbitrarily
//! fragmented, with the engine's default `ServerConfig`.
//!
//! Checks: no panic; `ingest` takes all it was given (what rustls cannot
//! process yet is held by the session, within its limit), so the stream's
//! read loop can never spin on a stuck buffer. Plaintext that arrives is
//! echoed back through `write_plaintext` to exercise that path.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use uringtls::__private::session::{ServerConn, Session};

fn config() -> Arc<rustls::ServerConfig> {
    static CFG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CFG.get_or_init(|| {
        let settings = uringtls::SettingsBuilder::new()
            .build()
            .expect("default settings");
        uringtls::__private::server_config(&settings).expect("default TLS config")
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
fn drain(tls: &mut Session<ServerConn>, out: &mut Vec<u8>) -> Option<usize> {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    loop {
        match tls.read_plaintext(&mut buf) {
            Ok(Some(0)) | Err(_) => return None,
            Ok(Some(n)) => {
                total += n;
                let _ = tls.write_plaintext(&buf[..n]);
                tls.take_output(out);
            }
            Ok(None) => return Some(total),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, wire)) = data.split_first() else {
        return;
    };
    let Ok(conn) = ServerConn::new(config()) else {
        return;
    };
    let mut tls = Session::new(conn);
    let mut out = Vec::new();
    let mut x = u32::from(seed) | 1;
    let mut rest = wire;
    while !rest.is_empty() {
        let n = next_len(seed, &mut x).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        let mut piece = piece.to_vec();
        let got = match tls.ingest(&mut piece) {
            Ok(g) => g,
            Err(_) => {
                // The driver flushes the queued alert, then closes.
                tls.take_output(&mut out);
                return;
            }
        };
        assert_eq!(got.consumed, piece.len(), "input not all taken");
        tls.take_output(&mut out);
        if drain(&mut tls, &mut out).is_none() {
            return;
        }
        assert_eq!(tls.plaintext_pending(), 0, "plaintext left after a drain");
        out.clear();
    }
    if tls.ingest_eof().is_ok() {
        let _ = drain(&mut tls, &mut out);
    }
    tls.take_output(&mut out);
});
