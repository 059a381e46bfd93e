//! What weir counted during the demo, read back from its own `/metrics`: the requests of
//! one listener by service, endpoint, route and code ([`Traffic`]), and what each circuit
//! breaker did ([`BreakerCounts`]). The summary shows these numbers; this file only adds
//! them up.

use std::collections::BTreeMap;

use crate::config::Route;
use crate::telemetry::prometheus_text::{self, Sample};
use crate::telemetry::series::NONE;
use crate::upstream::circuit_breaker::BreakerState;

/// Requests weir completed, by listener, route, service, endpoint, code and weir error.
pub const REQUESTS_METRIC: &str = "weir_http_requests_total";
/// Circuit-breaker state changes, by service, `from` and `to`.
pub const BREAKER_TRANSITIONS_METRIC: &str = "weir_circuit_breaker_transitions_total";
/// Requests a circuit breaker refused, by service.
pub const BREAKER_REJECTED_METRIC: &str = "weir_circuit_breaker_rejected_total";

/// Requests one listener handled, as weir counted them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Traffic {
    /// Every request.
    pub total: u64,
    /// By service, then endpoint (`""` when weir chose none, e.g. no route matched).
    pub endpoints: BTreeMap<String, BTreeMap<String, u64>>,
    /// By route.
    pub routes: BTreeMap<String, u64>,
    /// By status code and weir error code.
    pub codes: BTreeMap<(String, String), u64>,
}

// === impl Traffic ===

impl Traffic {
    /// Sums the `weir_http_requests_total` samples of `listener` in metrics `text`.
    pub fn from_metrics(text: &str, listener: &str) -> Traffic {
        let mut t = Traffic::default();
        for s in prometheus_text::parse(text).filter(|s| s.name == REQUESTS_METRIC) {
            if s.label("listener") != listener || s.value.is_nan() || s.value < 0.0 {
                continue;
            }
            let n = s.value as u64;
            // The summary keys "nothing chosen" and "relayed, no weir error" as "".
            let named = |label: &str| match s.label(label) {
                NONE => String::new(),
                value => value.to_string(),
            };
            t.total += n;
            *t.endpoints
                .entry(named("service"))
                .or_default()
                .entry(named("endpoint"))
                .or_default() += n;
            *t.routes.entry(named("route")).or_default() += n;
            *t.codes
                .entry((s.label("code").to_string(), named("error")))
                .or_default() += n;
        }
        t
    }

    /// Requests sent to `service`, over all its endpoints.
    pub fn service_total(&self, service: &str) -> u64 {
        self.endpoints.get(service).map_or(0, |e| e.values().sum())
    }

    /// The share of requests `service` should have received given the routes requests
    /// matched and their weights, in percent; `None` when no route sends to it.
    pub fn configured_share(&self, service: &str, routes: &[Route]) -> Option<f64> {
        let mut share = 0.0;
        let mut found = false;
        for route in routes {
            let total_weight: u64 = route.backends.iter().map(|b| u64::from(b.weight)).sum();
            let weight: u64 = route
                .backends
                .iter()
                .filter(|b| b.service == service)
                .map(|b| u64::from(b.weight))
                .sum();
            if total_weight == 0 || !route.backends.iter().any(|b| b.service == service) {
                continue;
            }
            found = true;
            let matched = self.routes.get(&route.name).copied().unwrap_or(0);
            share += percent(matched, self.total) * weight as f64 / total_weight as f64;
        }
        found.then_some(share)
    }
}

/// What one service's circuit breaker did, as weir counted it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BreakerCounts {
    /// State changes by `(from, to)` label values.
    pub transitions: BTreeMap<(String, String), u64>,
    /// Requests refused with 503 `circuit_open`.
    pub rejected: u64,
}

// === impl BreakerCounts ===

impl BreakerCounts {
    /// The breakers in metrics `text`, by service: every service with a
    /// `weir_circuit_breaker_transitions_total` or `weir_circuit_breaker_rejected_total`
    /// sample.
    pub fn from_metrics(text: &str) -> BTreeMap<String, BreakerCounts> {
        let mut breakers: BTreeMap<String, BreakerCounts> = BTreeMap::new();
        let count = |s: &Sample| {
            if s.value.is_nan() || s.value < 0.0 {
                0
            } else {
                s.value as u64
            }
        };
        for s in prometheus_text::parse(text).filter(|s| s.name == BREAKER_TRANSITIONS_METRIC) {
            let b = breakers.entry(s.label("service").to_string()).or_default();
            *b.transitions
                .entry((s.label("from").to_string(), s.label("to").to_string()))
                .or_default() += count(&s);
        }
        for s in prometheus_text::parse(text).filter(|s| s.name == BREAKER_REJECTED_METRIC) {
            breakers
                .entry(s.label("service").to_string())
                .or_default()
                .rejected += count(&s);
        }
        breakers
    }

    /// Times the breaker went from `from` to `to`.
    pub fn count(&self, from: BreakerState, to: BreakerState) -> u64 {
        self.transitions
            .get(&(from.as_str().to_string(), to.as_str().to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// Closed to open: the window saw too many failures.
    pub fn opened(&self) -> u64 {
        self.count(BreakerState::Closed, BreakerState::Open)
    }

    /// Open to half-open: the sleep window passed and a trial request went through.
    pub fn half_opened(&self) -> u64 {
        self.count(BreakerState::Open, BreakerState::HalfOpen)
    }

    /// Half-open to closed: the trial requests succeeded.
    pub fn closed(&self) -> u64 {
        self.count(BreakerState::HalfOpen, BreakerState::Closed)
    }

    /// Half-open to open: a trial request failed.
    pub fn reopened(&self) -> u64 {
        self.count(BreakerState::HalfOpen, BreakerState::Open)
    }
}

/// `part` as a percentage of `whole`; 0 when `whole` is 0.
pub(super) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::fixtures::{routes, BREAKER_METRICS, METRICS};

    #[test]
    fn traffic_sums_per_service_endpoint_route_and_code_for_one_listener() {
        let t = Traffic::from_metrics(METRICS, "demo");
        assert_eq!(t.total, 1000);
        assert_eq!(t.service_total("reviews-v1"), 900);
        assert_eq!(t.service_total("reviews-v2"), 100);
        assert_eq!(t.endpoints["reviews-v2"]["127.0.0.1:1003"], 100);
        assert_eq!(t.routes["reviews"], 1000);
        assert_eq!(t.codes[&("503".into(), "circuit_open".into())], 2);
        assert_eq!(t.codes[&("200".into(), String::new())], 998);
    }

    #[test]
    fn configured_share_follows_route_weights_and_matched_routes() {
        let t = Traffic::from_metrics(METRICS, "demo");
        let routes = routes();
        assert_eq!(t.configured_share("reviews-v1", &routes), Some(90.0));
        assert_eq!(t.configured_share("reviews-v2", &routes), Some(10.0));
        assert_eq!(t.configured_share("nowhere", &routes), None);
    }

    #[test]
    fn breaker_counts_read_transitions_and_refusals_per_service() {
        let breakers = BreakerCounts::from_metrics(BREAKER_METRICS);
        assert_eq!(breakers.len(), 1);
        let b = &breakers["reviews-v2"];
        assert_eq!(b.opened(), 1);
        assert_eq!(b.half_opened(), 4);
        assert_eq!(b.closed(), 1);
        assert_eq!(b.reopened(), 3);
        assert_eq!(b.rejected, 115);
        assert!(BreakerCounts::from_metrics(METRICS).is_empty());
    }
}
