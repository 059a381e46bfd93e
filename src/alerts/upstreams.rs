//! Alerts on a sidecar's upstream services: an open circuit breaker, an ejected endpoint, no
//! healthy endpoint left. These name causes, per sidecar (`instance`), where the SLO alerts
//! name the symptom over all of them.

use super::counter::increased;
use super::rules::{Alert, Group, Rule, Severity};
use super::targets::{any_of, Targets};

/// The upstream alerts for the configured services, or `None` when there are no services.
pub(crate) fn group(targets: &Targets) -> Option<Group> {
    if targets.services.is_empty() {
        return None;
    }
    let mut rules = Vec::new();
    if !targets.breakers.is_empty() {
        rules.push(Rule::Alert(breaker_open(&any_of(&targets.breakers))));
    }
    let services = any_of(&targets.services);
    rules.push(Rule::Alert(ejection(&services)));
    rules.push(Rule::Alert(no_healthy_endpoint(&services)));
    Some(Group {
        name: "weir-upstreams",
        rules,
    })
}

/// The breaker has been open for a minute. The breaker turns half-open only when a request
/// arrives after `sleep_window`, and is half-open only while its trial requests run, so an
/// evaluation almost never catches it between two open periods.
fn breaker_open(breakers: &str) -> Alert {
    Alert {
        name: "WeirCircuitBreakerOpen",
        expr: format!(
            "weir_circuit_breaker_state{{service=~\"{breakers}\",state=\"open\"}} == 1\n"
        ),
        for_: Some("1m"),
        severity: Severity::Ticket,
        summary: "Circuit breaker for {{ $labels.service }} open on {{ $labels.instance }}".into(),
        description: "weir_circuit_breaker_state{state=\"open\"} has been 1 for over a minute: \
             the sidecar at {{ $labels.instance }} answers requests for {{ $labels.service }} with \
             503 circuit_open without sending them (weir_circuit_breaker_rejected_total). Check \
             the service's endpoints and why they fail (GET /services on {{ $labels.instance }}, \
             weir_http_requests_total by code and error) and circuit_breaker \
             (error_threshold_percent, request_volume_threshold, sleep_window) in the service's \
             configuration."
            .into(),
    }
}

/// Outlier detection ejected an endpoint in the last 10 minutes.
fn ejection(services: &str) -> Alert {
    Alert {
        name: "WeirOutlierEjection",
        expr: increased(
            &format!("weir_outlier_ejections_total{{service=~\"{services}\"}}"),
            "10m",
        ),
        for_: None,
        severity: Severity::Warning,
        summary:
            "{{ $labels.service }} endpoint {{ $labels.endpoint }} ejected ({{ $labels.reason }})"
                .into(),
        description: "weir_outlier_ejections_total increased in the last 10 minutes: the \
             sidecar at {{ $labels.instance }} took {{ $labels.endpoint }} of \
             {{ $labels.service }} out of rotation for {{ $labels.reason }}. Check that \
             endpoint's answers (weir_http_requests_total{endpoint=\"{{ $labels.endpoint }}\"} \
             by code and error), its state and reason in GET /services on \
             {{ $labels.instance }}, and the service's outlier_detection (consecutive_5xx, \
             consecutive_gateway_errors, base_ejection_time, max_ejection_percent)."
            .into(),
    }
}

/// A service with no endpoint in rotation for a minute: every request to it fails.
fn no_healthy_endpoint(services: &str) -> Alert {
    Alert {
        name: "WeirNoHealthyEndpoint",
        expr: format!(
            "weir_upstream_endpoints{{service=~\"{services}\",state=\"healthy\"}} == 0\n"
        ),
        for_: Some("1m"),
        severity: Severity::Page,
        summary: "{{ $labels.service }} has no healthy endpoint on {{ $labels.instance }}".into(),
        description: "weir_upstream_endpoints{state=\"healthy\"} has been 0 for a minute: the \
             sidecar at {{ $labels.instance }} answers every request for {{ $labels.service }} \
             with 503 no_healthy_endpoint. GET /services on {{ $labels.instance }} says why each \
             endpoint is out (ejected, unhealthy) or that none was found; check the service's \
             endpoints or discovery, its health_check, and the endpoints themselves."
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(breakers: &[&str]) -> Targets {
        Targets {
            http_services: vec![],
            http_routes: vec![],
            services: vec!["a".into(), "b".into()],
            breakers: breakers.iter().map(|s| s.to_string()).collect(),
            identity: false,
            span_export: false,
        }
    }

    fn names(group: &Group) -> Vec<&str> {
        group.alert_names()
    }

    #[test]
    fn breaker_alert_only_for_services_with_a_breaker() {
        let with = group(&targets(&["b"])).expect("services");
        assert_eq!(
            names(&with),
            [
                "WeirCircuitBreakerOpen",
                "WeirOutlierEjection",
                "WeirNoHealthyEndpoint"
            ]
        );
        let Rule::Alert(breaker) = &with.rules[0] else {
            panic!("an alert")
        };
        assert_eq!(
            breaker.expr,
            "weir_circuit_breaker_state{service=~\"b\",state=\"open\"} == 1\n"
        );
        assert_eq!(breaker.for_, Some("1m"));
        let without = group(&targets(&[])).expect("services");
        assert_eq!(
            names(&without),
            ["WeirOutlierEjection", "WeirNoHealthyEndpoint"]
        );
    }

    #[test]
    fn endpoint_alerts_cover_every_service() {
        let g = group(&targets(&[])).expect("services");
        let Rule::Alert(none) = &g.rules[1] else {
            panic!("an alert")
        };
        assert_eq!(
            none.expr,
            "weir_upstream_endpoints{service=~\"a|b\",state=\"healthy\"} == 0\n"
        );
        assert_eq!(none.severity, Severity::Page);
        let mut t = targets(&[]);
        t.services.clear();
        assert_eq!(group(&t), None);
    }
}
