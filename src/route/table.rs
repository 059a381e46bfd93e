//! A listener's route table: routes in order, each with its compiled match, its weighted
//! backends and the metric handles resolved for them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Request;

use prometheus_client::metrics::counter::Counter;

use super::fault::FaultInjector;
use super::matcher::{MatcherError, Origin, RouteMatcher};
use super::mirror::Mirror;
use super::mismatch::Mismatch;
use super::retry::RetryPolicy;
use super::unknown::UnknownDestinations;
use crate::config;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::histogram::LatencyHistogram;
use crate::telemetry::metrics::{Metrics, RequestCounters, RetryLabels, RouteLabels, TcpCounters};
use crate::telemetry::series::{Live, NONE};
use crate::telemetry::trace::tracer::Tracer;
use crate::telemetry::trace::{SpanKind, SpanNames};
use crate::upstream::balancer::WeightedRandom;
use crate::upstream::retry_budget::RetryBudget;
use crate::upstream::Service;

/// One weighted backend of a route.
#[derive(Debug)]
pub struct RouteBackend {
    /// The service requests go to.
    pub service: Arc<Service>,
    /// This route's slot in the service's per-endpoint counters.
    pub slot: usize,
    /// `weir_http_request_duration_seconds{listener, route, service}`.
    pub duration: LatencyHistogram,
    /// Counters for requests that never reached an endpoint (endpoint label empty).
    pub unsent: RequestCounters,
    /// The retry budget of this route's requests to this service.
    pub retry_budget: RetryBudget,
    /// `weir_retries_total{route, service, outcome}`.
    pub retry_counters: RetryCounters,
    /// The route and service names this backend's spans report.
    pub span_names: Arc<SpanNames>,
}

/// `weir_retries_total` handles of one route and service, one per outcome.
#[derive(Debug)]
pub struct RetryCounters {
    /// A retry was sent.
    pub attempted: Counter,
    /// A retry was wanted but the retry budget was spent.
    pub budget_exhausted: Counter,
    /// A retry was wanted but the service's `max_retries` was reached.
    pub overflow: Counter,
    /// A retry was wanted but every attempt was used.
    pub exhausted: Counter,
}

impl RetryCounters {
    fn new(metrics: &Metrics, route: &str, service: &str) -> Self {
        let counter = |outcome: &str| {
            metrics.retries.get_or_create_owned(&RetryLabels {
                route: route.to_string(),
                service: service.to_string(),
                outcome: outcome.to_string(),
            })
        };
        RetryCounters {
            attempted: counter("attempted"),
            budget_exhausted: counter("budget_exhausted"),
            overflow: counter("overflow"),
            exhausted: counter("exhausted"),
        }
    }
}

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    /// Name; a metric label.
    pub name: String,
    matcher: RouteMatcher,
    /// Backends, in configuration order.
    pub backends: Vec<RouteBackend>,
    split: WeightedRandom,
    /// Bound on the request until response headers, all attempts together.
    pub timeout: Option<Duration>,
    /// Retry policy, when configured.
    pub retries: Option<RetryPolicy>,
    /// Fault injection, when configured.
    pub fault: Option<FaultInjector>,
    /// Traffic mirroring, when configured.
    pub mirror: Option<Mirror>,
    /// Protocols a client may switch to (`Upgrade` tokens, lower case).
    pub upgrades: Vec<String>,
}

impl Route {
    /// Chooses a backend by weight (weight 0 is never chosen).
    pub fn pick_backend(&self) -> Option<usize> {
        if self.backends.len() == 1 {
            return Some(0);
        }
        self.split.pick()
    }
}

/// A listener's routes; the first whose match holds wins.
#[derive(Debug)]
pub struct RouteTable {
    /// Listener name; a metric label.
    pub listener: String,
    /// Routes in order.
    pub routes: Vec<Route>,
    /// Counters for requests no route matched.
    pub unmatched: RequestCounters,
    /// Duration of requests no route matched.
    pub unmatched_duration: LatencyHistogram,
    /// Where requests on this listener write their access-log line; `None` when the
    /// access log is off.
    pub access_log: Option<AccessLog>,
    /// Trace propagation and spans; `None` when `tracing` is not configured.
    pub tracer: Option<Arc<Tracer>>,
    /// The kind of this listener's spans (server inbound, client outbound).
    pub span_kind: SpanKind,
    /// On a transparent listener: what happens to connections no route claims. `None`:
    /// the listener is not transparent, and its connections have no original destination.
    pub unknown: Option<UnknownDestinations>,
    /// On a tcp or transparent listener, indexed like `routes` and then their backends: what
    /// connections forwarded as bytes count. Empty elsewhere.
    pub tcp: Vec<Vec<TcpCounters>>,
}

impl RouteTable {
    /// Compiles a listener's routes against the built services.
    pub fn new(
        listener: &config::Listener,
        services: &HashMap<String, Arc<Service>>,
        metrics: &Metrics,
    ) -> Result<Self, MatcherError> {
        let mut routes = Vec::with_capacity(listener.routes.len());
        for r in &listener.routes {
            let mut backends = Vec::with_capacity(r.backends.len());
            for b in &r.backends {
                let service = services
                    .get(&b.service)
                    .ok_or_else(|| {
                        MatcherError(format!(
                            "route {} names unknown service {}",
                            r.name, b.service
                        ))
                    })?
                    .clone();
                let slot = service.slot(&listener.name, &r.name).ok_or_else(|| {
                    MatcherError(format!(
                        "service {} has no slot for route {}",
                        b.service, r.name
                    ))
                })?;
                let duration = metrics.request_duration.get_or_create_owned(&RouteLabels {
                    listener: listener.name.clone(),
                    route: r.name.clone(),
                    service: b.service.clone(),
                });
                let unsent =
                    RequestCounters::new(metrics, &listener.name, &r.name, &b.service, NONE);
                let budget_percent = r.retries.as_ref().map_or(20.0, |p| p.budget_percent);
                let retry_budget = RetryBudget::new(budget_percent);
                let retry_counters = RetryCounters::new(metrics, &r.name, &b.service);
                backends.push(RouteBackend {
                    service,
                    slot,
                    duration,
                    unsent,
                    retry_budget,
                    retry_counters,
                    span_names: Arc::new(SpanNames {
                        route: r.name.as_str().into(),
                        service: b.service.as_str().into(),
                    }),
                });
            }
            let weights: Vec<u32> = r.backends.iter().map(|b| b.weight).collect();
            let mut matcher = RouteMatcher::new(&r.matcher)?;
            if r.matcher.discovered_destination {
                if let Some(backend) = backends.first() {
                    matcher =
                        matcher.claiming_discovered(backend.service.discovered_addresses.clone());
                }
            }
            routes.push(Route {
                name: r.name.clone(),
                matcher,
                backends,
                split: WeightedRandom::new(&weights),
                timeout: r.timeout,
                retries: r.retries.as_ref().map(RetryPolicy::new),
                fault: r.fault.as_ref().map(FaultInjector::new),
                mirror: match &r.mirror {
                    None => None,
                    Some(m) => {
                        let target = services.get(&m.service).ok_or_else(|| {
                            MatcherError(format!(
                                "route {} mirrors to unknown service {}",
                                r.name, m.service
                            ))
                        })?;
                        let mirror = Mirror::new(target.clone(), m.percent);
                        Some(match r.timeout {
                            Some(t) => mirror.with_timeout(t),
                            None => mirror,
                        })
                    }
                },
                upgrades: r.upgrades.clone(),
            });
        }
        Ok(RouteTable {
            listener: listener.name.clone(),
            routes,
            unmatched: RequestCounters::new(metrics, &listener.name, NONE, NONE, NONE),
            unmatched_duration: metrics.request_duration.get_or_create_owned(&RouteLabels {
                listener: listener.name.clone(),
                route: NONE.to_string(),
                service: NONE.to_string(),
            }),
            access_log: None,
            tracer: None,
            span_kind: match listener.direction {
                config::Direction::Inbound => SpanKind::Server,
                config::Direction::Outbound => SpanKind::Client,
            },
            unknown: listener
                .transparent
                .then(|| UnknownDestinations::new(listener, metrics)),
            tcp: if listener.transparent || listener.protocol == config::ListenerProtocol::Tcp {
                listener
                    .routes
                    .iter()
                    .map(|r| {
                        r.backends
                            .iter()
                            .map(|b| TcpCounters::new(metrics, &listener.name, &b.service))
                            .collect()
                    })
                    .collect()
            } else {
                Vec::new()
            },
        })
    }

    /// After a reload: the counters of what `live` no longer names (this listener, a route,
    /// a service) are retired, so requests still in flight on this table count unseen
    /// rather than bring back the series `/metrics` dropped.
    pub fn retire_unless(&self, live: &Live) {
        let gone = |c: &RequestCounters| {
            let l = c.labels();
            !live.names(&l.listener, &l.route, &l.service)
        };
        if gone(&self.unmatched) {
            self.unmatched.retire();
        }
        for backend in self.routes.iter().flat_map(|r| r.backends.iter()) {
            if gone(&backend.unsent) {
                backend.unsent.retire();
            }
        }
    }

    /// Index of the first route whose match holds for a request from `origin`.
    pub fn find<B>(&self, req: &Request<B>, origin: &Origin<'_>) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.matcher.matches(req, origin))
    }

    /// How each route judges a request from `origin`, in order: `Ok` where its match
    /// holds, else the first condition that failed. [`RouteTable::find`] takes the first
    /// `Ok`; `weir explain` and `/explain` show them all, from the same matcher.
    pub fn explain<'a, B>(
        &'a self,
        req: &'a Request<B>,
        origin: &Origin<'a>,
    ) -> Vec<Result<(), Mismatch<'a>>> {
        self.routes
            .iter()
            .map(|r| r.matcher.check(req, origin))
            .collect()
    }

    /// On a transparent listener: whether some route claims connections to `destination`
    /// (names it in `match.destination`, as the routes made for services' `addresses`
    /// do). Connections to other destinations are [`UnknownDestinations`] traffic.
    pub fn claims(&self, destination: SocketAddr) -> bool {
        self.claiming(destination).is_some()
    }

    /// The first route a connection from `origin` that does not speak HTTP may take (see
    /// [`RouteMatcher::admits_bytes`]).
    pub fn for_bytes(&self, origin: &Origin<'_>) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.matcher.admits_bytes(origin))
    }

    /// The first route that claims `destination` (see [`RouteTable::claims`]).
    pub fn claiming(&self, destination: SocketAddr) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| r.matcher.claims(destination))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::snapshot::Snapshot;

    #[test]
    fn a_discovered_service_claims_the_addresses_its_discovery_finds_as_they_change() {
        let text = "version: 1\nlisteners:\n  - name: out\n    address: 127.0.0.1:15001\n    transparent: true\nservices:\n  - name: reviews\n    discovery: { kubernetes: { service: reviews, namespace: shop, port: 9080 } }\n";
        let config = crate::config::load_str("t.yaml", text)
            .expect("valid")
            .config;
        assert!(config.listeners[0].routes[0].matcher.discovered_destination);
        let snapshot = Snapshot::build(config, &Metrics::new(), None).expect("builds");
        let table = &snapshot.listeners[0];
        let cluster_ip: SocketAddr = "10.96.0.20:9080".parse().unwrap();
        assert!(
            !table.claims(cluster_ip),
            "nothing is claimed before discovery reports"
        );
        let found = &snapshot.services["reviews"].discovered_addresses;
        found.store(Arc::new(vec![cluster_ip]));
        assert_eq!(table.claiming(cluster_ip), Some(0));
        assert!(!table.claims("10.96.0.21:9080".parse().unwrap()));
        let req = Request::get("/").body(()).unwrap();
        let to = |d: SocketAddr| Origin {
            peer: None,
            destination: Some(d),
        };
        assert_eq!(table.find(&req, &to(cluster_ip)), Some(0));
        assert_eq!(
            table.find(&req, &to("10.96.0.21:9080".parse().unwrap())),
            None
        );
        found.store(Arc::new(Vec::new()));
        assert!(
            !table.claims(cluster_ip),
            "an address discovery withdrew is released"
        );
    }

    #[test]
    fn a_table_a_reload_replaced_counts_what_it_removed_unseen() {
        let text = "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: old\n        match: { path: { prefix: /old } }\n        backends: [{ service: s }]\n      - name: kept\n        backends: [{ service: s }]\nservices:\n  - { name: s, endpoints: [\"127.0.0.1:2\"] }\n";
        let metrics = Metrics::new();
        let load = |t: &str| crate::config::load_str("t.yaml", t).expect("valid").config;
        let before = Snapshot::build(load(text), &metrics, None).expect("builds");
        let without_old = text.replace(
            "      - name: old\n        match: { path: { prefix: /old } }\n        backends: [{ service: s }]\n",
            "",
        );
        let live = Live::of(&load(&without_old));
        metrics.forget_removed(&live);
        before.listeners[0].retire_unless(&live);
        // Requests that were in flight on the old table end now.
        let table = &before.listeners[0];
        table.routes[0].backends[0]
            .unsent
            .proxy_error(ErrorCode::Overflow, 503);
        table.routes[1].backends[0]
            .unsent
            .proxy_error(ErrorCode::Overflow, 503);
        table.unmatched.proxy_error(ErrorCode::NoRoute, 404);
        let text = metrics.render();
        assert!(!text.contains("route=\"old\""), "{text}");
        assert!(
            text.contains(
                "route=\"kept\",service=\"s\",endpoint=\"none\",code=\"503\",error=\"overflow\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("route=\"none\",service=\"none\",endpoint=\"none\",code=\"404\",error=\"no_route\"} 1"), "{text}");
    }
}
