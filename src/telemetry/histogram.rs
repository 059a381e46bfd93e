//! A lock-free latency histogram for the request path, with trace-id exemplars, and the
//! family that renders it.
//!
//! prometheus-client's `Histogram` takes a mutex on every observation; a proxy observes on
//! every request, so weir keeps per-bucket atomics instead and sums them only on scrape.
//! prometheus-client also offers no way to attach exemplars to a histogram it does not own,
//! so this family writes its own OpenMetrics text (the format is small and fixed).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::trace::{SpanId, TraceId};

/// Upper bounds of the buckets, in seconds (Envoy-like spread from 0.5 ms to 30 s).
pub const BUCKETS_SECONDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0,
    30.0,
];

const BUCKETS_NANOS: [u64; 16] = {
    let mut out = [0u64; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (BUCKETS_SECONDS[i] * 1e9) as u64;
        i += 1;
    }
    out
};

/// The bucket bounds as OpenMetrics writes them (`le="1.0"`, never `le="1"`).
const BUCKET_LABELS: [&str; 17] = [
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0",
    "2.5", "5.0", "10.0", "15.0", "30.0", "+Inf",
];

/// Labels of `weir_http_request_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct RouteLabels {
    /// Listener name.
    pub listener: String,
    /// Route name (empty when none matched).
    pub route: String,
    /// Service name (empty when none was chosen).
    pub service: String,
}

/// What a histogram has counted so far: per-bucket counts (not cumulative; the last is
/// `+Inf`) and the sum. Readers that need a rate or a percentile over a recent stretch
/// (`/hystrix.stream`) subtract two of these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramCounts {
    /// Observations per bucket of [`BUCKETS_SECONDS`], then `+Inf`.
    pub buckets: [u64; 17],
    /// The sum of every observation, in nanoseconds.
    pub sum_nanos: u64,
}

impl HistogramCounts {
    /// Adds `other`'s counts to these (series of one service over several routes).
    pub fn add(&mut self, other: &HistogramCounts) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine = mine.saturating_add(theirs);
        }
        self.sum_nanos = self.sum_nanos.saturating_add(other.sum_nanos);
    }

    /// What was counted since `earlier` (counts never go down; a stray race reads as 0).
    pub fn since(&self, earlier: &HistogramCounts) -> HistogramCounts {
        let mut out = HistogramCounts::default();
        for (i, slot) in out.buckets.iter_mut().enumerate() {
            *slot = self.buckets[i].saturating_sub(earlier.buckets[i]);
        }
        out.sum_nanos = self.sum_nanos.saturating_sub(earlier.sum_nanos);
        out
    }

    /// Observations counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// The request a bucket's latest sampled observation belongs to.
#[derive(Debug, Clone, Copy)]
struct Exemplar {
    trace_id: TraceId,
    span_id: SpanId,
    nanos: u64,
    at: SystemTime,
}

/// A histogram of durations; clones share the same buckets.
#[derive(Debug, Clone, Default)]
pub struct LatencyHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Non-cumulative counts; the last slot is `+Inf`.
    buckets: [AtomicU64; 17],
    sum_nanos: AtomicU64,
    /// The latest traced observation of each bucket. Only sampled requests touch it, and
    /// only with `try_lock`: a request never waits for an exemplar.
    exemplars: Mutex<[Option<Exemplar>; 17]>,
}

impl LatencyHistogram {
    /// Records one duration: two relaxed atomic adds, no lock.
    pub fn observe(&self, d: Duration) {
        self.record(d);
    }

    /// Records one duration of a traced request that ended `at`, and makes it its bucket's
    /// exemplar (unless a scrape or another request holds the exemplars this instant: then
    /// it is skipped).
    pub fn observe_traced(&self, d: Duration, trace_id: TraceId, span_id: SpanId, at: SystemTime) {
        let (idx, nanos) = self.record(d);
        if let Ok(mut exemplars) = self.inner.exemplars.try_lock() {
            exemplars[idx] = Some(Exemplar {
                trace_id,
                span_id,
                nanos,
                at,
            });
        }
    }

    fn record(&self, d: Duration) -> (usize, u64) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let idx = BUCKETS_NANOS.partition_point(|&b| b < nanos);
        self.inner.buckets[idx].fetch_add(1, Relaxed);
        self.inner.sum_nanos.fetch_add(nanos, Relaxed);
        (idx, nanos)
    }

    /// What this series has counted so far (relaxed loads: a concurrent observation may
    /// show in its bucket and not yet in the sum, which a reader of rates can live with).
    pub fn counts(&self) -> HistogramCounts {
        HistogramCounts {
            buckets: std::array::from_fn(|i| self.inner.buckets[i].load(Relaxed)),
            sum_nanos: self.inner.sum_nanos.load(Relaxed),
        }
    }

    /// Writes this series' OpenMetrics samples (`_bucket` lines with their exemplars, then
    /// `_sum` and `_count`); `labels` is the series' label text without braces.
    fn encode(&self, out: &mut String, name: &str, labels: &str) {
        let exemplars = match self.inner.exemplars.lock() {
            Ok(e) => *e,
            Err(poisoned) => *poisoned.into_inner(),
        };
        let mut cumulative = 0u64;
        for (i, le) in BUCKET_LABELS.iter().enumerate() {
            cumulative += self.inner.buckets[i].load(Relaxed);
            let _ = write!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            if let Some(e) = exemplars[i] {
                let at =
                    e.at.duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default();
                let _ = write!(
                    out,
                    " # {{trace_id=\"{}\",span_id=\"{}\"}} {} {}.{:03}",
                    e.trace_id,
                    e.span_id,
                    e.nanos as f64 / 1e9,
                    at.as_secs(),
                    at.subsec_millis()
                );
            }
            out.push('\n');
        }
        let sum = self.inner.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// `weir_http_request_duration_seconds`: one [`LatencyHistogram`] per (listener, route,
/// service), created when a configuration is built and rendered on scrape.
#[derive(Debug, Default)]
pub struct DurationFamily {
    series: Mutex<Vec<(RouteLabels, LatencyHistogram)>>,
}

/// The family's name, unit and help, as `/metrics` announces them.
const NAME: &str = "weir_http_request_duration_seconds";
const HELP: &str = "Time from request start until the response was fully sent";

impl DurationFamily {
    /// The histogram of `labels`, created on first use (at configuration build, never on
    /// the request path).
    pub fn get_or_create_owned(&self, labels: &RouteLabels) -> LatencyHistogram {
        let mut series = match self.series.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((_, h)) = series.iter().find(|(l, _)| l == labels) {
            return h.clone();
        }
        let h = LatencyHistogram::default();
        series.push((labels.clone(), h.clone()));
        h
    }

    /// Removes the histograms whose labels `keep` refuses (see
    /// [`Tracked::retain`](super::series::Tracked::retain)).
    pub fn retain(&self, keep: impl Fn(&RouteLabels) -> bool) {
        let mut series = match self.series.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        series.retain(|(labels, _)| keep(labels));
    }

    /// The counts of every series, summed by service (series of no service, [`NONE`], are
    /// skipped): one service's latency over all the routes that reach it.
    ///
    /// [`NONE`]: super::series::NONE
    pub fn counts_by_service(&self) -> Vec<(String, HistogramCounts)> {
        let series = match self.series.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out: Vec<(String, HistogramCounts)> = Vec::new();
        let named = |l: &RouteLabels| !l.service.is_empty() && l.service != super::series::NONE;
        for (labels, h) in series.iter().filter(|(l, _)| named(l)) {
            let counts = h.counts();
            match out.iter_mut().find(|(s, _)| *s == labels.service) {
                Some((_, total)) => total.add(&counts),
                None => out.push((labels.service.clone(), counts)),
            }
        }
        out
    }

    /// Appends the family in the OpenMetrics text format (exemplars included).
    pub fn encode(&self, out: &mut String) {
        let series = match self.series.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let _ = writeln!(out, "# HELP {NAME} {HELP}.");
        let _ = writeln!(out, "# TYPE {NAME} histogram");
        let _ = writeln!(out, "# UNIT {NAME} seconds");
        let mut labels = String::new();
        for (l, h) in series.iter() {
            labels.clear();
            for (key, value) in [
                ("listener", &l.listener),
                ("route", &l.route),
                ("service", &l.service),
            ] {
                if !labels.is_empty() {
                    labels.push(',');
                }
                let _ = write!(labels, "{key}=\"");
                escape_label_value(&mut labels, value);
                labels.push('"');
            }
            h.encode(out, NAME, &labels);
        }
    }
}

/// Escapes a label value as the text formats require (`\\`, `\"`, `\n`).
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_bucket_whose_bound_is_not_below_them() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(500)); // exactly on the first bound
        h.observe(Duration::from_micros(501));
        h.observe(Duration::from_secs(100));
        assert_eq!(h.inner.buckets[0].load(Relaxed), 1);
        assert_eq!(h.inner.buckets[1].load(Relaxed), 1);
        assert_eq!(h.inner.buckets[16].load(Relaxed), 1);
        let count: u64 = h.inner.buckets.iter().map(|b| b.load(Relaxed)).sum();
        assert_eq!(count, 3);
    }

    #[test]
    fn counts_sum_by_service_and_subtract() {
        let family = DurationFamily::default();
        let route = |route: &str, service: &str| RouteLabels {
            listener: "out".into(),
            route: route.into(),
            service: service.into(),
        };
        let a = family.get_or_create_owned(&route("r1", "s"));
        let b = family.get_or_create_owned(&route("r2", "s"));
        let other = family.get_or_create_owned(&route("r3", "t"));
        family
            .get_or_create_owned(&route("unmatched", super::super::series::NONE))
            .observe(Duration::from_millis(1));
        a.observe(Duration::from_millis(3));
        let before = family.counts_by_service();
        b.observe(Duration::from_millis(3));
        b.observe(Duration::from_secs(60));
        other.observe(Duration::from_millis(1));
        let after = family.counts_by_service();
        let names: Vec<&str> = after.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(names, ["s", "t"]);
        let s = after[0].1.since(&before[0].1);
        assert_eq!(s.count(), 2);
        assert_eq!((s.buckets[3], s.buckets[16]), (1, 1));
        assert_eq!(s.sum_nanos, 60_003_000_000);
        assert_eq!(after[0].1.count(), 3);
    }

    #[test]
    fn bucket_labels_are_the_bounds() {
        for (label, bound) in BUCKET_LABELS.iter().zip(BUCKETS_SECONDS) {
            assert_eq!(label.parse::<f64>().ok(), Some(bound));
        }
    }

    #[test]
    fn a_traced_observation_is_its_buckets_exemplar_in_openmetrics_text() {
        let family = DurationFamily::default();
        let labels = RouteLabels {
            listener: "out".into(),
            route: "r\"1".into(),
            service: "s".into(),
        };
        let h = family.get_or_create_owned(&labels);
        assert!(
            Arc::ptr_eq(&h.inner, &family.get_or_create_owned(&labels).inner),
            "one series per label set"
        );
        h.observe(Duration::from_millis(3));
        let trace = TraceId([0xab; 16]);
        h.observe_traced(
            Duration::from_millis(7),
            trace,
            SpanId([0x01; 8]),
            SystemTime::now(),
        );
        let mut text = String::new();
        family.encode(&mut text);
        let bucket = text
            .lines()
            .find(|l| l.contains("le=\"0.01\""))
            .expect("bucket line");
        assert!(
            bucket.starts_with(
                "weir_http_request_duration_seconds_bucket{listener=\"out\",route=\"r\\\"1\",service=\"s\",le=\"0.01\"} 2 # {trace_id=\"abababababababababababababababab\",span_id=\"0101010101010101\"} 0.007 "
            ),
            "{bucket}"
        );
        let no_exemplar = text
            .lines()
            .find(|l| l.contains("le=\"0.005\""))
            .expect("line");
        assert!(no_exemplar.ends_with("} 1"), "{no_exemplar}");
        assert!(text.contains("_count{listener=\"out\",route=\"r\\\"1\",service=\"s\"} 2\n"));
        let parsed: Vec<_> = super::super::prometheus_text::parse(&text).collect();
        assert_eq!(parsed.len(), 19, "17 buckets, sum and count parse");
    }
}
