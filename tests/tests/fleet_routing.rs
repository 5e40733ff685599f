//! The proxy's routing (server name and ALPN pick the pool), active health
//! checks, retries on a connect failure, per-upstream metrics, and routes
//! changed by a reload. Upstreams are small TCP servers that answer every
//! request with their own name.

mod operations_common;

use operations_common::{metrics_addr, scrape, value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use uringtls_tests::{any_cert_client_config, connect_to, eventually, start_engine, EngineProc};

/// A TCP upstream that reads a request line and answers with its name.
/// Connections that send nothing (health checks) are not counted.
struct Named {
    addr: SocketAddr,
    /// Requests answered.
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Named {
    fn start(name: &'static str) -> Named {
        Named::at(name, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Listens on `addr` (a port used before: a restart).
    fn at(name: &'static str, addr: SocketAddr) -> Named {
        let l = TcpListener::bind(addr).expect("bind upstream");
        let addr = l.local_addr().expect("addr");
        let (served, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let thread = {
            let (served, stop) = (served.clone(), stop.clone());
            std::thread::spawn(move || {
                for s in l.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(s) = s else { continue };
                    let served = served.clone();
                    std::thread::spawn(move || answer(s, name, &served));
                }
            })
        };
        Named {
            addr,
            served,
            stop,
            thread: Some(thread),
        }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    fn arg(&self) -> String {
        self.addr.to_string()
    }

    /// Stops listening: connects are refused from now on.
    fn kill(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            // Wakes the accept loop, which then drops the listener.
            let _ = TcpStream::connect(self.addr);
            t.join().expect("upstream thread");
        }
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        self.kill();
    }
}

fn answer(mut s: TcpStream, name: &str, served: &AtomicUsize) {
    let _ = s.set_read_timeout(Some(uringtls_tests::WAIT));
    let mut byte = [0u8; 1];
    let mut got = 0;
    while let Ok(1) = s.read(&mut byte) {
        got += 1;
        if byte[0] == b'\n' {
            break;
        }
    }
    if got > 0 {
        served.fetch_add(1, Ordering::SeqCst);
        let _ = s.write_all(name.as_bytes());
        let _ = s.shutdown(std::net::Shutdown::Write);
        let _ = s.read(&mut byte);
    }
}

/// One request through the engine with server name `sni` and ALPN
/// offers `alpn`: the answering upstream's name ("" for a clean close
/// without an answer).
fn ask(e: &EngineProc, sni: &str, alpn: &[&str]) -> std::io::Result<String> {
    let mut cfg = (*any_cert_client_config()).clone();
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    let mut c = connect_to(e.addr(), &Arc::new(cfg), sni)?;
    c.write_all(b"which?\n")?;
    c.flush()?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    Ok(out)
}

/// Connects with server name `sni` and reads without sending: what a
/// connection no pool takes gets (`Ok("")`: a clean close).
fn unrouted(e: &EngineProc, sni: &str) -> std::io::Result<String> {
    let mut c = connect_to(e.addr(), &any_cert_client_config(), sni)?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    Ok(out)
}

fn who(e: &EngineProc, sni: &str, alpn: &[&str]) -> String {
    ask(e, sni, alpn).unwrap_or_else(|err| panic!("{sni} {alpn:?}: {err}"))
}

fn proxy(extra: &[&str]) -> EngineProc {
    let mut args = vec![
        "--service",
        "proxy",
        "--shards",
        "1",
        "--alpn",
        "h2,http/1.1",
        "--metrics-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    start_engine(&args)
}

#[test]
fn names_and_wildcards_pick_their_pools_and_an_unknown_name_the_default_one() {
    let (a, b, d) = (Named::start("A"), Named::start("B"), Named::start("D"));
    let e = proxy(&[
        "--route",
        &format!("a.test={}", a.arg()),
        "--route",
        &format!("*.b.test={}", b.arg()),
        "--upstream",
        &d.arg(),
    ]);
    assert_eq!(who(&e, "a.test", &[]), "A");
    assert_eq!(
        who(&e, "A.Test", &[]),
        "A",
        "names match case-insensitively"
    );
    assert_eq!(who(&e, "x.b.test", &[]), "B");
    assert_eq!(
        who(&e, "y.x.b.test", &[]),
        "B",
        "a wildcard takes several labels"
    );
    assert_eq!(who(&e, "b.test", &[]), "D", "but not its own suffix");
    assert_eq!(who(&e, "unknown.test", &[]), "D");
    assert_eq!(who(&e, "127.0.0.1", &[]), "D", "no SNI: the default pool");
    assert_eq!((a.served(), b.served(), d.served()), (2, 2, 3));
}

#[test]
fn the_most_specific_route_wins_whatever_the_order_given() {
    let (w, b, x) = (Named::start("W"), Named::start("B"), Named::start("X"));
    let e = proxy(&[
        "--route",
        &format!("x.b.test={}", x.arg()),
        "--route",
        &format!("*.test={}", w.arg()),
        "--route",
        &format!("*.b.test={}", b.arg()),
    ]);
    assert_eq!(who(&e, "x.b.test", &[]), "X", "exact beats every wildcard");
    assert_eq!(who(&e, "y.b.test", &[]), "B", "the longer wildcard wins");
    assert_eq!(who(&e, "c.test", &[]), "W");
}

#[test]
fn the_negotiated_alpn_picks_the_pool() {
    let ups: Vec<Named> = ["H2", "H1", "AH2", "A", "D"]
        .into_iter()
        .map(Named::start)
        .collect();
    let e = proxy(&[
        "--route",
        &format!("@h2={}", ups[0].arg()),
        "--route",
        &format!("@http/1.1={}", ups[1].arg()),
        "--route",
        &format!("a.test@h2={}", ups[2].arg()),
        "--route",
        &format!("a.test={}", ups[3].arg()),
        "--upstream",
        &ups[4].arg(),
    ]);
    assert_eq!(who(&e, "z.test", &["h2"]), "H2");
    assert_eq!(who(&e, "z.test", &["http/1.1"]), "H1");
    assert_eq!(
        who(&e, "z.test", &["h2", "http/1.1"]),
        "H2",
        "the server's preference"
    );
    assert_eq!(who(&e, "z.test", &[]), "D", "no ALPN: the default pool");
    assert_eq!(who(&e, "a.test", &["h2"]), "AH2");
    assert_eq!(
        who(&e, "a.test", &["http/1.1"]),
        "A",
        "the name first, then the ALPN"
    );
}

#[test]
fn an_unknown_name_without_a_default_pool_is_closed_cleanly_and_counted() {
    let a = Named::start("A");
    let route = format!("a.test={}", a.arg());
    let e = proxy(&["--route", &route]);
    let m = metrics_addr(&e);
    assert_eq!(who(&e, "a.test", &[]), "A");
    for _ in 0..2 {
        let got = unrouted(&e, "unknown.test").expect("a clean close, not a reset");
        assert_eq!(got, "");
    }
    eventually("two unrouted connections counted", || {
        let t = scrape(m);
        (value(
            &t,
            "uringtls_upstream_errors_total",
            &[("kind", "no_route")],
        ) == 2.0)
            .then_some(())
    });
    // With upstream_http, an HTTP/1.1 client gets its 502 first.
    let e = proxy(&["--route", &route, "--upstream-http", "true"]);
    let mut cfg = (*any_cert_client_config()).clone();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut c = connect_to(e.addr(), &Arc::new(cfg), "unknown.test").expect("handshake");
    c.write_all(b"GET / HTTP/1.1\r\nHost: unknown.test\r\n\r\n")
        .expect("request");
    let (status, _, _) = uringtls_tests::read_response(&mut c).expect("an answer");
    assert_eq!(status, "HTTP/1.1 502 Bad Gateway");
}

/// The sum of `name` for upstream `up` in the page `t`.
fn of(t: &str, name: &str, up: &Named) -> f64 {
    value(t, name, &[("upstream", &up.arg())])
}

#[test]
fn a_dead_upstream_leaves_its_pool_after_the_failed_checks_and_returns_after_the_passes() {
    let (mut a, b) = (Named::start("A"), Named::start("B"));
    let e = proxy(&[
        "--route",
        &format!("a.test={},{}", a.arg(), b.arg()),
        "--health-interval",
        "100ms",
        "--health-fails",
        "2",
        "--health-passes",
        "2",
        "--health-timeout",
        "1s",
        // Passive health out of the way: only the checks keep A out.
        "--upstream-fail-timeout",
        "1ms",
    ]);
    let m = metrics_addr(&e);
    eventually("both upstreams checked and up", || {
        let t = scrape(m);
        let checked = |u| of(&t, "uringtls_upstream_health_checks_total", u) >= 1.0;
        let up = |u| of(&t, "uringtls_upstream_up", u) == 1.0;
        (checked(&a) && checked(&b) && up(&a) && up(&b)).then_some(())
    });
    let names: Vec<String> = (0..4).map(|_| who(&e, "a.test", &[])).collect();
    assert!(
        names.contains(&"A".into()) && names.contains(&"B".into()),
        "{names:?}"
    );

    a.kill();
    let t = eventually("A down by its checks", || {
        let t = scrape(m);
        (of(&t, "uringtls_upstream_up", &a) == 0.0).then_some(t)
    });
    let fails = value(
        &t,
        "uringtls_upstream_health_checks_total",
        &[("upstream", &a.arg()), ("result", "fail")],
    );
    assert!(fails >= 2.0, "down after 2 failed checks, saw {fails}");
    // A reload that changes nothing keeps A's state and counters: A stays
    // out (a fresh state would put it back in until 2 more failures).
    assert!(e.reload(1), "{}", e.stdout());
    let t = scrape(m);
    assert_eq!(of(&t, "uringtls_upstream_up", &a), 0.0, "{t}");
    let kept = value(
        &t,
        "uringtls_upstream_health_checks_total",
        &[("upstream", &a.arg()), ("result", "fail")],
    );
    assert!(kept >= fails, "counters carried over: {kept} < {fails}");
    let tried = |t: &str| {
        of(t, "uringtls_upstream_connects_total", &a)
            + of(t, "uringtls_upstream_connect_failures_total", &a)
    };
    let (tried_before, b_before) = (tried(&t), b.served());
    for _ in 0..8 {
        assert_eq!(who(&e, "a.test", &[]), "B");
    }
    assert_eq!(b.served(), b_before + 8);
    assert_eq!(
        tried(&scrape(m)),
        tried_before,
        "no client connection was sent to the dead upstream"
    );

    let a2 = Named::at("A", a.addr);
    eventually("A back after its passes", || {
        (of(&scrape(m), "uringtls_upstream_up", &a2) == 1.0).then_some(())
    });
    let names: Vec<String> = (0..4).map(|_| who(&e, "a.test", &[])).collect();
    assert!(names.contains(&"A".into()), "{names:?}");
    assert!(a2.served() >= 1);
    let log = e.wait_for_stderr("back in its pool");
    assert_eq!(
        log.matches("upstream failed its health checks").count(),
        1,
        "going down is logged once: {log}"
    );
    assert_eq!(log.matches("back in its pool").count(), 1, "{log}");
}

#[test]
fn a_connect_failure_retries_the_next_upstream_of_the_routed_pool_unseen_by_the_client() {
    let b = Named::start("B");
    let dead = uringtls_tests::closed_port().to_string();
    let e = proxy(&[
        "--route",
        &format!("a.test={dead},{}", b.arg()),
        "--upstream-fail-timeout",
        "1ms",
    ]);
    let m = metrics_addr(&e);
    for _ in 0..6 {
        assert_eq!(who(&e, "a.test", &[]), "B");
    }
    // Each relay is counted once the client's close has reached it.
    let t = eventually("six relays ended and counted", || {
        let t = scrape(m);
        let settled = of(&t, "uringtls_upstream_active_connections", &b) == 0.0
            && of(&t, "uringtls_upstream_received_bytes_total", &b) == 6.0;
        settled.then_some(t)
    });
    let failures = value(
        &t,
        "uringtls_upstream_connect_failures_total",
        &[("pool", "a.test"), ("upstream", &dead)],
    );
    assert!(
        failures >= 2.0,
        "the dead upstream was tried first at times: {t}"
    );
    assert_eq!(of(&t, "uringtls_upstream_connects_total", &b), 6.0);
    assert_eq!(
        value(
            &t,
            "uringtls_upstream_errors_total",
            &[("kind", "unavailable")]
        ),
        0.0
    );
    let sent = value(
        &t,
        "uringtls_upstream_sent_bytes_total",
        &[("upstream", &b.arg())],
    );
    assert_eq!(sent, 6.0 * "which?\n".len() as f64, "{t}");
    promtool_accepts(m);
}

/// `promtool check metrics` on the Prometheus text page (skipped with a
/// reason outside CI when promtool is missing).
fn promtool_accepts(m: SocketAddr) {
    if !uringtls_tests::require_tool("promtool") {
        return;
    }
    let mut s = TcpStream::connect(m).expect("connect metrics");
    s.set_read_timeout(Some(uringtls_tests::WAIT))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain;version=0.0.4\r\n\r\n")
        .expect("write");
    let mut page = String::new();
    s.read_to_string(&mut page).expect("read");
    let (_, text) = page.split_once("\r\n\r\n").expect("head and body");
    assert!(text.contains("uringtls_upstream_up{"), "{text}");
    uringtls_tests::promtool_check(text);
}

#[test]
fn a_reloaded_route_table_routes_new_connections_and_a_bad_one_is_refused() {
    let (a, b) = (Named::start("A"), Named::start("B"));
    let dir = tempfile::tempdir().expect("dir");
    let route = |sni: &str, up: &Named| {
        format!(
            "[[route]]\nsni = \"{sni}\"\nupstreams = [\"{}\"]\n",
            up.arg()
        )
    };
    let file = uringtls_tests::write(dir.path(), "u.toml", &route("a.test", &a));
    let e = proxy(&["--config", file.to_str().expect("utf8")]);
    assert_eq!(who(&e, "a.test", &[]), "A");
    assert_eq!(unrouted(&e, "c.test").expect("clean close"), "");

    uringtls_tests::write(
        dir.path(),
        "u.toml",
        &format!("{}{}", route("a.test", &b), route("*.c.test", &a)),
    );
    assert!(e.reload(1), "{}", e.stdout());
    assert_eq!(who(&e, "a.test", &[]), "B");
    assert_eq!(who(&e, "x.c.test", &[]), "A");

    uringtls_tests::write(dir.path(), "u.toml", &route("a..test", &a));
    assert!(!e.reload(2), "a bad pattern is refused");
    let out = e.stdout();
    assert!(
        out.contains("field `route`") && out.contains("`a..test` is not a server name"),
        "{out}"
    );
    assert_eq!(who(&e, "a.test", &[]), "B", "the old routes keep serving");
    assert_eq!(who(&e, "x.c.test", &[]), "A");

    // Health checks turned on by a reload: the checker starts then (after
    // the sandbox is in force) and finds the dead upstream.
    let dead = uringtls_tests::closed_port().to_string();
    uringtls_tests::write(
        dir.path(),
        "u.toml",
        &format!(
            "health_interval = \"100ms\"\nhealth_fails = 1\n\
             [[route]]\nsni = \"a.test\"\nupstreams = [\"{dead}\", \"{}\"]\n",
            b.arg()
        ),
    );
    assert!(e.reload(3), "{}", e.stdout());
    let m = metrics_addr(&e);
    eventually("the dead upstream found by the checks", || {
        let t = scrape(m);
        let dead_checked = &[("upstream", dead.as_str()), ("result", "fail")];
        (value(&t, "uringtls_upstream_health_checks_total", dead_checked) >= 1.0
            && value(&t, "uringtls_upstream_up", &[("upstream", &dead)]) == 0.0
            && of(&t, "uringtls_upstream_up", &b) == 1.0)
            .then_some(())
    });
    let t = scrape(m);
    assert_eq!(
        value(&t, "uringtls_sandbox_denied_syscalls_total", &[]),
        0.0,
        "the checker thread needs no call outside the seccomp list: {t}"
    );
    assert_eq!(who(&e, "a.test", &[]), "B");
    assert_eq!(
        unrouted(&e, "x.c.test").expect("clean close"),
        "",
        "the route is gone"
    );
}

#[test]
fn a_bad_route_stops_the_start_naming_the_flag_and_the_fix() {
    let (code, err) = uringtls_tests::engine_fails(&[
        "--service",
        "proxy",
        "--route",
        "*.b.test=127.0.0.1:1",
        "--route",
        "*.B.test.=127.0.0.1:2",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("flag --route: route `*.b.test` is given twice")
            && err.contains("each pattern once"),
        "{err}"
    );
}
