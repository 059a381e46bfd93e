//! Pods on one machine, the closest thing to a cluster that runs here: each pod is a network
//! namespace on a shared bridge (198.51.100.0/24), with its application and a weir sidecar
//! running as uid 1337 behind the real `weir init-iptables` rules. The applications know
//! nothing of weir: pod A calls service B's address in plaintext, and the call is
//! intercepted, balanced over B's two replicas, carried over mTLS and answered.
//! Needs root (CI runs as root); without it the test fails naming the permission.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use weir::telemetry::prometheus_text::metric_sum;

use crate::netns::{stderr, Netns, Sidecar, WEIR};
use crate::support::scratch_dir;

/// The uid weir runs as in a pod (what `weir inject` sets and `init-iptables` exempts).
const PROXY_UID: u32 = 1337;
const A_ID: &str = "spiffe://cluster.local/ns/shop/sa/a";
const B_ID: &str = "spiffe://cluster.local/ns/shop/sa/b";

/// An application: answers every GET with its name, the port it listens on and the
/// `x-forwarded-client-cert` it received. With a third argument it speaks a line protocol
/// instead (not HTTP): `line` answers each line with `<name> <line>`; `banner` speaks first.
const APP: &str = r#"
import http.server, socketserver, sys
name, port = sys.argv[1], int(sys.argv[2])
mode = sys.argv[3] if len(sys.argv) > 3 else "http"
class Line(socketserver.StreamRequestHandler):
    def handle(self):
        if mode == "banner":
            self.wfile.write(f"220 {name} ready\n".encode())
        for line in self.rfile:
            self.wfile.write(f"{name} {line.decode().strip()}\n".encode())
if mode != "http":
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer(("0.0.0.0", port), Line).serve_forever()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        xfcc = self.headers.get("x-forwarded-client-cert", "-")
        body = f"{name}:{port} xfcc={xfcc}\n".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", port), H).serve_forever()
"#;

/// The bridge all pods hang on, in a namespace of its own.
struct Network {
    ns: Netns,
    pods: u32,
}

impl Network {
    fn new() -> Network {
        let ns = Netns::bare();
        ns.ip("link add br0 type bridge");
        ns.ip("link set br0 up");
        Network { ns, pods: 0 }
    }

    /// A pod namespace with `eth0` at `ip`/24 on the bridge.
    fn pod(&mut self, ip: &str) -> Netns {
        self.pods += 1;
        let pod = Netns::bare();
        let port = format!("p{}", self.pods);
        pod.ip(&format!(
            "link add eth0 type veth peer name {port} netns {}",
            self.ns.name
        ));
        self.ns.ip(&format!("link set {port} master br0"));
        self.ns.ip(&format!("link set {port} up"));
        pod.ip(&format!("addr add {ip}/24 dev eth0"));
        pod.ip("link set eth0 up");
        pod
    }
}

/// `curl` inside `pod` (as root: the application's traffic, which the rules redirect):
/// the status and body, or `None` when no HTTP answer came.
fn curl(pod: &Netns, url: &str) -> Option<(u16, String)> {
    let out = pod.exec(
        "curl",
        &["-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}", url],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    let code: u16 = code.trim().parse().ok()?;
    (out.status.success() && code != 0).then(|| (code, body.to_string()))
}

/// Polls `url` from inside `pod` until it answers 200, for at most 10 s.
fn wait_for(pod: &Netns, url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while curl(pod, url).is_none_or(|(code, _)| code != 200) {
        assert!(Instant::now() < deadline, "{what} did not come up ({url})");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pod's sidecar metrics.
fn metrics(pod: &Netns) -> String {
    let (code, body) = curl(pod, "http://127.0.0.1:9901/metrics").expect("metrics answer");
    assert_eq!(code, 200);
    body
}

/// Starts an HTTP application named `name` on `port` in `pod`.
fn app(pod: &Netns, dir: &Path, name: &str, port: u16) -> Sidecar {
    let app = spawn_app(pod, dir, &[name, &port.to_string()]);
    wait_for(pod, &format!("http://127.0.0.1:{port}/"), name);
    app
}

/// Starts a line-protocol application (`mode`: `line` or `banner`) on `port` in `pod`.
fn line_app(pod: &Netns, dir: &Path, name: &str, port: u16, mode: &str) -> Sidecar {
    let app = spawn_app(pod, dir, &[name, &port.to_string(), mode]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
    while !pod.exec("bash", &["-c", &probe]).status.success() {
        assert!(Instant::now() < deadline, "{name} did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    app
}

/// Opens a TCP connection from `pod` (as its application), writes `send` (if any) and
/// returns the first `lines` lines it reads within 3 s.
fn talk(pod: &Netns, address: &str, send: Option<&str>, lines: usize) -> String {
    let (host, port) = address.rsplit_once(':').expect("host:port");
    let send = send.map_or(String::new(), |s| format!("printf '{s}\\n' >&3; "));
    let script = format!("exec 3<>/dev/tcp/{host}/{port} && {send}timeout 3 head -n {lines} <&3");
    String::from_utf8_lossy(&pod.exec("bash", &["-c", &script]).stdout).into_owned()
}

fn spawn_app(pod: &Netns, dir: &Path, args: &[&str]) -> Sidecar {
    let script = dir.join("app.py");
    if !script.exists() {
        std::fs::write(&script, APP).expect("write app");
    }
    let script = script.to_string_lossy().into_owned();
    pod.spawn(
        "python3",
        &[&[script.as_str()], args].concat(),
        Stdio::null(),
    )
}

/// Mints `sa`'s identity under `ca`, readable by the proxy uid.
fn identity(dir: &Path, sa: &str) -> std::path::PathBuf {
    let out_dir = dir.join(sa);
    let out = std::process::Command::new(WEIR)
        .args(["certs", "issue", "--ca"])
        .arg(dir.join("ca"))
        .args(["-n", "shop", "--service-account", sa, "--out"])
        .arg(&out_dir)
        .output()
        .expect("weir certs issue");
    assert!(out.status.success(), "certs issue: {}", stderr(&out));
    for entry in std::fs::read_dir(&out_dir).expect("identity dir") {
        let path = entry.expect("entry").path();
        std::os::unix::fs::chown(&path, Some(PROXY_UID), Some(PROXY_UID)).expect("chown");
    }
    out_dir
}

/// Writes `config` for `pod`, installs the redirect rules from it (as the init container
/// does), starts weir as uid 1337 and waits until it is ready.
fn sidecar(pod: &Netns, dir: &Path, name: &str, config: &str, rule_args: &[&str]) -> Sidecar {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config).expect("write config");
    let path = path.to_string_lossy().into_owned();
    pod.init_iptables(&[&["-c", path.as_str()], rule_args].concat());
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
    let uid = format!("--reuid={PROXY_UID}");
    let gid = format!("--regid={PROXY_UID}");
    let sidecar = pod.spawn(
        "setpriv",
        &[&uid, &gid, "--clear-groups", WEIR, "run", "-c", &path],
        log.into(),
    );
    wait_for(
        pod,
        "http://127.0.0.1:9901/ready",
        &format!("weir in {name}"),
    );
    sidecar
}

fn config(identity: &Path, listeners_extra: &str, services: &str) -> String {
    let id = identity.to_string_lossy();
    format!(
        "version: 1\nadmin: {{ address: 127.0.0.1:9901 }}\nidentity: {{ cert: {id}/tls.crt, key: {id}/tls.key, trust_bundle: {id}/ca.crt }}\nlisteners:\n  - name: outbound\n    address: 127.0.0.1:15001\n    transparent: true\n{listeners_extra}services:\n{services}"
    )
}

#[test]
fn an_application_calls_another_pod_in_plaintext_and_weir_carries_it_over_mtls() {
    let dir = scratch_dir("pods");
    let out = std::process::Command::new(WEIR)
        .args(["certs", "ca", "--out"])
        .arg(dir.join("ca"))
        .output()
        .expect("weir certs ca");
    assert!(out.status.success(), "certs ca: {}", stderr(&out));
    let (a_id, b_id) = (identity(&dir, "a"), identity(&dir, "b"));

    let mut network = Network::new();
    let a = network.pod("198.51.100.10");
    let b1 = network.pod("198.51.100.20");
    let b2 = network.pod("198.51.100.21");

    // B's replicas: the application on 8080 (claimed: served as HTTP, with mTLS from other
    // sidecars), a second port the configuration does not name (relayed to 127.0.0.1), and
    // on b2 a port left out of redirection, standing for a host outside the mesh.
    let b_config = config(
        &b_id,
        &format!(
            "    unknown_destination: refuse\n  - name: inbound\n    address: 0.0.0.0:15006\n    transparent: true\n    direction: inbound\n    tls: {{ mode: permissive, allow: [\"{A_ID}\", \"{B_ID}\"] }}\n"
        ),
        // `b1-self`: a service whose endpoint is replica b1, so b1 calls its own pod.
        &format!(
            "  - {{ name: local-app, addresses: [\"0.0.0.0:8080\"], endpoints: [\"127.0.0.1:8080\"] }}\n  - {{ name: b1-self, addresses: [\"198.51.100.102:8080\"], endpoints: [\"198.51.100.20:8080\"], tls: {{ identity: \"{B_ID}\" }} }}\n"
        ),
    );
    let _b1_apps = [
        app(&b1, &dir, "b1", 8080),
        app(&b1, &dir, "b1-raw", 9000),
        line_app(&b1, &dir, "b1-line", 7000, "line"),
        line_app(&b1, &dir, "b1-banner", 7001, "banner"),
    ];
    let _b2_apps = [app(&b2, &dir, "b2", 8080), app(&b2, &dir, "outside", 9100)];
    let _b1_weir = sidecar(&b1, &dir, "b1", &b_config, &[]);
    let _b2_weir = sidecar(
        &b2,
        &dir,
        "b2",
        &b_config,
        &["--exclude-inbound-ports", "9100"],
    );

    // A: service b lives at 198.51.100.100:8080 (its "cluster IP"), served by both replicas
    // over mTLS; b-raw is port 9000 of replica b1.
    let a_config = config(
        &a_id,
        "  - name: inbound\n    address: 0.0.0.0:15006\n    transparent: true\n    direction: inbound\n",
        &format!(
            "  - name: b\n    addresses: [198.51.100.100:8080]\n    endpoints: [198.51.100.20:8080, 198.51.100.21:8080]\n    load_balancer: round_robin\n    tls: {{ identity: \"{B_ID}\" }}\n  - name: b-raw\n    addresses: [198.51.100.100:9000]\n    endpoints: [198.51.100.20:9000]\n    tls: {{ identity: \"{B_ID}\" }}\n  - name: b-line\n    addresses: [198.51.100.100:7000]\n    endpoints: [198.51.100.20:7000]\n    tls: {{ identity: \"{B_ID}\" }}\n  - name: b-banner\n    addresses: [198.51.100.101:7001]\n    endpoints: [198.51.100.20:7001]\n    tls: {{ identity: \"{B_ID}\" }}\n"
        ),
    );
    let _a_weir = sidecar(&a, &dir, "a", &a_config, &[]);

    // 1. The application calls service b's address in plaintext, ten times: each call is
    //    intercepted, balanced round robin over the replicas and carried over mTLS, and
    //    the replica's application learns the caller's identity.
    let mut replicas = std::collections::BTreeMap::new();
    for _ in 0..10 {
        let (code, body) = curl(&a, "http://198.51.100.100:8080/").expect("an answer");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(&format!("URI={A_ID}")), "{body}");
        *replicas
            .entry(body.split(':').next().unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(
        replicas,
        [("b1".to_string(), 5), ("b2".to_string(), 5)].into(),
        "round robin over both replicas"
    );
    for b in [&b1, &b2] {
        let text = metrics(b);
        let peer = [
            ("listener", "inbound"),
            ("peer_identity", A_ID),
            ("decision", "allow"),
        ];
        assert_eq!(
            metric_sum(&text, "weir_tls_peer_requests_total", &peer),
            5.0,
            "B's sidecar names A's identity"
        );
        let served = [
            ("listener", "inbound"),
            ("route", "local-app"),
            ("code", "200"),
        ];
        assert_eq!(metric_sum(&text, "weir_http_requests_total", &served), 5.0);
    }
    let served = [("listener", "outbound"), ("route", "b"), ("code", "200")];
    assert_eq!(
        metric_sum(&metrics(&a), "weir_http_requests_total", &served),
        10.0
    );

    // 2. A port of b1 that b1's configuration does not claim: past mTLS, b1's sidecar relays
    //    the bytes to that port on 127.0.0.1.
    let (code, body) = curl(&a, "http://198.51.100.100:9000/").expect("an answer");
    assert_eq!((code, body.split(' ').next()), (200, Some("b1-raw:9000")));
    let relayed = [("listener", "inbound"), ("service", "none")];
    assert_eq!(
        metric_sum(&metrics(&b1), "weir_tcp_connections_total", &relayed),
        1.0
    );

    // 3. Calls that are not HTTP through the same outbound listener: a line protocol is
    //    forwarded as bytes to the claiming service over mTLS (and, unclaimed at b1, relayed
    //    to the port on 127.0.0.1); a protocol whose server speaks first is forwarded once
    //    the client has been silent for a second.
    assert_eq!(
        talk(&a, "198.51.100.100:7000", Some("PING"), 1),
        "b1-line PING\n"
    );
    assert_eq!(
        talk(&a, "198.51.100.101:7001", None, 1),
        "220 b1-banner ready\n"
    );
    let opaque = [("listener", "outbound"), ("service", "b-line")];
    let settled = Instant::now() + Duration::from_secs(5);
    while metric_sum(&metrics(&a), "weir_tcp_connections_total", &opaque) != 1.0 {
        assert!(Instant::now() < settled, "{}", metrics(&a));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        metric_sum(&metrics(&b1), "weir_tcp_connections_total", &relayed),
        3.0,
        "b1 relayed ports 9000, 7000 and 7001 to 127.0.0.1"
    );

    // 4. A call to an address no service of A claims passes through A untouched: to b1's own
    //    IP it arrives in plaintext, and b1 (which allows only A's identity) refuses it;
    //    to a port outside the mesh it is answered.
    let (code, _) = curl(&a, "http://198.51.100.20:8080/").expect("an answer");
    assert_eq!(code, 403, "plaintext bypassing the mesh is refused by b1");
    let denied = [
        ("listener", "inbound"),
        ("peer_identity", "none"),
        ("decision", "deny"),
    ];
    assert_eq!(
        metric_sum(&metrics(&b1), "weir_tls_peer_requests_total", &denied),
        1.0
    );
    let (code, body) = curl(&a, "http://198.51.100.21:9100/").expect("an answer");
    assert_eq!((code, body.split(' ').next()), (200, Some("outside:9100")));
    let passed = [("listener", "outbound"), ("service", "none")];
    assert_eq!(
        metric_sum(&metrics(&a), "weir_tcp_connections_total", &passed),
        2.0
    );

    // 5. b1's sidecar calling its own pod over mTLS (its service's endpoint is b1 itself)
    //    leaves through `lo` and is sent to its own inbound listener, not to the
    //    application's plaintext port (the "outbound to self" rule).
    let (code, body) = curl(&b1, "http://198.51.100.102:8080/").expect("an answer");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with("b1:8080 ") && body.contains(&format!("URI={B_ID}")),
        "{body}"
    );

    // 6. A client that dials A's outbound listener itself (not redirected) is closed, not
    //    relayed back into weir.
    assert_eq!(curl(&a, "http://127.0.0.1:15001/"), None);
    let refused = [("listener", "outbound"), ("kind", "unknown_destination")];
    assert_eq!(
        metric_sum(&metrics(&a), "weir_downstream_errors_total", &refused),
        1.0
    );

    // 7. B's outbound listener refuses destinations nothing claims.
    assert_eq!(curl(&b1, "http://198.51.100.10:8080/"), None);
    assert_eq!(
        metric_sum(&metrics(&b1), "weir_downstream_errors_total", &refused),
        1.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
