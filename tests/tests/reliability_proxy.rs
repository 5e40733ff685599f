//! Property: the proxy loses, adds and reorders nothing, whatever the
//! write sizes on either side, the read sizes on either side, and which
//! side half-closes first.
//!
//! One engine in proxy mode and one scripted upstream serve every case
//! (proptest's runner is driven by hand so the processes are started once).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use uringtls_tests::{client_config, connect, start_engine, test_certs, WAIT};

/// One exchange: who sends what, in which pieces, and who closes first.
#[derive(Debug, Clone)]
struct Case {
    up: Vec<u8>,
    down: Vec<u8>,
    client_writes: Vec<usize>,
    client_reads: Vec<usize>,
    upstream_writes: Vec<usize>,
    upstream_reads: Vec<usize>,
    client_closes_first: bool,
}

fn sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![1..16usize, 16..5000usize, 5000..70_000usize],
        1..6,
    )
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..100),
        prop::collection::vec(any::<u8>(), 0..300_000),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        bytes(),
        bytes(),
        sizes(),
        sizes(),
        sizes(),
        sizes(),
        any::<bool>(),
    )
        .prop_map(|(up, down, cw, cr, uw, ur, first)| Case {
            up,
            down,
            client_writes: cw,
            client_reads: cr,
            upstream_writes: uw,
            upstream_reads: ur,
            client_closes_first: first,
        })
}

/// Writes `data` in pieces whose sizes cycle through `sizes`.
fn write_in<W: Write>(w: &mut W, data: &[u8], sizes: &[usize]) -> std::io::Result<()> {
    let mut rest = data;
    for n in sizes.iter().cycle() {
        if rest.is_empty() {
            return Ok(());
        }
        let (piece, tail) = rest.split_at((*n).min(rest.len()));
        w.write_all(piece)?;
        w.flush()?;
        rest = tail;
    }
    Ok(())
}

/// Reads to EOF with read sizes cycling through `sizes`.
fn read_in<R: Read>(r: &mut R, sizes: &[usize]) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 70_000];
    for n in sizes.iter().cycle() {
        match r.read(&mut buf[..*n])? {
            0 => return Ok(got),
            k => got.extend_from_slice(&buf[..k]),
        }
    }
    Ok(got)
}

/// The upstream side of one case: returns what it received.
fn upstream(s: TcpStream, c: &Case) -> std::io::Result<Vec<u8>> {
    s.set_read_timeout(Some(WAIT))?;
    let mut reader = s.try_clone()?;
    let mut writer = s;
    if c.client_closes_first {
        // Read to the client's half-close, then answer and close.
        let got = read_in(&mut reader, &c.upstream_reads)?;
        write_in(&mut writer, &c.down, &c.upstream_writes)?;
        writer.shutdown(Shutdown::Write)?;
        Ok(got)
    } else {
        // Answer and close at once, while reading in another thread.
        let reads = c.upstream_reads.clone();
        let t = std::thread::spawn(move || read_in(&mut reader, &reads));
        write_in(&mut writer, &c.down, &c.upstream_writes)?;
        writer.shutdown(Shutdown::Write)?;
        t.join()
            .map_err(|_| std::io::Error::other("reader panicked"))?
    }
}

#[test]
fn proxied_bytes_arrive_whole_and_in_order_for_any_sizes_and_close_order() {
    let certs = test_certs();
    let l = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let up_addr = l.local_addr().expect("addr").to_string();
    let e = start_engine(&[
        "--shards",
        "1",
        "--service",
        "proxy",
        "--upstream",
        &up_addr,
        "--cert",
        certs.cert.to_str().expect("utf8"),
        "--key",
        certs.key.to_str().expect("utf8"),
    ]);
    let cfg = client_config(&certs.ca_der, &[&rustls::version::TLS13]);
    let mut runner = TestRunner::new(Config {
        cases: 32,
        ..Config::default()
    });
    runner
        .run(&case(), |c| {
            let (tx, rx) = mpsc::channel();
            let up_case = c.clone();
            let l = l.try_clone().expect("listener clone");
            std::thread::spawn(move || {
                let res = l.accept().and_then(|(s, _)| upstream(s, &up_case));
                let _ = tx.send(res);
            });
            let mut client = connect(e.addr(), &cfg).expect("connect");
            let received = if c.client_closes_first {
                write_in(&mut client, &c.up, &c.client_writes).expect("client write");
                client.conn.send_close_notify();
                client.flush().expect("close_notify");
                read_in(&mut client, &c.client_reads).expect("client read")
            } else {
                let got = read_in(&mut client, &c.client_reads).expect("client read");
                write_in(&mut client, &c.up, &c.client_writes).expect("client write");
                client.conn.send_close_notify();
                client.flush().expect("close_notify");
                got
            };
            let at_upstream = rx
                .recv_timeout(WAIT)
                .expect("upstream done")
                .expect("upstream io");
            prop_assert_eq!(at_upstream.len(), c.up.len());
            prop_assert!(at_upstream == c.up, "client->upstream bytes differ");
            prop_assert_eq!(received.len(), c.down.len());
            prop_assert!(received == c.down, "upstream->client bytes differ");
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
