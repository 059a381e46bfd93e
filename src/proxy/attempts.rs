//! The `send` phase: one attempt at an endpoint, or several when the route retries.
//!
//! Each attempt picks an endpoint (a different one from those already tried while the
//! rotation has one), sends within the per-try timeout and the route's remaining time,
//! reports the outcome to outlier detection, and asks the retry policy, the retry budget and
//! the service's `max_retries` whether another attempt may follow, after a jittered backoff.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderMap;
use http::{request, HeaderValue, Method, Request, Uri, Version};
use tokio::time::Instant;

use crate::body::RequestBody;
use crate::config::format_duration;
use crate::error::{ErrorCode, ProxyError};
use crate::headers;
use crate::route::{Route, RouteBackend};
use crate::upstream::limits::Limit;
use crate::upstream::{Endpoint, Exchange, InFlight, Outcome, UpstreamError};

/// The request as it will be sent: once with a streaming body, or as a replayable copy.
#[derive(Debug)]
pub enum Outgoing {
    /// Sent once; the body streams and cannot be replayed.
    Once(Option<(request::Parts, RequestBody)>),
    /// Headers and a buffered body, copied for every attempt.
    Replayable {
        /// Request method.
        method: Method,
        /// Request target.
        uri: Uri,
        /// HTTP version of the client's request.
        version: Version,
        /// Request headers as the client sent them.
        headers: HeaderMap,
        /// The whole body.
        body: Bytes,
        /// Trailers that followed the body, if any.
        trailers: Option<HeaderMap>,
    },
}

impl Outgoing {
    fn can_replay(&self) -> bool {
        matches!(self, Outgoing::Replayable { .. })
    }

    /// The request headers of a replayable request (for choosing a retry's endpoint).
    fn headers(&self) -> Option<&HeaderMap> {
        match self {
            Outgoing::Replayable { headers, .. } => Some(headers),
            Outgoing::Once(_) => None,
        }
    }

    /// The next copy of the request, or `None` when a streaming request was already sent.
    fn next(&mut self) -> Option<(request::Parts, RequestBody)> {
        match self {
            Outgoing::Once(once) => once.take(),
            Outgoing::Replayable {
                method,
                uri,
                version,
                headers,
                body,
                trailers,
            } => {
                let mut req = Request::new(());
                *req.method_mut() = method.clone();
                *req.uri_mut() = uri.clone();
                *req.version_mut() = *version;
                *req.headers_mut() = headers.clone();
                let (parts, ()) = req.into_parts();
                let body = RequestBody::Replay {
                    data: (!body.is_empty()).then(|| body.clone()),
                    trailers: trailers.clone(),
                };
                Some((parts, body))
            }
        }
    }
}

/// How the `send` phase ended.
#[derive(Debug)]
pub enum Sent {
    /// Response headers arrived (the last attempt's).
    Response(Exchange),
    /// No usable response: the error weir answers with.
    Failed(ProxyError),
}

/// The result of the `send` phase: the outcome, and the endpoint of the last attempt (with
/// its in-flight slot) when there was one.
#[derive(Debug)]
pub struct SendResult {
    /// What happened.
    pub sent: Sent,
    /// The outcome of the last attempt, for the circuit breaker.
    pub outcome: Option<Outcome>,
    /// The endpoint of the last attempt.
    pub endpoint: Option<(Arc<Endpoint>, InFlight)>,
}

/// What one attempt produced.
enum Attempt {
    Answered(Exchange),
    Failed(UpstreamError),
    TimedOut { per_try: bool, after: Duration },
}

/// Runs the attempts of one request, all of them (and their backoffs) before `deadline`.
pub async fn send(
    route: &Route,
    backend: &RouteBackend,
    client_ip: &HeaderValue,
    mut outgoing: Outgoing,
    deadline: Option<Instant>,
) -> SendResult {
    let service = &backend.service;
    let policy = route.retries.as_ref().filter(|_| outgoing.can_replay());
    let mut tried: Vec<Arc<Endpoint>> = Vec::new();
    let mut retries_done = 0u32;
    // Permits of the retry in progress; released when the next attempt ends.
    let mut _retry_permits = None;
    // The endpoint chosen for the next retry when deciding to retry.
    let mut next_endpoint: Option<Arc<Endpoint>> = None;
    loop {
        let picked = match (next_endpoint.take(), &outgoing) {
            (Some(e), _) => Some(e),
            (None, Outgoing::Once(Some((parts, _)))) => service.pick(&parts.headers),
            (None, Outgoing::Replayable { headers, .. }) => service.pick_other(headers, &tried),
            (None, Outgoing::Once(None)) => None,
        };
        // A streaming request is taken by its one attempt; a replayable one is copied.
        let Some((endpoint, (mut parts, body))) = picked.zip(outgoing.next()) else {
            let err = ProxyError::new(
                ErrorCode::NoHealthyEndpoint,
                format!("service {} has no endpoint available", service.name),
            );
            return SendResult {
                sent: Sent::Failed(err),
                outcome: None,
                endpoint: None,
            };
        };
        let in_flight = InFlight::start(&endpoint);
        headers::to_upstream(&mut parts, client_ip, service.protocol, &endpoint.label);
        let req = Request::from_parts(parts, body);

        // The attempt is bounded by the route's remaining time and the per-try timeout.
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let per_try = policy.and_then(|p| p.per_try_timeout());
        let limit = remaining.into_iter().chain(per_try).min();
        let attempt = match limit {
            None => match endpoint.pool.send(req).await {
                Ok(exchange) => Attempt::Answered(exchange),
                Err(e) => Attempt::Failed(e),
            },
            Some(limit) => match tokio::time::timeout(limit, endpoint.pool.send(req)).await {
                Ok(Ok(exchange)) => Attempt::Answered(exchange),
                Ok(Err(e)) => Attempt::Failed(e),
                Err(_) => Attempt::TimedOut {
                    per_try: per_try == Some(limit),
                    after: limit,
                },
            },
        };
        let outcome = match &attempt {
            Attempt::Answered(exchange) => Outcome::Response(exchange.response.status().as_u16()),
            Attempt::Failed(UpstreamError::Connect(_)) => Outcome::ConnectFailed,
            Attempt::Failed(UpstreamError::Reset(_)) => Outcome::Reset,
            Attempt::Failed(e @ UpstreamError::Overflow(_)) => {
                // A limit of weir's, not a fault of the endpoint: no outlier report, no retry.
                return SendResult {
                    sent: Sent::Failed(failure(e, &endpoint, &service.name)),
                    outcome: None,
                    endpoint: Some((endpoint, in_flight)),
                };
            }
            Attempt::TimedOut { .. } => Outcome::Timeout,
        };
        service.record_attempt(&endpoint, outcome);

        // Retry only when the policy wants it, attempts are left, the backoff ends before
        // the route's deadline, another endpoint can take it, and the budget and
        // `max_retries` allow it; otherwise this attempt's result is the answer.
        let mut pause = Duration::ZERO;
        let may_retry = match policy {
            Some(p) if p.retryable(outcome) => {
                _retry_permits = None;
                pause = p.backoff(retries_done + 1);
                if retries_done >= p.retries() {
                    backend.retry_counters.exhausted.inc();
                    false
                } else if deadline.is_some_and(|d| Instant::now() + pause >= d) {
                    false
                } else {
                    tried.push(endpoint.clone());
                    next_endpoint = outgoing
                        .headers()
                        .and_then(|h| service.pick_other(h, &tried));
                    if next_endpoint.is_none() {
                        false
                    } else if let Some(budget) = backend.retry_budget.try_retry() {
                        match service.limits.acquire(Limit::MaxRetries) {
                            Ok(slot) => {
                                _retry_permits = Some((budget, slot));
                                true
                            }
                            Err(_) => {
                                backend.retry_counters.overflow.inc();
                                false
                            }
                        }
                    } else {
                        backend.retry_counters.budget_exhausted.inc();
                        false
                    }
                }
            }
            _ => false,
        };
        if !may_retry {
            let sent = match attempt {
                Attempt::Answered(exchange) => Sent::Response(exchange),
                Attempt::Failed(e) => Sent::Failed(failure(&e, &endpoint, &service.name)),
                Attempt::TimedOut {
                    per_try: true,
                    after,
                } => Sent::Failed(ProxyError::new(
                    ErrorCode::Timeout,
                    format!(
                        "endpoint {} of service {} did not answer within per_try_timeout {}",
                        endpoint.label,
                        service.name,
                        format_duration(after)
                    ),
                )),
                Attempt::TimedOut { per_try: false, .. } => Sent::Failed(ProxyError::new(
                    ErrorCode::Timeout,
                    format!(
                        "route {} timed out after {} waiting for endpoint {} of service {}",
                        route.name,
                        format_duration(route.timeout.unwrap_or_default()),
                        endpoint.label,
                        service.name
                    ),
                )),
            };
            return SendResult {
                sent,
                outcome: Some(outcome),
                endpoint: Some((endpoint, in_flight)),
            };
        }
        // The failed answer is dropped unread; its connection closes rather than returning
        // to the pool with a half-read body.
        drop(attempt);
        drop(in_flight);
        backend.retry_counters.attempted.inc();
        retries_done += 1;
        tokio::time::sleep(pause).await;
    }
}

/// The error weir answers with when an exchange failed before response headers.
fn failure(e: &UpstreamError, endpoint: &Endpoint, service: &str) -> ProxyError {
    match e {
        UpstreamError::Connect(why) => ProxyError::new(
            ErrorCode::ConnectFailed,
            format!(
                "could not connect to endpoint {} of service {service}: {why}",
                endpoint.label
            ),
        ),
        UpstreamError::Reset(_) => ProxyError::new(
            ErrorCode::UpstreamReset,
            format!("endpoint {} of service {service}: {e}", endpoint.label),
        ),
        UpstreamError::Overflow(o) => {
            ProxyError::new(ErrorCode::Overflow, format!("service {service}: {o}"))
        }
    }
}
