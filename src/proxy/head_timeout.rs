//! Slow request heads (slowloris): an HTTP/1.1 request head must be complete within a time
//! limit of its first byte, or the connection is closed.
//!
//! hyper's own header-read timeout arms and disarms a timer for every request. Here the
//! connection's reads note when a head starts (one clock read per request), the request
//! phases note when it is complete, and one timer per connection looks only every so
//! often: a request costs a few plain stores, a connection one wake-up per time limit.
//! HTTP/2 connections are left to HTTP/2's own flow (their reads are frames, not heads).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The HTTP/2 connection preface's first bytes.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// What one connection's reads and requests tell the watchdog.
#[derive(Debug)]
pub struct HeadClock {
    /// Reference point of the timestamps below.
    base: Instant,
    /// When the head being read began (nanoseconds after `base`, plus one); 0 when no
    /// head is being read.
    head_started: AtomicU64,
    /// A request is being served: bytes read now are its body, or the next pipelined head.
    in_request: AtomicBool,
    /// The connection speaks HTTP/2: no heads to time.
    http2: AtomicBool,
    /// Nothing has been read yet.
    fresh: AtomicBool,
}

impl HeadClock {
    /// The clock of a newly accepted connection.
    pub fn new() -> Arc<Self> {
        Arc::new(HeadClock {
            base: Instant::now(),
            head_started: AtomicU64::new(0),
            in_request: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            fresh: AtomicBool::new(true),
        })
    }

    /// A request head is complete: its request is being served.
    pub fn request_started(&self) {
        self.in_request.store(true, Relaxed);
        self.head_started.store(0, Relaxed);
    }

    /// The request's response is over: bytes read from now on start the next head.
    pub fn request_ended(&self) {
        self.in_request.store(false, Relaxed);
    }

    fn read(&self, bytes: &[u8]) {
        // The first read of a connection says which protocol it speaks (as hyper decides).
        if bytes.len() >= 3 && self.fresh.swap(false, Relaxed) {
            let n = bytes.len().min(HTTP2_PREFACE.len());
            if bytes[..n] == HTTP2_PREFACE[..n] {
                self.http2.store(true, Relaxed);
            }
        }
        if self.in_request.load(Relaxed) || self.head_started.load(Relaxed) != 0 {
            return;
        }
        let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.head_started.store(now + 1, Relaxed);
    }

    /// When the head being read began, if one is.
    fn head_started(&self) -> Option<Instant> {
        if self.http2.load(Relaxed) {
            return None;
        }
        match self.head_started.load(Relaxed) {
            0 => None,
            n => Some(self.base + Duration::from_nanos(n - 1)),
        }
    }
}

/// Resolves once a request head has taken longer than `limit` since its first byte; the
/// caller then closes the connection. Wakes once per `limit` at most while heads are on
/// time.
pub async fn expired(clock: &HeadClock, limit: Duration) {
    let mut check = Instant::now() + limit;
    loop {
        tokio::time::sleep_until(check).await;
        let now = Instant::now();
        check = match clock.head_started() {
            Some(started) if now.duration_since(started) >= limit => return,
            Some(started) => started + limit,
            None => now + limit,
        };
    }
}

/// A connection's socket, noting on the clock when request heads start.
#[derive(Debug)]
pub struct Watched<T> {
    io: T,
    clock: Arc<HeadClock>,
}

impl<T> Watched<T> {
    /// Wraps `io`, reporting its reads to `clock`.
    pub fn new(io: T, clock: Arc<HeadClock>) -> Self {
        Watched { io, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
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
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_head_that_takes_too_long_expires_and_an_idle_connection_does_not() {
        let limit = Duration::from_secs(30);
        let clock = HeadClock::new();
        let watch = tokio::spawn({
            let clock = clock.clone();
            async move {
                expired(&clock, limit).await;
                Instant::now()
            }
        });
        // Idle: no head is being read, so nothing expires however long it lasts.
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert!(
            !watch.is_finished(),
            "an idle connection is not a slow head"
        );

        clock.read(b"GET / HT");
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(10)).await;
        clock.read(b"TP/1.1\r\n");
        let cut_off = watch.await.expect("the watch ends");
        assert_eq!(cut_off - started, limit, "30 s after the head's first byte");
    }

    #[tokio::test(start_paused = true)]
    async fn heads_on_time_never_expire_and_requests_in_service_are_not_heads() {
        let limit = Duration::from_secs(30);
        let clock = HeadClock::new();
        let watch = tokio::spawn({
            let clock = clock.clone();
            async move { expired(&clock, limit).await }
        });
        for _ in 0..20 {
            clock.read(b"GET / HTTP/1.1\r\n");
            tokio::time::advance(Duration::from_secs(1)).await;
            clock.request_started();
            // A long upload: its body is read while the request is served.
            for _ in 0..10 {
                clock.read(b"body bytes");
                tokio::time::advance(Duration::from_secs(5)).await;
            }
            clock.request_ended();
        }
        assert!(!watch.is_finished(), "no head was late");
        watch.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn http2_connections_are_not_timed() {
        let clock = HeadClock::new();
        clock.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let waited = tokio::time::timeout(
            Duration::from_secs(300),
            expired(&clock, Duration::from_secs(30)),
        )
        .await;
        assert!(waited.is_err());
    }
}
