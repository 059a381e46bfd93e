//! Whole-file tests: the reference example and every invalid fixture.

use std::path::{Path, PathBuf};

use super::*;

fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lines(diags: &[Diagnostic]) -> Vec<String> {
    diags.iter().map(ToString::to_string).collect()
}

/// Loads `rel` (relative to the crate root, as the CLI test runs it) and returns the error
/// lines, or the warnings prefixed `ok:` when it loaded.
fn check(rel: &str) -> Result<Vec<String>, Vec<String>> {
    let bytes = std::fs::read(crate_root().join(rel)).expect("fixture readable");
    match load_bytes(rel, &bytes) {
        Ok(loaded) => Ok(lines(&loaded.warnings)),
        Err(LoadError::Invalid(diags)) => Err(lines(&diags)),
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn reference_example_loads_without_warnings() {
    // Every section it uses is enforced; the last to land were Kubernetes discovery and
    // transparent listeners.
    let warnings = check("examples/reference.yaml").expect("reference.yaml must load");
    assert_eq!(warnings, Vec::<String>::new());
}

#[test]
fn reference_example_decodes_to_the_documented_values() {
    let text =
        std::fs::read_to_string(crate_root().join("examples/reference.yaml")).expect("readable");
    let config = load_str("reference.yaml", &text).expect("loads").config;
    assert_eq!(config.version, 1);
    assert_eq!(config.node.workload, "productpage-v1");
    assert_eq!(config.listeners.len(), 4);
    assert_eq!(config.services.len(), 5);
    let canary = &config.listeners[0].routes[0];
    assert_eq!(
        canary.matcher.path,
        Some(PathMatch::Prefix("/reviews".into()))
    );
    assert_eq!(
        canary.matcher.headers[0].rule,
        HeaderRule::Exact("true".into())
    );
    assert_eq!(canary.matcher.method.as_deref(), Some("GET"));
    let split = &config.listeners[0].routes[1];
    assert_eq!(split.backends[0].weight, 90);
    assert_eq!(split.timeout, Some(std::time::Duration::from_secs(3)));
    let retries = split.retries.as_ref().expect("retries");
    assert_eq!(
        retries.on,
        vec![
            RetryOn::ConnectFailure,
            RetryOn::Reset,
            RetryOn::GatewayError
        ]
    );
    assert_eq!(
        config.listeners[1].tls.as_ref().map(|t| t.mode),
        Some(TlsMode::Strict)
    );
    assert_eq!(config.listeners[2].protocol, ListenerProtocol::Tcp);
    let mesh = &config.listeners[3];
    assert_eq!(mesh.unknown_destination, UnknownDestination::Passthrough);
    let routes: Vec<(&str, &[std::net::SocketAddr])> = mesh
        .routes
        .iter()
        .map(|r| (r.name.as_str(), r.matcher.destination.as_slice()))
        .collect();
    assert_eq!(
        routes,
        [
            ("ratings-by-host", &["10.96.0.30:9080".parse().unwrap()][..]),
            ("reviews-v2", &["10.96.0.20:9080".parse().unwrap()][..]),
            ("postgres", &[][..]),
        ],
        "services that claim addresses get routes after the written ones"
    );
    assert!(
        mesh.routes[2].matcher.discovered_destination,
        "postgres claims the cluster IP its Kubernetes discovery finds"
    );
    assert_eq!(
        mesh.routes[0].matcher.authority,
        Some(AuthorityMatch::Exact(
            "ratings.shop.svc.cluster.local".into()
        ))
    );
    let reviews = &config.services[0];
    assert_eq!(reviews.load_balancer, LoadBalancer::LeastRequest);
    assert_eq!(reviews.endpoints[1].weight, 2);
    assert_eq!(reviews.idle_timeout, std::time::Duration::from_secs(60));
    assert_eq!(Some(reviews.limits.max_retries), Some(3));
    assert!(matches!(
        &config.services[1].discovery,
        Some(Discovery::Dns { port: 9080, .. })
    ));
    assert!(matches!(
        &config.services[4].discovery,
        Some(Discovery::Kubernetes {
            port: KubePort::Number(5432),
            ..
        })
    ));
    assert_eq!(
        config.tracing.as_ref().map(|t| t.propagation.clone()),
        Some(vec![Propagation::W3c, Propagation::B3])
    );
    assert_eq!(config.logging.format, LogFormat::Json);
}

#[test]
fn minimal_config_gets_the_defaults() {
    let yaml = "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:15001\n    routes:\n      - name: r\n        backends: [{ service: s }]\nservices:\n  - name: s\n    endpoints: [127.0.0.1:8080]\n";
    let loaded = load_str("m.yaml", yaml).expect("loads");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.admin, Admin::default());
    assert_eq!(c.logging, Logging::default());
    assert!(!c.logging.access_log, "the access log is opt-in");
    assert_eq!(c.listeners[0].protocol, ListenerProtocol::Http);
    assert_eq!(c.listeners[0].routes[0].matcher, RouteMatch::default());
    assert_eq!(c.listeners[0].routes[0].backends[0].weight, 1);
    let s = &c.services[0];
    assert_eq!(s.load_balancer, LoadBalancer::RoundRobin);
    assert_eq!(s.protocol, UpstreamProtocol::Http1);
    assert_eq!(s.connect_timeout, std::time::Duration::from_secs(1));
}

/// The `# expect:` lines at the top of a fixture.
fn expectations(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(str::to_string)
        .collect()
}

fn fixtures() -> Vec<String> {
    let dir = crate_root().join("tests/fixtures/config/invalid");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .map(|n| format!("tests/fixtures/config/invalid/{n}"))
        .collect();
    names.sort();
    names
}

#[test]
fn every_invalid_fixture_reports_exactly_its_expected_errors() {
    let mut failures = Vec::new();
    let all = fixtures();
    assert!(all.len() >= 30, "only {} fixtures", all.len());
    for rel in all {
        let bytes = std::fs::read(crate_root().join(&rel)).expect("readable");
        let expected = expectations(&String::from_utf8_lossy(&bytes));
        assert!(!expected.is_empty(), "{rel} has no `# expect:` lines");
        match check(&rel) {
            Err(actual) if actual == expected => {}
            Err(actual) => failures.push(format!(
                "{rel}\n  expected:\n    {}\n  actual:\n    {}",
                expected.join("\n    "),
                actual.join("\n    ")
            )),
            Ok(_) => failures.push(format!("{rel}: loaded without errors")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn io_errors_name_the_path() {
    let err = load_file(Path::new("/nonexistent/weir.yaml")).expect_err("missing");
    assert!(matches!(err, LoadError::Io { .. }));
    assert!(err
        .to_string()
        .starts_with("/nonexistent/weir.yaml: cannot read"));
}

const MINIMAL_LISTENERS: &str = "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:15001\n    routes:\n      - name: r\n        backends: [{ service: s }]\n";

fn load_with_services(services: &str) -> Result<Loaded, Vec<String>> {
    let yaml = format!("{MINIMAL_LISTENERS}{services}");
    load_str("s.yaml", &yaml).map_err(|e| match e {
        LoadError::Invalid(d) => lines(&d),
        other => vec![other.to_string()],
    })
}

#[test]
fn least_connection_is_an_alias_of_least_request() {
    let loaded = load_with_services("services:\n  - name: s\n    endpoints: [127.0.0.1:1]\n    load_balancer: least_connection\n")
        .expect("loads");
    assert_eq!(
        loaded.config.services[0].load_balancer,
        LoadBalancer::LeastRequest
    );
}

#[test]
fn ring_hash_section_without_ring_hash_balancer_warns() {
    let loaded = load_with_services(
        "services:\n  - name: s\n    endpoints: [127.0.0.1:1]\n    load_balancer: random\n    ring_hash: { header: X-User }\n",
    )
    .expect("loads");
    assert_eq!(
        lines(&loaded.warnings),
        vec!["s.yaml:12:5: services[0].ring_hash: ring_hash is ignored because load_balancer is `random`; set `load_balancer: ring_hash` or remove `ring_hash`"]
    );
    let ring = loaded.config.services[0]
        .ring_hash
        .as_ref()
        .map(|r| r.header.as_str());
    assert_eq!(ring, Some("x-user"));
}

#[test]
fn kubernetes_namespace_defaults_to_the_node_namespace() {
    let yaml = format!(
        "{MINIMAL_LISTENERS}node: {{ namespace: shop }}\nservices:\n  - name: s\n    discovery: {{ kubernetes: {{ service: s, port: 80 }} }}\n"
    );
    let loaded = load_str("k.yaml", &yaml).expect("loads");
    assert_eq!(
        loaded.config.services[0].discovery,
        Some(Discovery::Kubernetes {
            service: "s".into(),
            namespace: "shop".into(),
            port: KubePort::Number(80)
        })
    );
}

#[test]
fn kubernetes_port_is_a_number_or_a_port_name() {
    let port = |p: &str| {
        load_with_services(&format!(
            "services:\n  - name: s\n    discovery: {{ kubernetes: {{ service: s, port: {p} }} }}\n"
        ))
        .map(|l| l.config.services[0].discovery.clone())
    };
    let kube = |port| {
        Ok(Some(Discovery::Kubernetes {
            service: "s".into(),
            namespace: "default".into(),
            port,
        }))
    };
    assert_eq!(port("5432"), kube(KubePort::Number(5432)));
    assert_eq!(port("postgres"), kube(KubePort::Name("postgres".into())));
    assert_eq!(port("grpc-web"), kube(KubePort::Name("grpc-web".into())));
    for (bad, says) in [
        ("0", "s.yaml:10:50: services[0].discovery.kubernetes.port: 0 is out of range; it must be between 1 and 65535"),
        ("70000", "s.yaml:10:50: services[0].discovery.kubernetes.port: 70000 is out of range"),
        ("\"5432\"", "s.yaml:10:50: services[0].discovery.kubernetes.port: \"5432\" is not a port number or name: a port number is written without quotes"),
        ("Postgres", "s.yaml:10:50: services[0].discovery.kubernetes.port: \"Postgres\" is not a port number or name: a port name is lower-case letters"),
        ("-pg", "s.yaml:10:50: services[0].discovery.kubernetes.port: \"-pg\" is not a port number or name"),
        ("\"\"", "s.yaml:10:50: services[0].discovery.kubernetes.port: \"\" is not a port number or name: a port name must not be empty"),
        ("[80]", "s.yaml:10:50: services[0].discovery.kubernetes.port: expected a port number or a port name, found a list"),
    ] {
        let errors = port(bad).expect_err(bad);
        assert!(errors.iter().any(|e| e.starts_with(says)), "{bad}: {errors:?}");
    }
}

#[test]
fn dns_discovery_defaults_refresh_to_5s() {
    let loaded = load_with_services("services:\n  - name: s\n    discovery: { dns: s.svc:8080 }\n")
        .expect("loads");
    assert_eq!(
        loaded.config.services[0].discovery,
        Some(Discovery::Dns {
            host: "s.svc".into(),
            port: 8080,
            refresh: std::time::Duration::from_secs(5)
        })
    );
}

#[test]
fn endpoints_mix_strings_and_mappings() {
    let loaded = load_with_services(
        "services:\n  - name: s\n    endpoints:\n      - 127.0.0.1:1\n      - { address: \"[::1]:2\", weight: 0 }\n",
    )
    .expect("loads");
    let e = &loaded.config.services[0].endpoints;
    assert_eq!((e[0].weight, e[1].weight), (1, 0));
    assert_eq!(e[1].address.to_string(), "[::1]:2");
}

#[test]
fn route_match_details_are_normalised() {
    let yaml = "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:15001\n    routes:\n      - name: r\n        match:\n          method: post\n          headers: [{ name: X-Canary, present: false }]\n        retries: { on: [5xx, 503, \"429\"] }\n        backends: [{ service: s }]\nservices:\n  - name: s\n    endpoints: [127.0.0.1:1]\n";
    let route = load_str("r.yaml", yaml).expect("loads").config.listeners[0].routes[0].clone();
    assert_eq!(route.matcher.method.as_deref(), Some("POST"));
    assert_eq!(
        route.matcher.headers[0],
        HeaderMatch {
            name: "x-canary".into(),
            rule: HeaderRule::Present(false)
        }
    );
    let retries = route.retries.expect("retries");
    assert_eq!(
        retries.on,
        vec![
            RetryOn::Status5xx,
            RetryOn::Status(503),
            RetryOn::Status(429)
        ]
    );
    assert_eq!((retries.attempts, retries.budget_percent), (1, 20.0));
}

#[test]
fn listener_on_port_zero_never_conflicts() {
    let yaml = "version: 1\nlisteners:\n  - name: a\n    address: 127.0.0.1:0\n    routes: [{ name: r, backends: [{ service: s }] }]\n  - name: b\n    address: 127.0.0.1:0\n    routes: [{ name: r, backends: [{ service: s }] }]\nservices: [{ name: s, endpoints: [127.0.0.1:1] }]\n";
    assert!(load_str("z.yaml", yaml).is_ok());
}

#[test]
fn a_root_that_is_not_a_mapping_is_one_error() {
    let Err(LoadError::Invalid(d)) = load_str("l.yaml", "- a\n- b\n") else {
        panic!("must fail")
    };
    assert_eq!(
        lines(&d),
        vec!["l.yaml:1:1: <root>: expected a mapping (the configuration: `version`, `listeners`, `services`, …), found a list"]
    );
}

proptest::proptest! {
    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
        let _ = load_str("p.yaml", &text);
    }

    #[test]
    fn never_panics_on_a_mangled_reference(cut in 0usize..4000, len in 0usize..40, insert in "[ :\\-\\[\\]{}a-z0-9\n]{0,6}") {
        let text = std::fs::read_to_string(crate_root().join("examples/reference.yaml")).expect("readable");
        let start = text.char_indices().map(|(i, _)| i).find(|i| *i >= cut.min(text.len())).unwrap_or(text.len());
        let end = text.char_indices().map(|(i, _)| i).find(|i| *i >= start + len).unwrap_or(text.len());
        let mangled = format!("{}{}{}", &text[..start], insert, &text[end..]);
        match load_str("m.yaml", &mangled) {
            Ok(_) => {}
            Err(LoadError::Invalid(d)) => proptest::prop_assert!(!d.is_empty()),
            Err(other) => proptest::prop_assert!(false, "{}", other),
        }
    }
}

#[test]
fn routes_let_websockets_through_unless_told_otherwise() {
    let route = |extra: &str| {
        format!(
            "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n{extra}        backends: [{{ service: s }}]\nservices:\n  - {{ name: s, endpoints: [\"127.0.0.1:2\"] }}\n"
        )
    };
    let upgrades = |extra: &str| {
        load_str("u.yaml", &route(extra)).map(|l| l.config.listeners[0].routes[0].upgrades.clone())
    };
    assert_eq!(upgrades("").expect("loads"), ["websocket"]);
    assert!(upgrades("        upgrades: []\n")
        .expect("loads")
        .is_empty());
    assert_eq!(
        upgrades("        upgrades: [WebSocket, CONNECT-UDP, websocket]\n").expect("loads"),
        ["websocket", "connect-udp"]
    );
    for (bad, says) in [
        ("[h2c]", "u.yaml:7:20: listeners[0].routes[0].upgrades[0]: `h2c` cannot be carried"),
        ("[\"web socket\"]", "u.yaml:7:20: listeners[0].routes[0].upgrades[0]: \"web socket\" is not a protocol name"),
    ] {
        let errors = match upgrades(&format!("        upgrades: {bad}\n")) {
            Err(LoadError::Invalid(diags)) => lines(&diags),
            other => panic!("{bad}: {other:?}"),
        };
        assert!(errors.iter().any(|e| e.starts_with(says)), "{bad}: {errors:?}");
    }
}

#[test]
fn a_tcp_listener_takes_one_route_with_backends_only() {
    let yaml = |routes: &str| {
        format!(
            "version: 1\nlisteners:\n  - name: db\n    address: 127.0.0.1:15432\n    protocol: tcp\n    routes:\n{routes}services:\n  - {{ name: pg, endpoints: [\"127.0.0.1:5432\"] }}\n"
        )
    };
    let ok = yaml("      - name: db\n        backends: [{ service: pg }]\n");
    assert!(load_str("t.yaml", &ok).is_ok());
    for (routes, says) in [
        (
            "      - name: a\n        backends: [{ service: pg }]\n      - name: b\n        backends: [{ service: pg }]\n",
            "keep one route",
        ),
        (
            "      - name: db\n        match: { path: { prefix: / } }\n        backends: [{ service: pg }]\n",
            "listeners[0].routes[0].match: `match` is for HTTP",
        ),
        (
            "      - name: db\n        retries: { attempts: 2 }\n        backends: [{ service: pg }]\n",
            "listeners[0].routes[0].retries: `retries` is for HTTP",
        ),
    ] {
        let errors = match load_str("t.yaml", &yaml(routes)) {
            Err(LoadError::Invalid(diags)) => lines(&diags),
            other => panic!("{routes}: {other:?}"),
        };
        assert!(errors.iter().any(|e| e.contains(says)), "{errors:?}");
    }
}

#[test]
fn identity_patterns_take_whole_segments_and_an_allow_list_is_never_empty() {
    let listener = |allow: &str| {
        format!(
            "version: 1\nidentity: {{ cert: a, key: b, trust_bundle: c }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    tls: {{ mode: strict, allow: {allow} }}\n    routes:\n      - name: r\n        backends: [{{ service: s }}]\nservices:\n  - {{ name: s, endpoints: [\"127.0.0.1:2\"] }}\n"
        )
    };
    for good in [
        "[spiffe://cluster.local/ns/shop/*]",
        "[spiffe://cluster.local/*]",
        "[spiffe://cluster.local/ns/a/sa/b]",
    ] {
        assert!(load_str("a.yaml", &listener(good)).is_ok(), "{good}");
    }
    for (bad, says) in [
        ("[spiffe://cluster.local/ns/shop*]", "is not a SPIFFE ID"),
        ("[spiffe://cluster.local*]", "is not a SPIFFE ID"),
        ("[\"spiffe://cluster.local/ns/a b\"]", "is not a SPIFFE ID"),
        (
            "[]",
            "an empty `allow` would let every authenticated peer in",
        ),
    ] {
        let errors = match load_str("a.yaml", &listener(bad)) {
            Err(LoadError::Invalid(diags)) => lines(&diags),
            other => panic!("{bad}: {other:?}"),
        };
        assert!(errors.iter().any(|e| e.contains(says)), "{bad}: {errors:?}");
    }
}

#[test]
fn a_listener_with_tls_is_inbound_unless_it_says_otherwise() {
    let yaml = |listener_extra: &str| {
        format!(
            "version: 1\nidentity: {{ cert: a, key: b, trust_bundle: c }}\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n{listener_extra}    routes:\n      - name: r\n        backends: [{{ service: s }}]\nservices:\n  - {{ name: s, endpoints: [\"127.0.0.1:2\"] }}\n"
        )
    };
    let direction = |extra: &str| {
        load_str("d.yaml", &yaml(extra))
            .map(|l| l.config.listeners[0].direction)
            .map_err(|e| format!("{e:?}"))
    };
    assert_eq!(direction(""), Ok(Direction::Outbound));
    assert_eq!(
        direction("    tls: { mode: strict }\n"),
        Ok(Direction::Inbound)
    );
    assert_eq!(
        direction("    direction: inbound\n"),
        Ok(Direction::Inbound)
    );
    assert_eq!(
        direction("    direction: outbound\n    tls: { mode: strict }\n"),
        Ok(Direction::Outbound)
    );
    let Err(LoadError::Invalid(diags)) = load_str("d.yaml", &yaml("    direction: sideways\n"))
    else {
        panic!("sideways is not a direction");
    };
    assert!(
        lines(&diags)[0].starts_with("d.yaml:6:16: listeners[0].direction: "),
        "{:?}",
        lines(&diags)
    );
}

#[test]
fn an_otlp_endpoint_must_be_plain_http() {
    let yaml = |endpoint: &str| {
        format!(
            "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        backends: [{{ service: s }}]\nservices:\n  - {{ name: s, endpoints: [\"127.0.0.1:2\"] }}\ntracing:\n  otlp: {{ endpoint: \"{endpoint}\" }}\n"
        )
    };
    assert!(load_str("o.yaml", &yaml("http://127.0.0.1:4318/v1/traces")).is_ok());
    for (bad, says) in [
        (
            "https://collector:4318/v1/traces",
            "weir exports spans over plain HTTP",
        ),
        ("collector:4318", "is not an http:// URL"),
    ] {
        let Err(LoadError::Invalid(diags)) = load_str("o.yaml", &yaml(bad)) else {
            panic!("{bad} must be refused");
        };
        let errors = lines(&diags);
        assert!(
            errors[0].starts_with("o.yaml:11:")
                && errors[0].contains("tracing.otlp.endpoint: ")
                && errors[0].contains(says),
            "{bad}: {errors:?}"
        );
    }
}
