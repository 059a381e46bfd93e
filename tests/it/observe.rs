//! Real observability peers for the tracing and metrics tests: an OTLP/HTTP trace receiver
//! standing in for a collector (`tests/tracing/receiver.py`, decoding with the reference
//! protobuf definitions), an application instrumented with the OpenTelemetry Python SDK
//! (`tests/tracing/app.py`) and a real Prometheus server (Debian's `prometheus`, with
//! exemplar storage on). Each runs as a child process on 127.0.0.1 and is killed when its
//! handle is dropped. The smoke tests at the end prove the harness itself, without weir's
//! tracing.

// Some of the harness is there for the tracing tests that build on it, not used here yet.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value;

use crate::support::{free_port, get, scratch_dir, Client, Upstream, Weir};

/// How long a child process may take to print its port, or Prometheus to become ready.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long one request to a harness process may take before the test fails.
const REQUEST_LIMIT: Duration = Duration::from_secs(10);
/// How often the `wait_*` methods ask again.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tracing")
        .join(name)
}

/// A Python script from `tests/tracing/` that prints its port as its first stdout line;
/// killed (and waited for) on drop, so no test leaves one running, and its scratch log
/// removed.
struct Script {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    log: PathBuf,
}

impl Script {
    /// Runs `python3 tests/tracing/NAME ARGS`, its stderr in a scratch log, and reads the port
    /// line, [`START_LIMIT`] at most; panics with the log when the script dies or is silent.
    async fn start(name: &str, args: &[&str]) -> Script {
        let dir = scratch_dir("tracing");
        let log = dir.join(format!("{name}.log"));
        let mut child = Command::new("python3")
            .arg(script(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn python3 tests/tracing/{name}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        // From here on the child is killed on drop, whatever happens.
        let mut script = Script {
            child,
            addr: "127.0.0.1:0".parse().unwrap(),
            dir,
            log,
        };
        let port = match tokio::time::timeout(START_LIMIT, line).await {
            Ok(Ok(Ok(line))) => line.trim().parse::<u16>().ok(),
            _ => None,
        };
        match port {
            Some(port) => script.addr.set_port(port),
            None => panic!(
                "tests/tracing/{name} printed no port within {START_LIMIT:?} (run scripts/test, which installs the OpenTelemetry packages); its log:\n{}",
                script.logs()
            ),
        }
        script
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One request on a fresh connection, bounded by [`REQUEST_LIMIT`]: (status, body).
    async fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let exchange = async {
            let mut client = Client::connect(self.addr).await?;
            client
                .request(method, path, &[], Bytes::from(body.to_string()))
                .await
        };
        match tokio::time::timeout(REQUEST_LIMIT, exchange).await {
            Ok(Ok((status, _, body))) => (status, body),
            Ok(Err(e)) => panic!(
                "{method} {path} on {}: {e}; log:\n{}",
                self.addr,
                self.logs()
            ),
            Err(_) => panic!(
                "{method} {path} on {}: no answer in {REQUEST_LIMIT:?}",
                self.addr
            ),
        }
    }

    /// A GET that must answer 200 with JSON.
    async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, "").await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An OTLP/HTTP trace receiver (`tests/tracing/receiver.py`): where weir and the
/// instrumented app export their spans in a test, so the test can read back exactly what a
/// collector would have received, decoded by the reference protobuf definitions (not by
/// weir's own). It can also fail or hang on purpose, to test weir's exporter against a bad
/// collector.
///
/// A span is a JSON object: `trace_id`, `span_id`, `parent_span_id` (lower-case hex, `""`
/// when empty), `name`, `kind` (`SPAN_KIND_SERVER`, ...), `start` and `end` (unix nanos),
/// `attributes` ({key: value}), `events` ([{name, time, attributes}]), `status`
/// ({code: `STATUS_CODE_UNSET`|..., message}), `trace_state`, `resource` ({key: value}) and
/// `scope` (the instrumentation scope's name).
pub struct OtlpReceiver {
    script: Script,
}

impl OtlpReceiver {
    /// Starts a receiver on a free port.
    pub async fn start() -> OtlpReceiver {
        OtlpReceiver {
            script: Script::start("receiver.py", &["--port", "0"]).await,
        }
    }

    /// The URL to export traces to: `http://127.0.0.1:PORT/v1/traces`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.script.addr)
    }

    /// The receiver's own address (for raw requests to it).
    pub fn addr(&self) -> SocketAddr {
        self.script.addr
    }

    /// Every span stored so far, in the order they arrived.
    pub async fn spans(&self) -> Vec<Value> {
        match self.script.get_json("/spans").await {
            Value::Array(spans) => spans,
            other => panic!("/spans is not a list: {other}"),
        }
    }

    /// Polls until at least `n` spans are stored or `limit` passes, and returns the spans it
    /// has then: an assertion on the result shows what did arrive when too few did.
    pub async fn wait_for_spans(&self, n: usize, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let spans = self.spans().await;
            if spans.len() >= n || Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Sets how exports are answered: `ok` (stored, 200), `fail` (500, nothing stored) or
    /// `hang` (held unanswered until the mode changes; other requests are still served).
    pub async fn set_mode(&self, mode: &str) {
        let (status, body) = self.script.request("POST", "/mode", mode).await;
        assert_eq!(status, 204, "POST /mode {mode}: {body}");
    }

    /// Counters since the start: `exports` (export requests received), `spans` (stored),
    /// `refused` (bodies that were not an `ExportTraceServiceRequest`), `failed` (answered
    /// 500 in `fail` mode), `hanging` (held by `hang` right now), `abandoned` (held exports
    /// whose client left before they were released).
    pub async fn stats(&self) -> Value {
        self.script.get_json("/stats").await
    }

    /// Forgets the stored spans (the counters of [`OtlpReceiver::stats`] go on).
    pub async fn clear(&self) {
        let (status, body) = self.script.request("DELETE", "/spans", "").await;
        assert_eq!(status, 204, "DELETE /spans: {body}");
    }

    /// Everything the receiver logged (one line per request).
    pub fn logs(&self) -> String {
        self.script.logs()
    }
}

/// The spans of `trace_id` (lower-case hex) among `spans`.
pub fn spans_of_trace<'a>(spans: &'a [Value], trace_id: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["trace_id"] == trace_id).collect()
}

/// The one span named `name` among `spans`; panics listing the names when there is not
/// exactly one.
pub fn span_named<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    let found: Vec<&Value> = spans.iter().filter(|s| s["name"] == name).collect();
    match found.as_slice() {
        [one] => one,
        _ => panic!(
            "{} spans named {name:?} among {:?}",
            found.len(),
            spans.iter().map(|s| &s["name"]).collect::<Vec<_>>()
        ),
    }
}

/// A real application instrumented with the OpenTelemetry Python SDK
/// (`tests/tracing/app.py`): the upstream behind weir in a tracing test, so that the context
/// weir propagates is checked by an independent implementation (the SDK's W3C and B3
/// propagators) and the app's spans must join weir's trace.
///
/// Every GET answers 200 with JSON: the propagation headers it received (`traceparent`,
/// `b3`, `x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`, `x-request-id`;
/// null when absent) and its SERVER span's `app_trace_id`, `app_span_id` and
/// `app_parent_span_id` (`""` for a root). Its spans (SERVER `app GET <path>`, and INTERNAL
/// `app work` inside it, resource `service.name=app`) are exported before the answer is
/// written, each export given up after 1 s: give the app a receiver of its own when a test
/// makes the collector fail or hang.
pub struct InstrumentedApp {
    script: Script,
}

impl InstrumentedApp {
    /// Starts the app exporting to `otlp_endpoint` (see [`OtlpReceiver::endpoint`]) and
    /// extracting context with `propagator`: `w3c`, `b3multi`, `b3single` or `all`.
    pub async fn start(otlp_endpoint: &str, propagator: &str) -> InstrumentedApp {
        let args = [
            "--port",
            "0",
            "--otlp",
            otlp_endpoint,
            "--propagator",
            propagator,
        ];
        InstrumentedApp {
            script: Script::start("app.py", &args).await,
        }
    }

    /// Where it listens (an endpoint for weir's service).
    pub fn addr(&self) -> SocketAddr {
        self.script.addr
    }

    /// Everything the app logged (one line per request, and the SDK's export errors).
    pub fn logs(&self) -> String {
        self.script.logs()
    }
}

/// A real Prometheus server (Debian's `prometheus` 2.x, which `scripts/test` installs)
/// scraping the given `/metrics` targets every second with exemplar storage on: it proves
/// that weir's metrics, and their exemplars, are what a real scraper ingests and can query.
///
/// Prometheus 2.x asks every target for OpenMetrics first (`Accept:
/// application/openmetrics-text;version=1.0.0,...;q=0.75,text/plain;version=0.0.4;q=0.5,...`)
/// with or without exemplar storage, so weir answers it OpenMetrics (which is also the only
/// format that carries exemplars).
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    targets: Vec<SocketAddr>,
}

impl Prometheus {
    /// Starts Prometheus on a free port with a scratch config and TSDB, scraping `targets`
    /// (job `weir`, each target's `instance` label is its address), and waits until
    /// `/-/ready` answers 200 ([`START_LIMIT`] at most).
    pub async fn start(targets: &[SocketAddr]) -> Prometheus {
        let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let scrape_configs = format!(
            "  - job_name: weir\n    static_configs: [{{ targets: [{}] }}]\n",
            list.join(", ")
        );
        Self::start_with(&scrape_configs, targets).await
    }

    /// Like [`Prometheus::start`], with the `scrape_configs` list given as YAML (its items,
    /// indented by two spaces; the scrape interval is 1 s): for testing a scrape job itself.
    /// `targets` are the addresses that job ends up scraping (their `instance` label), for
    /// [`Prometheus::wait_for_scrapes`].
    pub async fn start_with(scrape_configs: &str, targets: &[SocketAddr]) -> Prometheus {
        // The free port can be taken by someone else before Prometheus binds it: then it
        // exits at once, and another port is tried.
        for attempt in 1.. {
            let mut prometheus = Self::spawn(scrape_configs, targets);
            match prometheus.until_ready().await {
                Ok(()) => return prometheus,
                Err(exited) => {
                    let log = prometheus.logs();
                    if !(exited && attempt < 3 && log.contains("address already in use")) {
                        panic!(
                            "Prometheus did not become ready (exited: {exited}); its log:\n{log}"
                        );
                    }
                }
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Writes a config in a new scratch dir and runs Prometheus with it on a free port.
    fn spawn(scrape_configs: &str, targets: &[SocketAddr]) -> Prometheus {
        let dir = scratch_dir("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global: {{ scrape_interval: 1s }}\nscrape_configs:\n{scrape_configs}"),
        )
        .expect("write prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--enable-feature=exemplar-storage")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log file"))
            .spawn()
            .expect("prometheus is installed (scripts/test installs the prometheus package)");
        Prometheus {
            child,
            addr,
            dir,
            targets: targets.to_vec(),
        }
    }

    /// Polls `/-/ready` until it answers 200, [`START_LIMIT`] at most; `Err(exited)` when it
    /// did not (`exited`: the process is gone).
    async fn until_ready(&mut self) -> Result<(), bool> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Ok(Ok((200, _, _))) =
                tokio::time::timeout(REQUEST_LIMIT, get(self.addr, "/-/ready", &[])).await
            {
                return Ok(());
            }
            let exited = matches!(self.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() >= deadline {
                return Err(exited);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Where Prometheus itself listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Prometheus's log (its complaints about a scrape end up here).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// A GET of the HTTP API that must succeed; its `data`.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        match self.try_api(path, params).await {
            Ok(data) => data,
            Err(answer) => panic!("GET {path} {params:?}: {answer}"),
        }
    }

    /// A GET of the HTTP API: its `data`, or `Err` with the whole answer when Prometheus
    /// refused it (`status: "error"`, e.g. a query that does not parse). Panics when
    /// Prometheus does not answer, or not with JSON.
    async fn try_api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        let target = format!("{path}?{}", query.join("&"));
        let body = match tokio::time::timeout(REQUEST_LIMIT, get(self.addr, &target, &[])).await {
            Ok(Ok((_, _, body))) => body,
            Ok(Err(e)) => panic!("GET {target} on Prometheus: {e}"),
            Err(_) => panic!("GET {target} on Prometheus: no answer in {REQUEST_LIMIT:?}"),
        };
        let answer: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {target} on Prometheus: {e}: {body}"));
        match answer["status"].as_str() {
            Some("success") => Ok(answer["data"].clone()),
            _ => Err(answer.to_string()),
        }
    }

    /// An instant query at the current time: the `data.result` of `/api/v1/query` (for a
    /// vector, a list of `{"metric": {labels}, "value": [time, "value"]}`).
    pub async fn query(&self, expr: &str) -> Value {
        self.api("/api/v1/query", &[("query", expr)]).await["result"].clone()
    }

    /// Like [`Prometheus::query`], but a query Prometheus refuses is an `Err` with its
    /// answer (`errorType`, `error`) instead of a panic: for checking many queries at once.
    pub async fn try_query(&self, expr: &str) -> Result<Value, String> {
        let data = self.try_api("/api/v1/query", &[("query", expr)]).await?;
        Ok(data["result"].clone())
    }

    /// The value of a query that yields at most one sample (a scalar or a one-series
    /// vector): `None` when it yields nothing; panics when it yields several series.
    pub async fn query_value(&self, expr: &str) -> Option<f64> {
        let data = self.api("/api/v1/query", &[("query", expr)]).await;
        let value = match data["resultType"].as_str() {
            Some("scalar") => &data["result"][1],
            _ => match data["result"].as_array().map(Vec::as_slice) {
                Some([]) | None => return None,
                Some([one]) => &one["value"][1],
                Some(many) => panic!("{expr} yields {} series: {}", many.len(), data["result"]),
            },
        };
        value.as_str().and_then(|v| v.parse().ok())
    }

    /// Polls [`Prometheus::query_value`] until it is `want` or `limit` passes; returns the
    /// last value (so an assertion on it shows what Prometheus had).
    pub async fn value_settles(&self, expr: &str, want: f64, limit: Duration) -> Option<f64> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.query_value(expr).await;
            if got == Some(want) || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The exemplars of the series `expr` selects between `start` and `end`: the `data` of
    /// `/api/v1/query_exemplars`, a list of `{"seriesLabels": {..}, "exemplars": [{"labels":
    /// {"trace_id": ..}, "value": "..", "timestamp": unix seconds}]}`.
    pub async fn query_exemplars(&self, expr: &str, start: SystemTime, end: SystemTime) -> Value {
        let (start, end) = (unix_seconds(start), unix_seconds(end));
        self.api(
            "/api/v1/query_exemplars",
            &[("query", expr), ("start", &start), ("end", &end)],
        )
        .await
    }

    /// The `activeTargets` of `/api/v1/targets`: each target's `health`, `lastError` and
    /// `lastScrape`, for diagnosing a scrape that fails.
    pub async fn targets(&self) -> Value {
        self.api("/api/v1/targets", &[]).await["activeTargets"].clone()
    }

    /// Waits until every target has been scraped successfully (`up == 1`) at least `n`
    /// times, `n` scrape intervals plus 20 s at most; panics with the targets' state and
    /// Prometheus's log when they have not. After it, a query sees what the targets served
    /// at their `n`th scrape or later.
    pub async fn wait_for_scrapes(&self, n: u32) {
        let deadline = Instant::now() + Duration::from_secs(u64::from(n) + 20);
        let mut counts = Vec::new();
        loop {
            counts.clear();
            for target in &self.targets {
                let expr = format!("sum_over_time(up{{instance=\"{target}\"}}[1h])");
                counts.push(self.query_value(&expr).await.unwrap_or(0.0));
            }
            if counts.iter().all(|&c| c >= f64::from(n)) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "targets {:?} scraped successfully {counts:?} times, not {n}; targets: {}\nlog:\n{}",
                    self.targets,
                    self.targets().await,
                    self.logs()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query-string value (everything but RFC 3986's unreserved characters).
fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A time as the unix seconds (with a fraction) that Prometheus's API takes.
fn unix_seconds(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{:.3}", since.as_secs_f64())
}

// ---- smoke tests: the harness itself, without weir's tracing ----------------------------------

/// The instrumented app's own spans reach the receiver, in the trace of a made-up W3C
/// `traceparent`: the SERVER span is its child, the INTERNAL span the SERVER span's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instrumented_apps_spans_reach_the_receiver() {
    let receiver = OtlpReceiver::start().await;
    let app = InstrumentedApp::start(&receiver.endpoint(), "w3c").await;
    let (trace_id, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let traceparent = format!("00-{trace_id}-{parent}-01");
    let (status, _, body) = get(
        app.addr(),
        "/hello?x=1",
        &[("traceparent", &traceparent), ("x-request-id", "r-1")],
    )
    .await
    .expect("the app answers");
    assert_eq!(status, 200, "{body}\n{}", app.logs());
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["traceparent"], traceparent.as_str());
    assert_eq!(answer["x-request-id"], "r-1");
    assert_eq!(answer["b3"], Value::Null);
    assert_eq!(answer["app_trace_id"], trace_id);
    assert_eq!(answer["app_parent_span_id"], parent);

    let spans = receiver.wait_for_spans(2, Duration::from_secs(10)).await;
    assert_eq!(spans.len(), 2, "{spans:#?}\n{}", app.logs());
    let server = span_named(&spans, "app GET /hello");
    assert_eq!(server["kind"], "SPAN_KIND_SERVER");
    assert_eq!(server["trace_id"], trace_id);
    assert_eq!(server["parent_span_id"], parent);
    assert_eq!(server["span_id"], answer["app_span_id"]);
    assert_eq!(server["resource"]["service.name"], "app");
    let work = span_named(&spans, "app work");
    assert_eq!(work["kind"], "SPAN_KIND_INTERNAL");
    assert_eq!(work["trace_id"], trace_id);
    assert_eq!(work["parent_span_id"], server["span_id"]);
    let nanos = |span: &Value, at: &str| span[at].as_u64().expect("unix nanos");
    assert!(
        nanos(server, "start") <= nanos(work, "start")
            && nanos(work, "end") <= nanos(server, "end"),
        "the work span lies within the server span: {spans:#?}"
    );
    assert_eq!(spans_of_trace(&spans, trace_id).len(), 2);
    assert_eq!(receiver.stats().await["spans"], 2);
}

/// The receiver decodes what weir's own OTLP types encode, refuses a body that is not an
/// export, fails on demand and, hanging on one export, still serves everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_decodes_refuses_fails_and_hangs_on_demand() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    let receiver = OtlpReceiver::start().await;
    let export = |name: &str| {
        let span = Span {
            trace_id: vec![0xab; 16],
            span_id: vec![0xcd; 8],
            name: name.to_string(),
            kind: span::SpanKind::Client as i32,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_000_000_001,
            attributes: vec![KeyValue {
                key: "http.response.status_code".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(200)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Bytes::from(request.encode_to_vec())
    };
    let post = |body: Bytes| {
        let addr = receiver.addr();
        async move {
            let mut client = Client::connect(addr).await.expect("connect");
            let headers = [("content-type", "application/x-protobuf")];
            client
                .request("POST", "/v1/traces", &headers, body)
                .await
                .expect("an answer")
                .0
        }
    };

    assert_eq!(post(export("first")).await, 200);
    let spans = receiver.spans().await;
    assert_eq!(spans.len(), 1, "{spans:?}");
    assert_eq!(spans[0]["trace_id"], "ab".repeat(16));
    assert_eq!(spans[0]["parent_span_id"], "");
    assert_eq!(spans[0]["kind"], "SPAN_KIND_CLIENT");
    assert_eq!(spans[0]["attributes"]["http.response.status_code"], 200);
    assert_eq!(spans[0]["status"]["code"], "STATUS_CODE_UNSET");

    assert_eq!(
        post(Bytes::from_static(b"\xff\xff not protobuf")).await,
        400
    );
    receiver.set_mode("fail").await;
    assert_eq!(post(export("failed")).await, 500);

    receiver.set_mode("hang").await;
    let held = tokio::spawn(post(export("held")));
    let deadline = Instant::now() + REQUEST_LIMIT;
    while receiver.stats().await["hanging"] != 1 {
        assert!(Instant::now() < deadline, "{}", receiver.stats().await);
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    assert_eq!(
        receiver.spans().await.len(),
        1,
        "a held export is not stored yet"
    );
    receiver.set_mode("ok").await;
    let status = tokio::time::timeout(REQUEST_LIMIT, held)
        .await
        .expect("released")
        .expect("joined");
    assert_eq!(status, 200);

    let names: Vec<Value> = receiver
        .spans()
        .await
        .iter()
        .map(|s| s["name"].clone())
        .collect();
    assert_eq!(names, ["first", "held"]);
    let stats = receiver.stats().await;
    assert_eq!(
        stats,
        serde_json::json!({"exports": 4, "spans": 2, "refused": 1, "failed": 1, "hanging": 0, "abandoned": 0})
    );
    receiver.clear().await;
    assert!(receiver.spans().await.is_empty());
}

/// A real Prometheus starts, scrapes a weir's admin `/metrics` and has `up == 1` for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_weir() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: warn, access_log: false }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: all\n        backends: [{{ service: up }}]\nservices:\n  - name: up\n    endpoints: [\"{}\"]\n",
        up.addr
    ))
    .await;
    let started = SystemTime::now();
    let prometheus = Prometheus::start(&[weir.admin]).await;
    prometheus.wait_for_scrapes(2).await;
    let up_series = prometheus.query("up").await;
    let ours = up_series
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|s| s["metric"]["instance"] == weir.admin.to_string())
        })
        .unwrap_or_else(|| panic!("no `up` for {} in {up_series}", weir.admin));
    assert_eq!(ours["metric"]["job"], "weir");
    assert_eq!(ours["value"][1], "1");
    let expr = format!("up{{instance=\"{}\"}}", weir.admin);
    assert_eq!(prometheus.query_value(&expr).await, Some(1.0));
    let build_info = format!("count(weir_build_info{{instance=\"{}\"}})", weir.admin);
    assert_eq!(prometheus.query_value(&build_info).await, Some(1.0));
    // The exemplar API answers (what it holds is for the tracing tests to assert).
    let exemplars = prometheus
        .query_exemplars(
            "weir_http_request_duration_seconds_bucket",
            started,
            SystemTime::now(),
        )
        .await;
    assert!(exemplars.is_array(), "{exemplars}");
}
