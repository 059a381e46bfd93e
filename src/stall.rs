//! Bodies that stop moving: a request body a client stops sending, or a response body an
//! upstream stops sending after its headers, is ended once it has made no progress for the
//! listener's `timeouts.stream_idle` (Envoy's stream idle timeout, 5 minutes by default),
//! whether or not the route sets a `timeout`.
//!
//! The timer costs nothing while a body flows: it is armed only when a poll finds no data
//! ready, and moved (not re-created) when data came since.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Watches one body for stalls.
#[derive(Debug)]
pub struct StallTimer {
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    progressed: bool,
}

/// Why a body was ended: it made no progress for its limit.
#[derive(Debug)]
pub struct Stalled(pub Duration);

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no byte moved for {} (stream_idle)",
            crate::config::format_duration(self.0)
        )
    }
}

impl std::error::Error for Stalled {}

impl StallTimer {
    /// A timer ending a body after `limit` without progress.
    pub fn new(limit: Duration) -> Self {
        StallTimer {
            limit,
            sleep: None,
            progressed: false,
        }
    }

    /// The body yielded data (or trailers): the stall, if any, is over.
    pub fn progressed(&mut self) {
        self.progressed = true;
    }

    /// The body had nothing ready: ready with the error once it has had nothing for the
    /// limit; until then the task is woken when the limit passes.
    pub fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<Stalled> {
        let limit = self.limit;
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if self.progressed {
                    sleep.as_mut().reset(Instant::now() + limit);
                }
                sleep
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(Instant::now() + limit))),
        };
        self.progressed = false;
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Stalled(limit)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test(start_paused = true)]
    async fn a_body_silent_for_the_limit_stalls_and_progress_restarts_the_wait() {
        let mut timer = StallTimer::new(Duration::from_secs(300));
        let started = Instant::now();
        // Nothing ready: armed now.
        assert!(poll_fn(|cx| Poll::Ready(timer.poll_stalled(cx).is_pending())).await);
        tokio::time::sleep(Duration::from_secs(200)).await;
        timer.progressed();
        let stalled_at = poll_fn(|cx| timer.poll_stalled(cx).map(|_| Instant::now())).await;
        assert_eq!(
            stalled_at - started,
            Duration::from_secs(500),
            "300 s after the last progress"
        );
    }
}
