//! The trace phase of a request: read the caller's context, decide sampling, write weir's
//! context on the request it forwards, and start recording a span when the request is
//! sampled. An unsampled request gets its headers and nothing else: no span is allocated.

use std::time::SystemTime;

use http::Request;

use super::context::{self, Formats, Outgoing};
use super::export::SpanSink;
use super::span::Recording;
use super::{FinishedSpan, SpanId, SpanKind, TraceId};
use crate::config::Tracing;

/// A process's tracing settings and the exporter's queue; shared by every listener.
#[derive(Debug)]
pub struct Tracer {
    formats: Formats,
    sampling_percent: f64,
    /// Where finished spans go; `None` when no collector is configured (context is still
    /// propagated, so the application's own spans stay in the caller's trace).
    sink: Option<SpanSink>,
}

impl Tracer {
    /// The tracer of a `tracing` section, exporting to `sink`.
    pub fn new(config: &Tracing, sink: Option<SpanSink>) -> Self {
        Tracer {
            formats: Formats::new(&config.propagation),
            sampling_percent: config.sampling_percent,
            sink,
        }
    }

    /// Starts the request's trace: keeps or sets `x-request-id`; obeys the caller's sampling
    /// decision or samples a new trace at `sampling_percent`; rewrites the trace headers the
    /// request carries upstream so the next hop is a child of weir's span (same trace id,
    /// weir's span id). Returns the span being recorded when the request is sampled and
    /// spans are exported.
    pub fn begin<B>(&self, req: &mut Request<B>, kind: SpanKind) -> Option<Box<Recording>> {
        let sampling_percent = self.sampling_percent;
        let recording_possible = self.sink.is_some();
        let (incoming, out) = context::rewrite(req.headers_mut(), self.formats, |incoming| {
            let sampled = incoming.debug
                || incoming
                    .sampled
                    .unwrap_or_else(|| crate::rand::chance(sampling_percent));
            let recording = sampled && recording_possible;
            let (trace_id, short_trace_id) = match incoming.parent {
                Some(p) => (p.trace_id, p.short_trace_id),
                None => (TraceId::random(), false),
            };
            let caller = incoming.parent.map(|p| p.span_id);
            // A span weir does not record must not be anyone's parent: the next hop stays
            // a child of the caller's span.
            let span_id = match (recording, caller) {
                (false, Some(caller)) => caller,
                _ => SpanId::random(),
            };
            Outgoing {
                trace_id,
                span_id,
                parent: caller.filter(|_| recording),
                sampled,
                debug: incoming.debug,
                b3_single: incoming.b3_single,
                short_trace_id,
            }
        });
        if !(out.sampled && recording_possible) {
            return None;
        }
        let trace_state = incoming
            .from_w3c
            .then(|| {
                req.headers()
                    .get("tracestate")?
                    .to_str()
                    .ok()
                    .map(Box::from)
            })
            .flatten();
        // Recorded, so `out.parent` is the caller's span.
        Some(Box::new(Recording::start(
            req,
            kind,
            (out.trace_id, out.span_id, out.parent),
            trace_state,
            SystemTime::now(),
        )))
    }

    /// Hands a finished span to the exporter (dropped and counted when its queue is full).
    pub fn submit(&self, span: FinishedSpan) {
        if let Some(sink) = &self.sink {
            sink.submit(span);
        }
    }
}
