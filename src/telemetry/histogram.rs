//! A lock-free latency histogram for the request path.
//!
//! prometheus-client's `Histogram` takes a mutex on every observation; a proxy observes on
//! every request, so weir keeps per-bucket atomics instead and sums them only on scrape.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

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
}

impl LatencyHistogram {
    /// Records one duration: two relaxed atomic adds, no lock.
    pub fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let idx = BUCKETS_NANOS.partition_point(|&b| b < nanos);
        self.inner.buckets[idx].fetch_add(1, Relaxed);
        self.inner.sum_nanos.fetch_add(nanos, Relaxed);
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0f64, 0u64); 17];
        let mut count = 0;
        for (i, slot) in buckets.iter_mut().enumerate() {
            let n = self.inner.buckets[i].load(Relaxed);
            count += n;
            *slot = (BUCKETS_SECONDS.get(i).copied().unwrap_or(f64::INFINITY), n);
        }
        let sum = self.inner.sum_nanos.load(Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
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
}
