//! WebSocket through weir with a real client and server (PyPI `websockets`,
//! `tests/websocket/`): the upgrade is forwarded, the `101` switches both sides to a byte
//! stream, a quiet tunnel is closed after `stream_idle`, and a route that does not allow
//! the protocol serves the request as plain HTTP.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{eventually, free_port, metric_settles, scratch_dir, Upstream, Weir};

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/websocket")
        .join(name)
}

/// `tests/websocket/server.py` as a child process; killed on drop.
struct WsServer {
    child: Child,
    port: u16,
    seen: PathBuf,
    log: PathBuf,
}

impl WsServer {
    async fn start() -> WsServer {
        let dir = scratch_dir("websocket");
        let port_file = dir.join("port");
        let seen = dir.join("seen.jsonl");
        let log = dir.join("server.log");
        let child = Command::new("python3")
            .arg(script("server.py"))
            .arg(&port_file)
            .arg(&seen)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn python3 tests/websocket/server.py");
        let mut server = WsServer {
            child,
            port: 0,
            seen,
            log,
        };
        let mut exited = false;
        let found = eventually(Duration::from_secs(20), || {
            exited = exited || matches!(server.child.try_wait(), Ok(Some(_)));
            exited
                || std::fs::read_to_string(&port_file)
                    .is_ok_and(|s| s.trim().parse::<u16>().is_ok())
        })
        .await;
        assert!(
            found && !exited,
            "the WebSocket test server did not start (exited: {exited}; run scripts/test, which installs `websockets`); its log:\n{}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        server.port = std::fs::read_to_string(&port_file)
            .expect("port file")
            .trim()
            .parse()
            .expect("a port");
        server
    }

    /// The handshakes the server saw: path and header fields of each.
    fn handshakes(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.seen)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `client.py url` and parses its JSON line.
async fn run_client(url: String) -> serde_json::Value {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["60", "python3"])
            .arg(script("client.py"))
            .arg(&url)
            .output()
    })
    .await
    .expect("joined")
    .expect("spawn client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "client.py printed no JSON ({e}): {stdout}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn config(port: u16, route_extra: &str, endpoints: &str, access_log: bool) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ format: json, access_log: {access_log} }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    timeouts: {{ stream_idle: 1s }}\n    routes:\n      - name: ws\n{route_extra}        backends: [{{ service: ws }}]\nservices:\n  - {{ name: ws, load_balancer: round_robin, endpoints: [{endpoints}] }}\n"
    )
}

/// Sends `request` on a connection of its own and reads everything until weir closes it
/// (every request here says `connection: close`), 10 s at most.
async fn answer_to(port: u16, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// A well-behaved plain HTTP request on its own connection gets an answer.
async fn plain_request_is_served(port: u16) -> String {
    answer_to(
        port,
        b"GET /plain HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_pass_through_a_route_with_retries() {
    let server = WsServer::start().await;
    let port = free_port();
    // The first endpoint refuses connections: the handshake is retried on the live one.
    let dead = free_port();
    let endpoints = format!("\"127.0.0.1:{dead}\", \"127.0.0.1:{}\"", server.port);
    let route = "        retries: { attempts: 3, on: [connect-failure] }\n";
    let weir = Weir::start(&config(port, route, &endpoints, true)).await;

    for round in 0..3 {
        let result = run_client(format!("ws://127.0.0.1:{port}/chat/{round}")).await;
        assert_eq!(
            result["greeting"],
            format!("hello /chat/{round}"),
            "{result}\n{}",
            weir.logs()
        );
        assert_eq!(result["echoes"], serde_json::json!(["one", "two", "three"]));
        assert_eq!(result["binary_echoed"], true, "1 MiB came back intact");
        assert_eq!(result["close_code"], 1000, "a clean close");
    }

    // What the upstream saw: one handshake per client, asking for the switch, with weir's
    // forwarding fields.
    let handshakes = server.handshakes();
    assert_eq!(handshakes.len(), 3, "{handshakes:?}");
    for seen in &handshakes {
        let field = |name: &str| seen["headers"][name].clone();
        assert_eq!(field("upgrade"), serde_json::json!(["websocket"]));
        assert_eq!(field("connection"), serde_json::json!(["upgrade"]));
        assert_eq!(field("x-forwarded-for"), serde_json::json!(["127.0.0.1"]));
        assert_eq!(field("sec-websocket-version"), serde_json::json!(["13"]));
        assert!(field("sec-websocket-key")[0].is_string(), "{seen}");
    }

    // Round robin sent one of the first two handshakes to the dead endpoint first.
    // (Counted before the retry is sent, so before the client got its greeting.)
    let retried = weir::telemetry::prometheus_text::metric_sum(
        &weir.metrics().await,
        "weir_retries_total",
        &[("route", "ws"), ("outcome", "attempted")],
    );
    assert!(
        retried >= 1.0,
        "a handshake was retried: {}",
        weir.metrics().await
    );
    // Counted when each tunnel closes, as 101s of the live endpoint.
    let live = format!("127.0.0.1:{}", server.port);
    let counted = metric_settles(
        &weir,
        "weir_http_requests_total",
        &[("route", "ws"), ("endpoint", &live), ("code", "101")],
        3.0,
    )
    .await;
    assert_eq!(counted, 3.0, "{}", weir.metrics().await);
    // Logged: one access line per tunnel, status 101.
    let logged = eventually(Duration::from_secs(5), || {
        weir.logs()
            .lines()
            .filter(|l| l.contains("\"target\":\"weir::access\"") && l.contains("\"status\":101"))
            .count()
            == 3
    })
    .await;
    assert!(
        logged,
        "three access lines with status 101:\n{}",
        weir.logs()
    );
    // A plain request on the same listener is still served (the server answers 426).
    let plain = plain_request_is_served(port).await;
    assert!(plain.starts_with("HTTP/1.1 426"), "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_tunnel_is_closed_after_stream_idle_and_released() {
    let server = WsServer::start().await;
    let port = free_port();
    let endpoints = format!("\"127.0.0.1:{}\"", server.port);
    let weir = Weir::start(&config(port, "", &endpoints, false)).await;

    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream
        .write_all(
            b"GET /quiet HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .expect("write");
    let opened = Instant::now();
    // Everything until the close: the 101, the greeting frame, then nothing more.
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut received))
        .await
        .expect("weir closes a quiet tunnel")
        .expect("read");
    let lived = opened.elapsed();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(
        text.lines().any(|l| l
            .eq_ignore_ascii_case("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r")
            || l == "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "the server's accept key came through: {text}"
    );
    assert!(text.contains("hello /quiet"), "the greeting frame: {text}");
    assert!(
        lived >= Duration::from_millis(900),
        "closed after {lived:?}, before stream_idle (1 s)"
    );

    // Released: counted as one 101, and the endpoint has nothing in flight.
    let live = format!("127.0.0.1:{}", server.port);
    let counted = metric_settles(
        &weir,
        "weir_http_requests_total",
        &[("endpoint", &live), ("code", "101")],
        1.0,
    )
    .await;
    assert_eq!(counted, 1.0);
    let services = crate::support::services(&weir).await;
    let endpoint = &services["services"][0]["endpoints"][0];
    assert_eq!(endpoint["in_flight"], 0, "{services}");
    assert_eq!(
        endpoint["connections"], 0,
        "the switched connection closed: {services}"
    );
    let plain = plain_request_is_served(port).await;
    assert!(plain.starts_with("HTTP/1.1 426"), "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_without_the_protocol_serves_the_request_as_plain_http() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let endpoints = format!("\"{}\"", up.addr);
    let route = "        upgrades: []\n";
    let weir = Weir::start(&config(port, route, &endpoints, false)).await;

    let answer = answer_to(
        port,
        b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade, close\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = up.last_headers();
    assert!(seen.get("upgrade").is_none(), "{seen:?}");
    assert!(seen.get("connection").is_none(), "{seen:?}");
    assert_eq!(up.hits(), 1);
    drop(weir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_request_with_a_body_is_served_as_plain_http() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let weir = Weir::start(&config(port, "", &format!("\"{}\"", up.addr), false)).await;
    let answer = answer_to(
        port,
        b"POST /ws HTTP/1.1\r\nhost: x\r\nconnection: upgrade, close\r\nupgrade: websocket\r\ncontent-length: 5\r\n\r\nhello",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\n{}",
        weir.logs()
    );
    let seen = up.last_headers();
    assert!(seen.get("upgrade").is_none(), "{seen:?}");
    assert_eq!(up.hits(), 1);
}
