//! Monitoring end to end: a real Prometheus scrapes a real weir in front of real upstreams,
//! and what its HTTP API answers is checked against the traffic the test sent: exact
//! per-endpoint counts under round robin, a 90/10 split within a stated tolerance, and a p99
//! in the histogram bucket that an upstream's fixed delay puts it in. The Grafana dashboard
//! (`deploy/grafana/weir.json`) is checked the same way: every PromQL expression in it runs
//! against that Prometheus and must answer, with data wherever the test's traffic makes some.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::observe::Prometheus;
use crate::support::{free_port, get, load, Client, Upstream, Weir};

/// The fixed delay of the canary's upstream: it puts every canary request in the histogram
/// bucket (0.25 s, 0.5 s], and none of the stable service's.
const CANARY_DELAY_MS: u64 = 300;
/// How long the test waits for Prometheus to have scraped what weir counted.
const SETTLE_LIMIT: Duration = Duration::from_secs(20);

fn addr(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().expect("address")
}

/// A weir with an `edge` http listener whose routes each exercise part of the dashboard,
/// and a `db` tcp listener, with its upstreams and a Prometheus scraping it.
///
/// Routes (by path prefix): `/balanced` to `trio` (round robin over three endpoints),
/// `/split` 90/10 between `stable` and `canary` (canary's upstream answers after
/// [`CANARY_DELAY_MS`]), `/flaky` to `flaky` (its upstream always answers 500; a circuit
/// breaker that opens after 4 requests and stays open for the test; one retry on 5xx),
/// `/eject` to `ejecting` (two endpoints, one always 500: outlier detection ejects it after
/// 3 in a row), `/limited` to `limited` (one request at a time, none pending, to a slow
/// upstream: overflow). Anything else has no route.
struct Mesh {
    weir: Weir,
    prometheus: Prometheus,
    edge: SocketAddr,
    db: SocketAddr,
    trio: [Upstream; 3],
    stable: Upstream,
    canary: Upstream,
    bad: Upstream,
    // Kept so that their servers run as long as the mesh.
    _others: Vec<Upstream>,
}

impl Mesh {
    async fn start() -> Mesh {
        let trio = [
            Upstream::start("a").await,
            Upstream::start("b").await,
            Upstream::start("c").await,
        ];
        let stable = Upstream::start("stable").await;
        let canary = Upstream::start("canary").await;
        canary
            .state
            .delay_ms
            .store(CANARY_DELAY_MS, Ordering::SeqCst);
        let flaky = Upstream::start("flaky").await;
        flaky.fail(100, 500);
        let (bad, good) = (Upstream::start("bad").await, Upstream::start("good").await);
        bad.fail(100, 500);
        let slow = Upstream::start("slow").await;
        slow.state.delay_ms.store(300, Ordering::SeqCst);
        let (edge, db) = (addr(free_port()), addr(free_port()));
        let yaml = format!(
            r#"version: 1
admin: {{ address: "{{admin}}" }}
logging: {{ level: warn, access_log: false }}
listeners:
  - name: edge
    address: {edge}
    routes:
      - name: balanced
        match: {{ path: {{ prefix: /balanced }} }}
        backends: [{{ service: trio }}]
      - name: split
        match: {{ path: {{ prefix: /split }} }}
        backends: [{{ service: stable, weight: 90 }}, {{ service: canary, weight: 10 }}]
      - name: flaky
        match: {{ path: {{ prefix: /flaky }} }}
        backends: [{{ service: flaky }}]
        retries: {{ attempts: 1, on: [5xx] }}
      - name: eject
        match: {{ path: {{ prefix: /eject }} }}
        backends: [{{ service: ejecting }}]
      - name: limited
        match: {{ path: {{ prefix: /limited }} }}
        backends: [{{ service: limited }}]
  - name: db
    address: {db}
    protocol: tcp
    routes:
      - name: db
        backends: [{{ service: database }}]
services:
  - name: trio
    load_balancer: round_robin
    endpoints: ["{}", "{}", "{}"]
  - {{ name: stable, endpoints: ["{}"] }}
  - {{ name: canary, endpoints: ["{}"] }}
  - name: flaky
    endpoints: ["{}"]
    circuit_breaker: {{ window: 10s, buckets: 10, request_volume_threshold: 4, error_threshold_percent: 50, sleep_window: 60s }}
    outlier_detection: {{ consecutive_5xx: 0 }}
  - name: ejecting
    endpoints: ["{}", "{}"]
    outlier_detection: {{ consecutive_5xx: 3, max_ejection_percent: 50, base_ejection_time: 60s }}
  - name: limited
    endpoints: ["{}"]
    limits: {{ max_requests: 1, max_pending_requests: 0 }}
  - {{ name: database, endpoints: ["{}"] }}
"#,
            trio[0].addr,
            trio[1].addr,
            trio[2].addr,
            stable.addr,
            canary.addr,
            flaky.addr,
            bad.addr,
            good.addr,
            slow.addr,
            good.addr,
        );
        let weir = Weir::start(&yaml).await;
        let prometheus = Prometheus::start(&[weir.admin]).await;
        // A scrape before any traffic: every counter's rate then starts from weir's zeros.
        prometheus.wait_for_scrapes(1).await;
        Mesh {
            weir,
            prometheus,
            edge,
            db,
            trio,
            stable,
            canary,
            bad,
            _others: vec![flaky, good, slow],
        }
    }

    /// One round of the dashboard test's traffic: 300 requests round robin, 200 split,
    /// 12 to the failing service (its breaker opens in the first round), 12 to the service
    /// whose failing endpoint is ejected (in the first round), bursts of 4 at once to the
    /// one-at-a-time service until one overflows (5 bursts at most), one request without a
    /// route and one through the tcp listener.
    async fn drive_every_panel(&self) {
        load(self.edge, "/balanced", 300, 4).await;
        load(self.edge, "/split", 200, 8).await;
        let flaky = load(self.edge, "/flaky", 12, 1).await;
        assert!(
            flaky.contains_key("503 circuit_open"),
            "the breaker opened: {flaky:?}"
        );
        let eject = load(self.edge, "/eject", 12, 1).await;
        assert_eq!(
            self.bad.traffic_hits(),
            3,
            "the failing endpoint was ejected after 3 failures: {eject:?}"
        );
        let mut overflowed = false;
        for _ in 0..5 {
            let burst = load(self.edge, "/limited", 4, 4).await;
            if burst.contains_key("503 overflow") {
                overflowed = true;
                break;
            }
        }
        assert!(overflowed, "4 requests at once to max_requests: 1 overflow");
        let (status, _, _) = get(self.edge, "/nowhere", &[]).await.expect("an answer");
        assert_eq!(status, 404);
        // Through the tcp listener, counted when the connection closes (last: the test waits
        // for this count to know Prometheus has the whole round).
        let mut client = Client::connect(self.db).await.expect("connect to db");
        let (status, _, body) = client.get("/", &[]).await.expect("through tcp");
        assert_eq!((status, body.as_str()), (200, "good"));
    }

    /// Polls until Prometheus has `want` requests of `route` (weir counted them all and
    /// Prometheus has scraped since), [`SETTLE_LIMIT`] at most.
    async fn settle(&self, route: &str, want: usize) {
        let expr = format!("sum(weir_http_requests_total{{route=\"{route}\"}})");
        let got = self
            .prometheus
            .value_settles(&expr, want as f64, SETTLE_LIMIT)
            .await;
        assert_eq!(
            got,
            Some(want as f64),
            "{expr}; weir counts:\n{}",
            self.weir.metrics().await
        );
    }

    /// One value per distinct value of `label` in the vector `expr` yields.
    async fn by_label(&self, expr: &str, label: &str) -> BTreeMap<String, f64> {
        let result = self.prometheus.query(expr).await;
        vector_by(&result, label)
            .unwrap_or_else(|e| panic!("{expr}: {e}: {result}"))
            .into_iter()
            .collect()
    }

    /// A query that yields one sample.
    async fn value(&self, expr: &str) -> f64 {
        self.prometheus
            .query_value(expr)
            .await
            .unwrap_or_else(|| panic!("{expr} yields nothing"))
    }
}

/// `label` → value of each series of an instant vector (a series without the label is
/// under `""`); `Err` when two series share a value of the label.
fn vector_by(result: &Value, label: &str) -> Result<Vec<(String, f64)>, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for series in result.as_array().ok_or("not a vector")? {
        let key = series["metric"][label].as_str().unwrap_or("").to_string();
        let value = series["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| format!("no value in {series}"))?;
        if !seen.insert(key.clone()) {
            return Err(format!("two series with {label}={key:?}"));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// The p-quantile of `selector`'s request durations over the whole test, as Grafana's
/// latency panel computes it.
fn quantile(p: f64, selector: &str) -> String {
    format!(
        "histogram_quantile({p}, sum by (le) (rate(weir_http_request_duration_seconds_bucket{selector}[5m])))"
    )
}

/// Point 5 of issue 10: what a real Prometheus answers about weir's traffic is the traffic
/// the test sent. 3,000 requests round robin over three endpoints are exactly 1,000 each;
/// 2,000 requests split 90/10 are counted per service exactly as the client saw them, at a
/// ratio within 3 points of 10 %; and the p99 lands in the bucket the canary's fixed delay
/// puts it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_answers_what_the_traffic_was() {
    let mesh = Mesh::start().await;

    let balanced = load(mesh.edge, "/balanced", 3_000, 4).await;
    let split_total = 2_000;
    let split = load(mesh.edge, "/split", split_total, 16).await;
    mesh.settle("balanced", 3_000).await;
    mesh.settle("split", split_total).await;

    // Round robin: exactly a third each, per endpoint, as each upstream counted it too.
    let per_endpoint = mesh
        .by_label(
            r#"sum by (endpoint) (weir_http_requests_total{route="balanced"})"#,
            "endpoint",
        )
        .await;
    let want: BTreeMap<String, f64> = mesh
        .trio
        .iter()
        .map(|u| (u.addr.to_string(), 1_000.0))
        .collect();
    assert_eq!(per_endpoint, want, "client saw {balanced:?}");
    for upstream in &mesh.trio {
        assert_eq!(upstream.traffic_hits(), 1_000, "{}", upstream.name);
    }
    assert_eq!(
        mesh.value(r#"sum(weir_http_requests_total{route="balanced", code="200"})"#)
            .await,
        3_000.0
    );

    // The split: Prometheus's share of each service times the total is exactly what the
    // client counted by `x-upstream`. The canary's share of 2,000 independent draws at 10 %
    // has a standard deviation of sqrt(0.1 * 0.9 / 2000) = 0.67 points; 3 points is 4.5
    // of them (a false failure about once in 150,000 runs).
    let ratio = mesh
        .by_label(
            r#"sum by (service) (weir_http_requests_total{route="split"}) / scalar(sum(weir_http_requests_total{route="split"}))"#,
            "service",
        )
        .await;
    assert_eq!(
        ratio.keys().collect::<Vec<_>>(),
        ["canary", "stable"],
        "{ratio:?}"
    );
    for (service, share) in &ratio {
        let seen = split.get(service).copied().unwrap_or(0);
        assert_eq!(
            (share * split_total as f64).round(),
            seen as f64,
            "{service}: Prometheus {share}, client {split:?}"
        );
    }
    assert!(
        (ratio["canary"] - 0.10).abs() <= 0.03,
        "canary share {:.4} is not 10 % ± 3 points: {split:?}",
        ratio["canary"]
    );
    assert_eq!(
        mesh.stable.traffic_hits() + mesh.canary.traffic_hits(),
        split_total as u64
    );

    // Latency: every canary request waits CANARY_DELAY_MS (300 ms) at its upstream, so it
    // lands in the (0.25 s, 0.5 s] bucket; a stable request takes milliseconds. About 10 %
    // of the split's requests are slow: more than 1 % and less than 50 %, so its p99 lies in
    // the slow bucket and its median among the fast ones. Over all 5,000 requests the slow
    // ones are about 4 %, still more than 1 %.
    let in_slow_bucket = |q: f64| q > 0.25 && q <= 0.5;
    let split_p99 = mesh.value(&quantile(0.99, r#"{route="split"}"#)).await;
    assert!(in_slow_bucket(split_p99), "split p99 {split_p99}");
    let split_p50 = mesh.value(&quantile(0.5, r#"{route="split"}"#)).await;
    assert!(split_p50 < 0.25, "split p50 {split_p50}");
    let all_p99 = mesh.value(&quantile(0.99, "")).await;
    assert!(in_slow_bucket(all_p99), "p99 of all requests {all_p99}");
    let canary_p50 = mesh.value(&quantile(0.5, r#"{service="canary"}"#)).await;
    assert!(in_slow_bucket(canary_p50), "canary p50 {canary_p50}");
    let stable_p99 = mesh.value(&quantile(0.99, r#"{service="stable"}"#)).await;
    assert!(stable_p99 < 0.25, "stable p99 {stable_p99}");
    let balanced_p99 = mesh.value(&quantile(0.99, r#"{route="balanced"}"#)).await;
    assert!(balanced_p99 < 0.25, "balanced p99 {balanced_p99}");
}

// ---- the Grafana dashboard -------------------------------------------------------------------

const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/grafana/weir.json");

/// Dashboard targets (panel title, refId) whose metric legitimately has no series in the
/// dashboard test's run, and why. Every other target must answer with data.
const ALLOWED_EMPTY: &[(&str, &str, &str)] = &[
    (
        "TLS handshake failures",
        "A",
        "no listener or service in the test has tls",
    ),
    (
        "mTLS requests by peer and decision",
        "A",
        "no listener in the test has tls",
    ),
    (
        "Days until the workload certificate expires",
        "A",
        "the test's weir has no identity",
    ),
    (
        "Configuration and identity reloads",
        "A",
        "the test never reloads (and weir_config_reloads_total is new)",
    ),
    (
        "Configuration and identity reloads",
        "B",
        "the test's weir has no identity to reload",
    ),
];

fn dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD).expect("deploy/grafana/weir.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// Every panel, those inside rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel);
        if let Some(inner) = panel["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// Every PromQL target: (panel title, refId, expr).
fn targets(dashboard: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                panel["title"].as_str().unwrap_or("").to_string(),
                target["refId"].as_str().unwrap_or("").to_string(),
                target["expr"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out
}

/// `expr` with Grafana's variables replaced by what they become with "All" selected and a
/// one-minute rate interval.
fn concrete(expr: &str) -> String {
    let mut out = expr.to_string();
    for (variable, value) in [
        ("$__rate_interval", "1m"),
        ("$__interval", "1m"),
        ("$__range", "5m"),
        ("$service", ".*"),
        ("$route", ".*"),
    ] {
        let braced = format!("${{{}}}", &variable[1..]);
        out = out.replace(&braced, value).replace(variable, value);
    }
    out
}

/// The variables of the dashboard's `templating` (and Grafana's own) that an expression
/// may use.
const VARIABLES: &[&str] = &[
    "service",
    "route",
    "__rate_interval",
    "__interval",
    "__range",
];

const MONITORING_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/monitoring.md");

/// The code blocks in `lang` of docs/monitoring.md's `## {section}`, in order.
fn doc_blocks(section: &str, lang: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(MONITORING_DOC).expect("docs/monitoring.md");
    let text = doc
        .split(&format!("\n## {section}\n"))
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_else(|| panic!("docs/monitoring.md has a {section} section"));
    text.split(&format!("```{lang}\n"))
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .map(str::to_string)
        .collect()
}

/// `label_values(SELECTOR, LABEL)` (Grafana's variable query) as PromQL that yields one
/// series per value: `group by (LABEL) (SELECTOR)`.
fn label_values_query(definition: &str) -> (String, String) {
    let inner = definition
        .trim()
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(...): {definition}"));
    let (selector, label) = inner
        .rsplit_once(',')
        .expect("label_values(SELECTOR, LABEL)");
    let label = label.trim().to_string();
    (
        format!("group by ({label}) ({})", concrete(selector.trim())),
        label,
    )
}

/// The dashboard is a sane Grafana dashboard model: importable with a Prometheus data source
/// chosen at import, `service` and `route` variables from `label_values`, every panel with
/// a unique id, a place on the 24-column grid that no other panel takes, and the data source
/// variable; every weir metric in docs/metrics.md on some panel.
#[test]
fn the_dashboard_is_an_importable_grafana_model() {
    let dashboard = dashboard();
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(dashboard["schemaVersion"].as_u64().is_some());
    assert!(
        dashboard["id"].is_null(),
        "an exported dashboard has no id of its own"
    );

    // Import: the one input is a Prometheus data source, which becomes the `datasource`
    // variable's default.
    let inputs = dashboard["__inputs"].as_array().expect("__inputs");
    assert_eq!(inputs.len(), 1, "{inputs:?}");
    assert_eq!(inputs[0]["type"], "datasource");
    assert_eq!(inputs[0]["pluginId"], "prometheus");
    let input = format!("${{{}}}", inputs[0]["name"].as_str().expect("input name"));
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let datasource = variable("datasource");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    assert_eq!(datasource["current"]["value"], input.as_str());
    let prometheus = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});
    for name in ["service", "route"] {
        let v = variable(name);
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["datasource"], prometheus, "{name}");
        let definition = v["definition"].as_str().expect("definition");
        assert_eq!(v["query"]["query"], definition, "{name}");
        let (_, label) = label_values_query(definition);
        assert_eq!(label, name, "{definition}");
        assert_eq!(v["includeAll"], true, "{name}");
        assert_eq!(
            v["allValue"], ".*",
            "{name}: the expressions match it with =~"
        );
    }

    // Panels: unique ids, on the grid without overlap, each with the data source variable
    // (its targets too) and at least one expression.
    let all = panels(&dashboard);
    let mut ids = BTreeSet::new();
    let mut cells: HashMap<(u64, u64), String> = HashMap::new();
    for panel in &all {
        let title = panel["title"].as_str().expect("every panel has a title");
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title}: id"));
        assert!(ids.insert(id), "{title}: id {id} is taken");
        let grid = &panel["gridPos"];
        let [h, w, x, y] = ["h", "w", "x", "y"].map(|k| {
            grid[k]
                .as_u64()
                .unwrap_or_else(|| panic!("{title}: gridPos.{k}"))
        });
        assert!(h >= 1 && w >= 1 && x + w <= 24, "{title}: {grid}");
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), title.to_string()) {
                    panic!("{title} overlaps {other} at ({cx}, {cy})");
                }
            }
        }
        if panel["type"] == "row" {
            continue;
        }
        assert!(panel["type"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(panel["datasource"], prometheus, "{title}");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no targets");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert_eq!(target["datasource"], prometheus, "{title}");
            assert!(
                refs.insert(target["refId"].as_str().expect("refId")),
                "{title}"
            );
            assert!(
                target["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{title}"
            );
        }
    }

    // Variables used are variables defined (or Grafana's own).
    for (title, _, expr) in targets(&dashboard) {
        for used in expr.split('$').skip(1) {
            let name: String = used
                .trim_start_matches('{')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(VARIABLES.contains(&name.as_str()), "{title}: ${name}");
        }
    }

    // Every weir metric of docs/metrics.md is on some panel.
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
        .expect("docs/metrics.md");
    let exprs: Vec<String> = targets(&dashboard).into_iter().map(|t| t.2).collect();
    let documented: Vec<&str> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("| `weir_"))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert!(documented.len() >= 15, "{documented:?}");
    for metric in documented {
        let metric = format!("weir_{metric}");
        assert!(
            exprs.iter().any(|e| e.contains(&metric)),
            "{metric} is on no panel of {DASHBOARD}"
        );
    }

    // The allowed-empty list names real targets.
    let all_targets = targets(&dashboard);
    for (title, ref_id, _) in ALLOWED_EMPTY {
        assert!(
            all_targets
                .iter()
                .any(|(t, r, _)| t == title && r == ref_id),
            "ALLOWED_EMPTY names {title}/{ref_id}, which the dashboard does not have"
        );
    }
}

/// Point 7 of issue 10: every expression of the dashboard runs against a real Prometheus
/// scraping a weir whose traffic touches balancing, the split, failures, a circuit breaker
/// that opens, an outlier ejection, retries, overflow, an unrouted request and a tcp
/// listener. No query may fail, and every panel but those in [`ALLOWED_EMPTY`] must have
/// data; a few panels are checked for the value the traffic implies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_answers_with_data() {
    let dashboard = dashboard();
    let mesh = Mesh::start().await;

    // Traffic for every panel, in two rounds with a scrape between them, as steady traffic
    // would be: a series weir creates with its first request (a status or an error code of
    // `weir_http_requests_total`) then exists before the second round counts on it, and
    // rate() sees that round's increase.
    for round in 1..=2 {
        mesh.drive_every_panel().await;
        // The round's last connection is the tcp one: once Prometheus has it, it has the
        // whole round.
        let expr = "sum(weir_tcp_connections_total)";
        let got = mesh
            .prometheus
            .value_settles(expr, f64::from(round), SETTLE_LIMIT)
            .await;
        assert_eq!(got, Some(f64::from(round)), "{expr} after round {round}");
    }

    // Every template variable's values are what the configuration names.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    for (name, want) in [
        (
            "service",
            &[
                "canary", "database", "ejecting", "flaky", "limited", "stable", "trio",
            ][..],
        ),
        (
            "route",
            &["balanced", "db", "eject", "flaky", "limited", "split"][..],
        ),
    ] {
        let definition = variables
            .iter()
            .find(|v| v["name"] == name)
            .and_then(|v| v["definition"].as_str())
            .expect("variable");
        let (query, label) = label_values_query(definition);
        let result = mesh.prometheus.query(&query).await;
        let values: Vec<String> = vector_by(&result, &label)
            .expect("a vector")
            .into_iter()
            .map(|(v, _)| v)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(values, want, "{name}: {query}");
    }

    // Every expression answers (the dashboard's and the example queries of
    // docs/monitoring.md); all but the allowed-empty ones with data, once Prometheus has
    // scraped the traffic often enough for a rate (two samples of each series).
    let mut targets = targets(&dashboard);
    let examples = doc_blocks("Example queries", "promql");
    assert!(examples.len() >= 4, "{examples:?}");
    for (n, expr) in examples.into_iter().enumerate() {
        targets.push(("docs/monitoring.md example".into(), n.to_string(), expr));
    }
    let allowed = |title: &str, ref_id: &str| {
        ALLOWED_EMPTY
            .iter()
            .any(|(t, r, _)| *t == title && *r == ref_id)
    };
    let deadline = Instant::now() + SETTLE_LIMIT;
    let mut answers: BTreeMap<(String, String), Value> = BTreeMap::new();
    loop {
        let mut errors = Vec::new();
        let mut empty = Vec::new();
        for (title, ref_id, expr) in &targets {
            let expr = concrete(expr);
            match mesh.prometheus.try_query(&expr).await {
                Err(error) => errors.push(format!("{title} / {ref_id}: {expr}\n  {error}")),
                Ok(result) => {
                    let has_data = result.as_array().is_some_and(|r| !r.is_empty());
                    if !has_data && !allowed(title, ref_id) {
                        empty.push(format!("{title} / {ref_id}: {expr}"));
                    }
                    answers.insert((title.clone(), ref_id.clone()), result);
                }
            }
        }
        assert!(errors.is_empty(), "queries refused:\n{}", errors.join("\n"));
        if empty.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no data within {SETTLE_LIMIT:?} for:\n{}\nweir's metrics:\n{}",
            empty.join("\n"),
            mesh.weir.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Spot checks: the panels say what the traffic did.
    let panel = |title: &str, label: &str| -> BTreeMap<String, f64> {
        let result = &answers[&(title.to_string(), "A".to_string())];
        vector_by(result, label)
            .unwrap_or_else(|e| panic!("{title}: {e}: {result}"))
            .into_iter()
            .collect()
    };
    let breakers = panel("Circuit breaker state", "service");
    assert_eq!(
        breakers,
        BTreeMap::from([("flaky".to_string(), 2.0)]),
        "open"
    );
    let success = panel("Success rate per service", "service");
    assert_eq!(success.get("trio"), Some(&1.0), "{success:?}");
    assert_eq!(success.get("flaky"), Some(&0.0), "{success:?}");
    // Every endpoint has a series per reason from the start (one upstream serves two
    // services here), so look for the failing endpoint's ejection among them.
    let ejections = &answers[&("Outlier ejections".to_string(), "A".to_string())];
    let bad = mesh.bad.addr.to_string();
    assert!(
        ejections
            .as_array()
            .is_some_and(|series| series.iter().any(|s| {
                s["metric"]["endpoint"] == bad.as_str()
                    && s["value"][1]
                        .as_str()
                        .and_then(|v| v.parse::<f64>().ok())
                        .is_some_and(|n| n > 0.0)
            })),
        "{ejections}"
    );
    // Only the route whose requests went to two services; its shares add up to 1.
    let split = &answers[&("Split ratio per route".to_string(), "A".to_string())];
    let mut shares = Vec::new();
    for series in split.as_array().expect("vector") {
        assert_eq!(series["metric"]["route"], "split", "{split}");
        shares.push((
            series["metric"]["service"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            series["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok()),
        ));
    }
    shares.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        shares.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
        ["canary", "stable"],
        "{split}"
    );
    let sum: f64 = shares.iter().filter_map(|s| s.1).sum();
    assert!((sum - 1.0).abs() < 1e-9, "{split}");
}

/// The scrape configurations of docs/monitoring.md work: the static one passes `promtool
/// check config`, and the Kubernetes job, given the targets pod discovery would give it (a
/// pod annotated as the doc says, whose address is another container port, and a pod
/// without annotations), scrapes the annotated pod's weir at the annotated port and path
/// and nothing else, with `namespace` and `pod` labels. (Debian's Prometheus is built
/// without Kubernetes discovery, so the pods are static targets carrying the
/// `__meta_kubernetes_*` labels discovery sets.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_scrape_configs_work() {
    let blocks = doc_blocks("Scraping", "yaml");
    let (static_job, pod_job, annotations) = match blocks.as_slice() {
        [a, b, c] => (a, c, b),
        _ => panic!("three yaml blocks (static job, annotations, pod job): {blocks:?}"),
    };

    let dir = crate::support::scratch_dir("scrape-docs");
    let file = dir.join("static.yml");
    std::fs::write(&file, static_job).expect("write");
    let out = std::process::Command::new("promtool")
        .args(["check", "config"])
        .arg(&file)
        .output()
        .expect("promtool is installed (with the prometheus package)");
    assert!(
        out.status.success(),
        "{static_job}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);

    let app = Upstream::start("app").await;
    let weir = Weir::start(&format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: warn, access_log: false }}\nlisteners:\n  - name: inbound\n    address: 127.0.0.1:{}\n    routes: [{{ name: app, backends: [{{ service: app }}] }}]\nservices:\n  - {{ name: app, endpoints: [\"{}\"] }}\n",
        free_port(),
        app.addr
    ))
    .await;
    // The annotations as pod discovery labels them: prometheus.io/port becomes
    // __meta_kubernetes_pod_annotation_prometheus_io_port.
    let mut labels = vec![
        (
            "__meta_kubernetes_namespace".to_string(),
            "shop".to_string(),
        ),
        (
            "__meta_kubernetes_pod_name".to_string(),
            "annotated".to_string(),
        ),
    ];
    for line in annotations.lines() {
        let Some((key, value)) = line.trim().split_once(": ") else {
            continue;
        };
        let Some(name) = key.strip_prefix("prometheus.io/") else {
            continue;
        };
        let value = value
            .split('#')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        let value = match name {
            "port" => weir.admin.port().to_string(),
            _ => value.to_string(),
        };
        labels.push((
            format!("__meta_kubernetes_pod_annotation_prometheus_io_{name}"),
            value,
        ));
    }
    assert_eq!(
        labels.len(),
        5,
        "scrape, port and path annotations: {annotations}"
    );
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}: \"{v}\""))
        .collect();
    let pods = format!(
        "    static_configs:\n      - targets: [\"127.0.0.1:1\"]\n        labels: {{ {} }}\n      - targets: [\"{}\"]\n        labels: {{ __meta_kubernetes_namespace: shop, __meta_kubernetes_pod_name: plain }}\n",
        labels.join(", "),
        weir.admin
    );
    let discovery = "    kubernetes_sd_configs:\n      - role: pod\n";
    assert!(pod_job.contains(discovery), "{pod_job}");
    let job = pod_job
        .strip_prefix("scrape_configs:\n")
        .expect("a scrape_configs list")
        .replace(discovery, &pods);
    let prometheus = Prometheus::start_with(&job, &[weir.admin]).await;
    prometheus.wait_for_scrapes(1).await;
    let up = prometheus.query("up").await;
    let series = up.as_array().expect("a vector");
    assert_eq!(series.len(), 1, "only the annotated pod: {up}");
    let metric = &series[0]["metric"];
    assert_eq!(metric["instance"], weir.admin.to_string(), "{up}");
    assert_eq!(metric["job"], "kubernetes-pods", "{up}");
    assert_eq!(metric["namespace"], "shop", "{up}");
    assert_eq!(metric["pod"], "annotated", "{up}");
    assert_eq!(series[0]["value"][1], "1", "{up}");
    assert_eq!(
        prometheus.query_value("count(weir_build_info)").await,
        Some(1.0)
    );
}
