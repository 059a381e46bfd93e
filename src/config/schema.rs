//! The typed configuration: plain data, validated, knowing nothing of the proxy.
//!
//! Every type here mirrors one section of DESIGN §3. The decoder in `decode.rs` builds these
//! from YAML and guarantees the invariants documented on each field, so the rest of weir can
//! trust them without re-checking (addresses parse, weights are not all zero, names resolve).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// The whole configuration file (`version: 1`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Schema version; only `1` exists.
    pub version: u32,
    /// Who this proxy speaks for; labels metrics and spans.
    pub node: Node,
    /// The admin server (metrics, readiness, config dump).
    pub admin: Admin,
    /// This workload's mTLS identity, if any.
    pub identity: Option<Identity>,
    /// Where weir accepts traffic. Names and addresses are unique.
    pub listeners: Vec<Listener>,
    /// Where weir sends traffic. Names are unique; every route backend names one of these.
    pub services: Vec<Service>,
    /// Trace propagation and export.
    pub tracing: Option<Tracing>,
    /// Log level, format and the access log switch.
    pub logging: Logging,
}

/// Who this proxy speaks for.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Node {
    /// The application service name (e.g. `productpage`).
    pub service: String,
    /// The Kubernetes namespace.
    pub namespace: String,
    /// The workload (deployment) name.
    pub workload: String,
}

/// The admin server's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Admin {
    /// Address of `/metrics`, `/ready`, `/live`, `/config`, `/services`.
    pub address: SocketAddr,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            address: SocketAddr::from(([127, 0, 0, 1], 9901)),
        }
    }
}

/// This workload's certificate, key and the mesh trust bundle (PEM files).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Identity {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA certificates that sign peers (PEM).
    pub trust_bundle: PathBuf,
}

/// One listening socket and the routes of the traffic it accepts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listener {
    /// Unique name; a metric label.
    pub name: String,
    /// Socket address to bind.
    pub address: SocketAddr,
    /// What the listener speaks.
    pub protocol: ListenerProtocol,
    /// Accept iptables-redirected traffic and route by original destination.
    pub transparent: bool,
    /// On a transparent listener: what happens to a connection whose original destination
    /// no route claims.
    pub unknown_destination: UnknownDestination,
    /// Which way the listener's traffic flows relative to the application beside weir (its
    /// spans are server spans inbound, client spans outbound). Defaults to `inbound` for a
    /// listener with `tls`, `outbound` otherwise.
    pub direction: Direction,
    /// Inbound TLS settings.
    pub tls: Option<ListenerTls>,
    /// Bounds on what one client may make the listener hold.
    pub limits: ListenerLimits,
    /// How long a connection may wait on its client.
    pub timeouts: ListenerTimeouts,
    /// Routes in order; the first match wins. Empty only on a transparent listener, whose
    /// routes to the services that claim destinations (`addresses`) are appended when the
    /// file is loaded (see docs/configuration.md, "Transparent listeners").
    pub routes: Vec<Route>,
}

/// The protocol a route lets clients switch to when it says nothing (Linkerd carries
/// WebSockets without configuration, and a sidecar that silently broke them would surprise).
pub const DEFAULT_UPGRADE: &str = "websocket";

/// What a transparent listener does with a connection to a destination no route claims
/// (no service lists it in `addresses`, no route names it in `match.destination`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownDestination {
    /// Relay the connection's bytes, untouched, to where the application sent them (an
    /// inbound listener: to that port on 127.0.0.1). Istio's `ALLOW_ANY`: calls to hosts
    /// outside the mesh, and TLS the application makes itself, keep working.
    #[default]
    Passthrough,
    /// Close the connection (Istio's `REGISTRY_ONLY`), counted in
    /// `weir_downstream_errors_total{kind="unknown_destination"}`.
    Refuse,
}

/// Bounds on what clients may make one listener hold (defaults from Envoy, except
/// `max_connections`, which follows the process's file-descriptor limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ListenerLimits {
    /// Open downstream connections; beyond it the newest are closed at once.
    pub max_connections: u32,
    /// Largest request header block (HTTP/1.1 head, HTTP/2 header list); beyond it 431.
    pub max_request_header_bytes: u32,
    /// Most header fields in one request; beyond it 431.
    pub max_request_headers: u32,
    /// Concurrent streams one HTTP/2 connection may have open.
    pub max_concurrent_streams: u32,
}

/// How long a listener's connections may wait on their client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ListenerTimeouts {
    /// From accepting a connection to its first byte (and, for HTTP/2, to its first
    /// request); from a request head's first byte to its last.
    #[serde(with = "duration")]
    pub first_byte: Duration,
    /// A keep-alive connection with no request in flight is closed after this.
    #[serde(with = "duration")]
    pub idle: Duration,
    /// A request or response body that moves no byte for this long is ended.
    #[serde(with = "duration")]
    pub stream_idle: Duration,
}

impl Default for ListenerTimeouts {
    fn default() -> Self {
        ListenerTimeouts {
            first_byte: Duration::from_secs(10),
            idle: Duration::from_secs(3600),
            stream_idle: Duration::from_secs(300),
        }
    }
}

impl ListenerLimits {
    /// The defaults: Envoy's header limits (60 KiB, 100 fields), 200 HTTP/2 streams, and
    /// connections up to `fd_limit` less a reserve for upstream connections and files.
    pub fn with_defaults(fd_limit: u64) -> Self {
        ListenerLimits {
            max_connections: default_max_connections(fd_limit),
            max_request_header_bytes: 60 * 1024,
            max_request_headers: 100,
            max_concurrent_streams: 200,
        }
    }
}

/// Downstream connections one listener accepts by default: half the file descriptors the
/// process may open (each proxied connection needs an upstream one too), less 32 kept for
/// the admin server, logs and configuration files; at least 16.
pub fn default_max_connections(fd_limit: u64) -> u32 {
    let half = fd_limit.saturating_sub(32) / 2;
    u32::try_from(half).unwrap_or(u32::MAX).max(16)
}

/// The process's soft limit on open files (`ulimit -n`), read from `/proc/self/limits`;
/// 1024 when it cannot be read.
pub fn open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|soft| soft.parse().ok())
        })
        .unwrap_or(1024)
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerProtocol {
    /// HTTP/1.1 and HTTP/2 (prior knowledge), detected per connection.
    Http,
    /// Opaque TCP forwarding.
    Tcp,
}

/// Which way a listener's traffic flows (Envoy's `traffic_direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Other services calling the application beside weir.
    Inbound,
    /// The application beside weir calling other services.
    Outbound,
}

/// Inbound TLS settings of a listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerTls {
    /// Whether plaintext is refused, accepted, or TLS is off.
    pub mode: TlsMode,
    /// Peer identities allowed in (exact, or a prefix ending in `*`). Empty: any mesh peer.
    pub allow: Vec<String>,
}

/// Inbound mTLS mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Only mTLS connections are accepted.
    Strict,
    /// mTLS and plaintext are both accepted.
    Permissive,
    /// No TLS.
    Disabled,
}

/// A route: a match and where matching requests go.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Route {
    /// Unique within its listener; a metric label.
    pub name: String,
    /// Conditions, all of which must hold. Empty matches everything.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// Weighted backends. Never empty; weights never all zero.
    pub backends: Vec<Backend>,
    /// Bound on the whole request until response headers (all attempts together).
    #[serde(with = "duration_opt")]
    pub timeout: Option<Duration>,
    /// Retry policy.
    pub retries: Option<Retries>,
    /// Fault injection.
    pub fault: Option<Fault>,
    /// Traffic mirroring.
    pub mirror: Option<Mirror>,
    /// Protocols an HTTP/1.1 client may switch to through this route (`Upgrade` tokens,
    /// lower case, e.g. `websocket`). Others are dropped and the request is served as plain
    /// HTTP.
    pub upgrades: Vec<String>,
}

/// Conditions of a route; every present condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RouteMatch {
    /// Condition on the request path.
    pub path: Option<PathMatch>,
    /// Conditions on request headers, all of which must hold.
    pub headers: Vec<HeaderMatch>,
    /// Exact request method (upper case), e.g. `GET`.
    pub method: Option<String>,
    /// The mTLS peer's SPIFFE ID: exact, or a prefix ending in `*`. A plaintext client
    /// (no identity) never matches.
    pub peer: Option<String>,
    /// The request's authority (`Host`, or HTTP/2 `:authority`), compared without case.
    /// `exact` also holds when only a `:port` suffix differs.
    pub authority: Option<AuthorityMatch>,
    /// On a transparent listener: the connection's original destination is one of these
    /// (`0.0.0.0:PORT` or `[::]:PORT`: any address on that port, for inbound traffic to the
    /// pod itself).
    pub destination: Vec<SocketAddr>,
    /// Set by weir, never written: the route claims the addresses its service's discovery
    /// finds (a Kubernetes Service's cluster IP and port), as they change.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub discovered_destination: bool,
}

/// How a request's authority is matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorityMatch {
    /// The host (with or without its port) equals this, ignoring case.
    Exact(String),
    /// The authority starts with this, ignoring case.
    Prefix(String),
    /// The whole authority matches this regex (validated to compile).
    Regex(String),
}

/// How a path is matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    /// Path starts with this string.
    Prefix(String),
    /// Path equals this string (query excluded).
    Exact(String),
    /// Whole path matches this regex (validated to compile).
    Regex(String),
    /// Path is this, or continues it with `/`: whole segments, as Gateway API's
    /// `PathPrefix` and Envoy's `path_separated_prefix` match (`/api` matches `/api` and
    /// `/api/v1`, never `/apiv1`; a trailing `/` in the prefix is ignored).
    SegmentPrefix(String),
}

/// One header condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeaderMatch {
    /// Header name, lower case.
    pub name: String,
    /// How the value is matched.
    pub rule: HeaderRule,
}

/// How a header value is matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderRule {
    /// Value equals this string.
    Exact(String),
    /// Value starts with this string.
    Prefix(String),
    /// Whole value matches this regex (validated to compile).
    Regex(String),
    /// The header is present (`present: true`) or absent (`present: false`).
    Present(bool),
}

/// One weighted backend of a route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backend {
    /// Name of a service in `services`.
    pub service: String,
    /// Relative weight; default 1; 0 receives nothing.
    pub weight: u32,
}

/// Route retry policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retries {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Bound on each attempt.
    #[serde(with = "duration_opt")]
    pub per_try_timeout: Option<Duration>,
    /// Conditions that allow a retry.
    pub on: Vec<RetryOn>,
    /// Retries allowed as a percentage of active requests (at least 3 concurrent).
    pub budget_percent: f64,
}

/// A condition under which a request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// The connection to the endpoint could not be made.
    ConnectFailure,
    /// The endpoint reset the connection or stream before response headers.
    Reset,
    /// 502, 503 or 504.
    GatewayError,
    /// Any 5xx.
    #[serde(rename = "5xx")]
    Status5xx,
    /// This exact status code.
    Status(u16),
}

/// Fault injection for chaos testing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    /// Delay a share of requests.
    pub delay: Option<FaultDelay>,
    /// Fail a share of requests with a status.
    pub abort: Option<FaultAbort>,
}

/// Injected delay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultDelay {
    /// How long.
    #[serde(with = "duration")]
    pub fixed: Duration,
    /// Share of requests, 0–100.
    pub percent: f64,
}

/// Injected failure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultAbort {
    /// Status to answer with (200–599).
    pub status: u16,
    /// Share of requests, 0–100.
    pub percent: f64,
}

/// Traffic mirroring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mirror {
    /// Service that receives the copies.
    pub service: String,
    /// Share of requests mirrored, 0–100.
    pub percent: f64,
}

/// An upstream service: a set of endpoints and how to reach them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// Unique name; a metric label.
    pub name: String,
    /// Static endpoints (empty when `discovery` is set).
    pub endpoints: Vec<EndpointSpec>,
    /// Addresses the application believes the service lives at (transparent mode).
    pub addresses: Vec<SocketAddr>,
    /// Dynamic endpoint discovery.
    pub discovery: Option<Discovery>,
    /// How an endpoint is chosen.
    pub load_balancer: LoadBalancer,
    /// Settings of `ring_hash` (required when `load_balancer: ring_hash`).
    pub ring_hash: Option<RingHash>,
    /// HTTP version spoken to endpoints.
    pub protocol: UpstreamProtocol,
    /// Bound on establishing one upstream connection. Default 1s.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Idle pooled connections are closed after this long. Default 60s. (weir extension)
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Connection and request limits: as configured, or Envoy's defaults (shown at
    /// `/config`, so the effective values are never a guess).
    pub limits: Limits,
    /// Hystrix-style circuit breaker.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Envoy-style outlier ejection.
    pub outlier_detection: Option<OutlierDetection>,
    /// Active health checking.
    pub health_check: Option<HealthCheck>,
    /// mTLS origination.
    pub tls: Option<ServiceTls>,
}

/// One static endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointSpec {
    /// IP and port.
    pub address: SocketAddr,
    /// Relative weight; default 1.
    pub weight: u32,
}

/// Where endpoints come from when they are not static.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Discovery {
    /// Resolve a DNS name periodically.
    Dns {
        /// Host name to resolve.
        host: String,
        /// Port of every resolved address.
        port: u16,
        /// How often to resolve. Default 5s.
        #[serde(with = "duration")]
        refresh: Duration,
    },
    /// Watch Kubernetes EndpointSlices.
    Kubernetes {
        /// Service name.
        service: String,
        /// Namespace.
        namespace: String,
        /// Which port of the EndpointSlices to use (see [`KubePort`]).
        port: KubePort,
    },
}

/// The port of a Kubernetes Service's endpoints, as the user can know it: a number or the
/// port's name. EndpointSlices list target ports, so a name is the only key that survives a
/// Service port that differs from its target port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum KubePort {
    /// `port: 5432`: the slice port with this number; when none has it and the slice has
    /// exactly one port, that one (the number was the Service port, as kube-proxy takes it).
    Number(u16),
    /// `port: postgres`: the slice port with this name.
    Name(String),
}

/// Load-balancing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancer {
    /// Smooth weighted round robin.
    RoundRobin,
    /// Power of two choices over in-flight requests (alias `least_connection`).
    LeastRequest,
    /// Weighted random.
    Random,
    /// Consistent hashing of a request header.
    RingHash,
}

/// Settings of the ring-hash balancer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RingHash {
    /// Request header whose value is hashed (lower case).
    pub header: String,
}

/// HTTP version spoken to a service's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 (h2c, prior knowledge).
    Http2,
}

/// Connection and request limits. The default is Envoy's: 1,024 connections, pending
/// requests and requests, and 3 retries in flight.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    /// Upstream connections across all endpoints.
    pub max_connections: u32,
    /// Requests waiting for a connection.
    pub max_pending_requests: u32,
    /// Requests in flight.
    pub max_requests: u32,
    /// Retries in flight.
    pub max_retries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

/// Hystrix circuit-breaker settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitBreaker {
    /// Length of the rolling window.
    #[serde(with = "duration")]
    pub window: Duration,
    /// Buckets in the window.
    pub buckets: u32,
    /// Requests in the window before the breaker may open.
    pub request_volume_threshold: u32,
    /// Error percentage that opens the breaker, 0–100.
    pub error_threshold_percent: f64,
    /// Time open before trial requests.
    #[serde(with = "duration")]
    pub sleep_window: Duration,
    /// Trial requests while half open.
    pub half_open_requests: u32,
}

/// Envoy outlier-detection settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutlierDetection {
    /// Consecutive 5xx before ejection (0 disables).
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors before ejection (0 disables).
    pub consecutive_gateway_errors: u32,
    /// How often ejections are reconsidered.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Ejection time, multiplied by the times ejected.
    #[serde(with = "duration")]
    pub base_ejection_time: Duration,
    /// Most of the service that may be ejected at once, 0–100.
    pub max_ejection_percent: f64,
}

/// Active health-check settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthCheck {
    /// Path of the HTTP GET.
    pub path: String,
    /// Time between checks.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Bound on one check.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Successes before an endpoint is healthy again.
    pub healthy_threshold: u32,
    /// Failures before an endpoint is unhealthy.
    pub unhealthy_threshold: u32,
}

/// mTLS origination to a service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceTls {
    /// SPIFFE identity the endpoints must present.
    pub identity: String,
}

/// Tracing settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tracing {
    /// Header formats read and written.
    pub propagation: Vec<Propagation>,
    /// Share of new traces sampled, 0–100.
    pub sampling_percent: f64,
    /// Span export.
    pub otlp: Option<Otlp>,
}

/// A trace-context header format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Propagation {
    /// W3C `traceparent`.
    W3c,
    /// Zipkin B3.
    B3,
}

/// OTLP/HTTP export settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Otlp {
    /// Collector URL.
    pub endpoint: String,
    /// Spans per export.
    pub batch_size: u32,
    /// Spans buffered before dropping.
    pub queue_size: u32,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Logging {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: LogLevel,
    /// Line format.
    pub format: LogFormat,
    /// One line per request, written by a background thread (off by default: it costs CPU
    /// on every request, as in Istio and Linkerd, which also ship with it off).
    pub access_log: bool,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            level: LogLevel::Info,
            format: LogFormat::Text,
            access_log: false,
        }
    }
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// The default.
    Info,
    /// Verbose.
    Debug,
    /// Very verbose.
    Trace,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// Serializes a `Duration` the way the config writes it (`250ms`, `3s`).
mod duration {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::config::format_duration(*d))
    }
}

/// Serializes an optional `Duration`.
mod duration_opt {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&crate::config::format_duration(*d)),
            None => s.serialize_none(),
        }
    }
}
