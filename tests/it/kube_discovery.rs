//! Kubernetes discovery against a fake kube-apiserver (no cluster can run here): a plain-HTTP
//! server on 127.0.0.1 that speaks the real EndpointSlice list/watch protocol (a list with a
//! resourceVersion, a chunked watch of newline-delimited events replayed from a version,
//! `410 Gone` as an ERROR event once a version is compacted). weir finds it through a
//! kubeconfig file in `KUBECONFIG`; real upstreams stand behind the endpoints, and a real
//! client keeps sending requests through weir while the slices change.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use weir::telemetry::prometheus_text::metric_sum;

use crate::support::{free_port, get, load, scratch_dir, services, until, Client, Upstream, Weir};

const NAMESPACE: &str = "shop";
const SERVICE: &str = "web";
/// How long a change may take to reach `/services` (the watch is immediate; a resumed watch
/// waits for the first backoff pause, 0.8 s).
const SETTLE: Duration = Duration::from_secs(10);

type Body = BoxBody<Bytes, std::io::Error>;
type Chunk = Result<Frame<Bytes>, std::io::Error>;

/// What the fake API server knows: the slices, the event log, the open watches.
#[derive(Default)]
struct ApiState {
    /// The current resourceVersion (the last change's).
    version: u64,
    /// The slices by name, as the API would return them.
    slices: BTreeMap<String, Value>,
    /// Every event with its version, replayed to a watch that starts from an older one.
    log: Vec<(u64, String)>,
    /// Watches starting below this version get `410 Gone`.
    compacted: u64,
    /// Open watch streams.
    watchers: Vec<mpsc::UnboundedSender<Chunk>>,
    /// Watch requests still to be answered `500`.
    failing_watches: u32,
    /// Requests received.
    lists: u64,
    watches: u64,
    /// Watches answered `500`.
    failed_watches: u64,
}

/// A fake kube-apiserver for one Service's EndpointSlices.
#[derive(Clone)]
struct FakeApi {
    addr: SocketAddr,
    state: Arc<Mutex<ApiState>>,
    /// The accept loop, to stop it (connections are then refused).
    accepting: Arc<Mutex<Option<tokio::task::AbortHandle>>>,
}

impl FakeApi {
    async fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
        let api = FakeApi {
            addr: listener.local_addr().expect("addr"),
            state: Arc::default(),
            accepting: Arc::default(),
        };
        let serving = api.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let api = serving.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.answer(req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        *api.accepting.lock().unwrap() = Some(accept.abort_handle());
        api
    }

    /// Goes away: no new connection is accepted and open watches break.
    fn go_away(&self) {
        if let Some(accept) = self.accepting.lock().unwrap().take() {
            accept.abort();
        }
        self.break_watches(0);
    }

    fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        if req.uri().path() == format!("/api/v1/namespaces/{NAMESPACE}/services/{SERVICE}") {
            // A Service with two ports; `http` leads to the endpoints' port 8080.
            let service = json!({
                "kind": "Service",
                "apiVersion": "v1",
                "metadata": { "name": SERVICE, "namespace": NAMESPACE },
                "spec": {
                    "clusterIP": "10.96.0.20",
                    "clusterIPs": ["10.96.0.20"],
                    "ports": [
                        { "name": "http", "port": 80, "targetPort": 8080 },
                        { "name": "admin", "port": 9000, "targetPort": 9000 }
                    ]
                }
            });
            return Response::new(full(service.to_string()));
        }
        let path = format!("/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices");
        if req.uri().path() != path {
            return status(StatusCode::NOT_FOUND, "NotFound", req.uri().path());
        }
        let query: BTreeMap<String, String> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.replace("%2F", "/").replace("%3D", "=")))
            .collect();
        let selector = format!("kubernetes.io/service-name={SERVICE}");
        if query.get("labelSelector") != Some(&selector) {
            return status(StatusCode::BAD_REQUEST, "BadRequest", "wrong labelSelector");
        }
        let mut api = self.state.lock().unwrap();
        if query.get("watch").map(String::as_str) != Some("true") {
            api.lists += 1;
            let list = json!({
                "kind": "EndpointSliceList",
                "apiVersion": "discovery.k8s.io/v1",
                "metadata": { "resourceVersion": api.version.to_string() },
                "items": api.slices.values().cloned().collect::<Vec<_>>(),
            });
            return Response::new(full(list.to_string()));
        }
        api.watches += 1;
        if api.failing_watches > 0 {
            api.failing_watches -= 1;
            api.failed_watches += 1;
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "etcd is sulking",
            );
        }
        let from: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if from < api.compacted {
            return Response::new(full(format!("{}\n", gone(from, api.compacted))));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        for (_, line) in api.log.iter().filter(|(v, _)| *v > from) {
            let _ = tx.send(Ok(Frame::data(Bytes::from(line.clone()))));
        }
        api.watchers.push(tx);
        Response::new(ChannelBody(rx).boxed())
    }

    /// A change the watches see: `kind` is ADDED, MODIFIED or DELETED.
    fn event(&self, kind: &str, mut slice: Value) {
        let mut api = self.state.lock().unwrap();
        api.version += 1;
        let version = api.version;
        slice["metadata"]["resourceVersion"] = json!(version.to_string());
        let name = slice["metadata"]["name"].as_str().unwrap_or("").to_string();
        if kind == "DELETED" {
            api.slices.remove(&name);
        } else {
            api.slices.insert(name, slice.clone());
        }
        let line = format!("{}\n", json!({ "type": kind, "object": slice }));
        api.log.push((version, line.clone()));
        api.watchers
            .retain(|w| w.send(Ok(Frame::data(Bytes::from(line.clone())))).is_ok());
    }

    /// A change that happens while the history is compacted away: open watches end with
    /// `410 Gone` and only a new list shows it.
    fn change_and_expire(&self, mut slice: Value) {
        let mut api = self.state.lock().unwrap();
        api.version += 1;
        let version = api.version;
        slice["metadata"]["resourceVersion"] = json!(version.to_string());
        let name = slice["metadata"]["name"].as_str().unwrap_or("").to_string();
        api.slices.insert(name, slice);
        api.compacted = version;
        let line = format!("{}\n", gone(0, version));
        for w in api.watchers.drain(..) {
            let _ = w.send(Ok(Frame::data(Bytes::from(line.clone()))));
        }
    }

    /// Breaks every open watch mid-stream (the connection drops without the last chunk) and
    /// answers the next `failing` watch requests `500`.
    fn break_watches(&self, failing: u32) {
        let mut api = self.state.lock().unwrap();
        api.failing_watches = failing;
        for w in api.watchers.drain(..) {
            let _ = w.send(Err(std::io::Error::other("connection reset")));
        }
    }

    fn counts(&self) -> (u64, u64, u64) {
        let api = self.state.lock().unwrap();
        (api.lists, api.watches, api.failed_watches)
    }

    /// A kubeconfig file that points at this server, without credentials.
    fn kubeconfig(&self) -> String {
        let path = scratch_dir("kubeconfig").join("config");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    namespace: {NAMESPACE}\nusers: []\n",
            self.addr
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path.to_string_lossy().into_owned()
    }
}

/// The watch ERROR event for an expired resourceVersion, as kube-apiserver sends it.
fn gone(from: u64, oldest: u64) -> Value {
    json!({
        "type": "ERROR",
        "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("too old resource version: {from} ({oldest})"),
            "reason": "Expired", "code": 410
        }
    })
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "reason": reason, "message": message, "code": code.as_u16()
    });
    let mut response = Response::new(full(body.to_string()));
    *response.status_mut() = code;
    response
}

fn full(text: String) -> Body {
    Full::new(Bytes::from(text))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// A streamed (chunked) body fed by a channel; an `Err` breaks the connection.
struct ChannelBody(mpsc::UnboundedReceiver<Chunk>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Chunk>> {
        self.get_mut().0.poll_recv(cx)
    }
}

/// An endpoint of a slice: (upstream, ready, serving, terminating).
type Ep<'a> = (&'a Upstream, bool, bool, bool);

fn ready(u: &Upstream) -> Ep<'_> {
    (u, true, true, false)
}
fn not_ready(u: &Upstream) -> Ep<'_> {
    (u, false, false, false)
}
fn draining(u: &Upstream) -> Ep<'_> {
    (u, false, true, true)
}

/// An EndpointSlice of the Service, its port named `http`.
fn slice(name: &str, endpoints: &[Ep<'_>]) -> Value {
    let port = endpoints.first().map(|e| e.0.addr.port()).unwrap_or(1);
    json!({
        "kind": "EndpointSlice",
        "apiVersion": "discovery.k8s.io/v1",
        "metadata": {
            "name": name, "namespace": NAMESPACE,
            "labels": { "kubernetes.io/service-name": SERVICE }
        },
        "addressType": "IPv4",
        "endpoints": endpoints.iter().map(|(u, r, s, t)| json!({
            "addresses": [u.addr.ip().to_string()],
            "conditions": { "ready": r, "serving": s, "terminating": t },
        })).collect::<Vec<_>>(),
        "ports": [{ "name": "http", "port": port, "protocol": "TCP" }],
    })
}

/// Requests sent without pause on two keep-alive connections until stopped: every one must
/// succeed.
struct Traffic {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(addr: SocketAddr) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..2)
            .map(|_| {
                let (stop, sent, failures) = (stop.clone(), sent.clone(), failures.clone());
                tokio::spawn(async move {
                    let mut client = Client::connect(addr).await.expect("connect to weir");
                    // Bounded: 200 000 requests at most, and the test stops it long before.
                    for _ in 0..200_000 {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        sent.fetch_add(1, Ordering::SeqCst);
                        match client.get("/", &[]).await {
                            Ok((200, h, _)) if h.contains_key("x-upstream") => {}
                            Ok((status, h, body)) => failures
                                .lock()
                                .unwrap()
                                .push(format!("{status} {:?} {body}", h.get("weir-error"))),
                            Err(e) => {
                                failures.lock().unwrap().push(e);
                                client = Client::connect(addr).await.expect("reconnect");
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            sent,
            failures,
            tasks,
        }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("traffic task");
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.sent.load(Ordering::SeqCst), failures)
    }
}

/// The endpoint addresses `/services` lists for weir's service `up`.
async fn listed(weir: &Weir) -> BTreeSet<String> {
    let doc = services(weir).await;
    doc["services"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == "up"))
        .and_then(|s| s["endpoints"].as_array())
        .map(|eps| {
            eps.iter()
                .filter_map(|e| e["address"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until weir's service lists exactly `want`, then (when there are any) checks that
/// fresh requests reach every one of them and nothing else.
async fn serves(weir: &Weir, addr: SocketAddr, want: &[&Upstream], step: &str) {
    let wanted: BTreeSet<String> = want.iter().map(|u| u.addr.to_string()).collect();
    let target = &wanted;
    let got = until(SETTLE, move || async move {
        let now = listed(weir).await;
        (now == *target).then_some(now)
    })
    .await;
    assert!(
        got.is_some(),
        "{step}: weir lists {:?}, want {wanted:?}; log:\n{}",
        listed(weir).await,
        weir.logs()
    );
    if want.is_empty() {
        return;
    }
    let counts = load(addr, "/", 40, 1).await;
    let names: BTreeSet<&str> = want.iter().map(|u| u.name.as_str()).collect();
    let served: BTreeSet<&str> = counts.keys().map(String::as_str).collect();
    assert_eq!(served, names, "{step}: fresh requests went to {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpointslices_drive_the_endpoint_set_without_failing_a_request() {
    let first = Upstream::start_at("pod-a", "127.0.0.2:0".parse().unwrap()).await;
    let port = first.addr.port();
    let at = |ip: &str| format!("{ip}:{port}").parse::<SocketAddr>().unwrap();
    let a = first;
    let b = Upstream::start_at("pod-b", at("127.0.0.3")).await;
    let c = Upstream::start_at("pod-c", at("127.0.0.4")).await;
    let d = Upstream::start_at("pod-d", at("127.0.0.5")).await;

    let api = FakeApi::start().await;
    api.event("ADDED", slice("web-1", &[ready(&a)]));
    let listen = free_port();
    let yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: info, access_log: false }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{listen}\n    routes:\n      - name: all\n        backends: [{{ service: up }}]\nservices:\n  - name: up\n    load_balancer: random\n    discovery: {{ kubernetes: {{ service: {SERVICE}, namespace: {NAMESPACE}, port: http }} }}\n"
    );
    let weir = Weir::start_with_env(&yaml, &[("KUBECONFIG", &api.kubeconfig())]).await;
    let addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();

    // Initial list.
    serves(&weir, addr, &[&a], "initial list").await;
    let metrics = weir.metrics().await;
    let labels = [("service", "up"), ("endpoint", &a.addr.to_string()[..])];
    assert!(
        metric_sum(&metrics, "weir_http_requests_total", &labels) > 0.0,
        "the discovered endpoint has its series:\n{metrics}"
    );
    let traffic = Traffic::start(addr);

    // Scale up: a second slice.
    api.event("ADDED", slice("web-2", &[ready(&b), ready(&c)]));
    serves(&weir, addr, &[&a, &b, &c], "scale up").await;

    // An endpoint turns not ready.
    api.event("MODIFIED", slice("web-2", &[not_ready(&b), ready(&c)]));
    serves(&weir, addr, &[&a, &c], "b not ready").await;

    // Terminating endpoints leave while a ready one remains, and serve when none does.
    api.event("MODIFIED", slice("web-1", &[draining(&a)]));
    serves(&weir, addr, &[&c], "a terminating").await;
    api.event("MODIFIED", slice("web-2", &[not_ready(&b), draining(&c)]));
    serves(&weir, addr, &[&a, &c], "terminating but serving fallback").await;

    // A ready endpoint in a new slice wins over them; deleting that slice drops it.
    api.event("ADDED", slice("web-3", &[ready(&d)]));
    serves(&weir, addr, &[&d], "ready beats terminating").await;
    api.event("DELETED", slice("web-3", &[ready(&d)]));
    serves(&weir, addr, &[&a, &c], "slice deleted").await;

    // The watch breaks, the next watch gets a 500; a change made meanwhile arrives once it
    // resumes from its resourceVersion.
    let (lists_before, _, _) = api.counts();
    api.break_watches(1);
    api.event("MODIFIED", slice("web-2", &[not_ready(&b), ready(&c)]));
    serves(&weir, addr, &[&c], "watch resumed").await;
    let (lists, watches, failed) = api.counts();
    assert_eq!(failed, 1, "the 500 was answered");
    assert_eq!(
        lists, lists_before,
        "a broken watch resumes without listing"
    );
    assert!(watches >= 3, "watches: {watches}");

    // 410 Gone: the history is compacted, so weir lists again and sees the new state.
    api.change_and_expire(slice("web-1", &[ready(&a)]));
    serves(&weir, addr, &[&a, &c], "relisted after 410 Gone").await;
    assert_eq!(api.counts().0, lists_before + 1, "one relist");

    let (sent, failures) = traffic.finish().await;
    assert!(sent > 50, "traffic ran: {sent}");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}",
        failures.len()
    );

    // With the traffic stopped: when the API says no endpoint is usable, the service has
    // none (as with kube-proxy, rather than sending to pods that are going away)…
    api.event("MODIFIED", slice("web-1", &[not_ready(&a)]));
    api.event("MODIFIED", slice("web-2", &[not_ready(&b), not_ready(&c)]));
    serves(&weir, addr, &[], "nothing ready").await;
    let (status, headers, _) = get(addr, "/", &[]).await.expect("weir answers");
    assert_eq!(
        (
            status,
            headers.get("weir-error").and_then(|v| v.to_str().ok())
        ),
        (503, Some("no_healthy_endpoint"))
    );
    // …until one is ready again.
    api.event("MODIFIED", slice("web-2", &[not_ready(&b), ready(&c)]));
    serves(&weir, addr, &[&c], "ready again").await;

    let logs = weir.logs();
    assert!(
        logs.contains("kubernetes discovery updated endpoints"),
        "{logs}"
    );
    assert!(logs.contains("has no ready or serving endpoint"), "{logs}");
    assert!(logs.contains("endpointslice list/watch failed"), "{logs}");
    assert!(logs.contains("410 Gone"), "{logs}");
    assert!(!logs.contains("not enforced"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_keeps_the_last_endpoints() {
    let up = Upstream::start_at("pod-a", "127.0.0.2:0".parse().unwrap()).await;
    let api = FakeApi::start().await;
    api.event("ADDED", slice("web-1", &[ready(&up)]));
    let listen = free_port();
    let yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: info, access_log: false }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{listen}\n    routes:\n      - name: all\n        backends: [{{ service: up }}]\nservices:\n  - name: up\n    discovery: {{ kubernetes: {{ service: {SERVICE}, namespace: {NAMESPACE}, port: {} }} }}\n",
        up.addr.port()
    );
    let weir = Weir::start_with_env(&yaml, &[("KUBECONFIG", &api.kubeconfig())]).await;
    let addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    serves(&weir, addr, &[&up], "numeric port").await;

    // The API server goes away: weir retries with backoff, and the endpoints stay and keep
    // serving.
    api.go_away();
    let weir_ref = &weir;
    let retried = until(SETTLE, move || async move {
        let failures = weir_ref
            .logs()
            .matches("endpointslice list/watch failed")
            .count();
        (failures >= 2).then_some(())
    })
    .await;
    assert!(
        retried.is_some(),
        "weir retries the watch:\n{}",
        weir.logs()
    );
    assert!(weir.logs().contains("keeping the last endpoints"));
    serves(&weir, addr, &[&up], "API unreachable").await;
}

/// A transparent listener routes a discovered Service's cluster IP to the weir service: the
/// Service's cluster IP and the port named in the configuration are read from the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transparent_listener_learns_the_cluster_ip_of_a_discovered_service() {
    let api = FakeApi::start().await;
    let yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlisteners:\n  - name: outbound\n    address: 127.0.0.1:{}\n    transparent: true\nservices:\n  - name: up\n    discovery: {{ kubernetes: {{ service: {SERVICE}, namespace: {NAMESPACE}, port: http }} }}\n",
        free_port()
    );
    let weir = Weir::start_with_env(&yaml, &[("KUBECONFIG", &api.kubeconfig())]).await;
    let found = until(SETTLE, || async {
        let listed = services(&weir).await;
        let addresses = listed["services"][0]["discovered_addresses"].clone();
        (addresses != json!([])).then_some(addresses)
    })
    .await;
    assert_eq!(found, Some(json!(["10.96.0.20:80"])));
}
