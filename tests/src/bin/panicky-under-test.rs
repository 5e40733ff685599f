//! An engine embedding a service that panics on request, for the panic
//! containment test (`tests/tests/reliability_faults.rs`).
//!
//! The service echoes each read back, except a read containing `panic`,
//! which panics. Prints the metrics address, then a readiness line in the
//! engine's own format, then serves until killed.
//!
//! Usage: `panicky-under-test [SHARDS]` (default 1), on 127.0.0.1:0.

use std::io;
use uringtls::{ConnInfo, ServerStream, Service};

struct Panicky;

impl Service for Panicky {
    async fn serve(&self, s: &mut ServerStream, _c: &ConnInfo) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            let got = &buf[..n];
            assert!(
                !got.windows(5).any(|w| w == b"panic"),
                "test service: panic requested by the client"
            );
            s.write_all(got).await?;
            s.flush().await?;
        }
    }
}

fn main() -> Result<(), String> {
    let shards = std::env::args().nth(1).unwrap_or_else(|| "1".into());
    let settings = uringtls::SettingsBuilder::new()
        .listen("127.0.0.1:0")
        .shards(shards.parse().map_err(|e| format!("SHARDS: {e}"))?)
        .build()
        .map_err(|e| e.to_string())?;
    let engine = uringtls::Engine::start(&settings, Panicky).map_err(|e| e.to_string())?;
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let maddr = engine.serve_metrics(metrics).map_err(|e| e.to_string())?;
    println!("uringtls: metrics at http://{maddr}/metrics");
    println!(
        "uringtls: serving panicky at https://{}/ with {} shards",
        engine.local_addr(),
        engine.cpus().len()
    );
    // Serve until killed; the shards run on their own threads.
    loop {
        std::thread::park();
    }
}
