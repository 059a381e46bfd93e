//! The socket of an upstream connection: plain TCP, or mutual TLS to a service with
//! `tls.identity`. The HTTP/1.1 client writes through [`UpstreamSocket::poll_write_slices`]
//! (several buffers per system call on plain TCP) and asks an idle connection whether it
//! is still usable without blocking.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls::stream::MaybeTls;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// An upstream connection's byte stream: plain TCP, or mutual TLS.
pub type UpstreamIo = MaybeTls<TcpStream, TlsStream<TcpStream>>;

/// What weir's HTTP/1.1 client asks of an upstream connection beyond reading and writing.
pub trait UpstreamSocket {
    /// Whether an idle connection can take a request (see the impl).
    fn is_usable(&mut self) -> bool;
    /// Writes some of `slices` (see the impl).
    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;
}

impl UpstreamSocket for UpstreamIo {
    /// Whether an idle connection can take a request: the upstream has not closed it and
    /// has sent nothing unasked. Plain TCP costs no system call unless the socket has news;
    /// TLS is polled once without waiting (a session ticket the server sent is taken in by
    /// TLS and is no news).
    fn is_usable(&mut self) -> bool {
        match self {
            MaybeTls::Plain(tcp) => {
                let mut probe = [0u8; 1];
                matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            MaybeTls::Tls(tls) => {
                let mut probe = [0u8; 1];
                let mut buf = ReadBuf::new(&mut probe);
                let mut cx = Context::from_waker(Waker::noop());
                matches!(
                    Pin::new(tls.as_mut()).poll_read(&mut cx, &mut buf),
                    Poll::Pending
                )
            }
        }
    }

    /// Writes some of `slices` (on TLS, into the session: [`AsyncWrite::poll_flush`] then
    /// pushes the records out). The count is what was taken, whatever the socket does next:
    /// a write reported taken must never be offered again.
    fn poll_write_slices(
        &mut self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            MaybeTls::Plain(tcp) => loop {
                match tcp.try_write_vectored(slices) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        ready!(tcp.poll_write_ready(cx))?;
                    }
                    written => return Poll::Ready(written),
                }
            },
            MaybeTls::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, slices),
        }
    }
}
