//! `inject` over whole manifests: order, byte-preservation, idempotence, errors.

use super::*;

fn options(sidecar: SidecarMode) -> Options {
    Options {
        image: "ghcr.io/weir-proxy/weir:test".to_string(),
        init_image: "ghcr.io/weir-proxy/weir-init:test".to_string(),
        config_map: "weir-config".to_string(),
        identity_secret: None,
        sidecar,
        resources: Resources::default(),
    }
}

const SERVICE: &str = "---\n# the front door\napiVersion: v1\nkind: Service\nmetadata:\n  name: web   # keep me\nspec:\n  ports: [{port: 80}]\n";
const DEPLOYMENT: &str = "---\n# the web tier\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: app\n        image: nginx\n";
const CONFIG_MAP: &str =
    "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  n: '1'\n";
const COMMENTS: &str = "---\n# only a comment\n";

fn manifest() -> String {
    [SERVICE, DEPLOYMENT, COMMENTS, CONFIG_MAP].concat()
}

#[test]
fn untouched_documents_come_back_byte_for_byte_in_their_order() {
    let out = inject(&manifest(), &options(SidecarMode::Native)).expect("inject");
    assert_eq!(out.injected, 1);
    assert!(out.text.starts_with(SERVICE), "{}", out.text);
    assert!(
        out.text.ends_with(&[COMMENTS, CONFIG_MAP].concat()),
        "{}",
        out.text
    );
    let docs = documents::split(&out.text);
    assert_eq!(docs.len(), 4);
    assert!(docs[1]
        .text
        .starts_with("---\n# the web tier\napiVersion: apps/v1\n"));
    assert!(docs[1].text.contains("weir.io/injected"));
}

#[test]
fn injecting_the_output_again_changes_nothing() {
    for mode in [SidecarMode::Native, SidecarMode::Legacy] {
        let once = inject(&manifest(), &options(mode)).expect("once");
        let twice = inject(&once.text, &options(mode)).expect("twice");
        assert_eq!(twice.text, once.text);
        assert_eq!(twice.injected, 0);
    }
}

#[test]
fn the_injected_document_reads_back_with_its_keys_in_order() {
    let out = inject(DEPLOYMENT, &options(SidecarMode::Native)).expect("inject");
    let doc: Yaml = serde_saphyr::from_str(&out.text).expect("YAML");
    let Yaml::Map(entries) = &doc else {
        panic!("a mapping")
    };
    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec"]);
    assert_eq!(
        doc.at(&[
            "spec",
            "template",
            "metadata",
            "annotations",
            "prometheus.io/port"
        ]),
        Some(&Yaml::str("9901"))
    );
}

#[test]
fn a_syntax_error_is_placed_on_its_line_in_the_file() {
    let text = format!("{SERVICE}---\napiVersion: v1\nkind: Pod\nmetadata: {{name: [unclosed\n");
    let err = inject(&text, &options(SidecarMode::Native)).expect_err("bad YAML");
    let service_lines = SERVICE.lines().count();
    assert!(
        err.line > service_lines + 1,
        "line {} is after the Service's {service_lines}: {err}",
        err.line
    );
    assert!(err.message.starts_with("invalid YAML"), "{err}");
}

#[test]
fn a_workload_error_names_the_document_line() {
    let text = format!(
        "{SERVICE}---\napiVersion: batch/v1\nkind: Job\nmetadata: {{name: j}}\nspec: {{}}\n"
    );
    let err = inject(&text, &options(SidecarMode::Native)).expect_err("no template");
    assert_eq!(err.line, SERVICE.lines().count() + 1);
    assert!(err.message.contains("Job j"), "{err}");
}

#[test]
fn the_default_image_carries_the_crate_version() {
    assert_eq!(
        default_image(),
        format!("ghcr.io/weir-proxy/weir:{}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn octal_file_modes_keep_the_value_kubernetes_reads() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, image: a}]\n  volumes: [{name: s, secret: {secretName: s, defaultMode: 0400}}]\n";
    let out = inject(text, &options(SidecarMode::Native)).expect("inject");
    let doc: Yaml = serde_saphyr::from_str(&out.text).expect("YAML");
    let Some(Yaml::Seq(volumes)) = doc.at(&["spec", "volumes"]) else {
        panic!("volumes")
    };
    assert_eq!(
        volumes[0].at(&["secret", "defaultMode"]),
        Some(&Yaml::Int(0o400))
    );
}

#[test]
fn the_init_image_is_the_proxy_image_with_init_after_its_name() {
    use super::init_image_of;
    for (image, init) in [
        (
            "ghcr.io/weir-proxy/weir:0.1.0",
            "ghcr.io/weir-proxy/weir-init:0.1.0",
        ),
        ("registry:5000/weir:dev", "registry:5000/weir-init:dev"),
        ("weir", "weir-init"),
        ("weir@sha256:abc", "weir-init@sha256:abc"),
    ] {
        assert_eq!(init_image_of(image), init, "{image}");
    }
}

#[test]
fn inject_false_opts_out_like_disabled_and_only_injected_true_counts_as_done() {
    let deployment = |annotations: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}, annotations: {{{annotations}}}}}\n    spec:\n      containers: [{{name: app, image: a}}]\n"
        )
    };
    for opt_out in [
        "\"weir.io/inject\": \"false\"",
        "\"weir.io/inject\": disabled",
    ] {
        let text = deployment(opt_out);
        let out = inject(&text, &options(SidecarMode::Native)).expect("inject");
        assert_eq!(out.text, text, "{opt_out}");
    }
    let text = deployment("\"weir.io/injected\": \"false\"");
    let out = inject(&text, &options(SidecarMode::Native)).expect("inject");
    assert!(
        out.text.contains("name: weir-init"),
        "an injected marker that is not \"true\" does not stop injection:\n{}",
        out.text
    );
}
