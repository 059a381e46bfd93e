//! Connection and request limits of a service (Envoy's circuit-breaker thresholds):
//! `max_connections`, `max_pending_requests`, `max_requests`, `max_retries`. Past a limit a
//! request is refused at once with 503 `overflow`; nothing waits without bound (a request
//! pending for a connection is still bounded by the route timeout).

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

use crate::config;
use crate::telemetry::metrics::{Metrics, OverflowLabels};

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Upstream connections across the service's endpoints.
    MaxConnections,
    /// Requests waiting for a connection.
    MaxPendingRequests,
    /// Requests in flight to the service.
    MaxRequests,
    /// Retries in flight to the service.
    MaxRetries,
}

impl Limit {
    /// The `limit` label of `weir_overflow_total` and the config key.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max_connections",
            Limit::MaxPendingRequests => "max_pending_requests",
            Limit::MaxRequests => "max_requests",
            Limit::MaxRetries => "max_retries",
        }
    }
}

/// A refusal: which limit, and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow {
    /// The limit reached.
    pub limit: Limit,
    /// Its configured value.
    pub value: u32,
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}) reached", self.limit.as_str(), self.value)
    }
}

/// The limits and current usage of one service.
#[derive(Debug)]
pub struct Limits {
    max: [u32; 4],
    used: [AtomicU32; 4],
    overflows: [Counter; 4],
    changed: Notify,
}

const ALL: [Limit; 4] = [
    Limit::MaxConnections,
    Limit::MaxPendingRequests,
    Limit::MaxRequests,
    Limit::MaxRetries,
];

impl Limits {
    /// Limits of `service` from its config (which holds Envoy's defaults when the
    /// configuration names none).
    pub fn new(service: &str, cfg: &config::Limits, metrics: &Metrics) -> Arc<Self> {
        let max = [
            cfg.max_connections,
            cfg.max_pending_requests,
            cfg.max_requests,
            cfg.max_retries,
        ];
        let overflows = ALL.map(|l| {
            metrics.overflow.get_or_create_owned(&OverflowLabels {
                service: service.to_string(),
                limit: l.as_str().to_string(),
            })
        });
        Arc::new(Limits {
            max,
            used: Default::default(),
            overflows,
            changed: Notify::new(),
        })
    }

    /// Takes one unit of `limit`, or counts an overflow and refuses.
    pub fn acquire(self: &Arc<Self>, limit: Limit) -> Result<LimitGuard, Overflow> {
        let i = limit as usize;
        let max = self.max[i];
        let taken = self.used[i].fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        });
        match taken {
            Ok(_) => Ok(LimitGuard {
                limits: self.clone(),
                limit,
            }),
            Err(_) => {
                self.overflows[i].inc();
                Err(Overflow { limit, value: max })
            }
        }
    }

    /// Takes a connection slot without counting an overflow when none is free (a request
    /// then waits as pending instead). An endpoint with no connection at all always gets
    /// one, past the limit (counted as an overflow), as Envoy's pools do: otherwise idle
    /// connections to other endpoints (one just ejected, say) would hold every slot, and
    /// requests balanced to this endpoint could only wait and fail.
    pub fn try_connection(self: &Arc<Self>, endpoint_has_none: bool) -> Option<LimitGuard> {
        let i = Limit::MaxConnections as usize;
        let max = self.max[i];
        let taken = self.used[i].fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max || endpoint_has_none).then_some(n + 1)
        });
        let before = taken.ok()?;
        if before >= max {
            self.overflows[i].inc();
        }
        Some(LimitGuard {
            limits: self.clone(),
            limit: Limit::MaxConnections,
        })
    }

    /// Counts a refusal by `limit` that was decided elsewhere (a pending request that no
    /// connection freed up for), and describes it.
    pub fn count_overflow(&self, limit: Limit) -> Overflow {
        self.overflows[limit as usize].inc();
        Overflow {
            limit,
            value: self.max[limit as usize],
        }
    }

    /// Current usage of `limit`.
    pub fn used(&self, limit: Limit) -> u32 {
        self.used[limit as usize].load(Ordering::Acquire)
    }

    /// Whether any request waits for a connection (so check-ins must wake it).
    pub fn has_pending(&self) -> bool {
        self.used(Limit::MaxPendingRequests) > 0
    }

    /// Wakes requests waiting for a connection: one was returned or closed.
    pub fn connection_available(&self) {
        self.changed.notify_waiters();
    }

    /// Resolves the next time a connection is returned or closed.
    pub fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

/// One unit of a limit, released on drop.
#[derive(Debug)]
pub struct LimitGuard {
    limits: Arc<Limits>,
    limit: Limit,
}

impl Drop for LimitGuard {
    fn drop(&mut self) {
        self.limits.used[self.limit as usize].fetch_sub(1, Ordering::AcqRel);
        if self.limit == Limit::MaxConnections {
            self.limits.connection_available();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_requests: u32) -> (Arc<Limits>, Arc<Metrics>) {
        let metrics = Metrics::new();
        let cfg = config::Limits {
            max_connections: 2,
            max_pending_requests: 1,
            max_requests,
            max_retries: 1,
        };
        (Limits::new("svc", &cfg, &metrics), metrics)
    }

    #[test]
    fn requests_beyond_the_limit_overflow_and_are_counted() {
        let (l, metrics) = limits(3);
        let held: Vec<_> = (0..3)
            .map(|_| l.acquire(Limit::MaxRequests).unwrap())
            .collect();
        let refused = (0..5)
            .filter(|_| l.acquire(Limit::MaxRequests).is_err())
            .count();
        assert_eq!(refused, 5);
        assert_eq!(l.used(Limit::MaxRequests), 3);
        drop(held);
        assert_eq!(l.used(Limit::MaxRequests), 0);
        assert!(l.acquire(Limit::MaxRequests).is_ok());
        let text = metrics.render();
        assert!(
            text.contains(r#"weir_overflow_total{service="svc",limit="max_requests"} 5"#),
            "{text}"
        );
    }

    #[test]
    fn connection_slots_do_not_count_overflow() {
        let (l, metrics) = limits(3);
        let a = l.try_connection(false);
        let b = l.try_connection(false);
        assert!(a.is_some() && b.is_some() && l.try_connection(false).is_none());
        assert!(metrics.render().contains(r#"limit="max_connections"} 0"#));
        drop(a);
        assert!(l.try_connection(false).is_some());
    }

    #[test]
    fn an_endpoint_without_a_connection_always_gets_one_counted_as_overflow() {
        let (l, metrics) = limits(3);
        let held = [l.try_connection(false), l.try_connection(false)];
        assert!(l.try_connection(false).is_none(), "at the limit");
        let first = l
            .try_connection(true)
            .expect("an endpoint's first connection");
        assert_eq!(l.used(Limit::MaxConnections), 3);
        assert!(metrics.render().contains(r#"limit="max_connections"} 1"#));
        drop((held, first));
        assert_eq!(l.used(Limit::MaxConnections), 0);
    }

    #[tokio::test]
    async fn releasing_a_connection_wakes_waiters() {
        let (l, _) = limits(3);
        let held = l.try_connection(false).unwrap();
        let _other = l.try_connection(false).unwrap();
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move {
                loop {
                    let changed = l.changed();
                    if let Some(g) = l.try_connection(false) {
                        return g;
                    }
                    changed.await;
                }
            })
        };
        tokio::task::yield_now().await;
        drop(held);
        let got = tokio::time::timeout(std::time::Duration::from_secs(2), waiter).await;
        assert!(got.is_ok(), "the waiter was not woken");
    }
}
