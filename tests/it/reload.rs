//! Hot reload: SIGHUP, `POST /reload` and the file watch, under load, with valid and invalid
//! configurations; what survives a reload and what leaves `/metrics`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use weir::telemetry::prometheus_text::metric_sum;

use crate::support::{free_port, get, until, Client, Upstream, Weir};

/// The test's configuration: route `split` sends `/` to `a` and `b` at `weight_a` percent
/// for `a`; with `only_b`, `/only-b` goes to `b`; with `extra`, a second listener sends to `b`.
fn config(
    port: u16,
    a: SocketAddr,
    b: SocketAddr,
    weight_a: u32,
    only_b: bool,
    extra: Option<u16>,
) -> String {
    let only_b = if only_b {
        "      - name: only-b\n        match: { path: { prefix: /only-b } }\n        backends: [{ service: b }]\n"
    } else {
        ""
    };
    let extra = extra.map_or(String::new(), |p| {
        format!("  - name: extra\n    address: 127.0.0.1:{p}\n    routes:\n      - name: extra\n        backends: [{{ service: b }}]\n")
    });
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: info, access_log: false }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n{only_b}      - name: split\n        backends: [{{ service: a, weight: {weight_a} }}, {{ service: b, weight: {} }}]\n{extra}services:\n  - {{ name: a, endpoints: [\"{a}\"] }}\n  - {{ name: b, endpoints: [\"{b}\"] }}\n",
        100 - weight_a
    )
}

/// Replaces the configuration file the way an editor or a ConfigMap update does: a new
/// file renamed over the old one, so no reader ever sees half of it. Returns its hash.
pub(crate) fn write(weir: &Weir, yaml: &str) -> String {
    let text = yaml.replace("{admin}", &weir.admin.to_string());
    let next = weir.config.with_extension("next");
    std::fs::write(&next, &text).expect("write");
    std::fs::rename(&next, &weir.config).expect("rename");
    weir::config::sha256_hex(text.as_bytes())
}

/// `POST /reload`: (status, body).
pub(crate) async fn post_reload(weir: &Weir) -> (u16, String) {
    let mut client = Client::connect(weir.admin).await.expect("admin");
    let (status, _, body) = client
        .request("POST", "/reload", &[], Bytes::new())
        .await
        .expect("answer");
    (status, body)
}

async fn config_sha(weir: &Weir) -> String {
    let (_, _, body) = get(weir.admin, "/config", &[]).await.expect("config");
    let doc: serde_json::Value = serde_json::from_str(&body).expect("json");
    doc["sha256"].as_str().unwrap_or_default().to_string()
}

async fn reloads(weir: &Weir, result: &str) -> f64 {
    metric_sum(
        &weir.metrics().await,
        "weir_config_reloads_total",
        &[("result", result)],
    )
}

/// An HTTP/2 (prior knowledge) connection to weir.
struct H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>);

impl H2 {
    async fn connect(addr: SocketAddr) -> H2 {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        H2(sender)
    }

    /// The upstream that answered `path`, or why there was none.
    async fn upstream(&mut self, addr: SocketAddr, path: &str) -> Result<String, String> {
        let req = http::Request::get(format!("http://{addr}{path}"))
            .body(Empty::new())
            .expect("request");
        let resp = self.0.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let upstream = resp
            .headers()
            .get("x-upstream")
            .map(|v| v.to_str().unwrap_or("").to_string());
        let _ = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        match (status, upstream) {
            (200, Some(u)) => Ok(u),
            (s, _) => Err(format!("status {s}")),
        }
    }
}

/// Which upstream answered each of `n` requests for `path` on one keep-alive connection.
async fn upstreams(client: &mut Client, path: &str, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let (status, headers, _) = client.get(path, &[]).await.expect("answer");
        assert_eq!(status, 200, "{path}");
        let upstream = headers
            .get("x-upstream")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        seen.push(upstream.to_string());
    }
    seen
}

/// Clients that keep sending until told to stop (bounded in count and time), counting
/// what failed: new HTTP/1.1 connections, a keep-alive connection and an HTTP/2 one.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for kind in ["fresh", "keep-alive", "h2"] {
            let (stop, ok, failed, failures) =
                (stop.clone(), ok.clone(), failed.clone(), failures.clone());
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                let mut keep_alive = None;
                let mut h2 = None;
                for _ in 0..20_000 {
                    if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(120) {
                        return;
                    }
                    let result = match kind {
                        "fresh" => get(addr, "/", &[]).await.and_then(|(s, _, _)| match s {
                            200 => Ok(()),
                            s => Err(format!("status {s}")),
                        }),
                        "keep-alive" => {
                            if keep_alive.is_none() {
                                keep_alive = Some(Client::connect(addr).await.expect("connect"));
                            }
                            match keep_alive.as_mut() {
                                Some(c) => c.get("/", &[]).await.and_then(|(s, _, _)| match s {
                                    200 => Ok(()),
                                    s => Err(format!("status {s}")),
                                }),
                                None => Err("no connection".into()),
                            }
                        }
                        _ => {
                            if h2.is_none() {
                                h2 = Some(H2::connect(addr).await);
                            }
                            match h2.as_mut() {
                                Some(c) => c.upstream(addr, "/").await.map(|_| ()),
                                None => Err("no connection".into()),
                            }
                        }
                    };
                    match result {
                        Ok(()) => ok.fetch_add(1, Ordering::SeqCst),
                        Err(e) => {
                            failures.lock().unwrap().push(format!("{kind}: {e}"));
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            }));
        }
        Load {
            stop,
            ok,
            failed,
            failures,
            tasks,
        }
    }

    async fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            let _ = t.await;
        }
        let failures = self.failures.lock().unwrap().clone();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            failures,
        )
    }
}

/// How a reload is asked for.
#[derive(Debug, Clone, Copy)]
enum Ask {
    Post,
    Sighup,
    Watch,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_lose_no_request_and_the_weights_in_force_are_observed() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let (port, extra_port) = (free_port(), free_port());
    let main: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let extra: SocketAddr = format!("127.0.0.1:{extra_port}").parse().unwrap();
    let weir = Weir::start(&config(port, a.addr, b.addr, 100, false, None)).await;
    // Long-lived connections opened before any reload: each must see every new config.
    let mut keep_alive = Client::connect(main).await.expect("connect");
    let mut h2 = H2::connect(main).await;
    assert!(upstreams(&mut keep_alive, "/", 5)
        .await
        .iter()
        .all(|u| u == "a"));
    let load = Load::start(main);
    // A port some other process holds: a listener there cannot be bound.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();

    let asks = [Ask::Post, Ask::Sighup, Ask::Watch];
    let mut in_force = config(port, a.addr, b.addr, 100, false, None);
    let mut weight_in_force = 100;
    let mut refusals = 0;
    for step in 0..20 {
        let ask = asks[step % 3];
        let failures_before = reloads(&weir, "failure").await;
        let sha_before = config_sha(&weir).await;
        if step % 2 == 0 {
            // Valid: weights flip (with an 80/20 split now and then), a route comes and
            // goes, the extra listener is added at step 4 and removed at step 12.
            let weight = [0, 100, 80, 100, 0][step / 2 % 5];
            let only_b = step % 4 == 0;
            let with_extra = (4..12).contains(&step);
            in_force = config(
                port,
                a.addr,
                b.addr,
                weight,
                only_b,
                with_extra.then_some(extra_port),
            );
            let sha = write(&weir, &in_force);
            match ask {
                Ask::Post => {
                    let (status, body) = post_reload(&weir).await;
                    assert_eq!(status, 200, "step {step}: {body}");
                    assert!(body.contains(&sha), "step {step}: {body}");
                }
                Ask::Sighup => weir.signal("HUP"),
                Ask::Watch => {}
            }
            assert!(
                until(Duration::from_secs(10), || async {
                    (config_sha(&weir).await == sha).then_some(())
                })
                .await
                .is_some(),
                "step {step} ({ask:?}) never took the new configuration in force; log:\n{}",
                weir.logs()
            );
            weight_in_force = weight;
            // The weights in force are the ones observed, on connections older than the
            // reload, over HTTP/1.1 and HTTP/2.
            let n = if weight == 80 { 200 } else { 20 };
            let seen = upstreams(&mut keep_alive, "/", n).await;
            let on_a = seen.iter().filter(|u| *u == "a").count();
            match weight {
                100 => assert_eq!(on_a, n, "step {step}: {seen:?}"),
                0 => assert_eq!(on_a, 0, "step {step}: {seen:?}"),
                // 200 draws at 80 %: 160 ± 17 is beyond five standard deviations.
                _ => assert!(
                    (130..=190).contains(&on_a),
                    "step {step}: {on_a} of {n} on a"
                ),
            }
            if weight != 80 {
                let want = if weight == 100 { "a" } else { "b" };
                for _ in 0..5 {
                    assert_eq!(
                        h2.upstream(main, "/").await.as_deref(),
                        Ok(want),
                        "step {step} (h2)"
                    );
                }
            }
            let only_b_seen = upstreams(&mut keep_alive, "/only-b", 5).await;
            if only_b {
                assert!(
                    only_b_seen.iter().all(|u| u == "b"),
                    "step {step}: {only_b_seen:?}"
                );
            }
            if with_extra {
                let (status, headers, _) = get(extra, "/", &[])
                    .await
                    .expect("the extra listener serves");
                assert_eq!(
                    (status, headers["x-upstream"].to_str().unwrap()),
                    (200, "b"),
                    "step {step}"
                );
            } else if step >= 12 {
                assert!(
                    until(Duration::from_secs(5), || async {
                        tokio::net::TcpStream::connect(extra)
                            .await
                            .is_err()
                            .then_some(())
                    })
                    .await
                    .is_some(),
                    "step {step}: the removed listener still accepts"
                );
            }
        } else {
            refusals += 1;
            let bad = match step / 2 % 5 {
                0 => in_force.replace("{ service: b, weight", "{ service: nope, weight"),
                1 => in_force.replace("listeners:", "listeners: [\n"),
                2 => in_force.replace(&format!("weight: {weight_in_force} }}"), "weight: -5 }"),
                3 => in_force.replace("admin: { address: \"{admin}\" }", &format!("admin: {{ address: \"127.0.0.1:{}\" }}", free_port())),
                _ => in_force.replace("services:\n", &format!("  - name: taken\n    address: 127.0.0.1:{taken_port}\n    routes:\n      - name: t\n        backends: [{{ service: a }}]\nservices:\n")),
            };
            assert_ne!(
                bad, in_force,
                "step {step}: the invalid configuration differs"
            );
            write(&weir, &bad);
            match ask {
                Ask::Post => {
                    let (status, body) = post_reload(&weir).await;
                    assert_eq!(status, 400, "step {step}: {body}");
                    let file = weir.config.display().to_string();
                    let located = body.lines().any(|l| {
                        l.strip_prefix(&format!("{file}:"))
                            .and_then(|rest| rest.split_once(':'))
                            .is_some_and(|(line, rest)| {
                                line.parse::<u32>().is_ok()
                                    && rest
                                        .split_once(':')
                                        .is_some_and(|(col, _)| col.parse::<u32>().is_ok())
                            })
                    });
                    assert!(located, "step {step}: no FILE:LINE:COL in {body}");
                }
                Ask::Sighup => weir.signal("HUP"),
                Ask::Watch => {}
            }
            assert!(
                until(Duration::from_secs(10), || async {
                    (reloads(&weir, "failure").await > failures_before).then_some(())
                })
                .await
                .is_some(),
                "step {step} ({ask:?}): the refusal was not counted; log:\n{}",
                weir.logs()
            );
            assert_eq!(
                config_sha(&weir).await,
                sha_before,
                "step {step}: the old config stays"
            );
            let want = if weight_in_force == 0 { "b" } else { "a" };
            if weight_in_force != 80 {
                let seen = upstreams(&mut keep_alive, "/", 10).await;
                assert!(seen.iter().all(|u| u == want), "step {step}: {seen:?}");
            }
        }
    }
    let (ok, failed, failures) = load.finish().await;
    assert_eq!(failed, 0, "failed requests during reloads: {failures:?}");
    assert!(ok > 100, "the load ran ({ok} requests)");
    assert!(reloads(&weir, "success").await >= 10.0);
    assert!(reloads(&weir, "failure").await >= f64::from(refusals));
    // Service `a` never changed (only `b` gains and loses routes): its pool lived through
    // every reload, so it holds the few connections the clients needed (five at a time at
    // most), not a new set per reload.
    assert!(
        a.state.connections.load(Ordering::SeqCst) <= 8,
        "a saw {} connections",
        a.state.connections.load(Ordering::SeqCst)
    );
    let logs = weir.logs();
    assert!(logs.contains("service b rebuilt"), "{logs}");
    assert!(!logs.contains("service a rebuilt"), "{logs}");
    assert!(logs.contains("configuration reloaded"), "{logs}");
    assert!(logs.contains("configuration refused"), "{logs}");
    drop(taken);
}

/// Two listeners, four services: `flaky` (one endpoint failing, outlier detection on),
/// `old` (reached by route `old-route` and listener `old-listener`), `moving` (two
/// endpoints). `v2` removes `old`, its route and listener, and one of `moving`'s endpoints;
/// it adds a route to `moving`; `flaky` is untouched.
fn hygiene_config(
    v2: bool,
    ports: (u16, u16),
    bad: SocketAddr,
    good: SocketAddr,
    old: SocketAddr,
    moving: (SocketAddr, SocketAddr),
) -> String {
    let (port, old_port) = ports;
    let old_route = "      - name: old-route\n        match: { path: { prefix: /old } }\n        backends: [{ service: old }]\n";
    let new_route = "      - name: new-route\n        match: { path: { prefix: /new } }\n        backends: [{ service: moving }]\n";
    let old_listener = format!("  - name: old-listener\n    address: 127.0.0.1:{old_port}\n    routes:\n      - name: q\n        backends: [{{ service: old }}]\n");
    let old_service = format!("  - {{ name: old, endpoints: [\"{old}\"] }}\n");
    let moving_endpoints = if v2 {
        format!("\"{}\"", moving.0)
    } else {
        format!("\"{}\", \"{}\"", moving.0, moving.1)
    };
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: info, access_log: false }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: flaky\n        match: {{ path: {{ prefix: /flaky }} }}\n        backends: [{{ service: flaky }}]\n{}      - name: all\n        backends: [{{ service: moving }}]\n{}services:\n  - name: flaky\n    endpoints: [\"{bad}\", \"{good}\"]\n    outlier_detection: {{ consecutive_5xx: 2, interval: 1s, base_ejection_time: 300s, max_ejection_percent: 50 }}\n{}  - {{ name: moving, endpoints: [{moving_endpoints}] }}\n",
        if v2 { new_route } else { old_route },
        if v2 { String::new() } else { old_listener },
        if v2 { String::new() } else { old_service },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_ejections_of_unchanged_services_and_drops_the_series_of_what_it_removed() {
    let (bad, good, old) = (
        Upstream::start("bad").await,
        Upstream::start("good").await,
        Upstream::start("old").await,
    );
    let (m1, m2) = (Upstream::start("m1").await, Upstream::start("m2").await);
    bad.fail(100, 500);
    let ports = (free_port(), free_port());
    let main: SocketAddr = format!("127.0.0.1:{}", ports.0).parse().unwrap();
    let old_listener: SocketAddr = format!("127.0.0.1:{}", ports.1).parse().unwrap();
    let yaml = |v2| hygiene_config(v2, ports, bad.addr, good.addr, old.addr, (m1.addr, m2.addr));
    let weir = Weir::start(&yaml(false)).await;
    let mut client = Client::connect(main).await.expect("connect");
    for path in [
        "/flaky", "/flaky", "/flaky", "/flaky", "/old", "/", "/", "/", "/",
    ] {
        client.get(path, &[]).await.expect("answer");
    }
    get(old_listener, "/", &[])
        .await
        .expect("the old listener serves");
    let bad_state = || async {
        crate::support::endpoint_state(&weir, "flaky", bad.addr)
            .await
            .map(|s| s.0)
    };
    assert_eq!(
        bad_state().await.as_deref(),
        Some("ejected"),
        "two 500s in a row eject the failing endpoint"
    );
    let removed = [
        "service=\"old\"".to_string(),
        "route=\"old-route\"".to_string(),
        "listener=\"old-listener\"".to_string(),
        format!("endpoint=\"{}\"", m2.addr),
    ];
    let before = weir.metrics().await;
    for series in &removed {
        assert!(
            before.contains(series),
            "{series} before the reload:\n{before}"
        );
    }
    let flaky_requests = metric_sum(&before, "weir_http_requests_total", &[("service", "flaky")]);
    assert_eq!(flaky_requests, 4.0);

    write(&weir, &yaml(true));
    let (status, body) = post_reload(&weir).await;
    assert_eq!(status, 200, "{body}");
    for change in [
        "listener old-listener removed",
        "service old removed",
        "service moving rebuilt",
    ] {
        assert!(body.contains(change), "{change} in {body}");
    }
    assert!(!body.contains("service flaky"), "flaky is kept: {body}");

    // The untouched service kept its ejection and its counts.
    assert_eq!(
        bad_state().await.as_deref(),
        Some("ejected"),
        "the ejection survives the reload"
    );
    let after = weir.metrics().await;
    assert_eq!(
        metric_sum(&after, "weir_http_requests_total", &[("service", "flaky")]),
        flaky_requests,
        "flaky's counters were kept:\n{after}"
    );
    // What the reload removed left /metrics.
    for series in &removed {
        assert!(
            !after.contains(series),
            "{series} after the reload:\n{after}"
        );
    }
    assert!(!after.contains("=\"\""), "an empty label:\n{after}");
    // New routes are counted; the endpoint that stayed keeps its series.
    let mut client = Client::connect(main).await.expect("connect");
    let (status, headers, _) = client.get("/new", &[]).await.expect("answer");
    assert_eq!(
        (status, headers["x-upstream"].to_str().unwrap()),
        (200, "m1")
    );
    let last = weir.metrics().await;
    assert_eq!(
        metric_sum(
            &last,
            "weir_http_requests_total",
            &[("route", "new-route"), ("endpoint", &m1.addr.to_string())]
        ),
        1.0,
        "{last}"
    );
    assert!(
        tokio::net::TcpStream::connect(old_listener).await.is_err(),
        "the removed listener is closed"
    );
}

/// The server side of a mesh pair: a strict listener that lets `allowed` in.
fn strict_server(
    mesh: &crate::mtls::TestMesh,
    port: u16,
    app: SocketAddr,
    allowed: &str,
) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\n{}listeners:\n  - name: in\n    address: 127.0.0.1:{port}\n    tls: {{ mode: strict, allow: [\"{allowed}\"] }}\n    routes:\n      - name: app\n        backends: [{{ service: app }}]\nservices:\n  - {{ name: app, endpoints: [\"{app}\"] }}\n",
        mesh.server_identity()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_revokes_a_peer_closes_its_open_connections() {
    let mesh = crate::mtls::TestMesh::new();
    let app = Upstream::start("app").await;
    let (server_port, client_port) = (free_port(), free_port());
    let server = Weir::start(&strict_server(
        &mesh,
        server_port,
        app.addr,
        mesh.client_id(),
    ))
    .await;
    // The client sidecar keeps one pooled mTLS connection to the server's listener.
    let _client = Weir::start(&format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\n{}listeners:\n  - name: out\n    address: 127.0.0.1:{client_port}\n    routes:\n      - name: app\n        backends: [{{ service: app }}]\nservices:\n  - {{ name: app, endpoints: [\"127.0.0.1:{server_port}\"], tls: {{ identity: \"{}\" }} }}\n",
        mesh.client_identity(),
        mesh.server_id()
    ))
    .await;
    let out: SocketAddr = format!("127.0.0.1:{client_port}").parse().unwrap();
    for _ in 0..3 {
        assert_eq!(get(out, "/", &[]).await.expect("answer").0, 200);
    }
    assert_eq!(
        app.state.connections.load(Ordering::SeqCst),
        1,
        "one pooled connection"
    );

    write(
        &server,
        &strict_server(
            &mesh,
            server_port,
            app.addr,
            "spiffe://cluster.local/ns/shop/sa/nobody",
        ),
    );
    let (status, body) = post_reload(&server).await;
    assert_eq!(status, 200, "{body}");
    // The connection admitted under the old allow list is drained; the client's next
    // connection is judged by the new list.
    let refused = until(Duration::from_secs(5), || async {
        let (status, headers, _) = get(out, "/", &[]).await.ok()?;
        (status == 403).then(|| headers.get("weir-error").cloned())
    })
    .await;
    assert_eq!(
        refused.flatten().as_ref().and_then(|v| v.to_str().ok()),
        Some("identity_denied"),
        "the revoked peer is still served; server log:\n{}",
        server.logs()
    );
    let hits = app.hits();
    for _ in 0..3 {
        assert_eq!(get(out, "/", &[]).await.expect("answer").0, 403);
    }
    assert_eq!(
        app.hits(),
        hits,
        "nothing reached the app after the revocation"
    );
    // The allow entry the reload removed took its series along; the peer now counts as
    // `other`, denied.
    let metrics = server.metrics().await;
    let revoked = format!("peer_identity=\"{}\"", mesh.client_id());
    assert!(!metrics.contains(&revoked), "{metrics}");
    assert!(
        metric_sum(
            &metrics,
            "weir_tls_peer_requests_total",
            &[("peer_identity", "other"), ("decision", "deny")]
        ) >= 3.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_refused_after_building_leaves_no_series_and_the_gauges_in_force() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let port = free_port();
    let yaml = |extra: &str, endpoints: &str| {
        format!("version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: all\n        backends: [{{ service: s }}]\n{extra}services:\n  - {{ name: s, endpoints: [{endpoints}] }}\n")
    };
    let weir = Weir::start(&yaml("", &format!("\"{}\"", a.addr))).await;
    // The new file adds an endpoint and a listener on a port another process holds: it
    // builds, then cannot bind.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let extra = format!(
        "  - name: blocked\n    address: {}\n    routes:\n      - name: blocked-route\n        backends: [{{ service: s }}]\n",
        taken.local_addr().unwrap()
    );
    write(
        &weir,
        &yaml(&extra, &format!("\"{}\", \"{}\"", a.addr, b.addr)),
    );
    let (status, body) = post_reload(&weir).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("listeners[1].address"), "{body}");
    let metrics = weir.metrics().await;
    let b_endpoint = format!("endpoint=\"{}\"", b.addr);
    for gone in [
        "listener=\"blocked\"",
        "route=\"blocked-route\"",
        &b_endpoint,
    ] {
        assert!(
            !metrics.contains(gone),
            "{gone} was never in force:\n{metrics}"
        );
    }
    assert_eq!(
        metric_sum(
            &metrics,
            "weir_upstream_endpoints",
            &[("service", "s"), ("state", "healthy")]
        ),
        1.0,
        "the gauge shows the service in force:\n{metrics}"
    );
    assert_eq!(
        get(format!("127.0.0.1:{port}").parse().unwrap(), "/", &[])
            .await
            .unwrap()
            .0,
        200
    );
}
