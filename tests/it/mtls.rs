//! Inbound mutual TLS with independent clients (curl, `openssl s_client`): strict and
//! permissive listeners, the `allow` list, and the certificates a mesh peer must not get in
//! with. Certificates are minted here with rcgen: a mesh CA, a second CA, and workload
//! certificates good and bad.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::support::{free_port, scratch_dir, Upstream, Weir};

const TRUST_DOMAIN: &str = "cluster.local";
const SERVER_ID: &str = "spiffe://cluster.local/ns/shop/sa/reviews";
const FRONTEND: &str = "spiffe://cluster.local/ns/shop/sa/frontend";
const INTRUDER: &str = "spiffe://cluster.local/ns/shop/sa/intruder";

/// A certificate authority that signs workload certificates into a directory.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} mesh CA"));
        let cert = params.self_signed(&key).expect("self-signed");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes `NAME.crt` and `NAME.key` into `dir`, with `uris` as its URI SANs.
    fn issue(&self, dir: &Path, name: &str, uris: &[&str], expired: bool) -> (PathBuf, PathBuf) {
        let until = expired.then_some((2021, 1, 1));
        self.issue_until(dir, name, uris, until)
    }

    /// Like [`Ca::issue`], valid until `until` when given.
    fn issue_until(
        &self,
        dir: &Path,
        name: &str,
        uris: &[&str],
        until: Option<(i32, u8, u8)>,
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().expect("an IA5 string")))
            .collect();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if let Some((year, month, day)) = until {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(year, month, day);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        let (crt, pem_key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&crt, cert.pem()).expect("write cert");
        std::fs::write(&pem_key, key.serialize_pem()).expect("write key");
        (crt, pem_key)
    }
}

/// A mesh: its CA's bundle, the server sidecar's identity and client certificates.
struct Mesh {
    dir: PathBuf,
    bundle: PathBuf,
}

impl Mesh {
    fn new() -> (Mesh, Ca) {
        let dir = scratch_dir("mtls");
        let ca = Ca::new(TRUST_DOMAIN);
        let bundle = dir.join("ca.crt");
        std::fs::write(&bundle, &ca.pem).expect("write bundle");
        ca.issue(&dir, "server", &[SERVER_ID], false);
        (Mesh { dir, bundle }, ca)
    }

    fn identity_yaml(&self) -> String {
        format!(
            "identity: {{ cert: \"{}\", key: \"{}\", trust_bundle: \"{}\" }}\n",
            self.dir.join("server.crt").display(),
            self.dir.join("server.key").display(),
            self.bundle.display()
        )
    }
}

fn config(mesh: &Mesh, port: u16, upstream: &Upstream, tls: &str) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\n{}listeners:\n  - name: inbound\n    address: 127.0.0.1:{port}\n    tls: {tls}\n    routes:\n      - name: app\n        backends: [{{ service: app }}]\nservices:\n  - {{ name: app, endpoints: [\"{}\"] }}\n",
        mesh.identity_yaml(),
        upstream.addr
    )
}

/// curl to the listener, presenting `cert` (a name in the mesh directory) when given.
/// Returns curl's exit code and what it printed (status, `weir-error`, body).
fn curl(mesh: &Mesh, port: u16, cert: Option<&str>) -> (i32, String) {
    let mut command = Command::new("curl");
    command.args(["-sS", "-m", "10", "-o", "-", "-w", "\nstatus=%{http_code}"]);
    command.args(["-D", "-"]);
    let url = match cert {
        None => format!("http://127.0.0.1:{port}/hello"),
        Some(name) => {
            // The server's certificate names a SPIFFE ID, not a host: curl checks the
            // chain's trust is not what these tests are about (-k); weir checks the client.
            command.arg("-k");
            command
                .arg("--cert")
                .arg(mesh.dir.join(format!("{name}.crt")));
            command
                .arg("--key")
                .arg(mesh.dir.join(format!("{name}.key")));
            format!("https://127.0.0.1:{port}/hello")
        }
    };
    let out = command.arg(url).output().expect("curl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// What `openssl s_client` presenting `name`'s certificate hears from the listener. It
/// sends nothing and keeps reading (in TLS 1.3 a client hears of its refusal only after its
/// own Finished; a request written into a connection the server has closed would draw a
/// reset that can swallow the alert).
fn openssl_hears(mesh: &Mesh, port: u16, name: &str) -> String {
    let out = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-ign_eof", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(mesh.dir.join(format!("{name}.crt")))
        .arg("-key")
        .arg(mesh.dir.join(format!("{name}.key")))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn served(result: &(i32, String)) -> bool {
    result.0 == 0 && result.1.contains("status=200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_listener_serves_only_allowed_mesh_peers() {
    let (mesh, ca) = Mesh::new();
    ca.issue(&mesh.dir, "frontend", &[FRONTEND], false);
    ca.issue(&mesh.dir, "intruder", &[INTRUDER], false);
    ca.issue(&mesh.dir, "two-ids", &[FRONTEND, INTRUDER], false);
    ca.issue(&mesh.dir, "no-id", &[], false);
    ca.issue(&mesh.dir, "expired", &[FRONTEND], true);
    Ca::new("elsewhere").issue(&mesh.dir, "foreign", &[FRONTEND], false);
    let up = Upstream::start("app").await;
    let port = free_port();
    let tls = format!("{{ mode: strict, allow: [\"{FRONTEND}\"] }}");
    let weir = Weir::start(&config(&mesh, port, &up, &tls)).await;

    // The allowed identity is served, and named in the metrics.
    let allowed = curl(&mesh, port, Some("frontend"));
    assert!(served(&allowed), "{allowed:?}\n{}", weir.logs());
    assert_eq!(up.hits(), 1);

    // A mesh peer the list does not name: 403 with the reason.
    let (code, text) = curl(&mesh, port, Some("intruder"));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("status=403"), "{text}");
    assert!(text.contains("weir-error: identity_denied"), "{text}");
    assert!(
        text.contains(&format!(
            "peer identity {INTRUDER} is not allowed by listener inbound"
        )),
        "{text}"
    );

    // Refused before any HTTP: plaintext, two SPIFFE IDs, none, expired, another CA.
    let plaintext = curl(&mesh, port, None);
    assert_ne!(plaintext.0, 0, "plaintext is refused: {plaintext:?}");
    for name in ["two-ids", "no-id", "expired", "foreign"] {
        let refused = curl(&mesh, port, Some(name));
        assert_ne!(refused.0, 0, "{name} is refused: {refused:?}");
    }
    // openssl, an independent TLS stack, hears why each was refused.
    for (name, alert) in [
        ("foreign", "alert unknown ca"),
        ("expired", "alert certificate expired"),
        ("two-ids", "alert certificate unknown"),
        ("no-id", "alert certificate unknown"),
    ] {
        let said = openssl_hears(&mesh, port, name);
        assert!(
            said.contains(alert),
            "openssl with {name}: wanted {alert:?}: {said}"
        );
    }
    assert_eq!(up.hits(), 1, "nothing refused reached the application");

    // A well-behaved peer is still served after all that.
    assert!(served(&curl(&mesh, port, Some("frontend"))));
    let metrics = weir.metrics().await;
    for line in [
        format!("weir_tls_peer_requests_total{{listener=\"inbound\",peer_identity=\"{FRONTEND}\",decision=\"allow\"}} 2"),
        "weir_tls_peer_requests_total{listener=\"inbound\",peer_identity=\"other\",decision=\"deny\"} 1".to_string(),
        "weir_tls_handshakes_total{listener=\"inbound\",side=\"server\",result=\"success\"} 3".to_string(),
    ] {
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
    let failures = weir::telemetry::prometheus_text::metric_sum(
        &metrics,
        "weir_tls_handshakes_total",
        &[("result", "failure")],
    );
    assert!(
        failures >= 6.0,
        "failed handshakes counted: {failures}\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permissive_listener_serves_plaintext_and_mtls_on_one_port() {
    let (mesh, ca) = Mesh::new();
    ca.issue(&mesh.dir, "frontend", &[FRONTEND], false);
    let up = Upstream::start("app").await;
    let port = free_port();
    let weir = Weir::start(&config(&mesh, port, &up, "{ mode: permissive }")).await;
    let plain = curl(&mesh, port, None);
    assert!(served(&plain), "{plain:?}\n{}", weir.logs());
    let mutual = curl(&mesh, port, Some("frontend"));
    assert!(served(&mutual), "{mutual:?}");
    assert_eq!(up.hits(), 2);
    drop(weir);

    // With an allow list, a plaintext client has no identity to allow.
    let port = free_port();
    let tls = "{ mode: permissive, allow: [\"spiffe://cluster.local/ns/shop/*\"] }";
    let weir = Weir::start(&config(&mesh, port, &up, tls)).await;
    let (code, text) = curl(&mesh, port, None);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("status=403"), "{text}");
    assert!(text.contains("weir-error: identity_denied"), "{text}");
    assert!(
        text.contains("a plaintext client has no peer identity"),
        "{text}"
    );
    let mutual = curl(&mesh, port, Some("frontend"));
    assert!(served(&mutual), "{mutual:?}\n{}", weir.logs());
    assert_eq!(
        up.hits(),
        3,
        "only the mTLS request reached the application"
    );
    let metrics = weir.metrics().await;
    for line in [
        "weir_tls_peer_requests_total{listener=\"inbound\",peer_identity=\"spiffe://cluster.local/ns/shop/*\",decision=\"allow\"} 1",
        "weir_tls_peer_requests_total{listener=\"inbound\",peer_identity=\"none\",decision=\"deny\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
}

#[test]
fn a_tls_listener_without_an_identity_is_refused_by_check() {
    let dir = scratch_dir("mtls-check");
    let file = dir.join("weir.yaml");
    std::fs::write(
        &file,
        "version: 1\nlisteners:\n  - name: inbound\n    address: 127.0.0.1:15006\n    tls: { mode: strict }\n    routes:\n      - name: app\n        backends: [{ service: app }]\nservices:\n  - { name: app, endpoints: [\"127.0.0.1:8080\"] }\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("check")
        .arg(&file)
        .output()
        .expect("weir runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "weir.yaml:5:5: listeners[0].tls: mode `strict` needs this workload's identity"
        ),
        "{stderr}"
    );
}

/// The client side of a mesh: `frontend`'s sidecar, sending plaintext from its application
/// over mTLS to the `reviews` sidecar at `server_port`; `/ratings` goes to the same sidecar
/// expecting another identity.
fn client_sidecar(mesh: &Mesh, port: u16, server_port: u16, grpc_port: u16) -> String {
    format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nidentity: {{ cert: \"{}\", key: \"{}\", trust_bundle: \"{}\" }}\nlisteners:\n  - name: outbound\n    address: 127.0.0.1:{port}\n    routes:\n      - name: ratings\n        match: {{ path: {{ prefix: /ratings }} }}\n        backends: [{{ service: ratings }}]\n      - name: grpc\n        match: {{ path: {{ prefix: /demo. }} }}\n        backends: [{{ service: grpc }}]\n      - name: reviews\n        backends: [{{ service: reviews }}]\nservices:\n  - {{ name: reviews, endpoints: [\"127.0.0.1:{server_port}\"], tls: {{ identity: \"{SERVER_ID}\" }} }}\n  - {{ name: ratings, endpoints: [\"127.0.0.1:{server_port}\"], tls: {{ identity: \"spiffe://cluster.local/ns/shop/sa/ratings\" }} }}\n  - {{ name: grpc, protocol: http2, endpoints: [\"127.0.0.1:{grpc_port}\"], tls: {{ identity: \"spiffe://cluster.local/ns/shop/*\" }} }}\n",
        mesh.dir.join("frontend.crt").display(),
        mesh.dir.join("frontend.key").display(),
        mesh.bundle.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_carry_http1_and_grpc_over_mtls() {
    crate::grpc::require_grpcio();
    let (mesh, ca) = Mesh::new();
    ca.issue(&mesh.dir, "frontend", &[FRONTEND], false);
    let app = Upstream::start("app").await;
    let grpc_app = crate::grpc::GrpcServer::start().await;
    // The server side: one strict sidecar in front of the HTTP app, one in front of gRPC.
    let server_port = free_port();
    let tls = format!("{{ mode: strict, allow: [\"{FRONTEND}\"] }}");
    let server = Weir::start(&config(&mesh, server_port, &app, &tls)).await;
    let grpc_port = free_port();
    let grpc_yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\n{}listeners:\n  - name: inbound\n    address: 127.0.0.1:{grpc_port}\n    tls: {tls}\n    routes:\n      - name: app\n        backends: [{{ service: app }}]\nservices:\n  - {{ name: app, protocol: http2, endpoints: [\"127.0.0.1:{}\"] }}\n",
        mesh.identity_yaml(),
        grpc_app.port
    );
    let grpc_server = Weir::start(&grpc_yaml).await;
    let port = free_port();
    let client = Weir::start(&client_sidecar(&mesh, port, server_port, grpc_port)).await;

    // HTTP/1.1: plaintext in, mTLS between the sidecars, plaintext to the app; ten requests
    // on one TLS connection.
    for _ in 0..10 {
        let (ok, text) = crate::support::curl(&["-f", &format!("http://127.0.0.1:{port}/hello")]);
        assert!(
            ok,
            "{text}\nclient sidecar:\n{}\nserver sidecar:\n{}",
            client.logs(),
            server.logs()
        );
    }
    assert_eq!(app.hits(), 10);
    // The application learns who called, from the server sidecar, and that it came over TLS.
    let seen = app.last_headers();
    assert_eq!(
        seen["x-forwarded-client-cert"],
        format!("URI={FRONTEND}").as_str()
    );
    assert_eq!(seen["x-forwarded-proto"], "https");
    let client_metrics = client.metrics().await;
    let handshakes =
        "weir_tls_handshakes_total{listener=\"reviews\",side=\"client\",result=\"success\"} 1";
    assert!(
        client_metrics.contains(handshakes),
        "{handshakes}\n{client_metrics}"
    );
    let server_metrics = server.metrics().await;
    let named = format!("weir_tls_peer_requests_total{{listener=\"inbound\",peer_identity=\"{FRONTEND}\",decision=\"allow\"}} 10");
    assert!(server_metrics.contains(&named), "{named}\n{server_metrics}");

    // Two requests at once need a second connection: its handshake resumes the first's
    // session (on both sides).
    app.state
        .delay_ms
        .store(300, std::sync::atomic::Ordering::SeqCst);
    let url = format!("http://127.0.0.1:{port}/hello");
    let both = [url.clone(), url]
        .map(|url| std::thread::spawn(move || crate::support::curl(&["-f", &url])));
    for request in both {
        let (ok, text) = request.join().expect("curl thread");
        assert!(ok, "{text}");
    }
    app.state
        .delay_ms
        .store(0, std::sync::atomic::Ordering::SeqCst);
    let resumed =
        "weir_tls_handshakes_total{listener=\"reviews\",side=\"client\",result=\"resumed\"} 1";
    let client_metrics = client.metrics().await;
    assert!(
        client_metrics.contains(resumed),
        "{resumed}\n{client_metrics}"
    );
    let server_resumed =
        "weir_tls_handshakes_total{listener=\"inbound\",side=\"server\",result=\"resumed\"} 1";
    let server_metrics = server.metrics().await;
    assert!(
        server_metrics.contains(server_resumed),
        "{server_resumed}\n{server_metrics}"
    );

    // The same sidecar, expected to be someone else: refused before any request is sent.
    let out = Command::new("curl")
        .args(["-sS", "-m", "10", "-D", "-"])
        .arg(format!("http://127.0.0.1:{port}/ratings"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    assert!(text.contains("weir-error: connect_failed"), "{text}");
    assert!(
        text.contains(&format!(
            "identity mismatch: expected spiffe://cluster.local/ns/shop/sa/ratings, got {SERVER_ID}"
        )),
        "{text}"
    );
    assert_eq!(app.hits(), 12, "nothing reached the application");

    // gRPC: h2 negotiated by ALPN between the sidecars, h2c to the app.
    let via = crate::grpc::run_client(format!("127.0.0.1:{port}")).await;
    let via = via.unwrap_or_else(|e| {
        panic!(
            "gRPC through two sidecars: {e}\nclient sidecar:\n{}\ngRPC sidecar:\n{}",
            client.logs(),
            grpc_server.logs()
        )
    });
    crate::grpc::assert_results(&via, "through two sidecars over mTLS");
    let grpc_metrics = grpc_server.metrics().await;
    assert!(
        grpc_metrics.contains(&format!("peer_identity=\"{FRONTEND}\",decision=\"allow\"")),
        "{grpc_metrics}"
    );
}

/// The `notAfter` of the certificate the listener at `port` presents, as openssl prints it.
fn presented_until(mesh: &Mesh, port: u16) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -cert {} -key {} </dev/null 2>/dev/null | openssl x509 -noout -enddate",
        mesh.dir.join("frontend.crt").display(),
        mesh.dir.join("frontend.key").display()
    );
    let out = Command::new("timeout")
        .args(["10", "sh", "-c", &script])
        .output()
        .expect("openssl runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_identity_is_picked_up_under_load_and_a_corrupt_one_refused() {
    let (mesh, ca) = Mesh::new();
    ca.issue(&mesh.dir, "frontend", &[FRONTEND], false);
    let up = Upstream::start("app").await;
    let port = free_port();
    let weir = Weir::start(&config(&mesh, port, &up, "{ mode: strict }")).await;
    let before = presented_until(&mesh, port);
    assert!(
        before.contains("4096"),
        "rcgen's default notAfter: {before}"
    );

    // A bounded load loop of new mTLS connections (each a handshake) runs while the
    // identity is rotated, then replaced by a corrupt file.
    // It runs until both phases are done (at most 2,000 requests or 60 s).
    let (mesh_dir, bundle) = (mesh.dir.clone(), mesh.bundle.clone());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::task::spawn_blocking({
        let stop = stop.clone();
        move || {
            let mesh = Mesh {
                dir: mesh_dir,
                bundle,
            };
            let started = std::time::Instant::now();
            let (mut sent, mut failed) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::SeqCst)
                && sent < 2000
                && started.elapsed() < std::time::Duration::from_secs(60)
            {
                let result = curl(&mesh, port, Some("frontend"));
                if !served(&result) {
                    failed.push((sent, result));
                }
                sent += 1;
            }
            (sent, failed)
        }
    });
    // Rotate: the new files are written beside and renamed over the old ones.
    let staging = scratch_dir("mtls-rotation");
    ca.issue_until(&staging, "server", &[SERVER_ID], Some((2040, 1, 1)));
    std::fs::rename(staging.join("server.key"), mesh.dir.join("server.key")).expect("key");
    std::fs::rename(staging.join("server.crt"), mesh.dir.join("server.crt")).expect("cert");
    let rotated = crate::support::eventually(std::time::Duration::from_secs(10), || {
        presented_until(&mesh, port).contains("2040")
    })
    .await;
    assert!(
        rotated,
        "the new certificate is presented:\n{}",
        weir.logs()
    );
    let expiry = weir::telemetry::prometheus_text::metric_sum(
        &weir.metrics().await,
        "weir_tls_certificate_expiry_timestamp_seconds",
        &[("identity", SERVER_ID)],
    );
    assert_eq!(expiry, 2_208_988_800.0, "2040-01-01 in Unix time");

    // A corrupt certificate is refused; the rotated identity keeps serving.
    std::fs::write(
        mesh.dir.join("server.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    )
    .expect("corrupt");
    let refused = crate::support::metric_settles(
        &weir,
        "weir_tls_identity_reloads_total",
        &[("result", "failure")],
        1.0,
    )
    .await;
    assert_eq!(
        refused,
        1.0,
        "the corrupt file is counted once:\n{}",
        weir.metrics().await
    );
    assert!(
        weir.logs()
            .contains("identity files changed but were refused"),
        "{}",
        weir.logs()
    );
    assert!(presented_until(&mesh, port).contains("2040"));

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sent, failed) = load.await.expect("the load loop ends");
    assert!(
        failed.is_empty(),
        "failed requests during rotation: {failed:?}"
    );
    assert!(
        sent > 0 && sent < 2000,
        "the loop ran through both phases: {sent}"
    );
    assert_eq!(up.hits(), sent);
    // Reading the files (openssl above read the client's, in the same directory) is no
    // change: nothing was reloaded since.
    let metrics = weir.metrics().await;
    for (result, count) in [("failure", 1.0), ("success", 1.0)] {
        let seen = weir::telemetry::prometheus_text::metric_sum(
            &metrics,
            "weir_tls_identity_reloads_total",
            &[("result", result)],
        );
        assert_eq!(seen, count, "{result}\n{metrics}");
    }
    let (ready, _, _) = crate::support::get(weir.admin, "/ready", &[])
        .await
        .expect("ready answers");
    assert_eq!(ready, 200);
}

/// A mesh for other test modules: the `reviews` server identity and the `frontend` client
/// identity, signed by one CA.
pub(crate) struct TestMesh {
    mesh: Mesh,
}

impl TestMesh {
    pub(crate) fn new() -> TestMesh {
        let (mesh, ca) = Mesh::new();
        ca.issue(&mesh.dir, "frontend", &[FRONTEND], false);
        TestMesh { mesh }
    }

    /// The `identity:` section of the server side (`reviews`).
    pub(crate) fn server_identity(&self) -> String {
        self.mesh.identity_yaml()
    }

    /// The `identity:` section of the client side (`frontend`).
    pub(crate) fn client_identity(&self) -> String {
        format!(
            "identity: {{ cert: \"{}\", key: \"{}\", trust_bundle: \"{}\" }}\n",
            self.mesh.dir.join("frontend.crt").display(),
            self.mesh.dir.join("frontend.key").display(),
            self.mesh.bundle.display()
        )
    }

    pub(crate) fn server_id(&self) -> &'static str {
        SERVER_ID
    }

    pub(crate) fn client_id(&self) -> &'static str {
        FRONTEND
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_can_match_the_peer_identity() {
    let (mesh, ca) = Mesh::new();
    ca.issue(&mesh.dir, "frontend", &[FRONTEND], false);
    ca.issue(&mesh.dir, "intruder", &[INTRUDER], false);
    let up = Upstream::start("app").await;
    let port = free_port();
    let yaml = format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\nlogging: {{ format: json, access_log: true }}\n{}listeners:\n  - name: inbound\n    address: 127.0.0.1:{port}\n    tls: {{ mode: permissive }}\n    routes:\n      - name: frontend-only\n        match: {{ peer: \"{FRONTEND}\" }}\n        backends: [{{ service: app }}]\nservices:\n  - {{ name: app, endpoints: [\"{}\"] }}\n",
        mesh.identity_yaml(),
        up.addr
    );
    let weir = Weir::start(&yaml).await;
    let frontend = curl(&mesh, port, Some("frontend"));
    assert!(served(&frontend), "{frontend:?}\n{}", weir.logs());
    for (who, cert) in [
        ("another peer", Some("intruder")),
        ("a plaintext client", None),
    ] {
        let (code, text) = curl(&mesh, port, cert);
        assert_eq!(code, 0, "{who}: {text}");
        assert!(
            text.contains("status=404") && text.contains("weir-error: no_route"),
            "{who}: {text}"
        );
    }
    assert_eq!(up.hits(), 1);
    // The access log names the peer of the mTLS requests.
    let logged = crate::support::eventually(std::time::Duration::from_secs(5), || {
        weir.logs().lines().any(|l| {
            l.contains("\"target\":\"weir::access\"")
                && l.contains(&format!("\"peer\":\"{FRONTEND}\""))
                && l.contains("\"status\":200")
        })
    })
    .await;
    assert!(logged, "{}", weir.logs());
}

/// The fenced blocks of `lang` in the README's "Mutual TLS" section, in order.
fn readme_mtls_blocks(lang: &str) -> Vec<String> {
    crate::support::readme_blocks("Mutual TLS", lang)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_mutual_tls_walkthrough_works_as_written() {
    let commands = readme_mtls_blocks("sh");
    let configs = readme_mtls_blocks("yaml");
    assert_eq!(
        (commands.len(), configs.len()),
        (2, 2),
        "{commands:?} {configs:?}"
    );
    let dir = scratch_dir("readme-mtls");
    // Mint as the README says, with this build's weir.
    for line in commands[0].lines().filter(|l| l.starts_with("weir ")) {
        let out = Command::new("sh")
            .arg("-c")
            .arg(line.replacen("weir", env!("CARGO_BIN_EXE_weir"), 1))
            .current_dir(&dir)
            .output()
            .expect("sh runs");
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The two sidecars as written, on ports of their own, in front of a real application.
    let app = Upstream::start("reviews-app").await;
    let (inbound, outbound) = (free_port(), free_port());
    let certs = dir.join("certs");
    let localize = |yaml: &str| {
        yaml.replace("127.0.0.1:9902", "\"{admin}\"")
            .replace("127.0.0.1:9901", "\"{admin}\"")
            .replace("127.0.0.1:15006", &format!("127.0.0.1:{inbound}"))
            .replace("127.0.0.1:15001", &format!("127.0.0.1:{outbound}"))
            .replace("127.0.0.1:8080", &app.addr.to_string())
            .replace("certs/", &format!("{}/", certs.display()))
    };
    let reviews = Weir::start(&localize(&configs[0])).await;
    let frontend = Weir::start(&localize(&configs[1])).await;
    assert!(
        commands[1].contains("curl http://127.0.0.1:15001/"),
        "{}",
        commands[1]
    );
    let (ok, body) = crate::support::curl(&["-f", &format!("http://127.0.0.1:{outbound}/")]);
    assert!(
        ok,
        "{body}\nfrontend:\n{}\nreviews:\n{}",
        frontend.logs(),
        reviews.logs()
    );
    assert_eq!(app.hits(), 1);
    let metrics = reviews.metrics().await;
    assert!(
        metrics.contains(
            "peer_identity=\"spiffe://cluster.local/ns/shop/sa/frontend\",decision=\"allow\"} 1"
        ),
        "{metrics}"
    );
}

/// An HTTP/1.1 upstream that reads request bodies slowly (64 KiB, then a millisecond's
/// pause: backpressure through every hop) and answers whether every byte was
/// `pattern(i)`.
async fn slow_checking_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    // The head.
                    let end = loop {
                        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end + 4;
                        }
                        match socket.read(&mut buf).await {
                            Ok(n @ 1..) => pending.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    };
                    let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    pending.drain(..end);
                    // The body, slowly.
                    let (mut seen, mut bad) = (0usize, None);
                    while seen < length {
                        if pending.is_empty() {
                            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                            match socket.read(&mut buf).await {
                                Ok(n @ 1..) => pending.extend_from_slice(&buf[..n]),
                                _ => return,
                            }
                        }
                        let take = pending.len().min(length - seen);
                        for (j, b) in pending[..take].iter().enumerate() {
                            if bad.is_none() && *b != ((seen + j) % 251) as u8 {
                                bad = Some(seen + j);
                            }
                        }
                        seen += take;
                        pending.drain(..take);
                    }
                    let answer = match bad {
                        None => format!("intact {seen}"),
                        Some(at) => format!("corrupt at byte {at}"),
                    };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_cross_two_sidecars_over_mtls_intact_under_backpressure() {
    let (mesh, ca) = Mesh::new();
    ca.issue(&mesh.dir, "frontend", &[FRONTEND], false);
    let upstream = slow_checking_upstream().await;
    let server_port = free_port();
    let server = Weir::start(&format!(
        "version: 1\nadmin: {{ address: \"{{admin}}\" }}\n{}listeners:\n  - name: inbound\n    address: 127.0.0.1:{server_port}\n    tls: {{ mode: strict }}\n    routes:\n      - name: app\n        backends: [{{ service: app }}]\nservices:\n  - {{ name: app, endpoints: [\"{upstream}\"] }}\n",
        mesh.identity_yaml()
    ))
    .await;
    let port = free_port();
    let client = Weir::start(&client_sidecar(&mesh, port, server_port, 1)).await;
    let body: Vec<u8> = (0..8_000_000usize).map(|i| (i % 251) as u8).collect();
    let file = scratch_dir("mtls-body").join("body");
    std::fs::write(&file, &body).expect("write body");
    for round in 0..3 {
        let (ok, text) = crate::support::curl(&[
            "-f",
            "--data-binary",
            &format!("@{}", file.display()),
            &format!("http://127.0.0.1:{port}/upload"),
        ]);
        assert!(
            ok && text == "intact 8000000",
            "round {round}: {text}\nclient:\n{}\nserver:\n{}",
            client.logs(),
            server.logs()
        );
    }
    // Nothing but the three requests reached the server sidecar.
    let served = weir::telemetry::prometheus_text::metric_sum(
        &server.metrics().await,
        "weir_http_requests_total",
        &[("listener", "inbound")],
    );
    assert_eq!(served, 3.0, "{}", server.metrics().await);
}
