//! `weir explain` (offline, the real binary on a file) and `GET /explain` (a running weir
//! with real upstreams, one ejected endpoint and one open breaker).

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::{free_port, get, scratch_dir, until, weir_bounded, Upstream, Weir};

const OFFLINE: &str = r#"version: 1
identity: { cert: /etc/weir/identity/tls.crt, key: /etc/weir/identity/tls.key, trust_bundle: /etc/weir/identity/ca.crt }
listeners:
  - name: outbound
    address: 127.0.0.1:15001
    routes:
      - name: reviews-canary
        match:
          path: { prefix: /reviews }
          headers: [{ name: x-canary, exact: "true" }]
        backends: [{ service: reviews-v2 }]
      - name: reviews
        match: { path: { prefix: /reviews } }
        backends:
          - { service: reviews-v1, weight: 2 }
          - { service: reviews-v2, weight: 1 }
        timeout: 3s
        retries: { attempts: 2, per_try_timeout: 1s }
      - name: reviews-old
        match: { path: { exact: /reviews/old } }
        backends: [{ service: reviews-v1 }]
  - name: inbound
    address: 127.0.0.1:15006
    tls: { mode: permissive }
    routes:
      - name: from-frontend
        match: { peer: spiffe://cluster.local/ns/shop/sa/frontend }
        backends: [{ service: reviews-v1 }]
services:
  - name: reviews-v1
    endpoints: ["127.0.0.1:9001"]
    load_balancer: ring_hash
    ring_hash: { header: x-user }
  - name: reviews-v2
    endpoints: ["127.0.0.1:9002"]
"#;

fn write(text: &str) -> String {
    let path = scratch_dir("explain").join("weir.yaml");
    std::fs::write(&path, text).expect("written");
    path.display().to_string()
}

fn explain(args: &[&str]) -> (i32, String, String) {
    let out = weir_bounded(&[&["explain"], args].concat());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn weir_explain_prints_why_each_route_did_not_match_and_where_the_request_goes() {
    let file = write(OFFLINE);
    let (code, out, err) = explain(&["-c", &file, "GET", "/reviews/1", "-H", "x-canary: false"]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..8],
        [
            "listener outbound (127.0.0.1:15001, http)",
            "request GET /reviews/1 with x-canary: false",
            "routes, in order (the first that matches wins):",
            "  route reviews-canary: header x-canary is \"false\", wanted exactly \"true\"",
            "  route reviews: matches",
            "  route reviews-old: path /reviews/1 is not exactly /reviews/old",
            "otherwise: a request no route matches gets 404 with `weir-error: no_route`",
            "the request takes route reviews",
        ],
        "{out}"
    );
    assert!(
        out.contains("\n  backends: reviews-v1 66.7%, reviews-v2 33.3%\n"),
        "{out}"
    );
    assert!(
        out.contains("\n  timeout: 3s for the whole request"),
        "{out}"
    );
    assert!(out.contains("each try bounded by 1s"), "{out}");
    assert!(
        out.contains("\n  balancer: ring_hash on header x-user"),
        "{out}"
    );
    assert!(
        out.contains("\nwarning: route reviews-old can never match: route reviews (listeners[0].routes[1]) takes every request it would\n"),
        "{out}"
    );
    assert!(
        err.contains(&format!("{file}:19:9: listeners[0].routes[2]: warning: route reviews-old can never match: route reviews ({file}:12:9, listeners[0].routes[1]) takes every request it would")),
        "{err}"
    );
}

#[test]
fn weir_explain_says_a_request_no_route_takes_gets_a_404() {
    let file = write(OFFLINE);
    let (code, out, _) = explain(&["-c", &file, "--listener", "inbound", "GET", "/"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  route from-frontend: peer: the request has no mTLS peer, wanted spiffe://cluster.local/ns/shop/sa/frontend\n"), "{out}");
    assert!(
        out.contains("no route matches: weir answers 404 with `weir-error: no_route`"),
        "{out}"
    );
    let (code, out, _) = explain(&[
        "-c",
        &file,
        "--listener",
        "inbound",
        "--peer",
        "spiffe://cluster.local/ns/shop/sa/frontend",
        "GET",
        "/",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("the request takes route from-frontend\n"),
        "{out}"
    );
}

#[test]
fn weir_explain_refuses_an_invalid_configuration_or_question_with_exit_1() {
    let broken = write(&OFFLINE.replace("load_balancer: ring_hash", "load_balancer: ring_hsh"));
    let (code, out, err) = explain(&["-c", &broken, "GET", "/"]);
    assert_eq!(code, 1, "{out}");
    let (_, check_out) = {
        let o = weir_bounded(&["check", &broken]);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(err, check_out, "errors as weir check prints them");
    let file = write(OFFLINE);
    let (code, _, err) = explain(&["-c", &file, "--listener", "nope", "GET", "/"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no listener named nope; the listeners are outbound, inbound"),
        "{err}"
    );
    let (code, _, err) = explain(&["-c", &file, "GET", "/", "-H", "no-colon"]);
    assert_eq!(code, 1);
    assert!(err.contains("write it as `name: value`"), "{err}");
}

fn live_config(port: u16, pair: [SocketAddr; 2], flaky: SocketAddr) -> String {
    format!(
        r#"version: 1
admin: {{ address: "{{admin}}" }}
logging: {{ level: info, format: text, access_log: false }}
listeners:
  - name: main
    address: 127.0.0.1:{port}
    routes:
      - name: flaky
        match: {{ path: {{ prefix: /flaky }} }}
        backends: [{{ service: flaky }}]
      - name: idle
        match: {{ path: {{ prefix: /idle }} }}
        backends: [{{ service: idle }}]
      - name: pair
        backends: [{{ service: pair }}]
services:
  - name: idle
    endpoints: ["{}", "{}"]
    load_balancer: least_request
  - name: pair
    endpoints: ["{}", "{}"]
    load_balancer: round_robin
    outlier_detection: {{ consecutive_5xx: 3, interval: 10s, base_ejection_time: 30s, max_ejection_percent: 100 }}
  - name: flaky
    endpoints: ["{flaky}"]
    circuit_breaker: {{ window: 10s, buckets: 10, request_volume_threshold: 4, error_threshold_percent: 50, sleep_window: 30s }}
"#,
        pair[0], pair[1], pair[0], pair[1]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_explain_shows_the_ejected_endpoint_and_the_open_breaker() {
    let good = Upstream::start("good").await;
    let bad = Upstream::start("bad").await;
    bad.fail(100, 500);
    let flaky = Upstream::start("flaky").await;
    flaky.fail(100, 500);
    let port = free_port();
    let weir = Weir::start(&live_config(port, [good.addr, bad.addr], flaky.addr)).await;
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let ask = |path: &'static str, accept: &'static str| async move {
        get(weir.admin, path, &[("accept", accept)]).await
    };
    let text = until(Duration::from_secs(10), || async move {
        let _ = get(proxy, "/", &[]).await;
        let _ = get(proxy, "/flaky", &[]).await;
        let text = ask("/explain?method=GET&path=/", "text/plain")
            .await
            .ok()?
            .2;
        text.contains(": ejected, ").then_some(text)
    })
    .await
    .expect("the failing endpoint is ejected within 10 s");
    assert!(text.contains("the request takes route pair\n"), "{text}");
    assert!(
        text.contains("  route flaky: path / does not start with /flaky\n"),
        "{text}"
    );
    assert!(
        text.contains("  now: 1 of 2 endpoints in rotation"),
        "{text}"
    );
    assert!(
        text.contains(&format!("    endpoint {} (weight 1): ejected, 0 in flight: ejected by outlier detection (3 consecutive 5xx) for 30s, back in ", bad.addr)),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  likely pick: round robin sends the next request to {}\n",
            good.addr
        )),
        "{text}"
    );

    let flaky_text = until(Duration::from_secs(10), || async move {
        let _ = get(proxy, "/flaky", &[]).await;
        let text = ask("/explain?method=GET&path=/flaky/1", "text/plain")
            .await
            .ok()?
            .2;
        text.contains("circuit breaker: open").then_some(text)
    })
    .await
    .expect("the breaker opens within 10 s");
    assert!(
        flaky_text.contains("the request takes route flaky\n"),
        "{flaky_text}"
    );
    assert!(
        flaky_text.contains("  circuit breaker: open ("),
        "{flaky_text}"
    );
    assert!(
        flaky_text
            .contains("  likely pick: none: the circuit breaker is open, so weir answers 503"),
        "{flaky_text}"
    );
    // Two idle endpoints of a least-request service are tied: either may be picked.
    let (_, _, idle) = ask(
        "/explain?method=GET&path=/idle",
        "TEXT/plain, Application/Json;q=0",
    )
    .await
    .expect("answers");
    assert!(
        idle.contains(&format!(
            "  likely pick: least request picks any of {}, {} (tied",
            good.addr, bad.addr
        )),
        "{idle}"
    );

    let (status, headers, body) = ask("/explain?method=GET&path=/flaky/1", "application/json")
        .await
        .expect("answers");
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["chosen"]["route"], "flaky");
    let live = &json["chosen"]["services"][0]["live"];
    assert_eq!(live["breaker"]["state"], "open", "{body}");
    assert!(live["breaker"]["failed"].as_u64() >= Some(2), "{body}");
    let (_, _, body) = ask("/explain?method=GET&path=/", "application/json")
        .await
        .expect("answers");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let endpoints = &json["chosen"]["services"][0]["live"]["endpoints"];
    assert_eq!(endpoints[1]["state"], "ejected", "{body}");
    assert!(
        endpoints[1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("3 consecutive 5xx")),
        "{body}"
    );

    let (status, headers, body) = ask("/explain?path=/", "text/plain").await.expect("answers");
    assert_eq!(status, 400);
    assert_eq!(headers["weir-error"], "bad_request");
    assert!(
        body.starts_with("weir: cannot explain: missing method"),
        "{body}"
    );
}

#[test]
fn the_readme_example_prints_what_the_readme_shows() {
    let section = "Why did my request go there?";
    let yaml = crate::support::readme_blocks(section, "yaml");
    let shown = crate::support::readme_blocks(section, "text");
    let file = write(&yaml[0]);
    let (code, out, err) = explain(&["-c", &file, "GET", "/reviews/1", "-H", "x-canary: false"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.replace(&file, "weir.yaml") + &out, shown[0]);
}

#[test]
fn weir_explain_takes_the_authority_and_the_original_destination_from_flags() {
    let file = write(
        r#"version: 1
listeners:
  - name: outbound
    address: 127.0.0.1:15001
    transparent: true
    routes:
      - name: by-host
        match: { authority: { exact: reviews.shop } }
        backends: [{ service: reviews }]
services:
  - { name: reviews, endpoints: ["127.0.0.1:9001"], addresses: [10.96.0.20:9080] }
"#,
    );
    // A transparent listener routes by original destination: explain needs one.
    let (code, _, err) = explain(&["-c", &file, "GET", "/"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("give one with --destination IP:PORT"), "{err}");
    let to_reviews = ["--destination", "10.96.0.20:9080"];
    let (code, out, err) = explain(&[&["-c", &file][..], &to_reviews, &["GET", "/"]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("  route by-host: authority: the request has none (no Host), wanted exactly \"reviews.shop\"\n"),
        "{out}"
    );
    assert!(out.contains("the request takes route reviews\n"), "{out}");
    let (_, out, _) = explain(
        &[
            &["-c", &file][..],
            &to_reviews,
            &["--authority", "reviews.shop:9080", "GET", "/"],
        ]
        .concat(),
    );
    assert!(out.contains("the request takes route by-host\n"), "{out}");
    // A destination no route claims is relayed, not routed.
    let (_, out, _) = explain(&["-c", &file, "--destination", "10.0.0.9:80", "GET", "/"]);
    assert!(
        out.contains("no route claims destination 10.0.0.9:80: the connection is relayed unchanged to 10.0.0.9:80"),
        "{out}"
    );
    assert!(
        !out.contains("warning:"),
        "routes added for services are not judged\n{out}"
    );
}
