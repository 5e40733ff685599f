//! A custom line protocol on the engine: the question/answer "Launcelot"
//! server of network-programming books, over TLS.
//!
//! Run: `cargo run --example launcelot` then
//! `openssl s_client -connect 127.0.0.1:1060 -quiet` and type
//! `What is your name?`.

use std::io;
use uringtls::config::Options;
use uringtls::services::{ConnInfo, Service};
use uringtls::tls::ServerStream;

/// Answers known questions, one per line; an unknown one ends the talk.
struct Launcelot;

fn answer(question: &[u8]) -> Option<&'static [u8]> {
    match question {
        b"What is your name?" => Some(b"My name is Sir Launcelot of Camelot.\n"),
        b"What is your quest?" => Some(b"To seek the Holy Grail.\n"),
        b"What is your favourite colour?" => Some(b"Blue.\n"),
        _ => None,
    }
}

impl Service for Launcelot {
    async fn serve(&self, stream: &mut ServerStream, _conn: &ConnInfo) -> io::Result<()> {
        let mut pending = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            pending.extend_from_slice(&buf[..n]);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                match answer(line.trim_ascii()) {
                    Some(reply) => stream.write_all(reply).await?,
                    None => {
                        stream.write_all(b"I don't know that! Aaaargh!\n").await?;
                        stream.flush().await?;
                        return Ok(());
                    }
                }
            }
            stream.flush().await?;
            if pending.len() > 4096 {
                return Ok(()); // nobody asks questions that long
            }
        }
    }
}

fn start(listen: &str) -> Result<uringtls::Engine, Box<dyn std::error::Error>> {
    let settings = Options {
        listen: Some(listen.into()),
        shards: Some(1),
        alpn: Some(vec![]),
        ..Options::default()
    }
    .resolve()?;
    Ok(uringtls::Engine::start(&settings, Launcelot)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = start("127.0.0.1:1060")?;
    println!(
        "launcelot on {} (Ctrl-C to stop)",
        engine.server.local_addr()
    );
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])?;
    signals.forever().next();
    engine.server.stop_and_join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::sync::Arc;

    #[test]
    fn launcelot_answers_known_questions_and_hangs_up_on_others() {
        let engine = start("127.0.0.1:0").expect("start");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(engine.identity.chain[0].clone()).expect("root");
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let sock = std::net::TcpStream::connect(engine.server.local_addr()).expect("connect");
        sock.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .expect("timeout");
        let conn =
            rustls::ClientConnection::new(Arc::new(cfg), "localhost".try_into().expect("name"))
                .expect("client");
        let mut tls = BufReader::new(rustls::StreamOwned::new(conn, sock));
        let mut ask = |q: &str| {
            tls.get_mut()
                .write_all(format!("{q}\n").as_bytes())
                .expect("write");
            tls.get_mut().flush().expect("flush");
            let mut line = String::new();
            tls.read_line(&mut line).expect("read");
            line
        };
        assert_eq!(
            ask("What is your name?"),
            "My name is Sir Launcelot of Camelot.\n"
        );
        assert_eq!(ask("What is your quest?"), "To seek the Holy Grail.\n");
        assert_eq!(
            ask("What is the capital of Assyria?"),
            "I don't know that! Aaaargh!\n"
        );
        engine.server.stop_and_join();
    }
}
