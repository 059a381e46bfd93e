//! Distributed tracing: trace context read from and written to request headers (W3C Trace
//! Context, B3), one span per request per hop, and OTLP/HTTP export to a collector (Jaeger,
//! the OpenTelemetry Collector).
//!
//! The request path only touches [`context`] (ids and sampling, for every request) and, for
//! a sampled request, hands a [`FinishedSpan`] to the exporter's bounded queue; everything
//! else (encoding, batching, the collector's failures) happens in the exporter's task.

pub mod context;
pub mod export;
pub mod span;
pub mod tracer;

use std::fmt;
use std::sync::Arc;

use http::{HeaderValue, Method};

/// A 128-bit trace id; all zeros is invalid in every format.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceId(pub [u8; 16]);

/// A 64-bit span id; all zeros is invalid in every format.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// A random, valid (non-zero) trace id.
    pub fn random() -> Self {
        let hi = crate::rand::next_u64();
        let lo = crate::rand::next_u64() | 1;
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&hi.to_be_bytes());
        id[8..].copy_from_slice(&lo.to_be_bytes());
        TraceId(id)
    }

    /// Whether the id is all zeros (invalid).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }
}

impl SpanId {
    /// A random, valid (non-zero) span id.
    pub fn random() -> Self {
        SpanId((crate::rand::next_u64() | 1).to_be_bytes())
    }

    /// Whether the id is all zeros (invalid).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 8]
    }
}

/// Lower-case hex, as every propagation format and Jaeger's UI write ids.
fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// Which side of a hop a span describes (OpenTelemetry's span kinds that weir uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// An inbound listener: weir receives the request for the application beside it.
    Server,
    /// An outbound listener: weir sends the application's request to another service.
    Client,
}

/// An attribute value of the resource (the OTLP `AnyValue` kinds weir writes).
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    /// A string.
    Text(String),
    /// A static string (names and codes weir knows at build time).
    Static(&'static str),
    /// An integer.
    Int(i64),
}

/// A key and its value.
pub type Attribute = (&'static str, AttributeValue);

/// The names a span reports for its route and service, resolved when the configuration is
/// built so that finishing a span copies no string.
#[derive(Debug, PartialEq, Eq)]
pub struct SpanNames {
    /// The matched route.
    pub route: Box<str>,
    /// The chosen service.
    pub service: Box<str>,
}

/// One retry attempt, an event of its request's span.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryEvent {
    /// When the failed attempt was given up, in nanoseconds since the Unix epoch.
    pub unix_nanos: u64,
    /// The endpoint whose attempt failed.
    pub endpoint: Arc<str>,
    /// Why it was retried (`connect_failure`, `reset`, `timeout`, `retriable_status`).
    pub reason: &'static str,
    /// The status it answered, when it answered.
    pub status: Option<u16>,
}

/// One finished span, as the request path hands it to the exporter: the few values it keeps
/// of the request, copied (a header value or the target shared with the request would pin
/// the connection's whole read buffer for as long as the span waits in the export queue),
/// and names shared with the configuration; turned into OTLP attributes only in the
/// exporter's task.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedSpan {
    /// The trace it belongs to.
    pub trace_id: TraceId,
    /// This span.
    pub span_id: SpanId,
    /// The span it was called from, if the request carried one.
    pub parent: Option<SpanId>,
    /// The W3C `tracestate` the request carried, kept with the span.
    pub trace_state: Option<Box<str>>,
    /// Server (inbound listener) or client (outbound listener).
    pub kind: SpanKind,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_unix_nanos: u64,
    /// End, in nanoseconds since the Unix epoch.
    pub end_unix_nanos: u64,
    /// The request's method.
    pub method: Method,
    /// The request's path (`url.path`; the query is never reported).
    pub path: Box<str>,
    /// Where the request was addressed: its target's authority, or its `host` field.
    pub authority: Option<Box<str>>,
    /// Status sent to the client (499 when it left first; 0 when none was decided).
    pub status: u16,
    /// Route and service, when a route matched.
    pub names: Option<Arc<SpanNames>>,
    /// The endpoint of the last attempt.
    pub endpoint: Option<Arc<str>>,
    /// weir's error code, when weir made the response or the upstream broke it off.
    pub error: Option<&'static str>,
    /// One event per retry.
    pub retries: Vec<RetryEvent>,
    /// The client's SPIFFE identity, when it came over mutual TLS.
    pub peer_identity: Option<Arc<str>>,
    /// The client's IP address.
    pub client_ip: Option<HeaderValue>,
}

/// Who this proxy speaks for, sent once per export as the OTLP resource.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resource {
    /// `service.name` and the `k8s.*` attributes.
    pub attributes: Vec<Attribute>,
}

/// Handles of `weir_trace_spans_total`, by outcome.
#[derive(Debug, Clone, Default)]
pub struct SpanCounters {
    /// Spans the collector accepted.
    pub exported: prometheus_client::metrics::counter::Counter,
    /// Spans dropped because the queue was full (or the exporter had stopped).
    pub dropped: prometheus_client::metrics::counter::Counter,
    /// Spans in batches the collector failed or refused.
    pub failed: prometheus_client::metrics::counter::Counter,
}
