//! The `/metrics` endpoint: a plain std thread accepting connections, and
//! one short-lived thread per connection answering one HTTP/1.x request
//! (`GET` or `HEAD`), so that a slow or silent client never delays another
//! scrape. A client gets [`CLIENT_DEADLINE`] in all to send its request
//! (a trickle does not extend it), and each write of the answer as long;
//! at most [`MAX_CLIENTS`] are served at once (more are closed at once).
//! Bind it to a loopback or management address: it is plain HTTP without
//! authentication.
//!
//! The format follows the `Accept` header ([`Format::negotiate`]):
//! OpenMetrics when the scraper prefers it, the Prometheus text format
//! 0.0.4 otherwise.

use super::export::{render_as_with, Format};
use super::hub::{MetricsHub, SCRAPE_WAIT};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time a scraper has, in all, to send its request line and headers; also
/// the limit of each write of the answer.
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(3);
/// Connections served at once; more are closed as they come.
pub const MAX_CLIENTS: usize = 64;
const MAX_REQUEST: usize = 8 * 1024;
/// Stack of a connection's thread (rendering a page needs little).
const CLIENT_STACK: usize = 256 * 1024;

/// Binds the metrics address (before privileges are dropped).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Starts serving and returns the bound address (for the start-up line).
pub fn start(listener: TcpListener, hub: Arc<MetricsHub>) -> io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    spawn(listener, hub)?;
    Ok(addr)
}

/// Serves `/metrics` on `listener` from a thread named `metrics`.
pub fn spawn(
    listener: TcpListener,
    hub: Arc<MetricsHub>,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let busy = Arc::new(AtomicUsize::new(0));
            for conn in listener.incoming() {
                match conn {
                    Ok(c) => serve_one(c, &hub, &busy),
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics accept failed");
                        // Out of fds or similar: back off instead of spinning.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
}

/// Answers `c` on a thread of its own, unless [`MAX_CLIENTS`] are served.
fn serve_one(c: TcpStream, hub: &Arc<MetricsHub>, busy: &Arc<AtomicUsize>) {
    if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
        busy.fetch_sub(1, Ordering::AcqRel);
        tracing::debug!("metrics: too many clients at once; closing a connection");
        return;
    }
    let (hub, slot) = (hub.clone(), busy.clone());
    let spawned = std::thread::Builder::new()
        .name("metrics-conn".into())
        .stack_size(CLIENT_STACK)
        .spawn(move || {
            if let Err(e) = answer(c, &hub) {
                tracing::debug!(error = %e, "metrics request failed");
            }
            slot.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        busy.fetch_sub(1, Ordering::AcqRel);
        tracing::warn!(error = %e, "metrics: cannot start a thread for a client");
    }
}

/// Reads one request head within [`CLIENT_DEADLINE`]; `None` if the client
/// closed, sent too much, or ran out of time.
fn read_head(c: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let mut req = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && !req.windows(2).any(|w| w == b"\n\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        c.set_read_timeout(Some(left))?;
        let n = match c.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        if n == 0 || req.len() + n > MAX_REQUEST {
            return Ok(None);
        }
        req.extend_from_slice(&buf[..n]);
    }
    Ok(Some(req))
}

/// The value of header `name` in a request head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn answer(mut c: TcpStream, hub: &MetricsHub) -> io::Result<()> {
    c.set_write_timeout(Some(CLIENT_DEADLINE))?;
    let Some(req) = read_head(&mut c)? else {
        return Ok(());
    };
    let head = String::from_utf8_lossy(&req);
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let text = |s: &str| ("text/plain; charset=utf-8", s.to_string());
    let (status, (ctype, body)) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let format = Format::negotiate(header(&head, "accept"));
            let page = render_as_with(hub.scrape(SCRAPE_WAIT), hub.extra(), format);
            ("200 OK", (format.content_type(), page))
        }
        ("GET" | "HEAD", _) => ("404 Not Found", text("try /metrics\n")),
        _ => ("405 Method Not Allowed", text("GET or HEAD only\n")),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes())?;
    if method != "HEAD" {
        c.write_all(body.as_bytes())?;
    }
    c.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    #[test]
    fn serves_metrics_and_404_elsewhere() {
        let hub = Arc::new(MetricsHub::default());
        let _r = hub.register(0);
        hub.publish(crate::metrics::test_snapshot(0, 4));
        let l = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = l.local_addr().expect("addr");
        let _t = spawn(l, hub).expect("spawn");
        let page = get(addr, "/metrics");
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(
            page.contains("uringtls_connections_accepted_total{shard=\"0\"} 4"),
            "{page}"
        );
        assert!(get(addr, "/").starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn head_gets_the_headers_alone_and_accept_picks_the_format() {
        let hub = Arc::new(MetricsHub::default());
        let l = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = l.local_addr().expect("addr");
        let _t = spawn(l, hub).expect("spawn");
        let ask = |req: &str| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(req.as_bytes()).expect("write");
            let mut out = String::new();
            s.read_to_string(&mut out).expect("read");
            out
        };
        let head = ask("HEAD /metrics HTTP/1.1\r\n\r\n");
        let get = ask("GET /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "no body: {head}");
        let len = |r: &str| header(r, "content-length").map(str::to_string);
        assert_eq!(len(&head), len(&get));
        assert_eq!(
            header(&get, "content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let om = ask(
            "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
        );
        assert!(
            om.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
            "{om}"
        );
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(ask("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    }
}
