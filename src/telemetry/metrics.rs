//! The metrics registry (DESIGN §4) and the pre-resolved handles the request path uses.
//!
//! Label sets are formatted once, when configuration is built; the request path only
//! increments atomics through handles such as [`RequestCounters`].

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::histogram::DurationFamily;
pub use super::histogram::RouteLabels;
use super::process::ProcessCollector;
use super::series::{Live, Tracked, NONE};
use super::trace::SpanCounters;
use crate::error::ErrorCode;

/// Labels of `weir_http_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Listener name.
    pub listener: String,
    /// Route name, `none` when none matched.
    pub route: String,
    /// Service name, `none` when none was chosen.
    pub service: String,
    /// Endpoint address, `none` when none was chosen.
    pub endpoint: String,
    /// Response status code.
    pub code: String,
    /// weir error code, `none` for responses relayed from an upstream.
    pub error: String,
}

/// Labels of `weir_trace_spans_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpanOutcomeLabels {
    /// `exported`, `dropped` or `failed`.
    pub outcome: String,
}

/// Labels of per-endpoint gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// Service name.
    pub service: String,
    /// Endpoint address.
    pub endpoint: String,
}

/// Labels of `weir_upstream_endpoints`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointStateLabels {
    /// Service name.
    pub service: String,
    /// `healthy`, `ejected` or `unhealthy`.
    pub state: String,
}

/// Labels of per-service metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// Service name.
    pub service: String,
}

/// Labels of `weir_circuit_breaker_state`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerStateLabels {
    /// Service name.
    pub service: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
}

/// Labels of `weir_circuit_breaker_transitions_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakerTransitionLabels {
    /// Service name.
    pub service: String,
    /// State left.
    pub from: String,
    /// State entered.
    pub to: String,
}

/// Labels of `weir_outlier_ejections_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EjectionLabels {
    /// Service name.
    pub service: String,
    /// Endpoint address.
    pub endpoint: String,
    /// `consecutive_5xx` or `consecutive_gateway_errors`.
    pub reason: String,
}

/// Labels of `weir_overflow_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OverflowLabels {
    /// Service name.
    pub service: String,
    /// `max_connections`, `max_pending_requests`, `max_requests` or `max_retries`.
    pub limit: String,
}

/// Labels of `weir_retries_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    /// Route name.
    pub route: String,
    /// Service name.
    pub service: String,
    /// `attempted` (a retry was sent), `budget_exhausted`, `overflow` or `exhausted`
    /// (attempts used up).
    pub outcome: String,
}

/// Labels of `weir_tls_handshakes_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsHandshakeLabels {
    /// Listener name (inbound) or service name (outbound).
    pub listener: String,
    /// `server` (weir accepted) or `client` (weir connected).
    pub side: String,
    /// `success` (a full handshake), `resumed` (an earlier session resumed) or `failure`.
    pub result: String,
}

/// Labels of `weir_tls_peer_requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsPeerLabels {
    /// Listener name.
    pub listener: String,
    /// The `allow` entry the peer matched (an exact ID or a `*` pattern), `other` for a
    /// peer no entry names, `none` for a plaintext client: bounded by the configuration.
    pub peer_identity: String,
    /// `allow` or `deny`.
    pub decision: String,
}

/// Labels of `weir_tls_certificate_expiry_timestamp_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// The workload's SPIFFE ID.
    pub identity: String,
}

/// Labels of `weir_tls_identity_reloads_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `success` (a new identity is in force) or `failure` (refused; the old one stays).
    pub result: String,
}

/// Labels of `weir_tcp_connections_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TcpLabels {
    /// Listener name.
    pub listener: String,
    /// Service the connections were forwarded to.
    pub service: String,
}

/// Labels of `weir_tcp_bytes_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TcpBytesLabels {
    /// Listener name.
    pub listener: String,
    /// Service the connections were forwarded to.
    pub service: String,
    /// `upstream` (from the client to the service) or `downstream` (back).
    pub direction: String,
}

/// Labels of `weir_downstream_errors_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DownstreamErrorLabels {
    /// Listener name.
    pub listener: String,
    /// What went wrong: `rejected` (over `max_connections`), `timeout` (first byte, head or
    /// idle).
    pub kind: String,
}

/// Labels of `weir_build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// Every metric family weir exports, created once per process and shared by all config
/// snapshots so that counters survive reloads.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `weir_http_requests_total`.
    pub requests: Tracked<RequestLabels, Counter>,
    /// `weir_http_request_duration_seconds`.
    pub request_duration: DurationFamily,
    /// `weir_http_requests_in_flight`.
    pub in_flight: Tracked<EndpointLabels, Gauge>,
    /// `weir_upstream_endpoints`.
    pub upstream_endpoints: Tracked<EndpointStateLabels, Gauge>,
    /// `weir_circuit_breaker_state`.
    pub breaker_state: Tracked<BreakerStateLabels, Gauge>,
    /// `weir_circuit_breaker_transitions_total`.
    pub breaker_transitions: Tracked<BreakerTransitionLabels, Counter>,
    /// `weir_circuit_breaker_rejected_total`.
    pub breaker_rejected: Tracked<ServiceLabels, Counter>,
    /// `weir_outlier_ejections_total`.
    pub outlier_ejections: Tracked<EjectionLabels, Counter>,
    /// `weir_overflow_total`.
    pub overflow: Tracked<OverflowLabels, Counter>,
    /// `weir_retries_total`.
    pub retries: Tracked<RetryLabels, Counter>,
    /// `weir_access_log_dropped_total`.
    pub access_log_dropped: Counter,
    /// `weir_downstream_errors_total`.
    pub downstream_errors: Tracked<DownstreamErrorLabels, Counter>,
    /// `weir_tls_handshakes_total`.
    pub tls_handshakes: Tracked<TlsHandshakeLabels, Counter>,
    /// `weir_tls_peer_requests_total`.
    pub tls_peer_requests: Tracked<TlsPeerLabels, Counter>,
    /// `weir_tls_certificate_expiry_timestamp_seconds`.
    pub certificate_expiry: Family<CertificateLabels, Gauge>,
    /// `weir_tls_identity_reloads_total`.
    pub identity_reloads: Family<ReloadLabels, Counter>,
    /// `weir_config_reloads_total`.
    pub config_reloads: ConfigReloadCounters,
    /// `weir_tcp_connections_total`.
    pub tcp_connections: Tracked<TcpLabels, Counter>,
    /// `weir_tcp_bytes_total`.
    pub tcp_bytes: Tracked<TcpBytesLabels, Counter>,
    /// `weir_trace_spans_total`, by outcome.
    pub trace_spans: SpanCounters,
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let requests = Tracked::<RequestLabels, Counter>::default();
        registry.register(
            "weir_http_requests",
            "HTTP requests completed, by where they went, status code and weir error code",
            requests.family(),
        );
        // Rendered by the family itself (with trace-id exemplars), after the registry.
        let request_duration = DurationFamily::default();
        let in_flight = Tracked::<EndpointLabels, Gauge>::default();
        registry.register(
            "weir_http_requests_in_flight",
            "Requests sent to an endpoint whose response has not fully arrived",
            in_flight.family(),
        );
        let upstream_endpoints = Tracked::<EndpointStateLabels, Gauge>::default();
        registry.register(
            "weir_upstream_endpoints",
            "Endpoints of each service, by state",
            upstream_endpoints.family(),
        );
        let breaker_state = Tracked::<BreakerStateLabels, Gauge>::default();
        registry.register(
            "weir_circuit_breaker_state",
            "Circuit breaker state of each service; 1 for the current state",
            breaker_state.family(),
        );
        let breaker_transitions = Tracked::<BreakerTransitionLabels, Counter>::default();
        registry.register(
            "weir_circuit_breaker_transitions",
            "Circuit breaker state changes",
            breaker_transitions.family(),
        );
        let breaker_rejected = Tracked::<ServiceLabels, Counter>::default();
        registry.register(
            "weir_circuit_breaker_rejected",
            "Requests refused because the service's circuit breaker was open",
            breaker_rejected.family(),
        );
        let outlier_ejections = Tracked::<EjectionLabels, Counter>::default();
        registry.register(
            "weir_outlier_ejections",
            "Endpoints ejected by outlier detection, by reason",
            outlier_ejections.family(),
        );
        let overflow = Tracked::<OverflowLabels, Counter>::default();
        registry.register(
            "weir_overflow",
            "Requests refused because a connection or request limit was reached",
            overflow.family(),
        );
        let retries = Tracked::<RetryLabels, Counter>::default();
        registry.register(
            "weir_retries",
            "Retry decisions, by outcome",
            retries.family(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "weir_access_log_dropped",
            "Access-log lines dropped rather than delay a request: the writer's queue was full \
             (the writer fell behind or stderr blocked) or stderr could not be written",
            access_log_dropped.clone(),
        );
        let trace_spans = Family::<SpanOutcomeLabels, Counter>::default();
        registry.register(
            "weir_trace_spans",
            "Spans by what became of them: exported to the collector, dropped because the \
             export queue was full, or failed because the collector refused or did not answer",
            trace_spans.clone(),
        );
        let span_counter = |outcome: &str| {
            trace_spans.get_or_create_owned(&SpanOutcomeLabels {
                outcome: outcome.to_string(),
            })
        };
        let trace_spans = SpanCounters {
            exported: span_counter("exported"),
            dropped: span_counter("dropped"),
            failed: span_counter("failed"),
        };
        let downstream_errors = Tracked::<DownstreamErrorLabels, Counter>::default();
        registry.register(
            "weir_downstream_errors",
            "Downstream connections weir refused or closed because of their client, by kind",
            downstream_errors.family(),
        );
        let tls_handshakes = Tracked::<TlsHandshakeLabels, Counter>::default();
        registry.register(
            "weir_tls_handshakes",
            "TLS handshakes by listener, side and result",
            tls_handshakes.family(),
        );
        let tls_peer_requests = Tracked::<TlsPeerLabels, Counter>::default();
        registry.register(
            "weir_tls_peer_requests",
            "Requests on listeners with tls, by the peer identity's allow entry and decision",
            tls_peer_requests.family(),
        );
        let certificate_expiry = Family::<CertificateLabels, Gauge>::default();
        registry.register(
            "weir_tls_certificate_expiry_timestamp_seconds",
            "When the workload's certificate expires (Unix time)",
            certificate_expiry.clone(),
        );
        let identity_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "weir_tls_identity_reloads",
            "Changes of the identity files: taken into force, or refused (the old identity stays)",
            identity_reloads.clone(),
        );
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "weir_config_reloads",
            "Configuration reloads: taken into force, or refused (the old configuration stays)",
            config_reloads.clone(),
        );
        let config_reloads = ConfigReloadCounters {
            success: config_reloads.get_or_create_owned(&ReloadLabels {
                result: "success".into(),
            }),
            failure: config_reloads.get_or_create_owned(&ReloadLabels {
                result: "failure".into(),
            }),
        };
        let tcp_connections = Tracked::<TcpLabels, Counter>::default();
        registry.register(
            "weir_tcp_connections",
            "Connections a tcp listener forwarded to a service (counted when they end)",
            tcp_connections.family(),
        );
        let tcp_bytes = Tracked::<TcpBytesLabels, Counter>::default();
        registry.register(
            "weir_tcp_bytes",
            "Bytes a tcp listener forwarded, by direction",
            tcp_bytes.family(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
            })
            .set(1);
        registry.register("weir_build_info", "Version of weir; always 1", build_info);
        registry.register_collector(Box::new(ProcessCollector::new()));
        Arc::new(Metrics {
            registry,
            requests,
            request_duration,
            in_flight,
            upstream_endpoints,
            breaker_state,
            breaker_transitions,
            breaker_rejected,
            outlier_ejections,
            overflow,
            retries,
            access_log_dropped,
            downstream_errors,
            tls_handshakes,
            tls_peer_requests,
            certificate_expiry,
            identity_reloads,
            config_reloads,
            tcp_connections,
            tcp_bytes,
            trace_spans,
        })
    }

    /// Removes the series of listeners, routes and services `live` no longer names (after a
    /// reload took a new configuration into force). Endpoint series are the business of
    /// their service: see [`Metrics::forget_endpoints`].
    pub fn forget_removed(&self, live: &Live) {
        self.requests
            .retain(|l| live.names(&l.listener, &l.route, &l.service));
        self.request_duration
            .retain(|l| live.names(&l.listener, &l.route, &l.service));
        self.in_flight.retain(|l| live.service(&l.service));
        self.upstream_endpoints.retain(|l| live.service(&l.service));
        self.breaker_state.retain(|l| live.breaker(&l.service));
        self.breaker_transitions
            .retain(|l| live.breaker(&l.service));
        self.breaker_rejected.retain(|l| live.breaker(&l.service));
        self.outlier_ejections.retain(|l| live.service(&l.service));
        self.overflow.retain(|l| live.service(&l.service));
        self.retries
            .retain(|l| live.route_service(&l.route, &l.service));
        self.downstream_errors
            .retain(|l| live.listener(&l.listener));
        self.tls_handshakes.retain(|l| match l.side.as_str() {
            "client" => live.tls_service(&l.listener),
            _ => live.tls_listener(&l.listener),
        });
        self.tls_peer_requests
            .retain(|l| live.tls_peer(&l.listener, &l.peer_identity));
        self.tcp_connections
            .retain(|l| live.listener(&l.listener) && live.service(&l.service));
        self.tcp_bytes
            .retain(|l| live.listener(&l.listener) && live.service(&l.service));
    }

    /// Removes the series of `service`'s endpoints that `current` does not hold (they left
    /// the service: discovery or a reload removed them).
    pub fn forget_endpoints(&self, service: &str, current: &dyn Fn(&str) -> bool) {
        let gone = |s: &str, endpoint: &str| s == service && endpoint != NONE && !current(endpoint);
        self.requests.retain(|l| !gone(&l.service, &l.endpoint));
        self.in_flight.retain(|l| !gone(&l.service, &l.endpoint));
        self.outlier_ejections
            .retain(|l| !gone(&l.service, &l.endpoint));
    }

    /// Renders every metric in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut out, &self.registry);
        self.request_duration.encode(&mut out);
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }

    /// Renders every metric in the Prometheus text format 0.0.4, for scrapers and tools
    /// (such as `promtool check metrics`) that do not negotiate OpenMetrics.
    pub fn render_prometheus_text(&self) -> String {
        openmetrics_to_prometheus_text(&self.render())
    }
}

/// Converts OpenMetrics text to the Prometheus 0.0.4 text format: counter families are
/// named with their `_total` suffix in `# HELP`/`# TYPE`, and `# UNIT`, `# EOF` and exemplars
/// are dropped.
fn openmetrics_to_prometheus_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let descriptor = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match descriptor {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(kind);
                out.push_str(name);
                out.push_str(suffix);
                out.push(' ');
                out.push_str(tail);
            }
            // Exemplars (` # {trace_id="..."} value ts`) are OpenMetrics only.
            None => out.push_str(line.split_once(" # {").map_or(line, |(sample, _)| sample)),
        }
        out.push('\n');
    }
    out
}

/// `weir_config_reloads_total`, by result.
#[derive(Debug, Clone)]
pub struct ConfigReloadCounters {
    /// A new configuration is in force.
    pub success: Counter,
    /// A configuration was refused; the old one stays.
    pub failure: Counter,
}

/// Status codes with a pre-resolved counter; others take a slower, formatting path.
const COMMON_STATUSES: [u16; 17] = [
    200, 201, 202, 204, 301, 302, 304, 400, 401, 403, 404, 409, 429, 499, 500, 502, 503,
];

/// The `weir_http_requests_total` counters of one (listener, route, service, endpoint).
///
/// `weir_tcp_connections_total` and `weir_tcp_bytes_total` handles of one listener and
/// service: what a connection forwarded as bytes counts when it ends.
#[derive(Debug)]
pub struct TcpCounters {
    /// Connections forwarded.
    pub connections: Counter,
    /// Bytes from the client.
    pub upstream: Counter,
    /// Bytes from the upstream.
    pub downstream: Counter,
}

impl TcpCounters {
    /// The handles of `listener`'s connections to `service`.
    pub fn new(metrics: &Metrics, listener: &str, service: &str) -> Self {
        let bytes = |direction: &str| {
            metrics.tcp_bytes.get_or_create_owned(&TcpBytesLabels {
                listener: listener.to_string(),
                service: service.to_string(),
                direction: direction.to_string(),
            })
        };
        TcpCounters {
            connections: metrics.tcp_connections.get_or_create_owned(&TcpLabels {
                listener: listener.to_string(),
                service: service.to_string(),
            }),
            upstream: bytes("upstream"),
            downstream: bytes("downstream"),
        }
    }
}

/// Each status and error code gets its counter on first use (so `/metrics` shows only
/// series that happened); after that, counting is one atomic add.
#[derive(Debug)]
pub struct RequestCounters {
    family: Tracked<RequestLabels, Counter>,
    base: RequestLabels,
    /// Set once what these counters describe is gone (an endpoint that left, a route a
    /// reload removed): a request still in flight then counts into a detached counter
    /// instead of bringing its series back.
    retired: AtomicBool,
    by_status: [OnceLock<Counter>; COMMON_STATUSES.len()],
    by_error: [OnceLock<Counter>; ErrorCode::ALL.len()],
}

impl RequestCounters {
    /// Handles for one combination of listener, route, service and endpoint names (each
    /// [`NONE`] when there is none).
    pub fn new(
        metrics: &Metrics,
        listener: &str,
        route: &str,
        service: &str,
        endpoint: &str,
    ) -> Self {
        RequestCounters {
            family: metrics.requests.clone(),
            base: RequestLabels {
                listener: listener.to_string(),
                route: route.to_string(),
                service: service.to_string(),
                endpoint: endpoint.to_string(),
                code: String::new(),
                error: NONE.to_string(),
            },
            retired: AtomicBool::new(false),
            by_status: Default::default(),
            by_error: Default::default(),
        }
    }

    /// What these counters describe is gone; see [`RequestCounters::retired`].
    pub fn retire(&self) {
        self.retired.store(true, Relaxed);
    }

    /// The labels these counters share (all but `code` and `error`).
    pub fn labels(&self) -> &RequestLabels {
        &self.base
    }

    fn resolve(&self, status: u16, error: &str) -> Counter {
        if self.retired.load(Relaxed) {
            return Counter::default();
        }
        let mut labels = self.base.clone();
        labels.code = status.to_string();
        labels.error = error.to_string();
        self.family.get_or_create_owned(&labels)
    }

    /// Counts a response relayed from the upstream.
    pub fn upstream(&self, status: u16) {
        match COMMON_STATUSES.iter().position(|&s| s == status) {
            Some(i) => self.by_status[i]
                .get_or_init(|| self.resolve(status, NONE))
                .inc(),
            None => self.resolve(status, NONE).inc(),
        };
    }

    /// Counts a response weir made itself.
    pub fn proxy_error(&self, code: ErrorCode, status: u16) {
        if status == code.status().as_u16() {
            self.by_error[code.index()]
                .get_or_init(|| self.resolve(status, code.as_str()))
                .inc();
        } else {
            self.resolve(status, code.as_str()).inc();
        }
    }

    /// Counts a relayed response whose body then failed (e.g. the upstream reset mid-body).
    pub fn upstream_failed_mid_body(&self, status: u16, code: ErrorCode) {
        self.resolve(status, code.as_str()).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_their_labels_and_only_when_used() {
        let m = Metrics::new();
        let c = RequestCounters::new(&m, "out", "r", "svc", "127.0.0.1:1");
        c.upstream(200);
        c.upstream(200);
        c.upstream(418);
        c.proxy_error(ErrorCode::Timeout, 504);
        let text = m.render();
        assert!(text.contains(r#"weir_http_requests_total{listener="out",route="r",service="svc",endpoint="127.0.0.1:1",code="200",error="none"} 2"#), "{text}");
        assert!(text.contains(r#"code="418",error="none"} 1"#));
        assert!(text.contains(r#"code="504",error="timeout"} 1"#));
        assert!(!text.contains(r#"code="500""#));
        assert!(text.contains("weir_build_info"));
        assert!(
            text.contains("\nweir_access_log_dropped_total 0\n"),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes"));
        let prom = m.render_prometheus_text();
        assert!(
            prom.contains("# TYPE weir_http_requests_total counter\n"),
            "{prom}"
        );
        assert!(
            prom.contains("# HELP weir_http_requests_total HTTP requests"),
            "{prom}"
        );
        assert!(!prom.contains("# EOF") && !prom.contains("# UNIT"));
    }
}
