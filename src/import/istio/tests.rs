//! Istio's meanings, one fixture each: what the generated configuration says and what is
//! reported.

use crate::config::{self, HeaderRule, LoadBalancer, PathMatch, RetryOn, TlsMode};
use crate::import::{import, Imported, Input, Options, Severity};

fn options(transparent: bool) -> Options {
    crate::import::test_options(transparent)
}

/// Imports `yaml` (to try outside a pod) and loads the result as weir would (it must
/// always load).
fn translate(yaml: &str) -> (Imported, config::Config) {
    translate_for(yaml, false)
}

fn translate_for(yaml: &str, transparent: bool) -> (Imported, config::Config) {
    let imported = import_one(yaml, transparent);
    let loaded = config::load_str("out.yaml", &imported.config)
        .unwrap_or_else(|e| panic!("{e}\n{}", imported.config));
    (imported, loaded.config)
}

fn unsupported(imported: &Imported) -> Vec<String> {
    imported
        .reports
        .iter()
        .filter(|r| r.severity == Severity::Unsupported)
        .map(|r| r.to_string())
        .collect()
}

const VS: &str = "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: { name: reviews }\nspec:\n  hosts: [reviews]\n";

#[test]
fn match_blocks_are_ored_and_their_fields_anded() {
    let (_, cfg) = translate(&format!(
        "{VS}  http:\n    - match:\n        - uri: {{ prefix: /a }}\n          headers: {{ x-a: {{ exact: \"1\" }}, x-b: {{}} }}\n        - method: {{ exact: post }}\n      route: [{{ destination: {{ host: reviews }} }}]\n"
    ));
    let routes = &cfg.listeners[0].routes;
    assert_eq!(routes.len(), 3, "two blocks and the 404 for the rest");
    let first = &routes[0].matcher;
    assert_eq!(first.path, Some(PathMatch::Prefix("/a".into())));
    assert_eq!(first.headers.len(), 2);
    assert_eq!(first.headers[1].rule, HeaderRule::Present(true));
    assert_eq!(routes[1].matcher.method.as_deref(), Some("POST"));
    assert!(routes[1].matcher.path.is_none());
    let fallback = &routes[2];
    assert_eq!(
        fallback
            .fault
            .as_ref()
            .and_then(|f| f.abort.as_ref())
            .map(|a| (a.status, a.percent)),
        Some((404, 100.0))
    );
}

#[test]
fn retries_count_after_the_first_try_and_absent_retries_are_istios_default() {
    let (_, cfg) = translate(&format!(
        "{VS}  http:\n    - match: [{{ uri: {{ exact: /x }} }}]\n      route: [{{ destination: {{ host: reviews }} }}]\n      retries: {{ attempts: 4, perTryTimeout: 250ms, retryOn: \"gateway-error,503,refused-stream\" }}\n    - route: [{{ destination: {{ host: reviews }} }}]\n"
    ));
    let routes = &cfg.listeners[0].routes;
    let explicit = routes[0].retries.as_ref().expect("retries");
    assert_eq!(explicit.attempts, 4);
    assert_eq!(
        explicit.per_try_timeout,
        Some(std::time::Duration::from_millis(250))
    );
    assert_eq!(
        explicit.on,
        [RetryOn::GatewayError, RetryOn::Status(503), RetryOn::Reset]
    );
    assert_eq!(explicit.budget_percent, 100.0, "Istio has no retry budget");
    let default = routes[1]
        .retries
        .as_ref()
        .expect("the mesh default is written out");
    assert_eq!(default.attempts, 2);
    assert_eq!(
        default.on,
        [
            RetryOn::ConnectFailure,
            RetryOn::Reset,
            RetryOn::Status(503)
        ]
    );
    // `attempts: 0` turns retries off.
    let (_, cfg) = translate(&format!(
        "{VS}  http:\n    - route: [{{ destination: {{ host: reviews }} }}]\n      retries: {{ attempts: 0 }}\n"
    ));
    assert!(cfg.listeners[0].routes[0].retries.is_none());
}

#[test]
fn fault_percentages_are_fractions_and_absent_ones_inject_nothing() {
    let (imported, cfg) = translate(&format!(
        "{VS}  http:\n    - route: [{{ destination: {{ host: reviews }} }}]\n      fault:\n        delay: {{ fixedDelay: 7s, percentage: {{ value: 0.1 }} }}\n        abort: {{ httpStatus: 500 }}\n"
    ));
    let fault = cfg.listeners[0].routes[0].fault.as_ref().expect("fault");
    let delay = fault.delay.as_ref().expect("delay");
    assert_eq!((delay.fixed.as_secs(), delay.percent), (7, 0.1));
    assert!(fault.abort.is_none(), "no percentage: Istio aborts nothing");
    assert!(imported
        .reports
        .iter()
        .any(|r| r.severity == Severity::Note && r.path.ends_with("fault.abort")));
}

#[test]
fn mirror_percentage_absent_is_everything() {
    let (_, cfg) = translate(&format!(
        "{VS}  http:\n    - route: [{{ destination: {{ host: reviews, subset: v1 }} }}]\n      mirror: {{ host: reviews, subset: v2 }}\n    - route: [{{ destination: {{ host: reviews, subset: v1 }} }}]\n      mirror: {{ host: reviews, subset: v2 }}\n      mirrorPercentage: {{ value: 12.5 }}\n"
    ));
    let routes = &cfg.listeners[0].routes;
    let mirror = routes[0].mirror.as_ref().expect("mirror");
    assert_eq!(
        (mirror.service.as_str(), mirror.percent),
        ("reviews-v2", 100.0)
    );
    assert_eq!(routes[1].mirror.as_ref().map(|m| m.percent), Some(12.5));
}

#[test]
fn weights_split_and_an_unset_weight_among_several_is_zero() {
    let (_, cfg) = translate(&format!(
        "{VS}  http:\n    - route:\n        - {{ destination: {{ host: reviews, subset: v1 }}, weight: 90 }}\n        - {{ destination: {{ host: reviews, subset: v2 }}, weight: 10 }}\n        - {{ destination: {{ host: reviews, subset: v3 }} }}\n"
    ));
    let weights: Vec<(String, u32)> = cfg.listeners[0].routes[0]
        .backends
        .iter()
        .map(|b| (b.service.clone(), b.weight))
        .collect();
    assert_eq!(
        weights,
        [
            ("reviews-v1".to_string(), 90),
            ("reviews-v2".to_string(), 10),
            ("reviews-v3".to_string(), 0)
        ]
    );
}

const DR: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: { name: reviews }\nspec:\n  host: reviews\n";

#[test]
fn connection_pool_maps_to_limits_and_stays_unlimited_where_unset() {
    let (_, cfg) = translate(&format!(
        "{VS}  http:\n    - route: [{{ destination: {{ host: reviews }} }}]\n---\n{DR}  trafficPolicy:\n    connectionPool:\n      tcp: {{ maxConnections: 7, connectTimeout: 300ms }}\n      http: {{ http2MaxRequests: 40, maxRetries: 2, idleTimeout: 30s }}\n"
    ));
    let s = &cfg.services[0];
    assert_eq!(s.limits.max_connections, 7);
    assert_eq!(s.limits.max_pending_requests, u32::MAX, "unset: unlimited");
    assert_eq!(s.limits.max_requests, 40);
    assert_eq!(s.limits.max_retries, 2);
    assert_eq!(s.connect_timeout.as_millis(), 300);
    assert_eq!(s.idle_timeout.as_secs(), 30);
    assert_eq!(
        s.load_balancer,
        LoadBalancer::LeastRequest,
        "Istio's default"
    );
    // No DestinationRule at all: Istio's connection pool defaults, not weir's.
    let (_, cfg) = translate(&format!(
        "{VS}  http:\n    - route: [{{ destination: {{ host: reviews }} }}]\n"
    ));
    let s = &cfg.services[0];
    assert_eq!(s.limits, crate::import::draft::unlimited());
    assert_eq!(s.connect_timeout.as_secs(), 10);
}

#[test]
fn outlier_detection_keeps_envoys_meanings_and_subsets_override_per_setting() {
    let (imported, cfg) = translate(&format!(
        "{VS}  http:\n    - route:\n        - {{ destination: {{ host: reviews, subset: v1 }}, weight: 50 }}\n        - {{ destination: {{ host: reviews, subset: v2 }}, weight: 50 }}\n---\n{DR}  trafficPolicy:\n    loadBalancer: {{ simple: RANDOM }}\n    outlierDetection: {{ consecutiveGatewayErrors: 2, interval: 5s, minHealthPercent: 50 }}\n  subsets:\n    - name: v1\n      labels: {{ version: v1 }}\n    - name: v2\n      labels: {{ version: v2 }}\n      trafficPolicy:\n        loadBalancer:\n          consistentHash: {{ httpHeaderName: X-User }}\n"
    ));
    let v1 = cfg
        .services
        .iter()
        .find(|s| s.name == "reviews-v1")
        .expect("v1");
    let v2 = cfg
        .services
        .iter()
        .find(|s| s.name == "reviews-v2")
        .expect("v2");
    let od = v1.outlier_detection.as_ref().expect("outlier detection");
    assert_eq!(
        (
            od.consecutive_5xx,
            od.consecutive_gateway_errors,
            od.interval.as_secs()
        ),
        (5, 2, 5),
        "consecutive5xxErrors unset is Envoy's 5"
    );
    assert_eq!(od.base_ejection_time.as_secs(), 30);
    assert_eq!(v1.load_balancer, LoadBalancer::Random);
    assert_eq!(v2.load_balancer, LoadBalancer::RingHash);
    assert_eq!(
        v2.ring_hash.as_ref().map(|r| r.header.as_str()),
        Some("x-user")
    );
    assert!(
        v2.outlier_detection.is_some(),
        "the subset replaces loadBalancer only"
    );
    let lost = unsupported(&imported);
    has(&lost, "outlierDetection.minHealthPercent");
}

#[test]
fn cookie_hashing_and_simple_tls_are_reported() {
    let (imported, cfg) = translate(&format!(
        "{VS}  http:\n    - route: [{{ destination: {{ host: reviews }} }}]\n---\n{DR}  trafficPolicy:\n    loadBalancer:\n      consistentHash: {{ httpCookie: {{ name: user, ttl: 0s }} }}\n    tls: {{ mode: SIMPLE }}\n"
    ));
    assert_eq!(cfg.services[0].load_balancer, LoadBalancer::LeastRequest);
    assert!(cfg.services[0].tls.is_none());
    let lost = unsupported(&imported);
    has(
        &lost,
        "consistentHash: not supported by weir: weir hashes a request header only; httpCookie",
    );
    has(&lost, "tls: not supported by weir");
}

#[test]
fn istio_mutual_without_the_workload_accepts_any_identity_of_the_namespace() {
    let (_, cfg) = translate(&format!(
        "{VS}  http:\n    - route: [{{ destination: {{ host: reviews }} }}]\n---\n{DR}  trafficPolicy:\n    tls: {{ mode: ISTIO_MUTUAL }}\n"
    ));
    assert_eq!(
        cfg.services[0].tls.as_ref().map(|t| t.identity.as_str()),
        Some("spiffe://cluster.local/ns/shop/sa/*")
    );
}

#[test]
fn peer_authentication_scopes_and_authorization_principals() {
    let (imported, cfg) = translate(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: ws, namespace: shop }\nspec:\n  selector: { matchLabels: { app: reviews } }\n  mtls: { mode: DISABLE }\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: ns, namespace: shop }\nspec:\n  mtls: { mode: STRICT }\n  portLevelMtls: { 8080: { mode: DISABLE } }\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: a, namespace: shop }\nspec:\n  rules:\n    - from:\n        - source: { principals: [\"cluster.local/ns/web/sa/front\", \"cluster.local/ns/ops/*\"] }\n        - source: { namespaces: [batch], ipBlocks: [10.0.0.0/8] }\n",
    );
    let tls = cfg
        .listeners
        .iter()
        .find(|l| l.name == "inbound")
        .and_then(|l| l.tls.as_ref())
        .expect("inbound tls");
    assert_eq!(
        tls.mode,
        TlsMode::Disabled,
        "the workload policy beats the namespace's"
    );
    assert_eq!(
        tls.allow,
        [
            "spiffe://cluster.local/ns/web/sa/front",
            "spiffe://cluster.local/ns/ops/*",
            "spiffe://cluster.local/ns/batch/sa/*"
        ]
    );
    let lost = unsupported(&imported);
    has(&lost, "portLevelMtls");
    has(&lost, "source.ipBlocks");
}

#[test]
fn gateway_only_virtual_services_and_unknown_kinds_are_skipped_and_said() {
    let (imported, cfg) = translate_for(&format!(
        "{VS}  gateways: [ingress]\n  http:\n    - route: [{{ destination: {{ host: reviews }} }}]\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{ name: s }}\nspec: {{}}\n"
    ), true);
    assert!(cfg.listeners[0].routes.is_empty());
    let lost = unsupported(&imported);
    has(&lost, "spec.gateways");
    has(&lost, "weir import does not translate Sidecar");
}

#[test]
fn transparent_imports_give_each_host_its_own_service_to_claim_its_cluster_ip() {
    let imported = import_one(
        format!("{VS}  http:\n    - route: [{{ destination: {{ host: reviews, subset: v1 }} }}]\n"),
        true,
    );
    let cfg = config::load_str("out.yaml", &imported.config)
        .expect("loads")
        .config;
    let names: Vec<&str> = cfg.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["reviews-v1", "reviews"]);
    assert!(cfg.listeners[0].transparent);
}

#[test]
fn a_regex_weir_cannot_compile_is_an_error_where_it_is_written() {
    let imported = import_one(format!(
                "{VS}  http:\n    - match: [{{ uri: {{ regex: \"/a(?=b)\" }} }}]\n      route: [{{ destination: {{ host: reviews }} }}]\n"
            ), false);
    let errors = errors(&imported);
    assert_eq!(
        errors,
        ["t.yaml:7:17: VirtualService(shop/reviews).spec.http[0].match[0].uri: error: weir cannot compile this regex: look-around, including look-ahead and look-behind, is not supported; the match block is skipped"]
    );
}

#[test]
fn whatever_else_weir_refuses_is_an_error_at_the_source_item() {
    let imported = import_one(format!(
                "{VS}  http:\n    - match: [{{ method: {{ exact: \"GE T\" }} }}]\n      route: [{{ destination: {{ host: reviews }} }}]\n"
            ), false);
    let errors = errors(&imported);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("t.yaml:7:1: VirtualService shop/reviews, http[0].match[0]: error: weir refuses its translation: listeners[0].routes[0].match.method:"),
        "{errors:?}"
    );
}

/// Imports one file, `t.yaml`, holding `text`.
fn import_one(text: impl Into<String>, transparent: bool) -> Imported {
    import(
        &[Input {
            name: "t.yaml".into(),
            text: text.into(),
        }],
        &options(transparent),
    )
}

/// The error lines of `imported`.
fn errors(imported: &Imported) -> Vec<String> {
    imported
        .reports
        .iter()
        .filter(|r| r.severity == Severity::Error)
        .map(|r| r.to_string())
        .collect()
}

/// Fails unless one of `lines` contains `needle`, showing them all.
fn has(lines: &[String], needle: &str) {
    assert!(
        lines.iter().any(|l| l.contains(needle)),
        "{needle:?} in {lines:#?}"
    );
}

/// Every report line of `imported` with its severity label.
fn lines(imported: &Imported) -> Vec<String> {
    imported.reports.iter().map(|r| r.to_string()).collect()
}

#[test]
fn a_name_with_a_line_break_cannot_forge_output_lines() {
    let imported = import_one(format!(
                "{VS}  http:\n    - route: [{{ destination: {{ host: reviews }} }}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{ name: \"x\\n  - name: evil\\n    endpoints: [6.6.6.6:80]\\n  #\" }}\nspec: {{ host: reviews, trafficPolicy: {{ loadBalancer: {{ simple: RANDOM }} }} }}\n"
            ), false);
    let cfg = config::load_str("out.yaml", &imported.config)
        .expect("loads")
        .config;
    assert_eq!(cfg.services.len(), 1, "{}", imported.config);
    assert!(
        imported.config.contains("x\\n  - name: evil"),
        "{}",
        imported.config
    );
}

#[test]
fn fields_of_the_wrong_shape_are_errors_not_silence() {
    let imported = import_one(format!(
                "{VS}  http:\n    - route:\n        - {{ destination: {{ host: reviews, subset: a }}, weight: -5 }}\n        - {{ destination: {{ host: reviews, subset: b }}, weight: 50.5 }}\n    - route: [{{ destination: {{ host: reviews }} }}]\n      retries: 3\n      fault: yes\n"
            ), false);
    let errors = errors(&imported);
    for want in [
        "route[0].weight: error: expected a whole number of at least 0, found the number -5",
        "route[1].weight: error: expected a whole number of at least 0, found the number 50.5",
        "http[1].retries: error: expected a mapping, found the number 3",
        "http[1].fault: error: expected a mapping, found the string \"yes\"",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "{want}: {errors:?}"
        );
    }
}

#[test]
fn generated_names_stay_within_63_characters() {
    let long = "a".repeat(62);
    let (_, cfg) = translate(&format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: {long} }}\nspec:\n  hosts: [reviews]\n  http:\n    - match: [{{ uri: {{ prefix: /a }} }}, {{ uri: {{ prefix: /b }} }}]\n      route: [{{ destination: {{ host: reviews }} }}]\n"
    ));
    assert!(cfg.listeners[0].routes.iter().all(|r| r.name.len() <= 63));
}

#[test]
fn retriable_status_codes_are_the_codes_listed_beside_it() {
    let (_, cfg) = translate(&format!(
        "{VS}  http:\n    - route: [{{ destination: {{ host: reviews }} }}]\n      retries: {{ attempts: 1, retryOn: \"retriable-status-codes,502\" }}\n"
    ));
    let retries = cfg.listeners[0].routes[0]
        .retries
        .as_ref()
        .expect("retries");
    assert_eq!(retries.on, [RetryOn::Status(502)]);
}

#[test]
fn zero_means_unset_where_istio_applies_only_values_above_zero() {
    let (_, cfg) = translate(&format!(
        "{VS}  http:\n    - route: [{{ destination: {{ host: reviews }} }}]\n---\n{DR}  trafficPolicy:\n    connectionPool: {{ tcp: {{ maxConnections: 0 }}, http: {{ maxRetries: 0, http2MaxRequests: 0 }} }}\n    outlierDetection: {{ consecutiveErrors: 0, maxEjectionPercent: 0 }}\n"
    ));
    let s = &cfg.services[0];
    assert_eq!(s.limits, crate::import::draft::unlimited());
    let od = s.outlier_detection.as_ref().expect("outlier detection");
    assert_eq!((od.consecutive_5xx, od.max_ejection_percent), (5, 10.0));
    // The deprecated field counts gateway errors, and the current ones override it.
    let (_, cfg) = translate(&format!(
        "{VS}  http:\n    - route: [{{ destination: {{ host: reviews }} }}]\n---\n{DR}  trafficPolicy:\n    outlierDetection: {{ consecutiveErrors: 4, consecutiveGatewayErrors: 2 }}\n"
    ));
    let od = cfg.services[0].outlier_detection.as_ref().expect("outlier");
    assert_eq!((od.consecutive_5xx, od.consecutive_gateway_errors), (0, 2));
}

#[test]
fn a_service_without_outlier_detection_ejects_nothing_as_in_istio() {
    let (imported, cfg) = translate(&format!(
        "{VS}  http:\n    - route: [{{ destination: {{ host: reviews }} }}]\n"
    ));
    let od = cfg.services[0]
        .outlier_detection
        .as_ref()
        .expect("written out");
    assert_eq!((od.consecutive_5xx, od.consecutive_gateway_errors), (0, 0));
    assert!(imported.config.contains("# the source ejects no endpoint"));
}

#[test]
fn a_destination_rule_no_route_uses_is_still_read_and_said() {
    let imported = import_one(format!(
                "{VS}  http:\n    - route: [{{ destination: {{ host: reviews }} }}]\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{ name: ratings }}\nspec:\n  host: ratings\n  trafficPolicy:\n    loadBalancer: {{ simple: PASSTHROUGH }}\n"
            ), false);
    let all = lines(&imported);
    has(&all, "simple: not supported by weir");
    has(&all, "no route sends traffic to ratings");
    assert!(!imported.config.contains("name: ratings"));
}

#[test]
fn mesh_scope_policies_with_a_selector_and_sources_weir_cannot_check() {
    let (imported, cfg) = translate(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: gw, namespace: istio-system }\nspec:\n  selector: { matchLabels: { app: istio-ingressgateway } }\n  mtls: { mode: DISABLE }\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: { name: mesh, namespace: istio-system }\nspec:\n  mtls: { mode: STRICT }\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: a, namespace: shop }\nspec:\n  rules:\n    - from: [{ source: { principals: [\"cluster.local/ns/web/sa/front\", \"cluster.local/ns/ops/sa/x\"], namespaces: [web] } }]\n    - from: [{ source: { notPrincipals: [\"cluster.local/ns/evil/sa/x\"] } }]\n",
    );
    let tls = cfg.listeners[0].tls.as_ref().expect("inbound tls");
    assert_eq!(
        tls.mode,
        TlsMode::Strict,
        "the gateway's policy is not this proxy's"
    );
    assert!(
        tls.allow.is_empty(),
        "notPrincipals alone lets every other caller in"
    );
    let all = lines(&imported);
    has(
        &all,
        "principals[1]: note: not in the source's `namespaces`",
    );
    has(&all, "notPrincipals: not supported by weir");
}

#[test]
fn an_allow_list_also_keeps_plaintext_callers_out_as_in_istio() {
    // weir's `allow` answers 403 to a plaintext client of a permissive listener, as Istio
    // denies a caller without a principal: nothing to report.
    let imported = import_one(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: { name: a, namespace: shop }\nspec:\n  rules:\n    - from: [{ source: { principals: [\"cluster.local/ns/web/sa/front\"] } }]\n",
        false,
    );
    assert!(unsupported(&imported).is_empty(), "{:?}", lines(&imported));
    assert!(
        imported.config.contains("      mode: permissive\n"),
        "{}",
        imported.config
    );
}

#[test]
fn gateways_empty_subsets_without_labels_and_undefined_subsets() {
    let (imported, cfg) = translate(&format!(
        "{VS}  gateways: []\n  http:\n    - route:\n        - {{ destination: {{ host: reviews, subset: all }}, weight: 50 }}\n        - {{ destination: {{ host: reviews, subset: ghost }}, weight: 50 }}\n---\n{DR}  subsets:\n    - name: all\n"
    ));
    let all_subset = cfg
        .services
        .iter()
        .find(|s| s.name == "reviews-all")
        .expect("subset");
    assert!(
        matches!(&all_subset.discovery, Some(config::Discovery::Kubernetes { service, .. }) if service == "reviews"),
        "a subset without labels is the whole host: {:?}",
        all_subset.discovery
    );
    let notes = lines(&imported);
    has(
        &notes,
        "no DestinationRule in the input defines subset ghost",
    );
}
