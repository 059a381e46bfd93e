//! The life of one proxied HTTP request, as named phases in the order of DESIGN §1. Each
//! phase is a function below; [`proxy`] runs them in order and any of them may end the
//! request with the error weir answers with:
//!
//! 0. `trace`: read the caller's trace context, decide sampling, write weir's context on
//!    the request it forwards and start a span when sampled (see
//!    [`crate::telemetry::trace::tracer`]); [`authorize`]: on a listener with TLS, the
//!    peer's identity against its `allow` list (403 `identity_denied`); then
//!    [`check_head`]: refuse a request head weir must not forward (400 `bad_request`);
//! 1. [`route`]: find the first route whose match holds (else 404 `no_route`);
//! 2. [`split`]: choose a weighted backend service;
//! 3. [`inject_fault`]: injected delay or abort (`fault_abort`);
//! 4. [`request_body`]: buffered (up to 64 KiB) when retries or mirroring need a copy, else
//!    streamed; mirrored copies leave here (400 `bad_request`, 408 `client_timeout` when
//!    the client fails to send it);
//! 5. [`admit`]: the service's circuit breaker (503 `circuit_open`) and `max_requests`
//!    (503 `overflow`);
//! 6. `send`: attempts at endpoints within the route timeout, retried per policy (see
//!    [`super::attempts`]; 502 `connect_failed`, 502 `upstream_reset`, 504 `timeout`, 503
//!    `no_healthy_endpoint`, and the client's faults);
//! 7. [`respond`]: strip hop-by-hop fields and stream the body back, or, for a request
//!    that switched protocols (WebSocket), answer `101` and relay both ways (see
//!    [`super::upgrade`]);
//! 8. `logging`: runs when the body ends (see [`super::finish`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{request, Request, Response, StatusCode};
use http_body::Body;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tokio::time::Instant;

use super::attempts::{self, Hop, Outgoing, Sent};
use super::connection::Connection;
use super::finish::{Finish, Placement};
use super::response::{client_gone_response, error_response, ResponseBody};
use super::upgrade;
use crate::body::{ClientFault, RequestBody};
use crate::config::UpstreamProtocol;
use crate::error::ProxyError;
use crate::headers;
use crate::route::matcher::Origin;
use crate::route::replay::{self, Replayable, REPLAY_LIMIT};
use crate::route::{Route, RouteBackend, RouteTable};
use crate::upstream::limits::Limit;
use crate::upstream::response::UpstreamBody;
use crate::upstream::RequestHolds;

/// How a request ended, before its response is built.
enum Answer {
    /// The upstream's response, relayed.
    Upstream(Response<UpstreamBody>),
    /// The upstream agreed to switch protocols: its `101`, and the client's side of the
    /// switch, which hyper hands over once the `101` is written.
    Switched(Response<UpstreamBody>, OnUpgrade),
    /// An error weir answers with itself.
    Error(ProxyError),
    /// The client left while its body was being sent.
    ClientGone,
}

impl From<ProxyError> for Answer {
    fn from(err: ProxyError) -> Self {
        Answer::Error(err)
    }
}

/// Proxies one request. Never fails: every error becomes a response that says why.
pub async fn handle(
    conn: Arc<Connection>,
    mut req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    conn.clock.request_started();
    // The routes in force now serve this request to its end, whatever a reload does.
    let mut finish = Finish::new(&conn, conn.routes.load_full(), &req);
    if let Some(tracer) = &finish.table.tracer {
        finish.span = tracer.begin(&mut req, finish.table.span_kind);
    }
    let version = req.version();
    let answer = proxy(&conn, req, &mut finish)
        .await
        .unwrap_or_else(|answer| answer);
    Ok(respond(answer, finish, version))
}

/// Runs the phases in order; `Err` is an answer that ended the request early.
async fn proxy(
    conn: &Connection,
    mut req: Request<Incoming>,
    finish: &mut Finish,
) -> Result<Answer, Answer> {
    // The request's own hold on the table (one reference count per request, in `finish`).
    let table = &*finish.table;
    authorize(conn, table)?;
    check_head(&req)?;
    let route_index = route(table, &req, &Origin::of(conn))?;
    let route = &table.routes[route_index];
    let backend_index = split(route)?;
    let backend = &route.backends[backend_index];
    finish.placement = Some(Placement {
        route: route_index,
        backend: backend_index,
        exchange: None,
    });
    // Switching protocols needs an HTTP/1.1 connection upstream too. Boxed: only a
    // request that switches pays for the space in every request's future.
    // A request with a body is not switched: the tunnel would start before the body ends.
    let switch = upgrade::requested(&route.upgrades, &req)
        .filter(|_| backend.service.protocol == UpstreamProtocol::Http1)
        .filter(|_| req.body().is_end_stream())
        .map(|protocol| {
            Box::new(upgrade::Switch {
                protocol,
                client: hyper::upgrade::on(&mut req),
            })
        });
    inject_fault(route).await?;
    // The route timeout bounds everything from here on.
    let deadline = route.timeout.map(|t| Instant::now() + t);
    let (parts, body) = req.into_parts();
    let outgoing = request_body(route, parts, body, deadline, conn.stream_idle).await?;
    let holds = admit(route, backend)?;
    let hop = Hop {
        client: &conn.downstream,
        upgrade: switch.as_ref().map(|s| &s.protocol),
        span: finish.span.as_deref_mut(),
    };
    let sent = attempts::send(route, backend, outgoing, deadline, holds, hop).await;
    if let Some(placement) = &mut finish.placement {
        placement.exchange = sent.exchange;
    }
    Ok(match sent.sent {
        Sent::Response(response) => match switch {
            Some(switch) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                Answer::Switched(response, switch.client)
            }
            _ => Answer::Upstream(response),
        },
        Sent::Failed(err) => Answer::Error(err),
        Sent::ClientGone => Answer::ClientGone,
    })
}

/// Phase 0: on a listener with TLS, whether the connection's peer may send requests (the
/// decision was taken at the handshake; each request counts it).
fn authorize(conn: &Connection, table: &RouteTable) -> Result<(), ProxyError> {
    let Some(peer) = &conn.peer else {
        return Ok(());
    };
    peer.counter.inc();
    match peer.allowed {
        true => Ok(()),
        false => Err(ProxyError::identity_denied(
            peer.peer.as_deref(),
            &table.listener,
        )),
    }
}

/// Phase 0: a request weir must not forward. Two `host` fields name two different targets
/// (RFC 9110 §7.2: a request has one): a proxy and the application behind it could each
/// believe another, so it is refused.
fn check_head(req: &Request<Incoming>) -> Result<(), ProxyError> {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    if hosts.next().is_some() && hosts.next().is_some() {
        return Err(ProxyError::bad_request(
            "the request has more than one host field",
        ));
    }
    Ok(())
}

/// Phase 1: the first route of the listener whose match holds.
fn route(
    table: &RouteTable,
    req: &Request<Incoming>,
    origin: &Origin<'_>,
) -> Result<usize, ProxyError> {
    table
        .find(req, origin)
        .ok_or_else(|| ProxyError::no_route(&table.listener, req.method(), req.uri().path()))
}

/// Phase 2: a backend of the route, by weight.
fn split(route: &Route) -> Result<usize, ProxyError> {
    route
        .pick_backend()
        .ok_or_else(|| ProxyError::no_backend(&route.name))
}

/// Phase 3: the route's fault injection, a delay and then perhaps an abort.
async fn inject_fault(route: &Route) -> Result<(), ProxyError> {
    let Some(fault) = &route.fault else {
        return Ok(());
    };
    let decision = fault.decide();
    if let Some(delay) = decision.delay {
        // Boxed: only fault-injecting routes pay for the timer's space.
        Box::pin(tokio::time::sleep(delay)).await;
    }
    match decision.abort {
        Some(status) => Err(ProxyError::fault_abort(&route.name, status)),
        None => Ok(()),
    }
}

/// Phase 5: the circuit breaker, then `max_requests`, then the request's share of the
/// retry budget; what they grant is held until the response ends.
fn admit(route: &Route, backend: &RouteBackend) -> Result<RequestHolds, ProxyError> {
    let service = &backend.service;
    let admission = match service.breaker.as_ref().map(|b| b.admit()) {
        None => None,
        Some(Ok(admission)) => Some(admission),
        Some(Err(refusal)) => return Err(ProxyError::circuit_open(&refusal)),
    };
    let request_slot = service
        .limits
        .acquire(Limit::MaxRequests)
        .map_err(|overflow| ProxyError::overflow(&service.name, &overflow))?;
    Ok(RequestHolds {
        request_slot: Some(request_slot),
        active: route
            .retries
            .as_ref()
            .map(|_| backend.retry_budget.request_started()),
        admission,
    })
}

/// Phase 7: the response the client gets, in the client's own HTTP version whatever the
/// upstream spoke, carrying the logging phase in its body.
fn respond(answer: Answer, mut finish: Finish, version: http::Version) -> Response<ResponseBody> {
    match answer {
        Answer::Upstream(response) => {
            let (mut parts, body) = response.into_parts();
            parts.version = version;
            headers::strip_hop_by_hop(&mut parts.headers);
            finish.status = parts.status.as_u16();
            Response::from_parts(parts, ResponseBody::upstream(body, finish))
        }
        Answer::Switched(response, client) => {
            let (mut parts, mut body) = response.into_parts();
            let Some(upstream) = body.take_switched() else {
                // Only an HTTP/1.1 answer switches; anything else is relayed as it is.
                return respond(
                    Answer::Upstream(Response::from_parts(parts, body)),
                    finish,
                    version,
                );
            };
            upgrade::answer_client(&mut parts.headers);
            finish.status = parts.status.as_u16();
            upgrade::tunnel(client, upstream, finish);
            Response::from_parts(parts, ResponseBody::empty())
        }
        Answer::Error(err) => error_response(&err, finish),
        Answer::ClientGone => client_gone_response(finish),
    }
}

/// How long a client may take to send a body weir buffers, when the route sets no timeout.
const BODY_BUFFER_TIMEOUT: Duration = Duration::from_secs(30);

/// Phase 4: the request as it will be sent. When the route retries or mirrors, a body of
/// known length up to 64 KiB (or none) is buffered so it can be sent again; a streaming body
/// (gRPC streams, chunked or large uploads) flows as it comes and is neither retried nor
/// mirrored, since waiting for its end could wait forever.
async fn request_body(
    route: &Route,
    parts: request::Parts,
    body: Incoming,
    deadline: Option<Instant>,
    stream_idle: Duration,
) -> Result<Outgoing, Answer> {
    if body.is_end_stream() {
        if let Some(mirror) = &route.mirror {
            mirror.maybe_send(&parts, None);
        }
        return Ok(match route.retries {
            Some(_) => Outgoing::replayable(parts, Default::default(), None),
            None => Outgoing::Once(Some((parts, RequestBody::empty()))),
        });
    }
    let wants_copy = route.retries.is_some() || route.mirror.is_some();
    let small = body
        .size_hint()
        .exact()
        .is_some_and(|n| n <= REPLAY_LIMIT as u64);
    if !(wants_copy && small) {
        return Ok(Outgoing::Once(Some((
            parts,
            RequestBody::client(None, body, stream_idle),
        ))));
    }
    let until = deadline.unwrap_or_else(|| Instant::now() + BODY_BUFFER_TIMEOUT);
    // Boxed: only routes that retry or mirror a body pay for the buffering's space.
    let buffered = Box::pin(tokio::time::timeout_at(
        until,
        replay::buffer_for_replay(body, REPLAY_LIMIT, stream_idle),
    ))
    .await
    .map_err(|_| ProxyError::client_timeout(&route.name))?;
    match buffered {
        Err(e) => Err(match ClientFault::of_body_error(&e) {
            ClientFault::Gone => Answer::ClientGone,
            fault => ProxyError::bad_request_body(&fault).into(),
        }),
        Ok(Replayable::NotReplayable(body)) => Ok(Outgoing::Once(Some((parts, body)))),
        Ok(Replayable::Bytes(data, trailers)) => {
            if let Some(mirror) = &route.mirror {
                mirror.maybe_send(&parts, Some(&data));
            }
            Ok(Outgoing::replayable(parts, data, trailers))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::proxy::client_timeouts::ClientClock;
    use crate::snapshot::Snapshot;
    use crate::telemetry::metrics::Metrics;

    /// The bytes every in-flight request costs for its future (the whole request path:
    /// route, body, admission, attempts, exchange): 5,392 when this was written, after the
    /// cold paths (HTTP/2, connecting, waiting for a connection, buffering for replay,
    /// fault delays, retry backoff) were boxed out of it; 5,648 once protocol upgrades
    /// added a boxed switch and its protocol held across the send phase. Raise it only on
    /// purpose: a sidecar holds one per concurrent request, in every pod.
    const REQUEST_FUTURE_LIMIT: usize = 5696;

    #[tokio::test]
    async fn the_per_request_future_stays_small() {
        let text = "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        retries: { attempts: 1 }\n        backends: [{ service: s }]\nservices:\n  - { name: s, endpoints: [\"127.0.0.1:9\"] }\n";
        let config = crate::config::load_str("t.yaml", text)
            .expect("valid")
            .config;
        let snapshot = Snapshot::build(config, &Metrics::new(), None).expect("builds");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let conn = Arc::new(Connection::new(
            Arc::new(arc_swap::ArcSwap::new(snapshot.listeners[0].clone())),
            address,
            ClientClock::new(),
            Duration::from_secs(300),
        ));
        let size = Arc::new(AtomicUsize::new(0));
        let server = tokio::spawn({
            let size = size.clone();
            async move {
                let (stream, _) = listener.accept().await.expect("accept");
                let measure = service_fn(move |req: Request<Incoming>| {
                    let future = handle(conn.clone(), req);
                    size.store(std::mem::size_of_val(&future), Ordering::SeqCst);
                    async { Ok::<_, Infallible>(Response::new(ResponseBody::full("ok"))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), measure)
                    .await;
            }
        });
        let io = TokioIo::new(TcpStream::connect(address).await.expect("connect"));
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let answer = sender
            .send_request(
                Request::get("/")
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .expect("request"),
            )
            .await
            .expect("answer");
        let _ = answer.into_body().collect().await;
        let size = size.load(Ordering::SeqCst);
        assert!(size > 0, "measured");
        assert!(
            size <= REQUEST_FUTURE_LIMIT,
            "the per-request future grew to {size} bytes (limit {REQUEST_FUTURE_LIMIT})"
        );
        server.abort();
    }
}
