//! `weir demo --prometheus`: a scrape configuration for the running demo and the three
//! queries that answer the questions the demo is about (is the balancing even, does the
//! canary get its share, how slow is the slow end), ready to paste into Prometheus.

use std::net::SocketAddr;

/// The scrape job and the queries for a weir whose admin server is at `admin` and whose
/// load goes to `listener`.
pub fn scrape_help(admin: SocketAddr, listener: &str) -> String {
    format!(
        "\
# Prometheus: add this job under scrape_configs in prometheus.yml (the demo's /metrics is
# live while it runs), then try the queries below in the expression browser.
scrape_configs:
  - job_name: weir-demo
    scrape_interval: 1s
    static_configs:
      - targets: [\"{admin}\"]

# 1. Is the balancing even? Requests per second by service and endpoint:
#    {rate}
# 2. Is the canary getting its share? Each service's share of each route's requests:
#    {split}
# 3. How slow is the slow end? p99 latency per route, in seconds:
#    {p99}
",
        rate = endpoint_rate(listener),
        split = split_share(listener),
        p99 = route_p99(listener),
    )
}

/// Query 1: requests per second by service and endpoint.
fn endpoint_rate(listener: &str) -> String {
    format!(
        "sum by (service, endpoint) (rate(weir_http_requests_total{{listener=\"{listener}\",endpoint!=\"none\"}}[1m]))"
    )
}

/// Query 2: each service's share of its route's requests.
fn split_share(listener: &str) -> String {
    format!(
        "sum by (route, service) (rate(weir_http_requests_total{{listener=\"{listener}\",service!=\"none\"}}[1m])) / ignoring(service) group_left sum by (route) (rate(weir_http_requests_total{{listener=\"{listener}\",service!=\"none\"}}[1m]))"
    )
}

/// Query 3: p99 latency per route.
fn route_p99(listener: &str) -> String {
    format!(
        "histogram_quantile(0.99, sum by (route, le) (rate(weir_http_request_duration_seconds_bucket{{listener=\"{listener}\",route!=\"none\"}}[1m])))"
    )
}

/// The three queries, for tests that run them against a real Prometheus.
pub fn queries(listener: &str) -> [String; 3] {
    [
        endpoint_rate(listener),
        split_share(listener),
        route_p99(listener),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_names_the_admin_address_and_every_query() {
        let admin: SocketAddr = "127.0.0.1:9901".parse().expect("address");
        let help = scrape_help(admin, "demo");
        assert!(
            help.contains("      - targets: [\"127.0.0.1:9901\"]"),
            "{help}"
        );
        for q in queries("demo") {
            assert!(help.contains(&format!("#    {q}\n")), "{help}");
        }
    }
}
