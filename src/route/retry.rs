//! Retries: which attempt outcomes a route may retry and how long to wait before the next
//! attempt (the budget that keeps retries from multiplying load on a failing service is an
//! upstream limit: [`crate::upstream::retry_budget`]).
//!
//! The conditions follow Envoy's router (`retry_state_impl.cc`, `wouldRetryFromReset`): a
//! per-try timeout ends the attempt the way a local reset does, and Envoy retries any reset,
//! connect failures included, under `reset`, `5xx` and `gateway-error` alike; only the
//! narrow `connect-failure` is limited to failed connections.

use std::time::Duration;

use crate::config::{self, RetryOn};
use crate::rand;
use crate::upstream::outcome::Outcome;

/// First backoff cap: Envoy's default `base_interval` of 25 ms.
const BACKOFF_BASE: Duration = Duration::from_millis(25);
/// Largest backoff cap: Envoy's default `max_interval`, ten times the base.
const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// A route's retry policy, resolved once from its configuration so the request path judges
/// an attempt with a few flag tests instead of walking the `on` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    retries: u32,
    per_try_timeout: Option<Duration>,
    connect_failure: bool,
    reset: bool,
    gateway_error: bool,
    any_5xx: bool,
    statuses: Vec<u16>,
}

// === impl RetryPolicy ===

impl RetryPolicy {
    /// Resolves the policy of `retries`.
    pub fn new(retries: &config::Retries) -> Self {
        let mut policy = RetryPolicy {
            retries: retries.attempts,
            per_try_timeout: retries.per_try_timeout,
            connect_failure: false,
            reset: false,
            gateway_error: false,
            any_5xx: false,
            statuses: Vec::new(),
        };
        for on in &retries.on {
            match *on {
                RetryOn::ConnectFailure => policy.connect_failure = true,
                RetryOn::Reset => policy.reset = true,
                RetryOn::GatewayError => policy.gateway_error = true,
                RetryOn::Status5xx => policy.any_5xx = true,
                RetryOn::Status(status) => policy.statuses.push(status),
            }
        }
        policy
    }

    /// Attempts allowed after the first one.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Bound on each attempt, until response headers; `None` leaves only the route timeout.
    pub fn per_try_timeout(&self) -> Option<Duration> {
        self.per_try_timeout
    }

    /// Whether an attempt that ended with `outcome` may be retried:
    ///
    /// | `on` | retries |
    /// | --- | --- |
    /// | `connect-failure` | connect failures |
    /// | `reset` | resets, connect failures, per-try timeouts |
    /// | `gateway-error` | 502, 503, 504, resets, connect failures, per-try timeouts |
    /// | `5xx` | any status ≥ 500, resets, connect failures, per-try timeouts |
    /// | a status code | that status |
    ///
    /// A [`Outcome::Timeout`] of the route timeout (not the per-try one) leaves no time for
    /// another attempt; the caller does not ask.
    pub fn retryable(&self, outcome: Outcome) -> bool {
        let broad = self.reset || self.gateway_error || self.any_5xx;
        match outcome {
            Outcome::ConnectFailed => self.connect_failure || broad,
            Outcome::Reset | Outcome::Timeout => broad,
            Outcome::Connected => false,
            Outcome::Response(status) => {
                (self.any_5xx && status >= 500)
                    || (self.gateway_error && matches!(status, 502..=504))
                    || self.statuses.contains(&status)
            }
        }
    }

    /// How long to wait before retry number `retry` (1 for the first retry): exponential
    /// backoff with full jitter, uniform in `[0, min(25 ms × 2^(retry-1), 250 ms)]` (Envoy's
    /// defaults: a 25 ms base interval, at most ten times the base). Jitter keeps clients
    /// that failed together from retrying together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(16);
        let cap = BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX);
        let cap_nanos = cap.as_nanos() as u64;
        Duration::from_nanos(rand::below(cap_nanos + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: &[RetryOn]) -> RetryPolicy {
        RetryPolicy::new(&config::Retries {
            attempts: 2,
            per_try_timeout: Some(Duration::from_secs(1)),
            on: on.to_vec(),
            budget_percent: 20.0,
        })
    }

    const OUTCOMES: [Outcome; 9] = [
        Outcome::Response(200),
        Outcome::Response(404),
        Outcome::Response(500),
        Outcome::Response(502),
        Outcome::Response(503),
        Outcome::Response(504),
        Outcome::ConnectFailed,
        Outcome::Reset,
        Outcome::Timeout,
    ];

    fn retried(on: &[RetryOn]) -> Vec<Outcome> {
        let p = policy(on);
        OUTCOMES.into_iter().filter(|&o| p.retryable(o)).collect()
    }

    #[test]
    fn policy_reports_attempts_after_the_first_and_per_try_timeout() {
        let p = policy(&[RetryOn::Reset]);
        assert_eq!(p.retries(), 2);
        assert_eq!(p.per_try_timeout(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn each_retry_condition_retries_exactly_the_outcomes_envoy_retries() {
        use Outcome::*;
        assert_eq!(retried(&[]), vec![]);
        assert_eq!(retried(&[RetryOn::ConnectFailure]), vec![ConnectFailed]);
        assert_eq!(
            retried(&[RetryOn::Reset]),
            vec![ConnectFailed, Reset, Timeout]
        );
        assert_eq!(
            retried(&[RetryOn::GatewayError]),
            vec![
                Response(502),
                Response(503),
                Response(504),
                ConnectFailed,
                Reset,
                Timeout
            ]
        );
        assert_eq!(
            retried(&[RetryOn::Status5xx]),
            vec![
                Response(500),
                Response(502),
                Response(503),
                Response(504),
                ConnectFailed,
                Reset,
                Timeout
            ]
        );
        assert_eq!(retried(&[RetryOn::Status(404)]), vec![Response(404)]);
        assert_eq!(
            retried(&[RetryOn::ConnectFailure, RetryOn::Status(503)]),
            vec![Response(503), ConnectFailed]
        );
    }

    #[test]
    fn backoff_stays_within_the_jitter_window_and_its_cap_doubles_up_to_250ms() {
        let p = policy(&[]);
        for (retry, cap_ms) in [
            (0, 25),
            (1, 25),
            (2, 50),
            (3, 100),
            (4, 200),
            (5, 250),
            (40, 250),
        ] {
            let cap = Duration::from_millis(cap_ms);
            let samples: Vec<Duration> = (0..1000).map(|_| p.backoff(retry)).collect();
            assert!(
                samples.iter().all(|&d| d <= cap),
                "retry {retry} exceeded {cap:?}"
            );
            let mean = samples.iter().sum::<Duration>() / 1000;
            // Uniform in [0, cap]: the mean is cap/2 (σ of the mean ≈ 0.9% of cap).
            assert!(
                mean > cap * 45 / 100 && mean < cap * 55 / 100,
                "retry {retry}: mean {mean:?} for cap {cap:?}"
            );
            let max = samples.iter().max().copied().unwrap_or_default();
            assert!(
                max > cap * 95 / 100,
                "retry {retry}: max {max:?} never neared {cap:?}"
            );
        }
    }
}
