//! `weir import`: realistic Istio, Gateway API, Linkerd, SMI and Hystrix inputs (written for
//! these tests, in the shapes of the projects' own examples) are translated, checked by
//! `weir check`, run against real upstreams, and the traffic weir then carries is held
//! against what the source resources mean.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::support::{free_port, until, weir_bounded, Upstream, Weir};

const FIXTURES: &str = "tests/fixtures/import";

/// `weir import ARGS`: (exit code, stdout, stderr).
fn import(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    let out = weir_bounded(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Imports `files` for trying outside a pod (routing by Host on 127.0.0.1:`port`, the
/// given static endpoints); fails the test unless weir import and weir check accept it.
fn import_to_run(files: &[&str], port: u16, endpoints: &[(&str, Vec<SocketAddr>)]) -> String {
    let outbound = format!("127.0.0.1:{port}");
    let paths: Vec<String> = files.iter().map(|f| format!("{FIXTURES}/{f}")).collect();
    let mut args: Vec<String> = vec!["-n".into(), "shop".into(), "--no-transparent".into()];
    args.push("--outbound".into());
    args.push(outbound);
    for (name, addrs) in endpoints {
        let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        args.push("--endpoint".into());
        args.push(format!("{name}={}", list.join(",")));
    }
    for p in &paths {
        args.push("-f".into());
        args.push(p.clone());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, config, stderr) = import(&refs);
    assert_eq!(code, 0, "weir import failed:\n{stderr}");
    let dir = crate::support::scratch_dir("import");
    let path = dir.join("weir.yaml");
    std::fs::write(&path, &config).expect("write");
    let check = weir_bounded(&["check", path.to_str().expect("utf-8 path")]);
    assert!(
        check.status.success(),
        "weir check refused the imported configuration:\n{}\n{config}",
        String::from_utf8_lossy(&check.stderr)
    );
    config
}

/// Runs an imported configuration (with a test admin address and quiet logs).
async fn run(config: &str) -> Weir {
    let config = config.replacen(
        "version: 1\n",
        "version: 1\nadmin: { address: \"{admin}\" }\nlogging: { level: warn }\n",
        1,
    );
    Weir::start(&config).await
}

/// One request with a chosen `Host` on a fresh connection: (status, body).
async fn call(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, body, _) = call_full(addr, host, path, headers).await;
    (status, body)
}

/// Like [`call`], with the `weir-error` header (empty when absent).
async fn call_full(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::new())).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let error = resp
        .headers()
        .get("weir-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned(), error)
}

/// Sends `n` requests and counts the answers by body (the upstream's name) or status.
async fn tally(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let (status, body) = call(addr, host, path, headers).await;
        let key = if status == 200 {
            body
        } else {
            status.to_string()
        };
        *seen.entry(key).or_insert(0) += 1;
    }
    seen
}

fn count(seen: &BTreeMap<String, usize>, key: &str) -> usize {
    seen.get(key).copied().unwrap_or(0)
}

#[tokio::test]
async fn istio_bookinfo_routes_split_faults_and_hashes_as_istio_would() {
    let v1 = Upstream::start("reviews-v1").await;
    let v2a = Upstream::start("reviews-v2a").await;
    let v2b = Upstream::start("reviews-v2b").await;
    let v3 = Upstream::start("reviews-v3").await;
    let ratings = Upstream::start("ratings-v1").await;
    let shadow = Upstream::start("ratings-shadow").await;
    let details = Upstream::start("details").await;
    let port = free_port();
    let config = import_to_run(
        &["bookinfo.yaml"],
        port,
        &[
            ("reviews-v1", vec![v1.addr]),
            ("reviews-v2", vec![v2a.addr, v2b.addr]),
            ("reviews-v3", vec![v3.addr]),
            ("ratings-v1", vec![ratings.addr]),
            ("ratings-shadow", vec![shadow.addr]),
            ("details", vec![details.addr]),
        ],
    );
    assert!(
        config.contains("# from VirtualService shop/reviews, http[0].match[1]"),
        "{config}"
    );
    let weir = run(&config).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");

    // Match blocks are ORed: a header or a path prefix each send to v2.
    let by_header = tally(addr, "reviews:9080", "/", &[("end-user", "jason")], 20).await;
    let by_path = tally(addr, "reviews.shop.svc.cluster.local", "/beta/x", &[], 20).await;
    for seen in [&by_header, &by_path] {
        assert_eq!(
            count(seen, "reviews-v2a") + count(seen, "reviews-v2b"),
            20,
            "{seen:?}"
        );
    }
    // The v2 subset hashes on x-user: one user always lands on one endpoint.
    for user in ["alice", "bob", "carol"] {
        let seen = tally(
            addr,
            "reviews",
            "/",
            &[("end-user", "jason"), ("x-user", user)],
            10,
        )
        .await;
        assert_eq!(seen.len(), 1, "user {user} was spread: {seen:?}");
    }
    // Everyone else: 75/25 between v1 and v3.
    let split = tally(addr, "reviews", "/", &[], 400).await;
    let v3_share = count(&split, "reviews-v3") as f64 / 400.0;
    assert_eq!(
        count(&split, "reviews-v1") + count(&split, "reviews-v3"),
        400,
        "{split:?}"
    );
    assert!((0.17..=0.33).contains(&v3_share), "{split:?}");

    // The split rule retries 5xx three times: a v1 that fails every other request is
    // hidden from clients.
    v1.fail(50, 500);
    let v1_before = v1.traffic_hits();
    let retried = tally(addr, "reviews", "/", &[], 60).await;
    assert_eq!(count(&retried, "500"), 0, "{retried:?}");
    assert!(
        v1.traffic_hits() - v1_before > count(&retried, "reviews-v1") as u64,
        "no retry reached v1: {retried:?}"
    );
    v1.fail(0, 500);

    // `percentage: { value: 50 }` aborts half of /ratings/0 with 503; other paths are
    // mirrored in full (no mirrorPercentage is 100%).
    let aborted = tally(addr, "ratings", "/ratings/0", &[], 200).await;
    let share = count(&aborted, "503") as f64 / 200.0;
    assert!((0.35..=0.65).contains(&share), "{aborted:?}");
    assert_eq!(count(&aborted, "503") + count(&aborted, "ratings-v1"), 200);
    let mirrored = tally(addr, "ratings", "/ratings/7", &[], 10).await;
    assert_eq!(count(&mirrored, "ratings-v1"), 10, "{mirrored:?}");
    let copies = until(Duration::from_secs(5), || async {
        (shadow.traffic_hits() >= 10).then_some(())
    })
    .await;
    assert!(copies.is_some(), "shadow got {}", shadow.traffic_hits());

    // A VirtualService whose rules do not match answers 404 itself, as Envoy does (in a
    // pod the Service's own route would otherwise take the request); a host no
    // VirtualService names is not routed at all.
    assert_eq!(
        call(addr, "details", "/details/1", &[]).await,
        (200, "details".into())
    );
    let (status, _, error) = call_full(addr, "details", "/other", &[]).await;
    assert_eq!((status, error.as_str()), (404, "fault_abort"));
    let (status, _, error) = call_full(addr, "unknown", "/", &[]).await;
    assert_eq!((status, error.as_str()), (404, "no_route"));
    assert_eq!(details.traffic_hits(), 1);
    drop(weir);
}

#[tokio::test]
async fn unsupported_fields_are_reported_at_their_line_and_strict_refuses_them() {
    let file = format!("{FIXTURES}/bookinfo.yaml");
    let (code, config, stderr) = import(&["-f", &file, "-n", "shop"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        config.starts_with("# Generated by `weir import`"),
        "{config}"
    );
    let rewrite = format!(
        "{file}:43:7: VirtualService(shop/reviews).spec.http[1].rewrite: not supported by weir: requests are forwarded with their path and authority unchanged"
    );
    assert!(stderr.contains(&rewrite), "{stderr}");
    let query = format!("{file}:58:11: VirtualService(shop/ratings).spec.http[0].match[0].queryParams: not supported by weir:");
    assert!(stderr.contains(&query), "{stderr}");
    assert!(
        stderr.contains(": not supported by weir: weir cannot retry on unavailable"),
        "{stderr}"
    );
    // Notes are not failures.
    assert!(
        stderr.contains(": note: weir finds a subset's endpoints through a Kubernetes Service"),
        "{stderr}"
    );

    let (code, config, stderr) = import(&["--strict", "-f", &file, "-n", "shop"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(config.is_empty(), "--strict wrote {config}");
    assert!(
        stderr.contains("--strict is set; nothing written"),
        "{stderr}"
    );
}

#[tokio::test]
async fn istio_mtls_and_authorization_become_the_inbound_listener() {
    let file = format!("{FIXTURES}/istio-security.yaml");
    let (code, config, stderr) = import(&["-f", &file, "-n", "shop"]);
    assert_eq!(code, 0, "{stderr}");
    // The namespace's STRICT beats the mesh-wide PERMISSIVE; the ALLOW principal becomes a
    // SPIFFE ID; the DENY policy is reported, not enforced; ISTIO_MUTUAL expects the
    // service account of the workload the Service selects.
    for want in [
        "      mode: strict\n",
        "        - spiffe://cluster.local/ns/shop/sa/productpage\n",
        "    tls: { identity: spiffe://cluster.local/ns/shop/sa/bookinfo-reviews }\n",
    ] {
        assert!(config.contains(want), "{want:?} missing:\n{config}");
    }
    assert!(
        stderr.contains("AuthorizationPolicy(shop/deny-debug).spec.action: not supported by weir: weir enforces ALLOW lists only"),
        "{stderr}"
    );
    let dir = crate::support::scratch_dir("import-sec");
    let path = dir.join("weir.yaml");
    std::fs::write(&path, &config).expect("write");
    let check = weir_bounded(&["check", path.to_str().expect("utf-8")]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[tokio::test]
async fn hystrix_properties_open_the_breaker_with_hystrix_defaults_for_the_rest() {
    let flaky = Upstream::start("reviews").await;
    let port = free_port();
    let config = import_to_run(
        &["hystrix.properties"],
        port,
        &[("reviews", vec![flaky.addr])],
    );
    // errorThresholdPercentage is unset: Hystrix's 50; the window is 5 s in 5 buckets.
    for want in [
        "      window: 5s\n",
        "      buckets: 5\n",
        "      request_volume_threshold: 4\n",
        "      error_threshold_percent: 50\n",
        "      sleep_window: 1m\n",
    ] {
        assert!(config.contains(want), "{want:?} missing:\n{config}");
    }
    let weir = run(&config).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    assert_eq!(
        call(addr, "reviews", "/", &[]).await,
        (200, "reviews".into())
    );
    flaky.fail(100, 500);
    let mut opened = false;
    for _ in 0..20 {
        let (status, _) = call(addr, "reviews", "/", &[]).await;
        if status == 503 {
            opened = true;
            break;
        }
        assert_eq!(status, 500);
    }
    assert!(opened, "the breaker never opened");
    let hits = flaky.traffic_hits();
    let (status, _) = call(addr, "reviews", "/", &[]).await;
    assert_eq!(status, 503);
    assert_eq!(
        flaky.traffic_hits(),
        hits,
        "an open breaker still sent traffic"
    );
    drop(weir);

    // A window that does not divide into its buckets is refused, as Hystrix refuses it.
    let bad = crate::support::scratch_dir("hystrix").join("bad.properties");
    std::fs::write(
        &bad,
        "hystrix.command.reviews.metrics.rollingStats.timeInMilliseconds=10000\nhystrix.command.reviews.metrics.rollingStats.numBuckets=3\n",
    )
    .expect("write");
    let bad = bad.to_str().expect("utf-8");
    let (code, out, stderr) = import(&["-f", bad]);
    assert_eq!(code, 1, "{stderr}");
    assert!(out.is_empty());
    assert!(
        stderr.contains(&format!("{bad}:2:1: hystrix.command.reviews.metrics.rollingStats.numBuckets: error: a rolling window of 10000 ms does not divide into 3 buckets")),
        "{stderr}"
    );
}

/// The fenced blocks of `docs/migrating.md` in language `lang`.
fn doc_blocks(lang: &str) -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/migrating.md"))
        .expect("docs/migrating.md");
    let fence = format!("```{lang}\n");
    text.split(&fence)
        .skip(1)
        .filter_map(|rest| rest.split("```").next().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn the_worked_examples_of_the_migration_guide_import_as_it_says() {
    let dir = crate::support::scratch_dir("import-docs");
    for (lang, marker, file, wants) in [
        (
            "yaml",
            "networking.istio.io",
            "reviews.yaml",
            vec![
                "      - name: reviews-jason\n",
                "      - name: reviews-1\n",
                "          - { service: reviews-v1, weight: 90 }\n",
                "        retries: { attempts: 3, on: [5xx, connect-failure], budget_percent: 100 }\n",
                "max_pending_requests: 50, max_requests: 4294967295",
                "      consecutive_5xx: 3\n",
            ],
        ),
        (
            "yaml",
            "policy.linkerd.io",
            "canary.yaml",
            vec![
                "          - { service: reviews-v1, weight: 90 }\n",
                "          - { service: reviews-v2, weight: 10 }\n",
                "        retries: { attempts: 2, on: [5xx], budget_percent: 100 }\n",
                "  - name: reviews\n",
            ],
        ),
        (
            "yaml",
            "gateway.networking.k8s.io",
            "checkout.yaml",
            vec![
                "      - name: checkout-1\n        match:\n",
                "          path: { segment_prefix: /api }\n          headers:\n            - { name: x-canary, exact: \"true\" }\n        backends:\n          - { service: checkout-v2, weight: 1 }\n          - { service: checkout-v1, weight: 3 }\n",
                "      - name: checkout-0\n        match:\n          authority: { regex: \"checkout(\\\\.shop(\\\\.svc(\\\\.cluster\\\\.local)?)?)?(:[0-9]+)?\" }\n          path: { segment_prefix: / }\n",
            ],
        ),
        (
            "yaml",
            "split.smi-spec.io",
            "web.yaml",
            vec![
                "      - name: web-split\n",
                "          - { service: web-v1, weight: 2 }\n          - { service: web-v2, weight: 1 }\n",
            ],
        ),
        (
            "properties",
            "hystrix.command",
            "hystrix.properties",
            vec!["      window: 5s\n", "      sleep_window: 1m\n", "      half_open_requests: 1\n"],
        ),
    ] {
        let example = doc_blocks(lang)
            .into_iter()
            .find(|b| b.contains(marker))
            .expect("the guide has the example");
        let path = dir.join(file);
        std::fs::write(&path, example).expect("write");
        let (code, config, stderr) = import(&["-f", path.to_str().expect("utf-8"), "-n", "shop"]);
        assert_eq!(code, 0, "{stderr}");
        for want in wants {
            assert!(config.contains(want), "{want:?} missing:\n{config}");
        }
    }
}

#[tokio::test]
async fn a_linkerd_canary_splits_by_relative_weight_and_retries_as_annotated() {
    let v1 = Upstream::start("reviews-v1").await;
    let v2 = Upstream::start("reviews-v2").await;
    let port = free_port();
    let config = import_to_run(
        &["linkerd-canary.yaml"],
        port,
        &[("reviews-v1", vec![v1.addr]), ("reviews-v2", vec![v2.addr])],
    );
    assert!(config.contains("        timeout: 5s\n"), "{config}");
    let weir = run(&config).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let split = tally(addr, "reviews:9080", "/", &[], 400).await;
    assert_eq!(
        count(&split, "reviews-v1") + count(&split, "reviews-v2"),
        400,
        "{split:?}"
    );
    let canary = count(&split, "reviews-v2") as f64 / 400.0;
    assert!((0.05..=0.16).contains(&canary), "{split:?}");
    // retry.linkerd.io/http: 5xx with a limit of 2 hides a v1 failing every other request.
    v1.fail(50, 500);
    let retried = tally(addr, "reviews", "/", &[], 40).await;
    assert_eq!(count(&retried, "500"), 0, "{retried:?}");
    drop(weir);
}

#[tokio::test]
async fn gateway_api_rules_follow_the_specs_precedence_and_prefixes_match_whole_segments() {
    let v1 = Upstream::start("checkout-v1").await;
    let v2 = Upstream::start("checkout-v2").await;
    let api = Upstream::start("checkout-api").await;
    let health = Upstream::start("checkout-health").await;
    let port = free_port();
    let file = format!("{FIXTURES}/gateway-headers.yaml");
    let (_, _, stderr) = import(&["-f", &file, "-n", "shop"]);
    assert!(
        stderr.contains("filters[0]") && stderr.contains("not supported by weir"),
        "{stderr}"
    );
    let config = import_to_run(
        &["gateway-headers.yaml"],
        port,
        &[
            ("checkout-v1", vec![v1.addr]),
            ("checkout-v2", vec![v2.addr]),
            ("checkout-api", vec![api.addr]),
            ("checkout-health", vec![health.addr]),
        ],
    );
    let weir = run(&config).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    for (path, headers, want) in [
        // The header rule is written second but has more header matches: it goes first.
        ("/", vec![("x-canary", "true")], "checkout-v2"),
        ("/cart", vec![], "checkout-v1"),
        // Longest prefix first, and PathPrefix /api is whole segments: not /apix.
        ("/api/orders", vec![("x-canary", "true")], "checkout-api"),
        ("/apix", vec![], "checkout-v1"),
        // Exact beats every prefix.
        ("/api/health", vec![], "checkout-health"),
    ] {
        let got = call(addr, "checkout.shop", path, &headers).await;
        assert_eq!(got, (200, want.to_string()), "{path} {headers:?}\n{config}");
    }
    drop(weir);
}

#[tokio::test]
async fn an_smi_split_normalises_quantity_weights() {
    let v1 = Upstream::start("web-v1").await;
    let v2 = Upstream::start("web-v2").await;
    let port = free_port();
    let config = import_to_run(
        &["smi-split.yaml"],
        port,
        &[("web-v1", vec![v1.addr]), ("web-v2", vec![v2.addr])],
    );
    let weir = run(&config).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let split = tally(addr, "web", "/", &[], 400).await;
    assert_eq!(
        count(&split, "web-v1") + count(&split, "web-v2"),
        400,
        "{split:?}"
    );
    let share = count(&split, "web-v2") as f64 / 400.0;
    assert!((0.4..=0.6).contains(&share), "{split:?}");
    drop(weir);
}

#[tokio::test]
async fn istio_circuit_breaking_limits_concurrency_and_ejects_the_failing_endpoint() {
    let good = Upstream::start("httpbin-good").await;
    let bad = Upstream::start("httpbin-bad").await;
    let slow = Upstream::start("slowbin").await;
    bad.fail(100, 500);
    let port = free_port();
    let config = import_to_run(
        &["istio-circuit-breaker.yaml"],
        port,
        &[
            ("httpbin", vec![good.addr, bad.addr]),
            ("slowbin", vec![slow.addr]),
        ],
    );
    let weir = run(&config).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");

    // consecutive5xxErrors: 1 — the bad endpoint's first 500 ejects it (no retries:
    // attempts 0), and everything after goes to the good one, though the one connection
    // maxConnections allows is the ejected endpoint's idle one: as in Envoy, an endpoint
    // with no connection always gets one.
    // The balancer picks between the two at random: call until the bad one has answered.
    let mut failures = 0;
    for _ in 0..50 {
        if call(addr, "httpbin", "/", &[]).await.0 == 500 {
            failures += 1;
            break;
        }
    }
    assert_eq!(failures, 1, "the bad endpoint was never chosen");
    let after = tally(addr, "httpbin", "/", &[], 20).await;
    assert_eq!(count(&after, "httpbin-good"), 20, "{after:?}");

    // slowbin's maxConnections, http2MaxRequests and http1MaxPendingRequests of 1: of ten
    // concurrent slow
    // requests, weir turns some away with 503 at once, as Envoy's breaker does.
    let calls: Vec<_> = (0..10)
        .map(|_| tokio::spawn(async move { call_full(addr, "slowbin", "/delay/300", &[]).await }))
        .collect();
    let mut overflow = 0;
    let mut served = 0;
    for c in calls {
        let (status, _, error) = c.await.expect("task");
        match (status, error.as_str()) {
            (200, _) => served += 1,
            (503, "overflow") => overflow += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        served >= 1 && overflow >= 1,
        "served {served}, overflow {overflow}"
    );
    drop(weir);
}

#[test]
fn standard_input_and_several_files_are_one_import() {
    let smi = std::fs::read(format!("{FIXTURES}/smi-split.yaml")).expect("fixture");
    let hystrix = format!("{FIXTURES}/hystrix.properties");
    let out = crate::support::run_bounded(
        env!("CARGO_BIN_EXE_weir"),
        &["import", "-f", "-", "-f", &hystrix, "-n", "shop"],
        &smi,
        Duration::from_secs(10),
        "weir (cargo builds it)",
    );
    let config = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        config.starts_with(
            "# Generated by `weir import` from <stdin>, tests/fixtures/import/hystrix.properties."
        ),
        "{config}"
    );
    assert!(
        config.contains("# from TrafficSplit shop/web-split (<stdin>:"),
        "{config}"
    );
    assert!(
        config.contains(
            "# from Hystrix command reviews (tests/fixtures/import/hystrix.properties:3)"
        ),
        "{config}"
    );
}

#[test]
fn command_mistakes_say_what_to_do_and_write_nothing() {
    let smi = format!("{FIXTURES}/smi-split.yaml");
    // A service name the import did not generate: the names it did are listed.
    let (code, out, err) = import(&["-f", &smi, "-n", "shop", "--endpoint", "webv1=127.0.0.1:9"]);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("--endpoint webv1: no generated service has this name; the services are: web, web-v1, web-v2"),
        "{err}"
    );
    // An address that is not IP:PORT is refused by the flag parser (exit 1, usage error).
    let (code, _, err) = import(&["-f", &smi, "--endpoint", "web-v1=localhost"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("\"localhost\" is not IP:PORT; write e.g. 127.0.0.1:9081"),
        "{err}"
    );
    // A file that cannot be read: exit 2, naming it.
    let (code, out, err) = import(&["-f", "tests/fixtures/import/missing.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(
        err.starts_with("tests/fixtures/import/missing.yaml: cannot read the file:"),
        "{err}"
    );
}
