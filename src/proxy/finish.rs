//! The logging phase: when a response has been fully sent (or abandoned), count it, observe
//! its duration, write its access-log line, release its in-flight slot and return its
//! connection to the pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Uri};
use hyper::client::conn::http1;

use crate::body::{RequestBody, SharedBody};
use crate::error::ErrorCode;
use crate::route::retry::ActiveRequest;
use crate::snapshot::Snapshot;
use crate::telemetry::access_log::AccessRecord;
use crate::upstream::limits::LimitGuard;
use crate::upstream::{Endpoint, InFlight};

/// Where a request went, as far as it got.
#[derive(Debug)]
pub struct Placement {
    /// Index of the matched route in its listener's table.
    pub route: usize,
    /// Index of the chosen backend in the route.
    pub backend: usize,
    /// The chosen endpoint and its in-flight slot.
    pub endpoint: Option<(Arc<Endpoint>, InFlight)>,
}

/// Everything the logging phase needs about one request.
#[derive(Debug)]
pub struct Finish {
    /// The snapshot the request ran under.
    pub snapshot: Arc<Snapshot>,
    /// Listener index.
    pub listener: usize,
    /// Client address.
    pub client: SocketAddr,
    /// When the request arrived.
    pub started: Instant,
    /// Request method (for the access log).
    pub method: Method,
    /// Request target (for the access log).
    pub uri: Uri,
    /// Route, backend and endpoint, as far as the request got.
    pub placement: Option<Placement>,
    /// Status sent to the client.
    pub status: u16,
    /// Set when weir made the response.
    pub error: Option<ErrorCode>,
    /// HTTP/1.1 connection to return to the pool if the body ends cleanly.
    pub reusable: Option<http1::SendRequest<RequestBody>>,
    /// The client's request body while it may still be streaming upstream.
    pub request_body: Option<SharedBody>,
    /// Limit slots and budget shares held until the response ends.
    pub held: Held,
    /// Set once the request has been counted and logged.
    recorded: bool,
}

/// Status recorded for a request whose client went away before any response (nginx's 499,
/// Envoy's downstream-disconnect): it never reaches the client, but metrics and the access
/// log must still show the request.
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// What a request holds for its whole life and gives back when its response ends.
#[derive(Debug, Default)]
pub struct Held {
    /// Its `max_requests` slot.
    pub request_slot: Option<LimitGuard>,
    /// Its share of the route's retry budget (active requests).
    pub active: Option<ActiveRequest>,
}

/// How the response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every byte (and trailer) was relayed.
    Complete,
    /// The upstream failed mid-body.
    UpstreamFailed,
    /// The client went away first.
    Abandoned,
}

impl Finish {
    /// The record of a request that has just arrived.
    pub fn new(
        snapshot: Arc<Snapshot>,
        listener: usize,
        client: SocketAddr,
        method: Method,
        uri: Uri,
    ) -> Self {
        Finish {
            snapshot,
            listener,
            client,
            started: Instant::now(),
            method,
            uri,
            placement: None,
            status: 0,
            error: None,
            reusable: None,
            request_body: None,
            held: Held::default(),
            recorded: false,
        }
    }

    /// Records the request when its response body is done or dropped.
    pub fn complete(mut self, ending: Ending) {
        self.record(ending);
    }

    /// Counts, observes and logs the request, once.
    fn record(&mut self, ending: Ending) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        // The response is over: whatever of the request the upstream has not read is unwanted.
        if let Some(body) = self.request_body.take() {
            drop(body.lock().unwrap_or_else(|p| p.into_inner()).take());
        }
        let duration = self.started.elapsed();
        let table = &self.snapshot.listeners[self.listener];
        let mut names = ("", "", "");
        match &self.placement {
            None => {
                table
                    .unmatched
                    .proxy_error(self.error.unwrap_or(ErrorCode::NoRoute), self.status);
                table.unmatched_duration.observe(duration);
            }
            Some(p) => {
                let route = &table.routes[p.route];
                let backend = &route.backends[p.backend];
                backend.duration.observe(duration);
                names = (route.name.as_str(), backend.service.name.as_str(), "");
                match &p.endpoint {
                    None if self.status == CLIENT_CLOSED_REQUEST => {
                        backend.unsent.upstream(self.status)
                    }
                    None => backend.unsent.proxy_error(
                        self.error.unwrap_or(ErrorCode::NoHealthyEndpoint),
                        self.status,
                    ),
                    Some((endpoint, _)) => {
                        names.2 = endpoint.label.as_str();
                        let counters = &endpoint.counters[backend.slot];
                        match (self.error, ending) {
                            (Some(code), _) => counters.proxy_error(code, self.status),
                            (None, Ending::UpstreamFailed) => counters
                                .upstream_failed_mid_body(self.status, ErrorCode::UpstreamReset),
                            (None, _) => counters.upstream(self.status),
                        }
                        if ending == Ending::Complete {
                            if let Some(sender) = self.reusable.take() {
                                endpoint.pool.check_in(sender);
                            }
                        }
                    }
                }
            }
        }
        if let Some(access_log) = &self.snapshot.access_log {
            let error = match (self.error, ending) {
                (Some(code), _) => code.as_str(),
                (None, Ending::UpstreamFailed) => ErrorCode::UpstreamReset.as_str(),
                _ => "",
            };
            access_log.write(&AccessRecord {
                client: self.client,
                listener: &table.listener,
                route: names.0,
                service: names.1,
                endpoint: names.2,
                method: &self.method,
                uri: &self.uri,
                status: self.status,
                duration,
                error,
            });
        }
    }
}

impl Drop for Finish {
    /// A request dropped before its response began (the client went away while weir waited
    /// on the upstream, a fault delay or the request body) is still counted and logged.
    fn drop(&mut self) {
        if !self.recorded {
            if self.status == 0 {
                self.status = CLIENT_CLOSED_REQUEST;
            }
            self.record(Ending::Abandoned);
        }
    }
}
