//! What active health checking remembers of one endpoint: whether it passes, its runs of
//! passes and failures, and why the last check failed. The checker (`upstream::health`)
//! writes it; the rotation and `/services` read it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::HealthCheck;

/// Active health-check state of one endpoint; healthy until checks say otherwise. Written
/// only by its service's checker; read by the rotation and `/services`.
#[derive(Debug)]
pub struct EndpointHealth {
    healthy: AtomicBool,
    /// Checks failed in a row.
    failures: AtomicU32,
    /// Checks passed in a row while unhealthy.
    passes: AtomicU32,
    /// Why the last check failed.
    last_failure: Mutex<String>,
    /// When the endpoint left rotation, while it is unhealthy (for `/explain`).
    since: Mutex<Option<Instant>>,
}

/// A change of an endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Failed `unhealthy_threshold` checks in a row: out of rotation.
    BecameUnhealthy,
    /// Passed `healthy_threshold` checks in a row: back in rotation.
    BecameHealthy,
}

impl Default for EndpointHealth {
    fn default() -> Self {
        EndpointHealth {
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            passes: AtomicU32::new(0),
            last_failure: Mutex::new(String::new()),
            since: Mutex::new(None),
        }
    }
}

// === impl EndpointHealth ===

impl EndpointHealth {
    /// Whether the endpoint passes its health checks (always true without checks).
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Why the endpoint is unhealthy, for `/services`, e.g.
    /// "failing health checks: GET /healthz answered 503 (3 in a row)".
    pub fn describe(&self) -> Option<String> {
        if self.is_healthy() {
            return None;
        }
        let reason = self
            .last_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Some(format!(
            "failing health checks: {reason} ({} in a row)",
            self.failures.load(Ordering::Relaxed)
        ))
    }

    /// How long the endpoint has been out of rotation for failing checks, while it is.
    pub fn unhealthy_for(&self) -> Option<Duration> {
        let since = *self.since.lock().unwrap_or_else(PoisonError::into_inner);
        since
            .filter(|_| !self.is_healthy())
            .map(|t| Instant::now().saturating_duration_since(t))
    }

    /// Counts one check's result against the thresholds; returns the change it caused.
    pub(in crate::upstream) fn observe(
        &self,
        result: Result<(), String>,
        cfg: &HealthCheck,
    ) -> Option<Transition> {
        match result {
            Ok(()) => {
                self.failures.store(0, Ordering::Relaxed);
                if self.is_healthy() {
                    return None;
                }
                let passes = self.passes.load(Ordering::Relaxed).saturating_add(1);
                self.passes.store(passes, Ordering::Relaxed);
                if passes < cfg.healthy_threshold {
                    return None;
                }
                self.passes.store(0, Ordering::Relaxed);
                *self.since.lock().unwrap_or_else(PoisonError::into_inner) = None;
                self.healthy.store(true, Ordering::Release);
                Some(Transition::BecameHealthy)
            }
            Err(reason) => {
                self.passes.store(0, Ordering::Relaxed);
                *self
                    .last_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = reason;
                let failures = self.failures.load(Ordering::Relaxed).saturating_add(1);
                self.failures.store(failures, Ordering::Relaxed);
                if !self.is_healthy() || failures < cfg.unhealthy_threshold {
                    return None;
                }
                *self.since.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                self.healthy.store(false, Ordering::Release);
                Some(Transition::BecameUnhealthy)
            }
        }
    }
}

/// A health check of `/healthz` every `interval`, each bounded by `timeout`, with 2 passes
/// to return and 3 failures to leave rotation (what the health tests assume).
#[cfg(test)]
pub(crate) fn test_check(
    interval: std::time::Duration,
    timeout: std::time::Duration,
) -> HealthCheck {
    HealthCheck {
        path: "/healthz".to_string(),
        interval,
        timeout,
        healthy_threshold: 2,
        unhealthy_threshold: 3,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::test_check as cfg;
    use super::*;

    #[test]
    fn three_failures_make_an_endpoint_unhealthy_and_two_passes_healthy_again() {
        let health = EndpointHealth::default();
        let cfg = cfg(Duration::from_secs(5), Duration::from_secs(1));
        let fail = || Err("GET /healthz answered 503".to_string());
        assert!(health.is_healthy(), "endpoints start healthy");
        assert_eq!(health.observe(fail(), &cfg), None);
        assert_eq!(health.observe(fail(), &cfg), None);
        assert_eq!(health.observe(Ok(()), &cfg), None, "a pass ends the run");
        assert_eq!(health.observe(fail(), &cfg), None);
        assert_eq!(health.observe(fail(), &cfg), None);
        assert!(health.is_healthy());
        assert_eq!(
            health.observe(fail(), &cfg),
            Some(Transition::BecameUnhealthy)
        );
        assert!(!health.is_healthy());
        assert!(health.unhealthy_for().is_some(), "since when is known");
        assert_eq!(
            health.describe().as_deref(),
            Some("failing health checks: GET /healthz answered 503 (3 in a row)")
        );
        assert_eq!(health.observe(fail(), &cfg), None);
        assert_eq!(
            health.describe().as_deref(),
            Some("failing health checks: GET /healthz answered 503 (4 in a row)")
        );
        assert_eq!(health.observe(Ok(()), &cfg), None);
        assert_eq!(
            health.observe(fail(), &cfg),
            None,
            "a failure ends the passes"
        );
        assert_eq!(health.observe(Ok(()), &cfg), None);
        assert!(!health.is_healthy());
        assert_eq!(
            health.observe(Ok(()), &cfg),
            Some(Transition::BecameHealthy)
        );
        assert!(health.is_healthy());
        assert_eq!(health.describe(), None);
        assert_eq!(health.unhealthy_for(), None);
    }
}
