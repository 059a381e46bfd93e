//! The life of one proxied HTTP request, as named phases in the order of DESIGN §1:
//!
//! 1. `route`: find the first route whose match holds (else 404 `no_route`);
//! 2. `split`: choose a weighted backend service;
//! 3. `fault`: injected delay or abort (`fault_abort`);
//! 4. `admission`: the service's circuit breaker (503 `circuit_open`) and `max_requests`
//!    (503 `overflow`);
//! 5. `request body`: buffered (up to 64 KiB) when retries or mirroring need a copy, else
//!    streamed; mirrored copies leave here;
//! 6. `send`: attempts at endpoints within the route timeout, retried per policy (see
//!    [`super::attempts`]; 502 `connect_failed`, 502 `upstream_reset`, 504 `timeout`, 503
//!    `no_healthy_endpoint`);
//! 7. `response`: strip hop-by-hop fields and stream the body back;
//! 8. `logging`: runs when the body ends (see [`super::finish`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::HeaderValue;
use http::{request, Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::attempts::{self, Outgoing, Sent};
use super::finish::{Finish, Placement};
use super::response::{error_response, ResponseBody};
use crate::body::{RequestBody, SharedBody};
use crate::error::{ErrorCode, ProxyError};
use crate::headers;
use crate::route::replay::{self, Replayable};
use crate::route::Route;
use crate::snapshot::Snapshot;
use crate::upstream::limits::Limit;

/// What every request on one downstream connection shares.
#[derive(Debug)]
pub struct Connection {
    /// The current configuration snapshot (swapped on reload).
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// Index of the listener that accepted the connection.
    pub listener: usize,
    /// The client's address.
    pub client: SocketAddr,
    /// The client's IP as a header value, formatted once per connection for
    /// `x-forwarded-for`.
    pub client_ip: HeaderValue,
}

impl Connection {
    /// State for a newly accepted connection.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, listener: usize, client: SocketAddr) -> Self {
        let client_ip = HeaderValue::from_str(&client.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Connection {
            snapshot,
            listener,
            client,
            client_ip,
        }
    }
}

/// Proxies one request. Never fails: every error becomes a response that says why.
pub async fn handle(
    conn: Arc<Connection>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let snapshot = conn.snapshot.load_full();
    let mut finish = Finish::new(
        snapshot,
        conn.listener,
        conn.client,
        req.method().clone(),
        req.uri().clone(),
    );
    let snapshot = finish.snapshot.clone();
    let table = &snapshot.listeners[conn.listener];

    // Phase 1: route.
    let Some(route_idx) = table.find(&req) else {
        let err = ProxyError::new(
            ErrorCode::NoRoute,
            format!(
                "no route of listener {} matches {} {}",
                table.listener,
                req.method(),
                req.uri().path()
            ),
        );
        return Ok(error_response(&err, finish));
    };
    let route = &table.routes[route_idx];

    // Phase 2: split.
    let Some(backend_idx) = route.pick_backend() else {
        let err = ProxyError::new(
            ErrorCode::NoHealthyEndpoint,
            format!("route {} has no backend with a non-zero weight", route.name),
        );
        return Ok(error_response(&err, finish));
    };
    let backend = &route.backends[backend_idx];
    let service = &backend.service;
    finish.placement = Some(Placement {
        route: route_idx,
        backend: backend_idx,
        endpoint: None,
    });

    // Phase 3: fault injection.
    if let Some(fault) = &route.fault {
        let decision = fault.decide();
        if let Some(delay) = decision.delay {
            tokio::time::sleep(delay).await;
        }
        if let Some(status) = decision.abort {
            let err = ProxyError::with_status(
                ErrorCode::FaultAbort,
                status,
                format!(
                    "fault injection aborted the request on route {} with {status}",
                    route.name
                ),
            );
            return Ok(error_response(&err, finish));
        }
    }

    // Phase 4: request body. The route timeout bounds everything from here on.
    let deadline = route.timeout.map(|t| Instant::now() + t);
    let (parts, body) = req.into_parts();
    let outgoing = match request_body(route, &mut finish, parts, body, deadline).await {
        Ok(outgoing) => outgoing,
        Err(err) => return Ok(error_response(&err, finish)),
    };

    // Phase 5: admission: the circuit breaker, then `max_requests`.
    let admission = match service.breaker.as_ref().map(|b| b.admit()) {
        None => None,
        Some(Ok(admission)) => Some(admission),
        Some(Err(refusal)) => return Ok(error_response(&ProxyError::from(refusal), finish)),
    };
    match service.limits.acquire(Limit::MaxRequests) {
        Ok(slot) => finish.held.request_slot = Some(slot),
        Err(overflow) => {
            let err = ProxyError::new(
                ErrorCode::Overflow,
                format!("service {}: {overflow}", service.name),
            );
            return Ok(error_response(&err, finish));
        }
    }
    if route.retries.is_some() {
        finish.held.active = Some(backend.retry_budget.request_started());
    }

    // Phase 6: send (attempts and retries).
    let result = attempts::send(route, backend, &conn.client_ip, outgoing, deadline).await;
    if let (Some(admission), Some(outcome)) = (admission, result.outcome) {
        admission.record(outcome);
    }
    finish.placement = Some(Placement {
        route: route_idx,
        backend: backend_idx,
        endpoint: result.endpoint,
    });
    match result.sent {
        // Phase 7: response.
        Sent::Response(exchange) => {
            let (mut parts, body) = exchange.response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            finish.status = parts.status.as_u16();
            finish.reusable = exchange.reusable;
            Ok(Response::from_parts(
                parts,
                ResponseBody::upstream(body, finish),
            ))
        }
        Sent::Failed(err) => Ok(error_response(&err, finish)),
    }
}

/// Largest request body buffered so that it can be retried or mirrored.
const REPLAY_LIMIT: usize = 64 * 1024;

/// How long a client may take to send a body weir buffers, when the route sets no timeout.
const BODY_BUFFER_TIMEOUT: Duration = Duration::from_secs(30);

/// The request as it will be sent. When the route retries or mirrors, a body of known
/// length up to 64 KiB (or none) is buffered so it can be sent again; a streaming body
/// (gRPC streams, chunked or large uploads) flows as it comes and is neither retried nor
/// mirrored, since waiting for its end could wait forever. A body that streams is shared
/// with the exchange, which drops it once the response has ended.
async fn request_body(
    route: &Route,
    finish: &mut Finish,
    parts: request::Parts,
    body: Incoming,
    deadline: Option<Instant>,
) -> Result<Outgoing, ProxyError> {
    let wants_copy = route.retries.is_some() || route.mirror.is_some();
    let small = body.is_end_stream()
        || body
            .size_hint()
            .exact()
            .is_some_and(|n| n <= REPLAY_LIMIT as u64);
    if !(wants_copy && small) {
        if body.is_end_stream() {
            return Ok(Outgoing::Once(Some((parts, RequestBody::Streaming(body)))));
        }
        let shared: SharedBody = Arc::new(Mutex::new(Some(body)));
        finish.request_body = Some(shared.clone());
        return Ok(Outgoing::Once(Some((parts, RequestBody::Shared(shared)))));
    }
    let buffered = if body.is_end_stream() {
        // Nothing to wait for (GET, HEAD, …): no timer on the common path.
        Ok(replay::buffer_for_replay(body, REPLAY_LIMIT).await)
    } else {
        let until = deadline.unwrap_or_else(|| Instant::now() + BODY_BUFFER_TIMEOUT);
        tokio::time::timeout_at(until, replay::buffer_for_replay(body, REPLAY_LIMIT)).await
    };
    match buffered {
        Err(_) => Err(ProxyError::with_status(
            ErrorCode::Timeout,
            408,
            format!(
                "the client did not send its request body on route {} in time",
                route.name
            ),
        )),
        Ok(Err(e)) => Err(ProxyError::with_status(
            ErrorCode::UpstreamReset,
            400,
            format!("the client's request body failed: {e}"),
        )),
        Ok(Ok(Replayable::NotReplayable(body))) => Ok(Outgoing::Once(Some((parts, body)))),
        Ok(Ok(Replayable::Bytes(data, trailers))) => {
            if let Some(mirror) = &route.mirror {
                mirror.maybe_send(&parts, Some(&data));
            }
            Ok(Outgoing::Replayable {
                method: parts.method,
                uri: parts.uri,
                version: parts.version,
                headers: parts.headers,
                body: data,
                trailers,
            })
        }
    }
}
