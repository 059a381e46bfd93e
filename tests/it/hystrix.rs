//! `GET /hystrix.stream`: a real HTTP client reads the event stream of a weir whose circuit
//! breaker opens, and holds what it reads against `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use weir::telemetry::prometheus_text::metric_sum;

use crate::support::{eventually, free_port, Client, Upstream, Weir};

/// A service whose breaker opens after 5 failures and stays open for the test, and one
/// without a breaker.
fn yaml(port: u16, flaky: SocketAddr, steady: SocketAddr) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: warn, access_log: false }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: flaky\n        match: {{ path: {{ prefix: /flaky }} }}\n        backends: [{{ service: flaky }}]\n      - name: steady\n        timeout: 2s\n        backends: [{{ service: steady }}]\nservices:\n  - name: flaky\n    endpoints: [\"{flaky}\"]\n    circuit_breaker: {{ window: 10s, buckets: 10, request_volume_threshold: 5, error_threshold_percent: 50, sleep_window: 60s, half_open_requests: 1 }}\n  - name: steady\n    endpoints: [\"{steady}\"]\n"
    )
}

/// An open `/hystrix.stream` response, read event by event.
struct EventStream {
    body: Incoming,
    buffered: String,
    connection: tokio::task::JoinHandle<()>,
}

/// Opens the stream with hyper's HTTP/1.1 client: (status, headers, the stream).
async fn open(admin: SocketAddr) -> (u16, HeaderMap, EventStream) {
    let tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let connection = tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = Request::get("/hystrix.stream")
        .header("host", admin.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let stream = EventStream {
        body,
        buffered: String::new(),
        connection,
    };
    (parts.status.as_u16(), parts.headers, stream)
}

impl EventStream {
    /// The next event's JSON (`: ping` comments skipped), or `None` once the stream ended
    /// (cleanly or not). Fails the test after 5 s without one.
    async fn next(&mut self) -> Option<Value> {
        let read = async {
            loop {
                if let Some(end) = self.buffered.find("\n\n") {
                    let event: String = self.buffered.drain(..end + 2).collect();
                    match event.strip_prefix("data: ") {
                        Some(json) => return Some(serde_json::from_str(json.trim_end()).unwrap()),
                        None => {
                            assert!(
                                event.starts_with(':'),
                                "neither data nor comment: {event:?}"
                            );
                            continue;
                        }
                    }
                }
                match self.body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            self.buffered.push_str(std::str::from_utf8(&data).unwrap());
                        }
                    }
                    Some(Err(_)) | None => return None,
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .expect("an event or the end within 5 s")
    }

    /// The next event of `service`.
    async fn next_of(&mut self, service: &str) -> Value {
        loop {
            let event = self.next().await.expect("the stream goes on");
            if event["name"] == service {
                return event;
            }
        }
    }

    /// Closes the connection, as a dashboard tab that is closed.
    fn close(self) {
        self.connection.abort();
    }
}

/// Fields every event carries, whether its service has a breaker or not.
const FIELDS: [&str; 31] = [
    "type",
    "name",
    "group",
    "currentTime",
    "isCircuitBreakerOpen",
    "errorPercentage",
    "errorCount",
    "requestCount",
    "rollingCountSuccess",
    "rollingCountFailure",
    "rollingCountTimeout",
    "rollingCountShortCircuited",
    "rollingCountThreadPoolRejected",
    "rollingCountSemaphoreRejected",
    "rollingCountFallbackSuccess",
    "rollingCountBadRequests",
    "currentConcurrentExecutionCount",
    "latencyExecute",
    "latencyExecute_mean",
    "latencyTotal",
    "latencyTotal_mean",
    "propertyValue_circuitBreakerEnabled",
    "propertyValue_circuitBreakerRequestVolumeThreshold",
    "propertyValue_circuitBreakerErrorThresholdPercentage",
    "propertyValue_circuitBreakerSleepWindowInMilliseconds",
    "propertyValue_circuitBreakerForceOpen",
    "propertyValue_metricsRollingStatisticalWindowInMilliseconds",
    "propertyValue_executionIsolationStrategy",
    "propertyValue_executionIsolationSemaphoreMaxConcurrentRequests",
    "propertyValue_executionTimeoutInMilliseconds",
    "reportingHosts",
];

fn assert_fields(event: &Value) {
    for field in FIELDS {
        assert!(event.get(field).is_some(), "{field} missing in {event}");
    }
    assert_eq!(event["type"], "HystrixCommand");
    assert_eq!(event["reportingHosts"], 1);
    assert_eq!(
        event["propertyValue_executionIsolationStrategy"],
        "SEMAPHORE"
    );
    for key in ["0", "25", "50", "75", "90", "95", "99", "99.5", "100"] {
        assert!(event["latencyExecute"][key].is_u64(), "{key} in {event}");
        assert!(event["latencyTotal"][key].is_u64(), "{key} in {event}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_shows_the_breaker_as_metrics_do_and_counts_the_traffic() {
    let flaky = Upstream::start("flaky").await;
    flaky.fail(100, 500);
    let steady = Upstream::start("steady").await;
    let port = free_port();
    let weir = Weir::start(&yaml(port, flaky.addr, steady.addr)).await;
    let (status, headers, mut stream) = open(weir.admin).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"].to_str().unwrap(),
        "text/event-stream;charset=UTF-8"
    );

    // Before any traffic: both services, the field set, a closed breaker.
    let before = stream.next_of("flaky").await;
    assert_fields(&before);
    assert_eq!(before["isCircuitBreakerOpen"], false);
    assert_eq!(before["propertyValue_circuitBreakerEnabled"], true);
    assert_eq!(
        before["propertyValue_circuitBreakerRequestVolumeThreshold"],
        5
    );
    assert_eq!(
        before["propertyValue_circuitBreakerErrorThresholdPercentage"],
        50
    );
    assert_eq!(
        before["propertyValue_circuitBreakerSleepWindowInMilliseconds"],
        60_000
    );
    assert_eq!(
        before["propertyValue_metricsRollingStatisticalWindowInMilliseconds"],
        10_000
    );
    let plain = stream.next_of("steady").await;
    assert_fields(&plain);
    assert_eq!(plain["propertyValue_circuitBreakerEnabled"], false);
    assert_eq!(plain["isCircuitBreakerOpen"], false);
    assert_eq!(plain["propertyValue_executionTimeoutInMilliseconds"], 2000);

    // Traffic: 20 successes to steady; failures to flaky until its breaker refuses, then
    // 10 refusals more.
    let mut client = Client::connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    for _ in 0..20 {
        assert_eq!(client.get("/", &[]).await.unwrap().0, 200);
    }
    let (mut failed, mut refused) = (0u64, 0u64);
    while refused == 0 {
        let (status, headers, _) = client.get("/flaky", &[]).await.unwrap();
        match headers.get("weir-error").map(|v| v.to_str().unwrap()) {
            Some("circuit_open") => refused += 1,
            None => {
                assert_eq!(status, 500);
                failed += 1;
            }
            Some(other) => panic!("unexpected {other}"),
        }
        assert!(failed < 50, "the breaker never opened");
    }
    for _ in 0..10 {
        let (status, headers, _) = client.get("/flaky", &[]).await.unwrap();
        assert_eq!(status, 503);
        assert_eq!(headers["weir-error"], "circuit_open");
        refused += 1;
    }

    // Events from before the traffic ended may still be in flight: wait for the one that
    // has seen it all, with /metrics read on both sides of it.
    let mut event = Value::Null;
    let mut metrics_before = String::new();
    for _ in 0..10 {
        metrics_before = weir.metrics().await;
        event = stream.next_of("flaky").await;
        if event["rollingCountShortCircuited"] == refused {
            break;
        }
    }
    let metrics_after = weir.metrics().await;
    let open_gauge = |text: &str| {
        metric_sum(
            text,
            "weir_circuit_breaker_state",
            &[("service", "flaky"), ("state", "open")],
        )
    };
    assert_eq!(open_gauge(&metrics_before), 1.0, "{metrics_before}");
    assert_eq!(open_gauge(&metrics_after), 1.0, "{metrics_after}");
    assert_eq!(event["isCircuitBreakerOpen"], true, "{event}");

    let requests = |labels: &[(&str, &str)]| {
        metric_sum(&metrics_after, "weir_http_requests_total", labels) as u64
    };
    assert_eq!(
        requests(&[("service", "flaky"), ("error", "circuit_open")]),
        refused
    );
    assert_eq!(requests(&[("service", "flaky"), ("code", "500")]), failed);
    assert_eq!(event["rollingCountShortCircuited"], refused, "{event}");
    assert_eq!(event["rollingCountFailure"], failed, "{event}");
    assert_eq!(event["rollingCountSuccess"], 0, "{event}");
    // The health counts are the breaker's window: every request it let through failed.
    assert_eq!(event["errorCount"], failed, "{event}");
    assert_eq!(event["requestCount"], failed, "{event}");
    assert_eq!(event["errorPercentage"], 100, "{event}");
    assert_eq!(event["currentConcurrentExecutionCount"], 0, "{event}");
    assert_fields(&event);

    let plain = stream.next_of("steady").await;
    assert_eq!(requests(&[("service", "steady"), ("code", "200")]), 20);
    assert_eq!(plain["rollingCountSuccess"], 20, "{plain}");
    assert_eq!(plain["rollingCountFailure"], 0, "{plain}");
    assert_eq!(
        (&plain["errorCount"], &plain["requestCount"]),
        (&0.into(), &20.into())
    );
    assert!(
        plain["latencyTotal"]["100"].as_u64().unwrap()
            >= plain["latencyTotal"]["0"].as_u64().unwrap()
    );
    stream.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_client_leaves_and_frees_its_place() {
    let flaky = Upstream::start("flaky").await;
    let steady = Upstream::start("steady").await;
    let weir = Weir::start(&yaml(free_port(), flaky.addr, steady.addr)).await;
    let mut streams = Vec::new();
    for _ in 0..5 {
        let (status, _, mut stream) = open(weir.admin).await;
        assert_eq!(status, 200);
        stream.next().await.expect("an event");
        streams.push(stream);
    }
    let (status, _, _) = open(weir.admin).await;
    assert_eq!(status, 503, "a sixth stream is refused");
    // Probes are still served while the streams are open.
    let mut probe = Client::connect(weir.admin).await.unwrap();
    assert_eq!(probe.get("/ready", &[]).await.unwrap().0, 200);

    streams.pop().expect("a stream").close();
    // weir notices at its next write at the latest (500 ms) and gives the place back.
    let deadline = Instant::now() + Duration::from_secs(3);
    let freed = loop {
        let (status, _, stream) = open(weir.admin).await;
        if status == 200 || Instant::now() >= deadline {
            stream.close();
            break status == 200;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(freed, "the closed stream's place was not given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_does_not_hold_up_shutdown() {
    let flaky = Upstream::start("flaky").await;
    let steady = Upstream::start("steady").await;
    let mut weir = Weir::start(&yaml(free_port(), flaky.addr, steady.addr)).await;
    let (_, _, mut stream) = open(weir.admin).await;
    stream.next().await.expect("an event");
    weir.signal("TERM");
    let mut ended = false;
    for _ in 0..20 {
        if stream.next().await.is_none() {
            ended = true;
            break;
        }
    }
    assert!(ended, "the stream went on after SIGTERM");
    let exited = eventually(Duration::from_secs(5), || {
        matches!(weir.child.try_wait(), Ok(Some(_)))
    })
    .await;
    assert!(exited, "weir did not exit with a stream open");
    let status = weir.child.wait().unwrap();
    assert!(status.success(), "{status:?}\n{}", weir.logs());
}
