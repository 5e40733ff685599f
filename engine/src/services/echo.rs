//! `echo`: writes back every byte it reads until the peer closes. A drain
//! does not cut an echo conversation short; the grace period bounds it.

use super::{ConnInfo, Service};
use crate::tls::ServerStream;
use std::io;

/// Most bytes echoed per read.
const ECHO_CHUNK: usize = 16 * 1024;

/// The echo service.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Service for Echo {
    async fn serve(&self, stream: &mut ServerStream, _conn: &ConnInfo) -> io::Result<()> {
        loop {
            // A buffer exists only while bytes are in hand: a connection
            // waiting for input holds none.
            let mut buf: Vec<u8> = Vec::new();
            if stream.read_append(&mut buf, ECHO_CHUNK).await? == 0 {
                return Ok(());
            }
            stream.write_all(&buf).await?;
            stream.flush().await?;
        }
    }
}
