//! Test fixtures shared by the demo's counts and summary tests (compiled only for tests):
//! metrics text as weir serves it during a demo, and the demo's route.

use crate::config::{Backend, Route, RouteMatch};

/// A scrape of weir during a demo whose breaker never opened; one other listener, and
/// series whose names start like the requests counter.
pub(super) const METRICS: &str = r#"# HELP weir_http_requests HTTP requests completed.
# TYPE weir_http_requests counter
weir_http_requests_total{listener="demo",route="reviews",service="reviews-v1",endpoint="127.0.0.1:1001",code="200",error="none"} 700
weir_http_requests_total{listener="demo",route="reviews",service="reviews-v1",endpoint="127.0.0.1:1002",code="200",error="none"} 200
weir_http_requests_total{listener="demo",route="reviews",service="reviews-v2",endpoint="127.0.0.1:1003",code="200",error="none"} 98
weir_http_requests_total{listener="demo",route="reviews",service="reviews-v2",endpoint="127.0.0.1:1003",code="503",error="circuit_open"} 2
weir_http_requests_total{listener="other",route="r",service="x",endpoint="127.0.0.1:9",code="200",error="none"} 5
weir_http_requests_in_flight{service="reviews-v1",endpoint="127.0.0.1:1001"} 0
weir_http_requests_total_created{listener="demo"} 1
# EOF
"#;

/// A breaker that opened once, failed three trials and closed, in front of a
/// service that answered 500 for a while.
pub(super) const BREAKER_METRICS: &str = r#"# TYPE weir_http_requests counter
weir_http_requests_total{listener="demo",route="reviews",service="reviews-v1",endpoint="127.0.0.1:1001",code="200",error="none"} 3600
weir_http_requests_total{listener="demo",route="reviews",service="reviews-v1",endpoint="127.0.0.1:1002",code="200",error="none"} 450
weir_http_requests_total{listener="demo",route="reviews",service="reviews-v2",endpoint="127.0.0.1:1003",code="200",error="none"} 300
weir_http_requests_total{listener="demo",route="reviews",service="reviews-v2",endpoint="127.0.0.1:1003",code="500",error="none"} 35
weir_http_requests_total{listener="demo",route="reviews",service="reviews-v2",endpoint="",code="503",error="circuit_open"} 115
# TYPE weir_circuit_breaker_state gauge
weir_circuit_breaker_state{service="reviews-v2",state="closed"} 1
weir_circuit_breaker_state{service="reviews-v2",state="open"} 0
# TYPE weir_circuit_breaker_transitions counter
weir_circuit_breaker_transitions_total{service="reviews-v2",from="closed",to="open"} 1
weir_circuit_breaker_transitions_total{service="reviews-v2",from="open",to="half_open"} 4
weir_circuit_breaker_transitions_total{service="reviews-v2",from="half_open",to="closed"} 1
weir_circuit_breaker_transitions_total{service="reviews-v2",from="half_open",to="open"} 3
weir_circuit_breaker_transitions_total_created{service="reviews-v2",from="closed",to="open"} 1.7e9
# TYPE weir_circuit_breaker_rejected counter
weir_circuit_breaker_rejected_total{service="reviews-v2"} 115
# EOF
"#;

/// The demo's route: 90% to reviews-v1, 10% to reviews-v2.
pub(super) fn routes() -> Vec<Route> {
    vec![Route {
        name: "reviews".into(),
        matcher: RouteMatch::default(),
        backends: vec![
            Backend {
                service: "reviews-v1".into(),
                weight: 90,
            },
            Backend {
                service: "reviews-v2".into(),
                weight: 10,
            },
        ],
        timeout: None,
        retries: None,
        fault: None,
        mirror: None,
        upgrades: vec!["websocket".into()],
    }]
}
