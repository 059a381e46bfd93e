//! Trace context in request headers: W3C Trace Context (`traceparent`, `tracestate`), B3
//! multi-header (`x-b3-*`) and B3 single (`b3`), and `x-request-id`.
//!
//! Parsers never fail a request: anything malformed reads as "no context", and the request
//! starts a new trace.

use http::HeaderMap;

use super::{SpanId, TraceId};
use crate::config::Propagation;

/// Which formats a listener reads and writes (`tracing.propagation`), and which it reads
/// first when a request carries both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    /// W3C Trace Context.
    pub w3c: bool,
    /// B3 (multi-header or single).
    pub b3: bool,
    /// B3 was listed before W3C.
    pub b3_first: bool,
}

impl Formats {
    /// The formats of a `propagation` list, in its order.
    pub fn new(list: &[Propagation]) -> Self {
        let _ = list;
        todo!("helper")
    }
}

/// The caller's span, as a request's headers name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    /// The trace, kept as it came (never replaced).
    pub trace_id: TraceId,
    /// The caller's span.
    pub span_id: SpanId,
    /// A 64-bit B3 trace id (written back in 16 hex digits, as it came).
    pub short_trace_id: bool,
}

/// What a request's headers said about its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Incoming {
    /// The caller's span, when a listed format carried a valid one.
    pub parent: Option<Parent>,
    /// The caller's sampling decision; `None` defers it to weir.
    pub sampled: Option<bool>,
    /// B3's debug flag (`x-b3-flags: 1`, `b3: …-d`), which implies sampled.
    pub debug: bool,
    /// The context came in B3's single-header form, so B3 is written back that way.
    pub b3_single: bool,
    /// The context came from a valid `traceparent`, so `tracestate` belongs to it.
    pub from_w3c: bool,
}

/// Reads the first valid context among `formats`.
pub fn extract(headers: &HeaderMap, formats: Formats) -> Incoming {
    let _ = (headers, formats);
    todo!("helper")
}

/// The context written on the upstream request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    /// The trace (the caller's, or a new one).
    pub trace_id: TraceId,
    /// The span the upstream's span will be a child of.
    pub span_id: SpanId,
    /// The parent of `span_id`, for B3's `x-b3-parentspanid`.
    pub parent: Option<SpanId>,
    /// Whether the trace is sampled.
    pub sampled: bool,
    /// B3 debug.
    pub debug: bool,
    /// Write B3 as the single `b3` header instead of `x-b3-*`.
    pub b3_single: bool,
    /// Write a 64-bit B3 trace id.
    pub short_trace_id: bool,
}

/// Replaces the trace headers of `formats` with `out`. `keep_trace_state` says whether the
/// request's `tracestate` belongs to `out`'s trace (else it is removed).
pub fn inject(headers: &mut HeaderMap, formats: Formats, out: &Outgoing, keep_trace_state: bool) {
    let _ = (headers, formats, out, keep_trace_state);
    todo!("helper")
}

/// Keeps the request's `x-request-id`, or adds a random UUID v4.
pub fn ensure_request_id(headers: &mut HeaderMap) {
    let _ = headers;
    todo!("helper")
}
