//! Resilience under failure, with real upstreams and the real binary: retries and outlier
//! ejection when an endpoint dies mid-run, the circuit breaker through open, half-open and
//! closed, timeouts, resets, limits, fault injection, mirroring and active health checks.
//! Every test is bounded in time and requests, and asserts numbers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use weir::telemetry::prometheus_text::metric_sum;

use crate::support::{
    closing_upstream, endpoint_state, eventually, free_port, get, load, metric_settles,
    truncating_upstream, Client, Upstream, Weir,
};

/// A config with one listener; `routes` and `services` are YAML blocks indented for their
/// place. No access log: the load tests would fill it.
fn config(port: u16, routes: &str, services: &str) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: info, format: text, access_log: false }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n{routes}\nservices:\n{services}"
    )
}

fn local(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

fn weir_error(headers: &http::HeaderMap) -> &str {
    headers
        .get("weir-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// One answer to a burst request: status, `weir-error`, body, and how long it took.
type BurstAnswer = (u16, String, String, Duration);

/// Sends `n` GETs of `/` at the same moment, each on its own keep-alive connection (all
/// connected first, then released together by a barrier), and returns every answer.
async fn burst(port: u16, n: usize) -> Vec<BurstAnswer> {
    let gate = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut client = Client::connect(local(port)).await.unwrap();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            gate.wait().await;
            let t = Instant::now();
            let (status, headers, body) = client.get("/", &[]).await.unwrap();
            (status, weir_error(&headers).to_string(), body, t.elapsed())
        }));
    }
    let mut answers = Vec::with_capacity(n);
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

/// Polls `/services` until the endpoint is in `state`, or `limit` passes; returns the last
/// (state, reason).
async fn endpoint_reaches(
    weir: &Weir,
    service: &str,
    endpoint: SocketAddr,
    state: &str,
    limit: Duration,
) -> (String, String) {
    let deadline = Instant::now() + limit;
    loop {
        let seen = endpoint_state(weir, service, endpoint)
            .await
            .unwrap_or_default();
        if seen.0 == state || Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_endpoints_killed_mid_run_fails_under_one_in_a_thousand_and_is_ejected() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let dead = c.addr;
    let port = free_port();
    // The retry budget and `max_retries` are opened up: this test is about retries avoiding
    // the dead endpoint and its ejection. With the defaults (20 %, at least 3 retries in
    // flight; 3 retries at once), the eight clients' requests that all meet the dead
    // endpoint at once on a loaded machine can find them spent, and fail as they must.
    let routes = "      - name: all\n        retries: { attempts: 2, on: [connect-failure, reset, gateway-error], budget_percent: 100 }\n        backends: [{ service: trio }]";
    let services = format!(
        "  - name: trio\n    endpoints: [\"{}\", \"{}\", \"{}\"]\n    limits: {{ max_retries: 100 }}\n    outlier_detection: {{ consecutive_5xx: 5, consecutive_gateway_errors: 3, interval: 200ms, base_ejection_time: 5s, max_ejection_percent: 50 }}\n",
        a.addr, b.addr, c.addr
    );
    let weir = Weir::start(&config(port, routes, &services)).await;
    let total = 3_000;
    let started = Instant::now();
    let run = tokio::spawn(load(local(port), "/", total, 8));

    assert!(
        eventually(Duration::from_secs(30), || a.hits() + b.hits() + c.hits()
            >= total as u64 / 3)
        .await,
        "a third of the load did not arrive in 30 s"
    );
    c.kill();
    let (state, reason) =
        endpoint_reaches(&weir, "trio", dead, "ejected", Duration::from_secs(5)).await;
    assert_eq!(state, "ejected", "the dead endpoint was not ejected");
    assert!(
        reason.contains("ejected by outlier detection (3 consecutive gateway errors) for 5s"),
        "{reason}"
    );

    let counts = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("every request is answered within 20 s")
        .unwrap();
    let elapsed = started.elapsed();
    let answered: usize = counts.values().sum();
    let ok: usize = ["a", "b", "c"]
        .iter()
        .map(|k| counts.get(*k).copied().unwrap_or(0))
        .sum();
    assert_eq!(answered, total, "{counts:?}");
    assert!(
        ok * 1000 >= total * 999,
        "only {ok} of {total} succeeded: {counts:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");

    let metrics = weir.metrics().await;
    let ejections = metric_sum(
        &metrics,
        "weir_outlier_ejections_total",
        &[
            ("service", "trio"),
            ("endpoint", &dead.to_string()),
            ("reason", "consecutive_gateway_errors"),
        ],
    );
    assert!(
        ejections >= 1.0,
        "ejections of the dead endpoint: {ejections}"
    );
    let retried = metric_sum(
        &metrics,
        "weir_retries_total",
        &[("route", "all"), ("outcome", "attempted")],
    );
    assert!(retried > 0.0, "no retry was attempted");
    assert!(
        weir.logs()
            .contains("endpoint ejected by outlier detection"),
        "{}",
        weir.logs()
    );
    let retry_outcomes: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("weir_retries_total{"))
        .collect();
    eprintln!("kill mid-run: {counts:?} in {elapsed:?}, {ejections} ejections, {retry_outcomes:?}");
}

/// Parses "weir: circuit breaker for service S is open (A of B requests failed in the last
/// W)\n" into (A, B).
fn breaker_counts(body: &str, service: &str, window: &str) -> Option<(u64, u64)> {
    let rest = body.strip_prefix(&format!(
        "weir: circuit breaker for service {service} is open ("
    ))?;
    let rest = rest.strip_suffix(&format!(" requests failed in the last {window})\n"))?;
    let (failed, total) = rest.split_once(" of ")?;
    Some((failed.parse().ok()?, total.parse().ok()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_opens_on_a_half_failing_upstream_shields_it_and_closes_after_it_heals() {
    let up = Upstream::start("flaky").await;
    up.fail(50, 500);
    let port = free_port();
    let routes = "      - name: all\n        backends: [{ service: flaky }]";
    let services = format!(
        "  - name: flaky\n    endpoints: [\"{}\"]\n    circuit_breaker: {{ window: 2s, buckets: 10, request_volume_threshold: 10, error_threshold_percent: 30, sleep_window: 1s, half_open_requests: 1 }}\n",
        up.addr
    );
    let weir = Weir::start(&config(port, routes, &services)).await;
    let mut client = Client::connect(local(port)).await.unwrap();

    // Drive requests until the breaker refuses one.
    let started = Instant::now();
    let (mut relayed, mut failed, mut refusals) = (0u64, 0u64, 0u64);
    let mut open_body = None;
    for _ in 0..100 {
        let (status, headers, body) = client.get("/", &[]).await.unwrap();
        if weir_error(&headers) == "circuit_open" {
            assert_eq!(status, 503);
            refusals += 1;
            open_body = Some(body);
            break;
        }
        relayed += 1;
        failed += u64::from(status == 500);
    }
    let opened = Instant::now();
    let open_body = open_body.expect("the breaker never opened in 100 requests");
    assert!(
        opened - started < Duration::from_secs(2),
        "opened after {:?}, not within the 2s window",
        opened - started
    );
    assert!(
        (10..=12).contains(&relayed),
        "opened after {relayed} requests"
    );
    let (a, b) =
        breaker_counts(&open_body, "flaky", "2s").unwrap_or_else(|| panic!("{open_body:?}"));
    assert_eq!(
        (a, b),
        (failed, relayed),
        "the body counts what the window saw: {open_body:?}"
    );
    assert!(a * 100 >= 30 * b, "{open_body:?}");

    // While open: nothing reaches the upstream, every request is refused at once.
    let hits = up.hits();
    let n = 50;
    for _ in 0..n {
        let t = Instant::now();
        let (status, headers, body) = client.get("/", &[]).await.unwrap();
        assert_eq!(
            (status, weir_error(&headers)),
            (503, "circuit_open"),
            "{body}"
        );
        assert_eq!(body, open_body);
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        refusals += 1;
    }
    assert!(
        opened.elapsed() < Duration::from_secs(1),
        "the refusals must fit in the sleep window to prove anything: {:?}",
        opened.elapsed()
    );
    assert_eq!(
        up.hits(),
        hits,
        "the upstream saw requests while the breaker was open"
    );

    // Heal; the first request after sleep_window is the trial, and it closes the breaker.
    up.fail(0, 500);
    let mut recovered = None;
    for _ in 0..60 {
        let (status, headers, _) = client.get("/", &[]).await.unwrap();
        if status == 200 {
            recovered = Some(opened.elapsed());
            break;
        }
        assert_eq!(weir_error(&headers), "circuit_open");
        refusals += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = recovered.expect("traffic did not recover within 3 s");
    assert!(
        recovered >= Duration::from_millis(900),
        "a request passed {recovered:?} after opening, before the 1s sleep window"
    );
    for _ in 0..20 {
        assert_eq!(client.get("/", &[]).await.unwrap().0, 200);
    }

    let metrics = weir.metrics().await;
    let transition = |from: &str, to: &str| {
        metric_sum(
            &metrics,
            "weir_circuit_breaker_transitions_total",
            &[("service", "flaky"), ("from", from), ("to", to)],
        )
    };
    assert_eq!(
        (
            transition("closed", "open"),
            transition("open", "half_open"),
            transition("half_open", "closed"),
            transition("half_open", "open"),
        ),
        (1.0, 1.0, 1.0, 0.0),
        "{metrics}"
    );
    let state = |s: &str| {
        metric_sum(
            &metrics,
            "weir_circuit_breaker_state",
            &[("service", "flaky"), ("state", s)],
        )
    };
    assert_eq!(
        (state("closed"), state("open"), state("half_open")),
        (1.0, 0.0, 0.0)
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_circuit_breaker_rejected_total",
            &[("service", "flaky")]
        ),
        refusals as f64
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_http_requests_total",
            &[
                ("service", "flaky"),
                ("code", "503"),
                ("error", "circuit_open")
            ]
        ),
        refusals as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_endpoint_behind_a_500ms_route_timeout_gives_504_within_600ms_and_in_flight_returns_to_zero(
) {
    let up = Upstream::start("stall").await;
    up.state
        .delay_ms
        .store(2_000, std::sync::atomic::Ordering::SeqCst);
    let port = free_port();
    let routes =
        "      - name: slow\n        timeout: 500ms\n        backends: [{ service: stall }]";
    let services = format!("  - {{ name: stall, endpoints: [\"{}\"] }}\n", up.addr);
    let weir = Weir::start(&config(port, routes, &services)).await;

    let n = 20;
    let mut tasks = Vec::new();
    for _ in 0..n {
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(local(port)).await.unwrap();
            let t = Instant::now();
            let (status, headers, body) = client.get("/", &[]).await.unwrap();
            (status, weir_error(&headers).to_string(), body, t.elapsed())
        }));
    }
    let mut slowest = Duration::ZERO;
    for t in tasks {
        let (status, error, body, took) = t.await.unwrap();
        assert_eq!((status, error.as_str()), (504, "timeout"), "{body}");
        assert!(
            body.starts_with("weir: route slow timed out after 500ms"),
            "{body}"
        );
        assert!(took >= Duration::from_millis(500), "{took:?}");
        slowest = slowest.max(took);
    }
    assert!(
        slowest < Duration::from_millis(600),
        "slowest 504 took {slowest:?}"
    );
    assert_eq!(up.hits(), n as u64);
    assert_eq!(
        metric_settles(
            &weir,
            "weir_http_requests_in_flight",
            &[("service", "stall")],
            0.0
        )
        .await,
        0.0
    );
    assert_eq!(
        metric_sum(
            &weir.metrics().await,
            "weir_http_requests_total",
            &[("service", "stall"), ("code", "504"), ("error", "timeout")]
        ),
        n as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_before_headers_are_502_upstream_reset_resets_mid_body_break_the_body_and_weir_keeps_serving(
) {
    let closer = closing_upstream().await;
    let truncator = truncating_upstream().await;
    let up = Upstream::start("up").await;
    let port = free_port();
    let routes = "      - name: before\n        match: { path: { prefix: /before } }\n        backends: [{ service: closer }]\n      - name: mid\n        match: { path: { prefix: /mid } }\n        backends: [{ service: truncator }]\n      - name: rest\n        backends: [{ service: up }]";
    let services = format!(
        "  - {{ name: closer, endpoints: [\"{closer}\"] }}\n  - {{ name: truncator, endpoints: [\"{truncator}\"] }}\n  - {{ name: up, endpoints: [\"{}\"] }}\n",
        up.addr
    );
    let weir = Weir::start(&config(port, routes, &services)).await;
    let addr = local(port);

    let mut client = Client::connect(addr).await.unwrap();
    for _ in 0..10 {
        let (status, headers, body) = client.get("/before", &[]).await.unwrap();
        assert_eq!(
            (status, weir_error(&headers)),
            (502, "upstream_reset"),
            "{body}"
        );
        assert!(
            body.starts_with(&format!("weir: endpoint {closer} of service closer")),
            "{body}"
        );
    }
    for _ in 0..10 {
        let broken = get(addr, "/mid", &[]).await;
        assert!(
            broken.is_err(),
            "the client must see the body break, not a clean short body: {broken:?}"
        );
    }
    let counts = load(addr, "/", 200, 4).await;
    assert_eq!(counts.get("up"), Some(&200), "{counts:?}");
    assert_eq!(up.hits(), 200);

    let labels = |route: &'static str, code: &'static str| {
        [
            ("route", route),
            ("code", code),
            ("error", "upstream_reset"),
        ]
    };
    assert_eq!(
        metric_settles(
            &weir,
            "weir_http_requests_total",
            &labels("before", "502"),
            10.0
        )
        .await,
        10.0
    );
    assert_eq!(
        metric_settles(
            &weir,
            "weir_http_requests_total",
            &labels("mid", "200"),
            10.0
        )
        .await,
        10.0
    );
    for service in ["closer", "truncator", "up"] {
        assert_eq!(
            metric_settles(
                &weir,
                "weir_http_requests_in_flight",
                &[("service", service)],
                0.0
            )
            .await,
            0.0,
            "{service}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_requests_over_max_requests_4_give_exactly_4_answers_and_16_overflows() {
    let up = Upstream::start("capped").await;
    up.state
        .delay_ms
        .store(300, std::sync::atomic::Ordering::SeqCst);
    let port = free_port();
    let routes = "      - name: all\n        backends: [{ service: capped }]";
    let services = format!(
        "  - {{ name: capped, endpoints: [\"{}\"], limits: {{ max_requests: 4 }} }}\n",
        up.addr
    );
    let weir = Weir::start(&config(port, routes, &services)).await;

    let (mut ok, mut overflow) = (0, 0);
    for (status, error, body, took) in burst(port, 20).await {
        match (status, error.as_str()) {
            (200, "") => ok += 1,
            (503, "overflow") => {
                overflow += 1;
                assert_eq!(body, "weir: service capped: max_requests (4) reached\n");
                assert!(
                    took < Duration::from_millis(250),
                    "overflow not at once: {took:?}"
                );
            }
            other => panic!("unexpected answer {other:?}: {body}"),
        }
    }
    assert_eq!((ok, overflow), (4, 16));
    assert_eq!(up.hits(), 4);
    let metrics = weir.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_overflow_total",
            &[("service", "capped"), ("limit", "max_requests")]
        ),
        16.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_http_requests_total",
            &[
                ("service", "capped"),
                ("code", "503"),
                ("error", "overflow")
            ]
        ),
        16.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_http_requests_total",
            &[("service", "capped"), ("code", "200")]
        ),
        4.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_wait_for_one_of_max_connections_and_past_max_pending_requests_overflow() {
    let up = Upstream::start("pooled").await;
    up.state
        .delay_ms
        .store(200, std::sync::atomic::Ordering::SeqCst);
    let port = free_port();
    let routes = "      - name: all\n        backends: [{ service: pooled }]";
    let services = format!(
        "  - {{ name: pooled, endpoints: [\"{}\"], connect_timeout: 2s, limits: {{ max_connections: 2, max_pending_requests: 2 }} }}\n",
        up.addr
    );
    let weir = Weir::start(&config(port, routes, &services)).await;

    let (mut ok, mut overflow) = (0, 0);
    for answer in burst(port, 6).await {
        match answer {
            (200, e, _, _) if e.is_empty() => ok += 1,
            (503, e, body, _) if e == "overflow" => {
                overflow += 1;
                assert_eq!(
                    body,
                    "weir: service pooled: max_pending_requests (2) reached\n"
                );
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(
        (ok, overflow),
        (4, 2),
        "2 served at once, 2 after waiting, 2 refused"
    );
    assert_eq!(
        up.connections(),
        2,
        "never more than max_connections upstream connections"
    );
    let metrics = weir.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_overflow_total",
            &[("service", "pooled"), ("limit", "max_pending_requests")]
        ),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_turn_every_other_503_into_200_skip_unreplayable_bodies_and_per_try_timeout_moves_on(
) {
    let alt = Upstream::start("alt").await;
    alt.fail(50, 503); // the first attempt of each sequential request fails, the retry passes
    let post = Upstream::start("post").await;
    post.fail(100, 503);
    let sink = Upstream::start("sink").await;
    let (slow, fast) = (Upstream::start("slow").await, Upstream::start("fast").await);
    slow.state
        .delay_ms
        .store(1_000, std::sync::atomic::Ordering::SeqCst);
    let port = free_port();
    let retries = "retries: { attempts: 2, on: [gateway-error] }";
    let routes = format!(
        "      - name: alt\n        match: {{ path: {{ prefix: /alt }} }}\n        {retries}\n        backends: [{{ service: alt }}]\n      - name: post\n        match: {{ path: {{ prefix: /post }} }}\n        {retries}\n        backends: [{{ service: post }}]\n      - name: upload\n        match: {{ path: {{ prefix: /upload }} }}\n        {retries}\n        backends: [{{ service: sink }}]\n      - name: pair\n        match: {{ path: {{ prefix: /pair }} }}\n        retries: {{ attempts: 1, per_try_timeout: 100ms, on: [reset] }}\n        backends: [{{ service: pair }}]"
    );
    let services = format!(
        "  - {{ name: alt, endpoints: [\"{}\"] }}\n  - {{ name: post, endpoints: [\"{}\"] }}\n  - {{ name: sink, endpoints: [\"{}\"] }}\n  - {{ name: pair, endpoints: [\"{}\", \"{}\"] }}\n",
        alt.addr, post.addr, sink.addr, slow.addr, fast.addr
    );
    let weir = Weir::start(&config(port, &routes, &services)).await;
    let mut client = Client::connect(local(port)).await.unwrap();
    let retries_of = |metrics: &str, route: &str, outcome: &str| {
        metric_sum(
            metrics,
            "weir_retries_total",
            &[("route", route), ("outcome", outcome)],
        )
    };

    // Every first attempt answers 503, every retry 200.
    let n = 50;
    for _ in 0..n {
        let (status, headers, body) = client.get("/alt", &[]).await.unwrap();
        assert_eq!((status, body.as_str()), (200, "alt"), "{headers:?}");
    }
    assert_eq!(alt.hits(), 2 * n);
    let metrics = weir.metrics().await;
    assert_eq!(retries_of(&metrics, "alt", "attempted"), n as f64);
    assert_eq!(retries_of(&metrics, "alt", "exhausted"), 0.0);

    // A 100 KiB body is over the 64 KiB replay limit: sent once, the 503 relayed.
    let big = Bytes::from(vec![b'x'; 100 * 1024]);
    let (status, headers, _) = client
        .request("POST", "/post", &[], big.clone())
        .await
        .unwrap();
    assert_eq!(status, 503);
    assert!(
        !headers.contains_key("weir-error"),
        "the upstream's 503 is relayed"
    );
    assert_eq!(post.hits(), 1, "an unreplayable body must not be retried");
    assert_eq!(retries_of(&weir.metrics().await, "post", "attempted"), 0.0);
    // A 1 KiB body is replayable: the same failure is tried three times.
    let (status, _, _) = client
        .request("POST", "/post", &[], Bytes::from(vec![b'y'; 1024]))
        .await
        .unwrap();
    assert_eq!(status, 503);
    assert_eq!(post.hits(), 1 + 3);
    let metrics = weir.metrics().await;
    assert_eq!(retries_of(&metrics, "post", "attempted"), 2.0);
    assert_eq!(retries_of(&metrics, "post", "exhausted"), 1.0);
    // The large body still arrives whole on a retrying route.
    let (status, _, body) = client.request("POST", "/upload", &[], big).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "102400"));

    // A slow first attempt is abandoned after per_try_timeout and retried at the other
    // endpoint.
    for _ in 0..10 {
        let t = Instant::now();
        let (status, headers, _) = client.get("/pair", &[]).await.unwrap();
        assert_eq!(
            (status, headers["x-upstream"].to_str().unwrap()),
            (200, "fast")
        );
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
    }
    assert!(
        slow.hits() >= 1,
        "round robin never picked the slow endpoint"
    );
    assert_eq!(
        retries_of(&weir.metrics().await, "pair", "attempted"),
        slow.hits() as f64,
        "one retry per slow first attempt"
    );
    assert_eq!(fast.hits(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_aborts_delays_and_hits_its_percentage() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let routes = "      - name: abort\n        match: { path: { prefix: /abort } }\n        fault: { abort: { status: 418, percent: 100 } }\n        backends: [{ service: up }]\n      - name: delay\n        match: { path: { prefix: /slow } }\n        fault: { delay: { fixed: 200ms, percent: 100 } }\n        backends: [{ service: up }]\n      - name: half\n        match: { path: { prefix: /half } }\n        fault: { abort: { status: 418, percent: 50 } }\n        backends: [{ service: up }]";
    let services = format!("  - {{ name: up, endpoints: [\"{}\"] }}\n", up.addr);
    let weir = Weir::start(&config(port, routes, &services)).await;
    let mut client = Client::connect(local(port)).await.unwrap();

    for _ in 0..20 {
        let (status, headers, body) = client.get("/abort", &[]).await.unwrap();
        assert_eq!(
            (status, weir_error(&headers)),
            (418, "fault_abort"),
            "{body}"
        );
        assert_eq!(
            body,
            "weir: fault injection aborted the request on route abort with 418\n"
        );
    }
    assert_eq!(up.hits(), 0, "an aborted request reaches no upstream");

    for _ in 0..10 {
        let t = Instant::now();
        let (status, _, _) = client.get("/slow", &[]).await.unwrap();
        let took = t.elapsed();
        assert_eq!(status, 200);
        assert!(
            (Duration::from_millis(200)..Duration::from_millis(1_000)).contains(&took),
            "{took:?}"
        );
    }
    assert_eq!(up.hits(), 10);

    let total = 1_000;
    let counts = load(local(port), "/half", total, 8).await;
    let aborted = counts.get("418 fault_abort").copied().unwrap_or(0);
    let relayed = counts.get("up").copied().unwrap_or(0);
    assert_eq!(aborted + relayed, total, "{counts:?}");
    let share = aborted as f64 * 100.0 / total as f64;
    assert!(
        (45.0..=55.0).contains(&share),
        "aborted {share:.1}%: {counts:?}"
    );
    assert_eq!(up.hits(), 10 + relayed as u64);
    assert_eq!(
        metric_sum(
            &weir.metrics().await,
            "weir_http_requests_total",
            &[("code", "418"), ("error", "fault_abort")]
        ),
        (20 + aborted) as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirroring_copies_every_request_to_the_shadow_and_a_stalled_shadow_costs_no_latency() {
    let (main, shadow, stall) = (
        Upstream::start("main").await,
        Upstream::start("shadow").await,
        Upstream::start("stall").await,
    );
    stall
        .state
        .delay_ms
        .store(10_000, std::sync::atomic::Ordering::SeqCst);
    let port = free_port();
    let routes = "      - name: mirrored\n        match: { path: { prefix: /m } }\n        mirror: { service: shadow, percent: 100 }\n        backends: [{ service: main }]\n      - name: stalled\n        match: { path: { prefix: /s } }\n        mirror: { service: stall, percent: 100 }\n        backends: [{ service: main }]";
    let services = format!(
        "  - {{ name: main, endpoints: [\"{}\"] }}\n  - {{ name: shadow, endpoints: [\"{}\"] }}\n  - {{ name: stall, endpoints: [\"{}\"] }}\n",
        main.addr, shadow.addr, stall.addr
    );
    let _weir = Weir::start(&config(port, routes, &services)).await;
    let mut client = Client::connect(local(port)).await.unwrap();

    let n = 200;
    for _ in 0..n {
        let (status, headers, _) = client.get("/m", &[]).await.unwrap();
        assert_eq!(
            (status, headers["x-upstream"].to_str().unwrap()),
            (200, "main")
        );
    }
    assert!(
        eventually(Duration::from_secs(5), || shadow.hits() == n).await,
        "the shadow received {} of {n} copies",
        shadow.hits()
    );
    let hosts: Vec<String> = shadow
        .state
        .headers
        .lock()
        .unwrap()
        .iter()
        .map(|h| h["host"].to_str().unwrap_or("").to_string())
        .collect();
    let want = format!("127.0.0.1-shadow:{port}");
    assert!(hosts.iter().all(|h| *h == want), "{:?}", &hosts[..3]);

    // A shadow that never answers: the real requests do not wait for it.
    let mut took = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let (status, _, _) = client.get("/s", &[]).await.unwrap();
        took.push(t.elapsed());
        assert_eq!(status, 200);
    }
    took.sort();
    let p99 = took[took.len() * 99 / 100 - 1];
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    assert_eq!(main.hits(), 2 * n);
    // Copies in flight are bounded (64 per mirror); the rest are dropped, not queued.
    assert!(
        eventually(Duration::from_secs(2), || stall.hits() == 64).await,
        "stalled shadow saw {}",
        stall.hits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_health_checks_leaves_rotation_and_returns_when_it_heals() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    b.state
        .health_status
        .store(503, std::sync::atomic::Ordering::SeqCst);
    let port = free_port();
    let routes = "      - name: all\n        backends: [{ service: checked }]";
    let services = format!(
        "  - name: checked\n    load_balancer: round_robin\n    endpoints: [\"{}\", \"{}\"]\n    health_check: {{ path: /health, interval: 100ms, timeout: 200ms, unhealthy_threshold: 2, healthy_threshold: 2 }}\n",
        a.addr, b.addr
    );
    let weir = Weir::start(&config(port, routes, &services)).await;
    let gauge = |metrics: &str, state: &str| {
        metric_sum(
            metrics,
            "weir_upstream_endpoints",
            &[("service", "checked"), ("state", state)],
        )
    };

    let (state, reason) = endpoint_reaches(
        &weir,
        "checked",
        b.addr,
        "unhealthy",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(state, "unhealthy");
    assert!(
        reason.starts_with("failing health checks: GET /health answered 503"),
        "{reason}"
    );
    assert_eq!(
        endpoint_state(&weir, "checked", a.addr).await.unwrap().0,
        "healthy"
    );
    let metrics = weir.metrics().await;
    assert_eq!(
        (gauge(&metrics, "healthy"), gauge(&metrics, "unhealthy")),
        (1.0, 1.0)
    );

    let before = b.traffic_hits();
    let counts = load(local(port), "/", 200, 4).await;
    assert_eq!(counts.get("a"), Some(&200), "{counts:?}");
    assert_eq!(
        b.traffic_hits(),
        before,
        "an unhealthy endpoint gets no traffic"
    );
    assert!(
        b.state
            .health_hits
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 2
    );

    b.state
        .health_status
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let (state, reason) =
        endpoint_reaches(&weir, "checked", b.addr, "healthy", Duration::from_secs(3)).await;
    assert_eq!((state.as_str(), reason.as_str()), ("healthy", ""));
    let metrics = weir.metrics().await;
    assert_eq!(
        (gauge(&metrics, "healthy"), gauge(&metrics, "unhealthy")),
        (2.0, 0.0)
    );
    let counts = load(local(port), "/", 200, 4).await;
    assert_eq!(
        (counts.get("a"), counts.get("b")),
        (Some(&100), Some(&100)),
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_endpoint_unhealthy_or_ejected_requests_get_503_no_healthy_endpoint_at_once() {
    let (d1, d2) = (Upstream::start("d1").await, Upstream::start("d2").await);
    for d in [&d1, &d2] {
        d.state
            .health_status
            .store(503, std::sync::atomic::Ordering::SeqCst);
    }
    let solo = Upstream::start("solo").await;
    solo.fail(100, 500);
    let port = free_port();
    let routes = "      - name: down\n        match: { path: { prefix: /down } }\n        backends: [{ service: down }]\n      - name: solo\n        backends: [{ service: solo }]";
    let services = format!(
        "  - name: down\n    endpoints: [\"{}\", \"{}\"]\n    health_check: {{ path: /health, interval: 100ms, timeout: 200ms, unhealthy_threshold: 2, healthy_threshold: 2 }}\n  - name: solo\n    endpoints: [\"{}\"]\n    outlier_detection: {{ consecutive_5xx: 3, interval: 1s, base_ejection_time: 30s, max_ejection_percent: 100 }}\n",
        d1.addr, d2.addr, solo.addr
    );
    let weir = Weir::start(&config(port, routes, &services)).await;
    let mut client = Client::connect(local(port)).await.unwrap();

    // Every endpoint unhealthy.
    assert_eq!(
        metric_settles(
            &weir,
            "weir_upstream_endpoints",
            &[("service", "down"), ("state", "unhealthy")],
            2.0
        )
        .await,
        2.0
    );
    for _ in 0..10 {
        let t = Instant::now();
        let (status, headers, body) = client.get("/down", &[]).await.unwrap();
        assert_eq!(
            (status, weir_error(&headers)),
            (503, "no_healthy_endpoint"),
            "{body}"
        );
        assert_eq!(body, "weir: service down has no endpoint available\n");
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
    }
    assert_eq!(d1.traffic_hits() + d2.traffic_hits(), 0);

    // The only endpoint ejected after 3 consecutive 5xx.
    for _ in 0..3 {
        assert_eq!(client.get("/", &[]).await.unwrap().0, 500);
    }
    for _ in 0..10 {
        let t = Instant::now();
        let (status, headers, body) = client.get("/", &[]).await.unwrap();
        assert_eq!(
            (status, weir_error(&headers)),
            (503, "no_healthy_endpoint"),
            "{body}"
        );
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
    }
    assert_eq!(solo.hits(), 3);
    let metrics = weir.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_outlier_ejections_total",
            &[("service", "solo"), ("reason", "consecutive_5xx")]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_upstream_endpoints",
            &[("service", "solo"), ("state", "ejected")]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_http_requests_total",
            &[("code", "503"), ("error", "no_healthy_endpoint")]
        ),
        20.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_retry_holds_one_max_retries_slot_at_a_time() {
    // max_retries 1 with 2 retries per request: the second retry must not collide with the
    // first one's slot (it was released when that attempt ended).
    let up = Upstream::start("always503").await;
    up.fail(100, 503);
    let port = free_port();
    let routes = "      - name: all\n        retries: { attempts: 2, on: [gateway-error] }\n        backends: [{ service: always503 }]";
    let services = format!(
        "  - {{ name: always503, endpoints: [\"{}\"], limits: {{ max_retries: 1 }} }}\n",
        up.addr
    );
    let weir = Weir::start(&config(port, routes, &services)).await;
    let mut client = Client::connect(local(port)).await.unwrap();
    for _ in 0..5 {
        let (status, headers, _) = client.get("/", &[]).await.unwrap();
        assert_eq!(
            (status, weir_error(&headers)),
            (503, ""),
            "the upstream's own 503 after the retries"
        );
    }
    assert_eq!(up.hits(), 15, "every request tried 3 times");
    let metrics = weir.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "weir_overflow_total", &[("limit", "max_retries")]),
        0.0
    );
    assert_eq!(
        metric_sum(&metrics, "weir_retries_total", &[("outcome", "attempted")]),
        10.0
    );
    assert_eq!(
        metric_sum(&metrics, "weir_retries_total", &[("outcome", "exhausted")]),
        5.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_while_weir_waits_is_counted_as_499_and_logged() {
    let up = Upstream::start("slow").await;
    up.state
        .delay_ms
        .store(2_000, std::sync::atomic::Ordering::SeqCst);
    let port = free_port();
    let routes = "      - name: all\n        backends: [{ service: slow }]";
    let services = format!("  - {{ name: slow, endpoints: [\"{}\"] }}\n", up.addr);
    let weir = Weir::start(
        &config(port, routes, &services).replace("access_log: false", "access_log: true"),
    )
    .await;
    let request = tokio::spawn(async move { crate::support::get(local(port), "/", &[]).await });
    assert!(
        endpoint_in_flight(&weir, "slow", 1.0).await,
        "the request never reached the upstream"
    );
    request.abort();
    let _ = request.await;
    assert_eq!(
        metric_settles(
            &weir,
            "weir_http_requests_total",
            &[("service", "slow"), ("code", "499")],
            1.0
        )
        .await,
        1.0
    );
    assert!(
        endpoint_in_flight(&weir, "slow", 0.0).await,
        "in-flight did not return to 0"
    );
    // Access lines reach stderr from a background writer, within a few milliseconds.
    assert!(
        eventually(Duration::from_secs(2), || weir
            .logs()
            .contains("status=499"))
        .await,
        "{}",
        weir.logs()
    );
}

/// Polls until the service's in-flight gauge reads `want` (2 s at most).
async fn endpoint_in_flight(weir: &Weir, service: &str, want: f64) -> bool {
    for _ in 0..200 {
        let m = weir.metrics().await;
        if metric_sum(&m, "weir_http_requests_in_flight", &[("service", service)]) == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_outlier_detection_a_dead_endpoint_leaves_rotation_after_five_connect_failures() {
    let up = Upstream::start("alive").await;
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let port = free_port();
    let routes = "      - name: all\n        backends: [{ service: pair }]";
    // Round robin over a live and a dead endpoint, no outlier_detection configured.
    let services = format!(
        "  - {{ name: pair, load_balancer: round_robin, endpoints: [\"{}\", \"{dead}\"] }}\n",
        up.addr
    );
    let weir = Weir::start(&config(port, routes, &services)).await;
    let mut client = Client::connect(local(port)).await.unwrap();
    let mut failed = 0;
    for _ in 0..40 {
        let (status, headers, _) = client.get("/", &[]).await.unwrap();
        if status != 200 {
            assert_eq!((status, weir_error(&headers)), (502, "connect_failed"));
            failed += 1;
        }
    }
    assert_eq!(
        failed, 5,
        "the dead endpoint failed five requests, then left rotation"
    );
    let (state, reason) = endpoint_state(&weir, "pair", dead).await.expect("listed");
    assert_eq!(state, "ejected");
    assert!(
        reason.starts_with("ejected by outlier detection (5 consecutive connect failures) for 30s"),
        "{reason}"
    );
    assert_eq!(
        endpoint_state(&weir, "pair", up.addr)
            .await
            .map(|s| s.0)
            .as_deref(),
        Some("healthy")
    );
}
