//! One sampled request's span while it is in flight, and the attributes it ends with
//! (OpenTelemetry's HTTP semantic conventions, plus `weir.*`).

use std::time::SystemTime;

use http::uri::Authority;
use http::{Method, Request};

use super::{Attribute, AttributeValue, FinishedSpan, SpanEvent, SpanId, SpanKind, TraceId};

/// A sampled request's span, from its start until its response ends. Boxed in the request:
/// an unsampled request carries only a `None`.
#[derive(Debug)]
pub struct Recording {
    trace_id: TraceId,
    span_id: SpanId,
    parent: Option<SpanId>,
    trace_state: Option<String>,
    kind: SpanKind,
    start_unix_nanos: u64,
    method: Method,
    path: String,
    /// The host and port the request was addressed to (`:authority` or `host`).
    server: Option<Authority>,
    events: Vec<SpanEvent>,
    retries: u32,
}

/// What a request's span ends with: where it went and how it ended.
#[derive(Debug, Default)]
pub struct SpanEnd<'a> {
    /// Status sent to the client (499 when it left first).
    pub status: u16,
    /// The matched route (empty when none).
    pub route: &'a str,
    /// The chosen service (empty when none).
    pub service: &'a str,
    /// The endpoint of the last attempt (empty when none).
    pub endpoint: &'a str,
    /// weir's error code when weir made the response or the upstream broke it off.
    pub error: &'a str,
    /// The client's SPIFFE identity, when it came over mutual TLS.
    pub peer_identity: Option<&'a str>,
    /// The client's IP address.
    pub client_ip: &'a str,
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
        trace_id: TraceId,
        span_id: SpanId,
        parent: Option<SpanId>,
        trace_state: Option<String>,
        at: SystemTime,
    ) -> Self {
        let server = req.uri().authority().cloned().or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        });
        Recording {
            trace_id,
            span_id,
            parent,
            trace_state,
            kind,
            start_unix_nanos: unix_nanos(at),
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            server,
            events: Vec::new(),
            retries: 0,
        }
    }

    /// The trace the span belongs to (for exemplars).
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span's own id (for exemplars).
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// Notes that the attempt at `endpoint` failed with `reason` (and `status`, when it was
    /// answered) and is retried: one `retry` event, naming the attempt that follows.
    pub fn retry(&mut self, endpoint: &str, reason: &'static str, status: Option<u16>) {
        self.retries += 1;
        let mut attributes = vec![
            (
                "weir.attempt",
                AttributeValue::Int(i64::from(self.retries) + 1),
            ),
            ("weir.endpoint", AttributeValue::Text(endpoint.to_owned())),
            ("weir.retry_reason", AttributeValue::Static(reason)),
        ];
        if let Some(status) = status {
            attributes.push((
                "http.response.status_code",
                AttributeValue::Int(status.into()),
            ));
        }
        self.events.push(SpanEvent {
            name: "retry",
            unix_nanos: unix_nanos(SystemTime::now()),
            attributes,
        });
    }

    /// The finished span, ending now.
    pub fn finish(self, end: &SpanEnd<'_>, at: SystemTime) -> FinishedSpan {
        let text = |s: &str| AttributeValue::Text(s.to_owned());
        let mut attributes: Vec<Attribute> = Vec::with_capacity(14);
        attributes.push(("http.request.method", text(self.method.as_str())));
        attributes.push(("url.path", AttributeValue::Text(self.path)));
        if end.status != 0 {
            attributes.push((
                "http.response.status_code",
                AttributeValue::Int(i64::from(end.status)),
            ));
        }
        if let Some(server) = &self.server {
            attributes.push(("server.address", text(server.host())));
            if let Some(port) = server.port_u16() {
                attributes.push(("server.port", AttributeValue::Int(i64::from(port))));
            }
        }
        match self.kind {
            SpanKind::Server => {
                attributes.push(("client.address", text(end.client_ip)));
                attributes.push(("network.peer.address", text(end.client_ip)));
            }
            SpanKind::Client => {
                if let Some((ip, port)) = end.endpoint.rsplit_once(':') {
                    let ip = ip.trim_start_matches('[').trim_end_matches(']');
                    attributes.push(("network.peer.address", text(ip)));
                    if let Ok(port) = port.parse::<u16>() {
                        attributes.push(("network.peer.port", AttributeValue::Int(port.into())));
                    }
                }
            }
        }
        for (key, value) in [
            ("weir.route", end.route),
            ("weir.service", end.service),
            ("weir.endpoint", end.endpoint),
            ("weir.error", end.error),
        ] {
            if !value.is_empty() {
                attributes.push((key, text(value)));
            }
        }
        attributes.push(("weir.retries", AttributeValue::Int(self.retries.into())));
        if let Some(peer) = end.peer_identity {
            attributes.push(("weir.peer.identity", text(peer)));
        }
        let error = if !end.error.is_empty() {
            Some(end.error.to_owned())
        } else if end.status >= 500 {
            Some(format!("HTTP {}", end.status))
        } else {
            None
        };
        let name = match end.route {
            "" => self.method.as_str().to_owned(),
            route => format!("{} {route}", self.method),
        };
        FinishedSpan {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent: self.parent,
            trace_state: self.trace_state,
            kind: self.kind,
            name,
            start_unix_nanos: self.start_unix_nanos,
            end_unix_nanos: unix_nanos(at).max(self.start_unix_nanos),
            attributes,
            events: self.events,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute<'a>(span: &'a FinishedSpan, key: &str) -> Option<&'a AttributeValue> {
        span.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    #[test]
    fn a_client_span_names_its_route_endpoint_retries_and_error() {
        let req = Request::get("http://reviews:9080/r/1?secret=x")
            .body(())
            .expect("request");
        let start = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10);
        let mut rec = Recording::start(
            &req,
            SpanKind::Client,
            TraceId([1; 16]),
            SpanId([2; 8]),
            Some(SpanId([3; 8])),
            None,
            start,
        );
        rec.retry("10.0.0.1:80", "connect_failure", None);
        let span = rec.finish(
            &SpanEnd {
                status: 502,
                route: "reviews",
                service: "reviews-v1",
                endpoint: "10.0.0.2:8080",
                error: "connect_failed",
                client_ip: "127.0.0.1",
                ..SpanEnd::default()
            },
            start + std::time::Duration::from_millis(5),
        );
        assert_eq!(span.name, "GET reviews");
        assert_eq!(span.end_unix_nanos - span.start_unix_nanos, 5_000_000);
        assert_eq!(
            attribute(&span, "url.path"),
            Some(&AttributeValue::Text("/r/1".into())),
            "the query is not recorded"
        );
        assert_eq!(
            attribute(&span, "server.address"),
            Some(&AttributeValue::Text("reviews".into()))
        );
        assert_eq!(
            attribute(&span, "server.port"),
            Some(&AttributeValue::Int(9080))
        );
        assert_eq!(
            attribute(&span, "network.peer.address"),
            Some(&AttributeValue::Text("10.0.0.2".into()))
        );
        assert_eq!(
            attribute(&span, "weir.retries"),
            Some(&AttributeValue::Int(1))
        );
        assert_eq!(span.events.len(), 1);
        assert_eq!(span.error.as_deref(), Some("connect_failed"));
        assert_eq!(attribute(&span, "client.address"), None);
    }

    #[test]
    fn a_server_span_errors_on_5xx_only() {
        let req = Request::get("/")
            .header("host", "app")
            .body(())
            .expect("request");
        let start = SystemTime::now();
        let ok = |status| {
            Recording::start(
                &req,
                SpanKind::Server,
                TraceId([1; 16]),
                SpanId([2; 8]),
                None,
                None,
                start,
            )
            .finish(
                &SpanEnd {
                    status,
                    client_ip: "10.1.1.1",
                    peer_identity: Some("spiffe://td/ns/a/sa/b"),
                    ..SpanEnd::default()
                },
                start,
            )
        };
        assert_eq!(ok(404).error, None, "a 4xx from the app is the client's");
        assert_eq!(ok(503).error.as_deref(), Some("HTTP 503"));
        let span = ok(200);
        assert_eq!(span.name, "GET");
        assert_eq!(
            attribute(&span, "weir.peer.identity"),
            Some(&AttributeValue::Text("spiffe://td/ns/a/sa/b".into()))
        );
        assert_eq!(
            attribute(&span, "network.peer.address"),
            Some(&AttributeValue::Text("10.1.1.1".into()))
        );
    }
}
