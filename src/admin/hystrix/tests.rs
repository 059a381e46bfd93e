use std::sync::atomic::Ordering;

use http_body_util::BodyExt;
use tokio::time::Instant;

use super::*;
use crate::proxy::client_timeouts::{self, Expired};

const CONFIG: &str = "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        backends: [{ service: s }]\nservices:\n  - name: s\n    endpoints: [\"127.0.0.1:2\"]\n    circuit_breaker: { window: 10s, buckets: 10, request_volume_threshold: 20, error_threshold_percent: 50, sleep_window: 5s, half_open_requests: 1 }\n";

fn streams() -> (Streams, watch::Sender<bool>) {
    let config = crate::config::load_str("t.yaml", CONFIG)
        .expect("valid")
        .config;
    let metrics = Metrics::new();
    let snapshot = Snapshot::build(config, &metrics, None).expect("builds");
    let state = AdminState {
        snapshot: Arc::new(ArcSwap::new(snapshot)),
        metrics,
        ready: true.into(),
        identity: None,
        shutdown: watch::channel(false).0,
        reloads: None,
        info: ArcSwap::from_pointee(super::super::ConfigInfo {
            sha256: String::new(),
            source: None,
            loaded_at: std::time::UNIX_EPOCH,
            admin: "127.0.0.1:1".parse().expect("address"),
            listeners: Vec::new(),
        }),
    };
    let (stop, stopped) = watch::channel(false);
    (Streams::new(&state, stopped), stop)
}

/// Opens a stream as the admin server does: the request has started on `clock`.
fn open(streams: &Streams, clock: &Arc<ClientClock>) -> Response<AdminBody> {
    clock.request_started();
    let req = Request::get(PATH).body(()).expect("request");
    streams.answer(&req, clock).expect("the stream's path")
}

fn stream(resp: Response<AdminBody>) -> EventStream {
    match resp.into_body() {
        Either::Right(stream) => stream,
        Either::Left(body) => panic!("not a stream: {body:?}"),
    }
}

async fn next_text(stream: &mut EventStream) -> Option<String> {
    let frame = stream.frame().await?.expect("infallible");
    let data = frame.into_data().expect("a data frame");
    Some(String::from_utf8(data.to_vec()).expect("utf-8"))
}

#[tokio::test(start_paused = true)]
async fn events_come_every_period_and_the_stream_ends_when_weir_stops() {
    let (streams, stop) = streams();
    let clock = ClientClock::new();
    let resp = open(&streams, &clock);
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[CONTENT_TYPE],
        "text/event-stream;charset=UTF-8"
    );
    let mut body = stream(resp);
    let started = Instant::now();
    let first = next_text(&mut body).await.expect("a first batch");
    assert_eq!(started.elapsed(), Duration::ZERO, "the first batch at once");
    assert!(first.starts_with("data: {"), "{first}");
    assert!(first.contains("\"name\":\"s\""), "{first}");
    assert!(first.ends_with("}\n\n"), "{first}");
    let second = next_text(&mut body).await.expect("a second batch");
    assert_eq!(started.elapsed(), PERIOD);
    assert!(second.contains("\"type\":\"HystrixCommand\""));

    stop.send_replace(true);
    assert_eq!(next_text(&mut body).await, None, "the stream ends");
    assert!(body.is_end_stream());
    assert!(
        clock.between_requests().is_none(),
        "in flight until the body is dropped"
    );
    drop(body);
    assert!(clock.between_requests().is_some());
    assert_eq!(streams.open.load(Ordering::Acquire), 0);
}

#[tokio::test(start_paused = true)]
async fn at_most_max_streams_are_open_and_a_closed_one_frees_its_place() {
    let (streams, _stop) = streams();
    let clock = ClientClock::new();
    let mut open_streams: Vec<_> = (0..MAX_STREAMS)
        .map(|_| stream(open(&streams, &clock)))
        .collect();
    let refused = open(&streams, &clock);
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = refused
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    assert!(
        String::from_utf8_lossy(&text).contains("5 clients already read /hystrix.stream"),
        "{text:?}"
    );
    open_streams.pop();
    assert_eq!(open(&streams, &clock).status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn one_sampler_serves_every_stream_and_stops_with_the_last() {
    let (streams, _stop) = streams();
    let clock = ClientClock::new();
    let mut a = stream(open(&streams, &clock));
    let mut b = stream(open(&streams, &clock));
    assert!(Arc::ptr_eq(&a._feed, &b._feed));
    let (x, y) = (next_text(&mut a).await, next_text(&mut b).await);
    assert_eq!(x, y, "the same batch");
    drop((a, b));
    let running = streams.feed.lock().expect("lock").upgrade();
    assert!(running.is_none(), "no stream, no sampler");
}

#[tokio::test(start_paused = true)]
async fn an_open_stream_is_spared_the_idle_timeout_and_its_end_starts_it() {
    let (streams, _stop) = streams();
    let clock = ClientClock::new();
    clock_reads_a_request(&clock).await;
    let body = stream(open(&streams, &clock));
    let watch = {
        let clock = clock.clone();
        tokio::spawn(async move {
            let reason =
                client_timeouts::expired(&clock, super::super::ADMIN_TIMEOUTS, || true).await;
            (reason, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(!watch.is_finished(), "a streaming connection is not idle");
    let ended = Instant::now();
    drop(body);
    let (reason, at) = watch.await.expect("watch");
    assert_eq!(reason, Some(Expired::Idle));
    let idle = at - ended;
    let limit = super::super::ADMIN_TIMEOUTS.idle;
    assert!(idle >= limit && idle <= limit + limit / 4, "{idle:?}");
}

/// Feeds the clock the head of a request, as the connection's socket does.
async fn clock_reads_a_request(clock: &Arc<ClientClock>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client, server) = tokio::io::duplex(64);
    let mut watched = client_timeouts::Watched::new(server, clock.clone());
    let head = b"GET /hystrix.stream HTTP/1.1\r\n\r\n";
    client.write_all(head).await.expect("write");
    let mut buf = [0u8; 64];
    let n = watched.read(&mut buf).await.expect("read");
    assert_eq!(n, head.len());
}

#[test]
fn other_requests_are_left_to_the_admin_router() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let _entered = rt.enter();
    let (streams, _stop) = streams();
    let clock = ClientClock::new();
    for (method, path) in [("GET", "/metrics"), ("POST", PATH), ("GET", "/hystrix")] {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .expect("request");
        assert!(streams.answer(&req, &clock).is_none(), "{method} {path}");
    }
    clock.request_started();
    let head = Request::head(PATH).body(()).expect("request");
    let resp = streams.answer(&head, &clock).expect("HEAD is answered");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(clock.between_requests().is_some(), "HEAD ends at once");
    assert_eq!(streams.open.load(Ordering::Acquire), 0);
}
