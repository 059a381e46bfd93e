//! Relaying bytes both ways between two streams until both ends are done, one fails, or
//! nothing moves for an idle limit: the tunnel of a switched protocol (WebSocket) and a
//! TCP listener's forwarding.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// What a tunnel carried, and how it ended.
#[derive(Debug)]
pub struct Relayed {
    /// How it ended.
    pub end: TunnelEnd,
    /// Bytes read from the client (and sent upstream, unless the end came first).
    pub from_client: u64,
    /// Bytes read from the upstream.
    pub from_upstream: u64,
}

/// How a tunnel ended.
#[derive(Debug)]
pub enum TunnelEnd {
    /// Both sides finished.
    Closed,
    /// No byte moved either way for the idle limit.
    Idle,
    /// A side failed.
    Failed(io::Error),
}

/// Relays bytes both ways between `client` and `upstream` until both have finished (a side
/// that ends has its peer's write side shut), one fails, or no byte moves for `idle`.
pub async fn relay<C, U>(client: C, upstream: U, idle: Duration) -> Relayed
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let mut client = Active::new(client, &last, start);
    let mut upstream = Active::new(upstream, &last, start);
    let end = {
        let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
        tokio::pin!(copy);
        loop {
            let quiet_until = start + Duration::from_millis(last.load(Relaxed)) + idle;
            tokio::select! {
                copied = &mut copy => break match copied {
                    Ok(_) => TunnelEnd::Closed,
                    Err(e) => TunnelEnd::Failed(e),
                },
                _ = tokio::time::sleep_until(quiet_until) => {
                    let moved_at = start + Duration::from_millis(last.load(Relaxed));
                    if Instant::now() >= moved_at + idle {
                        break TunnelEnd::Idle;
                    }
                }
            }
        }
    };
    Relayed {
        end,
        from_client: client.read,
        from_upstream: upstream.read,
    }
}

/// A stream that notes when it last read a byte (millisecond resolution, from `start`),
/// and how many it read.
struct Active<'a, T> {
    io: T,
    last: &'a AtomicU64,
    start: Instant,
    read: u64,
}

impl<'a, T> Active<'a, T> {
    fn new(io: T, last: &'a AtomicU64, start: Instant) -> Self {
        Active {
            io,
            last,
            start,
            read: 0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<'_, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.read += n as u64;
            let now = this.start.elapsed().as_millis() as u64;
            this.last.store(now, Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<'_, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tunnel_relays_both_ways_and_closes_when_quiet() {
        let (client, mut client_far) = duplex(1024);
        let (upstream, mut upstream_far) = duplex(1024);
        let idle = Duration::from_secs(300);
        let tunnel = tokio::spawn(relay(client, upstream, idle));
        // Traffic both ways, spaced by less than the idle limit, keeps it open.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(200)).await;
            client_far.write_all(b"ping").await.expect("write");
            let mut got = [0u8; 4];
            upstream_far.read_exact(&mut got).await.expect("read");
            assert_eq!(&got, b"ping");
            upstream_far.write_all(b"pong").await.expect("write");
            client_far.read_exact(&mut got).await.expect("read");
            assert_eq!(&got, b"pong");
        }
        assert!(
            !tunnel.is_finished(),
            "600 s of traffic kept the tunnel open"
        );
        let quiet_from = Instant::now();
        let relayed = tunnel.await.expect("joined");
        assert!(matches!(relayed.end, TunnelEnd::Idle), "{relayed:?}");
        assert_eq!((relayed.from_client, relayed.from_upstream), (12, 12));
        let quiet = quiet_from.elapsed();
        assert!(
            quiet >= idle - Duration::from_millis(1) && quiet <= idle + Duration::from_millis(5),
            "closed after {quiet:?} of quiet"
        );
        // Both far ends see the close.
        let mut rest = Vec::new();
        client_far.read_to_end(&mut rest).await.expect("read");
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn a_side_that_ends_is_passed_on_and_the_tunnel_closes() {
        let (client, mut client_far) = duplex(1024);
        let (upstream, mut upstream_far) = duplex(1024);
        let tunnel = tokio::spawn(relay(client, upstream, Duration::from_secs(300)));
        client_far.write_all(b"last words").await.expect("write");
        client_far.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        upstream_far
            .read_to_end(&mut got)
            .await
            .expect("the client's end reaches upstream");
        assert_eq!(got, b"last words");
        upstream_far.write_all(b"bye").await.expect("write");
        drop(upstream_far);
        let mut back = Vec::new();
        client_far.read_to_end(&mut back).await.expect("read");
        assert_eq!(back, b"bye");
        let relayed = tunnel.await.expect("joined");
        assert!(matches!(relayed.end, TunnelEnd::Closed), "{relayed:?}");
        assert_eq!((relayed.from_client, relayed.from_upstream), (10, 3));
    }
}
