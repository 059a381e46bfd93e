//! How long a downstream connection may keep weir waiting on its client (Envoy's
//! `request_headers_timeout`, `idle_timeout` and the first-byte / handshake timeout in one):
//!
//! - **first byte**: a connection that sends nothing, or an HTTP/2 connection that sends no
//!   request (a partial preface, a preface and then nothing), is closed `first_byte` after
//!   it was accepted;
//! - **slow head** (slowloris): an HTTP/1.1 request head must be complete `first_byte` after
//!   its first byte;
//! - **idle**: a keep-alive connection with no request in flight for `idle` is closed.
//!
//! hyper's own header-read timeout armed and disarmed a timer for every request. Here the
//! connection's reads note when a head starts (one clock read per request), the request
//! phases note when one starts and ends, and one timer per connection looks now and then (at
//! the earliest deadline, and at least every quarter of the shorter limit): a request costs
//! a few plain stores, and a deadline is met at most a quarter of its limit late.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The HTTP/2 connection preface's first bytes.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Why a connection was closed for its client's slowness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// No byte (or, on HTTP/2, no request) within `first_byte` of the accept.
    FirstByte,
    /// A request head took longer than `first_byte` from its first byte.
    SlowHead,
    /// No request in flight for `idle`.
    Idle,
}

impl Expired {
    /// For the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Expired::FirstByte => "no request within the first-byte timeout",
            Expired::SlowHead => "request head too slow",
            Expired::Idle => "idle timeout",
        }
    }
}

/// The limits [`expired`] applies.
#[derive(Debug, Clone, Copy)]
pub struct ClientTimeouts {
    /// First byte, HTTP/2 first request, and a request head's duration.
    pub first_byte: Duration,
    /// A connection without a request in flight.
    pub idle: Duration,
}

/// What one connection's reads and requests tell the watchdog, and the socket layer that
/// tags hyper's parse-error answers whether a request is in progress. Timestamps are
/// nanoseconds after `base`, plus one, so that 0 means "not set".
#[derive(Debug)]
pub struct ClientClock {
    base: Instant,
    /// When the head being read began; 0 when no head is being read.
    head_started: AtomicU64,
    /// When the last request ended (or the connection was accepted); strictly increasing,
    /// so it also names the stretch between two requests.
    last_request_ended: AtomicU64,
    /// Requests being served (HTTP/2 has several at once).
    in_flight: AtomicU32,
    /// The connection has sent a byte.
    spoke: AtomicBool,
    /// The connection has sent a request.
    requested: AtomicBool,
    /// The connection speaks HTTP/2: no heads to time.
    http2: AtomicBool,
    /// The status of the parse-error answer the socket saw hyper write (0: none), for the
    /// listener to count and log once the connection is over.
    parse_error_status: AtomicU16,
}

impl ClientClock {
    /// The clock of a newly accepted connection.
    pub fn new() -> Arc<Self> {
        Arc::new(ClientClock {
            base: Instant::now(),
            head_started: AtomicU64::new(0),
            last_request_ended: AtomicU64::new(1),
            in_flight: AtomicU32::new(0),
            spoke: AtomicBool::new(false),
            requested: AtomicBool::new(false),
            http2: AtomicBool::new(false),
            parse_error_status: AtomicU16::new(0),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    fn at(&self, stamp: u64) -> Instant {
        self.base + Duration::from_nanos(stamp.saturating_sub(1))
    }

    /// A request head is complete: its request is being served.
    pub fn request_started(&self) {
        self.requested.store(true, Relaxed);
        self.in_flight.fetch_add(1, Relaxed);
        self.head_started.store(0, Relaxed);
    }

    /// A request's response is over: bytes read from now on start the next head.
    pub fn request_ended(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
        // Never the stamp of the request before, even on a coarse (or paused) clock.
        let previous = self.last_request_ended.load(Relaxed);
        self.last_request_ended
            .store(self.now().max(previous + 1), Relaxed);
    }

    /// When no request is in progress on an HTTP/1 connection: the stamp of the last
    /// request's end, which names this stretch between requests (a request that starts and
    /// ends changes it). `None` while a request is in progress, and on HTTP/2.
    pub fn between_requests(&self) -> Option<u64> {
        if self.in_flight.load(Relaxed) != 0 || self.http2.load(Relaxed) {
            return None;
        }
        Some(self.last_request_ended.load(Relaxed))
    }

    /// The socket wrote hyper's answer with `status` to a request head it refused.
    pub fn note_parse_error_status(&self, status: u16) {
        self.parse_error_status.store(status, Relaxed);
    }

    /// The status of hyper's answer to a refused head, if the socket saw one written.
    pub fn parse_error_status(&self) -> Option<u16> {
        match self.parse_error_status.load(Relaxed) {
            0 => None,
            status => Some(status),
        }
    }

    /// How long the head being read (or refused) has taken: from its first byte, or, for a
    /// head that came with the request before it, from that request's end.
    pub fn since_head_began(&self) -> Duration {
        let head = self.head_started.load(Relaxed);
        let began = if head != 0 {
            head
        } else {
            self.last_request_ended.load(Relaxed)
        };
        self.at(began).elapsed()
    }

    fn read(&self, bytes: &[u8]) {
        // The first read of a connection says which protocol it speaks (as hyper decides).
        if bytes.len() >= 3 && !self.spoke.swap(true, Relaxed) {
            let n = bytes.len().min(HTTP2_PREFACE.len());
            if bytes[..n] == HTTP2_PREFACE[..n] {
                self.http2.store(true, Relaxed);
            }
        }
        if self.in_flight.load(Relaxed) != 0 || self.head_started.load(Relaxed) != 0 {
            return;
        }
        self.head_started.store(self.now(), Relaxed);
    }

    /// The earliest deadline now in force, and what passing it means.
    fn deadline(&self, limits: &ClientTimeouts) -> (Instant, Expired) {
        if !self.spoke.load(Relaxed) || (self.http2.load(Relaxed) && !self.requested.load(Relaxed))
        {
            return (self.base + limits.first_byte, Expired::FirstByte);
        }
        let head = self.head_started.load(Relaxed);
        if head != 0 && !self.http2.load(Relaxed) {
            return (self.at(head) + limits.first_byte, Expired::SlowHead);
        }
        if self.in_flight.load(Relaxed) == 0 {
            let ended = self.last_request_ended.load(Relaxed);
            return (self.at(ended) + limits.idle, Expired::Idle);
        }
        // Requests in flight: their own timeouts govern; look again later.
        (
            Instant::now() + limits.first_byte.min(limits.idle),
            Expired::Idle,
        )
    }
}

/// Resolves once the connection has kept weir waiting longer than `limits` allow, with
/// the reason (the caller then closes it), or with `None` once `open` says the connection
/// has ended.
///
/// It sleeps until the earliest deadline in force, but never longer than a quarter of the
/// shorter limit: a deadline that appears while it sleeps (a head starts, the last request
/// ends) is then met at most a quarter late, without a wake-up per request.
pub async fn expired(
    clock: &ClientClock,
    limits: ClientTimeouts,
    open: impl Fn() -> bool,
) -> Option<Expired> {
    let longest_sleep = limits.first_byte.min(limits.idle) / 4;
    loop {
        if !open() {
            return None;
        }
        let (deadline, reason) = clock.deadline(&limits);
        if Instant::now() >= deadline {
            // Only a deadline still in force after the wait counts.
            let (again, reason_again) = clock.deadline(&limits);
            if again <= Instant::now() && reason_again == reason {
                return Some(reason);
            }
            continue;
        }
        tokio::time::sleep_until(deadline.min(Instant::now() + longest_sleep)).await;
    }
}

/// A connection's socket, noting on the clock when request heads start.
#[derive(Debug)]
pub struct Watched<T> {
    io: T,
    clock: Arc<ClientClock>,
}

impl<T> Watched<T> {
    /// Wraps `io`, reporting its reads to `clock`.
    pub fn new(io: T, clock: Arc<ClientClock>) -> Self {
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

    const LIMITS: ClientTimeouts = ClientTimeouts {
        first_byte: Duration::from_secs(10),
        idle: Duration::from_secs(3600),
    };

    fn watch(clock: &Arc<ClientClock>) -> tokio::task::JoinHandle<(Expired, Instant)> {
        let clock = clock.clone();
        tokio::spawn(async move {
            let reason = expired(&clock, LIMITS, || true).await;
            (reason.expect("expired"), Instant::now())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_after_the_first_byte_timeout() {
        let clock = ClientClock::new();
        let accepted = Instant::now();
        let (reason, at) = watch(&clock).await.expect("watch");
        assert_eq!(
            (reason, at - accepted),
            (Expired::FirstByte, LIMITS.first_byte)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_takes_too_long_expires_from_its_first_byte() {
        let clock = ClientClock::new();
        let watch = watch(&clock);
        tokio::time::sleep(Duration::from_secs(2)).await;
        clock.read(b"GET / HT");
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(5)).await;
        clock.read(b"TP/1.1\r\n");
        let (reason, at) = watch.await.expect("watch");
        assert_eq!(
            (reason, at - started),
            (Expired::SlowHead, LIMITS.first_byte)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_on_time_keep_a_connection_and_idleness_ends_it() {
        let clock = ClientClock::new();
        let watch = watch(&clock);
        for _ in 0..20 {
            clock.read(b"GET / HTTP/1.1\r\n");
            tokio::time::sleep(Duration::from_secs(1)).await;
            clock.request_started();
            // A long upload: its body is read while the request is served.
            for _ in 0..10 {
                clock.read(b"body bytes");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            clock.request_ended();
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        assert!(!watch.is_finished(), "no deadline passed");
        let last = Instant::now();
        let (reason, at) = watch.await.expect("watch");
        assert_eq!(
            (reason, at - last),
            (Expired::Idle, LIMITS.idle - Duration::from_secs(60))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn http2_needs_a_request_within_the_first_byte_timeout_and_is_not_head_timed() {
        let clock = ClientClock::new();
        let accepted = Instant::now();
        clock.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let (reason, at) = watch(&clock).await.expect("watch");
        assert_eq!(
            (reason, at - accepted),
            (Expired::FirstByte, LIMITS.first_byte)
        );

        let clock = ClientClock::new();
        clock.read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        clock.request_started();
        clock.read(b"frames of other streams");
        let watch = watch(&clock);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!watch.is_finished(), "a request is in flight");
        watch.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_watch_ends_within_a_quarter_limit_once_the_connection_is_gone() {
        let clock = ClientClock::new();
        clock.read(b"GET / HTTP/1.1\r\n");
        clock.request_started();
        let open = std::sync::atomic::AtomicBool::new(true);
        let started = Instant::now();
        let watch = expired(&clock, LIMITS, || open.load(Relaxed));
        tokio::pin!(watch);
        assert!(futures_poll_once(watch.as_mut()).await.is_none());
        open.store(false, Relaxed);
        assert_eq!(watch.await, None);
        assert!(
            started.elapsed() <= LIMITS.first_byte / 4,
            "{:?}",
            started.elapsed()
        );
    }

    /// Polls `future` once; its output if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(future: F) -> Option<F::Output> {
        let mut future = future;
        std::future::poll_fn(|cx| {
            Poll::Ready(match Pin::new(&mut future).poll(cx) {
                Poll::Ready(v) => Some(v),
                Poll::Pending => None,
            })
        })
        .await
    }
}
