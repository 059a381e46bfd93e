//! Traffic mirroring: a copy of a share of a route's requests goes to a shadow service, fire
//! and forget, so a new version can be tried on real traffic without its answers (or its
//! failures, or its slowness) ever reaching the client.
//!
//! As in Envoy, the copy's host gets `-shadow` appended (before any port), so the shadow's
//! logs tell copies apart, and a copy whose request body was not buffered is not sent.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{request, Request, StatusCode};
use tokio::sync::Semaphore;

use crate::body::RequestBody;
use crate::config::{format_duration, UpstreamProtocol};
use crate::headers;
use crate::rand;
use crate::upstream::service::Service;
use crate::upstream::{Exchange, Judged};

/// Copies one [`Mirror`] keeps in flight at most; beyond it copies are dropped, so a slow
/// shadow service costs bounded memory and sockets, never latency.
pub const MIRROR_CONCURRENCY: usize = 64;

/// How long a copy may take, response body included, before it is abandoned (Envoy bounds
/// a shadow request by the route timeout, 15 s by default).
const DEFAULT_MIRROR_TIMEOUT: Duration = Duration::from_secs(15);

/// A route's mirror: the shadow service, the share of requests copied to it, and the bound
/// on copies in flight.
#[derive(Debug)]
pub struct Mirror {
    service: Arc<Service>,
    percent: f64,
    timeout: Duration,
    permits: Arc<Semaphore>,
    dropped: AtomicU64,
}

// === impl Mirror ===

impl Mirror {
    /// Mirrors `percent` (0–100) of requests to `service`.
    pub fn new(service: Arc<Service>, percent: f64) -> Self {
        Mirror {
            service,
            percent,
            timeout: DEFAULT_MIRROR_TIMEOUT,
            permits: Arc::new(Semaphore::new(MIRROR_CONCURRENCY)),
            dropped: AtomicU64::new(0),
        }
    }

    /// Bounds each copy by `timeout` (pass the route timeout) instead of the 15 s default.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// With probability `percent`, sends a copy of the request to the shadow service in a
    /// task of its own and returns at once; the response is read and discarded.
    ///
    /// `parts` is the request as weir sends it upstream; `body` its buffered body, `None`
    /// for a request without one. A request that declares a body (`content-length` above
    /// 0, `transfer-encoding`) but comes with `None` was not buffered and is not mirrored:
    /// an empty copy would be a different request. Errors are logged at debug level only.
    pub fn maybe_send(&self, parts: &request::Parts, body: Option<&Bytes>) {
        if !rand::chance(self.percent) {
            return;
        }
        if body.is_none() && declares_body(&parts.headers) {
            tracing::debug!(service = %self.service.name, "mirror skipped: the body was not buffered");
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.drop_copy("no runtime");
        };
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return self.drop_copy("too many copies in flight");
        };
        let Some(endpoint) = self.service.pick(&parts.headers) else {
            return self.drop_copy("no healthy endpoint");
        };
        let Some(request) = shadow_request(parts, body, self.service.protocol, &self.service.name)
        else {
            return self.drop_copy("the shadow host is not a valid authority");
        };
        let timeout = self.timeout;
        let service = self.service.name.clone();
        runtime.spawn(async move {
            let _permit = permit;
            let label = endpoint.label.clone();
            match tokio::time::timeout(timeout, copy(Exchange::mirror(endpoint), request)).await {
                Ok(Ok(status)) => {
                    tracing::debug!(%service, endpoint = %label, %status, "mirror answered");
                }
                Ok(Err(error)) => {
                    tracing::debug!(%service, endpoint = %label, %error, "mirror failed");
                }
                Err(_) => {
                    tracing::debug!(%service, endpoint = %label, timeout = %format_duration(timeout), "mirror timed out");
                }
            }
        });
    }

    /// Copies not sent: no permit free (see [`MIRROR_CONCURRENCY`]), no endpoint in rotation,
    /// or no host that could be made a shadow host.
    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Copies in flight now.
    #[cfg(test)]
    fn in_flight(&self) -> usize {
        MIRROR_CONCURRENCY - self.permits.available_permits()
    }

    fn drop_copy(&self, why: &'static str) {
        self.dropped.fetch_add(1, Relaxed);
        tracing::debug!(service = %self.service.name, why, "mirror copy dropped");
    }
}

/// Whether the request says it has a body.
fn declares_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// `host` with `-shadow` appended to the name, before any port (as Envoy does):
/// `reviews:9080` becomes `reviews-shadow:9080`.
fn shadow_host(host: &str) -> String {
    match host.rsplit_once(':') {
        Some((name, port))
            if !name.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{name}-shadow:{port}")
        }
        _ => format!("{host}-shadow"),
    }
}

/// The copy: same method, path and headers, a shadow host, the target in the form the
/// shadow service's HTTP version needs, and a body of `body`.
fn shadow_request(
    parts: &request::Parts,
    body: Option<&Bytes>,
    protocol: UpstreamProtocol,
    service: &str,
) -> Option<Request<RequestBody>> {
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .map_or_else(|| format!("{service}-shadow"), shadow_host);
    let mut copy = Request::new(RequestBody::Full(body.filter(|b| !b.is_empty()).cloned()));
    *copy.method_mut() = parts.method.clone();
    *copy.uri_mut() = Uri::from(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    *copy.headers_mut() = parts.headers.clone();
    let (mut copy, body) = copy.into_parts();
    headers::strip_connection_fields(&mut copy.headers);
    // The copy's length is its body's; hyper writes it.
    copy.headers.remove(header::CONTENT_LENGTH);
    copy.headers
        .insert(header::HOST, HeaderValue::from_str(&host).ok()?);
    headers::set_target(&mut copy, protocol, &host);
    Some(Request::from_parts(copy, body))
}

/// Sends the copy and reads its response to the end, discarding it, so the connection can
/// be reused.
async fn copy(mut exchange: Exchange, request: Request<RequestBody>) -> Result<StatusCode, String> {
    match exchange.send(request, None).await {
        Judged::Response(response) => {
            let status = response.status();
            exchange.discard(response.into_body(), usize::MAX).await?;
            Ok(status)
        }
        Judged::Upstream(_, failure) => Err(failure.to_string()),
        Judged::Client(fault) => Err(fault.to_string()),
        Judged::Refused(overflow) => Err(overflow.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::time::Instant;

    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::net::TcpListener;

    use super::*;
    use crate::telemetry::metrics::Metrics;
    use crate::test_support::eventually;

    /// What the shadow upstream saw of one request.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Seen {
        method: String,
        path: String,
        host: String,
        body: Bytes,
    }

    /// A shadow upstream on a free port (HTTP/1.1 and HTTP/2) that records every request
    /// when its headers arrive; answers 200 once it read the body, or never when `stall`.
    async fn upstream(stall: bool) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let handler = service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let host = req
                                .headers()
                                .get(header::HOST)
                                .and_then(|h| h.to_str().ok())
                                .or_else(|| req.uri().authority().map(|a| a.as_str()))
                                .unwrap_or_default()
                                .to_string();
                            let method = req.method().to_string();
                            let path = req
                                .uri()
                                .path_and_query()
                                .map_or("", |p| p.as_str())
                                .to_string();
                            if stall {
                                log.lock().expect("log").push(Seen {
                                    method,
                                    path,
                                    host,
                                    body: Bytes::new(),
                                });
                                return std::future::pending().await;
                            }
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            log.lock().expect("log").push(Seen {
                                method,
                                path,
                                host,
                                body,
                            });
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                                b"ok",
                            ))))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), handler)
                        .await;
                });
            }
        });
        (address, seen)
    }

    fn service(address: SocketAddr, protocol: &str) -> Arc<Service> {
        let text = format!(
            "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        backends: [{{ service: shadow }}]\nservices:\n  - {{ name: shadow, endpoints: [\"{address}\"], protocol: {protocol} }}\n"
        );
        let config = crate::config::load_str("t.yaml", &text)
            .expect("valid")
            .config;
        Service::new(&config.services[0], vec![], Metrics::new())
    }

    fn parts(host: &str, body_len: Option<usize>) -> request::Parts {
        let mut req = Request::post("/reviews/1?x=1")
            .header(header::HOST, host)
            .header(header::CONNECTION, "keep-alive")
            .header("x-user", "u1");
        if let Some(len) = body_len {
            req = req.header(header::CONTENT_LENGTH, len);
        }
        req.body(()).expect("request").into_parts().0
    }

    fn count(seen: &Mutex<Vec<Seen>>) -> usize {
        seen.lock().expect("log").len()
    }

    #[tokio::test]
    async fn about_the_configured_share_of_requests_is_mirrored() {
        let (address, seen) = upstream(false).await;
        let mirror = Mirror::new(service(address, "http1"), 10.0);
        let request = parts("reviews:9080", None);
        for batch in 0..20 {
            for _ in 0..50 {
                mirror.maybe_send(&request, None);
            }
            assert!(
                eventually(Duration::from_secs(5), || mirror.in_flight() == 0).await,
                "batch {batch} never finished"
            );
        }
        let mirrored = count(&seen);
        // 10% of 1000 is 100 (σ ≈ 9.5); allow four points either way.
        assert!(
            (60..=140).contains(&mirrored),
            "{mirrored} of 1000 mirrored at 10%"
        );
        assert_eq!(mirror.dropped(), 0);
    }

    #[tokio::test]
    async fn zero_percent_mirrors_nothing() {
        let (address, seen) = upstream(false).await;
        let mirror = Mirror::new(service(address, "http1"), 0.0);
        for _ in 0..1000 {
            mirror.maybe_send(&parts("reviews", None), None);
        }
        assert_eq!((mirror.in_flight(), mirror.dropped()), (0, 0));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(count(&seen), 0);
    }

    #[tokio::test]
    async fn the_copy_keeps_method_path_and_body_and_its_host_carries_shadow() {
        for protocol in ["http1", "http2"] {
            let (address, seen) = upstream(false).await;
            let mirror = Mirror::new(service(address, protocol), 100.0);
            mirror.maybe_send(
                &parts("reviews:9080", Some(5)),
                Some(&Bytes::from_static(b"hello")),
            );
            mirror.maybe_send(&parts("reviews", None), None);
            assert!(
                eventually(Duration::from_secs(5), || count(&seen) == 2).await,
                "{protocol}: copies never arrived"
            );
            let mut got = seen.lock().expect("log").clone();
            got.sort_by(|a, b| a.host.cmp(&b.host));
            let expect = |host: &str, body: &'static [u8]| Seen {
                method: "POST".into(),
                path: "/reviews/1?x=1".into(),
                host: host.into(),
                body: Bytes::from_static(body),
            };
            assert_eq!(
                got,
                vec![
                    expect("reviews-shadow", b""),
                    expect("reviews-shadow:9080", b"hello")
                ],
                "{protocol}"
            );
        }
    }

    #[tokio::test]
    async fn a_request_whose_body_was_not_buffered_is_not_mirrored() {
        let (address, seen) = upstream(false).await;
        let mirror = Mirror::new(service(address, "http1"), 100.0);
        mirror.maybe_send(&parts("reviews", Some(100_000)), None);
        assert_eq!((mirror.in_flight(), mirror.dropped()), (0, 0));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(count(&seen), 0);
    }

    #[tokio::test]
    async fn a_stalled_shadow_never_blocks_the_caller_and_at_most_64_copies_are_in_flight() {
        let (address, seen) = upstream(true).await;
        let mirror = Mirror::new(service(address, "http1"), 100.0);
        let request = parts("reviews", None);
        let started = Instant::now();
        for _ in 0..200 {
            mirror.maybe_send(&request, None);
        }
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "200 calls took {took:?}");
        assert_eq!(mirror.in_flight(), 64);
        assert_eq!(mirror.dropped(), 136);
        assert!(
            eventually(Duration::from_secs(5), || count(&seen) == 64).await,
            "{} arrived",
            count(&seen)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!((count(&seen), mirror.in_flight()), (64, 64));
        mirror.maybe_send(&request, None);
        assert_eq!(mirror.dropped(), 137);
    }

    #[tokio::test]
    async fn a_copy_that_times_out_gives_its_slot_back() {
        let (address, seen) = upstream(true).await;
        let mirror =
            Mirror::new(service(address, "http1"), 100.0).with_timeout(Duration::from_millis(100));
        for _ in 0..64 {
            mirror.maybe_send(&parts("reviews", None), None);
        }
        assert_eq!(mirror.in_flight(), 64);
        assert!(
            eventually(Duration::from_secs(5), || mirror.in_flight() == 0).await,
            "slots never came back"
        );
        assert_eq!(count(&seen), 64);
        mirror.maybe_send(&parts("reviews", None), None);
        assert_eq!((mirror.in_flight(), mirror.dropped()), (1, 0));
    }

    #[test]
    fn shadow_host_goes_before_the_port() {
        assert_eq!(shadow_host("reviews"), "reviews-shadow");
        assert_eq!(shadow_host("reviews.shop:9080"), "reviews.shop-shadow:9080");
        assert_eq!(shadow_host("10.0.0.1:80"), "10.0.0.1-shadow:80");
    }
}
