//! Slow clients cannot hold connections past the timeouts, and do not
//! starve a normal client meanwhile.

mod operations_common;

use operations_common::{close, eventually, get, metrics_addr, scrape, tls_from, value, Setup};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uringtls_tests::{start_engine, WAIT};

const SLOW: usize = 2_000;

/// Whether the engine has closed `s` (EOF or reset), waiting up to WAIT.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return true
            }
            Err(_) => return false,
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
fn two_thousand_one_byte_handshakes_are_closed_at_the_timeout_while_a_normal_client_is_served() {
    operations_common::ensure_nofile(SLOW as u64 + 256);
    let s = Setup::new();
    let e = start_engine(&s.args(&[
        "--shards",
        "1",
        "--handshake-timeout",
        "2s",
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    let addr = e.addr();

    // A normal client: new handshake + request per iteration, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let normal = {
        let (stop, cfg) = (stop.clone(), s.client.clone());
        std::thread::spawn(move || {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let mut c = tls_from("127.0.0.2", addr, &cfg).expect("normal client served");
                assert!(get(&mut c).expect("normal request").contains("200"));
                lat.push(t.elapsed());
                close(c);
            }
            lat
        })
    };

    let opened = Instant::now();
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|i| {
            let mut c = TcpStream::connect(addr).unwrap_or_else(|e| panic!("slow conn {i}: {e}"));
            c.write_all(&[0x16]).expect("one byte");
            c.set_read_timeout(Some(WAIT)).expect("timeout");
            c
        })
        .collect();
    let all_open = opened.elapsed();
    let unclosed = slow
        .iter_mut()
        .map(closed_by_server)
        .filter(|closed| !closed)
        .count();
    let all_closed = opened.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut lat = normal.join().expect("normal client thread");
    assert_eq!(unclosed, 0, "slow connections still open after {WAIT:?}");
    assert!(
        !lat.is_empty(),
        "the normal client completed requests meanwhile"
    );

    let text = eventually("the timeouts to be counted", || {
        let t = scrape(metrics_addr(&e));
        (value(
            &t,
            "uringtls_connections_closed_total",
            &[("reason", "handshake_timeout")],
        ) == SLOW as f64)
            .then_some(t)
    });
    assert_eq!(
        value(
            &text,
            "uringtls_handshakes_failed_total",
            &[("reason", "timeout")]
        ),
        SLOW as f64
    );

    lat.sort();
    println!(
        "slowloris: {SLOW} one-byte connections opened in {all_open:?}, all closed by the engine {all_closed:?} after the first \
         (handshake timeout 2s); normal client: {} requests (new TLS handshake each), p50 {:?}, p99 {:?}, max {:?}",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
}

#[test]
fn trickled_http_headers_are_cut_off_at_the_header_timeout_despite_activity() {
    let s = Setup::new();
    let e = start_engine(&s.args(&[
        "--shards",
        "1",
        "--header-timeout",
        "1s",
        "--idle-timeout",
        "60s",
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("handshake");
    c.write_all(b"GET / HTTP/1.1\r\n").expect("start a request");
    c.flush().expect("flush");
    c.sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let start = Instant::now();
    let mut buf = [0u8; 256];
    let closed = loop {
        assert!(start.elapsed() < WAIT, "never cut off");
        // One more header byte every 200 ms: never idle, never complete.
        if c.write_all(b"X").and_then(|_| c.flush()).is_err() {
            break true;
        }
        match c.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break true,
        }
    };
    assert!(closed);
    println!(
        "trickled headers cut off after {:?} (header timeout 1s)",
        start.elapsed()
    );
    let text = eventually("the header timeout to be counted", || {
        let t = scrape(metrics_addr(&e));
        (value(
            &t,
            "uringtls_connections_closed_total",
            &[("reason", "header_timeout")],
        ) == 1.0)
            .then_some(t)
    });
    assert_eq!(
        value(
            &text,
            "uringtls_connections_closed_total",
            &[("reason", "idle_timeout")]
        ),
        0.0
    );
}

#[test]
fn a_tls_record_trickled_a_byte_at_a_time_is_cut_off_at_the_idle_timeout() {
    let s = Setup::new();
    let e = start_engine(&s.args(&[
        "--shards",
        "1",
        "--idle-timeout",
        "1s",
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("handshake");
    // One request record, sent one byte every 200 ms: each socket read is
    // well within the idle timeout, the record never completes in time.
    c.conn
        .writer()
        .write_all(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
        )
        .expect("queue");
    let mut record = Vec::new();
    while c.conn.wants_write() {
        c.conn.write_tls(&mut record).expect("encrypt");
    }
    let sock = &mut c.sock;
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let start = Instant::now();
    let mut buf = [0u8; 256];
    let mut closed = false;
    for b in &record {
        if sock.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        match sock.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => continue, // close_notify arriving
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "the record ({} bytes) completed before the engine closed",
        record.len()
    );
    println!(
        "trickled record cut off after {:?} (idle timeout 1s)",
        start.elapsed()
    );
    eventually("the idle timeout to be counted", || {
        let t = scrape(metrics_addr(&e));
        (value(
            &t,
            "uringtls_connections_closed_total",
            &[("reason", "idle_timeout")],
        ) == 1.0)
            .then_some(())
    });
}
