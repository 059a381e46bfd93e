//! `RouteTable::explain` and the router agree: for random requests against a table of every
//! condition kind, the first route explain calls a match is the route the router takes.

use std::collections::HashMap;
use std::sync::Arc;

use http::Request;
use proptest::prelude::*;

use super::matcher::Origin;
use super::RouteTable;
use crate::telemetry::metrics::Metrics;
use crate::upstream::Service;

const TABLE: &str = r#"version: 1
listeners:
  - name: l
    address: 127.0.0.1:1
    transparent: true
    routes:
      - name: canary
        match:
          path: { prefix: /reviews }
          headers: [{ name: x-canary, exact: "true" }]
          method: GET
      - name: exact
        match: { path: { exact: /a/b } }
      - name: regex
        match: { path: { regex: "/users/[0-9]+" }, method: POST }
      - name: segments
        match: { path: { segment_prefix: /api } }
      - name: host
        match: { authority: { exact: reviews.shop } }
      - name: user-prefix
        match: { headers: [{ name: x-user, prefix: vip- }] }
      - name: debug-absent
        match: { path: { prefix: /a }, headers: [{ name: x-debug, present: false }] }
      - name: user-regex
        match: { headers: [{ name: x-user, regex: "[a-z]+" }], method: DELETE }
      - name: frontend
        match: { peer: "spiffe://td/ns/shop/*", path: { prefix: /b } }
      - name: to-cluster-ip
        match: { destination: [10.96.0.20:9080, "0.0.0.0:8080"] }
      - name: reviews
        match: { path: { prefix: /reviews } }
"#;

fn table() -> RouteTable {
    let text = TABLE.replace(
        "      - name: ",
        "      - backends: [{ service: s }]\n        name: ",
    ) + "services:\n  - { name: s, endpoints: [\"127.0.0.1:2\"] }\n";
    let config = crate::config::load_str("t.yaml", &text)
        .expect("valid")
        .config;
    let metrics = Metrics::new();
    let listener = &config.listeners[0];
    let slots = listener
        .routes
        .iter()
        .map(|r| (listener.name.clone(), r.name.clone()))
        .collect();
    let services: HashMap<String, Arc<Service>> = [(
        "s".to_string(),
        Service::new(&config.services[0], slots, metrics.clone()),
    )]
    .into();
    RouteTable::new(listener, &services, &metrics).expect("builds")
}

fn path() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(vec![
        "a", "b", "ab", "api", "apiv1", "reviews", "users", "42", "x", "",
    ]);
    prop::collection::vec(segment, 0..4).prop_map(|s| format!("/{}", s.join("/")))
}

fn headers() -> impl Strategy<Value = Vec<(&'static str, &'static str)>> {
    let name = prop::sample::select(vec!["x-canary", "x-user", "x-debug", "host"]);
    let value = prop::sample::select(vec![
        "true",
        "false",
        "vip-1",
        "bob",
        "",
        "reviews.shop",
        "Reviews.Shop:80",
        "7",
    ]);
    prop::collection::vec((name, value), 0..4).prop_map(|mut hs| {
        // One Host at most: the proxy refuses two before routing.
        let mut seen_host = false;
        hs.retain(|(n, _)| *n != "host" || !std::mem::replace(&mut seen_host, true));
        hs
    })
}

proptest! {
    #[test]
    fn explain_chooses_the_route_the_router_takes(
        method in prop::sample::select(vec!["GET", "POST", "DELETE", "PUT"]),
        path in path(),
        headers in headers(),
        peer in prop::sample::select(vec![None, Some("spiffe://td/ns/shop/sa/a"), Some("spiffe://td/ns/ops/sa/b")]),
        destination in prop::sample::select(vec![None, Some("10.96.0.20:9080"), Some("10.96.0.21:8080"), Some("10.96.0.21:9080")]),
    ) {
        let table = table();
        let mut b = Request::builder().method(method).uri(path.as_str());
        for (n, v) in &headers {
            b = b.header(*n, *v);
        }
        let req = b.body(()).expect("request");
        let origin = Origin {
            peer,
            destination: destination.map(|d| d.parse().expect("address")),
        };
        let explained = table.explain(&req, &origin);
        prop_assert_eq!(explained.len(), table.routes.len());
        let chosen = explained.iter().position(Result::is_ok);
        prop_assert_eq!(chosen, table.find(&req, &origin));
    }
}
