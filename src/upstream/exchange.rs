//! One upstream exchange: a request sent to one endpoint and the response that comes back.
//!
//! The [`Exchange`] is the one owner of everything an attempt holds: the endpoint lease
//! (its in-flight count), the retry permit of a retry, the client's body while it streams,
//! and, for the attempt whose answer is relayed, the request's `max_requests` slot,
//! retry-budget share and circuit-breaker admission. Dropping it, on any path (success,
//! error, client gone, timeout, unwinding), gives all of it back exactly once. The HTTP/1.1
//! connection travels with the response body it is read from (the body reads straight from
//! the socket) and goes back to the pool only through [`Exchange::finish`], once that body
//! ended cleanly; dropped anywhere else, it closes.
//!
//! The exchange also judges **who failed**. A client body that broke off or was malformed,
//! or a client too slow to send it, is the client's fault ([`Judged::Client`]) and is
//! recorded nowhere; only the endpoint's own failures are reported to outlier detection
//! (as they happen) and to the circuit breaker (once, for the request).

use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::circuit_breaker::Admission;
use super::endpoint::{Endpoint, InFlight};
use super::limits::{LimitGuard, Overflow};
use super::outcome::Outcome;
use super::pool::{Checkout, Stream, UpstreamError};
use super::response::UpstreamBody;
use super::retry_budget::{ActiveRequest, RetryPermit};
use super::service::Service;
use crate::body::{ClientBody, ClientFault, RequestBody};

/// What one exchange came to.
#[derive(Debug)]
pub enum Judged {
    /// Response headers arrived.
    Response(Response<UpstreamBody>),
    /// The endpoint failed (already reported to outlier detection): the outcome, and what
    /// happened.
    Upstream(Outcome, UpstreamFailure),
    /// The client failed; nothing is held against the endpoint.
    Client(ClientFault),
    /// One of weir's own connection limits refused the exchange; says nothing of the
    /// endpoint.
    Refused(Overflow),
}

/// How an endpoint failed an exchange before response headers.
#[derive(Debug)]
pub enum UpstreamFailure {
    /// No connection could be made; the reason.
    Connect(String),
    /// The connection or stream broke; the reason.
    Reset(String),
    /// No response headers within the time allowed.
    TimedOut,
}

impl std::fmt::Display for UpstreamFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamFailure::Connect(why) => write!(f, "connect failed: {why}"),
            UpstreamFailure::Reset(why) => f.write_str(why),
            UpstreamFailure::TimedOut => f.write_str("no answer in time"),
        }
    }
}

/// What the request as a whole holds, handed to the exchange whose answer is relayed.
#[derive(Debug, Default)]
pub struct RequestHolds {
    /// The service's `max_requests` slot.
    pub request_slot: Option<LimitGuard>,
    /// The request's share of the route's retry budget.
    pub active: Option<ActiveRequest>,
    /// The circuit breaker's admission, resolved with the request's outcome.
    pub admission: Option<Admission>,
}

/// Why an exchange exists, which decides what it counts and reports.
#[derive(Debug)]
enum Purpose {
    /// A client's request: counts in flight, reports outcomes to outlier detection.
    Request(Arc<Service>),
    /// A mirrored copy: counts in flight, reports nothing (its answer is never used).
    Mirror,
    /// A health check: counted and judged by the checker alone.
    Probe,
}

/// One request at one endpoint, and everything it holds (see the module docs).
#[derive(Debug)]
pub struct Exchange {
    endpoint: Arc<Endpoint>,
    purpose: Purpose,
    _in_flight: Option<InFlight>,
    client_body: Option<Arc<ClientBody>>,
    retry: Option<(RetryPermit, LimitGuard)>,
    request: RequestHolds,
}

// === impl Exchange ===

impl Exchange {
    /// An exchange for a client's request at `endpoint` of `service`.
    pub fn request(service: &Arc<Service>, endpoint: Arc<Endpoint>) -> Self {
        Self::new(endpoint, Purpose::Request(service.clone()))
    }

    /// An exchange for a mirrored copy.
    pub fn mirror(endpoint: Arc<Endpoint>) -> Self {
        Self::new(endpoint, Purpose::Mirror)
    }

    /// An exchange for a health check.
    pub fn probe(endpoint: Arc<Endpoint>) -> Self {
        Self::new(endpoint, Purpose::Probe)
    }

    fn new(endpoint: Arc<Endpoint>, purpose: Purpose) -> Self {
        let in_flight = match purpose {
            Purpose::Probe => None,
            _ => Some(InFlight::start(&endpoint)),
        };
        Exchange {
            endpoint,
            purpose,
            _in_flight: in_flight,
            client_body: None,
            retry: None,
            request: RequestHolds::default(),
        }
    }

    /// The endpoint it goes to.
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// Holds a retry's permits (retry budget and `max_retries`) while the attempt is in
    /// flight, until [`Exchange::send`] has judged it.
    pub fn hold_retry(&mut self, permit: RetryPermit, slot: LimitGuard) {
        self.retry = Some((permit, slot));
    }

    /// Sends `req` and waits for response headers until `deadline`, then judges the
    /// result: an endpoint failure is reported to outlier detection here. A retry's
    /// permits are given back once the attempt is judged.
    pub async fn send(&mut self, req: Request<RequestBody>, deadline: Option<Instant>) -> Judged {
        let judged = self.attempt(req, deadline).await;
        self.retry = None;
        self.report(judged)
    }

    /// Opens a connection of its own for TCP forwarding and judges it like an attempt: a
    /// failure to connect is reported to outlier detection, a connection made counts as a
    /// success. The stream holds its connection slot; the exchange still holds the
    /// endpoint's in-flight count until it is dropped.
    pub async fn connect(&mut self) -> Result<Stream, Judged> {
        let judged = match self.endpoint.pool.connect_stream().await {
            Ok(stream) => {
                self.report_outcome(Outcome::Connected);
                return Ok(stream);
            }
            Err(UpstreamError::Overflow(o)) => Judged::Refused(o),
            Err(UpstreamError::Connect(why)) => {
                Judged::Upstream(Outcome::ConnectFailed, UpstreamFailure::Connect(why))
            }
            Err(e) => Judged::Upstream(Outcome::Reset, UpstreamFailure::Reset(e.to_string())),
        };
        Err(self.report(judged))
    }

    fn report_outcome(&self, outcome: Outcome) {
        if let Purpose::Request(service) = &self.purpose {
            service.record_attempt(&self.endpoint, outcome);
        }
    }

    async fn attempt(&mut self, req: Request<RequestBody>, deadline: Option<Instant>) -> Judged {
        self.client_body = req.body().client_body().cloned();
        let sent = match deadline {
            None => Some(self.endpoint.pool.send(req).await),
            Some(deadline) => tokio::time::timeout_at(deadline, self.endpoint.pool.send(req))
                .await
                .ok(),
        };
        match sent {
            Some(Ok(response)) => Judged::Response(response),
            Some(Err(UpstreamError::Overflow(o))) => Judged::Refused(o),
            Some(Err(e)) => match self.client_fault(false) {
                Some(fault) => Judged::Client(fault),
                None => match e {
                    UpstreamError::Connect(why) => {
                        Judged::Upstream(Outcome::ConnectFailed, UpstreamFailure::Connect(why))
                    }
                    e => Judged::Upstream(Outcome::Reset, UpstreamFailure::Reset(e.to_string())),
                },
            },
            None => match self.client_fault(true) {
                Some(fault) => Judged::Client(fault),
                None => Judged::Upstream(Outcome::Timeout, UpstreamFailure::TimedOut),
            },
        }
    }

    fn client_fault(&self, timed_out: bool) -> Option<ClientFault> {
        self.client_body.as_ref()?.fault(timed_out)
    }

    /// Reports an endpoint's outcome to its service's outlier detection (client requests
    /// only).
    fn report(&self, judged: Judged) -> Judged {
        if let Purpose::Request(service) = &self.purpose {
            let outcome = match &judged {
                Judged::Response(r) => Some(Outcome::Response(r.status().as_u16())),
                Judged::Upstream(outcome, _) => Some(*outcome),
                Judged::Client(_) | Judged::Refused(_) => None,
            };
            if let Some(outcome) = outcome {
                service.record_attempt(&self.endpoint, outcome);
            }
        }
        judged
    }

    /// Makes this the request's final exchange: it holds the request's slots until it
    /// ends, and resolves the circuit breaker's admission with `outcome` (an exchange that
    /// failed through the client's fault, or was refused by weir's own limits, passes
    /// `None`: the admission is cancelled, neither a success nor a failure).
    pub fn settle(&mut self, mut holds: RequestHolds, outcome: Option<Outcome>) {
        if let (Some(admission), Some(outcome)) = (holds.admission.take(), outcome) {
            admission.record(outcome);
        }
        self.request = holds;
    }

    /// Ends the exchange once the response body is over: the HTTP/1.1 connection of a body
    /// that ended cleanly ([`UpstreamBody::take_connection`]) goes back to the pool;
    /// whatever of the request the upstream has not read is unwanted either way.
    pub fn finish(mut self, connection: Option<Checkout>) {
        if let Some(body) = self.client_body.take() {
            body.stop();
        }
        if let Some(connection) = connection {
            self.endpoint.pool.check_in(connection);
        }
    }

    /// Reads a response body to its end and discards it (health checks, mirrored copies),
    /// so the connection can be reused; a body larger than `max` bytes, or one that fails,
    /// closes it instead.
    pub async fn discard(self, mut body: UpstreamBody, max: usize) -> Result<(), String> {
        let mut left = max;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Some(data) = frame.data_ref() {
                left = left
                    .checked_sub(data.len())
                    .ok_or_else(|| format!("the answer's body is larger than {max} bytes"))?;
            }
        }
        let connection = body.take_connection();
        self.finish(connection);
        Ok(())
    }
}

impl Drop for Exchange {
    /// Whatever [`Exchange::finish`] did not return is released here: the connection
    /// closes, the client's unread body is dropped, the slots and the in-flight count go
    /// back (their own guards do that).
    fn drop(&mut self) {
        if let Some(body) = self.client_body.take() {
            body.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::net::TcpListener;

    use super::*;
    use crate::test_support::eventually;
    use crate::upstream::limits::Limit;

    /// An HTTP/1.1 upstream on a free port: `/slow` answers after 10 s, anything else at
    /// once with a 64 KiB body.
    async fn upstream() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let handler = service_fn(|req: Request<Incoming>| async move {
                        if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(10)).await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![
                            b'x';
                            65536
                        ]))))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), handler)
                        .await;
                });
            }
        });
        address
    }

    /// A service of one endpoint at `address`, with outlier detection that ejects after
    /// one failure.
    fn service(address: SocketAddr) -> Arc<Service> {
        let text = format!(
            "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        backends: [{{ service: s }}]\nservices:\n  - name: s\n    endpoints: [\"{address}\"]\n    outlier_detection: {{ consecutive_5xx: 1, max_ejection_percent: 100 }}\n"
        );
        let config = crate::config::load_str("t.yaml", &text)
            .expect("valid")
            .config;
        Service::new(
            &config.services[0],
            vec![],
            crate::telemetry::metrics::Metrics::new(),
        )
    }

    fn get(path: &str) -> Request<RequestBody> {
        Request::get(path)
            .header(http::header::HOST, "x")
            .body(RequestBody::empty())
            .expect("request")
    }

    fn endpoint(service: &Service) -> Arc<Endpoint> {
        service.endpoint_set().endpoints[0].clone()
    }

    /// The request's slots as the admission phase takes them.
    fn holds(service: &Service) -> RequestHolds {
        RequestHolds {
            request_slot: service.limits.acquire(Limit::MaxRequests).ok(),
            active: None,
            admission: None,
        }
    }

    #[tokio::test]
    async fn a_clean_body_returns_the_connection_and_releases_everything() {
        let s = service(upstream().await);
        let e = endpoint(&s);
        let mut exchange = Exchange::request(&s, e.clone());
        let Judged::Response(response) = exchange.send(get("/"), None).await else {
            panic!("no response");
        };
        exchange.settle(holds(&s), Some(Outcome::Response(200)));
        assert_eq!((e.load(), s.limits.used(Limit::MaxRequests)), (1, 1));
        exchange
            .discard(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert_eq!((e.load(), s.limits.used(Limit::MaxRequests)), (0, 0));
        assert_eq!(e.pool.idle_connections(), 1, "the connection went back");
    }

    #[tokio::test]
    async fn dropped_mid_body_the_connection_closes_and_nothing_leaks() {
        let s = service(upstream().await);
        let e = endpoint(&s);
        let mut exchange = Exchange::request(&s, e.clone());
        let Judged::Response(response) = exchange.send(get("/"), None).await else {
            panic!("no response");
        };
        exchange.settle(holds(&s), Some(Outcome::Response(200)));
        // The client left: the body is dropped unread, then the exchange.
        drop(response);
        drop(exchange);
        assert_eq!((e.load(), s.limits.used(Limit::MaxRequests)), (0, 0));
        assert_eq!(
            e.pool.idle_connections(),
            0,
            "a half-read connection is not reused"
        );
        assert!(
            eventually(Duration::from_secs(2), || e.pool.open_connections() == 0).await,
            "the connection closed"
        );
    }

    #[tokio::test]
    async fn a_failed_connect_is_reported_and_releases_the_lease() {
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = closed.local_addr().expect("address");
        drop(closed);
        let s = service(address);
        let e = endpoint(&s);
        let mut exchange = Exchange::request(&s, e.clone());
        let judged = exchange.send(get("/"), None).await;
        assert!(
            matches!(
                judged,
                Judged::Upstream(Outcome::ConnectFailed, UpstreamFailure::Connect(_))
            ),
            "{judged:?}"
        );
        assert!(
            e.outlier.is_ejected(),
            "the endpoint's own failure is reported"
        );
        exchange.settle(holds(&s), Some(Outcome::ConnectFailed));
        drop(exchange);
        assert_eq!((e.load(), s.limits.used(Limit::MaxRequests)), (0, 0));
    }

    #[tokio::test]
    async fn a_timeout_releases_everything_and_closes_the_connection() {
        let s = service(upstream().await);
        let e = endpoint(&s);
        let mut exchange = Exchange::request(&s, e.clone());
        let deadline = Instant::now() + Duration::from_millis(100);
        let judged = exchange.send(get("/slow"), Some(deadline)).await;
        assert!(
            matches!(
                judged,
                Judged::Upstream(Outcome::Timeout, UpstreamFailure::TimedOut)
            ),
            "{judged:?}"
        );
        drop(exchange);
        assert_eq!(e.load(), 0);
        assert_eq!(e.pool.idle_connections(), 0);
        assert!(eventually(Duration::from_secs(2), || e.pool.open_connections() == 0).await);
    }

    #[tokio::test]
    async fn a_panic_while_holding_an_exchange_gives_everything_back() {
        let s = service(upstream().await);
        let e = endpoint(&s);
        let task = tokio::spawn({
            let (s, e) = (s.clone(), e.clone());
            async move {
                let mut exchange = Exchange::request(&s, e);
                exchange.settle(holds(&s), None);
                let _ = exchange.send(get("/"), None).await;
                panic!("a bug while relaying");
            }
        });
        assert!(task.await.is_err(), "the task panicked");
        assert_eq!((e.load(), s.limits.used(Limit::MaxRequests)), (0, 0));
        assert_eq!(e.pool.idle_connections(), 0);
    }

    #[tokio::test]
    async fn health_checks_neither_count_in_flight_nor_report_outcomes() {
        let s = service(upstream().await);
        let e = endpoint(&s);
        let mut exchange = Exchange::probe(e.clone());
        assert_eq!(e.load(), 0);
        let Judged::Response(response) = exchange.send(get("/"), None).await else {
            panic!("no response");
        };
        exchange
            .discard(response.into_body(), 1024)
            .await
            .expect_err("a 64 KiB body is larger than the limit");
        assert_eq!(
            e.pool.idle_connections(),
            0,
            "an oversized answer closes the connection"
        );
    }

    /// An upstream that answers the first request of every connection and closes the
    /// connection when a second one arrives on it, without answering (as a server whose
    /// keep-alive timeout races the next request does); counts the connections.
    async fn answers_once_per_connection() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    if socket.read(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if socket.write_all(ok).await.is_err() {
                        return;
                    }
                    // The next request is read and the connection dropped unanswered.
                    let _ = socket.read(&mut buf).await;
                });
            }
        });
        (address, accepted)
    }

    #[tokio::test]
    async fn a_request_a_reused_connection_dropped_unanswered_is_sent_again_on_a_new_one() {
        let (address, accepted) = answers_once_per_connection().await;
        let s = service(address);
        let e = endpoint(&s);
        for _ in 0..2 {
            let mut exchange = Exchange::request(&s, e.clone());
            let Judged::Response(response) = exchange.send(get("/"), None).await else {
                panic!("the pool hides the race: the client gets the answer");
            };
            assert_eq!(response.status(), 200);
            exchange
                .discard(response.into_body(), usize::MAX)
                .await
                .expect("body");
        }
        assert_eq!(
            accepted.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the second request went to a new connection"
        );
        assert!(
            !e.outlier.is_ejected(),
            "a race of the pool is not the endpoint's failure"
        );
    }
}
