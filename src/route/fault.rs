//! Fault injection: delaying or failing a configured share of a route's requests on purpose,
//! so that callers' timeouts, retries and fallbacks can be tested against real traffic.

use std::time::Duration;

use crate::config;
use crate::rand;

/// A route's fault configuration, resolved once; decides per request.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultInjector {
    delay: Option<(Duration, f64)>,
    abort: Option<(u16, f64)>,
}

/// The faults chosen for one request. Delay and abort are drawn independently (as in Envoy):
/// a request may be delayed and then aborted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultDecision {
    /// Wait this long before going on.
    pub delay: Option<Duration>,
    /// Answer with this status instead of calling the upstream (`weir-error: fault_abort`).
    pub abort: Option<u16>,
}

// === impl FaultInjector ===

impl FaultInjector {
    /// Resolves the faults of `fault`.
    pub fn new(fault: &config::Fault) -> Self {
        FaultInjector {
            delay: fault.delay.as_ref().map(|d| (d.fixed, d.percent)),
            abort: fault.abort.as_ref().map(|a| (a.status, a.percent)),
        }
    }

    /// Draws this request's faults: the delay with its configured probability, the abort
    /// with its own.
    pub fn decide(&self) -> FaultDecision {
        FaultDecision {
            delay: self
                .delay
                .and_then(|(fixed, percent)| rand::chance(percent).then_some(fixed)),
            abort: self
                .abort
                .and_then(|(status, percent)| rand::chance(percent).then_some(status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FaultAbort, FaultDelay};

    fn injector(delay_percent: f64, abort_percent: f64) -> FaultInjector {
        FaultInjector::new(&config::Fault {
            delay: Some(FaultDelay {
                fixed: Duration::from_millis(100),
                percent: delay_percent,
            }),
            abort: Some(FaultAbort {
                status: 503,
                percent: abort_percent,
            }),
        })
    }

    /// (delayed, aborted) out of `n` decisions.
    fn rates(f: &FaultInjector, n: u32) -> (u32, u32) {
        let mut counts = (0, 0);
        for _ in 0..n {
            let d = f.decide();
            if let Some(delay) = d.delay {
                assert_eq!(delay, Duration::from_millis(100));
                counts.0 += 1;
            }
            if let Some(status) = d.abort {
                assert_eq!(status, 503);
                counts.1 += 1;
            }
        }
        counts
    }

    #[test]
    fn delay_and_abort_rates_are_within_half_a_point_of_their_percents() {
        for (delay_percent, abort_percent) in [(5.0, 1.0), (20.0, 10.0)] {
            let (delayed, aborted) = rates(&injector(delay_percent, abort_percent), 100_000);
            // ±0.5 points of 100 000 is ±500 (at least 3.9 σ for these shares).
            let expect = |p: f64| (p * 1000.0) as u32;
            assert!(
                delayed.abs_diff(expect(delay_percent)) <= 500,
                "{delayed} delayed at {delay_percent}%"
            );
            assert!(
                aborted.abs_diff(expect(abort_percent)) <= 500,
                "{aborted} aborted at {abort_percent}%"
            );
        }
    }

    #[test]
    fn zero_percent_never_injects_and_hundred_percent_always_does() {
        assert_eq!(rates(&injector(0.0, 0.0), 10_000), (0, 0));
        assert_eq!(rates(&injector(100.0, 100.0), 10_000), (10_000, 10_000));
    }

    #[test]
    fn unconfigured_faults_are_never_injected() {
        let f = FaultInjector::new(&config::Fault {
            delay: None,
            abort: None,
        });
        assert_eq!(f.decide(), FaultDecision::default());
    }
}
