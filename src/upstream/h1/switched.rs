//! An upstream connection after `101 Switching Protocols`: a plain byte stream in the
//! protocol the client asked for (a WebSocket, say), relayed without being read as HTTP.
//! It keeps the connection's `max_connections` slot and open count until it closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Connection;

/// The byte stream of a switched upstream connection. Reads first return what the
/// upstream sent right after its `101` head (already in the read buffer), then the socket.
#[derive(Debug)]
pub struct Switched {
    conn: Box<Connection>,
}

impl Switched {
    /// The byte stream of `conn`, whose `101` head has been read.
    pub(super) fn new(conn: Box<Connection>) -> Self {
        Switched { conn }
    }
}

impl AsyncRead for Switched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let conn = &mut self.get_mut().conn;
        if !conn.read_buf.is_empty() {
            let n = conn.read_buf.len().min(buf.remaining());
            buf.put_slice(&conn.read_buf[..n]);
            conn.read_buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut conn.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Switched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn.io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn.io).poll_shutdown(cx)
    }
}
