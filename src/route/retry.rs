//! Retries: which attempt outcomes a route may retry, how long to wait before the next
//! attempt, and the budget that keeps retries from multiplying load on a failing service.
//!
//! The conditions follow Envoy's router (`retry_state_impl.cc`, `wouldRetryFromReset`): a
//! per-try timeout ends the attempt the way a local reset does, and Envoy retries any reset,
//! connect failures included, under `reset`, `5xx` and `gateway-error` alike; only the
//! narrow `connect-failure` is limited to failed connections.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, RetryOn};
use crate::rand;
use crate::upstream::outcome::Outcome;

/// First backoff cap: Envoy's default `base_interval` of 25 ms.
const BACKOFF_BASE: Duration = Duration::from_millis(25);
/// Largest backoff cap: Envoy's default `max_interval`, ten times the base.
const BACKOFF_MAX: Duration = Duration::from_millis(250);
/// Retries the budget allows however few requests are active (Envoy's
/// `min_retry_concurrency`), so a quiet service can still be retried.
const MIN_RETRY_CONCURRENCY: u64 = 3;

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

/// Envoy's retry budget for one route and service: retries in flight may not exceed
/// `budget_percent` of the requests in flight, and never fewer than 3 are allowed. Unlike a
/// fixed retry count, a budget grows with traffic and keeps a failing service from seeing a
/// multiple of its normal load. Cheap to clone; clones share the counts. Lock-free.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    state: Arc<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    percent: f64,
    active: AtomicU64,
    retries: AtomicU64,
}

/// A request counted as active by a [`RetryBudget`] until this is dropped.
#[derive(Debug)]
#[must_use = "the request counts as active only while this is held"]
pub struct ActiveRequest {
    state: Arc<BudgetState>,
}

/// One retry in flight granted by a [`RetryBudget`]; the budget gets it back when this is
/// dropped.
#[derive(Debug)]
#[must_use = "the retry counts against the budget only while this is held"]
pub struct RetryPermit {
    state: Arc<BudgetState>,
}

// === impl RetryBudget ===

impl RetryBudget {
    /// A budget allowing retries in flight up to `budget_percent` (0–100) of the active
    /// requests, and at least 3.
    pub fn new(budget_percent: f64) -> Self {
        RetryBudget {
            state: Arc::new(BudgetState {
                percent: budget_percent.clamp(0.0, 100.0),
                active: AtomicU64::new(0),
                retries: AtomicU64::new(0),
            }),
        }
    }

    /// Counts a request as active until the returned guard is dropped; hold it for the
    /// whole request, every attempt included.
    pub fn request_started(&self) -> ActiveRequest {
        self.state.active.fetch_add(1, Relaxed);
        ActiveRequest {
            state: self.state.clone(),
        }
    }

    /// Grants a retry when fewer than `max(3, ⌊budget_percent × active / 100⌋)` retries are
    /// in flight; `None` when the budget is spent (count it as `budget_exhausted`).
    pub fn try_retry(&self) -> Option<RetryPermit> {
        let allowed = self.allowed();
        self.state
            .retries
            .fetch_update(Relaxed, Relaxed, |n| (n < allowed).then_some(n + 1))
            .ok()?;
        Some(RetryPermit {
            state: self.state.clone(),
        })
    }

    /// Requests active now.
    pub fn active(&self) -> u64 {
        self.state.active.load(Relaxed)
    }

    fn allowed(&self) -> u64 {
        let share = (self.active() as f64 * self.state.percent / 100.0).floor() as u64;
        share.max(MIN_RETRY_CONCURRENCY)
    }
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.state.active.fetch_sub(1, Relaxed);
    }
}

impl Drop for RetryPermit {
    fn drop(&mut self) {
        self.state.retries.fetch_sub(1, Relaxed);
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

    /// Retries `budget` has in flight now.
    fn retries_in_flight(budget: &RetryBudget) -> u64 {
        budget.state.retries.load(Relaxed)
    }

    #[test]
    fn budget_grants_three_concurrent_retries_even_with_one_active_request() {
        let budget = RetryBudget::new(20.0);
        let _request = budget.request_started();
        let permits: Vec<RetryPermit> = (0..3).filter_map(|_| budget.try_retry()).collect();
        assert_eq!(permits.len(), 3);
        assert!(budget.try_retry().is_none());
        assert_eq!(retries_in_flight(&budget), 3);
    }

    #[test]
    fn budget_grants_exactly_the_configured_share_of_active_requests_when_larger() {
        let budget = RetryBudget::new(20.0);
        let requests: Vec<ActiveRequest> = (0..37).map(|_| budget.request_started()).collect();
        assert_eq!(budget.active(), 37);
        // ⌊20% × 37⌋ = 7.
        let permits: Vec<RetryPermit> = (0..10).filter_map(|_| budget.try_retry()).collect();
        assert_eq!(permits.len(), 7);
        drop(requests);
        assert_eq!(budget.active(), 0);
    }

    #[test]
    fn budget_gets_retries_and_requests_back_when_their_guards_drop() {
        let budget = RetryBudget::new(50.0);
        let requests: Vec<ActiveRequest> = (0..10).map(|_| budget.request_started()).collect();
        let mut permits: Vec<RetryPermit> = (0..5).filter_map(|_| budget.try_retry()).collect();
        assert_eq!(permits.len(), 5);
        assert!(budget.try_retry().is_none());
        permits.pop();
        assert_eq!(retries_in_flight(&budget), 4);
        permits.push(
            budget
                .try_retry()
                .expect("a released permit is granted again"),
        );
        drop(permits);
        drop(requests);
        assert_eq!((budget.active(), retries_in_flight(&budget)), (0, 0));
        // Back to the floor of three.
        let floor: Vec<RetryPermit> = (0..5).filter_map(|_| budget.try_retry()).collect();
        assert_eq!(floor.len(), 3);
    }

    #[test]
    fn budget_clones_share_their_counts() {
        let budget = RetryBudget::new(20.0);
        let other = budget.clone();
        let _request = other.request_started();
        let _permit = other.try_retry();
        assert_eq!((budget.active(), retries_in_flight(&budget)), (1, 1));
    }
}
