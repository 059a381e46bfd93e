//! gRPC through weir with a real client and server (Python grpcio, `tests/grpc/`): unary with
//! trailing metadata, server streaming, bidi streaming and an error status in trailers.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weir::telemetry::prometheus_text::metric_sum;

use crate::support::{eventually, free_port, scratch_dir, Weir};

/// RPCs `client.py` makes per run: Say twice (small, 1 MiB), Count, Chat, Missing.
const CALLS_PER_RUN: f64 = 5.0;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/grpc")
        .join(name)
}

/// Fails (never skips) when python3 or grpcio is missing.
pub(crate) fn require_grpcio() {
    let out = Command::new("python3").args(["-c", "import grpc"]).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "python3 cannot import grpc (grpcio), which the gRPC tests need: run scripts/test (it pip-installs grpcio)\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("python3 is not runnable ({e}): run scripts/test, which installs python3 and grpcio"),
    }
}

/// `tests/grpc/server.py` as a child process; killed on drop.
pub(crate) struct GrpcServer {
    child: Child,
    pub(crate) port: u16,
    log: PathBuf,
}

impl GrpcServer {
    pub(crate) async fn start() -> GrpcServer {
        let dir = scratch_dir("grpc");
        let port_file = dir.join("port");
        let log = dir.join("server.log");
        let child = Command::new("python3")
            .arg(script("server.py"))
            .arg(&port_file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn python3 tests/grpc/server.py");
        let mut server = GrpcServer {
            child,
            port: 0,
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
            "the gRPC test server did not start (exited: {exited}); its log:\n{}",
            server.logs()
        );
        server.port = std::fs::read_to_string(&port_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        server
    }

    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `client.py target` (each call has a 15 s deadline) and parses its JSON line.
pub(crate) async fn run_client(target: String) -> Result<serde_json::Value, String> {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script("client.py"))
            .arg(&target)
            .output()
    })
    .await
    .unwrap()
    .map_err(|e| format!("spawn client.py: {e}"))?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    if !out.status.success() {
        return Err(format!(
            "client.py exited with {}; stdout: {stdout}; stderr: {stderr}",
            out.status
        ));
    }
    serde_json::from_str(stdout.trim())
        .map_err(|e| format!("client.py printed no JSON ({e}): {stdout}; stderr: {stderr}"))
}

pub(crate) fn assert_results(r: &serde_json::Value, via: &str) {
    assert_eq!(r["unary"], "hello through weir", "{via}: unary reply; {r}");
    assert_eq!(
        r["trailer"], "yes",
        "{via}: trailing metadata x-echo-trailer; {r}"
    );
    assert_eq!(r["big_len"], 1 << 20, "{via}: 1 MiB unary echo; {r}");
    assert_eq!(r["streamed"], 100, "{via}: server-streamed messages; {r}");
    assert_eq!(r["stream_last"], "99", "{via}: last streamed message; {r}");
    assert_eq!(
        r["bidi"],
        serde_json::json!(["one", "two", "three", "four", "five"]),
        "{via}: bidi echoes; {r}"
    );
    assert_eq!(r["error_code"], "NOT_FOUND", "{via}: error status; {r}");
    assert_eq!(
        r["error_details"], "no such thing",
        "{via}: error details; {r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_server_stream_bidi_and_error_status_pass_through() {
    require_grpcio();
    let server = GrpcServer::start().await;

    // The setup alone: client straight to the server.
    let direct = run_client(format!("127.0.0.1:{}", server.port)).await;
    let direct = direct.unwrap_or_else(|e| {
        panic!(
            "test setup broken (client -> server, no weir): {e}\nserver log:\n{}",
            server.logs()
        )
    });
    assert_results(&direct, "direct (no weir; the test setup is broken)");

    let port = free_port();
    let yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ level: info, format: text, access_log: true }}\nlisteners:\n  - name: main\n    address: 127.0.0.1:{port}\n    routes:\n      - name: grpc\n        retries: {{ attempts: 2, on: [connect-failure, reset] }}\n        backends: [{{ service: grpc }}]\nservices:\n  - {{ name: grpc, endpoints: [\"127.0.0.1:{}\"], protocol: http2 }}\n",
        server.port
    );
    let weir = Weir::start(&yaml).await;

    let via = run_client(format!("127.0.0.1:{port}")).await;
    let via = via.unwrap_or_else(|e| {
        panic!(
            "through weir: {e}\nweir log:\n{}\nserver log:\n{}",
            weir.logs(),
            server.logs()
        )
    });
    assert_results(&via, "through weir");

    let labels = [
        ("listener", "main"),
        ("route", "grpc"),
        ("service", "grpc"),
        ("code", "200"),
        ("error", "none"),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut counted = 0.0;
    while std::time::Instant::now() < deadline {
        counted = metric_sum(&weir.metrics().await, "weir_http_requests_total", &labels);
        if counted >= CALLS_PER_RUN {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = weir.metrics().await;
    assert_eq!(
        counted, CALLS_PER_RUN,
        "weir_http_requests_total{{route=grpc,service=grpc,code=200}}:\n{metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "weir_http_requests_total", &[("route", "grpc")]),
        CALLS_PER_RUN,
        "no other codes/errors:\n{metrics}"
    );
}
