//! Protocol detection on transparent HTTP listeners. iptables sends all of a pod's TCP to one
//! port, so the outbound listener also receives calls that are not HTTP (a database, a
//! cache): like Linkerd, weir reads the first bytes and serves HTTP only when they start an
//! HTTP/1 request line or the HTTP/2 preface; anything else is forwarded as bytes. The bytes
//! read are given back to whoever serves the connection ([`Prefixed`]).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long a client may stay silent before its connection is taken for a protocol in which
/// the server speaks first (MySQL, SMTP): such a connection is forwarded as bytes.
pub const SILENT_CLIENT: Duration = Duration::from_secs(1);

/// The longest prefix that decides: `OPTIONS ` and the HTTP/2 preface's `PRI * ` fit.
const DECIDING_BYTES: usize = 8;

/// Request-line starts of the methods weir serves, and the HTTP/2 preface.
const HTTP_STARTS: &[&[u8]] = &[
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"CONNECT ",
    b"PRI * ",
];

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// An HTTP/1 request line or the HTTP/2 preface.
    Http,
    /// Anything else: forwarded as bytes.
    Opaque,
    /// The client closed before a byte: nothing to forward.
    Closed,
}

/// Whether `bytes` (the start of a connection) is HTTP, is not, or cannot tell yet.
fn judge(bytes: &[u8]) -> Option<Detected> {
    let mut could_be = false;
    for start in HTTP_STARTS {
        let n = bytes.len().min(start.len());
        if bytes[..n] == start[..n] {
            if n == start.len() {
                return Some(Detected::Http);
            }
            could_be = true;
        }
    }
    (!could_be).then_some(Detected::Opaque)
}

/// Reads the first bytes of `stream` until they decide (or it is silent for `silent`, or
/// ends), returning the decision and the bytes read, which the caller must serve first.
pub async fn detect<S: AsyncRead + Unpin>(
    stream: &mut S,
    silent: Duration,
) -> io::Result<(Detected, Vec<u8>)> {
    let mut read = Vec::with_capacity(DECIDING_BYTES);
    let mut chunk = [0u8; DECIDING_BYTES];
    loop {
        let want = DECIDING_BYTES - read.len();
        match tokio::time::timeout(silent, stream.read(&mut chunk[..want])).await {
            Err(_) => return Ok((Detected::Opaque, read)),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(0)) if read.is_empty() => return Ok((Detected::Closed, read)),
            Ok(Ok(0)) => return Ok((Detected::Opaque, read)),
            Ok(Ok(n)) => read.extend_from_slice(&chunk[..n]),
        }
        if let Some(decided) = judge(&read) {
            return Ok((decided, read));
        }
    }
}

/// A stream whose first bytes were already read: they are read again first.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    served: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, whose reads start with `prefix`.
    pub fn new(inner: S, prefix: Vec<u8>) -> Self {
        Prefixed {
            prefix,
            served: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.served < this.prefix.len() {
            let rest = &this.prefix[this.served..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.served += n;
            if this.served == this.prefix.len() {
                this.prefix = Vec::new();
                this.served = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[test]
    fn request_lines_and_the_h2_preface_are_http_and_other_first_bytes_are_not() {
        for http in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"OPTIONS * HTTP/1.1",
            b"PRI * HTTP/2.0\r\n",
            b"DELETE /x",
        ] {
            assert_eq!(judge(http), Some(Detected::Http), "{http:?}");
        }
        // A PostgreSQL startup message, a TLS ClientHello, RESP (redis), lower case.
        for opaque in [
            &b"\x00\x00\x00\x08\x04\xd2\x16\x2f"[..],
            b"\x16\x03\x01\x02\x00",
            b"*1\r\n$4\r\nPING",
            b"get / HTTP/1.1",
            b"GETX",
        ] {
            assert_eq!(judge(opaque), Some(Detected::Opaque), "{opaque:?}");
        }
        assert_eq!(judge(b"GE"), None, "too early to tell");
        assert_eq!(judge(b"P"), None);
    }

    #[tokio::test]
    async fn a_request_line_in_pieces_is_http_and_every_byte_is_served_again() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            client.write_all(b"PO").await.unwrap();
            tokio::task::yield_now().await;
            client.write_all(b"ST /a HTTP/1.1\r\n\r\n").await.unwrap();
            client
        });
        let (detected, prefix) = detect(&mut server, SILENT_CLIENT).await.unwrap();
        assert_eq!(detected, Detected::Http);
        let _client = writer.await.unwrap();
        let mut again = Prefixed::new(server, prefix);
        let mut all = vec![0u8; 20];
        again.read_exact(&mut all).await.unwrap();
        assert_eq!(&all, b"POST /a HTTP/1.1\r\n\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_taken_for_a_server_first_protocol() {
        let (_client, mut server) = tokio::io::duplex(64);
        let (detected, prefix) = detect(&mut server, SILENT_CLIENT).await.unwrap();
        assert_eq!((detected, prefix), (Detected::Opaque, Vec::new()));
    }
}
