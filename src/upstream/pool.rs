//! Per-endpoint upstream connections, owned by weir (not hyper-util's pool) so that weir
//! decides reuse, counts connections and can later cap or eject them.
//!
//! HTTP/1.1: weir's own client ([`super::h1`]), driven in the request's task; a LIFO stack
//! of idle keep-alive connections (the most recently used is the warmest), at most
//! [`MAX_IDLE_PER_ENDPOINT`] of them; a connection goes back on the stack only after its
//! response body ended cleanly. A request that a reused connection failed before any answer
//! (the upstream closed it while idle) is sent again on another connection when weir holds
//! all of it: that race is the pool's to hide, not the client's.
//!
//! HTTP/2: one multiplexed connection per endpoint, driven by hyper in a task of its own
//! (multiplexing needs one), re-established when it closes.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::h1::{self, OpenCount, Outgoing, SendError};
use super::io::UpstreamIo;
use super::response::UpstreamBody;
use super::tls_origin::OutboundTls;

use super::limits::{Limit, LimitGuard, Limits, Overflow};
use crate::body::RequestBody;
use crate::config::{format_duration, UpstreamProtocol};

/// Why an upstream exchange failed before response headers.
#[derive(Debug)]
pub enum UpstreamError {
    /// The TCP connection could not be established.
    Connect(String),
    /// The connection or stream failed while sending or awaiting the response.
    Reset(String),
    /// A connection limit of the service was reached.
    Overflow(Overflow),
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Connect(why) => write!(f, "connection failed: {why}"),
            UpstreamError::Reset(e) => {
                write!(f, "connection reset before a complete response ({e})")
            }
            UpstreamError::Overflow(o) => write!(f, "{o}"),
        }
    }
}

/// Idle HTTP/1.1 connections one endpoint keeps at most; more are closed when they come
/// back. It must cover the application's concurrency, or a burst of concurrent requests
/// turns into new connections on every request (an h2c client with 256 streams in flight
/// needs 256); an idle connection holds only its socket (its read buffer is freed).
pub const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// An HTTP/1.1 connection checked out of the pool for one exchange; it goes back with
/// [`Pool::check_in`] once the response body has ended cleanly, and closes when dropped.
pub type Checkout = Box<h1::Connection>;

/// An upstream connection carrying forwarded TCP: its socket, its `max_connections` slot
/// and its place in the endpoint's open connections.
#[derive(Debug)]
pub struct Stream {
    /// The socket (plain or mTLS).
    pub io: UpstreamIo,
    _slot: LimitGuard,
    _open: OpenCount,
}

/// Response headers and the streaming body.
pub(super) type Answer = Response<UpstreamBody>;

#[derive(Debug)]
struct IdleConnection {
    connection: Checkout,
    since: Instant,
}

/// The connections of one endpoint.
#[derive(Debug)]
pub struct Pool {
    address: SocketAddr,
    protocol: UpstreamProtocol,
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: Mutex<VecDeque<IdleConnection>>,
    h2: Mutex<Option<http2::SendRequest<RequestBody>>>,
    /// Serializes HTTP/2 connects; holds when and why the last one failed.
    h2_connecting: tokio::sync::Mutex<Option<(Instant, String)>>,
    open: Arc<AtomicUsize>,
    limits: Arc<Limits>,
    /// Mutual TLS after TCP, for a service with `tls`.
    tls: Option<Arc<OutboundTls>>,
}

impl Pool {
    /// An empty pool; connections are made on demand.
    pub fn new(
        address: SocketAddr,
        protocol: UpstreamProtocol,
        connect_timeout: Duration,
        idle_timeout: Duration,
        limits: Arc<Limits>,
        tls: Option<Arc<OutboundTls>>,
    ) -> Self {
        Pool {
            limits,
            tls,
            address,
            protocol,
            connect_timeout,
            idle_timeout,
            idle: Mutex::new(VecDeque::new()),
            h2: Mutex::new(None),
            h2_connecting: tokio::sync::Mutex::new(None),
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Connections currently open to this endpoint.
    pub fn open_connections(&self) -> usize {
        self.open.load(Relaxed)
    }

    /// Idle keep-alive connections waiting in the pool (`/services`).
    pub fn idle_connections(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Sends `req` and waits for response headers. Only an [`super::Exchange`] calls this:
    /// it owns what the answer holds.
    pub(super) async fn send(&self, req: Request<RequestBody>) -> Result<Answer, UpstreamError> {
        match self.protocol {
            UpstreamProtocol::Http1 => self.send_http1(req).await,
            // Boxed: HTTP/2's connect and handshake futures would otherwise make every
            // request's future (HTTP/1.1 ones too) several times larger.
            UpstreamProtocol::Http2 => Box::pin(self.send_http2(req)).await,
        }
    }

    /// Returns an HTTP/1.1 connection whose response body ended cleanly (only an
    /// [`super::Exchange`] does).
    pub(super) fn check_in(&self, mut connection: Checkout) {
        connection.shrink_when_idle();
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while idle
            .front()
            .is_some_and(|c| now.duration_since(c.since) > self.idle_timeout)
            || idle.len() >= MAX_IDLE_PER_ENDPOINT
        {
            idle.pop_front();
        }
        idle.push_back(IdleConnection {
            connection,
            since: now,
        });
        drop(idle);
        if self.limits.has_pending() {
            self.limits.connection_available();
        }
    }

    /// Closes idle connections older than the idle timeout, so an endpoint that gets no
    /// traffic does not keep sockets open on the upstream forever.
    pub fn close_expired(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain_mut(|c| {
            now.duration_since(c.since) <= self.idle_timeout && c.connection.is_usable()
        });
    }

    /// A `max_connections` slot for the HTTP/2 connection (opened one at a time, under
    /// `h2_connecting`), or 503 `overflow`.
    fn connection_slot(&self) -> Result<LimitGuard, UpstreamError> {
        let none_open = self.open.load(Relaxed) == 0;
        self.limits.try_connection(none_open).ok_or_else(|| {
            UpstreamError::Overflow(self.limits.count_overflow(Limit::MaxConnections))
        })
    }

    /// A `max_connections` slot for a new HTTP/1.1 or TCP connection, counted open from
    /// now (while it connects). The endpoint's first connection always gets one (see
    /// [`Limits::try_connection`]); which request opens it is decided atomically, so a
    /// burst of requests to an idle endpoint cannot all pass the limit.
    fn open_slot(&self) -> Option<(LimitGuard, OpenCount)> {
        let first = OpenCount::first(&self.open);
        let slot = self.limits.try_connection(first.is_some())?;
        let open = first.unwrap_or_else(|| OpenCount::new(&self.open));
        Some((slot, open))
    }

    fn take_idle(&self) -> Option<Checkout> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(mut c) = idle.pop_back() {
            let idle_for = c.since.elapsed();
            if idle_for > self.idle_timeout {
                continue;
            }
            if c.connection.is_usable() {
                return Some(c.connection);
            }
        }
        None
    }

    async fn send_http1(&self, req: Request<RequestBody>) -> Result<Answer, UpstreamError> {
        let mut out = Outgoing::Request(req);
        // Held while this request waits for a connection (`max_pending_requests`); it
        // waits at most `connect_timeout`, as long as a new connection could have taken.
        let mut pending: Option<LimitGuard> = None;
        let wait_until = tokio::time::Instant::now() + self.connect_timeout;
        let mut waited_out = false;
        loop {
            // Registered before looking, so a check-in between the look and the wait wakes us.
            let changed = self.limits.changed();
            let connection = match self.take_idle() {
                Some(connection) => Some(connection),
                None => match self.open_slot() {
                    Some((slot, open)) => {
                        pending = None;
                        // Boxed, like the wait below: cold paths, kept out of the
                        // future every request carries.
                        let io = Box::pin(self.connect()).await?;
                        Some(h1::Connection::new(io, slot, open))
                    }
                    None => None,
                },
            };
            if let Some(connection) = connection {
                match connection.send(out).await {
                    Ok(response) => return Ok(response.map(UpstreamBody::Http1)),
                    Err(SendError::Io {
                        resend: Some(again),
                        ..
                    }) => {
                        out = *again;
                        continue;
                    }
                    Err(e) => return Err(UpstreamError::Reset(e.to_string())),
                }
            }
            if pending.is_none() {
                let guard = self
                    .limits
                    .acquire(Limit::MaxPendingRequests)
                    .map_err(UpstreamError::Overflow)?;
                pending = Some(guard);
                // Now that check-ins wake us, look once more before waiting.
                continue;
            }
            if waited_out {
                return Err(UpstreamError::Overflow(
                    self.limits.count_overflow(Limit::MaxConnections),
                ));
            }
            // On time-out, one last look at the pool before giving up.
            waited_out = Box::pin(tokio::time::timeout_at(wait_until, changed))
                .await
                .is_err();
        }
    }

    async fn send_http2(&self, mut req: Request<RequestBody>) -> Result<Answer, UpstreamError> {
        for _ in 0..2 {
            let mut sender = self.http2_sender().await?;
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(response.map(UpstreamBody::Http2)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => {
                        req = unsent;
                        self.h2.lock().unwrap_or_else(|p| p.into_inner()).take();
                    }
                    None => return Err(UpstreamError::Reset(e.into_error().to_string())),
                },
            }
        }
        Err(UpstreamError::Connect(
            "the HTTP/2 connection closed before the request could be sent".into(),
        ))
    }

    fn live_http2(&self) -> Option<http2::SendRequest<RequestBody>> {
        let slot = self.h2.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().filter(|s| !s.is_closed()).cloned()
    }

    async fn http2_sender(&self) -> Result<http2::SendRequest<RequestBody>, UpstreamError> {
        if let Some(s) = self.live_http2() {
            return Ok(s);
        }
        let arrived = Instant::now();
        let mut last_failure = self.h2_connecting.lock().await;
        if let Some(s) = self.live_http2() {
            return Ok(s);
        }
        // Requests that queued behind a connect that failed share its failure instead of
        // each waiting out a connect of its own, one after another.
        if let Some((at, why)) = last_failure.as_ref() {
            if *at >= arrived {
                return Err(UpstreamError::Connect(why.clone()));
            }
        }
        let slot = self.connection_slot()?;
        let io = match self.connect().await {
            Ok(io) => io,
            Err(e) => {
                if let UpstreamError::Connect(why) = &e {
                    *last_failure = Some((Instant::now(), why.clone()));
                }
                return Err(e);
            }
        };
        let (sender, conn) = http2_builder()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| UpstreamError::Reset(e.to_string()))?;
        *last_failure = None;
        self.spawn_connection(conn, slot);
        *self.h2.lock().unwrap_or_else(|p| p.into_inner()) = Some(sender.clone());
        Ok(sender)
    }

    /// A connection of its own for TCP forwarding: it holds one of the service's
    /// `max_connections` and counts among the endpoint's open connections while it lives.
    pub(super) async fn connect_stream(&self) -> Result<Stream, UpstreamError> {
        let (slot, open) = self.open_slot().ok_or_else(|| {
            UpstreamError::Overflow(self.limits.count_overflow(Limit::MaxConnections))
        })?;
        let io = self.connect().await?;
        Ok(Stream {
            io,
            _slot: slot,
            _open: open,
        })
    }

    /// A new connection: TCP, then mutual TLS for a service with `tls`, all within
    /// `connect_timeout`.
    async fn connect(&self) -> Result<UpstreamIo, UpstreamError> {
        tokio::time::timeout(self.connect_timeout, self.connect_within())
            .await
            .map_err(|_| {
                UpstreamError::Connect(format!(
                    "no answer within connect_timeout {}",
                    format_duration(self.connect_timeout)
                ))
            })?
    }

    async fn connect_within(&self) -> Result<UpstreamIo, UpstreamError> {
        let stream = TcpStream::connect(self.address)
            .await
            .map_err(|e| UpstreamError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        match &self.tls {
            None => Ok(UpstreamIo::Plain(stream)),
            Some(tls) => tls
                .connect(stream, self.address)
                .await
                .map_err(UpstreamError::Connect),
        }
    }

    /// Drives an HTTP/2 connection in its own task; its limit slot is released when it closes.
    fn spawn_connection<C>(&self, conn: C, slot: LimitGuard)
    where
        C: std::future::Future + Send + 'static,
    {
        let open = self.open.clone();
        open.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            let _ = conn.await;
            open.fetch_sub(1, Relaxed);
            drop(slot);
        });
    }
}

/// The HTTP/2 client settings of every upstream connection, chosen rather than inherited.
fn http2_builder() -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        // Flow control: 1 MiB per stream and 4 MiB per connection let one stream move tens
        // of MB/s across a cluster round trip without stalling on WINDOW_UPDATEs (the
        // protocol's 64 KiB default stalls a large body every 64 KiB), while bounding what a
        // slow reader can make weir hold. Fixed, not adaptive: memory use stays predictable.
        .adaptive_window(false)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        // Until the upstream's SETTINGS arrive, assume the 100 concurrent streams RFC 9113
        // recommends as a minimum, not an unbounded number.
        .initial_max_send_streams(100)
        // A connection that stops answering (a peer gone without a FIN, a stuck proxy in
        // between) is noticed within 30 s by PING and replaced, instead of holding every
        // request multiplexed on it until their own timeouts. Idle connections are pinged
        // too, so a dead one is not found by the next request.
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    builder
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::Metrics;

    #[tokio::test]
    async fn http2_requests_queued_behind_a_failed_connect_share_its_failure() {
        // A loopback listener that never accepts, with its backlog of one filled: further
        // connects get no answer and hang until connect_timeout.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("address"))
            .expect("bind");
        let listener = socket.listen(1).expect("listen");
        let address = listener.local_addr().expect("address");
        let mut fillers = Vec::new();
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(address))
                .await
            {
                Ok(Ok(s)) => fillers.push(s),
                _ => break,
            }
        }
        let pool = Arc::new(Pool::new(
            address,
            UpstreamProtocol::Http2,
            Duration::from_millis(200),
            Duration::from_secs(60),
            Limits::new("s", &Default::default(), &Metrics::new()),
            None,
        ));
        let started = Instant::now();
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.send(Request::new(RequestBody::empty())).await })
            })
            .collect();
        for w in waiters {
            let result = w.await.expect("task");
            assert!(
                matches!(result, Err(UpstreamError::Connect(_))),
                "{result:?}"
            );
        }
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "five queued requests took {:?}: they must not connect one after another",
            started.elapsed()
        );
        drop((fillers, listener));
    }
}
