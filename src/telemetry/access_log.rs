//! One structured log line per request, written when its response has been fully sent.
//!
//! Off unless `logging.access_log` is set. When on, the request formats its line into a
//! per-thread buffer ([`format`]) and hands it to a bounded queue that a background thread
//! writes to stderr in batches ([`writer`]); when the queue is full the line is dropped and
//! counted in `weir_access_log_dropped_total` rather than delay the request.

pub mod format;
pub mod writer;

use std::cell::RefCell;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use prometheus_client::metrics::counter::Counter;

use crate::config::LogFormat;
pub use writer::{Queue, Settings, Writer};

/// The facts of one finished request.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    /// Client address.
    pub client: &'a str,
    /// The client's SPIFFE ID on an mTLS connection; empty otherwise.
    pub peer: &'a str,
    /// Listener name.
    pub listener: &'a str,
    /// Route name, empty if none matched.
    pub route: &'a str,
    /// Service name, empty if none was chosen.
    pub service: &'a str,
    /// Endpoint address, empty if none was chosen.
    pub endpoint: &'a str,
    /// Request method; empty when there was no request (a head weir's HTTP parser refused).
    pub method: &'a str,
    /// Request path (without the query); empty when there was no request.
    pub path: &'a str,
    /// Status sent to the client.
    pub status: u16,
    /// Time from request start until the response was fully sent.
    pub duration: Duration,
    /// weir error code, empty if the response came from the upstream intact.
    pub error: &'a str,
}

/// Lines the queue holds: at the writer's 10 ms linger that is 400,000 lines a second before
/// any is dropped, in about 1 MiB of queued lines.
pub const QUEUE_LINES: usize = 4096;

/// Bytes written per `write(2)` at most: 64 KiB, a Linux pipe's default capacity.
pub const BATCH_BYTES: usize = 64 * 1024;

/// How long the writer lets lines gather once woken: it is woken at most a hundred times a
/// second however busy the proxy, and a line reaches stderr within about 10 ms.
pub const LINGER: Duration = Duration::from_millis(10);

/// How long shutdown waits for the writer to write what it holds.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// Bytes each thread's line buffer is carved from; lines are split off it, so a buffer is
/// reused in place once the writer has written every line taken from it.
const LINE_CHUNK: usize = 16 * 1024;

thread_local! {
    static LINE: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(LINE_CHUNK));
}

/// The request path's handle on the access log: the line format and the writer's queue.
/// Present in the snapshot only when the access log is on.
#[derive(Debug, Clone)]
pub struct AccessLog {
    format: LogFormat,
    queue: Queue,
}

impl AccessLog {
    /// Starts the stderr writer thread (sized by [`QUEUE_LINES`], [`BATCH_BYTES`] and
    /// [`LINGER`]); lines it loses are counted in `dropped`.
    pub fn start(format: LogFormat, dropped: Counter) -> std::io::Result<(AccessLog, Writer)> {
        let settings = Settings {
            capacity: QUEUE_LINES,
            batch_bytes: BATCH_BYTES,
            linger: LINGER,
        };
        let (queue, writer) = writer::spawn(std::io::stderr(), settings, dropped)?;
        Ok((AccessLog::new(format, queue), writer))
    }

    /// A handle that writes `format` lines to `queue`.
    pub fn new(format: LogFormat, queue: Queue) -> AccessLog {
        AccessLog { format, queue }
    }

    /// Formats the record and queues its line; never waits (a full queue drops the line).
    pub fn write(&self, r: &AccessRecord<'_>) {
        let now = SystemTime::now();
        let fill = |buf: &mut BytesMut| {
            buf.reserve(512);
            format::line(buf, self.format, r, now);
            buf.split().freeze()
        };
        // The thread's buffer, unless the thread is being torn down (a runtime dropping its
        // tasks on exit): then a buffer of its own.
        let line = LINE
            .try_with(|cell| cell.try_borrow_mut().ok().map(|mut buf| fill(&mut buf)))
            .ok()
            .flatten()
            .unwrap_or_else(|| fill(&mut BytesMut::new()));
        self.queue.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Uri;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// An output that keeps everything written to it.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(buf);
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn records_reach_the_output_as_one_json_line_each() {
        let sink = Sink::default();
        let dropped = Counter::default();
        let settings = Settings {
            capacity: 1024,
            batch_bytes: BATCH_BYTES,
            linger: Duration::ZERO,
        };
        let (queue, writer) =
            writer::spawn(sink.clone(), settings, dropped.clone()).expect("thread starts");
        let log = AccessLog::new(LogFormat::Json, queue);
        // Enough lines to use up several of the thread's line buffers.
        let paths: Vec<Uri> = (0..600)
            .map(|i| format!("/items/{i}").parse().expect("uri"))
            .collect();
        for (i, uri) in paths.iter().enumerate() {
            log.write(&AccessRecord {
                client: "127.0.0.1:40000",
                peer: "",
                listener: "main",
                route: "all",
                service: "up",
                endpoint: "127.0.0.1:8080",
                method: "GET",
                path: uri.path(),
                status: 200,
                duration: Duration::from_micros(i as u64),
                error: "",
            });
        }
        assert!(writer.shutdown(Duration::from_secs(10)).await);
        assert_eq!(dropped.get(), 0);
        let text =
            String::from_utf8(sink.0.lock().map(|v| v.clone()).unwrap_or_default()).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 600);
        assert!(text.len() > 4 * LINE_CHUNK, "{} bytes", text.len());
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(line["path"], format!("/items/{i}"));
            assert_eq!(line["duration_ms"], i as f64 / 1000.0);
            assert_eq!(line["target"], "weir::access");
        }
    }
}
