//! Several listeners in one process (`[[listener]]` tables): each with its
//! own address, service, certificate and limits, every one served by every
//! shard; bad tables refused before anything is bound; SIGHUP reloads each
//! listener's settings, refusing a bad one or a changed set of addresses.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use uringtls_tests::{
    client_config, closed_port, connect, connect_to, echo_upstream, engine_fails, eventually,
    read_response, set_mode, start_engine, test_certs, test_certs_for, write, EngineProc,
    TestCerts,
};

/// Connections per listener: all on one of two shards by the kernel's
/// hash has a chance of 2^-23.
const CONNS: usize = 24;

fn path(p: &Path) -> &str {
    p.to_str().expect("utf8")
}

/// A config file whose one `[[listener]]` table (listener[0]) serves echo
/// with `b`'s certificate on 127.0.0.1:0, plus `extra` lines in the table.
fn echo_listener_config(dir: &Path, b: &TestCerts, extra: &str) -> std::path::PathBuf {
    write(
        dir,
        "uringtls.toml",
        &format!(
            "[[listener]]\nlisten = \"127.0.0.1:0\"\nservice = \"echo\"\n\
             cert = \"{}\"\nkey = \"{}\"\n{extra}",
            path(&b.cert),
            path(&b.key)
        ),
    )
}

/// Starts the engine: the top level (the harness's `--listen
/// 127.0.0.1:0`) serves http with `a`'s certificate; the file's tables
/// add the rest. Returns it and listener[0]'s address.
fn start(cfg: &Path, a: &TestCerts, shards: &str) -> (EngineProc, SocketAddr) {
    start_serving(cfg, a, shards, "echo", &[])
}

/// [`start`], listener[0] serving `service`.
fn start_serving(
    cfg: &Path,
    a: &TestCerts,
    shards: &str,
    service: &str,
    extra: &[&str],
) -> (EngineProc, SocketAddr) {
    let mut args = vec![
        "--config",
        path(cfg),
        "--shards",
        shards,
        "--cert",
        path(&a.cert),
        "--key",
        path(&a.key),
    ];
    args.extend_from_slice(extra);
    let e = start_engine(&args);
    let out = e.wait_for_stdout("(listener[0])");
    let prefix = format!("uringtls: serving {service} at https://");
    let line = out
        .lines()
        .find(|l| l.starts_with(&prefix) && l.contains("(listener[0])"))
        .unwrap_or_else(|| panic!("no line for listener[0]:\n{out}"));
    let addr = line[prefix.len()..]
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line}"));
    assert!(
        out.contains(&format!("uringtls: serving http at https://{}/", e.addr())),
        "{out}"
    );
    (e, addr)
}

/// One GET on the http listener, trusting only `a`'s CA.
fn http_ok(addr: SocketAddr, a: &TestCerts) -> bool {
    let cfg = client_config(&a.ca_der, &[&rustls::version::TLS13]);
    let Ok(mut c) = connect(addr, &cfg) else {
        return false;
    };
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    c.flush().expect("flush");
    read_response(&mut c).is_ok_and(|r| r.0 == "HTTP/1.1 200 OK")
}

/// One echo on the echo listener, trusting only `b`'s CA, name `b.test`.
fn echo_ok(addr: SocketAddr, b: &TestCerts) -> bool {
    let cfg = client_config(&b.ca_der, &[&rustls::version::TLS13]);
    let Ok(mut c) = connect_to(addr, &cfg, "b.test") else {
        return false;
    };
    if c.write_all(b"ping\n").and_then(|()| c.flush()).is_err() {
        return false;
    }
    let mut got = [0u8; 5];
    c.read_exact(&mut got).is_ok() && &got == b"ping\n"
}

/// The `listener stopped` log line of `listener` on `shard`, and its count.
fn accepted(log: &str, shard: usize, listener: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| {
            l.contains("listener stopped")
                && l.contains(&format!("shard={shard} "))
                && l.contains(&format!("listener={listener} "))
        })
        .unwrap_or_else(|| panic!("no stop line for {listener} on shard {shard}:\n{log}"));
    line.split("accepted=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line}"))
}

/// GET /metrics from the engine's metrics endpoint.
fn scrape(e: &EngineProc) -> String {
    let out = e.stdout();
    let addr = out
        .lines()
        .find_map(|l| l.strip_prefix("uringtls: metrics at http://"))
        .and_then(|a| a.trim_end_matches("/metrics").parse::<SocketAddr>().ok())
        .unwrap_or_else(|| panic!("no metrics line:\n{out}"));
    let mut s = std::net::TcpStream::connect(addr).expect("connect metrics");
    s.set_read_timeout(Some(uringtls_tests::WAIT))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read metrics");
    text
}

fn sockets_on(port: u16) -> usize {
    let out = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn two_listeners_with_their_own_services_and_certificates_are_served_by_every_shard() {
    let a = test_certs();
    let b = test_certs_for(&["b.test"]);
    // The file apart from both certificates: the sandbox must let the
    // engine read listener[0]'s own files.
    let conf_dir = tempfile::tempdir().expect("tmp");
    let cfg = echo_listener_config(conf_dir.path(), &b, "");
    let metrics = ["--metrics-listen", "127.0.0.1:0"];
    let (mut e, echo) = start_serving(&cfg, &a, "2", "echo", &metrics);
    let http = e.addr();
    assert_ne!(http, echo);
    assert_eq!(sockets_on(http.port()), 2, "one socket per shard");
    assert_eq!(sockets_on(echo.port()), 2, "one socket per shard");
    for _ in 0..CONNS {
        assert!(http_ok(http, &a), "http on the top-level listener");
        assert!(echo_ok(echo, &b), "echo on listener[0]");
    }
    // Each listener presents its own certificate only.
    assert!(
        !echo_ok(http, &b),
        "the http listener served b's certificate"
    );
    assert!(
        !http_ok(echo, &a),
        "the echo listener served a's certificate"
    );
    let text = scrape(&e);
    for shard in 0..2 {
        for (listener, addr) in [("top level", http), ("listener[0]", echo)] {
            let series = format!(
                "uringtls_listener_connections_accepted_total{{shard=\"{shard}\",\
                 listener=\"{listener}\",addr=\"{addr}\"}} "
            );
            let n: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix(&series))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {series}in:\n{text}"));
            assert!(n > 0, "shard {shard} accepted nothing on {listener}");
        }
    }
    assert!(e.stop().success());
    let log = e.stderr();
    for shard in 0..2 {
        for listener in ["top level", "listener[0]"] {
            assert!(
                accepted(&log, shard, listener) > 0,
                "shard {shard} served nothing on {listener}:\n{log}"
            );
        }
    }
}

#[test]
fn two_listeners_on_one_address_are_refused_before_anything_is_bound() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write(
        dir.path(),
        "dup.toml",
        "[[listener]]\nlisten = \"127.0.0.1:9\"\n\
         [[listener]]\nlisten = \"127.0.0.1:9\"\nservice = \"echo\"\n",
    );
    let (code, err) = engine_fails(&["--config", path(&cfg)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}: listener[0] and listener[1]: both listen on 127.0.0.1:9",
            cfg.display()
        )) && err.contains("give each listener an address of its own"),
        "{err}"
    );
}

#[test]
fn a_bad_field_in_the_second_listener_names_the_file_and_the_table() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = write(
        dir.path(),
        "bad.toml",
        "[[listener]]\nlisten = \"127.0.0.1:0\"\n\
         [[listener]]\nlisten = \"127.0.0.1:0\"\nservice = \"proxy\"\nupstream = [\"nohostport\"]\n",
    );
    let (code, err) = engine_fails(&["--config", path(&cfg)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}: field `listener[1].upstream`: `nohostport` is not HOST:PORT",
            cfg.display()
        )),
        "{err}"
    );
}

#[test]
fn sighup_reloads_a_listeners_own_settings_and_refuses_a_bad_one_or_a_moved_listener() {
    let a = test_certs();
    let b = test_certs_for(&["b.test"]);
    let dir = b.dir.path();
    let cfg = echo_listener_config(dir, &b, "");
    let (e, echo) = start(&cfg, &a, "2");
    let http = e.addr();
    assert!(echo_ok(echo, &b) && http_ok(http, &a));

    // listener[0] refuses loopback clients; the top level is untouched.
    echo_listener_config(dir, &b, "deny = [\"127.0.0.0/8\"]\n");
    assert!(e.reload(1), "{}", e.stdout());
    assert!(!echo_ok(echo, &b), "listener[0]'s deny list did not apply");
    assert!(
        http_ok(http, &a),
        "the top level caught listener[0]'s deny list"
    );

    // A broken certificate for listener[0]: refused whole, naming it.
    let broken = write(dir, "broken.pem", "not a certificate\n");
    std::fs::write(
        &cfg,
        format!(
            "[[listener]]\nlisten = \"127.0.0.1:0\"\nservice = \"echo\"\n\
             cert = \"{}\"\nkey = \"{}\"\n",
            path(&broken),
            path(&b.key)
        ),
    )
    .expect("write");
    assert!(!e.reload(2));
    let out = e.stdout();
    assert!(
        out.contains("uringtls: reload 2 refused: listener[0]:") && out.contains("broken.pem"),
        "{out}"
    );
    assert!(
        !echo_ok(echo, &b),
        "the refused reload lifted the deny list"
    );
    assert!(http_ok(http, &a));

    // A moved listener needs a restart.
    std::fs::write(
        &cfg,
        format!(
            "[[listener]]\nlisten = \"127.0.0.1:1\"\nservice = \"echo\"\n\
             cert = \"{}\"\nkey = \"{}\"\n",
            path(&b.cert),
            path(&b.key)
        ),
    )
    .expect("write");
    assert!(!e.reload(3));
    let out = e.stdout();
    assert!(
        out.contains("uringtls: reload 3 refused: listeners: the set of listeners changed")
            && out.contains("needs a restart"),
        "{out}"
    );

    // The deny list removed: listener[0] serves again.
    echo_listener_config(dir, &b, "");
    assert!(e.reload(4), "{}", e.stdout());
    assert!(echo_ok(echo, &b) && http_ok(http, &a));
}

/// An echo through listener[0]'s proxy, trusting `a`'s CA (the listener
/// inherits the top level's certificate).
fn proxied_echo_ok(addr: SocketAddr, a: &TestCerts) -> bool {
    let cfg = client_config(&a.ca_der, &[&rustls::version::TLS13]);
    let Ok(mut c) = connect(addr, &cfg) else {
        return false;
    };
    if c.write_all(b"ping\n").and_then(|()| c.flush()).is_err() {
        return false;
    }
    let mut got = [0u8; 5];
    c.read_exact(&mut got).is_ok() && &got == b"ping\n"
}

#[test]
fn a_reload_swaps_the_upstreams_of_a_proxy_listener_only() {
    let a = test_certs();
    let dir = tempfile::tempdir().expect("tmp");
    let table = |up: SocketAddr| {
        format!(
            "[[listener]]\nlisten = \"127.0.0.1:0\"\nservice = \"proxy\"\nupstream = [\"{up}\"]\n"
        )
    };
    let cfg = write(dir.path(), "uringtls.toml", &table(closed_port()));
    let (e, proxy) = start_serving(&cfg, &a, "2", "proxy", &[]);
    assert!(
        !proxied_echo_ok(proxy, &a),
        "the upstream is down: a clean close"
    );
    assert!(http_ok(e.addr(), &a), "the top level serves http");
    let up = echo_upstream(false);
    std::fs::write(&cfg, table(up.addr)).expect("write");
    assert!(e.reload(1), "{}", e.stdout());
    assert!(
        proxied_echo_ok(proxy, &a),
        "listener[0] did not get its new upstream"
    );
    assert!(http_ok(e.addr(), &a));
}

#[test]
fn a_listeners_own_certificate_changed_on_disk_is_picked_up_by_the_file_watcher() {
    let a = test_certs();
    let b = test_certs_for(&["b.test"]);
    let cfg = echo_listener_config(b.dir.path(), &b, "");
    let (e, echo) = start_serving(&cfg, &a, "1", "echo", &["--watch-files", "true"]);
    assert!(echo_ok(echo, &b));
    // A new certificate for the same name from another CA, renamed over
    // listener[0]'s files (key first: a reload between the two renames is
    // refused, the next one applied).
    let c = test_certs_for(&["b.test"]);
    assert!(!echo_ok(echo, &c));
    let dir = b.dir.path();
    std::fs::copy(&c.key, dir.join("key.new")).expect("copy key");
    set_mode(&dir.join("key.new"), 0o600);
    std::fs::copy(&c.cert, dir.join("cert.new")).expect("copy cert");
    std::fs::rename(dir.join("key.new"), &b.key).expect("rename key");
    std::fs::rename(dir.join("cert.new"), &b.cert).expect("rename cert");
    e.wait_for_stdout(" applied");
    eventually("listener[0] serving the new certificate", || {
        echo_ok(echo, &c).then_some(())
    });
    assert!(http_ok(e.addr(), &a), "the top level keeps its certificate");
}

#[test]
fn a_listeners_own_key_readable_by_others_is_refused_at_start() {
    let a = test_certs();
    let b = test_certs_for(&["b.test"]);
    set_mode(&b.key, 0o644);
    let cfg = echo_listener_config(b.dir.path(), &b, "");
    let (code, err) = engine_fails(&[
        "--config",
        path(&cfg),
        "--cert",
        path(&a.cert),
        "--key",
        path(&a.key),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "{}: private key is readable by group or others",
            b.key.display()
        )),
        "{err}"
    );
}

#[test]
fn an_upgrade_takes_over_every_listener_and_the_new_process_warns_for_each_shared_address() {
    let a = test_certs();
    let b = test_certs_for(&["b.test"]);
    let cfg = echo_listener_config(b.dir.path(), &b, "");
    let (mut old, echo) = start(&cfg, &a, "1");
    let http = old.addr();
    // The new process: the same listeners, now at their real ports.
    let dir = tempfile::tempdir().expect("tmp");
    let cfg2 = write(
        dir.path(),
        "new.toml",
        &format!(
            "[[listener]]\nlisten = \"{echo}\"\nservice = \"echo\"\n\
             cert = \"{}\"\nkey = \"{}\"\n",
            path(&b.cert),
            path(&b.key)
        ),
    );
    let new = start_engine(&[
        "--config",
        path(&cfg2),
        "--shards",
        "1",
        "--listen",
        &http.to_string(),
        "--cert",
        path(&a.cert),
        "--key",
        path(&a.key),
    ]);
    for addr in [http, echo] {
        new.wait_for_stderr(&format!("another socket already listens on {addr}"));
    }
    assert!(old.stop().success(), "the old process drains and exits");
    for _ in 0..CONNS {
        assert!(http_ok(http, &a), "the new process serves the top level");
        assert!(echo_ok(echo, &b), "the new process serves listener[0]");
    }
}

#[test]
fn a_reload_that_changes_a_listeners_http_settings_warns_they_wait_for_a_restart() {
    let a = test_certs();
    let dir = tempfile::tempdir().expect("tmp");
    let table = |body: u32| {
        format!("[[listener]]\nlisten = \"127.0.0.1:0\"\nservice = \"http\"\nbody_size = {body}\n")
    };
    let cfg = write(dir.path(), "uringtls.toml", &table(10));
    let (e, _) = start_serving(&cfg, &a, "1", "http", &[]);
    std::fs::write(&cfg, table(20)).expect("write");
    assert!(e.reload(1), "{}", e.stdout());
    let log = e.wait_for_stderr("only takes effect at restart");
    assert!(
        log.lines()
            .any(|l| l.contains("only takes effect at restart")
                && l.contains("listener[0]")
                && l.contains("body_size/max_header")),
        "{log}"
    );
}
