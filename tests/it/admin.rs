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
