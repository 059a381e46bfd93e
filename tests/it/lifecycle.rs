//! Process and endpoint lifecycle: draining on SIGTERM, DNS discovery, endpoint-set changes
//! under in-flight requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir::telemetry::prometheus_text::metric_sum;

use crate::support::{eventually, free_port, get, Client, Upstream, Weir};

fn yaml(port: u16, services: &str) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: info, access_log: true }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: all\n        backends: [{{ service: up }}]\nservices:\n{services}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_finishes_in_flight_requests_and_exits_zero() {
    drains_and_exits_zero(Drain::Sigterm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_shutdown_drains_like_sigterm() {
    drains_and_exits_zero(Drain::PostShutdown).await;
}

/// What asks weir to drain.
#[derive(Debug, Clone, Copy)]
enum Drain {
    Sigterm,
    PostShutdown,
}

/// weir, asked by `how`, stops accepting, finishes the request in flight and exits 0.
async fn drains_and_exits_zero(how: Drain) {
    let up = Upstream::start("up").await;
    let port = free_port();
    let mut weir = Weir::start(&yaml(
        port,
        &format!("  - {{ name: up, endpoints: [\"{}\"] }}\n", up.addr),
    ))
    .await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let slow = tokio::spawn(async move { get(addr, "/delay/800", &[]).await });
    let admin = weir.admin;
    let mut in_flight = false;
    for _ in 0..200 {
        let m = get(admin, "/metrics", &[])
            .await
            .map(|r| r.2)
            .unwrap_or_default();
        if metric_sum(&m, "weir_http_requests_in_flight", &[("service", "up")]) == 1.0 {
            in_flight = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(in_flight, "the slow request never showed as in flight");
    match how {
        Drain::Sigterm => weir.signal("TERM"),
        Drain::PostShutdown => {
            let mut client = Client::connect(admin).await.expect("admin");
            let (status, _, body) = client
                .request("POST", "/shutdown", &[], bytes::Bytes::new())
                .await
                .expect("an answer");
            assert_eq!(status, 200, "{body}");
            assert!(body.starts_with("draining"), "{body}");
        }
    }
    assert!(
        eventually(Duration::from_secs(2), || std::net::TcpStream::connect(
            addr
        )
        .is_err())
        .await,
        "weir still accepts connections after {how:?}"
    );
    let answered = slow.await.unwrap();
    assert_eq!(
        answered.map(|r| (r.0, r.2)),
        Ok((200, "up".to_string())),
        "the in-flight request must complete"
    );
    let status = exit_status(&mut weir, Duration::from_secs(5))
        .await
        .expect("weir exits after draining");
    assert!(status.success(), "exit status {status:?}");
    assert!(weir.logs().contains("drained; exiting"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_discovery_resolves_and_serves() {
    let up = Upstream::start("dns-up").await;
    let port = free_port();
    let resolved: Vec<_> = tokio::net::lookup_host(("localhost", up.addr.port()))
        .await
        .unwrap()
        .collect();
    // Serve on every address localhost resolves to, so each discovered endpoint answers.
    let mut extra = Vec::new();
    for a in resolved.iter().filter(|a| a.ip() != up.addr.ip()) {
        if let Ok(l) = tokio::net::TcpListener::bind(a).await {
            drop(l);
            extra.push(Upstream::start_at("dns-up", *a).await);
        }
    }
    let services = format!(
        "  - name: up\n    discovery: {{ dns: \"localhost:{}\", refresh: 100ms }}\n",
        up.addr.port()
    );
    let weir = Weir::start(&yaml(port, &services)).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin = weir.admin;
    let mut discovered = String::new();
    for _ in 0..300 {
        discovered = get(admin, "/services", &[])
            .await
            .map(|r| r.2)
            .unwrap_or_default();
        if discovered.contains(&up.addr.to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(discovered.contains(&up.addr.to_string()), "{discovered}");
    let mut client = Client::connect(addr).await.unwrap();
    for _ in 0..20 {
        assert_eq!(client.get("/", &[]).await.unwrap().2, "dns-up");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_set_changes_never_drop_in_flight_requests() {
    // In-process, so the test can change the endpoint set exactly while requests are in flight.
    let (old, new) = (Upstream::start("old").await, Upstream::start("new").await);
    let text = format!(
        "version: 1\nadmin: {{ address: \"127.0.0.1:0\" }}\nlogging: {{ level: warn, access_log: false }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:0\n    routes:\n      - name: all\n        backends: [{{ service: up }}]\nservices:\n  - {{ name: up, endpoints: [\"{}\"] }}\n",
        old.addr
    );
    let config = weir::config::load_str("test.yaml", &text).unwrap().config;
    let server = weir::server::Server::start(config).await.unwrap();
    let addr = server.listener_address("main").unwrap();
    let slow: Vec<_> = (0..8)
        .map(|_| tokio::spawn(async move { get(addr, "/delay/500", &[]).await }))
        .collect();
    assert!(eventually(Duration::from_secs(2), || old.hits() == 8).await);

    let snapshot = server.state.snapshot.load_full();
    let service = Arc::clone(&snapshot.services["up"]);
    service.set_endpoints(&[(new.addr, 1)]);
    assert_eq!(
        get(addr, "/", &[]).await.unwrap().2,
        "new",
        "new requests go to the new set"
    );
    for s in slow {
        assert_eq!(
            s.await.unwrap().map(|r| (r.0, r.2)),
            Ok((200, "old".to_string())),
            "in-flight requests finish on the removed endpoint"
        );
    }
    service.set_endpoints(&[]);
    let (status, headers, body) = get(addr, "/", &[]).await.unwrap();
    assert_eq!(
        (status, headers["weir-error"].to_str().unwrap()),
        (503, "no_healthy_endpoint")
    );
    assert_eq!(body, "weir: service up has no endpoint available\n");
    assert!(server.shutdown(Duration::from_secs(2)).await);
}

#[test]
fn a_port_in_use_exits_2_and_says_which_listener() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = crate::support::scratch_dir("port-in-use");
    let config = dir.join("weir.yaml");
    std::fs::write(
        &config,
        format!(
            "version: 1\nadmin: {{ address: \"127.0.0.1:{}\" }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: all\n        backends: [{{ service: up }}]\nservices:\n  - {{ name: up, endpoints: [\"127.0.0.1:9\"] }}\n",
            free_port()
        ),
    )
    .unwrap();
    let out = run_to_exit(&config);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "listener main: cannot bind 127.0.0.1:{port}: the address is in use"
        )),
        "{stderr}"
    );
}

#[test]
fn an_invalid_config_exits_1_with_located_errors() {
    let dir = crate::support::scratch_dir("invalid");
    let config = dir.join("weir.yaml");
    std::fs::write(
        &config,
        "version: 1\nlisteners:\n  - name: main\n    adress: 127.0.0.1:1\n",
    )
    .unwrap();
    let out = run_to_exit(&config);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:4:5: listeners[0].adress: ", config.display())),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `address`?"), "{stderr}");
}

/// Runs `weir run -c config` to its exit (for configurations that must not start).
fn run_to_exit(config: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "-c"])
        .arg(config)
        .output()
        .expect("run weir")
}

/// A legacy sidecar (`--drain`): after SIGTERM, `/ready` fails but new connections are
/// still served for the drain period (the application's own calls while it shuts down);
/// then weir stops accepting and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_sidecar_keeps_serving_for_the_drain_period_then_stops() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let services = format!("  - {{ name: up, endpoints: [\"{}\"] }}\n", up.addr);
    let mut weir = Weir::start_with_args(&yaml(port, &services), &["--drain", "1s"]).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let signalled = Instant::now();
    weir.signal("TERM");
    assert!(unready(&weir).await, "/ready still 200 after SIGTERM");
    // Draining has begun, and a new connection is still served.
    let (status, headers, _) = get(addr, "/", &[])
        .await
        .expect("served in the drain period");
    assert_eq!(
        (status, headers["x-upstream"].to_str().unwrap()),
        (200, "up")
    );
    assert!(
        eventually(Duration::from_secs(5), || std::net::TcpStream::connect(
            addr
        )
        .is_err())
        .await,
        "weir still accepts after the drain period"
    );
    assert!(
        signalled.elapsed() >= Duration::from_secs(1),
        "stopped accepting before the drain period ended"
    );
    let exited = exit_status(&mut weir, Duration::from_secs(5)).await;
    assert!(
        exited.is_some_and(|s| s.success()),
        "{exited:?}\n{}",
        weir.logs()
    );
    assert!(weir.logs().contains("still accepting for the drain period"));
}

/// A second SIGTERM ends the drain period at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_ends_the_drain_period_early() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let services = format!("  - {{ name: up, endpoints: [\"{}\"] }}\n", up.addr);
    let mut weir = Weir::start_with_args(&yaml(port, &services), &["--drain", "60s"]).await;
    weir.signal("TERM");
    assert!(unready(&weir).await, "/ready still 200 after SIGTERM");
    weir.signal("TERM");
    let exited = exit_status(&mut weir, Duration::from_secs(10)).await;
    assert!(
        exited.is_some_and(|s| s.success()),
        "{exited:?}\n{}",
        weir.logs()
    );
    assert!(weir.logs().contains("the drain period ends early"));
}

/// weir's exit status once it exits, or `None` after `limit`.
async fn exit_status(weir: &mut Weir, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = weir.child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether `/ready` turns 503 within 5 s (the drain period has begun).
async fn unready(weir: &Weir) -> bool {
    crate::support::until(Duration::from_secs(5), || async {
        let status = get(weir.admin, "/ready", &[]).await.ok()?.0;
        (status == 503).then_some(())
    })
    .await
    .is_some()
}
