//! Envoy's retry budget, a limit of the upstream like the connection and request limits
//! (Envoy configures it among a cluster's circuit-breaker thresholds): retries in flight to
//! a service may not exceed a share of the requests in flight to it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Retries the budget allows however few requests are active (Envoy's
/// `min_retry_concurrency`), so a quiet service can still be retried.
const MIN_RETRY_CONCURRENCY: u64 = 3;

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
