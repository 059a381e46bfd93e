//! The logging phase: when a response has been fully sent (or abandoned), count it, observe
//! its duration, write its access-log line, and end its upstream exchange (which returns
//! the connection to the pool after a clean body and releases everything else it holds).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use http::{Method, Request, Uri};

use super::connection::Connection;
use crate::error::ErrorCode;
use crate::route::RouteTable;
use crate::telemetry::access_log::AccessRecord;
use crate::telemetry::histogram::LatencyHistogram;
use crate::telemetry::trace::span::{Recording, SpanEnd};
use crate::upstream::pool::Checkout;
use crate::upstream::Exchange;

/// Where a request went, as far as it got.
#[derive(Debug)]
pub struct Placement {
    /// Index of the matched route in its listener's table.
    pub route: usize,
    /// Index of the chosen backend in the route.
    pub backend: usize,
    /// The last upstream exchange, which holds the endpoint and the request's slots.
    pub exchange: Option<Exchange>,
}

/// Everything the logging phase needs about one request.
#[derive(Debug)]
pub struct Finish {
    /// The connection the request came on (the client, its peer).
    conn: Arc<Connection>,
    /// The route table the request is routed by: the one in force when it arrived, held
    /// until it is logged whatever a reload does meanwhile.
    pub table: Arc<RouteTable>,
    /// When the request arrived.
    started: Instant,
    /// Method and target, kept only when an access log is written (boxed: most
    /// deployments write none, and every request would carry the space).
    request_line: Option<Box<(Method, Uri)>>,
    /// Route, backend and exchange, as far as the request got.
    pub placement: Option<Placement>,
    /// Status sent to the client.
    pub status: u16,
    /// Set when weir made the response.
    pub error: Option<ErrorCode>,
    /// The request's span, when it is sampled and spans are exported.
    pub span: Option<Box<Recording>>,
    /// Set once the request has been counted and logged.
    recorded: bool,
}

/// Status recorded for a request whose client went away before any response (nginx's 499,
/// Envoy's downstream-disconnect): it never reaches the client, but metrics and the access
/// log must still show the request.
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// How the response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every byte (and trailer) was relayed.
    Complete,
    /// The upstream failed mid-body.
    UpstreamFailed,
    /// The upstream stopped sending its body for `stream_idle`.
    UpstreamStalled,
    /// The client went away first.
    Abandoned,
}

impl Finish {
    /// The record of a request that has just arrived on `conn`, routed by `table`.
    pub fn new<B>(conn: &Arc<Connection>, table: Arc<RouteTable>, req: &Request<B>) -> Self {
        Finish {
            conn: conn.clone(),
            started: Instant::now(),
            request_line: table
                .access_log
                .as_ref()
                .map(|_| Box::new((req.method().clone(), req.uri().clone()))),
            table,
            placement: None,
            status: 0,
            error: None,
            span: None,
            recorded: false,
        }
    }

    /// How long a body may move no byte (the listener's `timeouts.stream_idle`).
    pub fn stream_idle(&self) -> std::time::Duration {
        self.conn.stream_idle
    }

    /// Records the request when its response body is done or dropped; `connection` is the
    /// upstream connection a cleanly ended body hands back for the pool.
    pub fn complete(mut self, ending: Ending, connection: Option<Checkout>) {
        self.record(ending, connection);
    }

    /// Counts, observes and logs the request, once, and ends its exchange.
    fn record(&mut self, ending: Ending, connection: Option<Checkout>) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let duration = self.started.elapsed();
        let table = &*self.table;
        let exchange = self.placement.as_mut().and_then(|p| p.exchange.take());
        let mut names = ("", "");
        // A traced request ends now for its span and its exemplar alike.
        let traced = self
            .span
            .as_ref()
            .map(|s| (s.trace_id(), s.span_id(), SystemTime::now()));
        let observe = |histogram: &LatencyHistogram| match traced {
            Some((trace, span, at)) => histogram.observe_traced(duration, trace, span, at),
            None => histogram.observe(duration),
        };
        match &self.placement {
            None => {
                table
                    .unmatched
                    .proxy_error(self.error.unwrap_or(ErrorCode::NoRoute), self.status);
                observe(&table.unmatched_duration);
            }
            Some(p) => {
                let route = &table.routes[p.route];
                let backend = &route.backends[p.backend];
                observe(&backend.duration);
                names = (route.name.as_str(), backend.service.name.as_str());
                let counters = match &exchange {
                    Some(exchange) => &exchange.endpoint().counters[backend.slot],
                    None => &backend.unsent,
                };
                match (self.error, ending, &exchange) {
                    (Some(code), _, _) => counters.proxy_error(code, self.status),
                    (None, Ending::UpstreamFailed, Some(_)) => {
                        counters.upstream_failed_mid_body(self.status, ErrorCode::UpstreamReset)
                    }
                    (None, Ending::UpstreamStalled, Some(_)) => {
                        counters.upstream_failed_mid_body(self.status, ErrorCode::Timeout)
                    }
                    (None, _, Some(_)) => counters.upstream(self.status),
                    (None, _, None) if self.status == CLIENT_CLOSED_REQUEST => {
                        counters.upstream(self.status)
                    }
                    (None, _, None) => {
                        counters.proxy_error(ErrorCode::NoHealthyEndpoint, self.status)
                    }
                }
            }
        }
        if let (Some(access_log), Some(line)) = (&table.access_log, &self.request_line) {
            let (method, uri) = &**line;
            access_log.write(&AccessRecord {
                client: self.conn.client_text.as_deref().unwrap_or_default(),
                peer: self
                    .conn
                    .peer
                    .as_ref()
                    .and_then(|p| p.peer.as_deref())
                    .unwrap_or_default(),
                listener: &table.listener,
                route: names.0,
                service: names.1,
                endpoint: exchange.as_ref().map_or("", |e| &*e.endpoint().label),
                method: method.as_str(),
                path: uri.path(),
                status: self.status,
                duration,
                error: error_label(self.error, ending),
            });
        }
        if let (Some(span), Some(tracer)) = (self.span.take(), &table.tracer) {
            let names = self
                .placement
                .as_ref()
                .map(|p| &table.routes[p.route].backends[p.backend].span_names);
            let end = SpanEnd {
                status: self.status,
                names,
                endpoint: exchange.as_ref().map(|e| &e.endpoint().label),
                error: Some(error_label(self.error, ending)).filter(|code| !code.is_empty()),
                peer_identity: self.conn.peer.as_ref().and_then(|p| p.peer.as_ref()),
                client_ip: Some(&self.conn.downstream.client_ip),
            };
            let ended = traced.map_or_else(SystemTime::now, |(_, _, at)| at);
            tracer.submit(span.finish(&end, ended));
        }
        if let Some(exchange) = exchange {
            exchange.finish(connection.filter(|_| ending == Ending::Complete));
        }
        self.conn.clock.request_ended();
    }
}

/// The `error` of the access log: weir's code, or `upstream_reset` for a body the upstream
/// broke off.
fn error_label(error: Option<ErrorCode>, ending: Ending) -> &'static str {
    match (error, ending) {
        (Some(code), _) => code.as_str(),
        (None, Ending::UpstreamFailed) => ErrorCode::UpstreamReset.as_str(),
        (None, Ending::UpstreamStalled) => ErrorCode::Timeout.as_str(),
        _ => "",
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
            self.record(Ending::Abandoned, None);
        }
    }
}
