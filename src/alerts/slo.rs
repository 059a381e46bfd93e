//! Service-level alerts: error-budget burn rates and p99 latency, per service over every
//! sidecar.
//!
//! The burn-rate alerts are the workbook's multi-window, multi-burn-rate alerts, one per
//! severity, each firing on either of its two window pairs (`burn.rs`).

use super::burn::{Burn, BurnAlert, BURN_ALERTS};
use super::options::{LatencyThreshold, SloTarget};
use super::recording::{service_success_ratio, ROUTE_P99, SERVICE_P99};
use super::rules::{Alert, Group, Rule, Severity};
use super::targets::Targets;

/// The period an SLO's budget is counted over, in days.
const SLO_PERIOD_DAYS: f64 = 30.0;

/// How long the p99 must stay above its threshold before the latency alert fires.
const LATENCY_FOR: &str = "10m";

/// The burn-rate and latency alerts for the HTTP services, or `None` when there are none.
pub(crate) fn group(
    targets: &Targets,
    slo: &SloTarget,
    latency: &LatencyThreshold,
) -> Option<Group> {
    if targets.http_services.is_empty() {
        return None;
    }
    let mut rules: Vec<Rule> = BURN_ALERTS
        .iter()
        .map(|a| Rule::Alert(burn_alert(a, slo)))
        .collect();
    rules.push(Rule::Alert(latency_alert(latency)));
    Some(Group {
        name: "weir-slo",
        rules,
    })
}

fn burn_alert(alert: &BurnAlert, slo: &SloTarget) -> Alert {
    let budget = slo.budget_text();
    let condition = |b: &Burn| {
        format!(
            "(\n  (1 - {long}) > ({factor} * {budget})\n  and\n  (1 - {short}) > ({factor} * {budget})\n)",
            long = service_success_ratio(b.long),
            short = service_success_ratio(b.short),
            factor = b.factor,
        )
    };
    let [first, second] = &alert.burns;
    let times = |b: &Burn| format!("{} times over {} and {}", b.factor, b.long, b.short);
    let days = |b: &Burn| format!("{:.0}", SLO_PERIOD_DAYS / b.factor);
    let pace = if alert.severity == Severity::Page {
        "fast"
    } else {
        "steadily"
    };
    Alert {
        name: alert.name,
        expr: format!("{}\nor\n{}\n", condition(first), condition(second)),
        for_: None,
        severity: alert.severity,
        summary: format!(
            "{{{{ $labels.service }}}} fails {{{{ $value | humanizePercentage }}}} of its requests: \
             its error budget is burning {pace}"
        ),
        description: format!(
            "{{{{ $labels.service }}}} answered {{{{ $value | humanizePercentage }}}} of its \
             requests with a 5xx (all sidecars together): more than {} the {}% error budget of \
             its {}% success SLO, or {}; at this rate the {SLO_PERIOD_DAYS}-day budget is gone \
             in {} to {} days. Check weir_http_requests_total{{service=\"{{{{ $labels.service }}}}\"}} \
             by code, endpoint and error (an error code is an answer weir made itself, see \
             docs/errors.md; an empty or none error is the upstream's own answer), GET /services \
             on the sidecars' admin address for ejected or unhealthy endpoints, and the \
             service's endpoints, circuit_breaker and outlier_detection in the weir configuration.",
            times(first),
            slo.budget_percent_text(),
            slo.percent_text(),
            times(second),
            days(first),
            days(second),
        ),
    }
}

fn latency_alert(latency: &LatencyThreshold) -> Alert {
    Alert {
        name: "WeirLatencyP99High",
        expr: format!("{SERVICE_P99} > {}\n", latency.seconds_text()),
        for_: Some(LATENCY_FOR),
        severity: Severity::Ticket,
        summary: "{{ $labels.service }} p99 latency is {{ $value | humanizeDuration }}".into(),
        description: format!(
            "The 99th percentile of weir_http_request_duration_seconds for \
             {{{{ $labels.service }}}} ({SERVICE_P99}, all sidecars together) has been above {} \
             for {LATENCY_FOR}. Check which route is slow ({ROUTE_P99}), \
             requests in flight per endpoint (weir_http_requests_in_flight, GET /services on the \
             admin address), retries (weir_retries_total), and the routes' timeout, retries and \
             fault.delay in the weir configuration.",
            latency.duration_text()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerts(slo: &str, latency: &str) -> Vec<Alert> {
        let targets = Targets {
            http_services: vec!["a".into()],
            http_routes: vec!["r".into()],
            services: vec!["a".into()],
            breakers: vec![],
            identity: false,
            span_export: false,
        };
        let slo = slo.parse().expect("valid SLO");
        let latency = latency.parse().expect("valid threshold");
        group(&targets, &slo, &latency)
            .expect("http services")
            .rules
            .into_iter()
            .filter_map(|r| match r {
                Rule::Alert(a) => Some(a),
                Rule::Record { .. } => None,
            })
            .collect()
    }

    #[test]
    fn fast_burn_pages_on_either_window_pair_of_the_budget() {
        let fast = &alerts("99.9", "500ms")[0];
        assert_eq!(
            (fast.name, fast.severity),
            ("WeirErrorBudgetBurnFast", Severity::Page)
        );
        assert_eq!(
            fast.expr,
            "(
  (1 - weir:service_success_ratio:rate1h) > (14.4 * 0.001)
  and
  (1 - weir:service_success_ratio:rate5m) > (14.4 * 0.001)
)
or
(
  (1 - weir:service_success_ratio:rate6h) > (6 * 0.001)
  and
  (1 - weir:service_success_ratio:rate30m) > (6 * 0.001)
)
"
        );
        assert!(fast.description.contains(
            "with a 5xx (all sidecars together): more than 14.4 times over 1h and 5m the 0.1% \
             error budget of its 99.9% success SLO, or 6 times over 6h and 30m; at this rate the \
             30-day budget is gone in 2 to 5 days"
        ));
    }

    #[test]
    fn slow_burn_tickets_and_follows_the_slo_flag() {
        let slow = &alerts("99.5", "500ms")[1];
        assert_eq!(
            (slow.name, slow.severity),
            ("WeirErrorBudgetBurnSlow", Severity::Ticket)
        );
        assert!(slow
            .expr
            .contains("(1 - weir:service_success_ratio:rate1d) > (3 * 0.005)"));
        assert!(slow
            .expr
            .contains("(1 - weir:service_success_ratio:rate6h) > (1 * 0.005)"));
        assert!(slow
            .description
            .contains("the 0.5% error budget of its 99.5% success SLO"));
        assert!(slow.description.contains("gone in 10 to 30 days"));
    }

    #[test]
    fn latency_alert_follows_the_threshold_flag() {
        let latency = &alerts("99.9", "250ms")[2];
        assert_eq!(
            latency.expr,
            "weir:service_latency_p99_seconds:rate5m > 0.25\n"
        );
        assert_eq!(latency.for_, Some("10m"));
        assert!(latency.description.contains("has been above 250ms for 10m"));
    }
}
