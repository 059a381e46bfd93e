//! OTLP/HTTP span export: a bounded queue the request path never waits on, and one tokio
//! task that batches spans, encodes them as protobuf `ExportTraceServiceRequest`s and POSTs
//! them to the collector, backing off while it fails.

use std::time::Duration;

use super::{FinishedSpan, Resource, SpanCounters};
use crate::config::Otlp;

/// The request path's end of the export queue. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct SpanSink {
    _todo: (),
}

impl SpanSink {
    /// Queues a finished span; when the queue is full (or the exporter has stopped) the span
    /// is dropped and counted. Never waits.
    pub fn submit(&self, span: FinishedSpan) {
        let _ = span;
        todo!("helper")
    }
}

/// The exporter's task, owned by the server so shutdown can flush it.
#[derive(Debug)]
pub struct Exporter {
    _todo: (),
}

impl Exporter {
    /// Starts the export task (on the current tokio runtime).
    pub fn start(otlp: &Otlp, resource: Resource, counters: SpanCounters) -> (SpanSink, Exporter) {
        let _ = (otlp, resource, counters);
        todo!("helper")
    }

    /// Exports what is queued, within `within`; whether everything was sent (or counted as
    /// failed) in time.
    pub async fn shutdown(self, within: Duration) -> bool {
        let _ = within;
        todo!("helper")
    }
}
