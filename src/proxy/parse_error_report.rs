//! What weir records about a connection that ended because its client sent a request head
//! hyper's HTTP/1.1 parser refused (answered 400, 414 or 431, see
//! [`super::parse_error_answer`]): no request ever existed, so the request path's
//! logging phase never runs for it.
//!
//! - it is counted in `weir_downstream_errors_total{listener, kind}` (`malformed`,
//!   `uri_too_long`, `header_too_large`);
//! - it gets an access-log line when the access log is on (no route, method or path; the
//!   status and `weir-error` code the client got);
//! - it is logged at `info` under the target `weir::parse_error`, at most one line a
//!   second per listener: the default level is `info`, and one line per refused head would
//!   let a client that floods bad heads flood weir's log (written synchronously, on the
//!   proxy's threads). A line says how many refusals were left out before it; the counter
//!   and the access log (which drops rather than waits) keep the whole count.
//!
//! HTTP/2 has no such answers weir sees: h2 answers an oversized header list itself and
//! weir never hears of it. What does reach weir is an HTTP/2 connection h2 closed (a
//! `GOAWAY` of its own) for its client's protocol error: bad frames or HPACK, a header list
//! over four times the cap, floods of resets or `CONTINUATION` frames. Those are counted as
//! `malformed`; h2 does not say which it was, and no status was answered.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use super::client_timeouts::ClientClock;
use super::connection::Connection;
use super::parse_error_answer::ParseErrorAnswer;
use crate::telemetry::access_log::AccessRecord;

/// The tracing target of the line logged for a refused head, for filtering
/// (`RUST_LOG=weir::parse_error=off`).
pub const LOG_TARGET: &str = "weir::parse_error";

/// Lines logged per listener at most, one per this interval.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// One listener's record of refused request heads: its counters and its log budget.
#[derive(Debug, Clone)]
pub struct ParseErrorReport {
    listener: String,
    /// `kind="malformed"`: heads hyper could not parse (400).
    malformed: Counter,
    /// `kind="uri_too_long"`: request targets over hyper's 65,534 bytes (414).
    uri_too_long: Counter,
    /// `kind="header_too_large"`: heads over the listener's caps (431).
    header_too_large: Counter,
    /// The listener's budget of `info` lines, shared by its connections.
    log: Arc<LogBudget>,
}

impl ParseErrorReport {
    /// The report of `listener`; `counter(kind)` resolves its counter of that kind.
    pub fn new(listener: &str, counter: impl Fn(&str) -> Counter) -> Self {
        ParseErrorReport {
            listener: listener.to_string(),
            malformed: counter("malformed"),
            uri_too_long: counter("uri_too_long"),
            header_too_large: counter("header_too_large"),
            log: Arc::new(LogBudget::new(LOG_INTERVAL)),
        }
    }

    /// Records `conn`, which ended with `error`, when a refused head (or, on HTTP/2, a
    /// protocol error of its client) ended it.
    pub fn connection_ended(&self, conn: &Connection, error: &(dyn std::error::Error + 'static)) {
        let Some(answer) = refused_head(&conn.clock, error) else {
            if closed_by_http2(error) {
                self.malformed.inc();
            }
            return;
        };
        match answer {
            ParseErrorAnswer::BadRequest => self.malformed.inc(),
            ParseErrorAnswer::UriTooLong => self.uri_too_long.inc(),
            ParseErrorAnswer::HeaderTooLarge => self.header_too_large.inc(),
        };
        let status = answer.status();
        let code = answer.code().as_str();
        if let Some(left_out) = self.log.take() {
            tracing::info!(
                target: LOG_TARGET,
                client = %conn.client,
                listener = %self.listener,
                status,
                error = %code,
                detail = %error,
                left_out,
                "request head refused"
            );
        }
        let table = conn.routes.load();
        if let Some(access_log) = &table.access_log {
            access_log.write(&AccessRecord {
                client: conn.client_text.as_deref().unwrap_or_default(),
                peer: conn
                    .peer
                    .as_ref()
                    .and_then(|p| p.peer.as_deref())
                    .unwrap_or_default(),
                listener: &table.listener,
                route: "",
                service: "",
                endpoint: "",
                method: "",
                path: "",
                status,
                duration: conn.clock.since_head_began(),
                error: code,
            });
        }
    }
}

/// The answer the client got for a head hyper refused, if `error` (how the connection
/// ended) says one was refused: the one the socket saw written (only it can tell a 414 from
/// a 431), else the one hyper's error implies (an answer the socket did not see: it shared
/// a write with the previous response, or was not written).
fn refused_head(
    clock: &ClientClock,
    error: &(dyn std::error::Error + 'static),
) -> Option<ParseErrorAnswer> {
    if let Some(answer) = clock
        .parse_error_status()
        .and_then(ParseErrorAnswer::from_status)
    {
        return Some(answer);
    }
    let e = error.downcast_ref::<hyper::Error>()?;
    if e.is_parse_too_large() {
        Some(ParseErrorAnswer::HeaderTooLarge)
    } else if e.is_parse() {
        Some(ParseErrorAnswer::BadRequest)
    } else {
        None
    }
}

/// Whether `error` is h2 closing an HTTP/2 connection itself (a `GOAWAY` it sent) because the
/// client broke the protocol: a graceful shutdown ends without an error, and a `GOAWAY` the
/// client sent is the client's own leaving.
fn closed_by_http2(error: &(dyn std::error::Error + 'static)) -> bool {
    error
        .downcast_ref::<hyper::Error>()
        .and_then(std::error::Error::source)
        .and_then(|source| source.downcast_ref::<h2::Error>())
        .is_some_and(|e| e.is_go_away() && e.is_library())
}

/// Lets one line through per interval and counts the ones it holds back.
#[derive(Debug)]
struct LogBudget {
    base: Instant,
    interval_ms: u64,
    /// Milliseconds after `base` from which the next line may go out.
    next_ms: AtomicU64,
    /// Lines held back since the last one that went out.
    left_out: AtomicU64,
}

impl LogBudget {
    fn new(interval: Duration) -> Self {
        LogBudget {
            base: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            next_ms: AtomicU64::new(0),
            left_out: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back before this one)` when a line may go out now.
    fn take(&self) -> Option<u64> {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Relaxed);
        let due = now >= next
            && self
                .next_ms
                .compare_exchange(next, now.saturating_add(self.interval_ms), Relaxed, Relaxed)
                .is_ok();
        if due {
            Some(self.left_out.swap(0, Relaxed))
        } else {
            self.left_out.fetch_add(1, Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_goes_out_per_interval_and_says_how_many_were_held_back() {
        let budget = LogBudget::new(Duration::from_secs(3600));
        assert_eq!(budget.take(), Some(0));
        for _ in 0..5 {
            assert_eq!(budget.take(), None);
        }
        // The interval has passed.
        budget.next_ms.store(0, Relaxed);
        assert_eq!(budget.take(), Some(5));
        assert_eq!(budget.take(), None);
    }

    #[test]
    fn the_answer_the_socket_saw_wins_over_hypers_coarser_error() {
        let clock = ClientClock::new();
        let other = std::io::Error::other("not hyper's");
        assert_eq!(refused_head(&clock, &other), None);
        clock.note_parse_error_status(414);
        assert_eq!(
            refused_head(&clock, &other),
            Some(ParseErrorAnswer::UriTooLong)
        );
    }
}
