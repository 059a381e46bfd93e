//! The `send` phase: one attempt at an endpoint, or several when the route retries.
//!
//! Each attempt is an [`Exchange`] at an endpoint (a different one from those already tried
//! while the rotation has one), sent within the per-try timeout and the route's remaining
//! time; the exchange judges who failed and reports the endpoint's failures. The retry
//! policy, the retry budget and the service's `max_retries` then decide whether another
//! attempt may follow, after a jittered backoff. The last exchange settles the request: it
//! takes the request's slots and resolves the circuit breaker with its outcome.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderMap;
use http::{request, HeaderValue, Method, Request, Uri, Version};
use tokio::time::Instant;

use crate::body::{ClientFault, RequestBody};
use crate::error::ProxyError;
use crate::headers::{self, Downstream};
use crate::route::{Route, RouteBackend};
use crate::telemetry::trace::span::Recording;
use crate::upstream::limits::Limit;
use crate::upstream::response::UpstreamBody;
use crate::upstream::{Endpoint, Exchange, Judged, Outcome, RequestHolds, UpstreamFailure};

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
        trailers: Option<Box<HeaderMap>>,
    },
}

impl Outgoing {
    /// A request whose whole body (and trailers) weir holds, so it can be sent again.
    pub fn replayable(parts: request::Parts, body: Bytes, trailers: Option<HeaderMap>) -> Self {
        Outgoing::Replayable {
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            body,
            trailers: trailers.map(Box::new),
        }
    }

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
    Response(http::Response<UpstreamBody>),
    /// No usable response: the error weir answers with.
    Failed(ProxyError),
    /// The client went away while its body was being sent.
    ClientGone,
}

/// The result of the `send` phase: how it ended, and the last attempt's exchange, which
/// holds the request's slots and the endpoint's in-flight count until the response ends.
#[derive(Debug)]
pub struct SendResult {
    /// What happened.
    pub sent: Sent,
    /// The exchange of the last attempt, when there was one.
    pub exchange: Option<Exchange>,
}

/// What every attempt of a request carries besides the request itself.
#[derive(Debug)]
pub struct Hop<'a> {
    /// The client, for `x-forwarded-*`.
    pub client: &'a Downstream,
    /// The protocol switch the request asks for, when its route allows it.
    pub upgrade: Option<&'a HeaderValue>,
    /// The request's span, when it is recorded (retries become its events).
    pub span: Option<&'a mut Recording>,
}

/// Runs the attempts of one request, all of them (and their backoffs) before `deadline`.
pub async fn send(
    route: &Route,
    backend: &RouteBackend,
    mut outgoing: Outgoing,
    deadline: Option<Instant>,
    holds: RequestHolds,
    hop: Hop<'_>,
) -> SendResult {
    let Hop {
        client,
        upgrade,
        mut span,
    } = hop;
    let service = &backend.service;
    let policy = route.retries.as_ref().filter(|_| outgoing.can_replay());
    let mut tried: Vec<Arc<Endpoint>> = Vec::new();
    let mut retries_done = 0u32;
    // Permits of the retry about to be sent; its exchange holds them.
    let mut retry_permits = None;
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
            return SendResult {
                sent: Sent::Failed(ProxyError::no_endpoint(&service.name)),
                exchange: None,
            };
        };
        let mut exchange = Exchange::request(service, endpoint);
        if let Some((permit, slot)) = retry_permits.take() {
            exchange.hold_retry(permit, slot);
        }
        headers::to_upstream(
            &mut parts,
            client,
            service.protocol,
            &exchange.endpoint().label,
        );
        if let Some(protocol) = upgrade {
            super::upgrade::ask_upstream(&mut parts.headers, protocol);
        }

        // The attempt is bounded by the route's deadline and the per-try timeout.
        let per_try = policy.and_then(|p| p.per_try_timeout());
        let per_try_deadline = per_try.map(|t| Instant::now() + t);
        let attempt_deadline = deadline.into_iter().chain(per_try_deadline).min();
        let judged = exchange
            .send(Request::from_parts(parts, body), attempt_deadline)
            .await;
        let outcome = match &judged {
            Judged::Response(r) => Some(Outcome::Response(r.status().as_u16())),
            Judged::Upstream(outcome, _) => Some(*outcome),
            Judged::Client(_) | Judged::Refused(_) => None,
        };

        // Retry only when the policy wants it, attempts are left, the backoff ends before
        // the route's deadline, another endpoint can take it, and the budget and
        // `max_retries` allow it; otherwise this attempt's result is the answer.
        let mut pause = Duration::ZERO;
        let may_retry = match (policy, outcome) {
            (Some(p), Some(outcome)) if p.retryable(outcome) => {
                pause = p.backoff(retries_done + 1);
                if retries_done >= p.retries() {
                    backend.retry_counters.exhausted.inc();
                    false
                } else if deadline.is_some_and(|d| Instant::now() + pause >= d) {
                    false
                } else {
                    tried.push(exchange.endpoint().clone());
                    next_endpoint = outgoing
                        .headers()
                        .and_then(|h| service.pick_other(h, &tried));
                    if next_endpoint.is_none() {
                        false
                    } else if let Some(budget) = backend.retry_budget.try_retry() {
                        match service.limits.acquire(Limit::MaxRetries) {
                            Ok(slot) => {
                                retry_permits = Some((budget, slot));
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
            exchange.settle(holds, outcome);
            let sent = answer(
                judged,
                &exchange,
                route,
                &service.name,
                per_try_deadline,
                deadline,
            );
            return SendResult {
                sent,
                exchange: Some(exchange),
            };
        }
        // The failed answer is dropped unread with its exchange; the connection closes
        // rather than returning to the pool with a half-read body.
        drop(judged);
        if let (Some(span), Some(outcome)) = (span.as_deref_mut(), outcome) {
            let status = match outcome {
                Outcome::Response(status) => Some(status),
                _ => None,
            };
            span.retry(&exchange.endpoint().label, retry_reason(outcome), status);
        }
        drop(exchange);
        backend.retry_counters.attempted.inc();
        retries_done += 1;
        // Boxed: only a retry pays for the backoff timer's space.
        Box::pin(tokio::time::sleep(pause)).await;
    }
}

/// Why an attempt was retried, as its span event says.
fn retry_reason(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Response(_) => "retriable_status",
        Outcome::ConnectFailed => "connect_failure",
        Outcome::Reset => "reset",
        Outcome::Timeout => "timeout",
        Outcome::Connected => "connected",
    }
}

/// What the client gets for the last attempt's judgement.
fn answer(
    judged: Judged,
    exchange: &Exchange,
    route: &Route,
    service: &str,
    per_try_deadline: Option<Instant>,
    deadline: Option<Instant>,
) -> Sent {
    let endpoint = &*exchange.endpoint().label;
    match judged {
        Judged::Response(response) => Sent::Response(response),
        Judged::Upstream(_, UpstreamFailure::Connect(why)) => {
            Sent::Failed(ProxyError::connect_failed(endpoint, service, &why))
        }
        Judged::Upstream(_, UpstreamFailure::Reset(why)) => {
            Sent::Failed(ProxyError::upstream_reset(endpoint, service, &why))
        }
        Judged::Upstream(_, UpstreamFailure::TimedOut) => {
            // The per-try timeout fired when it came before the route's deadline.
            let per_try_fired = match (per_try_deadline, deadline) {
                (Some(p), Some(d)) => p < d,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let retries = route.retries.as_ref();
            Sent::Failed(match retries.and_then(|p| p.per_try_timeout()) {
                Some(after) if per_try_fired => {
                    ProxyError::per_try_timeout(endpoint, service, after)
                }
                _ => ProxyError::route_timeout(
                    &route.name,
                    route.timeout.unwrap_or_default(),
                    endpoint,
                    service,
                ),
            })
        }
        Judged::Client(ClientFault::Malformed(why)) => {
            Sent::Failed(ProxyError::bad_request_body(&why))
        }
        Judged::Client(ClientFault::TooSlow) => {
            Sent::Failed(ProxyError::client_timeout(&route.name))
        }
        Judged::Client(ClientFault::Gone) => Sent::ClientGone,
        Judged::Refused(overflow) => Sent::Failed(ProxyError::overflow(service, &overflow)),
    }
}
