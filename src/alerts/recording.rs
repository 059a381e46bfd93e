//! Recording rules: success ratio and latency quantiles per service and per route, summed over
//! every sidecar Prometheus scrapes. The burn-rate alerts read the per-service success ratios
//! over each of their windows; dashboards read the rest.
//!
//! A request succeeds when its `code` is not 5xx. Services and routes are selected by their
//! configured names, so the series of requests that reached no route or service (whose
//! labels are empty, or `none`) are never counted.

use super::burn::windows;
use super::rules::{Group, Rule};
use super::targets::{any_of, Targets};

/// The window latency quantiles and per-route ratios are recorded over.
const SHORT_WINDOW: &str = "5m";

/// The recorded per-service success ratio over `window` (`5m`, `1h`, …).
pub(crate) fn service_success_ratio(window: &str) -> String {
    format!("weir:service_success_ratio:rate{window}")
}

/// The recorded per-service p99 latency, in seconds, over 5 minutes.
pub(crate) const SERVICE_P99: &str = "weir:service_latency_p99_seconds:rate5m";

/// The recorded per-route p99 latency, in seconds, over 5 minutes.
pub(crate) const ROUTE_P99: &str = "weir:route_latency_p99_seconds:rate5m";

/// The recording rules for the HTTP services and routes of a configuration, or `None` when
/// it has none (a TCP-only sidecar).
pub(crate) fn group(targets: &Targets) -> Option<Group> {
    if targets.http_services.is_empty() {
        return None;
    }
    let service = Selection {
        label: "service",
        by: "service",
        matcher: any_of(&targets.http_services),
    };
    let route = Selection {
        label: "route",
        by: "listener, route",
        matcher: any_of(&targets.http_routes),
    };
    let mut rules = Vec::new();
    for window in windows() {
        rules.push(Rule::Record {
            record: service_success_ratio(window),
            expr: success_ratio(&service, window),
        });
    }
    rules.push(Rule::Record {
        record: format!("weir:route_success_ratio:rate{SHORT_WINDOW}"),
        expr: success_ratio(&route, SHORT_WINDOW),
    });
    for (selection, level) in [(&service, "service"), (&route, "route")] {
        for (quantile, name) in [("0.5", "p50"), ("0.99", "p99")] {
            rules.push(Rule::Record {
                record: format!("weir:{level}_latency_{name}_seconds:rate{SHORT_WINDOW}"),
                expr: latency(selection, quantile),
            });
        }
    }
    Some(Group {
        name: "weir-recording",
        rules,
    })
}

/// Which series a recording rule reads and how it sums them.
struct Selection {
    /// The label selected on (`service`).
    label: &'static str,
    /// The labels the sum keeps (`listener, route`).
    by: &'static str,
    /// The matcher's value: the configured names.
    matcher: String,
}

/// Requests answered without a 5xx over all requests, over `window`.
///
/// The `or 0 * …` term makes a selection whose every request failed record 0 (not nothing:
/// it may never have had a non-5xx series to divide).
fn success_ratio(s: &Selection, window: &str) -> String {
    let Selection { label, by, matcher } = s;
    let all = format!("weir_http_requests_total{{{label}=~\"{matcher}\"}}");
    let ok = format!("weir_http_requests_total{{{label}=~\"{matcher}\",code!~\"5..\"}}");
    format!(
        "(\n  sum by ({by}) (rate({ok}[{window}]))\n  or\n  0 * sum by ({by}) (rate({all}[{window}]))\n)\n/\nsum by ({by}) (rate({all}[{window}]))\n"
    )
}

/// The `quantile` of request durations over the short window.
fn latency(s: &Selection, quantile: &str) -> String {
    let Selection { label, by, matcher } = s;
    format!(
        "histogram_quantile(\n  {quantile},\n  sum by ({by}, le) (rate(weir_http_request_duration_seconds_bucket{{{label}=~\"{matcher}\"}}[{SHORT_WINDOW}]))\n)\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Targets {
        Targets {
            http_services: vec!["a".into(), "b.c".into()],
            http_routes: vec!["r".into()],
            services: vec!["a".into(), "b.c".into()],
            breakers: vec![],
            identity: false,
            span_export: false,
        }
    }

    fn records(group: &Group) -> Vec<(&str, &str)> {
        group
            .rules
            .iter()
            .filter_map(|r| match r {
                Rule::Record { record, expr } => Some((record.as_str(), expr.as_str())),
                Rule::Alert(_) => None,
            })
            .collect()
    }

    #[test]
    fn success_ratios_are_recorded_over_every_burn_rate_window() {
        let group = group(&targets()).expect("http services");
        let names: Vec<&str> = records(&group).iter().map(|r| r.0).collect();
        assert_eq!(
            names,
            [
                "weir:service_success_ratio:rate5m",
                "weir:service_success_ratio:rate30m",
                "weir:service_success_ratio:rate1h",
                "weir:service_success_ratio:rate2h",
                "weir:service_success_ratio:rate6h",
                "weir:service_success_ratio:rate1d",
                "weir:service_success_ratio:rate3d",
                "weir:route_success_ratio:rate5m",
                "weir:service_latency_p50_seconds:rate5m",
                "weir:service_latency_p99_seconds:rate5m",
                "weir:route_latency_p50_seconds:rate5m",
                "weir:route_latency_p99_seconds:rate5m",
            ]
        );
        assert!(names.contains(&SERVICE_P99) && names.contains(&ROUTE_P99));
    }

    #[test]
    fn success_counts_non_5xx_answers_of_the_configured_services_only() {
        let group = group(&targets()).expect("http services");
        let (_, expr) = records(&group)[2];
        assert_eq!(
            expr,
            r#"(
  sum by (service) (rate(weir_http_requests_total{service=~"a|b\\.c",code!~"5.."}[1h]))
  or
  0 * sum by (service) (rate(weir_http_requests_total{service=~"a|b\\.c"}[1h]))
)
/
sum by (service) (rate(weir_http_requests_total{service=~"a|b\\.c"}[1h]))
"#
        );
    }

    #[test]
    fn route_latency_keeps_the_listener_apart() {
        let group = group(&targets()).expect("http services");
        let (_, expr) = records(&group)[11];
        assert!(
            expr.contains(
                r#"sum by (listener, route, le) (rate(weir_http_request_duration_seconds_bucket{route=~"r"}[5m]))"#
            ),
            "{expr}"
        );
        assert!(expr.starts_with("histogram_quantile(\n  0.99,"), "{expr}");
    }

    #[test]
    fn a_tcp_only_configuration_records_nothing() {
        let mut t = targets();
        t.http_services.clear();
        t.http_routes.clear();
        assert_eq!(group(&t), None);
    }
}
