//! `GET /hystrix.stream`: the Hystrix metrics event stream, so that teams that came from
//! Hystrix keep their dashboards and Turbine. Every 500 ms each open stream receives one
//! `HystrixCommand` event per service (`data: {json}\n\n`), or a `: ping` comment when
//! there is no service.
//!
//! One sampler task reads weir's state for every open stream, and only while a stream is
//! open: it reads counters and histograms the request path keeps anyway, so a stream adds
//! no work to any request. A stream counts as a request in flight until it ends, so the
//! admin server's idle timeout spares it; it ends when its client leaves or weir stops,
//! and at most [`MAX_STREAMS`] are open at once (the admin server's 64 connections are
//! for probes and scrapes first).

mod event;
mod sampler;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::Either;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use self::sampler::Sampler;
use super::AdminState;
use crate::proxy::client_timeouts::ClientClock;
use crate::proxy::response::{plain, ResponseBody};
use crate::snapshot::Snapshot;
use crate::telemetry::metrics::Metrics;

/// Where the stream is served.
pub const PATH: &str = "/hystrix.stream";

/// How often events are sent (Hystrix's default `delay`).
pub const PERIOD: Duration = Duration::from_millis(500);

/// Streams open at once at most (Hystrix's default `maxConcurrentConnections`).
pub const MAX_STREAMS: u32 = 5;

/// The body of an admin response: a whole one, or an event stream.
pub type AdminBody = Either<ResponseBody, EventStream>;

/// The open streams of one admin server and the sampler that feeds them.
#[derive(Debug)]
pub struct Streams {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    /// Turns true when weir stops: every stream ends.
    stop: watch::Receiver<bool>,
    open: Arc<AtomicU32>,
    /// The running sampler, while a stream holds it.
    feed: Mutex<Weak<Feed>>,
}

impl Streams {
    /// Streams of the state `state` reads; they end when `stop` turns true.
    pub fn new(state: &AdminState, stop: watch::Receiver<bool>) -> Self {
        Streams {
            snapshot: state.snapshot.clone(),
            metrics: state.metrics.clone(),
            stop,
            open: Arc::new(AtomicU32::new(0)),
            feed: Mutex::new(Weak::new()),
        }
    }

    /// Answers `GET /hystrix.stream` (and `HEAD`); `None` for any other request. `clock`
    /// has seen the request start: a refusal ends the request at once, a stream when its
    /// body ends.
    pub fn answer<B>(
        &self,
        req: &Request<B>,
        clock: &Arc<ClientClock>,
    ) -> Option<Response<AdminBody>> {
        if req.uri().path() != PATH {
            return None;
        }
        if req.method() == Method::HEAD {
            clock.request_ended();
            return Some(event_stream_response(Either::Left(ResponseBody::empty())));
        }
        if req.method() != Method::GET {
            return None;
        }
        if self.open.fetch_add(1, Ordering::AcqRel) >= MAX_STREAMS {
            self.open.fetch_sub(1, Ordering::AcqRel);
            clock.request_ended();
            return Some(
                plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    format!("weir: {MAX_STREAMS} clients already read {PATH}, the most weir serves at once; aggregate them with Turbine, or close one\n"),
                )
                .map(Either::Left),
            );
        }
        let slot = Slot {
            open: self.open.clone(),
            clock: clock.clone(),
        };
        let feed = self.feed();
        let mut events = feed.events.clone();
        // The latest batch goes out at once; a new sampler publishes its first at once.
        events.mark_changed();
        let waiting = Waiting {
            events,
            stop: self.stop.clone(),
        };
        Some(event_stream_response(Either::Right(EventStream {
            next: Some(Box::pin(next_batch(waiting))),
            _feed: feed,
            _slot: slot,
        })))
    }

    /// The running sampler, started if no stream holds one.
    fn feed(&self) -> Arc<Feed> {
        let mut running = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(feed) = running.upgrade() {
            return feed;
        }
        let (publish, events) = watch::channel(Bytes::new());
        let sampler = Sampler::new(self.snapshot.clone(), self.metrics.clone());
        let feed = Arc::new(Feed {
            events,
            sampler: tokio::spawn(sample(sampler, publish)),
        });
        *running = Arc::downgrade(&feed);
        feed
    }
}

/// The headers Hystrix's servlet sends: an event stream nothing may cache.
fn event_stream_response(body: AdminBody) -> Response<AdminBody> {
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream;charset=UTF-8"),
    );
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
    );
    headers.insert("pragma", HeaderValue::from_static("no-cache"));
    resp
}

/// Reads weir's state every [`PERIOD`] and publishes the encoded events, until the last
/// stream lets go of its [`Feed`] (which aborts this task).
async fn sample(mut sampler: Sampler, publish: watch::Sender<Bytes>) {
    let mut ticks = tokio::time::interval(PERIOD);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let unix_millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let commands = sampler.sample(tokio::time::Instant::now(), unix_millis);
        publish.send_replace(Bytes::from(event::batch(&commands)));
    }
}

/// The sampler task and the latest events it published; the task stops when the last
/// stream drops this.
#[derive(Debug)]
struct Feed {
    events: watch::Receiver<Bytes>,
    sampler: JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.sampler.abort();
    }
}

/// One stream's place under [`MAX_STREAMS`] and its request in flight on its connection;
/// both are given back when the stream's body is dropped, however it ended.
#[derive(Debug)]
struct Slot {
    open: Arc<AtomicU32>,
    clock: Arc<ClientClock>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.clock.request_ended();
    }
}

/// What a stream waits on between batches.
struct Waiting {
    events: watch::Receiver<Bytes>,
    stop: watch::Receiver<bool>,
}

/// The next batch of events, or `None` once weir stops (or the sampler is gone).
async fn next_batch(mut w: Waiting) -> Option<(Bytes, Waiting)> {
    loop {
        let changed = tokio::select! {
            biased;
            _ = w.stop.wait_for(|stopped| *stopped) => return None,
            changed = w.events.changed() => changed,
        };
        changed.ok()?;
        let batch = w.events.borrow_and_update().clone();
        if !batch.is_empty() {
            return Some((batch, w));
        }
    }
}

type NextBatch = Pin<Box<dyn Future<Output = Option<(Bytes, Waiting)>> + Send>>;

/// The body of one `/hystrix.stream` response: batches of events as the sampler publishes
/// them, until weir stops; hyper drops it when the client leaves.
pub struct EventStream {
    next: Option<NextBatch>,
    _feed: Arc<Feed>,
    _slot: Slot,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("ended", &self.next.is_none())
            .finish_non_exhaustive()
    }
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let Some(next) = this.next.as_mut() else {
            return Poll::Ready(None);
        };
        match next.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.next = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some((batch, waiting))) => {
                this.next = Some(Box::pin(next_batch(waiting)));
                Poll::Ready(Some(Ok(Frame::data(batch))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.next.is_none()
    }
}

#[cfg(test)]
mod tests;
