//! The `/metrics` endpoint: a plain std thread serving HTTP/1.0-style
//! request/response, one client at a time (scrapers are few and polite).
//! A client gets [`CLIENT_TIMEOUT`] to send its request. Bind it to a
//! loopback or management address: it is plain HTTP without authentication.

use super::hub::{MetricsHub, SCRAPE_WAIT};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Time a scraper has to send its request line and headers.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REQUEST: usize = 8 * 1024;
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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
            for conn in listener.incoming() {
                match conn {
                    Ok(c) => {
                        if let Err(e) = answer(c, &hub) {
                            tracing::debug!(error = %e, "metrics request failed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics accept failed");
                        // Out of fds or similar: back off instead of spinning.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
}

fn answer(mut c: TcpStream, hub: &MetricsHub) -> io::Result<()> {
    c.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    c.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let mut req = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && !req.windows(2).any(|w| w == b"\n\n") {
        let n = c.read(&mut buf)?;
        if n == 0 || req.len() + n > MAX_REQUEST {
            return Ok(());
        }
        req.extend_from_slice(&buf[..n]);
    }
    let line = req.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            CONTENT_TYPE,
            super::export::render(hub.scrape(SCRAPE_WAIT)),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "try /metrics\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes())?;
    c.write_all(body.as_bytes())?;
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
        let st = crate::shard::ShardState::new(0);
        st.counters.accepted.set(4);
        hub.publish(super::super::ShardSnapshot::take(&st));
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
}
