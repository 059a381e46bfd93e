//! `weir explain` and `GET /explain`: which route, backends, policies and (when running)
//! endpoints a request gets, and why, in sentences. Route matching is the router's own
//! ([`RouteTable::explain`]), so the answer cannot drift from what the proxy does.

pub mod command;
mod live;
mod policy;
pub mod query;
mod render;

use std::net::SocketAddr;

use http::{HeaderName, HeaderValue, Method, Request};
use serde::Serialize;

pub use live::{BreakerLive, EndpointLive, ServiceLive};
pub use render::text;

use crate::config::{self, Config, ListenerProtocol, TlsMode};
use crate::proxy::authorize::Authorization;
use crate::route::matcher::Origin;
use crate::route::RouteTable;
use crate::snapshot::Snapshot;
use crate::telemetry::metrics::Metrics;

/// The request to explain, as a user writes it on the command line or in a query.
#[derive(Debug, Clone, Default)]
pub struct Question {
    /// The listener's name; `None`: the first http listener.
    pub listener: Option<String>,
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path, with a query if any.
    pub path: String,
    /// Headers as `name: value`.
    pub headers: Vec<String>,
    /// The mTLS peer's SPIFFE ID (for `match.peer`).
    pub peer: Option<String>,
    /// The original destination (for `match.destination` on transparent listeners).
    pub destination: Option<SocketAddr>,
}

/// Everything explained about one request, serialized as `/explain`'s JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The listener's name.
    pub listener: String,
    /// The listener's address and protocol, e.g. `127.0.0.1:15001, http`.
    pub listener_detail: String,
    /// The request in one line, e.g. `GET /reviews/1 with x-canary: true`.
    pub request: String,
    /// What the listener's mTLS does with the client before any route is tried.
    pub before_routing: Option<String>,
    /// Each route in order, with why it did not match.
    pub routes: Vec<RouteVerdict>,
    /// The route the request takes, if any.
    pub chosen: Option<Chosen>,
    /// What happens when no route matches (`None` when one does).
    pub no_match: Option<String>,
    /// What a request that no route matched would get, said even when this one matched.
    pub otherwise: String,
    /// Routes of this listener that can never match.
    pub warnings: Vec<String>,
}

/// How one route judged the request.
#[derive(Debug, Clone, Serialize)]
pub struct RouteVerdict {
    /// The route's name.
    pub name: String,
    /// Whether its match holds.
    pub matches: bool,
    /// The first condition that failed, as a sentence.
    pub why_not: Option<String>,
}

/// The route a request takes and what happens to it there.
#[derive(Debug, Clone, Serialize)]
pub struct Chosen {
    /// The route's name.
    pub route: String,
    /// Its position among the listener's routes (0-based).
    pub index: usize,
    /// Its backends with their shares of requests.
    pub backends: Vec<BackendShare>,
    /// Timeouts, retries, fault injection and mirroring, as sentences.
    pub policy: Vec<String>,
    /// Each backend's service.
    pub services: Vec<ServiceExplained>,
}

/// One backend of the chosen route.
#[derive(Debug, Clone, Serialize)]
pub struct BackendShare {
    /// The service.
    pub service: String,
    /// The configured weight.
    pub weight: u32,
    /// Its share of the route's requests, in percent with one decimal (shares sum to 100).
    pub percent: f64,
}

/// One service a request may go to.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceExplained {
    /// The service's name.
    pub name: String,
    /// Balancer, limits, breaker, outlier detection, health checks, TLS, as sentences.
    pub policy: Vec<String>,
    /// Endpoint and breaker state of the running proxy (`None` offline).
    pub live: Option<ServiceLive>,
}

/// Why a question could not be asked: a line a user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Explains `question` against `snapshot`'s route tables. Policies are described from
/// `config` (offline, the file as written; live, the snapshot's own); with `live`, each
/// service's endpoints and breaker are read as they are now.
pub fn explain(
    snapshot: &Snapshot,
    config: &Config,
    question: &Question,
    live: bool,
) -> Result<Explanation, Invalid> {
    let index = listener_index(config, question.listener.as_deref())?;
    let listener = &config.listeners[index];
    if listener.protocol == ListenerProtocol::Tcp {
        return Err(Invalid(format!(
            "listener {} is a tcp listener: it forwards connections, not requests, to its first route (explain asks about http listeners)",
            listener.name
        )));
    }
    let table = snapshot
        .listeners
        .get(index)
        .ok_or_else(|| Invalid(format!("listener {} is not built", listener.name)))?;
    let req = request(question)?;
    // A peer exists only on a listener that does mTLS; there the listener's own check
    // (the proxy's `Authorization`) decides first, as it does for real connections.
    let tls_on = listener
        .tls
        .as_ref()
        .is_some_and(|t| t.mode != TlsMode::Disabled);
    let peer = question.peer.as_deref().filter(|_| tls_on);
    let admission = admission(listener, peer, question.peer.is_some());
    if listener.transparent && question.destination.is_none() {
        return Err(Invalid(format!(
            "listener {} is transparent: it routes each connection by its original destination; give one with --destination IP:PORT (destination= in /explain)",
            listener.name
        )));
    }
    let origin = Origin {
        peer,
        destination: question.destination,
    };
    let verdicts = table.explain(&req, &origin);
    let routes = table
        .routes
        .iter()
        .zip(&verdicts)
        .map(|(r, v)| RouteVerdict {
            name: r.name.clone(),
            matches: v.is_ok(),
            why_not: v.as_ref().err().map(ToString::to_string),
        })
        .collect();
    // What happens before any route is tried: a transparent listener relays or closes a
    // connection no route claims; the listener's mTLS refuses a client it does not admit.
    let unclaimed = question
        .destination
        .filter(|d| listener.transparent && !table.claims(*d))
        .map(|d| unclaimed(listener, d));
    let refused = unclaimed.or_else(|| admission.refusal.clone());
    let chosen = match refused {
        Some(_) => None,
        None => verdicts
            .iter()
            .position(Result::is_ok)
            .map(|i| chosen(snapshot, config, listener, table, i, &req, live)),
    };
    let no_match = match refused {
        Some(why) => Some(why),
        None => chosen.is_none().then(|| {
            format!(
                "no route matches: weir answers 404 with `weir-error: no_route` (weir: no route of listener {} matches {} {})",
                listener.name,
                req.method(),
                req.uri().path()
            )
        }),
    };
    let warnings = config::shadowed_routes(listener)
        .into_iter()
        .map(|(later, earlier)| {
            format!(
                "route {} can never match: route {} (listeners[{index}].routes[{earlier}]) takes every request it would",
                listener.routes[later].name, listener.routes[earlier].name
            )
        })
        .collect();
    Ok(Explanation {
        listener: listener.name.clone(),
        listener_detail: format!(
            "{}, {}{}",
            listener.address,
            match listener.protocol {
                ListenerProtocol::Http => "http",
                ListenerProtocol::Tcp => "tcp",
            },
            if listener.transparent {
                ", transparent"
            } else {
                ""
            }
        ),
        request: describe_request(&req, peer, question.destination),
        before_routing: admission.note,
        routes,
        chosen,
        no_match,
        otherwise: otherwise(listener),
        warnings,
    })
}

/// What a listener's mTLS does with a client before routing: a sentence, and the refusal
/// when it turns the client away.
struct Admission {
    note: Option<String>,
    refusal: Option<String>,
}

/// Decides as the proxy decides: the handshake refuses a strict listener's plaintext
/// client; then the listener's own [`Authorization`] (the proxy's code) judges the peer,
/// or a plaintext client of a permissive listener. `asked_peer`: a `--peer` was given (it
/// is ignored without mTLS).
fn admission(listener: &config::Listener, peer: Option<&str>, asked_peer: bool) -> Admission {
    let tls = match listener.tls.as_ref() {
        Some(tls) if tls.mode != TlsMode::Disabled => tls,
        _ => {
            return Admission {
                note: asked_peer.then(|| {
                    format!("listener {} does no mTLS, so its clients have no peer identity: the peer given is ignored", listener.name)
                }),
                refusal: None,
            }
        }
    };
    if tls.mode == TlsMode::Strict && peer.is_none() {
        let why = "tls strict: a client without an mTLS identity is refused in the handshake, before any route (pass --peer SPIFFE_ID to explain an mTLS client)".to_string();
        return Admission {
            note: Some(why.clone()),
            refusal: Some(why),
        };
    }
    let decision = Authorization::new(&listener.name, &tls.allow, &Metrics::new()).decide(peer);
    let who = peer.map_or("a plaintext client".to_string(), |id| format!("peer {id}"));
    if decision.allowed {
        return Admission {
            note: Some(format!("tls: {who} is allowed in")),
            refusal: None,
        };
    }
    let why = format!(
        "tls: {who} is not in tls.allow ({}): weir answers 403 with `weir-error: identity_denied` before any route",
        tls.allow.join(", ")
    );
    Admission {
        note: Some(why.clone()),
        refusal: Some(why),
    }
}

/// What a request no route of `listener` matches gets: 404 `no_route`, unless a route
/// without conditions takes everything.
fn otherwise(listener: &config::Listener) -> String {
    match listener
        .routes
        .iter()
        .find(|r| r.matcher == config::RouteMatch::default())
    {
        Some(r) => format!(
            "route {} has no conditions, so no request gets 404 `no_route` on this listener",
            r.name
        ),
        None => "a request no route matches gets 404 with `weir-error: no_route`".to_string(),
    }
}

/// What a transparent listener does with a connection to `destination` no route claims.
fn unclaimed(listener: &config::Listener, destination: SocketAddr) -> String {
    match listener.unknown_destination {
        config::UnknownDestination::Passthrough => {
            let to = match listener.direction {
                config::Direction::Inbound => format!("127.0.0.1:{}", destination.port()),
                config::Direction::Outbound => destination.to_string(),
            };
            format!("no route claims destination {destination}: the connection is relayed unchanged to {to} (unknown_destination: passthrough), not routed")
        }
        config::UnknownDestination::Refuse => format!(
            "no route claims destination {destination}: the connection is closed (unknown_destination: refuse)"
        ),
    }
}

/// The listener asked for, or the first http listener.
fn listener_index(config: &Config, name: Option<&str>) -> Result<usize, Invalid> {
    let names = || {
        config
            .listeners
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(name) => config
            .listeners
            .iter()
            .position(|l| l.name == name)
            .ok_or_else(|| {
                Invalid(format!(
                    "no listener named {name}; the listeners are {}",
                    names()
                ))
            }),
        None => config
            .listeners
            .iter()
            .position(|l| l.protocol == ListenerProtocol::Http)
            .ok_or_else(|| {
                Invalid(format!(
                    "no http listener; name one of {} with --listener",
                    names()
                ))
            }),
    }
}

/// The request the router is shown. Two `Host` fields are refused, as the proxy refuses
/// them (400).
fn request(q: &Question) -> Result<Request<()>, Invalid> {
    let method = Method::from_bytes(q.method.as_bytes())
        .map_err(|_| Invalid(format!("invalid method {:?}", q.method)))?;
    if !q.path.starts_with('/') {
        return Err(Invalid(format!(
            "invalid path {:?}: a path starts with /",
            q.path
        )));
    }
    let mut builder = Request::builder().method(method).uri(q.path.as_str());
    for h in &q.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| Invalid(format!("invalid header {h:?}: write it as `name: value`")))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| Invalid(format!("invalid header name {:?}", name.trim())))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| Invalid(format!("invalid value of header {name}")))?;
        builder = builder.header(name, value);
    }
    let req = builder
        .body(())
        .map_err(|e| Invalid(format!("invalid path {:?}: {e}", q.path)))?;
    if req.headers().get_all(http::header::HOST).iter().count() > 1 {
        return Err(Invalid(
            "the request has two Host fields (an authority and a host header?): weir refuses such a request with 400 bad_request, before any route".to_string(),
        ));
    }
    Ok(req)
}

/// The request as the router sees it (values trimmed, escapes shown as Rust escapes).
fn describe_request(
    req: &Request<()>,
    peer: Option<&str>,
    destination: Option<SocketAddr>,
) -> String {
    let mut s = format!("{} {}", req.method(), req.uri());
    let headers: Vec<String> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            format!(
                "{n}: {}",
                String::from_utf8_lossy(v.as_bytes()).escape_debug()
            )
        })
        .collect();
    if !headers.is_empty() {
        s.push_str(" with ");
        s.push_str(&headers.join(", "));
    }
    if let Some(peer) = peer {
        s.push_str(&format!(", from mTLS peer {peer}"));
    }
    if let Some(d) = destination {
        s.push_str(&format!(", to original destination {d}"));
    }
    s
}

fn chosen(
    snapshot: &Snapshot,
    config: &Config,
    listener: &config::Listener,
    table: &RouteTable,
    index: usize,
    req: &Request<()>,
    live: bool,
) -> Chosen {
    let route_cfg = &listener.routes[index];
    let weights: Vec<u32> = route_cfg.backends.iter().map(|b| b.weight).collect();
    let backends = route_cfg
        .backends
        .iter()
        .zip(percentages(&weights))
        .map(|(b, percent)| BackendShare {
            service: b.service.clone(),
            weight: b.weight,
            percent,
        })
        .collect();
    // Each service once, in the order the backends name them.
    let mut names: Vec<&str> = Vec::new();
    for b in &route_cfg.backends {
        if !names.contains(&b.service.as_str()) {
            names.push(&b.service);
        }
    }
    let services = names
        .into_iter()
        .map(|name| ServiceExplained {
            name: name.to_string(),
            policy: config
                .services
                .iter()
                .find(|s| s.name == name)
                .map(policy::service)
                .unwrap_or_default(),
            live: live
                .then(|| snapshot.services.get(name))
                .flatten()
                .map(|s| live::service(s, req.headers())),
        })
        .collect();
    Chosen {
        route: table.routes[index].name.clone(),
        index,
        backends,
        policy: policy::route(route_cfg),
        services,
    }
}

/// Each weight's share of their sum, in percent with one decimal, summing to exactly 100
/// (largest remainder); all zero when every weight is zero.
pub fn percentages(weights: &[u32]) -> Vec<f64> {
    let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
    if total == 0 {
        return vec![0.0; weights.len()];
    }
    let exact: Vec<(u64, u64)> = weights
        .iter()
        .map(|&w| {
            let scaled = u64::from(w) * 1000;
            (scaled / total, scaled % total)
        })
        .collect();
    let mut tenths: Vec<u64> = exact.iter().map(|&(q, _)| q).collect();
    let missing = 1000 - tenths.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    for &i in order.iter().take(missing as usize) {
        tenths[i] += 1;
    }
    tenths.into_iter().map(|t| t as f64 / 10.0).collect()
}

#[cfg(test)]
mod tests;
