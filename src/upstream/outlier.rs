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

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::endpoint::{Ejection, EjectionReason, Endpoint};
use super::outcome::Outcome;
use crate::config::OutlierDetection;
use crate::telemetry::metrics::{EjectionLabels, Metrics};

/// Ejection time never grows beyond this (Envoy's default `max_ejection_time`), unless
/// `base_ejection_time` itself is longer.
const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// Connect failures in a row that take an endpoint out of rotation in a service without
/// `outlier_detection` (nginx's `max_fails` and most balancers fail over on far fewer).
pub const DEFAULT_CONNECT_FAILURES: u32 = 5;

/// Outlier detection for one service: judges attempts, ejects endpoints and returns them.
#[derive(Debug)]
pub struct OutlierDetector {
    service: String,
    consecutive_5xx: u32,
    consecutive_gateway_errors: u32,
    consecutive_connect_failures: u32,
    /// Never eject the last endpoint in rotation (the default detection: a burst of failed
    /// connects to a service's only endpoint must not turn into certain failure for 30 s).
    keep_one: bool,
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
            consecutive_connect_failures: 0,
            keep_one: false,
            interval: cfg.interval,
            base_ejection_time: cfg.base_ejection_time,
            max_ejection_time: cfg.base_ejection_time.max(MAX_EJECTION_TIME),
            max_ejection_percent: cfg.max_ejection_percent,
            metrics,
            ejecting: Mutex::new(()),
        }
    }

    /// The detection every service has when it configures none: an endpoint that refuses
    /// or drops [`DEFAULT_CONNECT_FAILURES`] connections in a row leaves rotation, for
    /// Envoy's default times (30 s base ejection, a sweep every 10 s, at most 10 % of the
    /// service at once, and always one), but never the last endpoint in rotation. A dead endpoint should not keep failing a share of
    /// the requests until someone configures outlier detection; 5xx answers are left alone,
    /// since without configuration weir cannot know which of them the service means.
    pub fn connect_failures_only(service: &str, metrics: Arc<Metrics>) -> Self {
        let cfg = OutlierDetection {
            consecutive_5xx: 0,
            consecutive_gateway_errors: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 10.0,
        };
        OutlierDetector {
            consecutive_connect_failures: DEFAULT_CONNECT_FAILURES,
            keep_one: true,
            ..OutlierDetector::new(service, &cfg, metrics)
        }
    }

    /// The reasons this detector can eject for: an endpoint's
    /// `weir_outlier_ejections_total` series are created for them at 0 with the endpoint, so
    /// `rate()` and `increase()` see its first ejection.
    pub fn reasons(&self) -> impl Iterator<Item = EjectionReason> + '_ {
        [
            (self.consecutive_5xx, EjectionReason::Consecutive5xx),
            (
                self.consecutive_gateway_errors,
                EjectionReason::ConsecutiveGatewayErrors,
            ),
            (
                self.consecutive_connect_failures,
                EjectionReason::ConsecutiveConnectFailures,
            ),
        ]
        .into_iter()
        .filter(|(threshold, _)| *threshold > 0)
        .map(|(_, reason)| reason)
    }

    /// How often [`OutlierDetector::sweep`] should run.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Records one attempt's outcome at `endpoint`, a member of `endpoints` (the service's
    /// current endpoint set). Returns true when this ejected it: the verdict, which the
    /// service acts on by rebuilding its rotation.
    ///
    /// As in Envoy, a success (anything not [`Outcome::is_5xx`]) ends both failure runs, and a
    /// 5xx that is not a gateway error (a 500) ends the gateway-error run. Outcomes at an
    /// endpoint already ejected (requests that were in flight) are ignored.
    pub fn record(
        &self,
        endpoint: &Endpoint,
        outcome: Outcome,
        endpoints: &[Arc<Endpoint>],
    ) -> bool {
        let outlier = &endpoint.outlier;
        if !outcome.is_5xx() {
            outlier.reset_counts();
            return false;
        }
        if outlier.is_ejected() {
            return false;
        }
        let mut reason = None;
        if self.consecutive_connect_failures > 0 {
            if outcome == Outcome::ConnectFailed {
                let run = outlier
                    .consecutive_connect_failures
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                if run >= self.consecutive_connect_failures {
                    reason = Some(EjectionReason::ConsecutiveConnectFailures);
                }
            } else if outlier.consecutive_connect_failures.load(Ordering::Relaxed) != 0 {
                outlier
                    .consecutive_connect_failures
                    .store(0, Ordering::Relaxed);
            }
        }
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
            Some(reason) => self.eject(endpoint, reason, endpoints),
            None => false,
        }
    }

    /// Ejects `endpoint` unless it already is, is no longer in `set`, or
    /// `max_ejection_percent` forbids it. An endpoint refused for the percentage is tried
    /// again at its next failure, so it goes once another endpoint has returned.
    fn eject(
        &self,
        endpoint: &Endpoint,
        reason: EjectionReason,
        endpoints: &[Arc<Endpoint>],
    ) -> bool {
        let _ejecting = self.ejecting.lock().unwrap_or_else(PoisonError::into_inner);
        let outlier = &endpoint.outlier;
        if outlier.is_ejected() || !endpoints.iter().any(|e| std::ptr::eq(&**e, endpoint)) {
            return false;
        }
        let total = endpoints.len();
        let ejected_now = endpoints.iter().filter(|e| e.outlier.is_ejected()).count();
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
            EjectionReason::ConsecutiveConnectFailures => self.consecutive_connect_failures,
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
            .get_or_create_owned(&EjectionLabels {
                service: self.service.clone(),
                endpoint: endpoint.label.to_string(),
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
        if self.keep_one && ejected_now + 1 >= total {
            return false;
        }
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

    /// Returns the endpoints whose ejection time has passed (with their failure runs
    /// cleared) and lowers by one the multiplier of every endpoint in rotation. Returns true
    /// if any endpoint returned: the verdict, which the service acts on by rebuilding its
    /// rotation.
    pub fn sweep(&self, endpoints: &[Arc<Endpoint>]) -> bool {
        let _ejecting = self.ejecting.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let mut returned = false;
        for endpoint in endpoints {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Service;
    use tokio::sync::watch;

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
            .filter(|_| d.record(&set.endpoints[i], outcome, &set.endpoints))
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
                d.sweep(&set.endpoints),
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
        assert!(d.sweep(&s.endpoint_set().endpoints));
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
        assert!(!d.sweep(&set.endpoints));
        assert!(set.endpoints[0].outlier.is_ejected());
        tokio::time::advance(S).await;
        assert!(d.sweep(&set.endpoints));
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
            assert!(d.sweep(&set.endpoints));
        }
        assert_eq!(
            outlier.times_ejected(),
            2,
            "the returning sweep does not decay"
        );
        d.sweep(&set.endpoints);
        assert_eq!(outlier.times_ejected(), 1);
        d.sweep(&set.endpoints);
        d.sweep(&set.endpoints);
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
            async move { s.run_outlier_sweeps(&d, stop).await }
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
            .filter(|_| d.record(&gone, Outcome::Response(503), &set.endpoints))
            .count();
        assert_eq!(ejections, 0);
        assert!(!gone.outlier.is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn without_configuration_five_connect_failures_in_a_row_eject_and_5xx_never_do() {
        let (s, metrics) = service(3);
        let d = OutlierDetector::connect_failures_only("s", metrics.clone());
        assert_eq!(
            record_n(&d, &s, 0, Outcome::Response(503), 50),
            0,
            "5xx is the service's business"
        );
        assert_eq!(record_n(&d, &s, 0, Outcome::Reset, 50), 0);
        assert_eq!(record_n(&d, &s, 0, Outcome::ConnectFailed, 4), 0);
        assert_eq!(
            record_n(&d, &s, 0, Outcome::Response(200), 1),
            0,
            "an answer ends the run"
        );
        assert_eq!(record_n(&d, &s, 0, Outcome::ConnectFailed, 4), 0);
        assert_eq!(record_n(&d, &s, 0, Outcome::ConnectFailed, 1), 1);
        let ejection = s.endpoint_set().endpoints[0]
            .outlier
            .ejection()
            .expect("ejected");
        assert_eq!(
            (ejection.reason, ejection.threshold, ejection.duration),
            (EjectionReason::ConsecutiveConnectFailures, 5, 30 * S)
        );
        assert!(metrics
            .render()
            .contains("reason=\"consecutive_connect_failures\"} 1"));
        assert_eq!(
            record_n(&d, &s, 1, Outcome::ConnectFailed, 5),
            0,
            "10 % of 3 endpoints: one at a time"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn by_default_the_last_endpoint_in_rotation_is_never_ejected() {
        let (s, metrics) = service(1);
        let d = OutlierDetector::connect_failures_only("s", metrics);
        assert_eq!(record_n(&d, &s, 0, Outcome::ConnectFailed, 50), 0);
        assert!(!s.endpoint_set().endpoints[0].outlier.is_ejected());
    }
}
