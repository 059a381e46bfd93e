//! Accept failures: when the process runs out of file descriptors (EMFILE, ENFILE) an
//! accept loop that retries at once spins and floods the log. [`AcceptBackoff`] waits
//! longer after each failure in a row (10 ms doubling to 1 s) and logs at most one line a
//! second, saying how many failures it did not log.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

/// The first wait after a failed accept.
const FIRST_WAIT: Duration = Duration::from_millis(10);
/// The longest wait between accepts while they keep failing.
const LONGEST_WAIT: Duration = Duration::from_secs(1);
/// At most one log line per this long.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Back-off state of one accept loop.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    wait: Duration,
    unlogged: u64,
    last_log: Option<Instant>,
}

impl AcceptBackoff {
    /// Records a failed accept on `listener`, logs it when a line is due, and waits before
    /// the next accept.
    pub async fn failed(&mut self, listener: &str, error: &io::Error) {
        self.wait = (self.wait * 2).clamp(FIRST_WAIT, LONGEST_WAIT);
        let due = self.last_log.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if due {
            let fds = matches!(error.raw_os_error(), Some(23 | 24));
            tracing::warn!(
                listener,
                %error,
                out_of_file_descriptors = fds,
                failures_not_logged = self.unlogged,
                wait_ms = self.wait.as_millis() as u64,
                "accept failed; waiting before accepting again"
            );
            self.last_log = Some(Instant::now());
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        tokio::time::sleep(self.wait).await;
    }

    /// An accept succeeded: the next failure starts from the shortest wait.
    pub fn succeeded(&mut self) {
        self.wait = Duration::ZERO;
    }

    /// How long the last failure made the loop wait.
    #[cfg(test)]
    fn wait(&self) -> Duration {
        self.wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_double_to_a_second_and_reset_after_a_success() {
        let mut backoff = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        let mut waits = Vec::new();
        for _ in 0..9 {
            backoff.failed("l", &emfile).await;
            waits.push(backoff.wait().as_millis());
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.succeeded();
        backoff.failed("l", &emfile).await;
        assert_eq!(backoff.wait(), FIRST_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn logs_at_most_one_line_a_second() {
        let mut backoff = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        // The first failure logs; the ones within the next second are counted instead.
        backoff.failed("l", &emfile).await;
        assert_eq!(backoff.unlogged, 0);
        backoff.succeeded();
        for _ in 0..5 {
            backoff.failed("l", &emfile).await;
            backoff.succeeded();
        }
        assert_eq!(
            backoff.unlogged, 5,
            "five failures within the second were not logged"
        );
        tokio::time::advance(LOG_EVERY).await;
        backoff.failed("l", &emfile).await;
        assert_eq!(
            backoff.unlogged, 0,
            "a line a second later says how many were skipped"
        );
    }
}
