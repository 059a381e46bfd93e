//! OTLP/HTTP span export: a bounded queue the request path never waits on, and one tokio
//! task that batches spans, encodes them as protobuf `ExportTraceServiceRequest`s and POSTs
//! them to the collector, backing off while it fails.
//!
//! [`SpanSink`] → bounded queue → [`batch::Batcher`] (size or time) → [`encode`] →
//! [`client::CollectorClient`] (one reused HTTP/1.1 connection); [`task`] joins them and
//! keeps the counters and the backoff.

mod backoff;
mod batch;
mod client;
mod encode;
mod endpoint;
mod task;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{FinishedSpan, Resource, SpanCounters};
use crate::config::Otlp;

/// The request path's end of the export queue. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct SpanSink {
    queue: mpsc::Sender<FinishedSpan>,
    dropped: Counter,
}

impl SpanSink {
    /// Queues a finished span; when the queue is full (or the exporter has stopped) the span
    /// is dropped and counted. Never waits.
    pub fn submit(&self, span: FinishedSpan) {
        if self.queue.try_send(span).is_err() {
            self.dropped.inc();
        }
    }
}

/// The exporter's task, owned by the server so shutdown can flush it.
///
/// Dropping it without [`Exporter::shutdown`] leaves the task running until every
/// [`SpanSink`] is gone (it then exports what is left and ends).
#[derive(Debug)]
pub struct Exporter {
    flush: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// How long the exporter waits for things: the defaults are the issue's; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// Longest wait for the TCP connection to the collector (DNS included).
    pub connect_timeout: Duration,
    /// Longest one export may take: connect, send, and the collector's whole answer.
    pub export_timeout: Duration,
    /// Longest a span waits for its batch to fill before the batch goes anyway.
    pub max_batch_wait: Duration,
    /// Pause after the first failed export; it doubles with each further failure.
    pub first_backoff: Duration,
    /// Longest pause between failed exports.
    pub max_backoff: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            connect_timeout: Duration::from_secs(1),
            export_timeout: Duration::from_secs(10),
            max_batch_wait: Duration::from_secs(5),
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl Exporter {
    /// Starts the export task (on the current tokio runtime).
    pub fn start(otlp: &Otlp, resource: Resource, counters: SpanCounters) -> (SpanSink, Exporter) {
        Self::start_with(otlp, resource, counters, Timing::default())
    }

    /// [`Exporter::start`] with other timeouts (tests, so they need not wait 10 s).
    pub(crate) fn start_with(
        otlp: &Otlp,
        resource: Resource,
        counters: SpanCounters,
        timing: Timing,
    ) -> (SpanSink, Exporter) {
        // The config allows neither to be 0; a hand-built `Otlp` must not panic the channel.
        let queue_size = usize::try_from(otlp.queue_size)
            .unwrap_or(usize::MAX)
            .max(1);
        let batch_size = usize::try_from(otlp.batch_size)
            .unwrap_or(usize::MAX)
            .max(1);
        let (queue_sender, queue) = mpsc::channel(queue_size);
        let (flush, flush_requested) = oneshot::channel();
        let sink = SpanSink {
            queue: queue_sender,
            dropped: counters.dropped.clone(),
        };
        let batcher =
            batch::Batcher::new(queue, flush_requested, batch_size, timing.max_batch_wait);
        let collector = match client::CollectorClient::new(&otlp.endpoint, timing) {
            Ok(collector) => Some(collector),
            Err(reason) => {
                tracing::warn!(
                    endpoint = %otlp.endpoint,
                    "OTLP export is off: {reason}; every span will be counted as failed"
                );
                None
            }
        };
        let task = task::ExportTask {
            batcher,
            encoder: encode::Encoder::new(&resource),
            collector,
            counters,
            backoff: backoff::Backoff::new(timing.first_backoff, timing.max_backoff),
        };
        let task = tokio::spawn(task.run());
        (sink, Exporter { flush, task })
    }

    /// Exports what is queued, within `within`; whether everything was sent (or counted as
    /// failed) in time. If not, the task is stopped where it is. Either way the queue is
    /// closed when this returns: later spans are dropped and counted.
    pub async fn shutdown(self, within: Duration) -> bool {
        // An error means the task has already ended: there is nothing to tell it.
        let _ = self.flush.send(());
        let mut task = self.task;
        match tokio::time::timeout(within, &mut task).await {
            Ok(finished) => finished.is_ok(),
            Err(_) => {
                task.abort();
                // Wait for the abort to land, so the queue is closed when we return.
                let _ = task.await;
                false
            }
        }
    }
}
