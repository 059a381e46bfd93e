//! Reads what weir already counts, twice a second, and turns it into one [`Command`] per
//! service over its rolling window. Nothing here runs on the request path: the counters
//! and histograms are cumulative, so a reading now minus the reading one window ago is the
//! window's count, and the breaker's health counts are its own rolling window.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use super::event::{Breaker, Command, Tally};
use crate::snapshot::Snapshot;
use crate::telemetry::histogram::HistogramCounts;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::prometheus_text;
use crate::telemetry::series::NONE;
use crate::upstream::circuit_breaker::BreakerState;
use crate::upstream::limits::Limit;

/// The rolling window of a service without a circuit breaker: Hystrix's default
/// `metrics.rollingStats.timeInMilliseconds`.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// What one service had counted at one reading (cumulative since weir started).
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    tally: Tally,
    latency: HistogramCounts,
    /// Requests in flight at the reading.
    concurrent: u64,
}

/// One reading of every service.
#[derive(Debug)]
struct Reading {
    at: Instant,
    services: HashMap<String, Totals>,
}

/// Reads weir's state and keeps the readings of the last window.
#[derive(Debug)]
pub struct Sampler {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    /// `weir_http_requests_total` alone, so that a reading renders only that family.
    requests: Registry,
    history: VecDeque<Reading>,
}

impl Sampler {
    /// A sampler of the services in `snapshot` (whichever configuration is current at each
    /// reading) and the counters in `metrics`.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, metrics: Arc<Metrics>) -> Self {
        let mut requests = Registry::default();
        requests.register("weir_http_requests", "", metrics.requests.family());
        Sampler {
            snapshot,
            metrics,
            requests,
            history: VecDeque::new(),
        }
    }

    /// Reads every service now (`unix_millis` is the wall clock, for `currentTime`) and
    /// returns their commands, in configuration order. Until a window has passed since
    /// the first reading, the rolling counts cover the time since the first reading.
    pub fn sample(&mut self, now: Instant, unix_millis: u64) -> Vec<Command> {
        let snapshot = self.snapshot.load_full();
        let config = &snapshot.config;
        let mut services = tallies(&self.requests);
        for (service, latency) in self.metrics.request_duration.counts_by_service() {
            services.entry(service).or_default().latency = latency;
        }
        for (name, service) in &snapshot.services {
            services.entry(name.clone()).or_default().concurrent =
                u64::from(service.limits.used(Limit::MaxRequests));
        }
        self.history.push_back(Reading { at: now, services });
        let longest = config
            .services
            .iter()
            .map(|s| window(s.circuit_breaker.as_ref()))
            .max()
            .unwrap_or(DEFAULT_WINDOW);
        self.forget_older_than(now, longest);

        let group = match config.node.service.as_str() {
            "" => "weir",
            s => s,
        };
        let mut commands = Vec::with_capacity(config.services.len());
        for cfg in &config.services {
            let Some(service) = snapshot.services.get(&cfg.name) else {
                continue;
            };
            let window = window(cfg.circuit_breaker.as_ref());
            let (base, recent) = self.since(now, window);
            let at = |r: &Reading| r.services.get(&cfg.name).copied().unwrap_or_default();
            let current = self.history.back().map(at).unwrap_or_default();
            let base = base.map(at).unwrap_or_default();
            let breaker = cfg
                .circuit_breaker
                .as_ref()
                .zip(service.breaker.as_ref())
                .map(|(settings, breaker)| {
                    let (window_failures, window_requests) = breaker.window_counts();
                    Breaker {
                        open: breaker.state() != BreakerState::Closed,
                        request_volume_threshold: settings.request_volume_threshold,
                        error_threshold_percent: settings.error_threshold_percent,
                        sleep_window: settings.sleep_window,
                        window_failures,
                        window_requests,
                    }
                });
            commands.push(Command {
                name: cfg.name.clone(),
                group: group.to_string(),
                current_time_millis: unix_millis,
                breaker,
                tally: current.tally.since(&base.tally),
                concurrent: current.concurrent,
                max_concurrent: recent
                    .map(|r| at(r).concurrent)
                    .fold(current.concurrent, u64::max),
                latency: current.latency.since(&base.latency),
                window,
                max_requests: cfg.limits.max_requests,
                timeout: longest_route_timeout(&snapshot, &cfg.name),
            });
        }
        commands
    }

    /// The reading a window of `window` starts from (the newest one at least `window`
    /// old, else the oldest), and the readings after it.
    fn since(
        &self,
        now: Instant,
        window: Duration,
    ) -> (Option<&Reading>, impl Iterator<Item = &Reading>) {
        let start = now.checked_sub(window);
        let newer = self
            .history
            .iter()
            .position(|r| start.is_none_or(|s| r.at > s))
            .unwrap_or(self.history.len());
        let base = newer.saturating_sub(1);
        (self.history.get(base), self.history.iter().skip(base + 1))
    }

    /// Drops readings no window needs: all but the newest one at least `longest` old.
    fn forget_older_than(&mut self, now: Instant, longest: Duration) {
        let Some(start) = now.checked_sub(longest) else {
            return;
        };
        while self.history.len() > 1 && self.history[1].at <= start {
            self.history.pop_front();
        }
    }
}

/// A service's rolling window: its breaker's, or Hystrix's default.
fn window(breaker: Option<&crate::config::CircuitBreaker>) -> Duration {
    breaker.map_or(DEFAULT_WINDOW, |b| b.window)
}

/// The longest `timeout` of the routes that send to `service`; zero when none has one.
fn longest_route_timeout(snapshot: &Snapshot, service: &str) -> Duration {
    snapshot
        .config
        .listeners
        .iter()
        .flat_map(|l| &l.routes)
        .filter(|r| r.backends.iter().any(|b| b.service == service))
        .filter_map(|r| r.timeout)
        .max()
        .unwrap_or_default()
}

/// `weir_http_requests_total` by service, sorted into Hystrix's kinds of outcome.
fn tallies(requests: &Registry) -> HashMap<String, Totals> {
    let mut text = String::new();
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut text, requests);
    let mut out: HashMap<String, Totals> = HashMap::new();
    for sample in prometheus_text::parse(&text) {
        let service = sample.label("service");
        if service.is_empty() || service == NONE || sample.name != "weir_http_requests_total" {
            continue;
        }
        let n = sample.value.max(0.0) as u64;
        let mut one = Tally::default();
        let slot = match classify(sample.label("code"), sample.label("error")) {
            Some(Outcome::Success) => &mut one.success,
            Some(Outcome::Failure) => &mut one.failure,
            Some(Outcome::Timeout) => &mut one.timeout,
            Some(Outcome::ShortCircuited) => &mut one.short_circuited,
            Some(Outcome::SemaphoreRejected) => &mut one.semaphore_rejected,
            Some(Outcome::BadRequest) => &mut one.bad_requests,
            None => continue,
        };
        *slot = n;
        match out.get_mut(service) {
            Some(totals) => totals.tally.add(&one),
            None => {
                out.insert(
                    service.to_string(),
                    Totals {
                        tally: one,
                        ..Totals::default()
                    },
                );
            }
        }
    }
    out
}

/// Hystrix's kinds of outcome that weir has a counterpart for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Timeout,
    ShortCircuited,
    SemaphoreRejected,
    BadRequest,
}

/// The kind of a `weir_http_requests_total` series, from its `code` and `error` labels.
/// `None` for what Hystrix would not have counted: a client that left (499), an injected
/// fault, a request refused for its identity or for lack of a route.
fn classify(code: &str, error: &str) -> Option<Outcome> {
    match error {
        "" | NONE => match code.parse::<u16>().ok()? {
            499 => None,
            500.. => Some(Outcome::Failure),
            _ => Some(Outcome::Success),
        },
        "connect_failed" | "upstream_reset" | "no_healthy_endpoint" => Some(Outcome::Failure),
        "timeout" => Some(Outcome::Timeout),
        "circuit_open" => Some(Outcome::ShortCircuited),
        "overflow" => Some(Outcome::SemaphoreRejected),
        "bad_request" | "client_timeout" | "header_too_large" | "uri_too_long" => {
            Some(Outcome::BadRequest)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::telemetry::metrics::RequestCounters;
    use crate::upstream::outcome::Outcome as Attempt;

    const CONFIG: &str = "version: 1\nnode: { service: productpage }\nlisteners:\n  - name: out\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        timeout: 3s\n        backends: [{ service: guarded }, { service: plain }]\nservices:\n  - name: guarded\n    endpoints: [\"127.0.0.1:2\"]\n    circuit_breaker: { window: 4s, buckets: 4, request_volume_threshold: 4, error_threshold_percent: 50, sleep_window: 30s, half_open_requests: 1 }\n  - name: plain\n    endpoints: [\"127.0.0.1:3\"]\n";

    fn sampler() -> (Sampler, Arc<Snapshot>, Arc<Metrics>) {
        let config = crate::config::load_str("t.yaml", CONFIG)
            .expect("valid")
            .config;
        let metrics = Metrics::new();
        let snapshot = Snapshot::build(config, &metrics, None).expect("builds");
        let shared = Arc::new(ArcSwap::new(snapshot.clone()));
        (Sampler::new(shared, metrics.clone()), snapshot, metrics)
    }

    fn counters(metrics: &Metrics, service: &str) -> RequestCounters {
        RequestCounters::new(metrics, "out", "r", service, "127.0.0.1:2")
    }

    #[test]
    fn outcomes_sort_as_hystrix_counts_them() {
        let cases = [
            ("200", "", Some(Outcome::Success)),
            ("200", NONE, Some(Outcome::Success)),
            ("502", NONE, Some(Outcome::Failure)),
            ("404", "", Some(Outcome::Success)),
            ("503", "", Some(Outcome::Failure)),
            ("499", "", None),
            ("502", "connect_failed", Some(Outcome::Failure)),
            ("502", "upstream_reset", Some(Outcome::Failure)),
            ("503", "no_healthy_endpoint", Some(Outcome::Failure)),
            ("504", "timeout", Some(Outcome::Timeout)),
            ("503", "circuit_open", Some(Outcome::ShortCircuited)),
            ("503", "overflow", Some(Outcome::SemaphoreRejected)),
            ("400", "bad_request", Some(Outcome::BadRequest)),
            ("408", "client_timeout", Some(Outcome::BadRequest)),
            ("503", "fault_abort", None),
            ("403", "identity_denied", None),
            ("404", "no_route", None),
            ("x", "", None),
        ];
        for (code, error, want) in cases {
            assert_eq!(classify(code, error), want, "{code} {error}");
        }
        // Every error code weir has is decided on purpose.
        for code in ErrorCode::ALL {
            let listed = cases.iter().any(|(_, e, _)| *e == code.as_str())
                || ["header_too_large", "uri_too_long"].contains(&code.as_str());
            assert!(listed, "{} is not in the table", code.as_str());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rolling_counts_cover_the_window_and_then_roll_out() {
        let (mut sampler, snapshot, metrics) = sampler();
        let guarded = counters(&metrics, "guarded");
        let plain = counters(&metrics, "plain");
        // Counted before the first reading: not part of any window the stream shows.
        plain.upstream(200);
        let first = sampler.sample(Instant::now(), 1);
        assert_eq!(first.len(), 2);
        assert_eq!(first[1].tally, Tally::default());

        for _ in 0..3 {
            guarded.upstream(200);
            guarded.upstream(500);
        }
        guarded.proxy_error(ErrorCode::CircuitOpen, 503);
        guarded.proxy_error(ErrorCode::Timeout, 504);
        guarded.proxy_error(ErrorCode::Overflow, 503);
        plain.upstream(204);
        tokio::time::advance(Duration::from_secs(1)).await;
        let now = sampler.sample(Instant::now(), 2);
        assert_eq!(
            now[0].tally,
            Tally {
                success: 3,
                failure: 3,
                timeout: 1,
                short_circuited: 1,
                semaphore_rejected: 1,
                bad_requests: 0,
            }
        );
        assert_eq!(now[1].tally.success, 1);
        assert_eq!(
            (now[0].group.as_str(), now[0].current_time_millis),
            ("productpage", 2)
        );
        assert_eq!(now[0].timeout, Duration::from_secs(3));
        assert_eq!(now[0].window, Duration::from_secs(4));
        assert_eq!(now[1].window, DEFAULT_WINDOW);
        assert!(now[1].breaker.is_none());

        // Readings every 500 ms: after 4 s the guarded service's window holds nothing new;
        // the plain service's 10 s window still holds its request.
        for _ in 0..8 {
            tokio::time::advance(Duration::from_millis(500)).await;
            sampler.sample(Instant::now(), 3);
        }
        let later = sampler.sample(Instant::now(), 4);
        assert_eq!(later[0].tally, Tally::default());
        assert_eq!(later[1].tally.success, 1);
        assert!(sampler.history.len() <= 22, "{}", sampler.history.len());
        drop(snapshot);
    }

    #[tokio::test(start_paused = true)]
    async fn health_counts_and_state_come_from_the_breaker() {
        let (mut sampler, snapshot, _metrics) = sampler();
        let breaker = snapshot.services["guarded"]
            .breaker
            .as_ref()
            .expect("a breaker");
        for outcome in [200, 500, 500, 500] {
            breaker
                .admit()
                .expect("closed")
                .record(Attempt::Response(outcome));
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        let now = sampler.sample(Instant::now(), 1);
        let b = now[0].breaker.expect("a breaker");
        assert!(b.open);
        assert_eq!((b.window_failures, b.window_requests), (3, 4));
        assert_eq!(now[0].health(), (3, 4));
        assert_eq!(b.request_volume_threshold, 4);
        assert_eq!(b.sleep_window, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn latency_and_concurrency_are_the_services_own() {
        let (mut sampler, snapshot, metrics) = sampler();
        let duration = |service: &str| {
            metrics.request_duration.get_or_create_owned(
                &crate::telemetry::histogram::RouteLabels {
                    listener: "out".into(),
                    route: "r".into(),
                    service: service.into(),
                },
            )
        };
        sampler.sample(Instant::now(), 1);
        duration("guarded").observe(Duration::from_millis(20));
        duration("plain").observe(Duration::from_secs(2));
        let held = snapshot.services["plain"]
            .limits
            .acquire(Limit::MaxRequests)
            .expect("room");
        let now = sampler.sample(Instant::now(), 2);
        assert_eq!(now[0].latency.count(), 1);
        assert_eq!(now[0].latency.sum_nanos, 20_000_000);
        assert_eq!((now[1].concurrent, now[1].max_concurrent), (1, 1));
        drop(held);
        let after = sampler.sample(Instant::now(), 3);
        assert_eq!((after[1].concurrent, after[1].max_concurrent), (0, 1));
    }
}
