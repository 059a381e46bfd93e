//! One endpoint of a service: its address, weight, connection pool and the metric handles
//! resolved for it when it was created.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;

pub mod ejection;
pub mod health;
pub mod stats;

pub use ejection::{Ejection, EjectionReason, EndpointOutlier};
pub use health::{EndpointHealth, Transition};
pub use stats::{EndpointStats, LastFailure};

use super::pool::Pool;
use crate::telemetry::metrics::RequestCounters;

/// An upstream endpoint. Shared (`Arc`) by the endpoint set and by every request in flight
/// to it, so a request finishes normally even after discovery removed its endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Where it listens.
    pub address: SocketAddr,
    /// The address as text, as it appears in metric labels and logs.
    pub label: Arc<str>,
    /// Relative weight among its service's endpoints.
    pub weight: u32,
    /// Requests sent and not yet fully answered (`weir_http_requests_in_flight`); also the
    /// load signal of the least-request balancer.
    pub in_flight: Gauge,
    /// Its connections.
    pub pool: Pool,
    /// `weir_http_requests_total` handles, one per route that reaches this endpoint's
    /// service, indexed by that route's slot in the service.
    pub counters: Box<[RequestCounters]>,
    /// Outlier-detection state (consecutive failures, ejection).
    pub outlier: EndpointOutlier,
    /// Active health-check state.
    pub health: EndpointHealth,
    /// Attempts, failures and the last failure, for `/services`.
    pub stats: EndpointStats,
}

/// Whether an endpoint takes traffic, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointState {
    /// In rotation.
    Healthy,
    /// Ejected by outlier detection.
    Ejected,
    /// Failing active health checks.
    Unhealthy,
}

impl EndpointState {
    /// The `state` label value of `weir_upstream_endpoints` and `/services`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointState::Healthy => "healthy",
            EndpointState::Ejected => "ejected",
            EndpointState::Unhealthy => "unhealthy",
        }
    }
}

impl Endpoint {
    /// The endpoint left its service: requests still in flight to it count unseen rather
    /// than bring back the series `/metrics` dropped.
    pub fn retire(&self) {
        for counters in self.counters.iter() {
            counters.retire();
        }
    }

    /// Whether the endpoint takes traffic; an unhealthy endpoint counts as unhealthy even
    /// when it is also ejected.
    pub fn state(&self) -> EndpointState {
        if !self.health.is_healthy() {
            EndpointState::Unhealthy
        } else if self.outlier.is_ejected() {
            EndpointState::Ejected
        } else {
            EndpointState::Healthy
        }
    }

    /// Why the endpoint is out of rotation, if it is.
    pub fn out_of_rotation_because(&self) -> Option<String> {
        self.health.describe().or_else(|| self.outlier.describe())
    }

    /// Requests in flight as the balancer reads them.
    pub fn load(&self) -> u64 {
        self.in_flight.get().max(0) as u64
    }
}

/// Holds one in-flight slot of an endpoint; the slot is released when this is dropped,
/// which happens when the response body has ended (or the exchange was abandoned).
#[derive(Debug)]
pub struct InFlight {
    gauge: Gauge,
}

impl InFlight {
    /// Takes a slot.
    pub fn start(endpoint: &Endpoint) -> Self {
        endpoint.in_flight.inc();
        InFlight {
            gauge: endpoint.in_flight.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}
