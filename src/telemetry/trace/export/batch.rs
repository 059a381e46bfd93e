//! Batching, apart from any IO so it can be tested with paused time: spans leave the queue
//! in batches of `batch_size`, or fewer once the first of them has waited `max_wait`; after
//! a flush request the queue is closed and drained in full batches without waiting.

use std::future::pending;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

use crate::telemetry::trace::FinishedSpan;

/// Most span slots a batch reserves before any span arrives.
const INITIAL_CAPACITY_LIMIT: usize = 1024;

/// The export task's view of the queue.
#[derive(Debug)]
pub(super) struct Batcher {
    queue: mpsc::Receiver<FinishedSpan>,
    /// `None` once it has fired (or the [`super::Exporter`] was dropped without asking).
    flush_request: Option<oneshot::Receiver<()>>,
    flushing: bool,
    batch_size: usize,
    max_wait: Duration,
}

impl Batcher {
    /// Batches of at most `batch_size` (at least 1) from `queue`; `flush_request` firing
    /// closes the queue and ends the waiting.
    pub(super) fn new(
        queue: mpsc::Receiver<FinishedSpan>,
        flush_request: oneshot::Receiver<()>,
        batch_size: usize,
        max_wait: Duration,
    ) -> Self {
        Batcher {
            queue,
            flush_request: Some(flush_request),
            flushing: false,
            batch_size: batch_size.max(1),
            max_wait,
        }
    }

    /// The next batch: waits for a first span, then until the batch is full or that span
    /// has waited `max_wait`. `None` when the queue is closed (flushed, or every sink gone)
    /// and empty: the task is done.
    pub(super) async fn next_batch(&mut self) -> Option<Vec<FinishedSpan>> {
        // A large `batch_size` need not be allocated up front for a batch of a few spans.
        let mut batch = Vec::with_capacity(self.batch_size.min(INITIAL_CAPACITY_LIMIT));
        loop {
            tokio::select! {
                biased;
                requested = flush_requested(&mut self.flush_request) => self.on_flush_request(requested),
                received = self.queue.recv_many(&mut batch, self.batch_size) => {
                    if received == 0 {
                        return None;
                    }
                    break;
                }
            }
        }
        let deadline = Instant::now() + self.max_wait;
        while batch.len() < self.batch_size && !self.flushing {
            let room = self.batch_size - batch.len();
            tokio::select! {
                biased;
                requested = flush_requested(&mut self.flush_request) => self.on_flush_request(requested),
                received = self.queue.recv_many(&mut batch, room) => {
                    if received == 0 {
                        return Some(batch);
                    }
                }
                () = sleep_until(deadline) => return Some(batch),
            }
        }
        // Flushing: the queue is closed, so this takes what is buffered and never waits.
        while batch.len() < self.batch_size {
            let room = self.batch_size - batch.len();
            if self.queue.recv_many(&mut batch, room).await == 0 {
                break;
            }
        }
        Some(batch)
    }

    /// Waits `pause` (the backoff after a failed export) unless a flush is requested, which
    /// ends the pause: the last spans go out at once.
    pub(super) async fn pause(&mut self, pause: Duration) {
        let until = Instant::now() + pause;
        while !self.flushing {
            tokio::select! {
                biased;
                requested = flush_requested(&mut self.flush_request) => self.on_flush_request(requested),
                () = sleep_until(until) => return,
            }
        }
    }

    fn on_flush_request(&mut self, requested: bool) {
        if requested {
            self.flushing = true;
            // Later submits fail (dropped and counted); what is buffered still comes out.
            self.queue.close();
        }
    }
}

/// Whether a flush was asked for (`false`: the exporter was dropped without asking); never
/// completes once it has completed.
async fn flush_requested(flush_request: &mut Option<oneshot::Receiver<()>>) -> bool {
    match flush_request {
        Some(receiver) => {
            let requested = receiver.await.is_ok();
            *flush_request = None;
            requested
        }
        None => pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::trace::export::test_support::span;

    const WAIT: Duration = Duration::from_secs(5);

    struct Queue {
        sender: mpsc::Sender<FinishedSpan>,
        flush: oneshot::Sender<()>,
        batcher: Batcher,
    }

    fn queue(batch_size: usize, queue_size: usize) -> Queue {
        let (sender, queue) = mpsc::channel(queue_size);
        let (flush, flush_request) = oneshot::channel();
        let batcher = Batcher::new(queue, flush_request, batch_size, WAIT);
        Queue {
            sender,
            flush,
            batcher,
        }
    }

    fn fill(sender: &mpsc::Sender<FinishedSpan>, spans: std::ops::Range<u8>) {
        for n in spans {
            assert!(sender.try_send(span(n)).is_ok(), "span {n} fits");
        }
    }

    fn names(batch: Option<Vec<FinishedSpan>>) -> Vec<String> {
        batch
            .expect("a batch")
            .into_iter()
            .map(|s| s.route().unwrap_or_default().to_owned())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_at_once_and_the_rest_waits_for_the_timer() {
        let mut q = queue(3, 10);
        fill(&q.sender, 0..7);
        let started = Instant::now();
        assert_eq!(
            names(q.batcher.next_batch().await),
            ["span 0", "span 1", "span 2"]
        );
        assert_eq!(
            names(q.batcher.next_batch().await),
            ["span 3", "span 4", "span 5"]
        );
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(names(q.batcher.next_batch().await), ["span 6"]);
        assert_eq!(started.elapsed(), WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_starts_at_the_first_span_of_a_batch_not_when_the_task_starts_waiting() {
        let mut q = queue(10, 10);
        let sender = q.sender.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            fill(&sender, 0..1);
            tokio::time::sleep(Duration::from_secs(2)).await;
            fill(&sender, 1..2);
        });
        let started = Instant::now();
        assert_eq!(names(q.batcher.next_batch().await), ["span 0", "span 1"]);
        assert_eq!(started.elapsed(), Duration::from_secs(30) + WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn spans_arriving_one_by_one_fill_a_batch_before_the_timer() {
        let mut q = queue(3, 10);
        let sender = q.sender.clone();
        tokio::spawn(async move {
            for n in 0..3 {
                fill(&sender, n..n + 1);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let started = Instant::now();
        assert_eq!(names(q.batcher.next_batch().await).len(), 3);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_drains_the_queue_in_full_batches_without_waiting_and_closes_it() {
        let mut q = queue(3, 10);
        fill(&q.sender, 0..7);
        assert!(q.flush.send(()).is_ok());
        let started = Instant::now();
        let mut sizes = Vec::new();
        while let Some(batch) = q.batcher.next_batch().await {
            sizes.push(batch.len());
            assert!(
                q.sender.try_send(span(99)).is_err(),
                "closed after the flush request"
            );
        }
        assert_eq!(sizes, [3, 3, 1]);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_ends_the_wait_for_a_partial_batch() {
        let mut q = queue(10, 10);
        fill(&q.sender, 0..2);
        let flush = q.flush;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = flush.send(());
        });
        let started = Instant::now();
        assert_eq!(names(q.batcher.next_batch().await).len(), 2);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert!(q.batcher.next_batch().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_with_nothing_queued_ends_at_once() {
        let mut q = queue(10, 10);
        assert!(q.flush.send(()).is_ok());
        assert!(q.batcher.next_batch().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_ends_a_backoff_pause_and_later_pauses_do_not_wait() {
        let mut q = queue(10, 10);
        let flush = q.flush;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = flush.send(());
        });
        let started = Instant::now();
        q.batcher.pause(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        q.batcher.pause(Duration::from_secs(5)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_lasts_its_time_and_spans_keep_queueing_meanwhile() {
        let mut q = queue(10, 10);
        let started = Instant::now();
        fill(&q.sender, 0..1);
        q.batcher.pause(Duration::from_millis(400)).await;
        assert_eq!(started.elapsed(), Duration::from_millis(400));
        fill(&q.sender, 1..2);
        assert_eq!(names(q.batcher.next_batch().await).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn when_every_sink_is_gone_the_rest_goes_out_and_then_batching_ends() {
        let mut q = queue(10, 10);
        fill(&q.sender, 0..2);
        drop(q.sender);
        let started = Instant::now();
        assert_eq!(names(q.batcher.next_batch().await).len(), 2);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "a closed queue fills no further"
        );
        assert!(q.batcher.next_batch().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_exporter_without_a_flush_keeps_batching_as_before() {
        let mut q = queue(2, 10);
        drop(q.flush);
        fill(&q.sender, 0..3);
        assert_eq!(names(q.batcher.next_batch().await).len(), 2);
        let started = Instant::now();
        assert_eq!(names(q.batcher.next_batch().await).len(), 1);
        assert_eq!(started.elapsed(), WAIT);
        assert!(q.sender.try_send(span(9)).is_ok(), "still open");
    }
}
