//! Soak and capacity runs against a uringtls engine (loopback only).
//!
//! ```text
//! cargo build --release -p uringtls-tests --bins
//! target/release/soak idle  --conns 10000          # N idle TLS connections on one shard
//! target/release/soak churn --duration 180s        # open/use/drop/reset/resume mix
//! ```
//!
//! `idle`: one shard pinned to the last CPU; opens N TLS connections (each
//! completes a handshake and one request), checks every one still answers,
//! and reports the engine's RSS per connection and its fds before, with all
//! open, and after closing them.
//!
//! `churn`: for the given time, worker threads open connections and end
//! them every way a client can: clean close, FIN without `close_notify`,
//! RST before/during the handshake, mid-request, mid-response, garbage,
//! plaintext on the TLS port; half of the healthy ones resume. Warm-up
//! first (so caches reach their bounds), then baseline RSS and fds; at the
//! end, once every connection is closed, RSS and fds must be back within a
//! small bound, no service panicked, every shard answered, and every
//! healthy exchange got its answer. Exit status 1 otherwise.
//!
//! Figures go to stdout, one JSON object last. The engine binary defaults
//! to `uringtls-under-test` next to this one (`--engine PATH` to change).

use rustls::pki_types::ServerName;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uringtls_tests::{client_config, read_response, test_certs, TestCerts, WAIT};

/// Bounds the churn run enforces.
const MAX_FD_GROWTH: i64 = 4;
const MAX_RSS_GROWTH_KIB: i64 = 16 * 1024;

struct Args {
    mode: String,
    conns: usize,
    duration: Duration,
    workers: usize,
    shards: usize,
    engine: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or("usage: soak idle|churn [options]")?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut a = Args {
        mode,
        conns: 10_000,
        duration: Duration::from_secs(180),
        workers: 8,
        shards: 2,
        engine: exe.with_file_name("uringtls-under-test"),
    };
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {v}: {e}");
        match flag.as_str() {
            "--conns" => a.conns = v.parse().map_err(|e| bad(&e))?,
            "--duration" => a.duration = parse_secs(&v).map_err(|e| bad(&e))?,
            "--workers" => a.workers = v.parse().map_err(|e| bad(&e))?,
            "--shards" => a.shards = v.parse().map_err(|e| bad(&e))?,
            "--engine" => a.engine = PathBuf::from(&v),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(a)
}

fn parse_secs(s: &str) -> Result<Duration, std::num::ParseIntError> {
    let n = s.trim_end_matches('s').parse()?;
    Ok(Duration::from_secs(n))
}

/// A running engine: its process, TLS address and metrics address.
struct Engine {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_engine(bin: &PathBuf, args: &[String]) -> Result<Engine, String> {
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e} (build with --bins)", bin.display()))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut metrics = None;
    for line in BufReader::new(out).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if let Some(m) = line.strip_prefix("uringtls: metrics at http://") {
            metrics = m.trim_end_matches("/metrics").parse().ok();
        }
        if let Some(rest) = line.strip_prefix("uringtls: serving ") {
            let url = rest.split("https://").nth(1).ok_or("bad ready line")?;
            let addr = url.split('/').next().and_then(|a| a.parse().ok());
            let addr = addr.ok_or("bad ready address")?;
            let metrics = metrics.ok_or("no metrics line before the ready line")?;
            return Ok(Engine {
                child,
                addr,
                metrics,
            });
        }
    }
    Err("engine exited before it was ready".into())
}

/// Engine resources at one moment.
#[derive(Debug, Clone, Copy)]
struct Usage {
    rss_kib: i64,
    fds: i64,
}

fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(-1);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(-1, |d| d.count() as i64);
    Usage { rss_kib, fds }
}

fn scrape(addr: SocketAddr) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(WAIT));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

/// Sum of a metric over all its label sets.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Shards that appear in the scrape with at least one accepted connection.
fn live_shards(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("uringtls_connections_accepted_total{"))
        .filter(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) > Some(0.0))
        .count()
}

/// Polls the metrics until `connections_active` is `want` (bounded).
fn wait_active(e: &Engine, want: f64, limit: Duration) -> Result<(), String> {
    let end = Instant::now() + limit;
    loop {
        let now = metric_sum(&scrape(e.metrics), "uringtls_connections_active");
        if now == want {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(format!("connections_active stayed {now}, expected {want}"));
        }
        // Metrics have no change notification; poll.
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Makes the next close of `s` send RST instead of FIN.
fn set_linger_zero(s: &TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized `linger` value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

type Client = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> std::io::Result<Client> {
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(WAIT))?;
    sock.set_write_timeout(Some(WAIT))?;
    let name = ServerName::try_from("localhost").map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

fn get(c: &mut Client) -> std::io::Result<()> {
    c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    c.flush()?;
    let (status, _, _) = read_response(c)?;
    if status != "HTTP/1.1 200 OK" {
        return Err(std::io::Error::other(status));
    }
    Ok(())
}

fn idle(a: &Args) -> Result<bool, String> {
    raise_nofile(a.conns as u64 * 2 + 1024);
    let certs = test_certs();
    let cpu = uringtls::__private::available_cpus()
        .last()
        .copied()
        .unwrap_or(0);
    let e = start_engine(&a.engine, &engine_args(&certs, 1, Some(cpu), &[]))?;
    let cfg = client_config(&certs.ca_der, &[&rustls::version::TLS13]);
    let pid = e.child.id();
    get(&mut connect(e.addr, &cfg).map_err(|x| x.to_string())?).map_err(|x| x.to_string())?;
    wait_active(&e, 0.0, WAIT)?;
    let before = usage(pid);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(a.conns);
    for i in 0..a.conns {
        let mut c = connect(e.addr, &cfg).map_err(|x| format!("connection {i}: {x}"))?;
        get(&mut c).map_err(|x| format!("connection {i}: {x}"))?;
        conns.push(c);
        if (i + 1) % 2000 == 0 {
            println!("opened {} in {:.1?}", i + 1, started.elapsed());
        }
    }
    wait_active(&e, a.conns as f64, WAIT)?;
    let open = usage(pid);
    let mut answered = 0;
    for c in &mut conns {
        answered += usize::from(get(c).is_ok());
    }
    drop(conns);
    wait_active(&e, 0.0, WAIT)?;
    let after = usage(pid);
    let per_conn = (open.rss_kib - before.rss_kib) as f64 / a.conns as f64;
    let ok = answered == a.conns;
    println!(
        "idle: {} connections on one shard (CPU {cpu}); all answered again: {answered}/{}\n\
         RSS {} KiB -> {} KiB with all open -> {} KiB after close; {per_conn:.1} KiB per connection\n\
         fds {} -> {} -> {}",
        a.conns, a.conns, before.rss_kib, open.rss_kib, after.rss_kib, before.fds, open.fds, after.fds
    );
    println!(
        "{{\"mode\":\"idle\",\"conns\":{},\"answered\":{answered},\"rss_kib_before\":{},\"rss_kib_open\":{},\"rss_kib_after\":{},\"rss_kib_per_conn\":{per_conn:.2},\"fds_before\":{},\"fds_open\":{},\"fds_after\":{},\"ok\":{ok}}}",
        a.conns, before.rss_kib, open.rss_kib, after.rss_kib, before.fds, open.fds, after.fds
    );
    Ok(ok)
}

fn engine_args(
    certs: &TestCerts,
    shards: usize,
    cpu: Option<usize>,
    extra: &[&str],
) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--shards".into(),
        shards.to_string(),
        "--cert".into(),
        certs.cert.display().to_string(),
        "--key".into(),
        certs.key.display().to_string(),
        "--idle-timeout".into(),
        "1h".into(),
    ];
    if let Some(c) = cpu {
        v.extend(["--cpus".into(), c.to_string()]);
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// The ways a churn client ends a connection.
const ACTIONS: [&str; 8] = [
    "clean_close",
    "resumed_fin",
    "rst_after_request",
    "rst_mid_handshake",
    "rst_mid_request",
    "rst_mid_response",
    "garbage",
    "plaintext",
];

struct Churn {
    addr: SocketAddr,
    full: Arc<rustls::ClientConfig>,
    resume: Arc<rustls::ClientConfig>,
    hello: Vec<u8>,
    done: Vec<AtomicU64>,
    unexpected: AtomicU64,
}

impl Churn {
    fn run_one(&self, action: usize) -> std::io::Result<()> {
        match ACTIONS[action] {
            "clean_close" => {
                let mut c = connect(self.addr, &self.full)?;
                get(&mut c)?;
                get(&mut c)?;
                c.conn.send_close_notify();
                c.flush()
            }
            "resumed_fin" => get(&mut connect(self.addr, &self.resume)?),
            "rst_after_request" => {
                let mut c = connect(self.addr, &self.resume)?;
                get(&mut c)?;
                set_linger_zero(&c.sock);
                Ok(())
            }
            "rst_mid_handshake" => {
                let mut s = TcpStream::connect(self.addr)?;
                s.write_all(&self.hello[..self.hello.len() / 2])?;
                set_linger_zero(&s);
                Ok(())
            }
            "rst_mid_request" => {
                let mut c = connect(self.addr, &self.resume)?;
                c.write_all(b"GET / HTTP/1.1\r\nHost: loc")?;
                c.flush()?;
                set_linger_zero(&c.sock);
                Ok(())
            }
            "rst_mid_response" => {
                let mut c = connect(self.addr, &self.resume)?;
                c.write_all(b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")?;
                c.flush()?;
                let mut buf = [0u8; 100];
                c.read_exact(&mut buf)?;
                set_linger_zero(&c.sock);
                Ok(())
            }
            "garbage" => expect_close(self.addr, &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]),
            _ => expect_close(self.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        }
    }
}

/// Sends `bytes` and expects the server to close (alert, FIN or RST).
fn expect_close(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(WAIT))?;
    s.write_all(bytes)?;
    let mut sink = Vec::new();
    match s.read_to_end(&mut sink) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        Err(e) => Err(e),
    }
}

fn churn_for(c: &Churn, workers: usize, dur: Duration) {
    let end = Instant::now() + dur;
    std::thread::scope(|s| {
        for w in 0..workers {
            s.spawn(move || {
                let mut x = 0x9E37_79B9u32 ^ (w as u32 + 1);
                while Instant::now() < end {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let action = x as usize % ACTIONS.len();
                    if let Err(e) = c.run_one(action) {
                        if c.unexpected.fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("churn: {}: {e}", ACTIONS[action]);
                        }
                    }
                    c.done[action].fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
}

fn churn(a: &Args) -> Result<bool, String> {
    raise_nofile(65_536);
    let certs = test_certs();
    // A small session cache fills during warm-up, so growth after it is a leak.
    let extra = ["--session-cache", "1024", "--body-size", "16384"];
    let e = start_engine(&a.engine, &engine_args(&certs, a.shards, None, &extra))?;
    let resume = client_config(
        &certs.ca_der,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
    );
    let mut full = (*resume).clone();
    full.resumption = rustls::client::Resumption::disabled();
    let mut hello = Vec::new();
    let name = ServerName::try_from("localhost").map_err(|x| x.to_string())?;
    rustls::ClientConnection::new(resume.clone(), name)
        .map_err(|x| x.to_string())?
        .write_tls(&mut hello)
        .map_err(|x| x.to_string())?;
    let c = Churn {
        addr: e.addr,
        full: Arc::new(full),
        resume,
        hello,
        done: ACTIONS.iter().map(|_| AtomicU64::new(0)).collect(),
        unexpected: AtomicU64::new(0),
    };
    let pid = e.child.id();
    let warm = (a.duration / 6).max(Duration::from_secs(5));
    churn_for(&c, a.workers, warm);
    wait_active(&e, 0.0, WAIT)?;
    let base = usage(pid);
    c.unexpected.store(0, Ordering::Relaxed);
    c.done.iter().for_each(|d| d.store(0, Ordering::Relaxed));
    let started = Instant::now();
    churn_for(&c, a.workers, a.duration);
    let elapsed = started.elapsed();
    wait_active(&e, 0.0, WAIT)?;
    let end = usage(pid);
    let text = scrape(e.metrics);
    let panics = metric_sum(&text, "uringtls_service_panics_total");
    let shards = live_shards(&text);
    let unexpected = c.unexpected.load(Ordering::Relaxed);
    let ops: Vec<u64> = c.done.iter().map(|d| d.load(Ordering::Relaxed)).collect();
    let total: u64 = ops.iter().sum();
    let (d_rss, d_fds) = (end.rss_kib - base.rss_kib, end.fds - base.fds);
    let ok = panics == 0.0
        && unexpected == 0
        && shards == a.shards
        && d_fds <= MAX_FD_GROWTH
        && d_rss <= MAX_RSS_GROWTH_KIB;
    println!(
        "churn: {total} connections in {elapsed:.0?} ({:.0}/s), {} workers, {} shards",
        total as f64 / elapsed.as_secs_f64(),
        a.workers,
        a.shards
    );
    for (name, n) in ACTIONS.iter().zip(&ops) {
        println!("  {name:>18}: {n}");
    }
    println!(
        "RSS {} -> {} KiB ({d_rss:+} KiB, bound {MAX_RSS_GROWTH_KIB}); fds {} -> {} ({d_fds:+}, bound {MAX_FD_GROWTH}); \
         panics {panics}; unexpected failures {unexpected}; shards alive {shards}/{}",
        base.rss_kib, end.rss_kib, base.fds, end.fds, a.shards
    );
    println!(
        "{{\"mode\":\"churn\",\"seconds\":{},\"connections\":{total},\"rss_kib_base\":{},\"rss_kib_end\":{},\"fds_base\":{},\"fds_end\":{},\"panics\":{panics},\"unexpected\":{unexpected},\"shards_alive\":{shards},\"ok\":{ok}}}",
        elapsed.as_secs(), base.rss_kib, end.rss_kib, base.fds, end.fds
    );
    Ok(ok)
}

fn main() -> std::process::ExitCode {
    let result = parse_args().and_then(|a| match a.mode.as_str() {
        "idle" => idle(&a),
        "churn" => churn(&a),
        m => Err(format!("unknown mode {m} (idle or churn)")),
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("soak: FAILED (see the figures above)");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("soak: error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
