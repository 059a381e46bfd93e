//! A service: its current endpoint set, the balancer over it, and endpoint-set updates that
//! never disturb requests already in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{HeaderMap, HeaderName};
use prometheus_client::metrics::gauge::Gauge;

use super::balancer::Balancer;
use super::endpoint::Endpoint;
use super::pool::Pool;
use crate::config::{self, LoadBalancer, UpstreamProtocol};
use crate::telemetry::metrics::{EndpointLabels, EndpointStateLabels, Metrics, RequestCounters};

/// An immutable endpoint set and the balancer built for it; replaced whole on change.
#[derive(Debug)]
pub struct EndpointSet {
    /// Endpoints in discovery order.
    pub endpoints: Vec<Arc<Endpoint>>,
    balancer: Balancer,
}

/// An upstream service as the request path sees it.
#[derive(Debug)]
pub struct Service {
    /// Name from the configuration; a metric label.
    pub name: String,
    /// HTTP version spoken to its endpoints.
    pub protocol: UpstreamProtocol,
    load_balancer: LoadBalancer,
    hash_header: Option<HeaderName>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    /// (listener, route) pairs that reach this service: the slots of per-endpoint counters.
    route_slots: Vec<(String, String)>,
    metrics: Arc<Metrics>,
    endpoints: ArcSwap<EndpointSet>,
    healthy: Gauge,
}

impl Service {
    /// Builds a service from its configuration. `route_slots` names every (listener, route)
    /// pair whose backends include it, so endpoint metric handles can be resolved up front.
    pub fn new(
        cfg: &config::Service,
        route_slots: Vec<(String, String)>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let healthy = metrics
            .upstream_endpoints
            .get_or_create_owned(&EndpointStateLabels {
                service: cfg.name.clone(),
                state: "healthy".into(),
            });
        let service = Service {
            name: cfg.name.clone(),
            protocol: cfg.protocol,
            load_balancer: cfg.load_balancer,
            hash_header: cfg
                .ring_hash
                .as_ref()
                .and_then(|r| HeaderName::from_bytes(r.header.as_bytes()).ok()),
            connect_timeout: cfg.connect_timeout,
            idle_timeout: cfg.idle_timeout,
            route_slots,
            metrics,
            endpoints: ArcSwap::from_pointee(EndpointSet {
                endpoints: Vec::new(),
                balancer: Balancer::new(cfg.load_balancer, std::iter::empty()),
            }),
            healthy,
        };
        let statics: Vec<(SocketAddr, u32)> = cfg
            .endpoints
            .iter()
            .map(|e| (e.address, e.weight))
            .collect();
        service.set_endpoints(&statics);
        Arc::new(service)
    }

    /// The slot of a (listener, route) pair in each endpoint's counters.
    pub fn slot(&self, listener: &str, route: &str) -> Option<usize> {
        self.route_slots
            .iter()
            .position(|(l, r)| l == listener && r == route)
    }

    /// Chooses an endpoint for a request, or `None` when no endpoint can take it.
    pub fn pick(&self, headers: &HeaderMap) -> Option<Arc<Endpoint>> {
        let set = self.endpoints.load();
        let key = self
            .hash_header
            .as_ref()
            .and_then(|h| headers.get(h))
            .map(|v| v.as_bytes());
        let idx = set.balancer.pick(key, |i| set.endpoints[i].load())?;
        Some(set.endpoints[idx].clone())
    }

    /// The current endpoint set (for the admin server).
    pub fn endpoint_set(&self) -> Arc<EndpointSet> {
        self.endpoints.load_full()
    }

    /// Closes expired idle connections of every endpoint.
    pub fn close_expired_connections(&self) {
        for e in &self.endpoints.load().endpoints {
            e.pool.close_expired();
        }
    }

    /// How long pooled connections may sit idle.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The configured balancer.
    pub fn load_balancer(&self) -> LoadBalancer {
        self.load_balancer
    }

    /// Replaces the endpoint set. Endpoints whose address and weight are unchanged are kept
    /// (with their pools and in-flight counts); removed ones live on until their last
    /// request completes.
    pub fn set_endpoints(&self, wanted: &[(SocketAddr, u32)]) {
        let current = self.endpoints.load();
        let endpoints: Vec<Arc<Endpoint>> = wanted
            .iter()
            .map(|&(address, weight)| {
                current
                    .endpoints
                    .iter()
                    .find(|e| e.address == address && e.weight == weight)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(self.new_endpoint(address, weight)))
            })
            .collect();
        let balancer = Balancer::new(
            self.load_balancer,
            endpoints.iter().map(|e| (e.label.as_str(), e.weight)),
        );
        self.healthy.set(endpoints.len() as i64);
        self.endpoints.store(Arc::new(EndpointSet {
            endpoints,
            balancer,
        }));
    }

    fn new_endpoint(&self, address: SocketAddr, weight: u32) -> Endpoint {
        let label = address.to_string();
        let in_flight = self.metrics.in_flight.get_or_create_owned(&EndpointLabels {
            service: self.name.clone(),
            endpoint: label.clone(),
        });
        let counters = self
            .route_slots
            .iter()
            .map(|(listener, route)| {
                RequestCounters::new(&self.metrics, listener, route, &self.name, &label)
            })
            .collect();
        Endpoint {
            address,
            label,
            weight,
            in_flight,
            pool: Pool::new(
                address,
                self.protocol,
                self.connect_timeout,
                self.idle_timeout,
            ),
            counters,
        }
    }
}
