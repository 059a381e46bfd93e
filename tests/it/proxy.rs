//! HTTP proxying: routing, header rewriting, error responses, HTTP/2 on both sides.

use std::time::Duration;

use weir::telemetry::prometheus_text::metric_sum;

use crate::support::{
    curl, eventually, exchange, free_port, scripted_upstream, Client, Upstream, Weir,
};

/// A config with one listener; `routes` and `services` are YAML blocks indented for their
/// place.
fn config(port: u16, routes: &str, services: &str) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: info, format: text, access_log: true }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n{routes}\nservices:\n{services}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_path_header_and_method_first_match_wins() {
    let (a, b, c, d) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
        Upstream::start("d").await,
    );
    let port = free_port();
    let routes = r#"      - name: canary
        match: { path: { prefix: /reviews }, headers: [{ name: x-canary, exact: "true" }], method: GET }
        backends: [{ service: b }]
      - name: exact
        match: { path: { exact: /reviews/top } }
        backends: [{ service: c }]
      - name: regex
        match: { path: { regex: "/users/[0-9]+" } }
        backends: [{ service: d }]
      - name: reviews
        match: { path: { prefix: /reviews } }
        backends: [{ service: a }]"#;
    let services = format!(
        "  - {{ name: a, endpoints: [\"{}\"] }}\n  - {{ name: b, endpoints: [\"{}\"] }}\n  - {{ name: c, endpoints: [\"{}\"] }}\n  - {{ name: d, endpoints: [\"{}\"] }}\n",
        a.addr, b.addr, c.addr, d.addr
    );
    let weir = Weir::start(&config(port, routes, &services)).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = Client::connect(addr).await.unwrap();

    assert_eq!(
        client
            .get("/reviews/1", &[("x-canary", "true")])
            .await
            .unwrap()
            .2,
        "b"
    );
    assert_eq!(
        client
            .get("/reviews/1", &[("x-canary", "false")])
            .await
            .unwrap()
            .2,
        "a"
    );
    assert_eq!(
        client
            .request("POST", "/reviews/1", &[("x-canary", "true")], "".into())
            .await
            .unwrap()
            .2,
        "a",
        "method GET only"
    );
    assert_eq!(client.get("/reviews/top", &[]).await.unwrap().2, "c");
    assert_eq!(client.get("/users/42", &[]).await.unwrap().2, "d");

    let (status, headers, body) = client.get("/users/42/x", &[]).await.unwrap();
    assert_eq!(status, 404);
    assert_eq!(headers["weir-error"], "no_route");
    assert_eq!(
        body,
        "weir: no route of listener main matches GET /users/42/x\n"
    );

    let metrics = weir.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_http_requests_total",
            &[("route", "canary"), ("service", "b"), ("code", "200")]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_http_requests_total",
            &[("route", "none"), ("code", "404"), ("error", "no_route")]
        ),
        1.0
    );
    // Access lines reach stderr from a background writer, within a few milliseconds.
    let logged = |logs: &str| {
        logs.contains("route=canary service=b")
            && logs.contains("path=/users/42/x status=404")
            && logs.contains("error=no_route")
    };
    assert!(
        eventually(Duration::from_secs(2), || logged(&weir.logs())).await,
        "{}",
        weir.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_dropped_and_forwarding_headers_set() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let routes = "      - name: all\n        backends: [{ service: up }]";
    let weir = Weir::start(&config(
        port,
        routes,
        &format!("  - {{ name: up, endpoints: [\"{}\"] }}\n", up.addr),
    ))
    .await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = Client::connect(addr).await.unwrap();
    let (status, headers, _) = client
        .get(
            "/",
            &[
                ("connection", "keep-alive, x-private"),
                ("x-private", "secret"),
                ("keep-alive", "timeout=5"),
                ("x-forwarded-for", "203.0.113.7"),
                ("x-app", "kept"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(headers["x-upstream"], "up");
    let seen = up.last_headers();
    assert!(
        !seen.contains_key("x-private"),
        "a field named by Connection must not be forwarded"
    );
    assert!(!seen.contains_key("keep-alive"));
    assert_eq!(seen["x-app"], "kept");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    drop(weir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_map_to_design_errors() {
    let up = Upstream::start("up").await;
    let dead = free_port();
    let port = free_port();
    let routes = r#"      - name: slow
        match: { path: { prefix: /delay } }
        timeout: 200ms
        backends: [{ service: up }]
      - name: dead
        match: { path: { prefix: /dead } }
        backends: [{ service: dead }]
      - name: rest
        backends: [{ service: up }]"#;
    let services = format!("  - {{ name: up, endpoints: [\"{}\"] }}\n  - {{ name: dead, endpoints: [\"127.0.0.1:{dead}\"], connect_timeout: 500ms }}\n", up.addr);
    let weir = Weir::start(&config(port, routes, &services)).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = Client::connect(addr).await.unwrap();

    let started = std::time::Instant::now();
    let (status, headers, body) = client.get("/delay/2000", &[]).await.unwrap();
    assert_eq!(
        (status, headers["weir-error"].to_str().unwrap()),
        (504, "timeout")
    );
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "timeout fired late: {:?}",
        started.elapsed()
    );
    assert!(
        body.starts_with("weir: route slow timed out after 200ms"),
        "{body}"
    );

    let (status, headers, body) = client.get("/dead", &[]).await.unwrap();
    assert_eq!(
        (status, headers["weir-error"].to_str().unwrap()),
        (502, "connect_failed")
    );
    assert!(
        body.contains(&format!("127.0.0.1:{dead}")) && body.contains("service dead"),
        "{body}"
    );

    let (status, headers, _) = client.get("/status/503", &[]).await.unwrap();
    assert_eq!(status, 503);
    assert!(
        !headers.contains_key("weir-error"),
        "an upstream 503 is relayed, not made by weir"
    );

    assert_eq!(client.get("/", &[]).await.unwrap().0, 200);

    let metrics = weir.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_http_requests_total",
            &[("error", "timeout")]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_http_requests_total",
            &[
                ("error", "connect_failed"),
                ("endpoint", &format!("127.0.0.1:{dead}"))
            ]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_mid_body_breaks_the_client_body_and_weir_keeps_serving() {
    let broken = crate::support::truncating_upstream().await;
    let up = Upstream::start("up").await;
    let port = free_port();
    let routes = "      - name: broken\n        match: { path: { prefix: /broken } }\n        backends: [{ service: broken }]\n      - name: rest\n        backends: [{ service: up }]";
    let services = format!("  - {{ name: broken, endpoints: [\"{broken}\"] }}\n  - {{ name: up, endpoints: [\"{}\"] }}\n", up.addr);
    let weir = Weir::start(&config(port, routes, &services)).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = Client::connect(addr).await.unwrap();
    let reset = client.get("/broken", &[]).await;
    assert!(
        reset.is_err(),
        "the client must see the body break, not a clean short body: {reset:?}"
    );
    assert_eq!(
        crate::support::get(addr, "/", &[]).await.unwrap().0,
        200,
        "weir keeps serving"
    );
    assert!(
        eventually(Duration::from_secs(2), || weir
            .logs()
            .contains("path=/broken status=200"))
        .await
    );
    let logs = weir.logs();
    let line = logs.lines().find(|l| l.contains("path=/broken")).unwrap();
    assert!(line.contains("error=upstream_reset"), "{line}");
    let metrics = weir.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_http_requests_total",
            &[
                ("route", "broken"),
                ("code", "200"),
                ("error", "upstream_reset")
            ]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_http_requests_in_flight",
            &[("service", "broken")]
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_before_headers_is_upstream_reset() {
    // An upstream that accepts and closes at once: the exchange fails before any response.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let port = free_port();
    let routes = "      - name: all\n        backends: [{ service: closer }]";
    let _weir = Weir::start(&config(
        port,
        routes,
        &format!("  - {{ name: closer, endpoints: [\"{upstream}\"] }}\n"),
    ))
    .await;
    let (status, headers, body) =
        crate::support::get(format!("127.0.0.1:{port}").parse().unwrap(), "/", &[])
            .await
            .unwrap();
    assert_eq!(
        (status, headers["weir-error"].to_str().unwrap()),
        (502, "upstream_reset"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_downstream_and_http2_upstream() {
    let up = Upstream::start("h2up").await;
    let port = free_port();
    let routes = "      - name: h1\n        match: { path: { prefix: /one } }\n        backends: [{ service: h1 }]\n      - name: h2\n        backends: [{ service: h2 }]";
    let services = format!("  - {{ name: h1, endpoints: [\"{0}\"] }}\n  - {{ name: h2, endpoints: [\"{0}\"], protocol: http2 }}\n", up.addr);
    let _weir = Weir::start(&config(port, routes, &services)).await;
    let url = |p: &str| format!("http://127.0.0.1:{port}{p}");
    // h2c client -> weir -> HTTP/1.1 upstream
    let (ok, out) = curl(&[
        "--http2-prior-knowledge",
        "-w",
        " %{http_version}",
        &url("/one"),
    ]);
    assert!(ok);
    assert_eq!(out, "h2up 2");
    // h2c client -> weir -> h2c upstream, trailers relayed
    let (ok, out) = curl(&[
        "--http2-prior-knowledge",
        "-w",
        " %{http_version}",
        &url("/two"),
    ]);
    assert!(ok);
    assert_eq!(out, "h2up 2");
    // HTTP/1.1 client -> weir -> h2c upstream
    let (ok, out) = curl(&["--http1.1", &url("/x")]);
    assert!(ok && out == "h2up", "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_1_client_behind_an_http_1_0_upstream_is_answered_in_1_1_and_kept_alive() {
    let (up, _) = scripted_upstream(b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
    let port = free_port();
    let routes = "      - name: all\n        backends: [{ service: up }]";
    let _weir = Weir::start(&config(
        port,
        routes,
        &format!("  - {{ name: up, endpoints: [\"{up}\"] }}\n"),
    ))
    .await;
    let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    for _ in 0..2 {
        let answer = exchange(&mut client, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_and_closed_when_idle() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let routes = "      - name: all\n        backends: [{ service: up }]";
    let services = format!(
        "  - {{ name: up, endpoints: [\"{}\"], idle_timeout: 300ms }}\n",
        up.addr
    );
    let weir = Weir::start(&config(port, routes, &services)).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = Client::connect(addr).await.unwrap();
    for _ in 0..200 {
        assert_eq!(client.get("/", &[]).await.unwrap().0, 200);
    }
    assert_eq!(
        up.connections(),
        1,
        "sequential requests share one keep-alive upstream connection"
    );
    // A fresh downstream connection still reuses the pooled upstream connection.
    assert_eq!(crate::support::get(addr, "/", &[]).await.unwrap().0, 200);
    assert_eq!(up.connections(), 1);
    // With no traffic at all, weir closes the idle connection itself.
    let services_url = weir.admin;
    let mut closed = false;
    for _ in 0..200 {
        let s = crate::support::get(services_url, "/services", &[])
            .await
            .unwrap()
            .2;
        if s.contains("\"connections\": 0") {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        closed,
        "the idle connection was not closed after idle_timeout"
    );
    assert_eq!(client.get("/", &[]).await.unwrap().0, 200);
    assert_eq!(
        up.connections(),
        2,
        "a connection idle past idle_timeout is not reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_log_has_one_line_per_request() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: info, format: json, access_log: true }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: all\n        backends: [{{ service: up }}]\nservices:\n  - {{ name: up, endpoints: [\"{}\"] }}\n",
        up.addr
    );
    let weir = Weir::start(&yaml).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = Client::connect(addr).await.unwrap();
    for path in ["/a", "/status/500", "/c"] {
        client.get(path, &[]).await.unwrap();
    }
    assert!(
        eventually(Duration::from_secs(2), || weir
            .logs()
            .matches("\"target\":\"weir::access\"")
            .count()
            == 3)
        .await,
        "{}",
        weir.logs()
    );
    let logs = weir.logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| l.contains("weir::access"))
        .map(|l| serde_json::from_str(l).expect("each access line is one JSON object"))
        .collect();
    assert_eq!(lines[1]["path"], "/status/500");
    assert_eq!(lines[1]["status"], 500);
    assert_eq!(lines[1]["route"], "all");
    assert_eq!(lines[1]["service"], "up");
    assert_eq!(lines[1]["endpoint"], up.addr.to_string());
    assert_eq!(lines[1]["error"], "");
    assert!(lines[1]["duration_ms"].as_f64().is_some());
}

/// Sends SIGTERM and waits (5 s at most) for weir to exit, so that its log is complete.
async fn stop(weir: &mut Weir) {
    weir.signal("TERM");
    let exited = eventually(Duration::from_secs(5), || {
        matches!(weir.child.try_wait(), Ok(Some(_)))
    })
    .await;
    assert!(exited, "weir did not exit after SIGTERM:\n{}", weir.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_is_off_by_default_and_its_drop_counter_is_exported() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: all\n        match: {{ path: {{ prefix: /a }} }}\n        backends: [{{ service: up }}]\nservices:\n  - {{ name: up, endpoints: [\"{}\"] }}\n",
        up.addr
    );
    let mut weir = Weir::start(&yaml).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = Client::connect(addr).await.unwrap();
    assert_eq!(client.get("/a", &[]).await.unwrap().0, 200);
    assert_eq!(client.get("/nowhere", &[]).await.unwrap().0, 404);

    let metrics = weir.metrics().await;
    assert!(
        metrics.contains("\nweir_access_log_dropped_total 0\n"),
        "{metrics}"
    );
    let (_, _, config) = crate::support::get(weir.admin, "/config", &[])
        .await
        .unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["config"]["logging"]["access_log"], false, "{config}");

    stop(&mut weir).await;
    let logs = weir.logs();
    assert!(logs.contains("drained; exiting"), "{logs}");
    assert!(
        !logs.contains("weir::access") && !logs.contains("status="),
        "no access line with the default config:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_are_flushed_on_shutdown_and_escaped_in_json() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = free_port();
    let yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ format: json, access_log: true }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: none\n        match: {{ path: {{ exact: /never }} }}\n        backends: [{{ service: up }}]\nservices:\n  - {{ name: up, endpoints: [\"127.0.0.1:1\"] }}\n"
    );
    let mut weir = Weir::start(&yaml).await;
    // A request target with a quote and a backslash, which hyper and http accept as is.
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(b"GET /a\"b\\c HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    assert!(response.starts_with(b"HTTP/1.1 404"), "{response:?}");
    // Stop at once: the line must not wait in the writer's queue and be lost.
    stop(&mut weir).await;
    let logs = weir.logs();
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| l.contains("\"target\":\"weir::access\""))
        .map(|l| serde_json::from_str(l).expect("each access line is one JSON object"))
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
    assert_eq!(lines[0]["path"], "/a\"b\\c");
    assert_eq!(lines[0]["status"], 404);
    assert_eq!(lines[0]["error"], "no_route");
    assert_eq!(lines[0]["level"], "INFO");
    let ms = lines[0]["duration_ms"].to_string();
    let decimals = ms.split_once('.').map_or(0, |(_, d)| d.len());
    assert!(decimals <= 3, "duration_ms {ms} has at most 3 decimals");
}
