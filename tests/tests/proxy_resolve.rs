//! Upstream names resolved by the proxy, not by the configuration: at
//! start (a name that does not resolve stops it, naming the upstream), and
//! again every `upstream_resolve_interval` while it runs (a name that moved
//! takes new connections to its new address; a failed lookup keeps the old
//! one and is counted).
//!
//! The engine runs in this process, built through the library with a fake
//! resolver ([`uringtls::services::proxy::Resolve`]) whose answer the test
//! switches between two upstreams on `127.0.0.1:0`: no DNS involved. Every
//! wait is on an event: a lookup by the fake (each one signalled on a
//! channel), or a connection arriving at an upstream (its PROXY header).

mod operations_common;

use operations_common::value;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use uringtls::services::proxy::{Proxy, Resolve, ResolveError};
use uringtls::{Engine, SettingsBuilder};
use uringtls_tests::{
    any_cert_client_config, connect_to, echo_upstream, eventually, start_engine, Client,
    EchoUpstream, WAIT,
};

/// The name every test gives its upstream.
const NAME: &str = "backend.test:80";

/// A resolver answering what the test sets (`None`: a failure), and
/// signalling each lookup as it starts.
struct Fake {
    answer: Mutex<Option<SocketAddr>>,
    calls: Mutex<Sender<()>>,
}

impl Resolve for Fake {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        assert_eq!((host, port), ("backend.test", 80), "only names get here");
        let _ = self.calls.lock().expect("lock").send(());
        match *self.answer.lock().expect("lock") {
            Some(a) => Ok(vec![a]),
            None => Err(io::Error::other("fake resolver: no answer")),
        }
    }
}

impl Fake {
    fn new(answer: Option<SocketAddr>) -> (Arc<Fake>, Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        let fake = Fake {
            answer: Mutex::new(answer),
            calls: Mutex::new(tx),
        };
        (Arc::new(fake), rx)
    }
}

/// Sets the fake's answer, then waits until a round of re-resolution has
/// run with it: lookups signalled by now may have read the old answer; of
/// the next two, the first reads the new one and its round is over when
/// the second starts (one name, looked up once per round).
fn switch(fake: &Fake, calls: &Receiver<()>, answer: Option<SocketAddr>) {
    *fake.answer.lock().expect("lock") = answer;
    while calls.try_recv().is_ok() {}
    for _ in 0..2 {
        calls
            .recv_timeout(WAIT)
            .expect("the name is looked up again on the interval");
    }
}

/// A proxy engine in this process to `NAME`, resolved by `fake` every
/// 10ms, sending a PROXY v1 header (so that each upstream reports each
/// connection).
fn engine(fake: Arc<Fake>) -> (Engine, Proxy) {
    let toml = format!(
        "service = \"proxy\"\nupstream = [\"{NAME}\"]\nproxy_protocol = \"v1\"\n\
         upstream_resolve_interval = \"10ms\"\n"
    );
    let settings = SettingsBuilder::from_toml(&toml)
        .expect("toml")
        .listen("127.0.0.1:0")
        .shards(1)
        .build()
        .expect("valid settings");
    let proxy = Proxy::with_resolver(settings.proxy.clone(), fake).expect("resolves");
    let engine = Engine::start(&settings, proxy.clone()).expect("starts");
    (engine, proxy)
}

/// A client connection through the engine that has echoed once.
fn echoed(e: &Engine) -> Client {
    let cfg = any_cert_client_config();
    let mut c = connect_to(e.local_addr(), &cfg, "localhost").expect("connect");
    c.write_all(b"ping").expect("write");
    c.flush().expect("flush");
    let mut back = [0u8; 4];
    c.read_exact(&mut back).expect("echoed");
    assert_eq!(&back, b"ping");
    c
}

/// Whether `up` got a new connection (its PROXY header), waiting for it.
fn arrived(up: &EchoUpstream) -> bool {
    up.headers.recv_timeout(WAIT).is_ok()
}

/// The proxy's per-upstream series, as `/metrics` renders them.
fn metrics(p: &Proxy) -> String {
    let mut reg = prometheus_client::registry::Registry::with_prefix("uringtls");
    reg.register_collector(Box::new(p.metrics()));
    let mut page = String::new();
    prometheus_client::encoding::text::encode(&mut page, &reg).expect("encode");
    page
}

fn of_upstream(page: &str, family: &str) -> f64 {
    value(page, family, &[("pool", "default"), ("upstream", NAME)])
}

/// Stops `e` (its clients closed first: nothing to drain).
fn stop(e: Engine) {
    e.shutdown();
    e.join();
}

#[test]
fn settings_carry_names_unresolved_and_the_proxy_refuses_one_that_does_not_resolve() {
    // Built with a name no resolver knows: the configuration does no DNS.
    let settings = SettingsBuilder::from_toml(&format!(
        "service = \"proxy\"\nupstream = [\"127.0.0.1:9\", \"{NAME}\"]\n"
    ))
    .expect("toml")
    .build()
    .expect("settings build without resolving");
    assert_eq!(settings.proxy.upstreams[1].name, NAME);
    let (fake, calls) = Fake::new(None);
    match Proxy::with_resolver(settings.proxy.clone(), fake) {
        Err(e @ ResolveError::Failed { .. }) => {
            assert_eq!(e.upstream(), NAME);
            assert!(
                e.to_string()
                    .starts_with(&format!("proxy upstream `{NAME}` (in `upstream`) does not resolve: fake resolver: no answer")),
                "{e}"
            );
        }
        other => panic!("expected a resolve failure, got {other:?}"),
    }
    assert!(calls.try_recv().is_ok(), "resolved when the proxy is built");
}

#[test]
fn a_name_that_moves_takes_new_connections_to_its_new_address() {
    let (a, b) = (echo_upstream(true), echo_upstream(true));
    let (fake, calls) = Fake::new(Some(a.addr));
    let (e, proxy) = engine(fake.clone());
    let mut before = echoed(&e);
    assert!(arrived(&a), "went to A");
    switch(&fake, &calls, Some(b.addr));
    let after = echoed(&e);
    assert!(arrived(&b), "a new connection goes to the new address");
    assert!(a.headers.try_recv().is_err(), "and not to the old one");
    // A connection proxied before the move keeps its upstream.
    before.write_all(b"more").expect("write");
    let mut back = [0u8; 4];
    before.read_exact(&mut back).expect("still relayed to A");
    assert_eq!(&back, b"more");
    let page = metrics(&proxy);
    assert_eq!(
        of_upstream(&page, "uringtls_upstream_address_changes_total"),
        1.0,
        "{page}"
    );
    assert_eq!(
        of_upstream(&page, "uringtls_upstream_connects_total"),
        2.0,
        "counters go on across the move: {page}"
    );
    drop((before, after));
    stop(e);
}

#[test]
fn a_failed_re_resolution_keeps_the_old_address_and_is_counted() {
    let a = echo_upstream(true);
    let (fake, calls) = Fake::new(Some(a.addr));
    let (e, proxy) = engine(fake.clone());
    assert_eq!(
        of_upstream(&metrics(&proxy), "uringtls_upstream_resolve_failures_total"),
        0.0
    );
    switch(&fake, &calls, None);
    let c = echoed(&e);
    assert!(arrived(&a), "still goes to the last address");
    let page = metrics(&proxy);
    assert!(
        of_upstream(&page, "uringtls_upstream_resolve_failures_total") >= 1.0,
        "{page}"
    );
    assert_eq!(
        of_upstream(&page, "uringtls_upstream_address_changes_total"),
        0.0,
        "{page}"
    );
    drop(c);
    stop(e);
}

#[test]
fn the_binary_resolves_names_again_on_its_interval_under_the_sandbox() {
    let up = echo_upstream(true);
    let upstream = format!("localhost:{}", up.addr.port());
    let e = start_engine(&[
        "--service",
        "proxy",
        "--shards",
        "1",
        "--proxy-protocol",
        "v1",
        "--upstream",
        &upstream,
        "--upstream-resolve-interval",
        "10ms",
        "--log-level",
        "uringtls=debug",
    ]);
    // Each round logs each name it resolved (debug); two rounds on the
    // `proxy-resolve` thread, sandboxed as the rest of the process (the
    // harness fails the test on any system call the sandbox refused).
    eventually("two rounds of re-resolution", || {
        let err = e.stderr();
        (err.matches("upstream name resolved").count() >= 2).then_some(())
    });
    let cfg = any_cert_client_config();
    let mut c = connect_to(e.addr(), &cfg, "localhost").expect("connect");
    c.write_all(b"ping").expect("write");
    c.flush().expect("flush");
    let mut back = [0u8; 4];
    c.read_exact(&mut back).expect("echoed");
    assert!(arrived(&up), "proxied to the name's address");
    assert!(
        !e.stderr()
            .contains("cannot resolve the upstream name again"),
        "{}",
        e.stderr()
    );
}

#[test]
fn a_reload_that_brings_in_a_name_that_does_not_resolve_is_refused_and_the_proxy_keeps_serving() {
    let up = echo_upstream(true);
    let dir = tempfile::tempdir().expect("tmp");
    let conf = |upstreams: &str| {
        let text =
            format!("service = \"proxy\"\nproxy_protocol = \"v1\"\nupstream = [{upstreams}]\n");
        uringtls_tests::write(dir.path(), "proxy.toml", &text)
    };
    let path = conf(&format!("\"{}\"", up.addr));
    let e = start_engine(&["--shards", "1", "--config", path.to_str().expect("utf8")]);
    // A 64-byte label is refused by the resolver itself: no DNS query leaves.
    let bad = format!("{}.invalid:80", "a".repeat(64));
    conf(&format!("\"{}\", \"{bad}\"", up.addr));
    assert!(!e.reload(1), "refused");
    let out = e.stdout();
    assert!(
        out.contains(&format!(
            "uringtls: reload 1 refused: proxy upstream `{bad}` (in `upstream`) does not resolve"
        )),
        "{out}"
    );
    let cfg = any_cert_client_config();
    let mut c = connect_to(e.addr(), &cfg, "localhost").expect("connect");
    c.write_all(b"ping").expect("write");
    c.flush().expect("flush");
    let mut back = [0u8; 4];
    c.read_exact(&mut back).expect("still proxied");
    assert!(arrived(&up));
}
