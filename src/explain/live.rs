//! What the running proxy knows now about a service: each endpoint's rotation state and why,
//! the breaker's state and window, requests in flight, and the balancer's likely pick.

use http::HeaderMap;
use serde::Serialize;

use crate::config::format_whole_seconds_rounded_up;
use crate::upstream::balancer::Likely;
use crate::upstream::endpoint::EndpointState;
use crate::upstream::Service;

/// A service's live state.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceLive {
    /// Every endpoint, in rotation or not.
    pub endpoints: Vec<EndpointLive>,
    /// Endpoints in rotation.
    pub in_rotation: usize,
    /// Requests in flight to all endpoints.
    pub in_flight: u64,
    /// The circuit breaker, when configured.
    pub breaker: Option<BreakerLive>,
    /// Which endpoint the balancer would most likely pick for this request, as a sentence.
    pub likely_pick: String,
}

/// One endpoint's live state (as `/services` shows it).
#[derive(Debug, Clone, Serialize)]
pub struct EndpointLive {
    /// Its address.
    pub address: String,
    /// Its weight.
    pub weight: u32,
    /// `healthy`, `ejected` or `unhealthy`.
    pub state: &'static str,
    /// Why it is out of rotation (ejected until when, failing which check).
    pub reason: Option<String>,
    /// Requests in flight to it.
    pub in_flight: u64,
}

/// A circuit breaker's live state.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerLive {
    /// `closed`, `open` or `half_open`.
    pub state: &'static str,
    /// Failed requests in the rolling window.
    pub failed: u64,
    /// Requests in the rolling window.
    pub total: u64,
}

/// Reads `service` now, for a request with `headers`.
pub(super) fn service(service: &Service, headers: &HeaderMap) -> ServiceLive {
    let set = service.endpoint_set();
    let endpoints: Vec<EndpointLive> = set
        .endpoints
        .iter()
        .map(|e| EndpointLive {
            address: e.label.to_string(),
            weight: e.weight,
            state: e.state().as_str(),
            reason: e
                .out_of_rotation_because()
                .map(|why| match e.health.unhealthy_for() {
                    Some(d) => format!(
                        "{why}, out of rotation for {}",
                        format_whole_seconds_rounded_up(d)
                    ),
                    None => why,
                }),
            in_flight: e.load(),
        })
        .collect();
    let (likely, endpoint) = service.likely_pick(headers);
    let label = endpoint.map(|e| e.label.to_string()).unwrap_or_default();
    let likely_pick = match likely {
        Likely::Next(_) => format!("round robin sends the next request to {label}"),
        Likely::Fewest(_) => {
            // Endpoints as loaded for their weight as the one named are picked as often.
            let chosen = endpoints.iter().find(|e| e.address == label);
            let tied: Vec<&str> = endpoints
                .iter()
                .filter(|e| e.state == EndpointState::Healthy.as_str())
                .filter(|e| {
                    chosen.is_some_and(|c| {
                        (e.in_flight + 1) * u64::from(c.weight)
                            == (c.in_flight + 1) * u64::from(e.weight)
                    })
                })
                .map(|e| e.address.as_str())
                .collect();
            if tied.len() > 1 {
                format!("least request picks any of {} (tied: the fewest requests in flight for their weight)", tied.join(", "))
            } else {
                format!("least request most likely picks {label}, the fewest requests in flight for its weight")
            }
        }
        Likely::Hashed(_) => format!("ring hash sends this request to {label} (its header's hash)"),
        Likely::AtRandom => {
            let healthy: Vec<&EndpointLive> = endpoints
                .iter()
                .filter(|e| e.state == EndpointState::Healthy.as_str())
                .collect();
            let weights: Vec<u32> = healthy.iter().map(|e| e.weight).collect();
            let shares = super::percentages(&weights);
            format!(
                "at random, by weight: {}",
                healthy
                    .iter()
                    .zip(shares)
                    .map(|(e, p)| format!("{} {p:.1}%", e.address))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        Likely::Nothing => {
            "no endpoint is in rotation: weir answers 503 with `weir-error: no_healthy_endpoint`"
                .to_string()
        }
    };
    // An open breaker answers before any balancer is asked.
    let likely_pick = match service.breaker.as_ref().map(|b| b.state().as_str()) {
        Some("open") => format!(
            "none: the circuit breaker is open, so weir answers 503 with `weir-error: circuit_open` without calling an endpoint (once it lets requests through again: {likely_pick})"
        ),
        _ => likely_pick,
    };
    ServiceLive {
        in_rotation: set.in_rotation(),
        in_flight: endpoints.iter().map(|e| e.in_flight).sum(),
        endpoints,
        breaker: service.breaker.as_ref().map(|b| {
            let (failed, total) = b.window_counts();
            BreakerLive {
                state: b.state().as_str(),
                failed,
                total,
            }
        }),
        likely_pick,
    }
}
