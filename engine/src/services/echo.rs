//! `echo`: writes back every byte it reads until the peer closes. A drain
//! does not cut an echo conversation short; the grace period bounds it.

use super::{ConnInfo, Service};
use crate::tls::ServerStream;
use std::io;

/// The echo service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Service for Echo {
    async fn serve(&self, stream: &mut ServerStream, _conn: &ConnInfo) -> io::Result<()> {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match stream.read(&mut buf).await? {
                0 => return Ok(()),
                n => n,
            };
            stream.write_all(&buf[..n]).await?;
            stream.flush().await?;
        }
    }
}
