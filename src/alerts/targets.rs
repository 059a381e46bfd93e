//! What a configuration gives the rules to watch: which services answer HTTP requests, which
//! routes exist, which services have a circuit breaker, whether there is a workload identity
//! and a span exporter. Rules for things a configuration does not have are left out, so the
//! rule file reads as a description of this deployment.

use crate::config::{Config, ListenerProtocol};

/// The names and features of one configuration that rules select on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Targets {
    /// Services that are backends of routes on HTTP listeners: the ones with request metrics.
    pub http_services: Vec<String>,
    /// Routes of HTTP listeners.
    pub http_routes: Vec<String>,
    /// Every configured service: each has endpoints and may eject them.
    pub services: Vec<String>,
    /// Services with a `circuit_breaker`.
    pub breakers: Vec<String>,
    /// Whether the workload has an `identity` (a certificate that expires).
    pub identity: bool,
    /// Whether spans are exported (`tracing.otlp`), so they can be dropped.
    pub span_export: bool,
}

impl Targets {
    /// Reads the targets from a validated configuration, in configuration order.
    pub fn from_config(config: &Config) -> Self {
        let mut http_services = Vec::new();
        let mut http_routes = Vec::new();
        for listener in &config.listeners {
            if listener.protocol != ListenerProtocol::Http {
                continue;
            }
            for route in &listener.routes {
                push_new(&mut http_routes, &route.name);
                for backend in &route.backends {
                    push_new(&mut http_services, &backend.service);
                }
            }
        }
        Targets {
            http_services,
            http_routes,
            services: config.services.iter().map(|s| s.name.clone()).collect(),
            breakers: config
                .services
                .iter()
                .filter(|s| s.circuit_breaker.is_some())
                .map(|s| s.name.clone())
                .collect(),
            identity: config.identity.is_some(),
            span_export: config.tracing.as_ref().is_some_and(|t| t.otlp.is_some()),
        }
    }
}

/// Appends `name` unless it is already there (two routes may share a service).
fn push_new(names: &mut Vec<String>, name: &str) {
    if !names.iter().any(|n| n == name) {
        names.push(name.to_string());
    }
}

/// A PromQL regular-expression matcher value (the text between the quotes of `label=~"…"`)
/// that matches exactly `names`: `reviews-v1|shop\\.ratings`.
///
/// Names are limited to letters, digits, `-`, `_` and `.` by the configuration; any other
/// punctuation is escaped all the same, so the matcher never means more than the names.
pub(crate) fn any_of(names: &[String]) -> String {
    names
        .iter()
        .map(|name| {
            let mut out = String::with_capacity(name.len());
            for c in name.chars() {
                if c.is_ascii_punctuation() && !matches!(c, '-' | '_') {
                    // One backslash for the regular expression, escaped for the PromQL string.
                    out.push_str("\\\\");
                }
                out.push(c);
            }
            out
        })
        .collect::<Vec<_>>()
        .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(yaml: &str) -> Targets {
        let loaded = crate::config::load_str("t.yaml", yaml).expect("valid configuration");
        Targets::from_config(&loaded.config)
    }

    const CONFIG: &str = r#"
version: 1
admin: { address: 127.0.0.1:9901 }
listeners:
  - name: outbound
    address: 127.0.0.1:15001
    routes:
      - name: canary
        backends: [{ service: reviews-v2 }]
      - name: reviews
        backends: [{ service: reviews-v1, weight: 90 }, { service: reviews-v2, weight: 10 }]
        mirror: { service: shadow, percent: 10 }
  - name: db
    address: 127.0.0.1:15432
    protocol: tcp
    routes: [{ name: db, backends: [{ service: postgres }] }]
services:
  - name: reviews-v1
    endpoints: [127.0.0.1:9001]
    circuit_breaker: { window: 10s }
  - name: reviews-v2
    endpoints: [127.0.0.1:9002]
  - name: shadow
    endpoints: [127.0.0.1:9003]
  - name: postgres
    endpoints: [127.0.0.1:5432]
"#;

    #[test]
    fn only_backends_of_http_routes_have_request_metrics() {
        let t = targets(CONFIG);
        assert_eq!(t.http_services, ["reviews-v2", "reviews-v1"]);
        assert_eq!(t.http_routes, ["canary", "reviews"]);
        assert_eq!(
            t.services,
            ["reviews-v1", "reviews-v2", "shadow", "postgres"]
        );
        assert_eq!(t.breakers, ["reviews-v1"]);
        assert!(!t.identity && !t.span_export);
    }

    #[test]
    fn identity_and_span_export_are_read_from_their_sections() {
        let with = CONFIG.replace(
            "services:\n",
            "identity: { cert: c.crt, key: c.key, trust_bundle: ca.crt }\n\
             tracing: { otlp: { endpoint: http://127.0.0.1:4318/v1/traces } }\nservices:\n",
        );
        let t = targets(&with);
        assert!(t.identity && t.span_export);
        let sampling_only = CONFIG.replace(
            "services:\n",
            "tracing: { sampling_percent: 5 }\nservices:\n",
        );
        assert!(!targets(&sampling_only).span_export);
    }

    #[test]
    fn matchers_name_exactly_the_services() {
        let names = ["reviews-v1".to_string(), "shop.ratings_2".to_string()];
        assert_eq!(any_of(&names), r"reviews-v1|shop\\.ratings_2");
        assert_eq!(any_of(&["a|b".to_string()]), r"a\\|b");
    }
}
