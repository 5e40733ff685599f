//! Deferred accept (`--defer-accept`, on by default): the kernel hands a
//! connection to the engine only once its first bytes have arrived, so a
//! peer that completes the TCP handshake and says nothing is never
//! accepted (no descriptor, no task), while TLS clients, which speak
//! first, are served as before. With `--defer-accept 0` the TCP handshake
//! alone gets a connection accepted.
//!
//! The silent peer connects before the TLS client, so without deferral it
//! sits ahead of it in the accept queue: by the time the TLS client has its
//! response, the engine has accepted both.

mod operations_common;

use operations_common::{close, get, metrics_addr, scrape, tcp_from, tls_from, value, Setup};
use uringtls_tests::start_engine;

/// Connections the engine accepted after one silent TCP peer and one TLS
/// client that got its response.
fn accepted_with_a_silent_peer(extra: &[&str]) -> f64 {
    let s = Setup::new();
    let mut args = vec!["--shards", "1", "--metrics-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let e = start_engine(&s.args(&args));
    // connect() returns once the kernel completed the TCP handshake.
    let silent = tcp_from("127.0.0.1", e.addr()).expect("tcp connect");
    let mut c = tls_from("127.0.0.1", e.addr(), &s.client).expect("tls client");
    assert!(get(&mut c).expect("served").contains("200"));
    let text = scrape(metrics_addr(&e));
    let n = value(&text, "uringtls_connections_accepted_total", &[]);
    close(c);
    drop(silent);
    n
}

#[test]
fn by_default_a_peer_that_has_sent_nothing_is_not_accepted() {
    assert_eq!(accepted_with_a_silent_peer(&[]), 1.0);
}

#[test]
fn with_defer_accept_0_the_tcp_handshake_alone_is_accepted() {
    assert_eq!(accepted_with_a_silent_peer(&["--defer-accept", "0"]), 2.0);
}
