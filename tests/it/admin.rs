//! The admin server: readiness, liveness, config and services dumps, and `/metrics` checked
//! by the real Prometheus tools.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{free_port, get, load, scratch_dir, Upstream, Weir};

fn yaml(port: u16, up: std::net::SocketAddr) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: warn, access_log: false }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: all\n        backends: [{{ service: up }}]\n      - name: never\n        match: {{ path: {{ exact: /never }} }}\n        backends: [{{ service: up }}]\nservices:\n  - name: up\n    endpoints: [\"{up}\", {{ address: \"127.0.0.1:1\", weight: 0 }}]\n"
    )
}

/// Runs `promtool check metrics` on a scrape and fails on any complaint.
fn assert_promtool_is_silent(text: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (scripts/test installs the prometheus package)");
    std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "promtool check metrics complained:\n{complaints}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_cover_the_design_metrics() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&yaml(port, up.addr)).await;
    load(format!("127.0.0.1:{port}").parse().unwrap(), "/", 50, 2).await;
    let (status, headers, text) = get(weir.admin, "/metrics", &[]).await.unwrap();
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    for name in [
        "weir_http_requests_total{",
        "weir_http_request_duration_seconds_bucket{",
        "weir_http_requests_in_flight{",
        "weir_upstream_endpoints{service=\"up\",state=\"healthy\"} 2",
        "weir_build_info{version=",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    assert_promtool_is_silent(&text);

    let (_, headers, om) = get(
        weir.admin,
        "/metrics",
        &[("accept", "application/openmetrics-text; version=1.0.0")],
    )
    .await
    .unwrap();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(om.ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_weir() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&yaml(port, up.addr)).await;
    load(format!("127.0.0.1:{port}").parse().unwrap(), "/", 20, 1).await;
    let dir = scratch_dir("prometheus");
    let prom_port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global: {{ scrape_interval: 1s }}\nscrape_configs:\n  - job_name: weir\n    static_configs: [{{ targets: [\"{}\"] }}]\n", weir.admin),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is installed (scripts/test installs it)");
    let prom = format!("127.0.0.1:{prom_port}").parse().unwrap();
    let query = "/api/v1/query?query=sum(weir_http_requests_total%7Broute%3D%22all%22%7D)";
    let mut answer = String::new();
    for _ in 0..300 {
        if let Ok((200, _, body)) = get(prom, query, &[]).await {
            answer = body;
            if answer.contains("\"20\"") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        answer.contains("\"20\""),
        "Prometheus did not see 20 requests: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_live_config_and_services() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&yaml(port, up.addr)).await;
    assert_eq!(get(weir.admin, "/ready", &[]).await.unwrap().0, 200);
    assert_eq!(get(weir.admin, "/live", &[]).await.unwrap().0, 200);
    let (status, _, config) = get(weir.admin, "/config", &[]).await.unwrap();
    assert_eq!(status, 200);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["config"]["listeners"][0]["address"],
        format!("127.0.0.1:{port}")
    );
    assert_eq!(config["config"]["services"][0]["connect_timeout"], "1s");
    assert_eq!(
        config["bound"]["listeners"]["main"],
        format!("127.0.0.1:{port}")
    );
    assert_eq!(config["bound"]["admin"], weir.admin.to_string());
    assert_eq!(
        config["sha256"].as_str().map(str::len),
        Some(64),
        "{config}"
    );
    assert!(
        config["source"]
            .as_str()
            .is_some_and(|s| s.ends_with(".yaml")),
        "{config}"
    );
    assert!(
        config["loaded_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{config}"
    );
    let (_, _, services) = get(weir.admin, "/services", &[]).await.unwrap();
    let services: serde_json::Value = serde_json::from_str(&services).unwrap();
    let endpoints = &services["services"][0]["endpoints"];
    assert_eq!(endpoints[0]["address"], up.addr.to_string());
    assert_eq!(endpoints[0]["weight"], 1);
    assert_eq!(endpoints[0]["in_flight"], 0);
    assert_eq!(endpoints[0]["state"], "healthy");
    assert_eq!(endpoints[1]["weight"], 0);
    assert_eq!(get(weir.admin, "/nope", &[]).await.unwrap().0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_shows_the_default_limits_of_a_service_that_sets_none() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&yaml(port, up.addr)).await;
    let (_, _, config) = get(weir.admin, "/config", &[]).await.unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["config"]["services"][0]["limits"],
        serde_json::json!({
            "max_connections": 1024,
            "max_pending_requests": 1024,
            "max_requests": 1024,
            "max_retries": 3
        })
    );
}

/// Every feature at once: a split with retries and a mirror, a circuit breaker that opens,
/// outlier detection, health checks, mTLS in (a strict listener) and out (a service reached
/// through it), a tcp listener, tracing to a collector, the access log, and a request no
/// route takes.
fn every_feature(
    mesh: &crate::mtls::TestMesh,
    ports: (u16, u16, u16),
    otlp: &str,
    ups: [&Upstream; 5],
) -> String {
    let (port, inbound, tcp) = ports;
    let [a, b, failing, shadow, failing2] = ups;
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\n{identity}logging: {{ level: warn, access_log: true }}\ntracing: {{ sampling_percent: 100, otlp: {{ endpoint: \"{otlp}\", batch_size: 8 }} }}\nlisteners:\n  - name: out\n    address: 127.0.0.1:{port}\n    routes:\n      - name: split\n        match: {{ path: {{ prefix: /split }} }}\n        retries: {{ attempts: 2 }}\n        mirror: {{ service: shadow }}\n        backends: [{{ service: a, weight: 90 }}, {{ service: b, weight: 10 }}]\n      - name: breaker\n        match: {{ path: {{ prefix: /breaker }} }}\n        backends: [{{ service: failing }}]\n      - name: secure\n        match: {{ path: {{ prefix: /secure }} }}\n        backends: [{{ service: secure }}]\n  - name: in\n    address: 127.0.0.1:{inbound}\n    tls: {{ mode: strict, allow: [\"{server}\"] }}\n    routes:\n      - name: local\n        backends: [{{ service: a }}]\n  - name: db\n    address: 127.0.0.1:{tcp}\n    protocol: tcp\n    routes:\n      - name: db\n        backends: [{{ service: b }}]\nservices:\n  - name: a\n    endpoints: [\"{a}\"]\n    health_check: {{ path: /health, interval: 1s, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 2 }}\n  - {{ name: b, endpoints: [\"{b}\"] }}\n  - {{ name: shadow, endpoints: [\"{shadow}\"] }}\n  - name: failing\n    endpoints: [\"{failing}\", \"{failing2}\"]\n    circuit_breaker: {{ window: 10s, buckets: 10, request_volume_threshold: 5, error_threshold_percent: 50, sleep_window: 60s }}\n    outlier_detection: {{ consecutive_5xx: 2, interval: 1s, base_ejection_time: 60s, max_ejection_percent: 50 }}\n  - {{ name: secure, endpoints: [\"127.0.0.1:{inbound}\"], tls: {{ identity: \"{server}\" }} }}\n",
        identity = mesh.server_identity(),
        server = mesh.server_id(),
        a = a.addr,
        b = b.addr,
        failing = failing.addr,
        failing2 = failing2.addr,
        shadow = shadow.addr,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_with_every_feature_active_has_no_empty_label_and_promtool_is_silent() {
    let mesh = crate::mtls::TestMesh::new();
    let collector = crate::observe::OtlpReceiver::start().await;
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let (failing, shadow) = (
        Upstream::start("failing").await,
        Upstream::start("shadow").await,
    );
    let failing2 = Upstream::start("failing2").await;
    failing.fail(100, 503);
    failing2.fail(100, 503);
    let ports = (free_port(), free_port(), free_port());
    let yaml = every_feature(
        &mesh,
        ports,
        &collector.endpoint(),
        [&a, &b, &failing, &shadow, &failing2],
    );
    let weir = Weir::start(&yaml).await;
    let out: std::net::SocketAddr = format!("127.0.0.1:{}", ports.0).parse().unwrap();
    load(out, "/split", 20, 2).await;
    load(out, "/breaker", 20, 2).await;
    load(out, "/secure", 3, 1).await;
    load(out, "/nowhere", 2, 1).await;
    let mut db = tokio::net::TcpStream::connect(("127.0.0.1", ports.2))
        .await
        .unwrap();
    let answer = crate::support::exchange(
        &mut db,
        b"GET / HTTP/1.1\r\nhost: db\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    drop(db);
    collector.wait_for_spans(10, Duration::from_secs(10)).await;
    let text = crate::support::metric_settles(&weir, "weir_tcp_connections_total", &[], 1.0).await;
    assert_eq!(text, 1.0, "the tcp connection was counted");
    let text = weir.metrics().await;
    for family in [
        "weir_http_requests_total{listener=\"out\",route=\"none\",service=\"none\",endpoint=\"none\",code=\"404\",error=\"no_route\"}",
        "weir_circuit_breaker_state{service=\"failing\",state=\"open\"} 1",
        "weir_circuit_breaker_rejected_total{service=\"failing\"}",
        "weir_outlier_ejections_total{",
        "weir_retries_total{route=\"split\"",
        "weir_tls_handshakes_total{listener=\"in\",side=\"server\",result=\"success\"}",
        "weir_tls_handshakes_total{listener=\"secure\",side=\"client\"",
        "weir_tls_peer_requests_total{",
        "weir_tls_certificate_expiry_timestamp_seconds{",
        "weir_tcp_bytes_total{",
        "weir_trace_spans_total{outcome=\"exported\"}",
        "weir_config_reloads_total{result=\"success\"} 0",
        "weir_downstream_errors_total{",
        "weir_http_request_duration_seconds_bucket{listener=\"out\",route=\"none\",service=\"none\"",
    ] {
        assert!(text.contains(family), "missing {family} in\n{text}");
    }
    assert!(!text.contains("=\"\""), "an empty label value:\n{text}");
    assert_promtool_is_silent(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_show_each_endpoints_requests_errors_and_last_error() {
    let up = Upstream::start("up").await;
    let dead = format!("127.0.0.1:{}", free_port());
    let port = free_port();
    let yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: warn }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: all\n        retries: {{ attempts: 1, on: [connect-failure] }}\n        backends: [{{ service: up }}]\nservices:\n  - name: up\n    endpoints: [\"{}\", \"{dead}\"]\n",
        up.addr
    );
    let weir = Weir::start(&yaml).await;
    let started = std::time::SystemTime::now();
    load(format!("127.0.0.1:{port}").parse().unwrap(), "/", 10, 1).await;
    let doc = crate::support::services(&weir).await;
    let endpoint = |address: &str| {
        doc["services"][0]["endpoints"]
            .as_array()
            .and_then(|e| e.iter().find(|e| e["address"] == address).cloned())
            .unwrap_or_default()
    };
    let live = endpoint(&up.addr.to_string());
    assert_eq!(live["requests"], up.hits(), "{doc}");
    assert_eq!(live["errors"], 0, "{doc}");
    assert!(live["last_error"].is_null(), "{doc}");
    // The dead endpoint's failed attempts (retried on the live one) show, with when.
    let gone = endpoint(&dead);
    let attempts = gone["requests"].as_u64().unwrap_or_default();
    assert!(attempts >= 1, "{doc}");
    assert_eq!(gone["errors"], attempts, "{doc}");
    assert_eq!(gone["last_error"]["error"], "connect_failure", "{doc}");
    let at = gone["last_error"]["at"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let started = weir::telemetry::access_log::format::rfc3339_seconds(started);
    assert!(
        at.len() == 20 && at >= started,
        "{at} (test started {started})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_shows_the_port_a_listener_on_port_0_was_given() {
    let up = Upstream::start("up").await;
    let yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlisteners:\n  - name: any\n    address: 127.0.0.1:0\n    routes:\n      - name: all\n        backends: [{{ service: up }}]\nservices:\n  - {{ name: up, endpoints: [\"{}\"] }}\n",
        up.addr
    );
    let weir = Weir::start(&yaml).await;
    let (_, _, config) = get(weir.admin, "/config", &[]).await.unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["config"]["listeners"][0]["address"], "127.0.0.1:0");
    let bound: std::net::SocketAddr = config["bound"]["listeners"]["any"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no bound address in {config}"));
    assert_ne!(bound.port(), 0, "{config}");
    let (status, headers, _) = get(bound, "/", &[])
        .await
        .expect("the bound address serves");
    assert_eq!(
        (status, headers["x-upstream"].to_str().unwrap()),
        (200, "up")
    );
}
