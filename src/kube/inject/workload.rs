//! Which documents are workloads, where their pod template is, and whether to inject it.
//!
//! The decision (inject, skip and why, leave alone) is a pure function of the document;
//! [`super::inject`] performs it.

use super::pod::{self, INJECTED};
use super::yaml::Yaml;
use super::Options;

/// The annotation (on a workload or its pod template) that opts out of injection.
pub const INJECT: &str = "weir.io/inject";

/// What became of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not a workload, opted out or already injected: its text is handed back as it was.
    Untouched,
    /// Left alone for a reason the user should hear about (on stderr).
    Skipped(String),
    /// Its pod template now carries weir.
    Injected,
}

/// Where the pod template of `kind` in `api_version` is: `None` for other kinds (and for
/// a custom resource that happens to share a built-in kind's name).
fn template_path(api_version: &str, kind: &str) -> Option<&'static [&'static str]> {
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    match (group, kind) {
        ("apps" | "extensions", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job")
        | ("", "ReplicationController") => Some(&["spec", "template"]),
        ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template"]),
        ("", "Pod") => Some(&[]),
        _ => None,
    }
}

/// Whether `object` opts out of injection: `weir.io/inject` is `disabled` or `false` (the
/// value users write for Istio's and Linkerd's annotations).
fn opted_out(object: &Yaml) -> bool {
    matches!(annotation(object, INJECT), Some("disabled" | "false"))
}

fn annotation<'a>(object: &'a Yaml, key: &str) -> Option<&'a str> {
    object
        .at(&["metadata", "annotations", key])
        .and_then(Yaml::as_str)
}

/// Injects `object` (or, for a `List`, each of its items) as `options` say. An error names
/// what is wrong with the object, for the caller to place in the file.
pub fn inject(object: &mut Yaml, options: &Options) -> Result<Vec<Outcome>, String> {
    let api_version = object
        .get("apiVersion")
        .and_then(Yaml::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Yaml::as_str).unwrap_or("");
    if api_version == "v1" && kind == "List" {
        return match object.get_mut("items") {
            Some(Yaml::Seq(items)) => {
                let mut outcomes = Vec::new();
                for item in items {
                    outcomes.extend(inject(item, options)?);
                }
                Ok(outcomes)
            }
            _ => Ok(vec![Outcome::Untouched]),
        };
    }
    let Some(path) = template_path(api_version, kind) else {
        return Ok(vec![Outcome::Untouched]);
    };
    let name = object
        .at(&["metadata", "name"])
        .and_then(Yaml::as_str)
        .map(String::from);
    let label = format!("{kind} {}", name.as_deref().unwrap_or("(unnamed)"));
    if opted_out(object) {
        return Ok(vec![Outcome::Untouched]);
    }
    let Some(template) = object.at_mut(path) else {
        return Err(format!(
            "{label} has no pod template at {}; a workload needs one",
            path.join(".")
        ));
    };
    if opted_out(template) || annotation(template, INJECTED) == Some("true") {
        return Ok(vec![Outcome::Untouched]);
    }
    if template.at(&["spec", "hostNetwork"]) == Some(&Yaml::Bool(true)) {
        return Ok(vec![Outcome::Skipped(format!(
            "{label} uses the node's network (hostNetwork: true): not injected, weir-init would rewrite the node's iptables rules"
        ))]);
    }
    pod::inject(template, name.as_deref(), options).map_err(|e| format!("{label}: {e}"))?;
    Ok(vec![Outcome::Injected])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::inject::{Resources, SidecarMode};

    fn options() -> Options {
        Options {
            image: "weir:test".to_string(),
            init_image: "weir-init:test".to_string(),
            config_map: "weir-config".to_string(),
            identity_secret: None,
            sidecar: SidecarMode::Native,
            resources: Resources::default(),
        }
    }

    fn run(text: &str) -> (Vec<Outcome>, Yaml) {
        let mut doc: Yaml = serde_saphyr::from_str(text).expect("YAML");
        let outcomes = inject(&mut doc, &options()).expect("inject");
        (outcomes, doc)
    }

    const POD_SPEC: &str = "{containers: [{name: app, image: a}]}";

    #[test]
    fn every_workload_kind_has_its_pod_template_injected() {
        let cases = [
            ("apps/v1", "Deployment", "spec.template"),
            ("apps/v1", "StatefulSet", "spec.template"),
            ("apps/v1", "DaemonSet", "spec.template"),
            ("apps/v1", "ReplicaSet", "spec.template"),
            ("batch/v1", "Job", "spec.template"),
            ("v1", "ReplicationController", "spec.template"),
            ("batch/v1", "CronJob", "spec.jobTemplate.spec.template"),
        ];
        for (api, kind, path) in cases {
            let mut text = format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: w}}\n");
            let keys: Vec<&str> = path.split('.').collect();
            for (depth, key) in keys.iter().enumerate() {
                text.push_str(&format!("{}{key}:\n", "  ".repeat(depth)));
            }
            text.push_str(&format!("{}spec: {POD_SPEC}\n", "  ".repeat(keys.len())));
            let (outcomes, doc) = run(&text);
            assert_eq!(outcomes, [Outcome::Injected], "{kind}");
            let mut annotations = keys.clone();
            annotations.extend(["metadata", "annotations", INJECTED]);
            assert_eq!(doc.at(&annotations), Some(&Yaml::str("true")), "{kind}");
        }
        let (outcomes, doc) = run(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec: {POD_SPEC}\n"
        ));
        assert_eq!(outcomes, [Outcome::Injected]);
        assert!(doc.at(&["spec", "initContainers"]).is_some());
    }

    #[test]
    fn other_kinds_and_look_alike_custom_resources_are_untouched() {
        for text in [
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
            "apiVersion: example.com/v1\nkind: Deployment\nspec: {template: {spec: {}}}\n",
            "just: data\n",
        ] {
            let before: Yaml = serde_saphyr::from_str(text).expect("YAML");
            let (outcomes, doc) = run(text);
            assert_eq!(outcomes, [Outcome::Untouched], "{text}");
            assert_eq!(doc, before);
        }
    }

    #[test]
    fn the_disabled_annotation_on_the_workload_or_the_template_skips_it() {
        for text in [
            format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: w, annotations: {{weir.io/inject: disabled}}}}\nspec: {{template: {{spec: {POD_SPEC}}}}}\n"),
            format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: w}}\nspec: {{template: {{metadata: {{annotations: {{weir.io/inject: disabled}}}}, spec: {POD_SPEC}}}}}\n"),
        ] {
            assert_eq!(run(&text).0, [Outcome::Untouched], "{text}");
        }
    }

    #[test]
    fn host_network_pods_are_skipped_with_a_reason() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {hostNetwork: true, containers: []}\n";
        let (outcomes, _) = run(text);
        assert!(matches!(&outcomes[..], [Outcome::Skipped(why)] if why.contains("hostNetwork")));
    }

    #[test]
    fn a_workload_without_a_template_is_an_error_naming_it() {
        let mut doc: Yaml = serde_saphyr::from_str(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: w}\nspec: {}\n",
        )
        .expect("YAML");
        let err = inject(&mut doc, &options()).expect_err("no template");
        assert!(
            err.contains("Deployment w") && err.contains("spec.template"),
            "{err}"
        );
    }

    #[test]
    fn the_items_of_a_list_are_injected_one_by_one() {
        let text = format!("apiVersion: v1\nkind: List\nitems:\n- {{apiVersion: v1, kind: Pod, metadata: {{name: p}}, spec: {POD_SPEC}}}\n- {{apiVersion: v1, kind: Service, metadata: {{name: s}}}}\n");
        let (outcomes, _) = run(&text);
        assert_eq!(outcomes, [Outcome::Injected, Outcome::Untouched]);
    }
}
