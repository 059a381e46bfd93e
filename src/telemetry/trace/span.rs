//! One sampled request's span while it is in flight, and what it says once finished: the
//! OpenTelemetry HTTP semantic-convention attributes (plus `weir.*`), its name and status.
//! The attributes are derived from the span's own values when the exporter encodes it, so
//! the request path copies no string for them.

use std::sync::Arc;
use std::time::SystemTime;

use http::{HeaderValue, Request};

use super::{FinishedSpan, RetryEvent, SpanId, SpanKind, SpanNames, TraceId};

/// A sampled request's span, from its start until its response ends. Boxed in the request:
/// an unsampled request carries only a `None`.
#[derive(Debug)]
pub struct Recording {
    span: FinishedSpan,
}

/// What a request's span ends with: where it went and how it ended.
#[derive(Debug, Default)]
pub struct SpanEnd<'a> {
    /// Status sent to the client (499 when it left first).
    pub status: u16,
    /// Route and service, when a route matched.
    pub names: Option<&'a Arc<SpanNames>>,
    /// The endpoint of the last attempt.
    pub endpoint: Option<&'a Arc<str>>,
    /// weir's error code when weir made the response or the upstream broke it off.
    pub error: Option<&'static str>,
    /// The client's SPIFFE identity, when it came over mutual TLS.
    pub peer_identity: Option<&'a Arc<str>>,
    /// The client's IP address.
    pub client_ip: Option<&'a HeaderValue>,
}

/// Nanoseconds since the Unix epoch (0 for a clock set before 1970).
pub fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Recording {
    /// Starts recording the span of `req` (ids already chosen by the tracer).
    pub fn start<B>(
        req: &Request<B>,
        kind: SpanKind,
        ids: (TraceId, SpanId, Option<SpanId>),
        trace_state: Option<Box<str>>,
        at: SystemTime,
    ) -> Self {
        let (trace_id, span_id, parent) = ids;
        let authority = match req.uri().authority() {
            Some(a) => Some(a.as_str().into()),
            None => req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(Box::from),
        };
        Recording {
            span: FinishedSpan {
                trace_id,
                span_id,
                parent,
                trace_state,
                kind,
                start_unix_nanos: unix_nanos(at),
                end_unix_nanos: 0,
                method: req.method().clone(),
                path: req.uri().path().into(),
                authority,
                status: 0,
                names: None,
                endpoint: None,
                error: None,
                retries: Vec::new(),
                peer_identity: None,
                client_ip: None,
            },
        }
    }

    /// The trace the span belongs to (for exemplars).
    pub fn trace_id(&self) -> TraceId {
        self.span.trace_id
    }

    /// The span's own id (for exemplars).
    pub fn span_id(&self) -> SpanId {
        self.span.span_id
    }

    /// Notes that the attempt at `endpoint` failed with `reason` (and `status`, when it was
    /// answered) and is retried: one `retry` event.
    pub fn retry(&mut self, endpoint: &Arc<str>, reason: &'static str, status: Option<u16>) {
        self.span.retries.push(RetryEvent {
            unix_nanos: unix_nanos(SystemTime::now()),
            endpoint: endpoint.clone(),
            reason,
            status,
        });
    }

    /// The finished span, ending at `at`.
    pub fn finish(self, end: &SpanEnd<'_>, at: SystemTime) -> FinishedSpan {
        let mut span = self.span;
        span.end_unix_nanos = unix_nanos(at).max(span.start_unix_nanos);
        span.status = end.status;
        span.names = end.names.cloned();
        span.endpoint = end.endpoint.cloned();
        span.error = end.error;
        span.peer_identity = end.peer_identity.cloned();
        span.client_ip = end.client_ip.cloned();
        span
    }
}

/// An attribute value as the encoder writes it, borrowed from the span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// A string.
    Str(&'a str),
    /// An integer.
    Int(i64),
}

/// Why a span's status is error: weir's own error code, or the upstream's 5xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanError {
    /// weir made the response (or the upstream broke it off): its `weir-error` code.
    Weir(&'static str),
    /// The upstream answered this 5xx status.
    Status(u16),
}

impl FinishedSpan {
    /// The route's name, when a route matched.
    pub fn route(&self) -> Option<&str> {
        self.names.as_deref().map(|n| &*n.route)
    }

    /// Error for a 5xx and for every error weir answered itself; `None` leaves the status
    /// unset (a 4xx from the application is the client's business, per OpenTelemetry's
    /// HTTP conventions).
    pub fn error(&self) -> Option<SpanError> {
        match (self.error, self.status) {
            (Some(code), _) => Some(SpanError::Weir(code)),
            (None, status @ 500..=599) => Some(SpanError::Status(status)),
            _ => None,
        }
    }

    /// Calls `f` with each attribute, in a fixed order: OpenTelemetry's HTTP semantic
    /// conventions, then weir's own.
    pub fn attributes<'a>(&'a self, mut f: impl FnMut(&'static str, Value<'a>)) {
        f("http.request.method", Value::Str(self.method.as_str()));
        f("url.path", Value::Str(&self.path));
        if self.status != 0 {
            f("http.response.status_code", Value::Int(self.status.into()));
        }
        if let Some((host, port)) = self.authority.as_deref().map(split_host_port) {
            f("server.address", Value::Str(host));
            if let Some(port) = port {
                f("server.port", Value::Int(port.into()));
            }
        }
        let client_ip = self.client_ip.as_ref().and_then(|ip| ip.to_str().ok());
        match self.kind {
            SpanKind::Server => {
                if let Some(ip) = client_ip {
                    f("client.address", Value::Str(ip));
                    f("network.peer.address", Value::Str(ip));
                }
            }
            SpanKind::Client => {
                if let Some((ip, port)) = self.endpoint.as_deref().map(split_host_port) {
                    f("network.peer.address", Value::Str(ip));
                    if let Some(port) = port {
                        f("network.peer.port", Value::Int(port.into()));
                    }
                }
            }
        }
        if let Some(names) = &self.names {
            f("weir.route", Value::Str(&names.route));
            f("weir.service", Value::Str(&names.service));
        }
        if let Some(endpoint) = &self.endpoint {
            f("weir.endpoint", Value::Str(endpoint));
        }
        if let Some(code) = self.error {
            f("weir.error", Value::Str(code));
        }
        f("weir.retries", Value::Int(self.retries.len() as i64));
        if let Some(peer) = &self.peer_identity {
            f("weir.peer.identity", Value::Str(peer));
        }
    }
}

impl RetryEvent {
    /// Calls `f` with each attribute of the event: the attempt that follows, the endpoint
    /// that failed, why, and its status when it answered.
    pub fn attributes<'a>(&'a self, attempt: i64, mut f: impl FnMut(&'static str, Value<'a>)) {
        f("weir.attempt", Value::Int(attempt));
        f("weir.endpoint", Value::Str(&self.endpoint));
        f("weir.retry_reason", Value::Str(self.reason));
        if let Some(status) = self.status {
            f("http.response.status_code", Value::Int(status.into()));
        }
    }
}

/// `host:port` (or `[v6]:port`, or a host alone) as host and port.
fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    // Digits from the end, read as they are found: a port is a few of them, so this is
    // shorter than a search and a parse.
    let bytes = authority.as_bytes();
    let mut port: u32 = 0;
    let mut scale: u32 = 1;
    let mut at = bytes.len();
    while at > 0 && bytes[at - 1].is_ascii_digit() && scale <= 10_000 {
        port += u32::from(bytes[at - 1] - b'0') * scale;
        scale *= 10;
        at -= 1;
    }
    let (host, port) = match at.checked_sub(1) {
        Some(colon) if bytes[colon] == b':' && scale > 1 && at + 5 >= bytes.len() => {
            (&authority[..colon], u16::try_from(port).ok())
        }
        _ => (authority, None),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(span: &FinishedSpan) -> Vec<(&'static str, Value<'_>)> {
        let mut out = Vec::new();
        span.attributes(|k, v| out.push((k, v)));
        out
    }

    fn attribute<'a>(span: &'a FinishedSpan, key: &str) -> Option<Value<'a>> {
        let mut found = None;
        span.attributes(|k, v| {
            if k == key {
                found = Some(v);
            }
        });
        found
    }

    #[test]
    fn a_client_span_names_its_route_endpoint_retries_and_error() {
        let req = Request::get("http://reviews:9080/r/1?secret=x")
            .body(())
            .expect("request");
        let start = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10);
        let ids = (TraceId([1; 16]), SpanId([2; 8]), Some(SpanId([3; 8])));
        let mut rec = Recording::start(&req, SpanKind::Client, ids, None, start);
        rec.retry(&Arc::from("10.0.0.1:80"), "connect_failure", None);
        let names = Arc::new(SpanNames {
            route: "reviews".into(),
            service: "reviews-v1".into(),
        });
        let endpoint: Arc<str> = Arc::from("10.0.0.2:8080");
        let span = rec.finish(
            &SpanEnd {
                status: 502,
                names: Some(&names),
                endpoint: Some(&endpoint),
                error: Some("connect_failed"),
                ..SpanEnd::default()
            },
            start + std::time::Duration::from_millis(5),
        );
        assert_eq!(span.route(), Some("reviews"));
        assert_eq!(span.end_unix_nanos - span.start_unix_nanos, 5_000_000);
        assert_eq!(
            attributes(&span),
            [
                ("http.request.method", Value::Str("GET")),
                ("url.path", Value::Str("/r/1")),
                ("http.response.status_code", Value::Int(502)),
                ("server.address", Value::Str("reviews")),
                ("server.port", Value::Int(9080)),
                ("network.peer.address", Value::Str("10.0.0.2")),
                ("network.peer.port", Value::Int(8080)),
                ("weir.route", Value::Str("reviews")),
                ("weir.service", Value::Str("reviews-v1")),
                ("weir.endpoint", Value::Str("10.0.0.2:8080")),
                ("weir.error", Value::Str("connect_failed")),
                ("weir.retries", Value::Int(1)),
            ]
        );
        assert_eq!(span.error(), Some(SpanError::Weir("connect_failed")));
        let mut event = Vec::new();
        span.retries[0].attributes(2, |k, v| event.push((k, v)));
        assert_eq!(
            event,
            [
                ("weir.attempt", Value::Int(2)),
                ("weir.endpoint", Value::Str("10.0.0.1:80")),
                ("weir.retry_reason", Value::Str("connect_failure")),
            ]
        );
    }

    #[test]
    fn a_server_span_errors_on_5xx_only_and_names_its_client() {
        let req = Request::get("/")
            .header("host", "[::1]:8080")
            .body(())
            .expect("request");
        let start = SystemTime::now();
        let ip = HeaderValue::from_static("10.1.1.1");
        let peer: Arc<str> = Arc::from("spiffe://td/ns/a/sa/b");
        let ended = |status| {
            let ids = (TraceId([1; 16]), SpanId([2; 8]), None);
            Recording::start(&req, SpanKind::Server, ids, None, start).finish(
                &SpanEnd {
                    status,
                    client_ip: Some(&ip),
                    peer_identity: Some(&peer),
                    ..SpanEnd::default()
                },
                start,
            )
        };
        assert_eq!(
            ended(404).error(),
            None,
            "a 4xx from the app is the client's"
        );
        assert_eq!(ended(503).error(), Some(SpanError::Status(503)));
        let span = ended(200);
        assert_eq!(span.route(), None);
        assert_eq!(attribute(&span, "server.address"), Some(Value::Str("::1")));
        assert_eq!(attribute(&span, "server.port"), Some(Value::Int(8080)));
        assert_eq!(
            attribute(&span, "network.peer.address"),
            Some(Value::Str("10.1.1.1"))
        );
        assert_eq!(
            attribute(&span, "client.address"),
            Some(Value::Str("10.1.1.1"))
        );
        assert_eq!(
            attribute(&span, "weir.peer.identity"),
            Some(Value::Str("spiffe://td/ns/a/sa/b"))
        );
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(split_host_port("a:80"), ("a", Some(80)));
        assert_eq!(split_host_port("a"), ("a", None));
        assert_eq!(split_host_port("[::1]"), ("::1", None));
        assert_eq!(split_host_port("[::1]:9"), ("::1", Some(9)));
        assert_eq!(split_host_port("a:x"), ("a:x", None));
        assert_eq!(split_host_port("a:"), ("a:", None));
        assert_eq!(split_host_port("a:65535"), ("a", Some(65535)));
        assert_eq!(split_host_port("a:65536"), ("a", None), "not a port");
        assert_eq!(split_host_port("a:123456"), ("a:123456", None));
    }
}
