//! The export task: batch → encode → POST, counting each span's outcome and pausing after a
//! failure; a failed batch is dropped, not retried, so memory stays bounded by the queue plus
//! one batch.

use super::backoff::Backoff;
use super::batch::Batcher;
use super::client::CollectorClient;
use super::encode::Encoder;
use crate::telemetry::trace::SpanCounters;

/// Everything the export task owns.
#[derive(Debug)]
pub(super) struct ExportTask {
    /// Where batches come from.
    pub batcher: Batcher,
    /// Turns a batch into a request body.
    pub encoder: Encoder,
    /// `None` when the endpoint cannot be used (warned about at start): every span fails.
    pub collector: Option<CollectorClient>,
    /// Exported and failed spans are counted here (dropped ones by the sink).
    pub counters: SpanCounters,
    /// The pause after a failed export.
    pub backoff: Backoff,
}

impl ExportTask {
    /// Runs until the queue is closed and drained (flushed, or every sink gone).
    pub(super) async fn run(mut self) {
        while let Some(batch) = self.batcher.next_batch().await {
            let spans = batch.len() as u64;
            let Some(collector) = self.collector.as_mut() else {
                self.counters.failed.inc_by(spans);
                continue;
            };
            match collector.post(self.encoder.encode(batch)).await {
                Ok(()) => {
                    self.counters.exported.inc_by(spans);
                    self.backoff.reset();
                }
                Err(error) => {
                    self.counters.failed.inc_by(spans);
                    let pause = self.backoff.after_failure();
                    // One line per failure, and failures are at least one backoff step apart.
                    tracing::warn!(
                        spans,
                        pause_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                        "OTLP span export failed, the batch is dropped: {error}"
                    );
                    self.batcher.pause(pause).await;
                }
            }
        }
    }
}
