use super::*;
use crate::telemetry::metrics::Metrics;

const CONFIG: &str = r#"version: 1
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
          - { service: reviews-v1, weight: 90 }
          - { service: reviews-v2, weight: 10 }
        timeout: 3s
        retries: { attempts: 2, per_try_timeout: 1s }
      - name: reviews-old
        match: { path: { prefix: /reviews/old } }
        backends: [{ service: reviews-v1 }]
services:
  - name: reviews-v1
    endpoints: ["127.0.0.1:9001", "127.0.0.1:9002"]
    load_balancer: round_robin
    circuit_breaker: { window: 10s, request_volume_threshold: 20, error_threshold_percent: 50, sleep_window: 5s }
  - name: reviews-v2
    endpoints: ["127.0.0.1:9003"]
"#;

fn ask(method: &str, path: &str, headers: &[&str], live: bool) -> Result<Explanation, Invalid> {
    let config = crate::config::load_str("t.yaml", CONFIG)
        .expect("valid")
        .config;
    let snapshot = Snapshot::build(config.clone(), &Metrics::new(), None).expect("builds");
    let q = Question {
        method: method.into(),
        path: path.into(),
        headers: headers.iter().map(|h| h.to_string()).collect(),
        ..Question::default()
    };
    explain(&snapshot, &config, &q, live)
}

#[test]
fn percentages_have_one_decimal_and_sum_to_100() {
    assert_eq!(percentages(&[90, 10]), [90.0, 10.0]);
    assert_eq!(percentages(&[1, 1, 1]), [33.4, 33.3, 33.3]);
    assert_eq!(percentages(&[2, 1]), [66.7, 33.3]);
    assert_eq!(percentages(&[1, 0]), [100.0, 0.0]);
    assert_eq!(percentages(&[0, 0]), [0.0, 0.0]);
    for weights in [[7u32, 3, 5], [1, 2, 4], [999, 1, 1]] {
        let sum: f64 = percentages(&weights).iter().sum();
        assert!((sum - 100.0).abs() < 1e-9, "{weights:?}: {sum}");
    }
}

#[test]
fn each_route_says_why_it_did_not_match_and_the_chosen_route_its_split() {
    let e = ask("GET", "/reviews/1", &["x-canary: false"], false).expect("explained");
    let text = text(&e);
    assert!(
        text.contains(
            "  route reviews-canary: header x-canary is \"false\", wanted exactly \"true\"\n"
        ),
        "{text}"
    );
    assert!(text.contains("  route reviews: matches\n"), "{text}");
    assert!(text.contains("the request takes route reviews\n"), "{text}");
    assert!(
        text.contains("  backends: reviews-v1 90.0%, reviews-v2 10.0%\n"),
        "{text}"
    );
    assert!(text.contains("retries: up to 2 more attempts"), "{text}");
    assert!(text.contains("service reviews-v1:\n"), "{text}");
    assert!(
        text.contains("circuit breaker: opens when 50% of at least 20 requests in 10s fail"),
        "{text}"
    );
    assert!(
        text.contains("warning: route reviews-old can never match: route reviews (listeners[0].routes[1]) takes every request it would"),
        "{text}"
    );
    assert!(!text.contains("now:"), "offline: no live state\n{text}");
}

#[test]
fn no_match_is_a_404_no_route() {
    let e = ask("GET", "/ratings", &[], false).expect("explained");
    assert!(e.chosen.is_none());
    let text = text(&e);
    assert!(
        text.contains("  route reviews: path /ratings does not start with /reviews\n"),
        "{text}"
    );
    assert!(
        text.contains("weir answers 404 with `weir-error: no_route`"),
        "{text}"
    );
}

#[test]
fn live_state_names_the_next_round_robin_endpoint() {
    let e = ask("GET", "/reviews", &[], true).expect("explained");
    let text = text(&e);
    assert!(
        text.contains("  now: 2 of 2 endpoints in rotation, 0 requests in flight\n"),
        "{text}"
    );
    assert!(
        text.contains("round robin sends the next request to 127.0.0.1:900"),
        "{text}"
    );
    assert!(
        text.contains("  circuit breaker: closed (0 of 0 requests failed in the window)\n"),
        "{text}"
    );
}

#[test]
fn bad_questions_are_refused_with_a_reason() {
    assert_eq!(
        ask("G ET", "/", &[], false).expect_err("bad method").0,
        "invalid method \"G ET\""
    );
    assert!(ask("GET", "x", &[], false)
        .expect_err("bad path")
        .0
        .contains("starts with /"));
    assert!(ask("GET", "/", &["no-colon"], false)
        .expect_err("bad header")
        .0
        .contains("name: value"));
    let config = crate::config::load_str("t.yaml", CONFIG)
        .expect("valid")
        .config;
    let snapshot = Snapshot::build(config.clone(), &Metrics::new(), None).expect("builds");
    let q = Question {
        listener: Some("inbound".into()),
        method: "GET".into(),
        path: "/".into(),
        ..Question::default()
    };
    assert_eq!(
        explain(&snapshot, &config, &q, false)
            .expect_err("no such listener")
            .0,
        "no listener named inbound; the listeners are outbound"
    );
}

#[test]
fn a_strict_listener_refuses_a_peer_outside_its_allow_list_before_routing() {
    let text = "version: 1\nidentity: { cert: c.crt, key: c.key, trust_bundle: ca.crt }\nlisteners:\n  - name: inbound\n    address: 127.0.0.1:15006\n    tls: { mode: strict, allow: [\"spiffe://td/ns/shop/sa/frontend\"] }\n    routes: [{ name: local, backends: [{ service: app }] }]\nservices:\n  - { name: app, endpoints: [\"127.0.0.1:8080\"] }\n";
    let config = crate::config::load_str("t.yaml", text)
        .expect("valid")
        .config;
    let snapshot = Snapshot::build(config.clone(), &Metrics::new(), None).expect("builds");
    let ask = |peer: Option<&str>| {
        let q = Question {
            method: "GET".into(),
            path: "/".into(),
            peer: peer.map(String::from),
            ..Question::default()
        };
        explain(&snapshot, &config, &q, false)
            .expect("explained")
            .before_routing
            .unwrap_or_default()
    };
    assert!(ask(None).starts_with("tls strict: a client without an mTLS identity is refused"));
    assert_eq!(
        ask(Some("spiffe://td/ns/shop/sa/frontend")),
        "tls: peer spiffe://td/ns/shop/sa/frontend is allowed in"
    );
    assert!(ask(Some("spiffe://td/ns/ops/sa/x"))
        .ends_with("weir answers 403 with `weir-error: identity_denied` before any route"));
}

/// Explains `method path` with `peer`, `destination` and `headers` against `text`.
fn ask_full(
    text: &str,
    peer: Option<&str>,
    destination: Option<&str>,
    headers: &[&str],
) -> Result<Explanation, Invalid> {
    let config = crate::config::load_str("t.yaml", text)
        .expect("valid")
        .config;
    let snapshot = Snapshot::build(config.clone(), &Metrics::new(), None).expect("builds");
    let q = Question {
        method: "GET".into(),
        path: "/x".into(),
        peer: peer.map(String::from),
        destination: destination.map(|d| d.parse().expect("addr")),
        headers: headers.iter().map(|h| h.to_string()).collect(),
        ..Question::default()
    };
    explain(&snapshot, &config, &q, false)
}

#[test]
fn a_permissive_listener_with_an_allow_list_refuses_plaintext_as_the_proxy_does() {
    let text = "version: 1\nidentity: { cert: c.crt, key: c.key, trust_bundle: ca.crt }\nlisteners:\n  - name: inbound\n    address: 127.0.0.1:15006\n    tls: { mode: permissive, allow: [\"spiffe://cluster.local/ns/shop/*\"] }\n    routes: [{ name: all, backends: [{ service: app }] }]\nservices:\n  - { name: app, endpoints: [\"127.0.0.1:8080\"] }\n";
    let e = ask_full(text, None, None, &[]).expect("explained");
    assert!(e.chosen.is_none(), "refused before routing");
    let why = e.no_match.unwrap_or_default();
    assert!(
        why.starts_with("tls: a plaintext client is not in tls.allow") && why.contains("403"),
        "{why}"
    );
    let e =
        ask_full(text, Some("spiffe://cluster.local/ns/shop/sa/a"), None, &[]).expect("explained");
    assert_eq!(e.chosen.map(|c| c.route), Some("all".to_string()));
}

#[test]
fn a_peer_on_a_listener_without_mtls_is_ignored_and_said() {
    let text = "version: 1\nlisteners:\n  - name: plain\n    address: 127.0.0.1:15001\n    routes:\n      - { name: fe, match: { peer: \"spiffe://cluster.local/ns/shop/*\" }, backends: [{ service: app }] }\nservices:\n  - { name: app, endpoints: [\"127.0.0.1:8080\"] }\n";
    let e =
        ask_full(text, Some("spiffe://cluster.local/ns/shop/sa/a"), None, &[]).expect("explained");
    assert!(
        e.chosen.is_none(),
        "no peer without mTLS, so match.peer fails"
    );
    assert!(e
        .before_routing
        .unwrap_or_default()
        .contains("the peer given is ignored"));
}

#[test]
fn a_transparent_listener_relays_what_no_route_claims_and_needs_a_destination() {
    let text = "version: 1\nlisteners:\n  - name: outbound\n    address: 127.0.0.1:15001\n    transparent: true\nservices:\n  - { name: reviews, addresses: [\"10.96.0.21:9080\"], endpoints: [\"127.0.0.1:9080\"] }\n";
    let e = ask_full(text, None, Some("10.0.0.9:80"), &[]).expect("explained");
    assert!(e.chosen.is_none());
    assert_eq!(
        e.no_match.as_deref(),
        Some("no route claims destination 10.0.0.9:80: the connection is relayed unchanged to 10.0.0.9:80 (unknown_destination: passthrough), not routed")
    );
    let e = ask_full(text, None, Some("10.96.0.21:9080"), &[]).expect("explained");
    assert_eq!(e.chosen.map(|c| c.route), Some("reviews".to_string()));
    let missing = ask_full(text, None, None, &[]).expect_err("needs a destination");
    assert!(missing.0.contains("--destination"), "{missing}");
}

#[test]
fn two_host_fields_are_refused_as_the_proxy_refuses_them() {
    let text = "version: 1\nlisteners:\n  - name: o\n    address: 127.0.0.1:15001\n    routes: [{ name: all, backends: [{ service: app }] }]\nservices:\n  - { name: app, endpoints: [\"127.0.0.1:8080\"] }\n";
    let e = ask_full(text, None, None, &["host: a.shop", "Host: b.shop"]).expect_err("refused");
    assert!(e.0.contains("two Host fields"), "{e}");
    let e = ask_full(text, None, None, &["x-a: \tv\t"]).expect("explained");
    assert_eq!(e.request, "GET /x with x-a: v");
}
