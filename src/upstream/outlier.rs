//! Outlier detection per endpoint, with Envoy's semantics: an endpoint that answers
//! `consecutive_5xx` 5xx (or `consecutive_gateway_errors` 502/503/504, connect failures,
//! resets or timeouts) in a row is ejected from its service's rotation for
//! `base_ejection_time × times ejected` (at most `max(base_ejection_time, 300s)`), and a sweep
//! every `interval` returns it once that time has passed. At most `max_ejection_percent` of a
//! service's endpoints are ejected at once, except that one endpoint may always be ejected
//! when none is (Envoy ≥ 1.21: "will eject at least one host regardless of the value").
//!
//! The request path calls [`OutlierDetector::record`] for every attempt. A success reads two
//! atomics and writes nothing unless a failure run was under way; only an ejection takes a
//! lock, to make the `max_ejection_percent` check and the ejection one step.
//!
//! **No panic mode.** Envoy, when too few hosts are healthy, ignores health and balances over
//! every host ("panic threshold"). weir does not: the balancer is built over the endpoints in
//! rotation only, so when every endpoint is ejected or unhealthy a request is answered at once
//! with 503 `weir-error: no_healthy_endpoint`. A sidecar serves one application and should
//! fail fast and visibly, in its metrics and in the answer, rather than quietly send traffic
//! to endpoints it knows are failing; recovery is the job of the circuit breaker, retries and
//! the sweep that returns ejected endpoints, and `max_ejection_percent` already keeps most of
//! a service in rotation when only some endpoints fail.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::endpoint::Endpoint;
use super::outcome::Outcome;
use super::service::{EndpointSet, Service};
use crate::config::{format_duration, format_whole_seconds_rounded_up, OutlierDetection};
use crate::telemetry::metrics::{EjectionLabels, Metrics};

/// Ejection time never grows beyond this (Envoy's default `max_ejection_time`), unless
/// `base_ejection_time` itself is longer.
const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// Why an endpoint was ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectionReason {
    /// `consecutive_5xx` failures in a row.
    Consecutive5xx,
    /// `consecutive_gateway_errors` gateway errors in a row.
    ConsecutiveGatewayErrors,
}

impl EjectionReason {
    /// The `reason` label value of `weir_outlier_ejections_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            EjectionReason::Consecutive5xx => "consecutive_5xx",
            EjectionReason::ConsecutiveGatewayErrors => "consecutive_gateway_errors",
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
        }
    }
}

/// Outlier-detection state of one endpoint. Written by its service's [`OutlierDetector`];
/// the request path only reads [`EndpointOutlier::is_ejected`] (through the rotation).
#[derive(Debug, Default)]
pub struct EndpointOutlier {
    consecutive_5xx: AtomicU32,
    consecutive_gateway_errors: AtomicU32,
    ejected: AtomicBool,
    /// The ejection multiplier: incremented by each ejection, decremented by each sweep that
    /// finds the endpoint in rotation.
    times_ejected: AtomicU32,
    /// Set before `ejected` turns true, taken before it turns false.
    ejection: Mutex<Option<Ejection>>,
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
    fn reset_counts(&self) {
        for count in [&self.consecutive_5xx, &self.consecutive_gateway_errors] {
            if count.load(Ordering::Relaxed) != 0 {
                count.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// Outlier detection for one service: judges attempts, ejects endpoints and returns them.
#[derive(Debug)]
pub struct OutlierDetector {
    service: String,
    consecutive_5xx: u32,
    consecutive_gateway_errors: u32,
    interval: Duration,
    base_ejection_time: Duration,
    max_ejection_time: Duration,
    max_ejection_percent: f64,
    metrics: Arc<Metrics>,
    /// Serialises ejections and sweeps, so that two endpoints failing at once cannot both
    /// pass the `max_ejection_percent` check. Never taken for a success.
    ejecting: Mutex<()>,
}

// === impl OutlierDetector ===

impl OutlierDetector {
    /// Outlier detection for the service named `service` with these settings.
    pub fn new(service: &str, cfg: &OutlierDetection, metrics: Arc<Metrics>) -> Self {
        OutlierDetector {
            service: service.to_string(),
            consecutive_5xx: cfg.consecutive_5xx,
            consecutive_gateway_errors: cfg.consecutive_gateway_errors,
            interval: cfg.interval,
            base_ejection_time: cfg.base_ejection_time,
            max_ejection_time: cfg.base_ejection_time.max(MAX_EJECTION_TIME),
            max_ejection_percent: cfg.max_ejection_percent,
            metrics,
            ejecting: Mutex::new(()),
        }
    }

    /// Records one attempt's outcome at `endpoint`, a member of `set` (the service's current
    /// endpoint set). Returns true when this ejected it; the caller then calls
    /// [`Service::refresh_rotation`].
    ///
    /// As in Envoy, a success (anything not [`Outcome::is_5xx`]) ends both failure runs, and a
    /// 5xx that is not a gateway error (a 500) ends the gateway-error run. Outcomes at an
    /// endpoint already ejected (requests that were in flight) are ignored.
    pub fn record(&self, endpoint: &Endpoint, outcome: Outcome, set: &EndpointSet) -> bool {
        let outlier = &endpoint.outlier;
        if !outcome.is_5xx() {
            outlier.reset_counts();
            return false;
        }
        if outlier.is_ejected() {
            return false;
        }
        let mut reason = None;
        if self.consecutive_gateway_errors > 0 {
            if outcome.is_gateway_error() {
                let run = outlier
                    .consecutive_gateway_errors
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                if run >= self.consecutive_gateway_errors {
                    reason = Some(EjectionReason::ConsecutiveGatewayErrors);
                }
            } else if outlier.consecutive_gateway_errors.load(Ordering::Relaxed) != 0 {
                outlier
                    .consecutive_gateway_errors
                    .store(0, Ordering::Relaxed);
            }
        }
        if self.consecutive_5xx > 0 {
            let run = outlier
                .consecutive_5xx
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if run >= self.consecutive_5xx && reason.is_none() {
                reason = Some(EjectionReason::Consecutive5xx);
            }
        }
        match reason {
            Some(reason) => self.eject(endpoint, reason, set),
            None => false,
        }
    }

    /// Ejects `endpoint` unless it already is, is no longer in `set`, or
    /// `max_ejection_percent` forbids it. An endpoint refused for the percentage is tried
    /// again at its next failure, so it goes once another endpoint has returned.
    fn eject(&self, endpoint: &Endpoint, reason: EjectionReason, set: &EndpointSet) -> bool {
        let _ejecting = self.ejecting.lock().unwrap_or_else(PoisonError::into_inner);
        let outlier = &endpoint.outlier;
        if outlier.is_ejected() || !set.endpoints.iter().any(|e| std::ptr::eq(&**e, endpoint)) {
            return false;
        }
        let total = set.endpoints.len();
        let ejected_now = set
            .endpoints
            .iter()
            .filter(|e| e.outlier.is_ejected())
            .count();
        if !self.may_eject(ejected_now, total) {
            tracing::debug!(
                service = %self.service,
                endpoint = %endpoint.label,
                reason = reason.as_str(),
                ejected_now,
                total,
                max_ejection_percent = self.max_ejection_percent,
                "outlier not ejected: max_ejection_percent reached"
            );
            return false;
        }
        let times = self.next_multiplier(outlier.times_ejected());
        outlier.times_ejected.store(times, Ordering::Relaxed);
        let duration = self
            .base_ejection_time
            .saturating_mul(times)
            .min(self.max_ejection_time);
        let threshold = match reason {
            EjectionReason::Consecutive5xx => self.consecutive_5xx,
            EjectionReason::ConsecutiveGatewayErrors => self.consecutive_gateway_errors,
        };
        *outlier
            .ejection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Ejection {
            reason,
            threshold,
            duration,
            until: Instant::now() + duration,
        });
        outlier.ejected.store(true, Ordering::Release);
        self.metrics
            .outlier_ejections
            .get_or_create(&EjectionLabels {
                service: self.service.clone(),
                endpoint: endpoint.label.clone(),
                reason: reason.as_str().to_string(),
            })
            .inc();
        tracing::warn!(
            service = %self.service,
            endpoint = %endpoint.label,
            reason = reason.as_str(),
            threshold,
            ejected_for_secs = duration.as_secs_f64(),
            times_ejected = times,
            ejected = ejected_now + 1,
            total,
            "endpoint ejected by outlier detection"
        );
        true
    }

    /// Envoy ≥ 1.21: one endpoint may always go; beyond that, only while at most
    /// `max_ejection_percent` of the service would be ejected.
    fn may_eject(&self, ejected_now: usize, total: usize) -> bool {
        ejected_now == 0
            || (ejected_now + 1) as f64 * 100.0 <= self.max_ejection_percent * total as f64
    }

    /// The multiplier after one more ejection; it stops growing once it reaches the cap, so
    /// decay is not slowed by ejections that could not last any longer anyway.
    fn next_multiplier(&self, times: u32) -> u32 {
        if self.base_ejection_time.saturating_mul(times) >= self.max_ejection_time {
            times
        } else {
            times.saturating_add(1)
        }
    }

    /// Returns the endpoints of `set` whose ejection time has passed (with their failure runs
    /// cleared) and lowers by one the multiplier of every endpoint in rotation. Returns true
    /// if any endpoint returned; the caller then calls [`Service::refresh_rotation`].
    pub fn sweep(&self, set: &EndpointSet) -> bool {
        let _ejecting = self.ejecting.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let mut returned = false;
        for endpoint in &set.endpoints {
            let outlier = &endpoint.outlier;
            if !outlier.is_ejected() {
                let _ =
                    outlier
                        .times_ejected
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_sub(1));
                continue;
            }
            let mut ejection = outlier
                .ejection
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if ejection.is_some_and(|e| e.until > now) {
                continue;
            }
            let ended = ejection.take();
            outlier.reset_counts();
            outlier.ejected.store(false, Ordering::Release);
            drop(ejection);
            returned = true;
            tracing::info!(
                service = %self.service,
                endpoint = %endpoint.label,
                reason = ended.map_or("", |e| e.reason.as_str()),
                ejected_for_secs = ended.map_or(0.0, |e| e.duration.as_secs_f64()),
                "endpoint returned from outlier ejection"
            );
        }
        returned
    }

    /// Sweeps `service`'s endpoints every [`OutlierDetector::interval`], refreshing its
    /// rotation when an endpoint returned, until `stop` turns true (or its sender is gone).
    pub async fn run_sweeps(&self, service: &Service, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval_at(Instant::now() + self.interval, self.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = ticks.tick() => {
                    if self.sweep(&service.endpoint_set()) {
                        service.refresh_rotation();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn service(endpoints: usize) -> (Arc<Service>, Arc<Metrics>) {
        let list: Vec<String> = (1..=endpoints)
            .map(|i| format!("\"127.0.0.1:{}\"", 9000 + i))
            .collect();
        let text = format!(
            "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        backends: [{{ service: s }}]\nservices:\n  - {{ name: s, endpoints: [{}] }}\n",
            list.join(", ")
        );
        let config = crate::config::load_str("t.yaml", &text)
            .expect("valid")
            .config;
        let metrics = Metrics::new();
        let service = Service::new(&config.services[0], vec![], metrics.clone());
        (service, metrics)
    }

    fn cfg(
        consecutive_5xx: u32,
        consecutive_gateway_errors: u32,
        max_percent: f64,
    ) -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx,
            consecutive_gateway_errors,
            interval: 10 * S,
            base_ejection_time: 30 * S,
            max_ejection_percent: max_percent,
        }
    }

    /// Records `n` outcomes at endpoint `i`; returns how many of them ejected it.
    fn record_n(d: &OutlierDetector, s: &Service, i: usize, outcome: Outcome, n: usize) -> usize {
        let set = s.endpoint_set();
        (0..n)
            .filter(|_| d.record(&set.endpoints[i], outcome, &set))
            .count()
    }

    fn ejected(s: &Service) -> usize {
        s.endpoint_set()
            .endpoints
            .iter()
            .filter(|e| e.outlier.is_ejected())
            .count()
    }

    #[tokio::test(start_paused = true)]
    async fn five_consecutive_5xx_eject_the_endpoint_and_take_it_out_of_rotation() {
        let (s, metrics) = service(3);
        let d = OutlierDetector::new("s", &cfg(5, 0, 10.0), metrics);
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(503), 4), 0);
        assert!(!s.endpoint_set().endpoints[0].outlier.is_ejected());
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(503), 1), 1);
        let set = s.endpoint_set();
        assert!(set.endpoints[0].outlier.is_ejected());
        assert_eq!(set.in_rotation(), 3, "rotation unchanged until refreshed");
        s.refresh_rotation();
        assert_eq!(s.endpoint_set().in_rotation(), 2);
        assert_eq!(
            set.endpoints[0].outlier.describe().as_deref(),
            Some("ejected by outlier detection (5 consecutive 5xx) for 30s, back in 30s")
        );
        tokio::time::advance(18 * S).await;
        assert_eq!(
            set.endpoints[0].outlier.describe().as_deref(),
            Some("ejected by outlier detection (5 consecutive 5xx) for 30s, back in 12s")
        );
        assert_eq!(set.endpoints[1].outlier.describe(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_in_between_resets_the_5xx_run() {
        let (s, metrics) = service(3);
        let d = OutlierDetector::new("s", &cfg(5, 0, 10.0), metrics);
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(500), 4), 0);
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(200), 1), 0);
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(500), 4), 0);
        assert!(!s.endpoint_set().endpoints[0].outlier.is_ejected());
        assert_eq!(
            record_n(&d, &s, 0, Outcome::Response(404), 1),
            0,
            "a 4xx is a success"
        );
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(500), 4), 0);
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(500), 1), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn gateway_errors_count_502_503_504_and_local_failures_but_not_500() {
        let (s, metrics) = service(3);
        let d = OutlierDetector::new("s", &cfg(0, 5, 10.0), metrics);
        assert_eq!(
            record_n(&d, &s, 0, Outcome::Response(500), 20),
            0,
            "500 is not a gateway error"
        );
        for outcome in [
            Outcome::Response(502),
            Outcome::Response(503),
            Outcome::Response(504),
            Outcome::ConnectFailed,
        ] {
            assert_eq!(record_n(&d, &s, 0, outcome, 1), 0);
        }
        assert_eq!(
            record_n(&d, &s, 0, Outcome::Timeout, 1),
            1,
            "the 5th gateway error ejects"
        );
        let ejection = s.endpoint_set().endpoints[0].outlier.ejection();
        assert_eq!(
            ejection.map(|e| (e.reason, e.threshold)),
            Some((EjectionReason::ConsecutiveGatewayErrors, 5))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_500_ends_a_run_of_gateway_errors() {
        let (s, metrics) = service(3);
        let d = OutlierDetector::new("s", &cfg(0, 3, 10.0), metrics);
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(502), 2), 0);
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(500), 1), 0);
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(502), 2), 0);
        assert_eq!(record_n(&d, &s, 0, Outcome::Reset, 1), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_doubles_on_the_second_ejection_and_caps_at_300s() {
        let (s, metrics) = service(1);
        let d = OutlierDetector::new("s", &cfg(5, 0, 10.0), metrics);
        let set = s.endpoint_set();
        let outlier = &set.endpoints[0].outlier;
        let mut durations = Vec::new();
        for _ in 0..12 {
            assert_eq!(record_n(&d, &s, 0, Outcome::Response(503), 5), 1);
            let ejection = outlier.ejection().expect("ejected");
            durations.push(ejection.duration.as_secs());
            tokio::time::advance(ejection.duration).await;
            assert!(
                d.sweep(&set),
                "returned after {}s",
                ejection.duration.as_secs()
            );
        }
        assert_eq!(
            durations,
            [30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 300, 300]
        );
        assert_eq!(
            outlier.times_ejected(),
            10,
            "the multiplier stops at the cap"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejection_percent_20_of_10_endpoints_allows_2_ejections_not_3() {
        let (s, metrics) = service(10);
        let d = OutlierDetector::new("s", &cfg(5, 0, 20.0), metrics);
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(503), 5), 1);
        assert_eq!(record_n(&d, &s, 1, Outcome::Response(503), 5), 1);
        assert_eq!(record_n(&d, &s, 2, Outcome::Response(503), 10), 0);
        assert_eq!(ejected(&s), 2);
        s.refresh_rotation();
        assert_eq!(s.endpoint_set().in_rotation(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn max_ejection_percent_10_of_3_endpoints_still_ejects_exactly_1() {
        let (s, metrics) = service(3);
        let d = OutlierDetector::new("s", &cfg(5, 0, 10.0), metrics);
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(503), 5), 1);
        assert_eq!(record_n(&d, &s, 1, Outcome::Response(503), 5), 0);
        assert_eq!(record_n(&d, &s, 2, Outcome::Response(503), 5), 0);
        assert_eq!(ejected(&s), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_refused_for_the_percentage_goes_at_its_next_failure_once_room_is_made() {
        let (s, metrics) = service(3);
        let d = OutlierDetector::new("s", &cfg(5, 0, 10.0), metrics);
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(503), 5), 1);
        assert_eq!(record_n(&d, &s, 1, Outcome::Response(503), 5), 0);
        tokio::time::advance(30 * S).await;
        assert!(d.sweep(&s.endpoint_set()));
        assert_eq!(record_n(&d, &s, 1, Outcome::Response(503), 1), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn sweep_returns_an_endpoint_after_its_ejection_time_with_its_run_cleared() {
        let (s, metrics) = service(3);
        let d = OutlierDetector::new("s", &cfg(5, 0, 10.0), metrics);
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(503), 5), 1);
        s.refresh_rotation();
        let set = s.endpoint_set();
        tokio::time::advance(29 * S).await;
        assert!(!d.sweep(&set));
        assert!(set.endpoints[0].outlier.is_ejected());
        tokio::time::advance(S).await;
        assert!(d.sweep(&set));
        assert!(!set.endpoints[0].outlier.is_ejected());
        assert_eq!(set.endpoints[0].outlier.describe(), None);
        s.refresh_rotation();
        assert_eq!(s.endpoint_set().in_rotation(), 3);
        assert_eq!(
            record_n(&d, &s, 0, Outcome::Response(503), 4),
            0,
            "run starts over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sweeps_decay_the_multiplier_by_one_per_interval_in_rotation() {
        let (s, metrics) = service(1);
        let d = OutlierDetector::new("s", &cfg(5, 0, 10.0), metrics);
        let set = s.endpoint_set();
        let outlier = &set.endpoints[0].outlier;
        for _ in 0..2 {
            assert_eq!(record_n(&d, &s, 0, Outcome::Response(503), 5), 1);
            tokio::time::advance(outlier.ejection().expect("ejected").duration).await;
            assert!(d.sweep(&set));
        }
        assert_eq!(
            outlier.times_ejected(),
            2,
            "the returning sweep does not decay"
        );
        d.sweep(&set);
        assert_eq!(outlier.times_ejected(), 1);
        d.sweep(&set);
        d.sweep(&set);
        assert_eq!(outlier.times_ejected(), 0);
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(503), 5), 1);
        assert_eq!(outlier.ejection().map(|e| e.duration), Some(30 * S));
    }

    #[tokio::test(start_paused = true)]
    async fn periodic_sweeps_put_the_endpoint_back_in_rotation() {
        let (s, metrics) = service(3);
        let d = Arc::new(OutlierDetector::new("s", &cfg(5, 0, 10.0), metrics));
        let (stop_tx, stop) = watch::channel(false);
        let sweeper = tokio::spawn({
            let (d, s) = (d.clone(), s.clone());
            async move { d.run_sweeps(&s, stop).await }
        });
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(503), 5), 1);
        s.refresh_rotation();
        assert_eq!(s.endpoint_set().in_rotation(), 2);
        tokio::time::sleep(29 * S).await;
        assert_eq!(s.endpoint_set().in_rotation(), 2, "still out before 30s");
        tokio::time::sleep(2 * S).await;
        assert_eq!(
            s.endpoint_set().in_rotation(),
            3,
            "the sweep at 30s returned it"
        );
        stop_tx.send_replace(true);
        assert!(sweeper.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn ejections_are_counted_in_weir_outlier_ejections_total() {
        let (s, metrics) = service(3);
        let d = OutlierDetector::new("s", &cfg(5, 0, 10.0), metrics.clone());
        assert_eq!(record_n(&d, &s, 0, Outcome::Response(503), 5), 1);
        let text = metrics.render();
        assert!(
            text.contains(
                "weir_outlier_ejections_total{service=\"s\",endpoint=\"127.0.0.1:9001\",reason=\"consecutive_5xx\"} 1"
            ),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_at_an_endpoint_no_longer_in_the_set_do_not_eject_it() {
        let (s, metrics) = service(2);
        let d = OutlierDetector::new("s", &cfg(5, 0, 100.0), metrics);
        let gone = s.endpoint_set().endpoints[0].clone();
        s.set_endpoints(&[(s.endpoint_set().endpoints[1].address, 1)]);
        let set = s.endpoint_set();
        let ejections = (0..5)
            .filter(|_| d.record(&gone, Outcome::Response(503), &set))
            .count();
        assert_eq!(ejections, 0);
        assert!(!gone.outlier.is_ejected());
    }
}
