//! A custom line protocol on the engine: the question/answer "Launcelot"
//! server of network-programming books, over TLS. It uses only the public
//! API: [`uringtls::Service`], [`uringtls::SettingsBuilder`],
//! [`uringtls::Engine`], and [`uringtls::testing`] for its unit test.
//!
//! Run: `cargo run --example launcelot` then
//! `openssl s_client -connect 127.0.0.1:1060 -quiet` and type
//! `What is your name?`. Test: `cargo test -p uringtls --example launcelot`.

use std::io;
use uringtls::{ConnInfo, ServerStream, Service};

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
    let settings = uringtls::SettingsBuilder::new()
        .listen(listen)
        .shards(1)
        .alpn(Vec::<String>::new())
        .build()?;
    Ok(uringtls::Engine::start(&settings, Launcelot)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = start("127.0.0.1:1060")?;
    println!("launcelot on {} (Ctrl-C to stop)", engine.local_addr());
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])?;
    signals.forever().next();
    engine.shutdown();
    engine.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::sync::Arc;

    /// The service alone, in memory: no engine, no io_uring (the epoll
    /// backend over loopback, see `uringtls::testing`).
    #[test]
    fn launcelot_answers_in_order_and_hangs_up_on_an_unknown_question() {
        let rt = uringtls::testing::runtime().expect("epoll runtime");
        rt.block_on(async {
            let uringtls::testing::Pair {
                mut server,
                mut client,
                info,
            } = uringtls::testing::pair().await.expect("pair");
            let client = async {
                // Two questions in one write: answered in order.
                client
                    .write_all(b"What is your name?\nWhat is your quest?\n")
                    .await?;
                client.flush().await?;
                let mut got = Vec::new();
                let mut buf = [0u8; 256];
                let want = b"My name is Sir Launcelot of Camelot.\nTo seek the Holy Grail.\n";
                // Bounded: each read either adds bytes or ends the loop.
                while got.len() < want.len() {
                    let n = client.read(&mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                assert_eq!(got, want);
                client.write_all(b"What is the airspeed?\n").await?;
                client.flush().await?;
                let mut last = Vec::new();
                loop {
                    let n = client.read(&mut buf).await?;
                    if n == 0 || last.len() > 4096 {
                        break;
                    }
                    last.extend_from_slice(&buf[..n]);
                }
                io::Result::Ok(last)
            };
            let serve = async {
                let r = Launcelot.serve(&mut server, &info).await;
                // The engine closes after a service returns; so does the test.
                server.close().await?;
                r
            };
            let (served, last) = tokio::join!(serve, client);
            served.expect("served");
            assert_eq!(last.expect("last answer"), b"I don't know that! Aaaargh!\n");
        });
    }

    /// The whole engine on loopback, with a blocking rustls client.
    #[test]
    fn launcelot_answers_known_questions_and_hangs_up_on_others() {
        let engine = start("127.0.0.1:0").expect("start");
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(engine.certificate_chain()[0].clone())
            .expect("root");
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let sock = std::net::TcpStream::connect(engine.local_addr()).expect("connect");
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
        engine.shutdown();
        engine.join();
    }
}
