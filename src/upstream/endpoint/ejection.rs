//! What outlier detection remembers of one endpoint: its failure runs, whether it is
//! ejected, why and until when. The detector (`upstream::outlier`) writes it; the rotation
//! and `/services` read it.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{format_duration, format_whole_seconds_rounded_up};

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectionReason {
    /// `consecutive_5xx` failures in a row.
    Consecutive5xx,
    /// `consecutive_gateway_errors` gateway errors in a row.
    ConsecutiveGatewayErrors,
    /// Connect failures in a row (the default detection of a service that configures none).
    ConsecutiveConnectFailures,
}

impl EjectionReason {
    /// The `reason` label value of `weir_outlier_ejections_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            EjectionReason::Consecutive5xx => "consecutive_5xx",
            EjectionReason::ConsecutiveGatewayErrors => "consecutive_gateway_errors",
            EjectionReason::ConsecutiveConnectFailures => "consecutive_connect_failures",
        }
    }
}

/// One ejection of an endpoint: why, for how long, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// Which rule ejected the endpoint.
    pub reason: EjectionReason,
    /// The rule's threshold (failures in a row) when the endpoint was ejected.
    pub threshold: u32,
    /// How long this ejection lasts.
    pub duration: Duration,
    /// When the endpoint is due back (it returns at the first sweep after this).
    pub until: Instant,
}

impl fmt::Display for Ejection {
    /// "5 consecutive 5xx" or "3 consecutive gateway errors".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            EjectionReason::Consecutive5xx => write!(f, "{} consecutive 5xx", self.threshold),
            EjectionReason::ConsecutiveGatewayErrors => {
                write!(f, "{} consecutive gateway errors", self.threshold)
            }
            EjectionReason::ConsecutiveConnectFailures => {
                write!(f, "{} consecutive connect failures", self.threshold)
            }
        }
    }
}

/// Outlier-detection state of one endpoint. Written by its service's outlier detector;
/// the request path only reads [`EndpointOutlier::is_ejected`] (through the rotation).
#[derive(Debug, Default)]
pub struct EndpointOutlier {
    pub(in crate::upstream) consecutive_5xx: AtomicU32,
    pub(in crate::upstream) consecutive_gateway_errors: AtomicU32,
    pub(in crate::upstream) consecutive_connect_failures: AtomicU32,
    pub(in crate::upstream) ejected: AtomicBool,
    /// The ejection multiplier: incremented by each ejection, decremented by each sweep that
    /// finds the endpoint in rotation.
    pub(in crate::upstream) times_ejected: AtomicU32,
    /// Set before `ejected` turns true, taken before it turns false.
    pub(in crate::upstream) ejection: Mutex<Option<Ejection>>,
}

// === impl EndpointOutlier ===

impl EndpointOutlier {
    /// Whether the endpoint is currently ejected.
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Acquire)
    }

    /// Why the endpoint is ejected and until when, for `/services`, e.g.
    /// "ejected by outlier detection (5 consecutive 5xx) for 30s, back in 12s".
    pub fn describe(&self) -> Option<String> {
        if !self.is_ejected() {
            return None;
        }
        let Some(ejection) = self.ejection() else {
            return Some("ejected by outlier detection".to_string());
        };
        let left = ejection.until.saturating_duration_since(Instant::now());
        let back = if left.is_zero() {
            "back at the next sweep".to_string()
        } else {
            format!("back in {}", format_whole_seconds_rounded_up(left))
        };
        Some(format!(
            "ejected by outlier detection ({ejection}) for {}, {back}",
            format_duration(ejection.duration)
        ))
    }

    /// The current ejection, if the endpoint is ejected.
    pub fn ejection(&self) -> Option<Ejection> {
        *self.ejection.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The ejection multiplier: how many times the endpoint was ejected, less one for every
    /// sweep interval it has since spent in rotation.
    pub fn times_ejected(&self) -> u32 {
        self.times_ejected.load(Ordering::Relaxed)
    }

    /// Clears both failure runs; writes only when a run was under way, so a stream of
    /// successes does not bounce the cache line between workers.
    pub(in crate::upstream) fn reset_counts(&self) {
        for count in [
            &self.consecutive_5xx,
            &self.consecutive_gateway_errors,
            &self.consecutive_connect_failures,
        ] {
            if count.load(Ordering::Relaxed) != 0 {
                count.store(0, Ordering::Relaxed);
            }
        }
    }
}
