//! The uring backend on its own: executor, timers, wakes from other
//! threads, panic containment, provided-buffer receives, listener close.

use crate::io::{self, time, Backend, Conn, Listener, RingOptions, Runtime};
use std::cell::Cell;
use std::future::Future;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

fn rt() -> Runtime {
    Runtime::new(&RingOptions {
        backend: Backend::Uring,
        ..RingOptions::default()
    })
    .expect("uring runtime")
}

/// Both receive modes: multishot (the default) and single-shot.
fn rts() -> [Runtime; 2] {
    [
        rt(),
        Runtime::new(&RingOptions {
            backend: Backend::Uring,
            recv_multishot: false,
            ..RingOptions::default()
        })
        .expect("uring runtime"),
    ]
}

/// Queued SQEs of this thread's ring so far.
fn sqes() -> u64 {
    super::driver().sqes.get()
}

/// Lets completions arrive (a no-op round trip through the ring) until
/// `done` holds; at most `rounds` round trips.
async fn settle_until(rounds: usize, mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..rounds {
        if done() {
            return true;
        }
        io::settle().await;
    }
    done()
}

#[test]
fn spawned_tasks_run_and_a_wake_from_another_thread_arrives() {
    rt().block_on(async {
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<u32>();
        io::spawn(async move {
            let v = rx.await.expect("sender kept");
            let _ = done_tx.send(v);
        });
        // The other thread sends after a pause, so that the loop is most
        // likely parked in io_uring_enter and the wake has to come through
        // the eventfd; the result does not depend on the pause.
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            let _ = tx.send(7);
        });
        let got = done_rx.await.expect("task finished");
        t.join().expect("thread");
        assert_eq!(got, 7);
    });
}

#[test]
fn timers_fire_in_deadline_order_and_timeouts_only_when_due() {
    rt().block_on(async {
        let order = Rc::new(std::cell::RefCell::new(Vec::new()));
        for (i, ms) in [(1, 30u64), (2, 10), (3, 20)] {
            let o = order.clone();
            io::spawn(async move {
                time::sleep(Duration::from_millis(ms)).await;
                o.borrow_mut().push(i);
            });
        }
        time::sleep(Duration::from_millis(60)).await;
        assert_eq!(*order.borrow(), vec![2, 3, 1]);
        let r = time::timeout(Duration::from_millis(5), std::future::pending::<()>()).await;
        assert!(r.is_err(), "a pending future times out");
        let r = time::timeout(Duration::from_secs(5), async { 3 }).await;
        assert_eq!(r, Ok(3));
    });
}

#[test]
fn a_panicking_task_ends_alone() {
    rt().block_on(async {
        io::spawn(async {
            panic!("task panic (expected by the test)");
        });
        let done = Rc::new(Cell::new(false));
        let d = done.clone();
        io::spawn(async move {
            time::sleep(Duration::from_millis(5)).await;
            d.set(true);
        });
        time::sleep(Duration::from_millis(20)).await;
        assert!(done.get(), "the other task still ran");
    });
}

fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let c = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    let (s, _) = l.accept().expect("accept");
    (c, s)
}

#[test]
fn receives_use_the_pool_and_fall_back_to_the_heap_when_it_is_empty() {
    for rt in rts() {
        rt.block_on(receives_use_the_pool_and_fall_back_to_the_heap());
    }
}

async fn receives_use_the_pool_and_fall_back_to_the_heap() {
    {
        let (mut client, server) = pair();
        let conn = Conn::from_std(server).expect("conn");
        // Hold more chunks than the pool has buffers: the first
        // POOL_BUFFERS come from the pool, the rest from the heap.
        let total = usize::from(super::POOL_BUFFERS) + 20;
        let mut held = Vec::new();
        for i in 0..total {
            client.write_all(&[i as u8]).expect("write");
            let c = conn.recv(None, 64, 64).await.expect("recv");
            assert_eq!(&c[..], &[i as u8]);
            held.push(c);
        }
        let pooled = held.iter().filter(|c| c.is_pooled()).count();
        assert_eq!(pooled, usize::from(super::POOL_BUFFERS));
        drop(held);
        // Given back: the pool serves again.
        client.write_all(b"again").expect("write");
        let c = conn.recv(None, 64, 64).await.expect("recv");
        assert!(c.is_pooled());
        assert_eq!(&c[..], b"again");
        drop(client);
        drop(c);
        let end = conn.recv(None, 64, 64).await.expect("recv at EOF");
        assert!(end.is_empty(), "EOF is an empty chunk");
    }
}

#[test]
fn a_receive_that_waits_for_data_first_gets_data_sent_before_and_after_and_eof() {
    rt().block_on(async {
        let (mut client, server) = pair();
        let conn = Rc::new(Conn::from_std(server).expect("conn"));
        // Data already queued: the kernel's readiness check finds it.
        client.write_all(b"before").expect("write");
        let c = conn.recv_hinted(None, 64, 64, true).await.expect("recv");
        assert_eq!(&c[..], b"before");
        drop(c);
        // Data sent once the receive is in flight: the task arms it, then
        // tells this one to write.
        let (armed_tx, armed_rx) = tokio::sync::oneshot::channel::<()>();
        let (got_tx, got_rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
        let c2 = conn.clone();
        io::spawn(async move {
            let recv = c2.recv_hinted(None, 64, 64, true);
            let mut recv = std::pin::pin!(recv);
            // One poll submits the receive; nothing has been written yet.
            let first = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(recv.as_mut().poll(cx).is_ready())
            })
            .await;
            assert!(!first, "nothing was sent yet");
            let _ = armed_tx.send(());
            let c = recv.await.expect("recv");
            let _ = got_tx.send(c.to_vec());
        });
        armed_rx.await.expect("task armed its receive");
        client.write_all(b"after").expect("write");
        assert_eq!(got_rx.await.expect("task received"), b"after");
        // EOF is still an empty chunk.
        drop(client);
        let end = conn
            .recv_hinted(None, 64, 64, true)
            .await
            .expect("recv at EOF");
        assert!(end.is_empty());
    });
}

#[test]
fn a_started_receive_survives_giving_up_the_wait_and_the_next_recv_takes_it() {
    rt().block_on(async {
        let (mut client, server) = pair();
        let conn = Conn::from_std(server).expect("conn");
        assert!(conn.start_recv(), "the uring backend can start a receive");
        assert!(!conn.started_recv_done());
        // Wait once and give up (nothing was sent): nothing is lost.
        {
            let wait = conn.recv_started();
            let mut wait = std::pin::pin!(wait);
            let ready = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(wait.as_mut().poll(cx).is_ready())
            })
            .await;
            assert!(!ready, "nothing was sent yet");
        }
        client.write_all(b"held").expect("write");
        conn.recv_started().await;
        assert!(
            conn.started_recv_done(),
            "completed and waiting to be taken"
        );
        let c = conn.recv(None, 64, 64).await.expect("recv");
        assert_eq!(&c[..], b"held");
        assert!(!conn.started_recv_done(), "taken");
        // The next receive is a fresh one.
        client.write_all(b"next").expect("write");
        let c = conn.recv(None, 64, 64).await.expect("recv");
        assert_eq!(&c[..], b"next");
    });
}

#[test]
fn a_closed_listener_leaves_no_accept_behind() {
    rt().block_on(async {
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_l.local_addr().expect("addr");
        let l = Listener::from_std(std_l).expect("listener");
        // Leave accepts in flight, then drop the future that armed them.
        {
            let accept = l.accept();
            let r = time::timeout(Duration::from_millis(5), accept).await;
            assert!(r.is_err());
        }
        let queued = l.close().await;
        assert!(queued.is_empty());
        let err = std::net::TcpStream::connect(addr).expect_err("nobody listens");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    });
}

#[test]
fn accept_goes_through_the_ring_and_reports_the_peer_address() {
    rt().block_on(async {
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_l.local_addr().expect("addr");
        let l = Listener::from_std(std_l).expect("listener");
        let client = std::net::TcpStream::connect(addr).expect("connect");
        let (_conn, peer) = l.accept().await.expect("accept");
        assert_eq!(peer, client.local_addr().expect("client addr"));
    });
}

#[test]
fn a_closed_listener_hands_back_what_its_accepts_took_and_what_is_queued() {
    rt().block_on(async {
        let std_l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = std_l.local_addr().expect("addr");
        let l = Listener::from_std(std_l).expect("listener");
        // Arm the accepts, then drop the future that armed them: they stay
        // in flight, owned by the listener.
        {
            let r = time::timeout(Duration::from_millis(1), l.accept()).await;
            assert!(r.is_err());
        }
        // More connections than accepts in flight: some are taken by the
        // ring's accepts, the rest wait in the queue.
        let clients: Vec<_> = (0..12)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        io::settle().await;
        let mut got: Vec<_> = l.close().await.into_iter().map(|(_, p)| p).collect();
        let mut want: Vec<_> = clients
            .iter()
            .map(|c| c.local_addr().expect("client addr"))
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "every connection handed back, none lost");
        let err = std::net::TcpStream::connect(addr).expect_err("nobody listens");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    });
}

#[test]
fn abort_completes_a_read_in_flight() {
    rt().block_on(async {
        let (_client, server) = pair();
        let conn = Rc::new(Conn::from_std(server).expect("conn"));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let c = conn.clone();
        io::spawn(async move {
            let r = c.recv(None, 64, 64).await.map(|chunk| chunk.len());
            let _ = tx.send(r);
        });
        // Let the task submit its receive.
        io::settle().await;
        conn.abort();
        let got = rx.await.expect("the read ended");
        assert_eq!(got.expect("EOF after a shutdown"), 0);
    });
}

#[test]
fn a_bulk_write_larger_than_the_socket_buffer_arrives_whole_and_in_order() {
    // 8 MiB to a reader that takes it slowly: the first direct send(2)
    // fills the socket's buffer, the rest goes through the ring, waiting for
    // room (POLL_FIRST) each time the buffer is full.
    let (client, server) = pair();
    let len = 8 << 20;
    let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    let reader = std::thread::spawn(move || {
        let mut client = client;
        let mut got = Vec::with_capacity(len);
        let mut buf = [0u8; 7000];
        loop {
            let n = std::io::Read::read(&mut client, &mut buf).expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    let sqes_used = rt().block_on(async {
        let conn = Conn::from_std(server).expect("conn");
        let before = sqes();
        let (res, _) = conn.write_all(data.clone()).await;
        res.expect("write");
        conn.shutdown_write();
        sqes() - before
    });
    let got = reader.join().expect("reader");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes out of order or changed");
    assert!(sqes_used > 0, "the ring waited for room at least once");
}

#[test]
fn bytes_written_before_a_fin_arrive_whole_then_eof() {
    rt().block_on(async {
        // Small and multi-segment payloads: `MSG_MORE` holds back only the
        // last partial segment, and the shutdown releases it with the FIN.
        // (100 kB: more than one loopback segment, less than a default
        // receive buffer, so the write completes before the client reads.)
        for len in [5usize, 100_000] {
            let (mut client, server) = pair();
            let conn = Conn::from_std(server).expect("conn");
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (res, _) = conn.write_all_fin_next(data.clone(), true).await;
            res.expect("write");
            conn.shutdown_write();
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut client, &mut got).expect("read to EOF");
            assert_eq!(got, data, "{len} bytes");
        }
    });
}

#[test]
fn a_multishot_receive_stays_armed_across_reads_and_delivers_in_order() {
    rt().block_on(async {
        let (mut client, server) = pair();
        let conn = Conn::from_std(server).expect("conn");
        client.write_all(b"first").expect("write");
        let c = conn.recv(None, 64, 64).await.expect("recv");
        assert_eq!(&c[..], b"first");
        drop(c);
        assert_eq!(
            conn.multishot_state(),
            Some((0, true)),
            "armed, nothing queued"
        );
        let before = sqes();
        for i in 0..50u8 {
            client.write_all(&[i; 3]).expect("write");
            let c = conn.recv(None, 64, 64).await.expect("recv");
            assert_eq!(&c[..], &[i; 3]);
        }
        assert_eq!(sqes(), before, "no submission per read");
        // Data that arrives while nobody reads waits, in order.
        client.write_all(b"a").expect("write");
        assert!(settle_until(1000, || conn.started_recv_done()).await);
        client.write_all(b"b").expect("write");
        assert!(settle_until(1000, || conn.multishot_state().is_some_and(|(q, _)| q == 2)).await);
        assert_eq!(&conn.recv(None, 64, 64).await.expect("recv")[..], b"a");
        assert_eq!(&conn.recv(None, 64, 64).await.expect("recv")[..], b"b");
        drop(client);
        assert!(conn.recv(None, 64, 64).await.expect("EOF").is_empty());
        assert_eq!(conn.multishot_state(), Some((0, false)), "EOF ends it");
    });
}

#[test]
fn a_connection_that_is_not_read_holds_few_pool_buffers_and_loses_nothing() {
    rt().block_on(async {
        let (mut client, server) = pair();
        let conn = Conn::from_std(server).expect("conn");
        client.write_all(b"x").expect("write");
        assert_eq!(&conn.recv(None, 64, 64).await.expect("recv")[..], b"x");
        // 4 MiB arrive while the server does not read: more than the whole
        // pool (256 x 16.5 KiB) and than the socket buffers hold, so the
        // writer blocks until the server reads.
        let len = 4 << 20;
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            client.write_all(&sent).expect("write");
            client
        });
        // The receive ends (byte limit or the driver's cap) with a few
        // buffers queued; the rest waits in the socket.
        assert!(
            settle_until(10_000, || conn
                .multishot_state()
                .is_some_and(|(q, armed)| q > 0 && !armed))
            .await,
            "the multishot receive ends while nobody reads"
        );
        let (queued, _) = conn.multishot_state().expect("armed once");
        assert!(
            queued <= 2 * super::MULTI_QUEUE_CAP,
            "{queued} buffers held by one unread connection"
        );
        // Ended, it takes nothing more: the rest waits in the socket.
        for _ in 0..100 {
            io::settle().await;
        }
        assert_eq!(conn.multishot_state(), Some((queued, false)));
        let mut got = Vec::with_capacity(len);
        while got.len() < len {
            let c = conn.recv(None, 64, 64).await.expect("recv");
            assert!(!c.is_empty(), "EOF after {} bytes", got.len());
            got.extend_from_slice(&c);
        }
        assert!(got == data, "every byte, in order");
        drop(writer.join().expect("writer"));
        assert!(conn.recv(None, 64, 64).await.expect("EOF").is_empty());
    });
}

#[test]
fn dropping_a_connection_gives_back_what_its_receive_queued() {
    rt().block_on(async {
        // More rounds x buffers than the pool has: a leak would empty it.
        let rounds = usize::from(super::POOL_BUFFERS);
        for _ in 0..rounds {
            let (mut client, server) = pair();
            let conn = Conn::from_std(server).expect("conn");
            client.write_all(b"one").expect("write");
            assert_eq!(&conn.recv(None, 64, 64).await.expect("recv")[..], b"one");
            client.write_all(b"two").expect("write");
            assert!(settle_until(1000, || conn.started_recv_done()).await);
            client.write_all(b"three").expect("write");
            assert!(
                settle_until(1000, || conn.multishot_state().is_some_and(|(q, _)| q >= 2)).await
            );
            drop(conn);
        }
        // Let the cancels complete.
        io::settle().await;
        let (mut client, server) = pair();
        let conn = Conn::from_std(server).expect("conn");
        client.write_all(b"pooled").expect("write");
        let c = conn.recv(None, 64, 64).await.expect("recv");
        assert!(
            c.is_pooled(),
            "the pool was not drained by dropped connections"
        );
        assert_eq!(&c[..], b"pooled");
    });
}

#[test]
fn abort_ends_an_armed_multishot_receive_without_a_cancel() {
    rt().block_on(async {
        let (mut client, server) = pair();
        let conn = Conn::from_std(server).expect("conn");
        client.write_all(b"hi").expect("write");
        assert_eq!(&conn.recv(None, 64, 64).await.expect("recv")[..], b"hi");
        assert_eq!(conn.multishot_state(), Some((0, true)));
        let in_flight = || super::driver().ops.borrow().in_flight;
        let (sqes_before, held) = (sqes(), in_flight());
        conn.abort();
        drop(conn);
        // The shutdown ends the receive: its last completion releases it,
        // and nothing but our no-op round trips was submitted (no cancel).
        let mut settles = 0;
        while in_flight() != held - 1 {
            assert!(settles < 1000, "the aborted receive never ended");
            io::settle().await;
            settles += 1;
        }
        assert_eq!(sqes() - sqes_before, settles, "no cancel submitted");
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut client, &mut buf).expect("EOF");
        assert!(buf.is_empty());
    });
}

#[test]
fn a_kernel_that_refuses_multishot_receives_gets_single_shot_ones() {
    rt().block_on(async {
        let d = super::driver();
        d.refuse_multishot.set(true);
        let (mut client, server) = pair();
        let conn = Conn::from_std(server).expect("conn");
        client.write_all(b"still read").expect("write");
        let c = conn
            .recv(None, 64, 64)
            .await
            .expect("recv after the refusal");
        assert_eq!(&c[..], b"still read");
        assert!(c.is_pooled(), "single-shot pool receive");
        drop(c);
        assert!(!d.recv_multishot.get(), "multishot off for this shard");
        assert_eq!(conn.multishot_state(), None);
        client.write_all(b"next").expect("write");
        assert_eq!(&conn.recv(None, 64, 64).await.expect("recv")[..], b"next");
    });
}

/// Timers registered on this thread's driver so far.
fn timer_registrations() -> u64 {
    super::driver().timer_registrations.get()
}

#[test]
fn a_deadline_moved_later_registers_no_new_timer() {
    rt().block_on(async {
        let mut d = time::Deadline::new();
        let before = timer_registrations();
        for _ in 0..100 {
            // A wait that is pending once (a round trip through the ring),
            // each with a later deadline than the last.
            let r = d
                .within(time::now() + Duration::from_secs(60), io::settle())
                .await;
            assert!(r.is_ok());
        }
        assert_eq!(
            timer_registrations() - before,
            1,
            "one registration for 100 waits"
        );
    });
}

#[test]
fn a_deadline_fires_at_its_latest_instant_after_an_earlier_registration_fires() {
    rt().block_on(async {
        let mut d = time::Deadline::new();
        // Registered at +10 ms by a wait that ends at once...
        let r = d
            .within(time::now() + Duration::from_millis(10), io::settle())
            .await;
        assert!(r.is_ok());
        // ...then a wait until +40 ms: the +10 ms entry fires first, the
        // timer registers again, and the wait ends at +40 ms, not before.
        let at = time::now() + Duration::from_millis(40);
        let before = timer_registrations();
        let r = d.within(at, std::future::pending::<()>()).await;
        assert!(r.is_err(), "the wait timed out");
        assert!(std::time::Instant::now() >= at, "not before its deadline");
        assert_eq!(timer_registrations() - before, 1, "registered again once");
    });
}

#[test]
fn a_deadline_moved_earlier_fires_at_the_earlier_instant() {
    rt().block_on(async {
        let mut d = time::Deadline::new();
        let r = d
            .within(time::now() + Duration::from_secs(60), io::settle())
            .await;
        assert!(r.is_ok());
        let started = std::time::Instant::now();
        let at = time::now() + Duration::from_millis(5);
        let r = d.within(at, std::future::pending::<()>()).await;
        assert!(r.is_err(), "the earlier deadline fired");
        assert!(std::time::Instant::now() >= at);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "did not wait for the later one"
        );
    });
}

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = rel
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

#[test]
fn a_parked_loop_waits_as_idle_where_the_kernel_can_tell() {
    rt().block_on(async {
        let d = super::driver();
        let (mut client, server) = pair();
        let conn = Conn::from_std(server).expect("conn");
        // A receive in flight (what makes the kernel count a wait as
        // iowait), then a wait bounded by a timer: the loop parks.
        let got = Rc::new(Cell::new(0));
        let g = got.clone();
        io::spawn(async move {
            let c = conn.recv(None, 64, 64).await.expect("recv");
            g.set(c.len());
        });
        time::sleep(Duration::from_millis(5)).await;
        assert_eq!(got.get(), 0, "nothing was sent yet");
        // Linux 6.15+ takes IORING_ENTER_NO_IOWAIT; an older kernel
        // refused it and the loop went on with plain waits.
        assert_eq!(d.no_iowait.get(), kernel_at_least(6, 15));
        client.write_all(b"data").expect("write");
        assert!(
            settle_until(100, || got.get() == 4).await,
            "the receive completes"
        );
    });
}

#[test]
fn a_kernel_that_refuses_the_no_iowait_flag_gets_plain_waits() {
    rt().block_on(async {
        let d = super::driver();
        d.refuse_no_iowait.set(true);
        // The first wait is refused, then made again without the flag.
        time::sleep(Duration::from_millis(2)).await;
        assert!(!d.no_iowait.get(), "the flag is dropped for this ring");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let t = std::thread::spawn(move || tx.send(7));
        assert_eq!(rx.await, Ok(7), "a wake from another thread still arrives");
        t.join().expect("thread").expect("sent");
    });
}
