//! `PeerAuthentication` → the inbound listener's `tls.mode`; `AuthorizationPolicy` (ALLOW,
//! by source principal or namespace) → its `allow` list of SPIFFE IDs.
//!
//! A weir configuration is one workload's, so policies apply by Istio's scopes: a policy
//! in the root namespace (`istio-system`) is mesh-wide, one in this proxy's namespace
//! covers it, one with a `selector` is for a workload (assumed to be this one, and said so);
//! the most specific mode wins.

use crate::config::TlsMode;
use crate::import::source::{Obj, Resource};
use crate::import::Cx;

/// Istio's root namespace: policies there are mesh-wide.
const ROOT_NAMESPACE: &str = "istio-system";

/// How specific a policy is (0: it does not apply to this proxy's namespace).
fn scope(res: &Resource, spec: &Obj<'_>, cx: &mut Cx<'_>) -> u8 {
    let node_ns = &cx.options.layout.namespace;
    let selector = spec.get("selector");
    if let Some(selector) = &selector {
        selector.note(
            &mut cx.reports,
            "weir's configuration is for one workload; it is taken to be one this selector picks",
        );
    }
    // A root-namespace policy with a selector is for workloads of the root namespace only.
    match (res.namespace.as_str(), selector.is_some()) {
        (ns, true) if ns == node_ns => 3,
        (ns, false) if ns == node_ns => 2,
        (ROOT_NAMESPACE, false) => 1,
        _ => 0,
    }
}

/// Says that a policy of another namespace does not apply here, and passes over `keys`.
fn skip_elsewhere(res: &Resource, spec: &Obj<'_>, keys: &[&str], cx: &mut Cx<'_>) {
    res.report(
        &mut cx.reports,
        crate::import::Severity::Note,
        format!(
            "in namespace {}, it does not apply to this proxy's namespace {}; skipped",
            res.namespace, cx.options.layout.namespace
        ),
    );
    spec.skip(keys);
}

/// Translates a PeerAuthentication.
pub fn peer_authentication(res: &Resource, cx: &mut Cx<'_>) {
    let spec = res.spec();
    let scope = scope(res, &spec, cx);
    if scope == 0 {
        skip_elsewhere(res, &spec, &["mtls", "portLevelMtls"], cx);
        return;
    }
    let mode = spec.get("mtls").and_then(|m| {
        let mode = m.str("mode");
        m.finish(&mut cx.reports, &|key| format!("`{key}` is not translated"));
        match mode.as_deref() {
            Some("STRICT") => Some(TlsMode::Strict),
            Some("PERMISSIVE") => Some(TlsMode::Permissive),
            Some("DISABLE") => Some(TlsMode::Disabled),
            _ => None, // UNSET inherits.
        }
    });
    if let Some(ports) = spec.get("portLevelMtls") {
        ports.unsupported(
            &mut cx.reports,
            "weir's inbound listener has one mode for every port; the per-port modes are not applied",
        );
    }
    spec.finish(&mut cx.reports, &|key| format!("`{key}` is not translated"));
    if let Some(mode) = mode {
        if scope >= cx.draft.inbound.mode_scope {
            let origin = cx.origin(&spec, "mtls");
            cx.draft.inbound.mode = Some((mode, origin));
            cx.draft.inbound.mode_scope = scope;
        }
    }
}

/// Translates an AuthorizationPolicy.
pub fn authorization_policy(res: &Resource, cx: &mut Cx<'_>) {
    let spec = res.spec();
    let action = spec.str("action").unwrap_or_else(|| "ALLOW".to_string());
    if action != "ALLOW" {
        if let Some(a) = spec.get("action") {
            a.unsupported(
                &mut cx.reports,
                format!("weir enforces ALLOW lists only; this {action} policy is not translated and does not act"),
            );
        }
        spec.skip(&["rules", "selector", "provider", "targetRef", "targetRefs"]);
        return;
    }
    if scope(res, &spec, cx) == 0 {
        skip_elsewhere(res, &spec, &["rules"], cx);
        return;
    }
    let rules = spec.list("rules");
    if rules.is_empty() {
        spec.unsupported(
            &mut cx.reports,
            "an ALLOW policy without rules denies every request; weir cannot deny everyone, so it is not translated",
        );
    }
    let origin = cx.origin(&spec, "rules");
    let mut ids = Vec::new();
    for rule in &rules {
        let from = rule.list("from");
        if from.is_empty() {
            cx.draft.inbound.allow_all = true;
        }
        for f in &from {
            let Some(source) = f.get("source") else {
                cx.draft.inbound.allow_all = true;
                continue;
            };
            source_ids(&source, cx, &mut ids);
            f.finish(&mut cx.reports, &|key| format!("`{key}` is not translated"));
        }
        for (key, instead) in [
            ("to", "weir authorizes callers for the whole workload; allowed peers may call every path, method and port"),
            ("when", "the conditions are not checked; allowed peers are let in whatever they are"),
        ] {
            if let Some(f) = rule.get(key) {
                f.unsupported(&mut cx.reports, instead);
            }
        }
        rule.finish(&mut cx.reports, &|key| format!("`{key}` is not translated"));
    }
    spec.finish(&mut cx.reports, &|key| format!("`{key}` is not translated"));
    let inbound = &mut cx.draft.inbound;
    for id in ids {
        if !inbound.allow.contains(&id) {
            inbound.allow.push(id);
        }
    }
    if !inbound.allow_origins.contains(&origin) {
        inbound.allow_origins.push(origin);
    }
}

/// The SPIFFE IDs a `source` allows: its principals, else its namespaces.
fn source_ids(source: &Obj<'_>, cx: &mut Cx<'_>, ids: &mut Vec<String>) {
    let principals: Vec<Obj<'_>> = source.list("principals");
    let namespaces: Vec<Obj<'_>> = source.list("namespaces");
    if principals.is_empty() && namespaces.is_empty() {
        // Only conditions weir cannot check (reported by `finish` below): the source
        // allows every caller as far as weir can tell.
        cx.draft.inbound.allow_all = true;
    }
    let allowed_namespaces: Vec<String> = namespaces.iter().filter_map(|n| n.text()).collect();
    let mut add = |id: String| {
        if !ids.contains(&id) {
            ids.push(id);
        }
    };
    if !principals.is_empty() {
        for p in &principals {
            let text = p.text().unwrap_or_default();
            // Both lists: a principal must also be in one of the namespaces.
            let in_namespaces = allowed_namespaces.is_empty()
                || allowed_namespaces.iter().any(|ns| {
                    ns == "*"
                        || text
                            .split('/')
                            .collect::<Vec<_>>()
                            .windows(2)
                            .any(|w| w[0] == "ns" && w[1] == ns)
                });
            if !in_namespaces {
                p.note(
                    &mut cx.reports,
                    "not in the source's `namespaces`, so it is not allowed",
                );
                continue;
            }
            if text == "*" {
                cx.draft.inbound.allow_all = true;
            } else if text.strip_suffix('*').unwrap_or(&text).contains('*') {
                p.unsupported(
                    &mut cx.reports,
                    "weir matches an identity exactly or by a prefix ending in `*`; this principal is not allowed",
                );
            } else {
                add(format!("spiffe://{text}"));
            }
        }
    } else {
        for n in &namespaces {
            let text = n.text().unwrap_or_default();
            if text == "*" {
                cx.draft.inbound.allow_all = true;
            } else if text.contains('*') {
                n.unsupported(
                    &mut cx.reports,
                    "weir cannot match part of a namespace; not allowed",
                );
            } else {
                add(cx.spiffe(&text, "*"));
            }
        }
    }
    source.finish(&mut cx.reports, &|key| {
        format!("`{key}` is not checked; callers are allowed whatever it is")
    });
}

/// The service accounts of the workloads a Kubernetes Service selects, from the input's
/// Services and workloads (Deployment, StatefulSet, DaemonSet, Pod); empty when unknown.
pub fn service_accounts(resources: &[Resource], service: &str, namespace: &str) -> Vec<String> {
    let Some(svc) = resources.iter().find(|r| {
        r.kind == "Service" && r.group().is_empty() && r.name == service && r.namespace == namespace
    }) else {
        return Vec::new();
    };
    let selector: Vec<(String, String)> = svc
        .spec()
        .get("selector")
        .map(|s| {
            s.entries()
                .into_iter()
                .map(|(k, v)| (k, v.text().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    if selector.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<String> = Vec::new();
    for r in resources.iter().filter(|r| r.namespace == namespace) {
        let pod = match r.kind.as_str() {
            "Deployment" | "StatefulSet" | "DaemonSet" => r.spec().get("template"),
            "Pod" => Some(r.obj()),
            _ => None,
        };
        let Some(pod) = pod else { continue };
        let labels: Vec<(String, String)> = pod
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .map(|l| {
                l.entries()
                    .into_iter()
                    .map(|(k, v)| (k, v.text().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        if !selector.iter().all(|pair| labels.contains(pair)) {
            continue;
        }
        let sa = pod
            .get("spec")
            .and_then(|s| {
                s.str("serviceAccountName")
                    .or_else(|| s.str("serviceAccount"))
            })
            .unwrap_or_else(|| "default".to_string());
        if !found.contains(&sa) {
            found.push(sa);
        }
    }
    found
}
