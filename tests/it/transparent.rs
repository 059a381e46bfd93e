//! Transparent listeners without a network namespace: a client that dials the listener
//! itself has the listener's own address as its original destination, so a service whose
//! `addresses` name that address claims the connection. (`tests/it/pods.rs` has the real
//! iptables redirection.)

use weir::telemetry::prometheus_text::metric_sum;

use crate::support::{curl, free_port, Upstream, Weir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_routes_come_first_and_the_claiming_service_takes_the_rest() {
    let (main, canary) = (
        Upstream::start("main").await,
        Upstream::start("canary").await,
    );
    let port = free_port();
    let weir = Weir::start(&format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlisteners:\n  - name: out\n    address: 127.0.0.1:{port}\n    transparent: true\n    routes:\n      - name: by-host\n        match: {{ authority: {{ exact: canary.shop }} }}\n        backends: [{{ service: canary }}]\n      - name: by-destination\n        match: {{ destination: [\"127.0.0.1:{port}\"], headers: [{{ name: x-canary, present: true }}] }}\n        backends: [{{ service: canary }}]\nservices:\n  - {{ name: main, endpoints: [\"{}\"], addresses: [\"127.0.0.1:{port}\"] }}\n  - {{ name: canary, endpoints: [\"{}\"] }}\n",
        main.addr, canary.addr
    ))
    .await;
    let url = format!("http://127.0.0.1:{port}/");
    let answer = |headers: &[&str]| {
        let mut args: Vec<&str> = headers.iter().flat_map(|h| ["-H", *h]).collect();
        args.push(&url);
        let (ok, body) = curl(&args);
        assert!(ok, "curl {args:?} failed");
        body
    };
    assert_eq!(answer(&["host: canary.shop:9080"]), "canary");
    assert_eq!(answer(&["host: main.shop", "x-canary: 1"]), "canary");
    assert_eq!(answer(&["host: main.shop"]), "main");
    // HTTP/2 with prior knowledge is recognised as HTTP too.
    let (ok, body) = curl(&["--http2-prior-knowledge", &url]);
    assert!(ok, "curl failed");
    assert_eq!(body, "main");
    let metrics = weir.metrics().await;
    for (route, want) in [("by-host", 1.0), ("by-destination", 1.0), ("main", 2.0)] {
        let labels = [("listener", "out"), ("route", route), ("code", "200")];
        assert_eq!(
            metric_sum(&metrics, "weir_http_requests_total", &labels),
            want,
            "{route}: {metrics}"
        );
    }
}
