//! Admission limits at accept: per-address cap and rate, allow/deny lists.
//! One shard, so the per-shard per-address limits are exact.

mod operations_common;

use operations_common::{close, eventually, get, metrics_addr, scrape, tls_from, value, Setup};
use uringtls_tests::start_engine;

#[test]
fn per_ip_cap_refuses_the_next_connection_from_that_address_while_another_address_gets_in() {
    let s = Setup::new();
    let e = start_engine(&s.args(&[
        "--shards",
        "1",
        "--max-conns-per-ip",
        "2",
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    let mut a = tls_from("127.0.0.1", e.addr(), &s.client).expect("1st from .1");
    let b = tls_from("127.0.0.1", e.addr(), &s.client).expect("2nd from .1");
    assert!(
        tls_from("127.0.0.1", e.addr(), &s.client).is_err(),
        "3rd from .1 must be refused"
    );
    let mut other = tls_from("127.0.0.2", e.addr(), &s.client).expect("127.0.0.2 still gets in");
    assert!(get(&mut other).expect("served").contains("200"));
    assert!(
        get(&mut a).expect("served").contains("200"),
        "admitted connections keep working"
    );
    let text = scrape(metrics_addr(&e));
    assert_eq!(
        value(
            &text,
            "uringtls_connections_refused_total",
            &[("limit", "per_ip_conns")]
        ),
        1.0
    );

    // Once one closes (and the engine has seen it), .1 gets in again.
    close(b);
    eventually("the close to be counted", || {
        let t = scrape(metrics_addr(&e));
        (value(&t, "uringtls_connections_closed_total", &[]) >= 1.0).then_some(())
    });
    let mut again = tls_from("127.0.0.1", e.addr(), &s.client).expect("room again after a close");
    assert!(get(&mut again).expect("served").contains("200"));
}

#[test]
fn deny_list_refuses_its_networks_and_admits_others() {
    let s = Setup::new();
    let e = start_engine(&s.args(&["--shards", "1", "--deny", "127.0.0.2/32,10.0.0.0/8"]));
    assert!(
        tls_from("127.0.0.2", e.addr(), &s.client).is_err(),
        "denied"
    );
    let mut ok = tls_from("127.0.0.1", e.addr(), &s.client).expect("not denied");
    assert!(get(&mut ok).expect("served").contains("200"));
}

#[test]
fn allow_list_admits_only_its_networks() {
    let s = Setup::new();
    let e = start_engine(&s.args(&["--shards", "1", "--allow", "127.0.0.2"]));
    assert!(
        tls_from("127.0.0.1", e.addr(), &s.client).is_err(),
        "not in the allow list"
    );
    let mut ok = tls_from("127.0.0.2", e.addr(), &s.client).expect("allowed");
    assert!(get(&mut ok).expect("served").contains("200"));
}

#[test]
fn per_ip_rate_limit_refuses_past_the_burst_and_counts_it() {
    let s = Setup::new();
    // One new connection per 100 s after a burst of 3: no clock races.
    let e = start_engine(&s.args(&[
        "--shards",
        "1",
        "--conn-rate-per-ip",
        "0.01",
        "--conn-burst-per-ip",
        "3",
        "--metrics-listen",
        "127.0.0.1:0",
    ]));
    for i in 0..3 {
        let c = tls_from("127.0.0.1", e.addr(), &s.client)
            .unwrap_or_else(|err| panic!("burst {i}: {err}"));
        close(c);
    }
    assert!(
        tls_from("127.0.0.1", e.addr(), &s.client).is_err(),
        "past the burst"
    );
    assert!(
        tls_from("127.0.0.2", e.addr(), &s.client).is_ok(),
        "another address has its own budget"
    );
    let text = scrape(metrics_addr(&e));
    assert_eq!(
        value(
            &text,
            "uringtls_connections_refused_total",
            &[("limit", "per_ip_rate")]
        ),
        1.0
    );
}

#[test]
fn global_cap_refuses_over_all_shards() {
    let s = Setup::new();
    let e = start_engine(&s.args(&["--shards", "2", "--max-conns-total", "2"]));
    let _a = tls_from("127.0.0.1", e.addr(), &s.client).expect("1st");
    let _b = tls_from("127.0.0.1", e.addr(), &s.client).expect("2nd");
    for _ in 0..4 {
        assert!(
            tls_from("127.0.0.1", e.addr(), &s.client).is_err(),
            "over the global cap, whichever shard"
        );
    }
}

#[test]
fn bad_cidr_is_refused_before_binding_with_the_flag_named() {
    let (code, err) = uringtls_tests::engine_fails(&["--deny", "10.0.0.1/8"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("flag --deny") && err.contains("did you mean 10.0.0.0/8"),
        "{err}"
    );
}

#[test]
fn deny_list_changes_take_effect_on_reload() {
    let s = Setup::new();
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = uringtls_tests::write(dir.path(), "u.toml", "deny = []\n");
    let e = start_engine(&s.args(&["--shards", "1", "--config", cfg.to_str().expect("utf8")]));
    assert!(
        tls_from("127.0.0.2", e.addr(), &s.client).is_ok(),
        "not denied yet"
    );
    uringtls_tests::write(dir.path(), "u.toml", "deny = [\"127.0.0.2/32\"]\n");
    assert!(e.reload(1), "reload applied: {}", e.stdout());
    assert!(
        tls_from("127.0.0.2", e.addr(), &s.client).is_err(),
        "denied after the reload"
    );
    assert!(tls_from("127.0.0.1", e.addr(), &s.client).is_ok());
}

#[test]
fn ipv6_clients_are_matched_by_ipv6_blocks() {
    let s = Setup::new();
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        assert!(!uringtls_tests::in_ci(), "CI has IPv6 loopback");
        eprintln!("skipping: no IPv6 loopback");
        return;
    }
    let denied =
        start_engine(&s.args(&["--shards", "1", "--listen", "[::1]:0", "--deny", "::1/128"]));
    assert!(
        uringtls_tests::connect(denied.addr(), &s.client).is_err(),
        "::1 denied"
    );
    let other = start_engine(&s.args(&[
        "--shards",
        "1",
        "--listen",
        "[::1]:0",
        "--deny",
        "2001:db8::/32,127.0.0.0/8",
    ]));
    let mut c = uringtls_tests::connect(other.addr(), &s.client).expect("::1 not in the deny list");
    assert!(get(&mut c).expect("served").contains("200"));
}
