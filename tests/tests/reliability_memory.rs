//! Memory after floods: freed memory goes back to the OS once a flood of
//! connections closes, and the memory handshakes may pin is bounded by the
//! per-shard handshake budget (`--max-handshakes`). Waits are bounded polls
//! of the engine's own counters (metrics) and of `/proc`, never sleeps.

mod operations_common;

use operations_common::{ensure_nofile, eventually, metrics_addr, scrape, value, Setup};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use uringtls_tests::{start_engine, Client, WAIT};

/// Connections in the flood: enough to move RSS by ~20 MiB, few enough
/// for a 2-core machine shared with other work.
const FLOOD: usize = 3_000;

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Polls RSS (up to [`WAIT`]) until it is at most `bound` KiB: `Ok(rss)`,
/// or `Err(last rss)`.
fn rss_falls_to(pid: u32, bound: u64) -> Result<u64, u64> {
    let end = Instant::now() + WAIT;
    loop {
        let rss = rss_kib(pid);
        if rss <= bound {
            return Ok(rss);
        }
        if Instant::now() > end {
            return Err(rss);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn metric(m: SocketAddr, name: &str) -> f64 {
    value(&scrape(m), name, &[])
}

/// Opens `n` TLS connections with one request answered on each (so every
/// one holds what a served keep-alive connection holds), from 2 threads.
fn open_many(addr: SocketAddr, setup: &Setup, n: usize) -> Vec<Client> {
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let cfg = setup.client.clone();
            std::thread::spawn(move || {
                (0..n / 2 + w * (n % 2))
                    .map(|_| {
                        let mut c = operations_common::tls_from("127.0.0.1", addr, &cfg)
                            .expect("flood connection");
                        assert_eq!(
                            operations_common::get(&mut c).expect("GET"),
                            "HTTP/1.1 200 OK"
                        );
                        c
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    workers
        .into_iter()
        .flat_map(|w| w.join().expect("flood worker"))
        .collect()
}

#[test]
fn rss_falls_back_near_its_pre_flood_level_once_a_flood_of_tls_connections_closes() {
    ensure_nofile(FLOOD as u64 + 256);
    let setup = Setup::new();
    let e = start_engine(&setup.args(&["--shards", "1", "--metrics-listen", "127.0.0.1:0"]));
    let m = metrics_addr(&e);
    // Warm-up: what a serving engine holds anyway (TLS config, pools,
    // caches) is allocated before the baseline.
    drop(open_many(e.addr(), &setup, 20));
    eventually("warm-up connections closed", || {
        (metric(m, "uringtls_connections_active") == 0.0).then_some(())
    });
    let trims_before = metric(m, "uringtls_memory_trims_total");
    let before = rss_kib(e.pid());

    let flood = open_many(e.addr(), &setup, FLOOD);
    eventually("the flood's connections all open", || {
        (metric(m, "uringtls_connections_active") == FLOOD as f64).then_some(())
    });
    let peak = rss_kib(e.pid());
    assert!(
        peak > before + 12 * 1024,
        "the flood should grow RSS by over 12 MiB: {before} KiB -> {peak} KiB"
    );
    drop(flood);
    eventually("the flood's connections all closed", || {
        (metric(m, "uringtls_connections_active") == 0.0).then_some(())
    });
    // Within 20% of the pre-flood level, plus 2 MiB for what a few
    // thousand connections leave in long-lived tables (timer wheel, task
    // slab) and allocator bookkeeping.
    let bound = before + before / 5 + 2 * 1024;
    let after = rss_falls_to(e.pid(), bound).unwrap_or_else(|last| {
        panic!("RSS {before} KiB before, {peak} KiB at the peak, still {last} KiB > {bound} KiB")
    });
    let trims = metric(m, "uringtls_memory_trims_total") - trims_before;
    assert!(trims >= 1.0, "freed memory is returned by trims: {trims}");
    println!("RSS {before} KiB -> peak {peak} KiB -> {after} KiB after the flood ({trims} trims)");
}

/// The start of a ClientHello of the largest size rustls takes (a 64 KiB
/// handshake message over 16 KiB records), cut short: the peer stalls.
fn stalled_hello(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut hello = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0xff, 0xff];
    hello.extend(std::iter::repeat_n(0u8, 1000));
    s.write_all(&hello).expect("write partial hello");
    s
}

#[test]
fn stalled_handshakes_beyond_the_budget_wait_unread_and_a_normal_client_is_served_once_they_close()
{
    for backend in ["uring", "tokio-uring"] {
        budget_holds_and_frees(backend);
    }
}

fn budget_holds_and_frees(backend: &str) {
    const BUDGET: usize = 4;
    let setup = Setup::new();
    let budget = BUDGET.to_string();
    let e = start_engine(&setup.args(&[
        "--shards",
        "1",
        "--metrics-listen",
        "127.0.0.1:0",
        "--max-handshakes",
        &budget,
        "--io-backend",
        backend,
        // Stalled handshakes are cut off to make room only after 6 s.
        "--handshake-timeout",
        "60s",
    ]));
    let m = metrics_addr(&e);
    let within: Vec<TcpStream> = (0..BUDGET).map(|_| stalled_hello(e.addr())).collect();
    eventually("the budget's handshakes in progress", || {
        let t = scrape(m);
        (value(&t, "uringtls_handshakes_in_progress", &[]) == BUDGET as f64
            && value(&t, "uringtls_handshake_budget_pauses_total", &[]) >= 1.0)
            .then_some(())
    });
    let beyond: Vec<TcpStream> = (0..BUDGET).map(|_| stalled_hello(e.addr())).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let (addr, cfg) = (e.addr(), setup.client.clone());
    std::thread::spawn(move || {
        let _ = tx.send(operations_common::tls_from("127.0.0.1", addr, &cfg));
    });
    // A negative: nothing to wait for but time. If the budget did not
    // hold, the client would be served in a few milliseconds.
    assert!(
        rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "{backend}: a handshake was served while the budget was full"
    );
    let t = scrape(m);
    assert_eq!(
        value(&t, "uringtls_connections_accepted_total", &[]),
        BUDGET as f64,
        "{backend}: connections beyond the budget stay in the backlog, unread"
    );
    assert_eq!(
        value(&t, "uringtls_handshakes_in_progress", &[]),
        BUDGET as f64
    );
    drop(within);
    drop(beyond);
    let mut c = rx
        .recv_timeout(WAIT)
        .expect("the normal client is served once the stalled ones close")
        .expect("handshake");
    assert_eq!(
        operations_common::get(&mut c).expect("GET"),
        "HTTP/1.1 200 OK"
    );
    operations_common::close(c);
    eventually("no handshake left in progress", || {
        (value(&scrape(m), "uringtls_handshakes_in_progress", &[]) == 0.0).then_some(())
    });
}

#[test]
fn a_budget_full_of_stalled_handshakes_makes_room_by_cutting_off_the_oldest_once_stale() {
    const BUDGET: usize = 4;
    let setup = Setup::new();
    let budget = BUDGET.to_string();
    // Stale after a tenth of the handshake timeout: 1 s.
    let e = start_engine(&setup.args(&[
        "--shards",
        "1",
        "--metrics-listen",
        "127.0.0.1:0",
        "--max-handshakes",
        &budget,
        "--handshake-timeout",
        "10s",
    ]));
    let m = metrics_addr(&e);
    let mut stalled: Vec<TcpStream> = (0..BUDGET).map(|_| stalled_hello(e.addr())).collect();
    eventually("the budget's handshakes in progress", || {
        (value(&scrape(m), "uringtls_handshakes_in_progress", &[]) == BUDGET as f64).then_some(())
    });
    let mut c = operations_common::tls_from("127.0.0.1", e.addr(), &setup.client)
        .expect("a new client gets a slot once the oldest stalled one is stale");
    assert_eq!(
        operations_common::get(&mut c).expect("GET"),
        "HTTP/1.1 200 OK"
    );
    let t = scrape(m);
    assert_eq!(
        value(&t, "uringtls_handshake_evictions_total", &[]),
        1.0,
        "one stalled handshake made room for the one new client"
    );
    assert_eq!(
        value(&t, "uringtls_handshakes_in_progress", &[]),
        (BUDGET - 1) as f64,
        "the other stalled handshakes run on (served long before their timeout)"
    );
    let oldest = &mut stalled[0];
    oldest.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut buf = [0u8; 16];
    assert!(
        matches!(std::io::Read::read(oldest, &mut buf), Ok(0) | Err(_)),
        "the oldest stalled connection was closed by the engine"
    );
    operations_common::close(c);
}
