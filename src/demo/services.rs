//! The demo's upstream services: small HTTP/1.1 servers on 127.0.0.1 that answer every
//! request with a JSON body naming themselves, after an optional delay, and count what they
//! served. An endpoint can be told to fail: it then answers every request with a 500, which
//! is how the demo's circuit-breaker scenario makes `reviews-v2` go bad and heal again.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The extra time the slow `reviews-v1` endpoint takes for every response.
pub const SLOW_DELAY: Duration = Duration::from_millis(40);

/// One running demo endpoint. Stops serving when dropped.
#[derive(Debug)]
pub struct DemoEndpoint {
    /// The service it belongs to (`reviews-v1`).
    pub service: &'static str,
    /// Where it listens.
    pub address: SocketAddr,
    /// Extra time taken before every response.
    pub delay: Duration,
    hits: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

// === impl DemoEndpoint ===

impl DemoEndpoint {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub async fn start(service: &'static str, delay: Duration) -> std::io::Result<DemoEndpoint> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let hits = Arc::new(AtomicU64::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(serve(
            listener,
            Behaviour {
                service,
                address,
                delay,
                hits: hits.clone(),
                failing: failing.clone(),
            },
        ));
        Ok(DemoEndpoint {
            service,
            address,
            delay,
            hits,
            failing,
            task,
        })
    }

    /// Requests this endpoint has answered (500s included).
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// From now on answer every request with a 500 (`true`) or normally again (`false`).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    /// Whether the endpoint currently answers every request with a 500.
    #[cfg(test)]
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }
}

impl Drop for DemoEndpoint {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

/// The demo's services: `reviews-v1` on a fast and a slow endpoint, `reviews-v2` on one.
#[derive(Debug)]
pub struct DemoServices {
    /// `reviews-v1`'s fast endpoint.
    pub v1_fast: DemoEndpoint,
    /// `reviews-v1`'s slow endpoint ([`SLOW_DELAY`] per response).
    pub v1_slow: DemoEndpoint,
    /// `reviews-v2`'s only endpoint.
    pub v2: DemoEndpoint,
}

// === impl DemoServices ===

impl DemoServices {
    /// Starts all three endpoints.
    pub async fn start() -> std::io::Result<DemoServices> {
        Ok(DemoServices {
            v1_fast: DemoEndpoint::start("reviews-v1", Duration::ZERO).await?,
            v1_slow: DemoEndpoint::start("reviews-v1", SLOW_DELAY).await?,
            v2: DemoEndpoint::start("reviews-v2", Duration::ZERO).await?,
        })
    }

    /// Every endpoint, in the order the configuration lists them.
    pub fn endpoints(&self) -> [&DemoEndpoint; 3] {
        [&self.v1_fast, &self.v1_slow, &self.v2]
    }

    /// Requests answered by all endpoints together.
    pub fn total_hits(&self) -> u64 {
        self.endpoints().iter().map(|e| e.hits()).sum()
    }
}

/// How one endpoint answers, shared by its connections.
#[derive(Debug, Clone)]
struct Behaviour {
    service: &'static str,
    address: SocketAddr,
    delay: Duration,
    hits: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
}

async fn serve(listener: TcpListener, behaviour: Behaviour) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let behaviour = behaviour.clone();
        connections.spawn(async move {
            let handler = service_fn(move |req: Request<Incoming>| {
                let b = behaviour.clone();
                async move {
                    if !b.delay.is_zero() {
                        tokio::time::sleep(b.delay).await;
                    }
                    b.hits.fetch_add(1, Ordering::Relaxed);
                    let response = if b.failing.load(Ordering::Relaxed) {
                        failure(b.service, b.address)
                    } else {
                        answer(b.service, b.address, req.uri().path())
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await;
        });
    }
}

/// The body every demo endpoint answers with: who answered, and a review.
fn answer(service: &str, address: SocketAddr, path: &str) -> Response<Full<Bytes>> {
    let stars = if service == "reviews-v2" { 5 } else { 4 };
    let body = serde_json::json!({
        "service": service,
        "endpoint": address.to_string(),
        "path": path,
        "reviews": [{ "reviewer": "Reviewer1", "stars": stars, "text": "An extremely entertaining play." }],
    });
    json_response(StatusCode::OK, &body)
}

/// What a failing endpoint answers: a 500 naming itself.
fn failure(service: &str, address: SocketAddr) -> Response<Full<Bytes>> {
    let body = serde_json::json!({
        "service": service,
        "endpoint": address.to_string(),
        "error": "the demo made this service fail on purpose",
    });
    json_response(StatusCode::INTERNAL_SERVER_ERROR, &body)
}

/// A JSON response with `status`.
fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answer_names_the_service_and_endpoint() {
        use http_body_util::BodyExt;
        let address = SocketAddr::from(([127, 0, 0, 1], 9080));
        let response = answer("reviews-v2", address, "/reviews/1");
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        let json: serde_json::Value =
            serde_json::from_slice(&body.unwrap_or_default()).unwrap_or_default();
        assert_eq!(json["service"], "reviews-v2");
        assert_eq!(json["endpoint"], "127.0.0.1:9080");
    }

    #[tokio::test]
    async fn a_failing_endpoint_answers_500_until_healed_and_counts_every_hit() {
        let endpoint = DemoEndpoint::start("reviews-v2", Duration::ZERO)
            .await
            .expect("bind");
        let get = || async {
            let stream = tokio::net::TcpStream::connect(endpoint.address)
                .await
                .expect("connect");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            let request = Request::get("/reviews/1")
                .header(header::HOST, "demo")
                .body(http_body_util::Empty::<Bytes>::new())
                .expect("request");
            sender
                .send_request(request)
                .await
                .expect("response")
                .status()
        };
        assert_eq!(get().await, StatusCode::OK);
        endpoint.set_failing(true);
        assert_eq!(get().await, StatusCode::INTERNAL_SERVER_ERROR);
        endpoint.set_failing(false);
        assert_eq!(get().await, StatusCode::OK);
        assert_eq!(endpoint.hits(), 3);
    }
}
