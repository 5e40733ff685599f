//! The `uringtls` command line: flags/TOML in, shards out, SIGINT/SIGTERM
//! drain. `main.rs` only calls [`main`]; the test crate builds a copy of the
//! binary from the same function.

use crate::config::{LogFormat, Options, ServiceKind, Settings};
use crate::services::{echo::Echo, http::Http};
use crate::Engine;
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::process::ExitCode;

/// Runs the `uringtls` command with the process's arguments.
pub fn main() -> ExitCode {
    let settings = match Options::parse().resolve() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("uringtls: error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&settings);
    let started = match settings.service {
        ServiceKind::Echo => Engine::start(&settings, Echo),
        ServiceKind::Http => {
            let http = match settings.body_size {
                Some(n) => Http::with_body_size(n, settings.max_header),
                None => Http::new(
                    crate::services::http::DEFAULT_BODY.to_vec(),
                    settings.max_header,
                ),
            };
            Engine::start(&settings, http)
        }
    };
    let engine = match started {
        Ok(e) => e,
        Err(e) => {
            eprintln!("uringtls: error: {e}");
            return ExitCode::from(2);
        }
    };
    announce(&settings, &engine);
    wait_for_stop(&engine);
    ExitCode::SUCCESS
}

fn init_logging(s: &Settings) {
    let filter = s
        .log_level
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match s.log_format {
        LogFormat::Json => b.json().init(),
        LogFormat::Human => b.init(),
    }
}

fn announce(s: &Settings, engine: &Engine) {
    let addr = engine.server.local_addr();
    for (i, cpu) in engine.server.cpus().iter().enumerate() {
        println!("uringtls: shard {i} on CPU {cpu} listening on {addr}");
    }
    if engine.identity.self_signed {
        println!(
            "uringtls: self-signed certificate for localhost, 127.0.0.1, ::1; SHA-256 fingerprint {}",
            engine.identity.fingerprint()
        );
    }
    let service = match s.service {
        ServiceKind::Echo => "echo",
        ServiceKind::Http => "http",
    };
    println!(
        "uringtls: serving {service} at https://{addr}/ with {} shards",
        engine.server.cpus().len()
    );
}

fn wait_for_stop(engine: &Engine) {
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("uringtls: cannot install signal handlers: {e}");
            std::process::exit(1);
        }
    };
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "stopping: no new connections, draining");
    }
    engine.server.shutdown();
    // A second signal stops at once.
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            eprintln!("uringtls: second signal, exiting without waiting");
            std::process::exit(1);
        }
    });
    engine.server.wait_drained();
    tracing::info!("all shards drained; exiting");
}
