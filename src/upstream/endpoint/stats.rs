//! What `/services` tells about an endpoint's traffic: attempts sent to it, how many failed,
//! and the last failure with its time, so a dead endpoint still in rotation shows at a
//! glance. Lock-free: a relaxed add per attempt, two stores per failure.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::upstream::Outcome;

/// One endpoint's attempt counts.
#[derive(Debug, Default)]
pub struct EndpointStats {
    attempts: AtomicU64,
    failures: AtomicU64,
    /// Milliseconds since the epoch `<< 16 |` [`failure_code`]; 0 before any failure. One
    /// word, so a reader never pairs one failure's time with another's kind.
    last_failure: AtomicU64,
}

/// The last failure of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastFailure {
    /// `connect_failure`, `reset`, `timeout` or the status (`503`).
    pub what: String,
    /// When it happened.
    pub at: SystemTime,
}

impl EndpointStats {
    /// Counts an attempt's outcome (a 5xx, a connect failure, a reset or a timeout is a
    /// failure, as for the circuit breaker).
    pub fn record(&self, outcome: Outcome) {
        self.attempts.fetch_add(1, Relaxed);
        if outcome.is_failure() {
            self.failures.fetch_add(1, Relaxed);
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            self.last_failure
                .store(millis << 16 | failure_code(outcome), Relaxed);
        }
    }

    /// Attempts sent to the endpoint (retries included) that got an outcome.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Relaxed)
    }

    /// Attempts that failed.
    pub fn failures(&self) -> u64 {
        self.failures.load(Relaxed)
    }

    /// The last failure, if there was one.
    pub fn last_failure(&self) -> Option<LastFailure> {
        let word = self.last_failure.load(Relaxed);
        if word == 0 {
            return None;
        }
        let what = match word & 0xffff {
            CONNECT_FAILED => "connect_failure".to_string(),
            RESET => "reset".to_string(),
            TIMEOUT => "timeout".to_string(),
            status => status.to_string(),
        };
        Some(LastFailure {
            what,
            at: UNIX_EPOCH + Duration::from_millis(word >> 16),
        })
    }
}

const CONNECT_FAILED: u64 = 1;
const RESET: u64 = 2;
const TIMEOUT: u64 = 3;

/// A failure's kind in 16 bits: its status, or a code below any status.
fn failure_code(outcome: Outcome) -> u64 {
    match outcome {
        Outcome::Response(status) => u64::from(status),
        Outcome::ConnectFailed => CONNECT_FAILED,
        Outcome::Reset => RESET,
        Outcome::Timeout | Outcome::Connected => TIMEOUT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_and_the_last_one_is_kept_with_its_time() {
        let stats = EndpointStats::default();
        assert_eq!(stats.last_failure(), None);
        let before = SystemTime::now() - Duration::from_millis(1);
        stats.record(Outcome::Response(200));
        stats.record(Outcome::Response(404));
        assert_eq!(
            (stats.attempts(), stats.failures()),
            (2, 0),
            "a 4xx is no failure"
        );
        stats.record(Outcome::ConnectFailed);
        assert_eq!(
            stats.last_failure().map(|f| f.what),
            Some("connect_failure".into())
        );
        stats.record(Outcome::Response(503));
        let last = stats.last_failure().expect("a failure");
        assert_eq!(last.what, "503");
        assert!(
            last.at >= before && last.at <= SystemTime::now(),
            "{last:?}"
        );
        stats.record(Outcome::Reset);
        stats.record(Outcome::Timeout);
        assert_eq!(stats.last_failure().map(|f| f.what), Some("timeout".into()));
        assert_eq!((stats.attempts(), stats.failures()), (6, 4));
    }
}
