//! One `HystrixCommand` event of `/hystrix.stream`: a service's numbers in the field set the
//! Hystrix Dashboard and Turbine read (the dashboard refuses an event that lacks one of the
//! fields it checks, so every one is written, 0 or false where weir has no such thing).

use std::time::Duration;

use serde_json::{Map, Value};

use crate::telemetry::histogram::{HistogramCounts, BUCKETS_SECONDS};

/// Requests of one service over the rolling window, by how Hystrix would have counted them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Answered by the service below 500 (a 4xx is the caller's, as weir's breaker counts).
    pub success: u64,
    /// Answered 5xx, or failed to connect, reset, or found no healthy endpoint.
    pub failure: u64,
    /// Timed out (`weir-error: timeout`).
    pub timeout: u64,
    /// Refused by the open circuit breaker (`circuit_open`).
    pub short_circuited: u64,
    /// Refused by a connection or request limit (`overflow`): weir's limits are semaphores.
    pub semaphore_rejected: u64,
    /// The client's own faults (`bad_request`, `client_timeout`, `header_too_large`,
    /// `uri_too_long`).
    pub bad_requests: u64,
}

impl Tally {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Tally) {
        self.success += other.success;
        self.failure += other.failure;
        self.timeout += other.timeout;
        self.short_circuited += other.short_circuited;
        self.semaphore_rejected += other.semaphore_rejected;
        self.bad_requests += other.bad_requests;
    }

    /// What was counted since `earlier` (counters only grow; a race reads as 0).
    pub fn since(&self, earlier: &Tally) -> Tally {
        Tally {
            success: self.success.saturating_sub(earlier.success),
            failure: self.failure.saturating_sub(earlier.failure),
            timeout: self.timeout.saturating_sub(earlier.timeout),
            short_circuited: self.short_circuited.saturating_sub(earlier.short_circuited),
            semaphore_rejected: self
                .semaphore_rejected
                .saturating_sub(earlier.semaphore_rejected),
            bad_requests: self.bad_requests.saturating_sub(earlier.bad_requests),
        }
    }
}

/// The circuit breaker of a service, as the event shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Breaker {
    /// Open or half-open: requests beyond the trials are short-circuited (Hystrix's
    /// `isOpen()` is true while half-open too).
    pub open: bool,
    /// `request_volume_threshold`.
    pub request_volume_threshold: u32,
    /// `error_threshold_percent`.
    pub error_threshold_percent: f64,
    /// `sleep_window`.
    pub sleep_window: Duration,
    /// Failures in the breaker's rolling window now.
    pub window_failures: u64,
    /// Requests in the breaker's rolling window now.
    pub window_requests: u64,
}

/// Everything one event reports about one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The service name (Hystrix's command key).
    pub name: String,
    /// The command group: the workload weir speaks for (`node.service`, else `weir`).
    pub group: String,
    /// Unix time of the reading, in milliseconds.
    pub current_time_millis: u64,
    /// The circuit breaker, when the service has one.
    pub breaker: Option<Breaker>,
    /// Requests over the rolling window.
    pub tally: Tally,
    /// Requests in flight to the service now (its `max_requests` usage).
    pub concurrent: u64,
    /// The most requests in flight seen at a reading within the window.
    pub max_concurrent: u64,
    /// Latency (`weir_http_request_duration_seconds` of the service) over the window.
    pub latency: HistogramCounts,
    /// The rolling window: the breaker's `window`, or Hystrix's default 10 s.
    pub window: Duration,
    /// `limits.max_requests`: the semaphore's size.
    pub max_requests: u32,
    /// The longest route `timeout` in front of the service (0: none configured).
    pub timeout: Duration,
}

/// The percentiles Hystrix reports, as its JSON keys.
const PERCENTILES: [(&str, f64); 9] = [
    ("0", 0.0),
    ("25", 25.0),
    ("50", 50.0),
    ("75", 75.0),
    ("90", 90.0),
    ("95", 95.0),
    ("99", 99.0),
    ("99.5", 99.5),
    ("100", 100.0),
];

/// Rolling counts weir has no counterpart for (no fallbacks, caches, collapsers or thread
/// pools): always 0.
const NEVER_COUNTED: [&str; 10] = [
    "rollingCountCollapsedRequests",
    "rollingCountEmit",
    "rollingCountExceptionsThrown",
    "rollingCountFallbackEmit",
    "rollingCountFallbackFailure",
    "rollingCountFallbackMissing",
    "rollingCountFallbackRejection",
    "rollingCountFallbackSuccess",
    "rollingCountResponsesFromCache",
    "rollingCountThreadPoolRejected",
];

impl Command {
    /// Hystrix's health counts `(errors, requests)`: the breaker's own window when there is
    /// a breaker (the numbers that open it), else the rolling counts Hystrix would judge
    /// (failures, timeouts and rejections out of those plus successes).
    pub fn health(&self) -> (u64, u64) {
        match &self.breaker {
            Some(b) => (b.window_failures, b.window_requests),
            None => {
                let t = &self.tally;
                let errors = t.failure + t.timeout + t.semaphore_rejected;
                (errors, errors + t.success)
            }
        }
    }

    /// The event's JSON object.
    pub fn to_json(&self) -> Value {
        let (errors, requests) = self.health();
        let t = &self.tally;
        let mut m = Map::new();
        let mut put = |key: &str, value: Value| {
            m.insert(key.to_string(), value);
        };
        put("type", "HystrixCommand".into());
        put("name", self.name.as_str().into());
        put("group", self.group.as_str().into());
        put("threadPool", self.group.as_str().into());
        put("currentTime", self.current_time_millis.into());
        put(
            "isCircuitBreakerOpen",
            self.breaker.is_some_and(|b| b.open).into(),
        );
        put("errorPercentage", error_percentage(errors, requests).into());
        put("errorCount", errors.into());
        put("requestCount", requests.into());
        put("rollingCountSuccess", t.success.into());
        put("rollingCountFailure", t.failure.into());
        put("rollingCountTimeout", t.timeout.into());
        put("rollingCountShortCircuited", t.short_circuited.into());
        put("rollingCountSemaphoreRejected", t.semaphore_rejected.into());
        put("rollingCountBadRequests", t.bad_requests.into());
        for key in NEVER_COUNTED {
            put(key, 0.into());
        }
        put("currentConcurrentExecutionCount", self.concurrent.into());
        put(
            "rollingMaxConcurrentExecutionCount",
            self.max_concurrent.into(),
        );
        // weir times the whole exchange only: execution and total are the same numbers.
        let mean = mean_millis(&self.latency);
        let percentiles = percentile_map(&self.latency);
        put("latencyExecute_mean", mean.into());
        put("latencyExecute", percentiles.clone());
        put("latencyTotal_mean", mean.into());
        put("latencyTotal", percentiles);
        let b = self.breaker;
        put("propertyValue_circuitBreakerEnabled", b.is_some().into());
        put(
            "propertyValue_circuitBreakerRequestVolumeThreshold",
            b.map_or(0, |b| b.request_volume_threshold).into(),
        );
        put(
            "propertyValue_circuitBreakerErrorThresholdPercentage",
            whole_or_fraction(b.map_or(0.0, |b| b.error_threshold_percent)),
        );
        put(
            "propertyValue_circuitBreakerSleepWindowInMilliseconds",
            b.map_or(0, |b| millis(b.sleep_window)).into(),
        );
        put("propertyValue_circuitBreakerForceOpen", false.into());
        put("propertyValue_circuitBreakerForceClosed", false.into());
        put(
            "propertyValue_executionIsolationStrategy",
            "SEMAPHORE".into(),
        );
        put(
            "propertyValue_executionIsolationSemaphoreMaxConcurrentRequests",
            self.max_requests.into(),
        );
        put(
            "propertyValue_executionTimeoutInMilliseconds",
            millis(self.timeout).into(),
        );
        put(
            "propertyValue_executionIsolationThreadTimeoutInMilliseconds",
            millis(self.timeout).into(),
        );
        // A timed-out upstream request is abandoned, as an interrupted Hystrix thread.
        put(
            "propertyValue_executionIsolationThreadInterruptOnTimeout",
            true.into(),
        );
        put(
            "propertyValue_fallbackIsolationSemaphoreMaxConcurrentRequests",
            0.into(),
        );
        put(
            "propertyValue_metricsRollingStatisticalWindowInMilliseconds",
            millis(self.window).into(),
        );
        put("propertyValue_requestCacheEnabled", false.into());
        put("propertyValue_requestLogEnabled", false.into());
        put("reportingHosts", 1.into());
        Value::Object(m)
    }
}

/// Writes one server-sent event per command (`data: {json}\n\n`), or a `: ping` comment
/// when there is none, so a client (and any proxy between) sees the stream alive.
pub fn batch(commands: &[Command]) -> Vec<u8> {
    if commands.is_empty() {
        return b": ping\n\n".to_vec();
    }
    let mut out = Vec::with_capacity(commands.len() * 2048);
    for c in commands {
        out.extend_from_slice(b"data: ");
        // Serializing a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &c.to_json());
        out.extend_from_slice(b"\n\n");
    }
    out
}

/// Hystrix's error percentage: whole percent, rounded down, 0 without requests.
pub fn error_percentage(errors: u64, requests: u64) -> u64 {
    match requests {
        0 => 0,
        n => errors.min(n).saturating_mul(100) / n,
    }
}

/// The mean of the observations in whole milliseconds (rounded), 0 without any.
pub fn mean_millis(latency: &HistogramCounts) -> u64 {
    match latency.count() {
        0 => 0,
        n => (latency.sum_nanos as f64 / n as f64 / 1e6).round() as u64,
    }
}

/// Hystrix's percentile map, in whole milliseconds.
fn percentile_map(latency: &HistogramCounts) -> Value {
    let mut m = Map::new();
    for (key, p) in PERCENTILES {
        m.insert(key.to_string(), percentile_millis(latency, p).into());
    }
    Value::Object(m)
}

/// The `p`th percentile in whole milliseconds (rounded), estimated from the histogram's
/// buckets as Prometheus's `histogram_quantile` does: find the bucket that holds the rank,
/// and interpolate linearly between its bounds. The `+Inf` bucket reports the last finite
/// bound (30 s); 0 without observations.
pub fn percentile_millis(latency: &HistogramCounts, p: f64) -> u64 {
    let total = latency.count();
    if total == 0 {
        return 0;
    }
    let rank = p.clamp(0.0, 100.0) / 100.0 * total as f64;
    let mut below = 0u64;
    for (i, &n) in latency.buckets.iter().enumerate() {
        if n == 0 {
            continue;
        }
        if (below + n) as f64 >= rank {
            let last = BUCKETS_SECONDS.len() - 1;
            let lower = if i == 0 { 0.0 } else { BUCKETS_SECONDS[i - 1] };
            let upper = BUCKETS_SECONDS[i.min(last)];
            let lower = lower.min(upper);
            let share = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return ((lower + (upper - lower) * share) * 1000.0).round() as u64;
        }
        below += n;
    }
    (BUCKETS_SECONDS[BUCKETS_SECONDS.len() - 1] * 1000.0) as u64
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A whole number as an integer (`50`, as Hystrix writes it), else as a fraction (`33.3`).
fn whole_or_fraction(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        (x as i64).into()
    } else {
        x.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field the Hystrix Dashboard checks before it draws a circuit (its
    /// `validateData`), plus those Turbine sums.
    const DASHBOARD_FIELDS: [&str; 40] = [
        "reportingHosts",
        "type",
        "name",
        "group",
        "currentTime",
        "isCircuitBreakerOpen",
        "errorPercentage",
        "errorCount",
        "requestCount",
        "rollingCountCollapsedRequests",
        "rollingCountExceptionsThrown",
        "rollingCountFailure",
        "rollingCountFallbackFailure",
        "rollingCountFallbackRejection",
        "rollingCountFallbackSuccess",
        "rollingCountResponsesFromCache",
        "rollingCountSemaphoreRejected",
        "rollingCountShortCircuited",
        "rollingCountSuccess",
        "rollingCountThreadPoolRejected",
        "rollingCountTimeout",
        "rollingCountBadRequests",
        "currentConcurrentExecutionCount",
        "latencyExecute_mean",
        "latencyExecute",
        "latencyTotal_mean",
        "latencyTotal",
        "propertyValue_circuitBreakerRequestVolumeThreshold",
        "propertyValue_circuitBreakerSleepWindowInMilliseconds",
        "propertyValue_circuitBreakerErrorThresholdPercentage",
        "propertyValue_circuitBreakerForceOpen",
        "propertyValue_executionIsolationStrategy",
        "propertyValue_executionIsolationThreadTimeoutInMilliseconds",
        "propertyValue_executionIsolationThreadInterruptOnTimeout",
        "propertyValue_executionIsolationSemaphoreMaxConcurrentRequests",
        "propertyValue_fallbackIsolationSemaphoreMaxConcurrentRequests",
        "propertyValue_requestCacheEnabled",
        "propertyValue_requestLogEnabled",
        "propertyValue_metricsRollingStatisticalWindowInMilliseconds",
        "propertyValue_circuitBreakerEnabled",
    ];

    fn latency(observations: &[(usize, u64)], sum_millis: u64) -> HistogramCounts {
        let mut h = HistogramCounts::default();
        for &(bucket, n) in observations {
            h.buckets[bucket] += n;
        }
        h.sum_nanos = sum_millis * 1_000_000;
        h
    }

    fn command(breaker: Option<Breaker>) -> Command {
        Command {
            name: "reviews \"v1\"".into(),
            group: "productpage".into(),
            current_time_millis: 1_700_000_000_123,
            breaker,
            tally: Tally {
                success: 70,
                failure: 20,
                timeout: 5,
                short_circuited: 40,
                semaphore_rejected: 5,
                bad_requests: 1,
            },
            concurrent: 3,
            max_concurrent: 9,
            latency: latency(&[(5, 50), (7, 50)], 5_000),
            window: Duration::from_secs(10),
            max_requests: 1024,
            timeout: Duration::from_secs(3),
        }
    }

    const OPEN: Breaker = Breaker {
        open: true,
        request_volume_threshold: 20,
        error_threshold_percent: 50.0,
        sleep_window: Duration::from_secs(5),
        window_failures: 11,
        window_requests: 20,
    };

    /// Parses a batch back as an `EventSource` would: `data:` lines, blank-line separated.
    fn events(batch: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(batch).expect("utf-8");
        assert!(text.ends_with("\n\n"), "{text:?}");
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| {
                let json = e.strip_prefix("data: ").expect("a data line");
                assert!(!json.contains('\n'), "one line per event");
                serde_json::from_str(json).expect("valid JSON")
            })
            .collect()
    }

    #[test]
    fn an_event_has_every_field_the_dashboard_checks() {
        for breaker in [Some(OPEN), None] {
            let batch = batch(&[command(breaker), command(breaker)]);
            let parsed = events(&batch);
            assert_eq!(parsed.len(), 2);
            for field in DASHBOARD_FIELDS {
                assert!(parsed[0].get(field).is_some(), "{field} missing");
            }
            assert_eq!(parsed[0]["type"], "HystrixCommand");
            assert_eq!(parsed[0]["name"], "reviews \"v1\"", "escaped and back");
            assert_eq!(parsed[0]["reportingHosts"], 1);
            assert_eq!(
                parsed[0]["propertyValue_executionIsolationStrategy"],
                "SEMAPHORE"
            );
            let keys: Vec<&String> = parsed[0]["latencyTotal"]
                .as_object()
                .expect("a map")
                .keys()
                .collect();
            assert_eq!(keys.len(), 9);
            for (key, _) in PERCENTILES {
                assert!(parsed[0]["latencyExecute"].get(key).is_some(), "{key}");
            }
        }
    }

    #[test]
    fn the_breaker_window_gives_the_health_counts_when_there_is_a_breaker() {
        let e = command(Some(OPEN)).to_json();
        assert_eq!(e["isCircuitBreakerOpen"], true);
        assert_eq!(
            (&e["errorCount"], &e["requestCount"], &e["errorPercentage"]),
            (&11.into(), &20.into(), &55.into())
        );
        assert_eq!(e["propertyValue_circuitBreakerEnabled"], true);
        assert_eq!(e["propertyValue_circuitBreakerRequestVolumeThreshold"], 20);
        assert_eq!(
            e["propertyValue_circuitBreakerErrorThresholdPercentage"],
            50
        );
        assert_eq!(
            e["propertyValue_circuitBreakerSleepWindowInMilliseconds"],
            5000
        );
        assert_eq!(
            e["propertyValue_metricsRollingStatisticalWindowInMilliseconds"],
            10_000
        );
        assert_eq!(
            (
                &e["rollingCountSuccess"],
                &e["rollingCountFailure"],
                &e["rollingCountTimeout"],
                &e["rollingCountShortCircuited"],
                &e["rollingCountSemaphoreRejected"],
                &e["rollingCountBadRequests"],
                &e["rollingCountThreadPoolRejected"],
                &e["rollingCountFallbackSuccess"],
            ),
            (
                &70.into(),
                &20.into(),
                &5.into(),
                &40.into(),
                &5.into(),
                &1.into(),
                &0.into(),
                &0.into()
            )
        );
        assert_eq!(e["currentConcurrentExecutionCount"], 3);
        assert_eq!(e["rollingMaxConcurrentExecutionCount"], 9);
        assert_eq!(e["propertyValue_executionTimeoutInMilliseconds"], 3000);
    }

    #[test]
    fn without_a_breaker_the_health_counts_follow_hystrix() {
        let e = command(None).to_json();
        assert_eq!(e["isCircuitBreakerOpen"], false);
        assert_eq!(e["propertyValue_circuitBreakerEnabled"], false);
        assert_eq!(e["propertyValue_circuitBreakerRequestVolumeThreshold"], 0);
        // Failures, timeouts and rejections (30) out of those and successes (100);
        // short-circuits and bad requests stay out, as in Hystrix.
        assert_eq!(
            (&e["errorCount"], &e["requestCount"], &e["errorPercentage"]),
            (&30.into(), &100.into(), &30.into())
        );
    }

    #[test]
    fn error_percentage_is_whole_percent_rounded_down() {
        assert_eq!(error_percentage(0, 0), 0);
        assert_eq!(error_percentage(1, 3), 33);
        assert_eq!(error_percentage(2, 3), 66);
        assert_eq!(error_percentage(3, 3), 100);
        assert_eq!(error_percentage(5, 3), 100, "never above 100");
        assert_eq!(whole_or_fraction(33.5), Value::from(33.5));
    }

    #[test]
    fn percentiles_interpolate_within_the_bucket_that_holds_the_rank() {
        assert_eq!(percentile_millis(&HistogramCounts::default(), 50.0), 0);
        // 100 observations in (10 ms, 25 ms]: the 60th is 60% of the way, 19 ms.
        let one_bucket = latency(&[(5, 100)], 1_750);
        assert_eq!(percentile_millis(&one_bucket, 0.0), 10);
        assert_eq!(percentile_millis(&one_bucket, 60.0), 19);
        assert_eq!(percentile_millis(&one_bucket, 80.0), 22);
        assert_eq!(percentile_millis(&one_bucket, 100.0), 25);
        assert_eq!(mean_millis(&one_bucket), 18, "17.5 rounds up");
        // Half in (10, 25], half in (50, 100]: the 75th is half way through the second.
        let two = latency(&[(5, 50), (7, 50)], 5_000);
        assert_eq!(percentile_millis(&two, 20.0), 16);
        assert_eq!(percentile_millis(&two, 50.0), 25);
        assert_eq!(percentile_millis(&two, 75.0), 75);
        assert_eq!(percentile_millis(&two, 99.0), 99);
        assert_eq!(percentile_millis(&two, 100.0), 100);
        assert_eq!(mean_millis(&two), 50);
        // The first bucket starts at 0; +Inf reports the last finite bound.
        let edges = latency(&[(0, 1), (16, 1)], 60_000);
        assert_eq!(percentile_millis(&edges, 0.0), 0);
        assert_eq!(percentile_millis(&edges, 100.0), 30_000);
    }

    #[test]
    fn no_service_sends_a_ping_comment() {
        assert_eq!(batch(&[]), b": ping\n\n");
    }
}
