//! The exporter end to end: spans submitted to a [`SpanSink`] reach a real collector on
//! 127.0.0.1 (or are counted as failed or dropped), and shutdown flushes within its time.

use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::encode::Encoder;
use super::test_support::{closed_port_url, resource, span, Answer, Collector};
use super::{Exporter, SpanSink, Timing};
use crate::config::Otlp;
use crate::telemetry::trace::SpanCounters;
use crate::test_support::eventually;

/// Longest a test waits for something that should happen within milliseconds.
const PATIENCE: Duration = Duration::from_secs(5);

fn otlp(endpoint: &str, batch_size: u32, queue_size: u32) -> Otlp {
    Otlp {
        endpoint: endpoint.to_owned(),
        batch_size,
        queue_size,
    }
}

fn start(otlp: &Otlp, timing: Timing) -> (SpanSink, Exporter, SpanCounters) {
    let counters = SpanCounters::default();
    let (sink, exporter) = Exporter::start_with(otlp, resource(), counters.clone(), timing);
    (sink, exporter, counters)
}

fn submit(sink: &SpanSink, spans: std::ops::Range<u8>) {
    for n in spans {
        sink.submit(span(n));
    }
}

/// (exported, failed, dropped)
fn outcomes(counters: &SpanCounters) -> (u64, u64, u64) {
    (
        counters.exported.get(),
        counters.failed.get(),
        counters.dropped.get(),
    )
}

#[tokio::test]
async fn spans_arrive_whole_in_batches_of_batch_size_over_one_connection() {
    let collector = Collector::start(Answer::Status(StatusCode::OK)).await;
    let (sink, _exporter, counters) = start(&otlp(&collector.url(), 3, 100), Timing::default());
    submit(&sink, 0..9);
    assert!(eventually(PATIENCE, || counters.exported.get() == 9).await);

    let received = collector.received();
    let batches: Vec<Vec<String>> = received.iter().map(|r| r.span_names()).collect();
    assert_eq!(
        batches,
        [
            ["GET span 0", "GET span 1", "GET span 2"],
            ["GET span 3", "GET span 4", "GET span 5"],
            ["GET span 6", "GET span 7", "GET span 8"],
        ]
    );
    // Every field: the collector got exactly what the encoder makes of these spans.
    let expected = ExportTraceServiceRequest::decode(
        Encoder::new(&resource()).encode((0..3).map(span).collect()),
    )
    .expect("decodes");
    assert_eq!(received[0].request.as_ref().ok(), Some(&expected));
    assert_eq!(
        received[0].content_type.as_deref(),
        Some("application/x-protobuf")
    );
    assert_eq!(collector.connections(), 1);
    assert_eq!(outcomes(&counters), (9, 0, 0));
}

#[tokio::test]
async fn fewer_spans_than_batch_size_go_when_the_first_has_waited_the_batch_wait() {
    let collector = Collector::start(Answer::Status(StatusCode::OK)).await;
    let wait = Duration::from_millis(300);
    let timing = Timing {
        max_batch_wait: wait,
        ..Timing::default()
    };
    let (sink, _exporter, counters) = start(&otlp(&collector.url(), 100, 100), timing);
    let submitted = Instant::now();
    submit(&sink, 0..2);
    assert!(eventually(PATIENCE, || counters.exported.get() == 2).await);
    let received = collector.received();
    assert_eq!(received.len(), 1);
    assert!(
        received[0].at - submitted >= wait,
        "sent before the batch wait"
    );
}

#[tokio::test]
async fn a_failing_collector_counts_failed_and_once_it_recovers_exports_resume_promptly() {
    let collector = Collector::start(Answer::Status(StatusCode::INTERNAL_SERVER_ERROR)).await;
    let timing = Timing {
        first_backoff: Duration::from_millis(50),
        ..Timing::default()
    };
    let (sink, _exporter, counters) = start(&otlp(&collector.url(), 1, 100), timing);
    // Four failures: pauses of 50, 100, 200 and 400 ms.
    for n in 1..=4 {
        sink.submit(span(n));
        assert!(eventually(PATIENCE, || counters.failed.get() == u64::from(n)).await);
    }
    collector.answer(Answer::Status(StatusCode::OK));
    sink.submit(span(5));
    assert!(eventually(PATIENCE, || counters.exported.get() == 1).await);
    // A success resets the backoff: the next failure pauses 50 ms again, not 800.
    collector.answer(Answer::Status(StatusCode::INTERNAL_SERVER_ERROR));
    sink.submit(span(6));
    assert!(eventually(PATIENCE, || counters.failed.get() == 5).await);
    sink.submit(span(7));
    assert!(eventually(PATIENCE, || counters.failed.get() == 6).await);
    let received = collector.received();
    assert_eq!(received.len(), 7);
    let gap = received[6].at - received[5].at;
    assert!(
        gap < Duration::from_millis(400),
        "backoff not reset: {gap:?}"
    );
    assert_eq!(outcomes(&counters), (1, 6, 0));
}

#[tokio::test]
async fn with_no_collector_listening_every_span_counts_as_failed() {
    let (sink, _exporter, counters) =
        start(&otlp(&closed_port_url().await, 2, 100), Timing::default());
    submit(&sink, 0..4);
    assert!(eventually(PATIENCE, || counters.failed.get() == 4).await);
    assert_eq!(outcomes(&counters), (0, 4, 0));
}

#[tokio::test]
async fn a_full_queue_drops_exactly_the_overflow_and_submit_never_waits() {
    // The collector holds the first export, so nothing leaves the queue meanwhile.
    let collector = Collector::start(Answer::Hang).await;
    let (sink, _exporter, counters) = start(&otlp(&collector.url(), 1, 10), Timing::default());
    sink.submit(span(0));
    assert!(eventually(PATIENCE, || collector.requests() == 1).await);
    let started = std::time::Instant::now();
    submit(&sink, 1..16);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(100), "submit waited: {took:?}");
    assert_eq!(outcomes(&counters), (0, 0, 5));
}

#[tokio::test]
async fn an_export_the_collector_never_answers_times_out_and_counts_as_failed() {
    let collector = Collector::start(Answer::Hang).await;
    let timing = Timing {
        export_timeout: Duration::from_millis(200),
        first_backoff: Duration::from_millis(10),
        ..Timing::default()
    };
    let (sink, _exporter, counters) = start(&otlp(&collector.url(), 2, 100), timing);
    submit(&sink, 0..2);
    assert!(eventually(PATIENCE, || counters.failed.get() == 2).await);
    collector.answer(Answer::Status(StatusCode::OK));
    submit(&sink, 2..4);
    assert!(eventually(PATIENCE, || counters.exported.get() == 2).await);
    assert_eq!(outcomes(&counters), (2, 2, 0));
}

#[tokio::test]
async fn an_https_endpoint_counts_every_span_as_failed() {
    let (sink, exporter, counters) = start(
        &otlp("https://127.0.0.1:4318/v1/traces", 2, 100),
        Timing::default(),
    );
    submit(&sink, 0..5);
    assert!(exporter.shutdown(PATIENCE).await);
    assert_eq!(outcomes(&counters), (0, 5, 0));
}

#[tokio::test]
async fn shutdown_flushes_the_queue_in_batches_and_later_spans_are_dropped() {
    let collector = Collector::start(Answer::Status(StatusCode::OK)).await;
    let (sink, exporter, counters) = start(&otlp(&collector.url(), 3, 100), Timing::default());
    submit(&sink, 0..7);
    let started = Instant::now();
    assert!(exporter.shutdown(PATIENCE).await);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "did not wait out the batch timer"
    );
    let sizes: Vec<usize> = collector
        .received()
        .iter()
        .map(|r| r.span_names().len())
        .collect();
    assert_eq!(sizes, [3, 3, 1]);
    sink.submit(span(7));
    assert_eq!(outcomes(&counters), (7, 0, 1));
}

#[tokio::test]
async fn shutdown_does_not_wait_out_a_backoff_pause() {
    let timing = Timing {
        first_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(60),
        ..Timing::default()
    };
    let (sink, exporter, counters) = start(&otlp(&closed_port_url().await, 1, 100), timing);
    submit(&sink, 0..3);
    assert!(eventually(PATIENCE, || counters.failed.get() == 1).await);
    assert!(exporter.shutdown(PATIENCE).await);
    assert_eq!(outcomes(&counters), (0, 3, 0));
}

#[tokio::test]
async fn shutdown_returns_within_its_time_when_the_collector_hangs() {
    let collector = Collector::start(Answer::Hang).await;
    let (sink, exporter, counters) = start(&otlp(&collector.url(), 1, 100), Timing::default());
    submit(&sink, 0..3);
    assert!(eventually(PATIENCE, || collector.requests() == 1).await);
    let within = Duration::from_millis(300);
    let started = Instant::now();
    assert!(!exporter.shutdown(within).await);
    let took = started.elapsed();
    assert!(took >= within && took < within * 5, "{took:?}");
    sink.submit(span(9));
    assert_eq!(
        counters.dropped.get(),
        1,
        "the queue is closed after shutdown"
    );
}
