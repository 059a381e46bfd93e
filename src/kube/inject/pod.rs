//! What injection adds to one pod template: the weir sidecar, the `weir-init` container
//! that installs the redirect rules, the config and identity volumes, the scrape
//! annotations and the marker that makes injection idempotent.
//!
//! The ports and the proxy's uid are DESIGN's: inbound 15006, outbound 15001, admin 9901,
//! uid 1337; `weir init-iptables` is told the same numbers so both sides agree.

use super::yaml::Yaml;
use super::{Options, SidecarMode};

/// The annotation that marks a pod template as injected (and makes injection idempotent).
pub const INJECTED: &str = "weir.io/injected";

/// The port weir's admin server listens on: probes and Prometheus scrape it.
const ADMIN_PORT: i64 = 9901;
const INBOUND_PORT: &str = "15006";
const OUTBOUND_PORT: &str = "15001";
const PROXY_UID: i64 = 1337;

const SIDECAR: &str = "weir";
const INIT: &str = "weir-init";
const CONFIG_VOLUME: &str = "weir-config";
const IDENTITY_VOLUME: &str = "weir-identity";

/// Adds weir to `template` (a pod, or a workload's pod template: `metadata` and `spec`).
/// `workload` names the object for the default identity Secret. Any weir container or
/// volume already there is replaced, never duplicated.
pub fn inject(
    template: &mut Yaml,
    workload: Option<&str>,
    options: &Options,
) -> Result<(), String> {
    let identity = identity_secret(template, workload, options)?;
    let annotations = template
        .entry_map("metadata")
        .and_then(|m| m.entry_map("annotations"))
        .ok_or("its pod metadata.annotations is not a mapping")?;
    annotations.set("prometheus.io/scrape", Yaml::str("true"));
    annotations.set("prometheus.io/port", Yaml::str(ADMIN_PORT.to_string()));
    annotations.set("prometheus.io/path", Yaml::str("/metrics"));
    annotations.set(INJECTED, Yaml::str("true"));

    let spec = template
        .entry_map("spec")
        .ok_or("its pod spec is not a mapping")?;
    let init = spec
        .entry_seq("initContainers")
        .ok_or("its initContainers is not a list")?;
    remove_named(init, &[SIDECAR, INIT]);
    init.insert(0, init_container(&options.init_image));
    if options.sidecar == SidecarMode::Native {
        init.insert(1, sidecar(options));
    }
    let containers = spec
        .entry_seq("containers")
        .ok_or("its containers is not a list")?;
    remove_named(containers, &[SIDECAR, INIT]);
    if options.sidecar == SidecarMode::Legacy {
        containers.insert(0, sidecar(options));
    }
    let volumes = spec
        .entry_seq("volumes")
        .ok_or("its volumes is not a list")?;
    remove_named(volumes, &[CONFIG_VOLUME, IDENTITY_VOLUME]);
    volumes.push(Yaml::map([
        ("name", Yaml::str(CONFIG_VOLUME)),
        (
            "configMap",
            Yaml::map([("name", Yaml::str(&options.config_map))]),
        ),
    ]));
    volumes.push(Yaml::map([
        ("name", Yaml::str(IDENTITY_VOLUME)),
        ("secret", Yaml::map([("secretName", Yaml::str(identity))])),
    ]));
    Ok(())
}

/// `--identity-secret`, else `weir-identity-` and the pod's service account, else the
/// workload's name (a workload certificate is per service account, as its SPIFFE ID).
fn identity_secret(
    template: &Yaml,
    workload: Option<&str>,
    options: &Options,
) -> Result<String, String> {
    if let Some(name) = &options.identity_secret {
        return Ok(name.clone());
    }
    let spec = template.get("spec");
    let account = ["serviceAccountName", "serviceAccount"]
        .iter()
        .find_map(|key| spec.and_then(|s| s.get(key)).and_then(Yaml::as_str))
        .filter(|s| !s.is_empty());
    match account.or(workload) {
        Some(name) => Ok(format!("weir-identity-{name}")),
        None => Err("it has neither a serviceAccountName nor a metadata.name to name its identity Secret after; set one, or pass --identity-secret".to_string()),
    }
}

/// Drops the entries of `list` whose `name` is one of `names`.
fn remove_named(list: &mut Vec<Yaml>, names: &[&str]) {
    list.retain(|item| {
        item.get("name")
            .and_then(Yaml::as_str)
            .is_none_or(|n| !names.contains(&n))
    });
}

/// An HTTP GET of `path` on the admin port.
fn probe(path: &str, period: i64, failures: i64) -> Yaml {
    Yaml::map([
        (
            "httpGet",
            Yaml::map([("path", Yaml::str(path)), ("port", Yaml::Int(ADMIN_PORT))]),
        ),
        ("periodSeconds", Yaml::Int(period)),
        ("failureThreshold", Yaml::Int(failures)),
    ])
}

/// The proxy container. As a native sidecar (an init container that keeps running) its
/// startup probe holds the application back until weir answers `/ready`.
fn sidecar(options: &Options) -> Yaml {
    let mut c = Yaml::map([
        ("name", Yaml::str(SIDECAR)),
        ("image", Yaml::str(&options.image)),
        ("args", Yaml::Seq(vec![Yaml::str("run")])),
    ]);
    if options.sidecar == SidecarMode::Native {
        c.set("restartPolicy", Yaml::str("Always"));
    }
    c.set(
        "ports",
        Yaml::Seq(vec![Yaml::map([
            ("name", Yaml::str("weir-admin")),
            ("containerPort", Yaml::Int(ADMIN_PORT)),
            ("protocol", Yaml::str("TCP")),
        ])]),
    );
    c.set("env", env());
    c.set("resources", options.resources.to_yaml());
    // Up to a minute to start (reading identity, resolving services), checked every second.
    c.set("startupProbe", probe("/ready", 1, 60));
    c.set("readinessProbe", probe("/ready", 5, 3));
    c.set("livenessProbe", probe("/live", 10, 3));
    c.set(
        "volumeMounts",
        Yaml::Seq(vec![
            Yaml::map([
                ("name", Yaml::str(CONFIG_VOLUME)),
                ("mountPath", Yaml::str("/etc/weir")),
                ("readOnly", Yaml::Bool(true)),
            ]),
            Yaml::map([
                ("name", Yaml::str(IDENTITY_VOLUME)),
                ("mountPath", Yaml::str("/etc/weir/identity")),
                ("readOnly", Yaml::Bool(true)),
            ]),
        ]),
    );
    c.set(
        "securityContext",
        Yaml::map([
            ("runAsUser", Yaml::Int(PROXY_UID)),
            ("runAsGroup", Yaml::Int(PROXY_UID)),
            ("runAsNonRoot", Yaml::Bool(true)),
            ("readOnlyRootFilesystem", Yaml::Bool(true)),
            ("allowPrivilegeEscalation", Yaml::Bool(false)),
            ("capabilities", drop_all()),
            (
                "seccompProfile",
                Yaml::map([("type", Yaml::str("RuntimeDefault"))]),
            ),
        ]),
    );
    c
}

fn drop_all() -> Yaml {
    Yaml::map([("drop", Yaml::Seq(vec![Yaml::str("ALL")]))])
}

/// The pod's name and namespace (Downward API) and where the configuration is mounted.
fn env() -> Yaml {
    let field = |name: &str, path: &str| {
        Yaml::map([
            ("name", Yaml::str(name)),
            (
                "valueFrom",
                Yaml::map([("fieldRef", Yaml::map([("fieldPath", Yaml::str(path))]))]),
            ),
        ])
    };
    Yaml::Seq(vec![
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        Yaml::map([
            ("name", Yaml::str("WEIR_CONFIG")),
            ("value", Yaml::str("/etc/weir/weir.yaml")),
        ]),
    ])
}

/// `weir init-iptables` as root with NET_ADMIN and NET_RAW and nothing else: iptables needs
/// both, and the container exits before the application starts.
fn init_container(image: &str) -> Yaml {
    let args = [
        "init-iptables",
        "--inbound-port",
        INBOUND_PORT,
        "--outbound-port",
        OUTBOUND_PORT,
        "--admin-port",
        &ADMIN_PORT.to_string(),
        "--proxy-uid",
        &PROXY_UID.to_string(),
    ]
    .map(Yaml::str);
    let mut caps = drop_all();
    caps.set(
        "add",
        Yaml::Seq(vec![Yaml::str("NET_ADMIN"), Yaml::str("NET_RAW")]),
    );
    Yaml::map([
        ("name", Yaml::str(INIT)),
        ("image", Yaml::str(image)),
        ("args", Yaml::Seq(args.to_vec())),
        (
            "resources",
            Yaml::map([
                (
                    "requests",
                    Yaml::map([("cpu", Yaml::str("10m")), ("memory", Yaml::str("16Mi"))]),
                ),
                (
                    "limits",
                    Yaml::map([("cpu", Yaml::str("100m")), ("memory", Yaml::str("64Mi"))]),
                ),
            ]),
        ),
        (
            "securityContext",
            Yaml::map([
                ("runAsUser", Yaml::Int(0)),
                ("runAsGroup", Yaml::Int(0)),
                ("runAsNonRoot", Yaml::Bool(false)),
                ("privileged", Yaml::Bool(false)),
                ("allowPrivilegeEscalation", Yaml::Bool(false)),
                // iptables takes its lock under /run: the root filesystem stays writable.
                ("readOnlyRootFilesystem", Yaml::Bool(false)),
                ("capabilities", caps),
            ]),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::inject::Resources;

    fn options(mode: SidecarMode) -> Options {
        Options {
            image: "weir:test".to_string(),
            init_image: "weir-init:test".to_string(),
            config_map: "weir-config".to_string(),
            identity_secret: None,
            sidecar: mode,
            resources: Resources::default(),
        }
    }

    fn template(text: &str) -> Yaml {
        serde_saphyr::from_str(text).expect("YAML")
    }

    fn names(spec: &Yaml, key: &str) -> Vec<String> {
        match spec.get(key) {
            Some(Yaml::Seq(items)) => items
                .iter()
                .filter_map(|c| c.get("name").and_then(Yaml::as_str).map(String::from))
                .collect(),
            _ => Vec::new(),
        }
    }

    const APP: &str = "metadata: {labels: {app: web}}\nspec:\n  initContainers: [{name: migrate, image: m}]\n  containers: [{name: app, image: a}]\n";

    #[test]
    fn native_mode_puts_init_then_sidecar_before_the_apps_init_containers() {
        let mut t = template(APP);
        inject(&mut t, Some("web"), &options(SidecarMode::Native)).expect("inject");
        let spec = t.get("spec").expect("spec");
        assert_eq!(
            names(spec, "initContainers"),
            ["weir-init", "weir", "migrate"]
        );
        assert_eq!(names(spec, "containers"), ["app"]);
        let weir = spec.at(&["initContainers"]).and_then(|s| match s {
            Yaml::Seq(items) => items.get(1),
            _ => None,
        });
        let weir = weir.expect("sidecar");
        assert_eq!(weir.get("restartPolicy"), Some(&Yaml::str("Always")));
        assert_eq!(
            weir.at(&["startupProbe", "httpGet", "path"]),
            Some(&Yaml::str("/ready"))
        );
    }

    #[test]
    fn legacy_mode_puts_the_sidecar_first_in_containers_without_restart_policy() {
        let mut t = template(APP);
        inject(&mut t, Some("web"), &options(SidecarMode::Legacy)).expect("inject");
        let spec = t.get("spec").expect("spec");
        assert_eq!(names(spec, "initContainers"), ["weir-init", "migrate"]);
        assert_eq!(names(spec, "containers"), ["weir", "app"]);
        let Some(Yaml::Seq(containers)) = spec.get("containers") else {
            panic!("containers")
        };
        assert_eq!(containers[0].get("restartPolicy"), None);
    }

    #[test]
    fn the_proxy_is_locked_down_and_the_init_container_has_only_net_caps() {
        let mut t = template(APP);
        inject(&mut t, Some("web"), &options(SidecarMode::Native)).expect("inject");
        let Some(Yaml::Seq(init)) = t.at(&["spec", "initContainers"]) else {
            panic!("init")
        };
        let proxy = init[1].get("securityContext").expect("proxy sc");
        assert_eq!(proxy.get("runAsUser"), Some(&Yaml::Int(1337)));
        assert_eq!(proxy.get("runAsNonRoot"), Some(&Yaml::Bool(true)));
        assert_eq!(proxy.get("readOnlyRootFilesystem"), Some(&Yaml::Bool(true)));
        assert_eq!(
            proxy.get("allowPrivilegeEscalation"),
            Some(&Yaml::Bool(false))
        );
        assert_eq!(
            proxy.at(&["capabilities", "drop"]),
            Some(&Yaml::Seq(vec![Yaml::str("ALL")]))
        );
        assert_eq!(proxy.at(&["capabilities", "add"]), None);
        let root = init[0].get("securityContext").expect("init sc");
        assert_eq!(root.get("runAsUser"), Some(&Yaml::Int(0)));
        assert_eq!(root.get("runAsNonRoot"), Some(&Yaml::Bool(false)));
        assert_eq!(
            root.at(&["capabilities", "add"]),
            Some(&Yaml::Seq(vec![
                Yaml::str("NET_ADMIN"),
                Yaml::str("NET_RAW")
            ]))
        );
        let args = init[0].get("args").expect("args");
        let Yaml::Seq(args) = args else {
            panic!("args")
        };
        let args: Vec<&str> = args.iter().filter_map(Yaml::as_str).collect();
        assert_eq!(
            args,
            [
                "init-iptables",
                "--inbound-port",
                "15006",
                "--outbound-port",
                "15001",
                "--admin-port",
                "9901",
                "--proxy-uid",
                "1337"
            ]
        );
    }

    #[test]
    fn the_identity_secret_follows_the_service_account_then_the_workload_name() {
        let mut t = template("spec: {serviceAccountName: reviews, containers: []}\n");
        inject(&mut t, Some("web"), &options(SidecarMode::Native)).expect("inject");
        let Some(Yaml::Seq(volumes)) = t.at(&["spec", "volumes"]) else {
            panic!("volumes")
        };
        assert_eq!(
            volumes[1].at(&["secret", "secretName"]),
            Some(&Yaml::str("weir-identity-reviews"))
        );
        assert_eq!(
            volumes[0].at(&["configMap", "name"]),
            Some(&Yaml::str("weir-config"))
        );

        let mut t = template("spec: {containers: []}\n");
        inject(&mut t, Some("web"), &options(SidecarMode::Native)).expect("inject");
        assert_eq!(
            t.at(&["spec", "volumes"]).and_then(|v| match v {
                Yaml::Seq(v) => v[1].at(&["secret", "secretName"]),
                _ => None,
            }),
            Some(&Yaml::str("weir-identity-web"))
        );

        let mut t = template("spec: {containers: []}\n");
        let err = inject(&mut t, None, &options(SidecarMode::Native)).expect_err("no name");
        assert!(err.contains("--identity-secret"), "{err}");
    }

    #[test]
    fn weir_containers_and_volumes_already_there_are_replaced_not_duplicated() {
        let mut once = template(APP);
        inject(&mut once, Some("web"), &options(SidecarMode::Native)).expect("inject");
        let mut twice = once.clone();
        inject(&mut twice, Some("web"), &options(SidecarMode::Native)).expect("inject");
        assert_eq!(once, twice);
    }

    #[test]
    fn scrape_annotations_and_the_marker_are_set_on_the_pod() {
        let mut t = template(APP);
        inject(&mut t, Some("web"), &options(SidecarMode::Native)).expect("inject");
        let a = t.at(&["metadata", "annotations"]).expect("annotations");
        assert_eq!(a.get("prometheus.io/scrape"), Some(&Yaml::str("true")));
        assert_eq!(a.get("prometheus.io/port"), Some(&Yaml::str("9901")));
        assert_eq!(a.get("prometheus.io/path"), Some(&Yaml::str("/metrics")));
        assert_eq!(a.get(INJECTED), Some(&Yaml::str("true")));
    }
}
