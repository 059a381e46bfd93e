//! The pause between failed exports: exponential, capped, reset by a success, so a collector
//! that is down is not hammered and one that comes back is used at once.

use std::time::Duration;

/// The next pause after a failed export.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `first`, doubles with each failure, never above `max`.
    pub(super) fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first.min(max),
        }
    }

    /// How long to pause after this failure (the next one pauses twice as long).
    pub(super) fn after_failure(&mut self) -> Duration {
        let pause = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        pause
    }

    /// After a success: the next failure pauses `first` again.
    pub(super) fn reset(&mut self) {
        self.next = self.first.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_100ms_to_a_5s_cap_and_a_success_starts_it_over() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let pauses: Vec<u128> = (0..8)
            .map(|_| backoff.after_failure().as_millis())
            .collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.after_failure(), Duration::from_millis(100));
    }
}
