//! One structured log line per request, written when its response has been fully sent.

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, Uri};

/// The facts of one finished request.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    /// Client address.
    pub client: SocketAddr,
    /// Listener name.
    pub listener: &'a str,
    /// Route name, empty if none matched.
    pub route: &'a str,
    /// Service name, empty if none was chosen.
    pub service: &'a str,
    /// Endpoint address, empty if none was chosen.
    pub endpoint: &'a str,
    /// Request method.
    pub method: &'a Method,
    /// Request URI (path and query).
    pub uri: &'a Uri,
    /// Status sent to the client.
    pub status: u16,
    /// Time from request start until the response was fully sent.
    pub duration: Duration,
    /// weir error code, empty if the response came from the upstream intact.
    pub error: &'a str,
}

/// Writes the record at INFO under the `weir::access` target (text or JSON per `logging`).
pub fn write(r: &AccessRecord<'_>) {
    tracing::info!(
        target: "weir::access",
        client = %r.client,
        listener = %r.listener,
        route = %r.route,
        service = %r.service,
        endpoint = %r.endpoint,
        method = %r.method,
        path = %r.uri.path(),
        status = r.status,
        duration_ms = r.duration.as_secs_f64() * 1000.0,
        error = %r.error,
        "request"
    );
}
