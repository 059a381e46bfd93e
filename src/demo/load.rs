//! The demo's load generator: a fixed request rate over keep-alive HTTP/1.1 connections,
//! every latency recorded exactly, and a progress line on stderr while it runs.
//!
//! Requests follow one shared schedule: request `n` is due at `start + n / rps`, and the
//! worker that takes ticket `n` waits until then. A slow response delays only its own worker,
//! never the schedule, so the achieved rate does not drift below the target while there are
//! enough workers.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::probes::Probe;
use crate::config::format_seconds_one_decimal_unless_whole;

/// Bound on connecting to the target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one request, until its response body has fully arrived.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the progress bar is redrawn on a terminal.
const REDRAW_EVERY: Duration = Duration::from_millis(200);
/// How often a progress line is printed when stderr is not a terminal.
const PLAIN_LINE_EVERY: Duration = Duration::from_secs(3);
/// Width of the progress bar, in characters.
const BAR_WIDTH: usize = 20;

/// Extra text for the end of the progress line, such as a circuit breaker's state; asked
/// for on every redraw.
pub type Status = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// What to send, where, and how fast.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The proxy listener to send to.
    pub target: SocketAddr,
    /// The requests to send, in turn (never empty).
    pub requests: Arc<[Probe]>,
    /// How long to send for.
    pub duration: Duration,
    /// Requests per second to aim for.
    pub rps: u32,
    /// Workers, each with its own connection.
    pub concurrency: u32,
}

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// No connection could be made to the target.
    Connect,
    /// The connection broke before the response was complete.
    Reset,
    /// No complete response within [`REQUEST_TIMEOUT`].
    Timeout,
}

impl Failure {
    /// A short name for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect failed",
            Failure::Reset => "connection reset",
            Failure::Timeout => "timeout",
        }
    }
}

/// Exact latencies of completed requests, sorted ascending.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latencies {
    sorted_nanos: Vec<u64>,
}

// === impl Latencies ===

impl Latencies {
    /// Sorts the recorded latencies.
    pub fn from_unsorted(mut nanos: Vec<u64>) -> Latencies {
        nanos.sort_unstable();
        Latencies {
            sorted_nanos: nanos,
        }
    }

    /// How many latencies were recorded.
    pub fn len(&self) -> usize {
        self.sorted_nanos.len()
    }

    /// The nearest-rank percentile (`p` in 0–100): the smallest latency that at least `p`
    /// percent of requests did not exceed. `None` when nothing was recorded.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let n = self.sorted_nanos.len();
        if n == 0 {
            return None;
        }
        let rank = (p.clamp(0.0, 100.0) / 100.0 * n as f64).ceil() as usize;
        let index = rank.clamp(1, n) - 1;
        self.sorted_nanos
            .get(index)
            .map(|&ns| Duration::from_nanos(ns))
    }

    /// The slowest request.
    pub fn max(&self) -> Option<Duration> {
        self.sorted_nanos.last().map(|&ns| Duration::from_nanos(ns))
    }
}

/// What the load generator saw.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Latency of every request that got a complete response.
    pub latencies: Latencies,
    /// Complete responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no complete response, by cause.
    pub failures: BTreeMap<Failure, u64>,
    /// From the first scheduled request until the last response.
    pub elapsed: Duration,
}

// === impl LoadReport ===

impl LoadReport {
    /// Requests that got a complete response.
    pub fn completed(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// Requests that failed or were answered with a status of 400 or more.
    pub fn errors(&self) -> u64 {
        let bad: u64 = self
            .statuses
            .iter()
            .filter(|(code, _)| **code >= 400)
            .map(|(_, n)| n)
            .sum();
        bad + self.failures.values().sum::<u64>()
    }

    /// Completed requests per second.
    pub fn achieved_rps(&self) -> f64 {
        rate(self.completed(), self.elapsed)
    }
}

/// Counters the workers update and the progress display reads.
#[derive(Debug, Default)]
struct Live {
    completed: AtomicU64,
    errors: AtomicU64,
}

/// The shared schedule: ticket `n` is due at `start + n * 1s / rps`.
#[derive(Debug)]
struct Schedule {
    start: Instant,
    rps: u64,
    total: u64,
    next: AtomicU64,
}

// === impl Schedule ===

impl Schedule {
    fn new(start: Instant, duration: Duration, rps: u32) -> Schedule {
        let rps = u64::from(rps.max(1));
        let total = (duration.as_nanos() * u128::from(rps) / 1_000_000_000) as u64;
        Schedule {
            start,
            rps,
            total,
            next: AtomicU64::new(0),
        }
    }

    /// The next request's ticket and due time, or `None` once the schedule is used up.
    fn take(&self) -> Option<(u64, Instant)> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n < self.total).then(|| (n, self.start + self.offset(n)))
    }

    fn offset(&self, n: u64) -> Duration {
        let nanos = u128::from(n) * 1_000_000_000 / u128::from(self.rps);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// What one worker recorded.
#[derive(Debug, Default)]
struct WorkerRecord {
    latencies: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    failures: BTreeMap<Failure, u64>,
}

/// Runs the load until the schedule is used up or `stop` turns true, showing progress on
/// stderr when `show_progress` is set, with `status` appended to the progress line.
pub async fn run(
    opts: LoadOptions,
    stop: watch::Receiver<bool>,
    show_progress: bool,
    status: Option<Status>,
) -> LoadReport {
    let start = Instant::now();
    let schedule = Arc::new(Schedule::new(start, opts.duration, opts.rps));
    let live = Arc::new(Live::default());
    let (done_tx, done_rx) = watch::channel(false);
    let progress = show_progress.then(|| {
        tokio::spawn(progress(
            start,
            opts.duration,
            live.clone(),
            status,
            done_rx,
            std::io::stderr().is_terminal(),
        ))
    });

    let mut workers = Vec::new();
    for _ in 0..opts.concurrency.max(1) {
        workers.push(tokio::spawn(worker(
            opts.clone(),
            schedule.clone(),
            live.clone(),
            stop.clone(),
        )));
    }
    let mut report = LoadReport::default();
    let mut latencies = Vec::new();
    for w in workers {
        let Ok(record) = w.await else { continue };
        latencies.extend(record.latencies);
        for (code, n) in record.statuses {
            *report.statuses.entry(code).or_default() += n;
        }
        for (failure, n) in record.failures {
            *report.failures.entry(failure).or_default() += n;
        }
    }
    report.elapsed = start.elapsed();
    report.latencies = Latencies::from_unsorted(latencies);

    let _ = done_tx.send(true);
    if let Some(p) = progress {
        let _ = p.await;
    }
    report
}

async fn worker(
    opts: LoadOptions,
    schedule: Arc<Schedule>,
    live: Arc<Live>,
    mut stop: watch::Receiver<bool>,
) -> WorkerRecord {
    let mut record = WorkerRecord::default();
    let mut connection: Option<SendRequest<Empty<Bytes>>> = None;
    let host = opts.target.to_string();
    while let Some((ticket, due)) = schedule.take() {
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let reusable = match connection.take() {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let mut sender = match reusable {
            Some(s) => s,
            None => match connect(opts.target).await {
                Some(s) => s,
                None => {
                    *record.failures.entry(Failure::Connect).or_default() += 1;
                    live.errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            },
        };
        let Some(probe) = usize::try_from(ticket)
            .ok()
            .and_then(|t| opts.requests.get(t % opts.requests.len().max(1)))
        else {
            break;
        };
        let mut request = Request::builder()
            .method(probe.method.clone())
            .uri(probe.path.as_str())
            .header(header::HOST, host.as_str())
            .header(header::USER_AGENT, "weir-demo");
        for (name, value) in &probe.headers {
            request = request.header(name, value);
        }
        let request = request.body(Empty::new());
        let Ok(request) = request else {
            // The path was checked when the options were built; count it rather than panic.
            *record.failures.entry(Failure::Reset).or_default() += 1;
            continue;
        };
        let sent = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let response = sender.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            Ok::<StatusCode, hyper::Error>(status)
        })
        .await;
        match outcome {
            Ok(Ok(status)) => {
                let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
                record.latencies.push(nanos);
                *record.statuses.entry(status.as_u16()).or_default() += 1;
                live.completed.fetch_add(1, Ordering::Relaxed);
                if status.as_u16() >= 400 {
                    live.errors.fetch_add(1, Ordering::Relaxed);
                }
                connection = Some(sender);
            }
            Ok(Err(_)) => {
                *record.failures.entry(Failure::Reset).or_default() += 1;
                live.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                *record.failures.entry(Failure::Timeout).or_default() += 1;
                live.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    record
}

/// Opens one keep-alive HTTP/1.1 connection; its driver task ends when the sender is dropped.
async fn connect(target: SocketAddr) -> Option<SendRequest<Empty<Bytes>>> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .ok()?
        .ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Some(sender)
}

/// Redraws the bar in place on a terminal; prints a plain line now and then otherwise.
async fn progress(
    start: Instant,
    duration: Duration,
    live: Arc<Live>,
    status: Option<Status>,
    mut done: watch::Receiver<bool>,
    terminal: bool,
) {
    let every = if terminal {
        REDRAW_EVERY
    } else {
        PLAIN_LINE_EVERY
    };
    let mut ticks = tokio::time::interval_at(start + every, every);
    let mut stderr = std::io::stderr();
    loop {
        let finished = tokio::select! {
            _ = ticks.tick() => false,
            _ = done.wait_for(|d| *d) => true,
        };
        let mut line = progress_line(
            start.elapsed(),
            duration,
            live.completed.load(Ordering::Relaxed),
            live.errors.load(Ordering::Relaxed),
            terminal,
        );
        if let Some(extra) = status.as_ref().and_then(|s| s()) {
            line.push_str("  ");
            line.push_str(&extra);
        }
        if terminal {
            // Carriage return and clear-to-end-of-line: redraw in place. The cursor goes
            // back to the start of the line, so that a log line written meanwhile (weir's
            // breaker warnings) overwrites the bar instead of being appended to it.
            let _ = write!(stderr, "\r{line}\x1b[K\r");
            if finished {
                let _ = writeln!(stderr);
            }
            let _ = stderr.flush();
        } else if !finished {
            let _ = writeln!(stderr, "{line}");
        }
        if finished {
            return;
        }
    }
}

/// `[#########...........] 7.5s/15s  2245 req  299 rps  errors 0`, without the bar when
/// `bar` is false.
fn progress_line(
    elapsed: Duration,
    duration: Duration,
    completed: u64,
    errors: u64,
    bar: bool,
) -> String {
    let shown = elapsed.min(duration);
    let fraction = if duration.is_zero() {
        1.0
    } else {
        shown.as_secs_f64() / duration.as_secs_f64()
    };
    let filled = ((fraction * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
    let bar = if bar {
        format!(
            "[{}{}] ",
            "#".repeat(filled),
            ".".repeat(BAR_WIDTH - filled)
        )
    } else {
        String::new()
    };
    format!(
        "{bar}{}/{}  {completed} req  {:.0} rps  errors {errors}",
        format_seconds_one_decimal_unless_whole(shown),
        format_seconds_one_decimal_unless_whole(duration),
        rate(completed, elapsed),
    )
}

fn rate(count: u64, over: Duration) -> f64 {
    if over.is_zero() {
        0.0
    } else {
        count as f64 / over.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Latencies {
        Latencies::from_unsorted(v.iter().map(|m| m * 1_000_000).collect())
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let l = ms(&(1..=100).rev().collect::<Vec<_>>());
        assert_eq!(l.percentile(50.0), Some(Duration::from_millis(50)));
        assert_eq!(l.percentile(90.0), Some(Duration::from_millis(90)));
        assert_eq!(l.percentile(99.0), Some(Duration::from_millis(99)));
        assert_eq!(l.percentile(99.9), Some(Duration::from_millis(100)));
        assert_eq!(l.max(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn percentiles_of_few_samples_are_samples() {
        let l = ms(&[30, 10, 20]);
        assert_eq!(l.percentile(0.0), Some(Duration::from_millis(10)));
        assert_eq!(l.percentile(50.0), Some(Duration::from_millis(20)));
        assert_eq!(l.percentile(99.0), Some(Duration::from_millis(30)));
        assert_eq!(ms(&[7]).percentile(50.0), Some(Duration::from_millis(7)));
    }

    #[test]
    fn percentiles_of_nothing_are_none() {
        let l = Latencies::default();
        assert_eq!(l.len(), 0);
        assert_eq!(l.percentile(50.0), None);
        assert_eq!(l.max(), None);
    }

    #[test]
    fn schedule_spreads_tickets_evenly_and_ends() {
        let start = Instant::now();
        let s = Schedule::new(start, Duration::from_millis(1500), 4);
        let due: Vec<_> = std::iter::from_fn(|| s.take())
            .map(|(_, t)| t - start)
            .collect();
        assert_eq!(
            due,
            [0, 250, 500, 750, 1000, 1250]
                .map(Duration::from_millis)
                .to_vec()
        );
    }

    #[test]
    fn progress_line_shows_bar_time_count_rate_and_errors() {
        let line = progress_line(
            Duration::from_millis(7500),
            Duration::from_secs(15),
            2245,
            0,
            true,
        );
        assert_eq!(
            line,
            "[##########..........] 7.5s/15s  2245 req  299 rps  errors 0"
        );
        let plain = progress_line(
            Duration::from_secs(3),
            Duration::from_secs(15),
            900,
            2,
            false,
        );
        assert_eq!(plain, "3s/15s  900 req  300 rps  errors 2");
    }

    #[tokio::test]
    async fn keeps_the_rate_and_records_every_response() {
        let upstream = super::super::services::DemoEndpoint::start("reviews-v1", Duration::ZERO)
            .await
            .expect("bind");
        let opts = LoadOptions {
            target: upstream.address,
            requests: vec![Probe::get("/reviews/1")].into(),
            duration: Duration::from_millis(500),
            rps: 100,
            concurrency: 4,
        };
        let (_stop_tx, stop) = watch::channel(false);
        let report = run(opts, stop, false, None).await;
        assert_eq!(report.statuses.get(&200), Some(&50), "{report:?}");
        assert_eq!(report.errors(), 0);
        assert_eq!(report.latencies.len(), 50);
        assert_eq!(upstream.hits(), 50);
        assert!(report.elapsed >= Duration::from_millis(490), "{report:?}");
    }
}
