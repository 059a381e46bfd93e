//! Helpers for the tests: compiled into the library only for its unit tests, and included
//! by the integration tests (`tests/it/main.rs` names this file), so both use one
//! [`eventually`] without it becoming part of the library users get.

use std::time::Duration;

use tokio::time::Instant;

/// How often [`eventually`] checks its condition.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Polls `condition` every 10 ms until it holds or `limit` passes; whether it held.
///
/// For waiting on work that runs in other tasks (a health checker, a mirrored request)
/// without a fixed sleep: the test goes on as soon as the condition holds, and fails after
/// `limit` instead of hanging.
pub(crate) async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    condition()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test(start_paused = true)]
    async fn returns_as_soon_as_the_condition_holds() {
        let calls = Cell::new(0);
        let started = Instant::now();
        let held = eventually(Duration::from_secs(5), || {
            calls.set(calls.get() + 1);
            calls.get() == 3
        })
        .await;
        assert!(held);
        assert_eq!(calls.get(), 3);
        assert_eq!(started.elapsed(), 2 * POLL_INTERVAL);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_limit() {
        let started = Instant::now();
        assert!(!eventually(Duration::from_millis(100), || false).await);
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(
            waited < Duration::from_millis(100) + 2 * POLL_INTERVAL,
            "{waited:?}"
        );
    }
}
