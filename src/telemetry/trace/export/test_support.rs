//! Test fixtures: spans with every field set, and a collector (a real hyper server on
//! 127.0.0.1) that decodes what it receives and answers as the test tells it.

use std::convert::Infallible;
use std::future::pending;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::telemetry::trace::{
    AttributeValue, FinishedSpan, Resource, RetryEvent, SpanId, SpanKind, SpanNames, TraceId,
};
use http::{HeaderValue, Method};

/// A span with every field set; `n` makes its ids, route (`span {n}`) and path distinct.
pub(super) fn span(n: u8) -> FinishedSpan {
    let start = 1_700_000_000_000_000_000 + u64::from(n) * 1_000;
    FinishedSpan {
        trace_id: TraceId([n.wrapping_add(1); 16]),
        span_id: SpanId([n.wrapping_add(1), 2, 3, 4, 5, 6, 7, 8]),
        parent: Some(SpanId([9, 9, 9, 9, 9, 9, 9, n])),
        trace_state: Some("vendor=value".into()),
        kind: SpanKind::Server,
        start_unix_nanos: start,
        end_unix_nanos: start + 500,
        method: Method::GET,
        path: format!("/reviews/{n}").into(),
        authority: Some("reviews.shop:9080".into()),
        status: 503,
        names: Some(Arc::new(SpanNames {
            route: format!("span {n}").into(),
            service: "reviews-v1".into(),
        })),
        endpoint: Some(Arc::from("10.1.0.1:8080")),
        error: None,
        retries: vec![RetryEvent {
            unix_nanos: start + 200,
            endpoint: Arc::from("10.1.0.2:8080"),
            reason: "retriable_status",
            status: Some(503),
        }],
        peer_identity: Some(Arc::from("spiffe://cluster.local/ns/shop/sa/front")),
        client_ip: Some(HeaderValue::from_static("10.0.0.7")),
    }
}

/// A resource with a static and a text attribute.
pub(super) fn resource() -> Resource {
    Resource {
        attributes: vec![
            ("service.name", AttributeValue::Static("reviews")),
            (
                "k8s.namespace.name",
                AttributeValue::Text("shop".to_owned()),
            ),
        ],
    }
}

/// How the test collector answers.
#[derive(Debug, Clone, Copy)]
pub(super) enum Answer {
    /// With this status and an empty body.
    Status(StatusCode),
    /// Never (reads the request, then holds the connection open).
    Hang,
}

/// One export request as the collector received it.
#[derive(Debug, Clone)]
pub(super) struct Received {
    /// When it arrived.
    pub at: Instant,
    /// Request target.
    pub path: String,
    /// `host` header.
    pub host: Option<String>,
    /// `content-type` header.
    pub content_type: Option<String>,
    /// `content-length` header.
    pub content_length: Option<String>,
    /// Bytes of body actually read.
    pub body_len: usize,
    /// The body, decoded.
    pub request: Result<ExportTraceServiceRequest, prost::DecodeError>,
}

impl Received {
    /// The spans' names, in order (panics if the body did not decode).
    pub fn span_names(&self) -> Vec<String> {
        let request = self.request.as_ref().expect("the body decodes");
        request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.name.clone())
            .collect()
    }
}

#[derive(Debug)]
struct State {
    answer: Mutex<Answer>,
    received: Mutex<Vec<Received>>,
    connections: AtomicUsize,
}

/// A collector on 127.0.0.1 that records what it receives; it stops with the test's runtime.
#[derive(Debug, Clone)]
pub(super) struct Collector {
    /// Where it listens.
    pub address: SocketAddr,
    state: Arc<State>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Collector {
    /// Listens on a free port and answers every request with `answer`.
    pub async fn start(answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let state = Arc::new(State {
            answer: Mutex::new(answer),
            received: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
        });
        let accepting = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepting.connections.fetch_add(1, Ordering::SeqCst);
                let state = accepting.clone();
                let service = service_fn(move |request| answer_export(state.clone(), request));
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Collector { address, state }
    }

    /// `http://127.0.0.1:port/v1/traces`.
    pub fn url(&self) -> String {
        format!("http://{}/v1/traces", self.address)
    }

    /// Answers later requests this way.
    pub fn answer(&self, answer: Answer) {
        *lock(&self.state.answer) = answer;
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// How many requests so far.
    pub fn requests(&self) -> usize {
        lock(&self.state.received).len()
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

async fn answer_export(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (head, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let header = |name: http::header::HeaderName| {
        head.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let received = Received {
        at: Instant::now(),
        path: head.uri.to_string(),
        host: header(http::header::HOST),
        content_type: header(http::header::CONTENT_TYPE),
        content_length: header(http::header::CONTENT_LENGTH),
        body_len: body.len(),
        request: ExportTraceServiceRequest::decode(body),
    };
    lock(&state.received).push(received);
    let answer = *lock(&state.answer);
    match answer {
        Answer::Status(status) => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = status;
            Ok(response)
        }
        Answer::Hang => pending().await,
    }
}

/// A `http://` URL of a port nothing listens on.
pub(super) async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{address}/v1/traces")
}
