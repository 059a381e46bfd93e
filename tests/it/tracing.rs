//! Distributed tracing end to end: real sidecars, a real OTLP receiver decoding with the
//! reference protobuf definitions, an application instrumented with the OpenTelemetry SDK,
//! and a real Prometheus reading exemplars.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::observe::{InstrumentedApp, OtlpReceiver, Prometheus};
use crate::support::{get, metric_settles, until, Upstream, Weir};

/// A sidecar with one listener of `direction` in front of `target`, tracing with
/// `propagation` at `sampling` percent to `otlp` (when given).
fn sidecar(
    service: &str,
    direction: &str,
    listen: SocketAddr,
    target: SocketAddr,
    tracing: &str,
) -> String {
    format!(
        "version: 1\nnode: {{ service: {service}, namespace: shop }}\nadmin: {{ address: \"{{admin}}\" }}\nlisteners:\n  - name: {direction}\n    address: {listen}\n    direction: {direction}\n    routes:\n      - name: to-{service}\n        backends: [{{ service: next }}]\nservices:\n  - name: next\n    endpoints: [\"{target}\"]\n{tracing}"
    )
}

fn tracing_section(propagation: &str, sampling: u32, otlp: Option<&str>, batch: u32) -> String {
    let otlp = otlp.map_or(String::new(), |e| {
        format!("  otlp: {{ endpoint: \"{e}\", batch_size: {batch}, queue_size: 64 }}\n")
    });
    format!("tracing:\n  propagation: {propagation}\n  sampling_percent: {sampling}\n{otlp}")
}

fn free_addr() -> SocketAddr {
    format!("127.0.0.1:{}", crate::support::free_port())
        .parse()
        .expect("address")
}

/// The status of one GET on a fresh connection.
async fn status(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> u16 {
    get(addr, path, headers).await.expect("an answer").0
}

/// `weir_trace_spans_total{outcome}` as weir counts it now.
async fn spans_counted(weir: &Weir, outcome: &str) -> f64 {
    weir::telemetry::prometheus_text::metric_sum(
        &weir.metrics().await,
        "weir_trace_spans_total",
        &[("outcome", outcome)],
    )
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

fn find<'a>(spans: &'a [Value], kind: &str, service: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["kind"] == kind && s["resource"]["service.name"] == service)
        .unwrap_or_else(|| panic!("no {kind} span of {service} in {spans:#?}"))
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The incoming context of a sampled caller, in each format.
fn caller_headers(format: &str) -> Vec<(&'static str, String)> {
    match format {
        "w3c" => vec![
            ("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01")),
            ("tracestate", "vendor=opaque".to_string()),
        ],
        "b3multi" => vec![
            ("x-b3-traceid", TRACE.to_string()),
            ("x-b3-spanid", CALLER_SPAN.to_string()),
            ("x-b3-sampled", "1".to_string()),
        ],
        _ => vec![("b3", format!("{TRACE}-{CALLER_SPAN}-1"))],
    }
}

/// The trace id and parent span id the upstream saw, in `format`.
fn seen_context(headers: &http::HeaderMap, format: &str) -> (String, String) {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    match format {
        "w3c" => {
            let tp = h("traceparent");
            let parts: Vec<&str> = tp.split('-').collect();
            assert_eq!(parts.len(), 4, "traceparent {tp:?}");
            assert_eq!(parts[3], "01", "sampled: {tp}");
            (parts[1].to_string(), parts[2].to_string())
        }
        "b3multi" => {
            assert_eq!(h("x-b3-sampled"), "1");
            assert!(headers.get("b3").is_none(), "one B3 encoding: {headers:?}");
            (h("x-b3-traceid"), h("x-b3-spanid"))
        }
        _ => {
            let b3 = h("b3");
            let parts: Vec<&str> = b3.split('-').collect();
            assert!(parts.len() >= 3 && parts[2] == "1", "b3 {b3:?}");
            assert!(headers.get("x-b3-traceid").is_none(), "{headers:?}");
            (parts[0].to_string(), parts[1].to_string())
        }
    }
}

#[tokio::test]
async fn two_sidecars_make_one_trace_in_every_propagation_format() {
    for format in ["w3c", "b3multi", "b3single"] {
        let receiver = OtlpReceiver::start().await;
        let app = Upstream::start("app").await;
        let tracing = tracing_section("[w3c, b3]", 0, Some(&receiver.endpoint()), 1);
        let inbound = free_addr();
        let server = Weir::start(&sidecar("reviews", "inbound", inbound, app.addr, &tracing)).await;
        let outbound = free_addr();
        let client = Weir::start(&sidecar(
            "frontend", "outbound", outbound, inbound, &tracing,
        ))
        .await;

        let caller = caller_headers(format);
        let mut headers: Vec<(&str, &str)> = caller.iter().map(|(k, v)| (*k, v.as_str())).collect();
        headers.push(("x-request-id", "req-42"));
        let (status, _, _) = get(outbound, "/reviews/1?user=secret", &headers)
            .await
            .expect("answer");
        assert_eq!(status, 200, "{format}");

        let spans = receiver.wait_for_spans(2, Duration::from_secs(10)).await;
        assert_eq!(spans.len(), 2, "{format}: {spans:#?}");
        let outbound_span = find(&spans, "SPAN_KIND_CLIENT", "frontend");
        let inbound_span = find(&spans, "SPAN_KIND_SERVER", "reviews");
        for span in [outbound_span, inbound_span] {
            assert_eq!(
                span["trace_id"], TRACE,
                "{format}: one trace id, never a new one"
            );
            assert_eq!(attr(span, "http.request.method"), "GET");
            assert_eq!(attr(span, "url.path"), "/reviews/1", "no query");
            assert_eq!(attr(span, "http.response.status_code"), 200);
            assert_eq!(attr(span, "weir.retries"), 0);
            assert_eq!(span["resource"]["k8s.namespace.name"], "shop");
        }
        assert_eq!(outbound_span["parent_span_id"], CALLER_SPAN, "{format}");
        assert_eq!(
            inbound_span["parent_span_id"], outbound_span["span_id"],
            "{format}: the server sidecar's span is the client sidecar's child"
        );
        assert_eq!(outbound_span["name"], "GET to-frontend");
        assert_eq!(attr(outbound_span, "weir.route"), "to-frontend");
        assert_eq!(attr(outbound_span, "weir.service"), "next");
        assert_eq!(*attr(outbound_span, "weir.endpoint"), inbound.to_string());
        assert_eq!(attr(outbound_span, "network.peer.address"), "127.0.0.1");
        assert_eq!(
            attr(outbound_span, "network.peer.port"),
            i64::from(inbound.port())
        );
        assert_eq!(attr(outbound_span, "server.address"), "127.0.0.1");
        assert_eq!(
            attr(outbound_span, "server.port"),
            i64::from(outbound.port())
        );
        assert_eq!(attr(inbound_span, "client.address"), "127.0.0.1");
        assert_eq!(*attr(inbound_span, "weir.endpoint"), app.addr.to_string());
        if format == "w3c" {
            assert_eq!(outbound_span["trace_state"], "vendor=opaque");
        }

        // The application sees the same trace, as a child of the server sidecar's span, in
        // the format the caller used; and the caller's request id.
        let seen = app.last_headers();
        let (trace, parent) = seen_context(&seen, format);
        assert_eq!(trace, TRACE, "{format}: {seen:?}");
        assert_eq!(parent, inbound_span["span_id"].as_str().unwrap_or_default());
        assert_eq!(seen["x-request-id"], "req-42");
        if format == "w3c" {
            assert_eq!(seen["tracestate"], "vendor=opaque", "tracestate is kept");
        }
        drop((client, server));
    }
}

#[tokio::test]
async fn an_instrumented_application_continues_the_sidecars_trace() {
    let receiver = OtlpReceiver::start().await;
    let app = InstrumentedApp::start(&receiver.endpoint(), "w3c").await;
    let inbound = free_addr();
    let tracing = tracing_section("[w3c]", 100, Some(&receiver.endpoint()), 1);
    let _server = Weir::start(&sidecar(
        "reviews",
        "inbound",
        inbound,
        app.addr(),
        &tracing,
    ))
    .await;

    // No context: weir starts the trace (100 % sampled) and the app's SDK joins it.
    let (status, _, body) = get(inbound, "/work", &[]).await.expect("answer");
    assert_eq!(status, 200, "{body}");
    let spans = receiver.wait_for_spans(3, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let weir_span = find(&spans, "SPAN_KIND_SERVER", "reviews");
    let app_server = find(&spans, "SPAN_KIND_SERVER", "app");
    let app_work = find(&spans, "SPAN_KIND_INTERNAL", "app");
    let trace = weir_span["trace_id"].as_str().unwrap_or_default();
    assert_eq!(trace.len(), 32);
    assert_eq!(weir_span["parent_span_id"], "", "weir started the trace");
    assert_eq!(app_server["trace_id"], trace);
    assert_eq!(app_work["trace_id"], trace);
    assert_eq!(
        app_server["parent_span_id"], weir_span["span_id"],
        "the SDK's propagator made weir's span its parent"
    );
    assert_eq!(app_work["parent_span_id"], app_server["span_id"]);
}

#[tokio::test]
async fn a_callers_sampling_decision_is_obeyed_and_unsampled_requests_export_nothing() {
    let receiver = OtlpReceiver::start().await;
    let app = Upstream::start("app").await;
    let listen = free_addr();
    let endpoint = receiver.endpoint();
    let at = |percent| {
        sidecar(
            "reviews",
            "inbound",
            listen,
            app.addr,
            &tracing_section("[w3c]", percent, Some(&endpoint), 1),
        )
    };

    // Sampling 0 %: a new trace is propagated, unsampled, with a request id; no span.
    let weir = Weir::start(&at(0)).await;
    for _ in 0..20 {
        assert_eq!(status(listen, "/", &[]).await, 200);
    }
    let seen = app.last_headers();
    let tp = seen["traceparent"].to_str().unwrap_or_default().to_string();
    assert!(tp.starts_with("00-") && tp.ends_with("-00"), "{tp}");
    let request_id = seen["x-request-id"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(request_id.len(), 36, "a UUID: {request_id}");
    assert_eq!(&request_id[14..15], "4", "version 4: {request_id}");
    // A caller that sampled is obeyed, even at 0 %.
    let sampled = format!("00-{TRACE}-{CALLER_SPAN}-01");
    assert_eq!(status(listen, "/", &[("traceparent", &sampled)]).await, 200);
    let spans = receiver.wait_for_spans(1, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 1, "only the sampled request: {spans:#?}");
    assert_eq!(spans[0]["trace_id"], TRACE);
    drop(weir);

    // Sampling 100 %: a caller that did not sample is obeyed; weir records nothing and the
    // application stays the caller's child.
    receiver.clear().await;
    let weir = Weir::start(&at(100)).await;
    let unsampled = format!("00-{TRACE}-{CALLER_SPAN}-00");
    assert_eq!(
        status(listen, "/", &[("traceparent", &unsampled)]).await,
        200
    );
    assert_eq!(app.last_headers()["traceparent"], unsampled.as_str());
    assert_eq!(status(listen, "/", &[]).await, 200);
    let spans = receiver.wait_for_spans(1, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 1, "only the new, sampled trace: {spans:#?}");
    assert_ne!(spans[0]["trace_id"], TRACE);
    let exported = metric_settles(
        &weir,
        "weir_trace_spans_total",
        &[("outcome", "exported")],
        1.0,
    )
    .await;
    assert_eq!(exported, 1.0);
}

#[tokio::test]
async fn malformed_trace_headers_start_a_new_trace_and_fail_nothing() {
    let receiver = OtlpReceiver::start().await;
    let app = Upstream::start("app").await;
    let listen = free_addr();
    let tracing = tracing_section("[w3c, b3]", 100, Some(&receiver.endpoint()), 1);
    let _weir = Weir::start(&sidecar("reviews", "inbound", listen, app.addr, &tracing)).await;
    let zeros = format!("00-{}-{CALLER_SPAN}-01", "0".repeat(32));
    let upper = format!("00-{}-{CALLER_SPAN}-01", TRACE.to_uppercase());
    let hostile: Vec<Vec<(&str, &str)>> = vec![
        vec![("traceparent", "garbage")],
        vec![("traceparent", &zeros)],
        vec![("traceparent", &upper)],
        vec![(
            "traceparent",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
        vec![("b3", "not-a-b3-header-at-all")],
        vec![("x-b3-traceid", "xyz"), ("x-b3-spanid", "1")],
        vec![("tracestate", "orphan=1"), ("traceparent", "00-short-01")],
    ];
    for headers in &hostile {
        let (status, _, body) = get(listen, "/", headers).await.expect("answer");
        assert_eq!(status, 200, "{headers:?}: {body}");
        let seen = app.last_headers();
        let tp = seen["traceparent"].to_str().unwrap_or_default();
        assert_eq!(
            tp.len(),
            55,
            "a valid new traceparent for {headers:?}: {tp}"
        );
        assert!(!tp.contains(TRACE), "{headers:?}: {tp}");
        assert!(
            seen.get("tracestate").is_none(),
            "a tracestate without a valid traceparent is dropped: {seen:?}"
        );
    }
    let spans = receiver
        .wait_for_spans(hostile.len(), Duration::from_secs(10))
        .await;
    assert_eq!(spans.len(), hostile.len());
    for span in &spans {
        assert_eq!(
            span["parent_span_id"], "",
            "each started a new trace: {span:#?}"
        );
    }
    // A well-behaved caller is still served and traced.
    let good = format!("00-{TRACE}-{CALLER_SPAN}-01");
    assert_eq!(status(listen, "/", &[("traceparent", &good)]).await, 200);
    let spans = receiver
        .wait_for_spans(hostile.len() + 1, Duration::from_secs(10))
        .await;
    assert!(spans.iter().any(|s| s["trace_id"] == TRACE), "{spans:#?}");
}

#[tokio::test]
async fn retries_are_span_events_and_weirs_own_errors_mark_the_span() {
    let receiver = OtlpReceiver::start().await;
    let app = Upstream::start("app").await;
    let closed = free_addr(); // nothing listens: the first attempt fails to connect
    let listen = free_addr();
    let yaml = format!(
        "version: 1\nnode: {{ service: frontend }}\nadmin: {{ address: \"{{admin}}\" }}\nlisteners:\n  - name: outbound\n    address: {listen}\n    routes:\n      - name: api\n        match: {{ path: {{ prefix: /api }} }}\n        retries: {{ attempts: 2, on: [connect-failure] }}\n        backends: [{{ service: next }}]\nservices:\n  - name: next\n    load_balancer: round_robin\n    endpoints: [\"{closed}\", \"{}\"]\n{}",
        app.addr,
        tracing_section("[w3c]", 100, Some(&receiver.endpoint()), 1)
    );
    let _weir = Weir::start(&yaml).await;
    // Round robin starts at the closed endpoint for one of two requests: send two.
    for _ in 0..2 {
        assert_eq!(status(listen, "/api/x", &[]).await, 200);
    }
    assert_eq!(status(listen, "/elsewhere", &[]).await, 404);
    let spans = receiver.wait_for_spans(3, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let retried = spans
        .iter()
        .find(|s| attr(s, "weir.retries") == 1)
        .unwrap_or_else(|| panic!("one request was retried: {spans:#?}"));
    let events = retried["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "{retried:#?}");
    assert_eq!(events[0]["name"], "retry");
    assert_eq!(events[0]["attributes"]["weir.endpoint"], closed.to_string());
    assert_eq!(
        events[0]["attributes"]["weir.retry_reason"],
        "connect_failure"
    );
    assert_eq!(*attr(retried, "weir.endpoint"), app.addr.to_string());
    assert_eq!(retried["status"]["code"], "STATUS_CODE_UNSET");
    let unrouted = spans
        .iter()
        .find(|s| attr(s, "http.response.status_code") == 404)
        .unwrap_or_else(|| panic!("the 404 has a span: {spans:#?}"));
    assert_eq!(unrouted["status"]["code"], "STATUS_CODE_ERROR");
    assert_eq!(attr(unrouted, "weir.error"), "no_route");
    assert_eq!(unrouted["name"], "GET");
}

#[tokio::test]
async fn a_collector_that_fails_hangs_or_is_gone_never_touches_requests() {
    let receiver = OtlpReceiver::start().await;
    let app = Upstream::start("app").await;
    let listen = free_addr();
    let tracing = tracing_section("[w3c]", 100, Some(&receiver.endpoint()), 1);
    let weir = Weir::start(&sidecar("reviews", "inbound", listen, app.addr, &tracing)).await;
    let mut client = crate::support::Client::connect(listen)
        .await
        .expect("connect");

    // Answering 500: every request served; the spans are counted as failed.
    receiver.set_mode("fail").await;
    for _ in 0..20 {
        assert_eq!(client.get("/", &[]).await.expect("answer").0, 200);
    }
    let failed = until(Duration::from_secs(10), || async {
        let failed = spans_counted(&weir, "failed").await;
        (failed > 0.0).then_some(failed)
    })
    .await;
    assert!(
        failed.is_some(),
        "failures counted: {}",
        weir.metrics().await
    );

    // Hanging: requests are not slowed down; the queue (64) fills and the rest are dropped.
    receiver.set_mode("hang").await;
    let started = std::time::Instant::now();
    for _ in 0..300 {
        assert_eq!(client.get("/", &[]).await.expect("answer").0, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a hung collector slowed requests: {:?}",
        started.elapsed()
    );
    let dropped = until(Duration::from_secs(10), || async {
        let dropped = spans_counted(&weir, "dropped").await;
        (dropped >= 200.0).then_some(dropped)
    })
    .await;
    assert!(dropped.is_some(), "drops counted: {}", weir.metrics().await);

    // Gone: still served.
    receiver.set_mode("ok").await;
    drop(receiver);
    for _ in 0..20 {
        assert_eq!(client.get("/", &[]).await.expect("answer").0, 200);
    }
    assert_eq!(app.hits(), 340);
}

#[tokio::test]
async fn queued_spans_are_flushed_on_shutdown() {
    let receiver = OtlpReceiver::start().await;
    let app = Upstream::start("app").await;
    let listen = free_addr();
    // A batch that never fills and a timer (5 s) that does not fire before the SIGTERM.
    let tracing = tracing_section("[w3c]", 100, Some(&receiver.endpoint()), 64);
    let mut weir = Weir::start(&sidecar("reviews", "inbound", listen, app.addr, &tracing)).await;
    for _ in 0..5 {
        assert_eq!(status(listen, "/", &[]).await, 200);
    }
    assert!(receiver.spans().await.is_empty(), "nothing exported yet");
    weir.signal("TERM");
    let exited = until(Duration::from_secs(10), || {
        let status = weir.child.try_wait().ok().flatten();
        async move { status }
    })
    .await;
    assert!(exited.is_some_and(|s| s.success()), "{}", weir.logs());
    assert_eq!(receiver.spans().await.len(), 5, "{}", weir.logs());
}

#[tokio::test]
async fn prometheus_stores_trace_id_exemplars_of_traced_requests() {
    let receiver = OtlpReceiver::start().await;
    let app = Upstream::start("app").await;
    let listen = free_addr();
    let tracing = tracing_section("[w3c]", 100, Some(&receiver.endpoint()), 1);
    let weir = Weir::start(&sidecar("reviews", "inbound", listen, app.addr, &tracing)).await;
    let prometheus = Prometheus::start(&[weir.admin]).await;
    let mut client = crate::support::Client::connect(listen)
        .await
        .expect("connect");
    let started = std::time::SystemTime::now();
    for _ in 0..20 {
        assert_eq!(client.get("/", &[]).await.expect("answer").0, 200);
    }
    let spans = receiver.wait_for_spans(20, Duration::from_secs(10)).await;
    let traces: Vec<&str> = spans
        .iter()
        .filter_map(|s| s["trace_id"].as_str())
        .collect();
    let exemplars = until(Duration::from_secs(20), || async {
        let found = prometheus
            .query_exemplars(
                "weir_http_request_duration_seconds_bucket",
                started,
                std::time::SystemTime::now() + Duration::from_secs(60),
            )
            .await;
        let ids: Vec<String> = found
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["labels"]["trace_id"].as_str().map(str::to_owned))
            .collect();
        (!ids.is_empty()).then_some(ids)
    })
    .await;
    let Some(exemplars) = exemplars else {
        panic!(
            "no exemplars in Prometheus; weir serves:\n{}\nPrometheus:\n{}",
            weir.metrics().await,
            prometheus.logs()
        );
    };
    for id in &exemplars {
        assert!(
            traces.contains(&id.as_str()),
            "exemplar {id} is a span's trace: {traces:?}"
        );
    }
}

#[tokio::test]
async fn over_mutual_tls_the_server_span_names_the_callers_identity() {
    let mesh = crate::mtls::TestMesh::new();
    let receiver = OtlpReceiver::start().await;
    let app = Upstream::start("app").await;
    let tracing = tracing_section("[w3c]", 100, Some(&receiver.endpoint()), 1);
    let inbound = free_addr();
    let server = format!(
        "version: 1\nnode: {{ service: reviews }}\nadmin: {{ address: \"{{admin}}\" }}\n{}listeners:\n  - name: inbound\n    address: {inbound}\n    tls: {{ mode: strict }}\n    routes:\n      - name: app\n        backends: [{{ service: app }}]\nservices:\n  - {{ name: app, endpoints: [\"{}\"] }}\n{tracing}",
        mesh.server_identity(),
        app.addr
    );
    let outbound = free_addr();
    let client = format!(
        "version: 1\nnode: {{ service: frontend }}\nadmin: {{ address: \"{{admin}}\" }}\n{}listeners:\n  - name: outbound\n    address: {outbound}\n    routes:\n      - name: reviews\n        backends: [{{ service: reviews }}]\nservices:\n  - name: reviews\n    endpoints: [\"{inbound}\"]\n    tls: {{ identity: \"{}\" }}\n{tracing}",
        mesh.client_identity(),
        mesh.server_id()
    );
    let _server = Weir::start(&server).await;
    let _client = Weir::start(&client).await;
    assert_eq!(status(outbound, "/", &[]).await, 200);
    let spans = receiver.wait_for_spans(2, Duration::from_secs(10)).await;
    let server_span = find(&spans, "SPAN_KIND_SERVER", "reviews");
    let client_span = find(&spans, "SPAN_KIND_CLIENT", "frontend");
    assert_eq!(
        *attr(server_span, "weir.peer.identity"),
        mesh.client_id(),
        "{server_span:#?}"
    );
    assert_eq!(server_span["parent_span_id"], client_span["span_id"]);
    assert_eq!(server_span["trace_id"], client_span["trace_id"]);
    assert!(
        client_span["attributes"]
            .get("weir.peer.identity")
            .is_none(),
        "the client side has no downstream peer identity"
    );
}

#[tokio::test]
async fn the_readme_tracing_section_configures_a_sidecar_that_exports() {
    let block = crate::support::readme_blocks("Tracing with Jaeger", "yaml")
        .into_iter()
        .next()
        .expect("a yaml block");
    // The README's collector address, pointed at the test's receiver.
    let receiver = OtlpReceiver::start().await;
    let block = block.replace("http://127.0.0.1:4318/v1/traces", &receiver.endpoint());
    assert!(block.contains(&receiver.endpoint()), "{block}");
    let app = Upstream::start("app").await;
    let listen = free_addr();
    let weir = Weir::start(&sidecar("reviews", "inbound", listen, app.addr, &block)).await;
    assert!(
        !weir.logs().contains("WARN"),
        "the README's config loads cleanly: {}",
        weir.logs()
    );
    // 1 % sampling: a caller's sampled request is exported all the same.
    let sampled = format!("00-{TRACE}-{CALLER_SPAN}-01");
    assert_eq!(status(listen, "/", &[("traceparent", &sampled)]).await, 200);
    let spans = receiver.wait_for_spans(1, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0]["trace_id"], TRACE);
    // Both listed formats are written for the application.
    let seen = app.last_headers();
    assert!(
        seen.contains_key("traceparent") && seen.contains_key("x-b3-traceid"),
        "{seen:?}"
    );
}
