//! Traffic splitting and load balancing, each property proven with numbers over real
//! requests through the real binary.

use std::sync::atomic::Ordering;

use weir::telemetry::prometheus_text::metric_sum;

use crate::support::{free_port, load, Client, Upstream, Weir};

fn yaml(port: u16, backends: &str, services: &str) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: warn, access_log: false }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: split\n        backends: {backends}\nservices:\n{services}"
    )
}

fn share(counts: &std::collections::HashMap<String, usize>, key: &str, total: usize) -> f64 {
    *counts.get(key).unwrap_or(&0) as f64 * 100.0 / total as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_90_10_lands_within_one_and_a_half_points_and_weight_zero_gets_nothing() {
    let (v1, v2, v3) = (
        Upstream::start("v1").await,
        Upstream::start("v2").await,
        Upstream::start("v3").await,
    );
    let port = free_port();
    let services = format!(
        "  - {{ name: v1, endpoints: [\"{}\"] }}\n  - {{ name: v2, endpoints: [\"{}\"] }}\n  - {{ name: v3, endpoints: [\"{}\"] }}\n",
        v1.addr, v2.addr, v3.addr
    );
    let weir = Weir::start(&yaml(
        port,
        "[{ service: v1, weight: 90 }, { service: v2, weight: 10 }, { service: v3, weight: 0 }]",
        &services,
    ))
    .await;
    let total = 10_000;
    let counts = load(format!("127.0.0.1:{port}").parse().unwrap(), "/", total, 8).await;
    let (s1, s2) = (share(&counts, "v1", total), share(&counts, "v2", total));
    assert!(
        (s1 - 90.0).abs() <= 1.5 && (s2 - 10.0).abs() <= 1.5,
        "split {s1:.2}/{s2:.2}: {counts:?}"
    );
    assert_eq!(v3.hits(), 0, "weight 0 receives nothing");
    assert_eq!(counts.values().sum::<usize>(), total);
    let metrics = weir.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_http_requests_total",
            &[("route", "split"), ("code", "200")]
        ),
        total as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_gives_exactly_equal_counts_and_honours_endpoint_weights() {
    let ups = three_upstreams().await;
    let port = free_port();
    let services = format!(
        "  - name: rr\n    load_balancer: round_robin\n    endpoints: [\"{}\", \"{}\", {{ address: \"{}\", weight: 2 }}]\n",
        ups[0].addr, ups[1].addr, ups[2].addr
    );
    let _weir = Weir::start(&yaml(port, "[{ service: rr }]", &services)).await;
    let counts = load(format!("127.0.0.1:{port}").parse().unwrap(), "/", 4_000, 4).await;
    assert_eq!(
        (counts["a"], counts["b"], counts["c"]),
        (1_000, 1_000, 2_000),
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_starves_a_slow_endpoint_at_concurrency_16() {
    let (fast, slow) = (Upstream::start("fast").await, Upstream::start("slow").await);
    slow.state.delay_ms.store(50, Ordering::SeqCst);
    let port = free_port();
    let services = format!(
        "  - name: lr\n    load_balancer: least_request\n    endpoints: [\"{}\", \"{}\"]\n",
        fast.addr, slow.addr
    );
    let _weir = Weir::start(&yaml(port, "[{ service: lr }]", &services)).await;
    let total = 2_000;
    let counts = load(format!("127.0.0.1:{port}").parse().unwrap(), "/", total, 16).await;
    let slow_share = share(&counts, "slow", total);
    assert!(
        slow_share < 20.0,
        "slow endpoint got {slow_share:.1}%: {counts:?}"
    );
    assert_eq!(
        counts.get("fast").copied().unwrap_or(0) + counts.get("slow").copied().unwrap_or(0),
        total
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connection_is_an_alias_and_random_honours_weights() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let port = free_port();
    let services = format!(
        "  - name: lc\n    load_balancer: least_connection\n    endpoints: [\"{0}\"]\n  - name: rnd\n    load_balancer: random\n    endpoints: [\"{0}\", {{ address: \"{1}\", weight: 3 }}]\n",
        a.addr, b.addr
    );
    let routes = "[{ service: rnd }]";
    let weir = Weir::start(&yaml(port, routes, &services)).await;
    let total = 4_000;
    let counts = load(format!("127.0.0.1:{port}").parse().unwrap(), "/", total, 4).await;
    assert!(
        (share(&counts, "b", total) - 75.0).abs() < 3.0,
        "{counts:?}"
    );
    let services = crate::support::get(weir.admin, "/services", &[])
        .await
        .unwrap()
        .2;
    assert!(
        services.contains("\"least_request\""),
        "least_connection is least_request: {services}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_keeps_each_key_on_one_endpoint() {
    let ups = three_upstreams().await;
    let port = free_port();
    let services = format!(
        "  - name: rh\n    load_balancer: ring_hash\n    ring_hash: {{ header: x-user-id }}\n    endpoints: [\"{}\", \"{}\", \"{}\"]\n",
        ups[0].addr, ups[1].addr, ups[2].addr
    );
    let _weir = Weir::start(&yaml(port, "[{ service: rh }]", &services)).await;
    let mut client = Client::connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    let mut owners = std::collections::HashSet::new();
    for user in 0..60 {
        let id = format!("user-{user}");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10 {
            let (_, headers, _) = client.get("/", &[("x-user-id", &id)]).await.unwrap();
            seen.insert(headers["x-upstream"].to_str().unwrap().to_string());
        }
        assert_eq!(seen.len(), 1, "{id} moved between endpoints: {seen:?}");
        owners.extend(seen);
    }
    assert_eq!(owners.len(), 3, "60 keys spread over all three endpoints");
}

/// Upstreams named `a`, `b` and `c`.
async fn three_upstreams() -> [Upstream; 3] {
    [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ]
}
