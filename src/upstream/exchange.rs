//! One upstream exchange: a request sent to one endpoint and the response that comes back.
//!
//! The [`Exchange`] is the one owner of everything an attempt holds: the endpoint lease
//! (its in-flight count), the connection checked out of the endpoint's pool, the retry
//! permit of a retry, and, for the attempt whose answer is relayed, the request's
//! `max_requests` slot, retry-budget share and circuit-breaker admission. Dropping it, on
//! any path (success, error, client gone, timeout, unwinding), gives all of it back exactly
//! once; a connection goes back to the pool only through [`Exchange::finish`] after a
//! response body ended cleanly, and closes otherwise.
//!
//! The exchange also judges **who failed**. A client body that broke off or was malformed,
//! or a client too slow to send it, is the client's fault ([`Judged::Client`]) and is
//! recorded nowhere; only the endpoint's own failures are reported to outlier detection
//! (as they happen) and to the circuit breaker (once, for the request).

use std::sync::Arc;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::circuit_breaker::Admission;
use super::endpoint::{Endpoint, InFlight};
use super::limits::{LimitGuard, Overflow};
use super::outcome::Outcome;
use super::pool::{Checkout, UpstreamError};
use super::retry_budget::{ActiveRequest, RetryPermit};
use super::service::Service;
use crate::body::{ClientBody, ClientFault, RequestBody};

/// What one exchange came to.
#[derive(Debug)]
pub enum Judged {
    /// Response headers arrived.
    Response(Response<Incoming>),
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
    connection: Option<Checkout>,
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
            connection: None,
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

    async fn attempt(&mut self, req: Request<RequestBody>, deadline: Option<Instant>) -> Judged {
        self.client_body = req.body().client_body().cloned();
        let sent = match deadline {
            None => Some(self.endpoint.pool.send(req).await),
            Some(deadline) => tokio::time::timeout_at(deadline, self.endpoint.pool.send(req))
                .await
                .ok(),
        };
        match sent {
            Some(Ok((response, connection))) => {
                self.connection = connection;
                Judged::Response(response)
            }
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

    /// Ends the exchange once the response body is over: a body that ended cleanly returns
    /// the connection to the pool; whatever of the request the upstream has not read is
    /// unwanted either way.
    pub fn finish(mut self, complete: bool) {
        if let Some(body) = self.client_body.take() {
            body.stop();
        }
        if complete {
            if let Some(connection) = self.connection.take() {
                self.endpoint.pool.check_in(connection);
            }
        }
    }

    /// Reads a response body to its end and discards it (health checks, mirrored copies),
    /// so the connection can be reused; a body larger than `max` bytes, or one that fails,
    /// closes it instead.
    pub async fn discard(self, mut body: Incoming, max: usize) -> Result<(), String> {
        let mut left = max;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Some(data) = frame.data_ref() {
                left = left
                    .checked_sub(data.len())
                    .ok_or_else(|| format!("the answer's body is larger than {max} bytes"))?;
            }
        }
        self.finish(true);
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
