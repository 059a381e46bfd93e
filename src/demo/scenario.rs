//! The demo's circuit-breaker scenario: `reviews-v2` answers every request with a 500 from
//! 30% to 60% of the run, then heals. Its circuit breaker, configured with windows short
//! enough for a run of a few seconds, opens, half-opens on trial requests and closes again
//! once a trial succeeds; the summary tells that story from weir's metrics.
//!
//! The failure window is a share of the run, and the breaker's `sleep_window` (and with it
//! the rolling `window`) shrinks for short runs, so that even `--duration 3s` goes through
//! open, half-open and closed before the load stops.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use super::services::DemoEndpoint;
use crate::upstream::circuit_breaker::BreakerState;

/// The demo service that fails part-way through the run.
pub const FAILING_SERVICE: &str = "reviews-v2";

/// Share of the run after which the service starts failing.
const FAIL_FROM: f64 = 0.3;
/// Share of the run after which the service heals.
const FAIL_UNTIL: f64 = 0.6;
/// Shortest and longest `sleep_window`: a fifteenth of the run, within these bounds.
const SLEEP_BOUNDS: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(1));
/// How often the scenario looks at the clock and at the breaker.
const TICK: Duration = Duration::from_millis(10);

/// When the service fails, and the breaker timings that suit a run of that length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Since the start of the load, when the service starts answering 500.
    pub fail_from: Duration,
    /// Since the start of the load, when it answers normally again.
    pub fail_until: Duration,
    /// The breaker's rolling window (10 buckets).
    pub window: Duration,
    /// How long the breaker stays open before a trial request.
    pub sleep_window: Duration,
}

// === impl Plan ===

impl Plan {
    /// The plan for a run of `duration`: failing from 30% to 60% of it; `sleep_window` a
    /// fifteenth of it (1 s for the default 15 s run, at least 200 ms) rounded to 10 ms;
    /// a 2 s window with a 1 s sleep window, else 1 s.
    pub fn for_duration(duration: Duration) -> Plan {
        let sleep = duration / 15;
        let sleep = Duration::from_millis(u64::try_from(sleep.as_millis() / 10 * 10).unwrap_or(0))
            .clamp(SLEEP_BOUNDS.0, SLEEP_BOUNDS.1);
        let window = if sleep >= Duration::from_secs(1) {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(1)
        };
        Plan {
            fail_from: duration.mul_f64(FAIL_FROM),
            fail_until: duration.mul_f64(FAIL_UNTIL),
            window,
            sleep_window: sleep,
        }
    }
}

/// What happened during the run, in time since the start of the load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeline {
    /// When the service started failing (`None`: the run ended first).
    pub failed_from: Option<Duration>,
    /// When it healed (`None`: the run ended while it was failing).
    pub failed_until: Option<Duration>,
    /// When the breaker was first seen open.
    pub opened_at: Option<Duration>,
    /// When the breaker was last seen closing after having opened.
    pub closed_at: Option<Duration>,
    /// The breaker's state when the run ended.
    pub final_state: Option<BreakerState>,
}

/// Makes `endpoint` fail and heal on `plan`'s schedule, counted from `start`, and watches
/// the breaker through `breaker` until `done` turns true; the endpoint is healthy again
/// when this returns.
pub async fn drive(
    plan: Plan,
    endpoint: &DemoEndpoint,
    breaker: impl Fn() -> Option<BreakerState>,
    start: Instant,
    mut done: watch::Receiver<bool>,
) -> Timeline {
    let mut timeline = Timeline::default();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut last = BreakerState::Closed;
    loop {
        let finished = tokio::select! {
            _ = ticks.tick() => false,
            _ = done.wait_for(|d| *d) => true,
        };
        let now = start.elapsed();
        if timeline.failed_from.is_none() && now >= plan.fail_from && !finished {
            endpoint.set_failing(true);
            timeline.failed_from = Some(now);
        }
        if timeline.failed_from.is_some()
            && timeline.failed_until.is_none()
            && now >= plan.fail_until
        {
            endpoint.set_failing(false);
            timeline.failed_until = Some(now);
        }
        if let Some(state) = breaker() {
            if state == BreakerState::Open && timeline.opened_at.is_none() {
                timeline.opened_at = Some(now);
            }
            if state == BreakerState::Closed
                && last != BreakerState::Closed
                && timeline.opened_at.is_some()
            {
                timeline.closed_at = Some(now);
            }
            last = state;
            timeline.final_state = Some(state);
        }
        if finished {
            endpoint.set_failing(false);
            return timeline;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_run_fails_from_4_5s_to_9s_with_hystrix_timings_in_seconds() {
        let plan = Plan::for_duration(Duration::from_secs(15));
        assert_eq!(plan.fail_from, Duration::from_millis(4500));
        assert_eq!(plan.fail_until, Duration::from_millis(9000));
        assert_eq!(plan.sleep_window, Duration::from_secs(1));
        assert_eq!(plan.window, Duration::from_secs(2));
    }

    #[test]
    fn short_runs_scale_the_failure_and_shorten_the_sleep_window() {
        let plan = Plan::for_duration(Duration::from_secs(3));
        assert_eq!(plan.fail_from, Duration::from_millis(900));
        assert_eq!(plan.fail_until, Duration::from_millis(1800));
        assert_eq!(plan.sleep_window, Duration::from_millis(200));
        assert_eq!(plan.window, Duration::from_secs(1));
        let plan = Plan::for_duration(Duration::from_secs(6));
        assert_eq!(plan.sleep_window, Duration::from_millis(400));
        let long = Plan::for_duration(Duration::from_secs(600));
        assert_eq!(long.sleep_window, Duration::from_secs(1));
        assert_eq!(long.fail_until, Duration::from_secs(360));
    }

    #[tokio::test(start_paused = true)]
    async fn drive_fails_and_heals_the_endpoint_and_records_breaker_changes() {
        let endpoint = DemoEndpoint::start(FAILING_SERVICE, Duration::ZERO)
            .await
            .expect("bind");
        let plan = Plan {
            fail_from: Duration::from_millis(30),
            fail_until: Duration::from_millis(90),
            window: Duration::from_secs(1),
            sleep_window: Duration::from_millis(200),
        };
        let start = Instant::now();
        // A stand-in breaker: open from 50 ms to 120 ms, closed otherwise.
        let breaker = || {
            let now = start.elapsed();
            Some(
                if now >= Duration::from_millis(50) && now < Duration::from_millis(120) {
                    BreakerState::Open
                } else {
                    BreakerState::Closed
                },
            )
        };
        let (done_tx, done) = watch::channel(false);
        let observed = async {
            tokio::time::sleep(Duration::from_millis(35)).await;
            let failing_midway = endpoint.is_failing();
            tokio::time::sleep(Duration::from_millis(165)).await;
            let _ = done_tx.send(true);
            failing_midway
        };
        let (timeline, failing_midway) =
            tokio::join!(drive(plan, &endpoint, breaker, start, done), observed);
        assert!(failing_midway);
        assert!(!endpoint.is_failing());
        let ms = |d: u64| Some(Duration::from_millis(d));
        assert_eq!(
            timeline,
            Timeline {
                failed_from: ms(30),
                failed_until: ms(90),
                opened_at: ms(50),
                closed_at: ms(120),
                final_state: Some(BreakerState::Closed),
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_ends_early_never_fails_and_leaves_the_endpoint_healthy() {
        let endpoint = DemoEndpoint::start(FAILING_SERVICE, Duration::ZERO)
            .await
            .expect("bind");
        let plan = Plan::for_duration(Duration::from_secs(15));
        let (_done_tx, done) = watch::channel(true);
        let timeline = drive(plan, &endpoint, || None, Instant::now(), done).await;
        assert_eq!(timeline, Timeline::default());
    }
}
