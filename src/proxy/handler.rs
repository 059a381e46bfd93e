//! The life of one proxied HTTP request, as named phases in the order of DESIGN §1:
//!
//! 1. `route`: find the first route whose match holds (else 404 `no_route`);
//! 2. `split`: choose a weighted backend service;
//! 3. `upstream_peer`: the service's balancer chooses an endpoint (else 503
//!    `no_healthy_endpoint`);
//! 4. `upstream_request`: rewrite headers and target for the upstream;
//! 5. `send`: exchange with the endpoint within the route timeout (502 `connect_failed`,
//!    502 `upstream_reset`, 504 `timeout`);
//! 6. `response`: strip hop-by-hop fields and stream the body back;
//! 7. `logging`: runs when the body ends (see [`super::finish`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::HeaderValue;
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;

use super::finish::{Finish, Placement};
use super::headers;
use super::response::{error_response, ResponseBody};
use crate::body::{RequestBody, SharedBody};
use crate::error::{ErrorCode, ProxyError};
use crate::snapshot::Snapshot;
use crate::upstream::{InFlight, UpstreamError};

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
    let mut finish = Finish {
        snapshot,
        listener: conn.listener,
        client: conn.client,
        started: Instant::now(),
        method: req.method().clone(),
        uri: req.uri().clone(),
        placement: None,
        status: 0,
        error: None,
        reusable: None,
        request_body: None,
    };
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

    // Phase 3: upstream peer.
    let Some(endpoint) = service.pick(req.headers()) else {
        let err = ProxyError::new(
            ErrorCode::NoHealthyEndpoint,
            format!("service {} has no endpoint available", service.name),
        );
        return Ok(error_response(&err, finish));
    };
    let in_flight = InFlight::start(&endpoint);

    // Phase 4: upstream request.
    let (mut parts, body) = req.into_parts();
    headers::to_upstream(
        &mut parts,
        &conn.client_ip,
        service.protocol,
        &endpoint.label,
    );
    let body = if body.is_end_stream() {
        RequestBody::Streaming(body)
    } else {
        let shared: SharedBody = Arc::new(Mutex::new(Some(body)));
        finish.request_body = Some(shared.clone());
        RequestBody::Shared(shared)
    };
    let upstream_req = Request::from_parts(parts, body);

    // Phase 5: send.
    let sent = match route.timeout {
        None => Ok(endpoint.pool.send(upstream_req).await),
        Some(limit) => tokio::time::timeout(limit, endpoint.pool.send(upstream_req)).await,
    };
    let failure = match sent {
        Ok(Ok(exchange)) => {
            // Phase 6: response.
            let (mut parts, body) = exchange.response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            finish.status = parts.status.as_u16();
            finish.reusable = exchange.reusable;
            finish.placement = Some(Placement {
                route: route_idx,
                backend: backend_idx,
                endpoint: Some((endpoint, in_flight)),
            });
            return Ok(Response::from_parts(
                parts,
                ResponseBody::upstream(body, finish),
            ));
        }
        Ok(Err(UpstreamError::Connect(why))) => ProxyError::new(
            ErrorCode::ConnectFailed,
            format!(
                "could not connect to endpoint {} of service {}: {why}",
                endpoint.label, service.name
            ),
        ),
        Ok(Err(e @ UpstreamError::Reset(_))) => ProxyError::new(
            ErrorCode::UpstreamReset,
            format!(
                "endpoint {} of service {}: {e}",
                endpoint.label, service.name
            ),
        ),
        Err(_) => ProxyError::new(
            ErrorCode::Timeout,
            format!(
                "route {} timed out after {} waiting for endpoint {} of service {}",
                route.name,
                crate::config::format_duration(route.timeout.unwrap_or_default()),
                endpoint.label,
                service.name
            ),
        ),
    };
    finish.placement = Some(Placement {
        route: route_idx,
        backend: backend_idx,
        endpoint: Some((endpoint, in_flight)),
    });
    Ok(error_response(&failure, finish))
}
