//! A client's fault is never held against an upstream: malformed request bodies, uploads
//! abandoned half-way and clients too slow to send their body are answered (400, 499, 408)
//! without ejecting the endpoint or opening the circuit breaker, and a well-behaved client
//! is served right after. Each test sends the hostile bytes over a raw socket.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use weir::telemetry::prometheus_text::metric_sum;

use super::{a_good_client_is_served, local};
use crate::support::{endpoint_state, eventually, free_port, metric_settles, Upstream, Weir};

/// One listener in front of service `victim`, whose outlier detection ejects after 3
/// failures and whose breaker opens after 3 requests at 50 % failures: a handful of
/// failures blamed on it would show at once.
fn config(port: u16, up: SocketAddr, route_extra: &str) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: info, format: text, access_log: true }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: all\n{route_extra}        backends: [{{ service: victim }}]\nservices:\n  - name: victim\n    endpoints: [\"{up}\"]\n    outlier_detection: {{ consecutive_5xx: 3, consecutive_gateway_errors: 3, interval: 10s, base_ejection_time: 30s, max_ejection_percent: 100 }}\n    circuit_breaker: {{ window: 10s, buckets: 10, request_volume_threshold: 3, error_threshold_percent: 50, sleep_window: 5s, half_open_requests: 1 }}\n"
    )
}

/// Sends `bytes` on a new connection, optionally closes the write side, then reads the
/// answer's head (or until the connection ends, 3 s at most); returns it lower-cased.
async fn send_raw(port: u16, bytes: &[u8], close: bool) -> String {
    let mut stream = TcpStream::connect(local(port)).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    if close {
        // Leaves half-way: drop the whole connection, as a client that gave up does.
        drop(stream);
        return String::new();
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer).to_lowercase()
}

/// The endpoint is in rotation, was never ejected, the breaker is closed, and a
/// well-behaved client is served by the upstream.
async fn upstream_unharmed(weir: &Weir, port: u16, up: &Upstream) {
    let state = endpoint_state(weir, "victim", up.addr).await;
    assert_eq!(state.map(|s| s.0).as_deref(), Some("healthy"));
    let metrics = weir.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_outlier_ejections_total",
            &[("service", "victim")]
        ),
        0.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_circuit_breaker_state",
            &[("service", "victim"), ("state", "closed")]
        ),
        1.0,
        "{metrics}"
    );
    let hits = up.hits();
    a_good_client_is_served(port, "victim", Duration::ZERO).await;
    assert_eq!(up.hits(), hits + 1, "the good request reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunked_bodies_get_400_bad_request_and_never_eject_the_endpoint() {
    let up = Upstream::start("victim").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, "")).await;
    for _ in 0..5 {
        // A valid first chunk, then a chunk-size line that is not hexadecimal.
        let answer = send_raw(
            port,
            b"POST /upload HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\nxyz\r\n0\r\n\r\n",
            false,
        )
        .await;
        assert!(answer.starts_with("http/1.1 400"), "{answer}");
        assert!(answer.contains("weir-error: bad_request"), "{answer}");
    }
    assert_eq!(
        metric_settles(
            &weir,
            "weir_http_requests_total",
            &[
                ("service", "victim"),
                ("code", "400"),
                ("error", "bad_request")
            ],
            5.0
        )
        .await,
        5.0
    );
    upstream_unharmed(&weir, port, &up).await;
    // The bodies stream: each request reached the upstream before its body broke.
    assert_eq!(up.paths(), [["/upload"; 5].as_slice(), &["/good"]].concat());
    assert!(
        eventually(Duration::from_secs(2), || weir
            .logs()
            .contains("error=bad_request"))
        .await,
        "{}",
        weir.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_abandoned_half_way_are_499_and_never_open_the_breaker() {
    let up = Upstream::start("victim").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, "")).await;
    for _ in 0..5 {
        let before = up.hits();
        let mut stream = TcpStream::connect(local(port)).await.expect("connect");
        stream
            .write_all(
                b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123456789",
            )
            .await
            .expect("write");
        // Wait until the upstream has the request, then give up half-way.
        eventually(Duration::from_secs(3), || up.hits() > before).await;
        assert_eq!(up.hits(), before + 1, "the upload reached the upstream");
        drop(stream);
    }
    assert_eq!(
        metric_settles(
            &weir,
            "weir_http_requests_total",
            &[("service", "victim"), ("code", "499")],
            5.0
        )
        .await,
        5.0,
        "{}",
        weir.metrics().await
    );
    upstream_unharmed(&weir, port, &up).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_too_slow_to_send_a_streamed_body_gets_408_and_the_breaker_stays_closed() {
    let up = Upstream::start("victim").await;
    let port = free_port();
    let weir = Weir::start(&config(port, up.addr, "        timeout: 300ms\n")).await;
    for _ in 0..5 {
        let started = Instant::now();
        // Promise 100 bytes, send 10, then wait: the upstream waits for the rest.
        let answer = send_raw(
            port,
            b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789",
            false,
        )
        .await;
        assert!(answer.starts_with("http/1.1 408"), "{answer}");
        assert!(answer.contains("weir-error: client_timeout"), "{answer}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
    upstream_unharmed(&weir, port, &up).await;
    assert_eq!(
        up.hits(),
        6,
        "five slow uploads and the good request reached the upstream"
    );
}
