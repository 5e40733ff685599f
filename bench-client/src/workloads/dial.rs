//! Opening a TLS connection: TCP connect then handshake, each timed, with
//! the resumption outcome noted.

use super::OpTimes;
use crate::stats::errors::{ConnectFailure, ErrorClass};
use rustls::client::ClientConfig;
use rustls::client::UnbufferedClientConnection;
use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uringtls_runtime::io::Conn;
use uringtls_runtime::tls::ClientStream;

/// Everything needed to open a connection to the target.
#[derive(Clone)]
pub struct Dialer {
    /// Target address.
    pub addr: SocketAddr,
    /// Verified name (and SNI).
    pub name: ServerName<'static>,
    /// TLS config (its session store decides resumption).
    pub config: Arc<ClientConfig>,
    /// Connect and per-read/write deadline.
    pub timeout: Duration,
}

impl Dialer {
    /// The same dialer with another config (e.g. a per-connection session store).
    pub fn with_config(&self, config: Arc<ClientConfig>) -> Dialer {
        Dialer {
            config,
            ..self.clone()
        }
    }

    /// Connects and handshakes, filling `t.connect`, `t.handshake`, `t.resumed`.
    pub async fn dial(&self, t: &mut OpTimes) -> Result<ClientStream, ErrorClass> {
        let t0 = Instant::now();
        let conn = match uringtls_runtime::io::time::timeout(self.timeout, Conn::connect(self.addr))
            .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(ErrorClass::connect(&e)),
            Err(_) => return Err(ErrorClass::Connect(ConnectFailure::Timeout)),
        };
        let t1 = Instant::now();
        t.connect = Some(t1 - t0);
        // Small requests must not wait for Nagle.
        let _ = conn.set_nodelay(true);
        let tls = UnbufferedClientConnection::new(self.config.clone(), self.name.clone())
            .map_err(|e| ErrorClass::tls(&e))?;
        let mut stream = ClientStream::new(conn, tls);
        stream.set_read_timeout(Some(self.timeout));
        stream.set_write_timeout(Some(self.timeout));
        stream.handshake().await.map_err(|e| ErrorClass::io(&e))?;
        t.handshake = Some(t1.elapsed());
        t.resumed = Some(stream.tls().handshake_kind() == Some(rustls::HandshakeKind::Resumed));
        Ok(stream)
    }
}
