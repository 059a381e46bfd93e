//! The pause before asking the API server again after a failure: exponential from 0.8 s,
//! capped at 30 s (kube-rs's watcher defaults), reset by a success, with jitter, so an API
//! server that is down is not hammered and one that comes back is used soon.

use std::time::Duration;

/// The first pause.
pub const FIRST: Duration = Duration::from_millis(800);
/// The longest pause.
pub const MAX: Duration = Duration::from_secs(30);

/// The next pause after a failure.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST }
    }
}

impl Backoff {
    /// How long to pause after this failure (the next one pauses twice as long, up to
    /// [`MAX`]).
    pub fn after_failure(&mut self) -> Duration {
        let pause = self.next;
        self.next = self.next.saturating_mul(2).min(MAX);
        pause
    }

    /// After a success: the next failure pauses [`FIRST`] again.
    pub fn reset(&mut self) {
        self.next = FIRST;
    }
}

/// `pause` spread over its upper half, so the sidecars of a cluster that lost the API
/// server together do not come back in step (thousands of pods would retry at once).
pub fn jittered(pause: Duration) -> Duration {
    let half = pause / 2;
    let spread = u64::try_from(half.as_millis()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_millis(crate::rand::below(spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_keeps_a_pause_within_its_upper_half() {
        for _ in 0..1000 {
            let pause = jittered(Duration::from_millis(800));
            assert!(
                pause >= Duration::from_millis(400) && pause < Duration::from_millis(800),
                "{pause:?}"
            );
        }
    }

    #[test]
    fn doubles_from_800ms_to_a_30s_cap_and_a_success_starts_it_over() {
        let mut backoff = Backoff::default();
        let pauses: Vec<u128> = (0..8)
            .map(|_| backoff.after_failure().as_millis())
            .collect();
        assert_eq!(pauses, [800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
        backoff.reset();
        assert_eq!(backoff.after_failure(), FIRST);
    }
}
