//! `DestinationRule` → the policies of the services of its host.
//!
//! Each subset is a weir service of its own (`reviews-v1`, discovering the Kubernetes
//! Service of that name); the rule's `trafficPolicy` applies to every service of the host,
//! and a subset's own policy replaces it field by field (`loadBalancer`, `connectionPool`,
//! `outlierDetection`, `tls`), as Istio merges them. Unset connection-pool fields stay
//! unlimited, as Istio leaves them: weir's own protective defaults would give users 503s
//! their Istio mesh never gave.

use std::time::Duration;

use super::duration;
use crate::config::{LoadBalancer, OutlierDetection};
use crate::import::draft::{Host, ServiceKey, Target, ISTIO_DEFAULTS};
use crate::import::report::Reports;
use crate::import::source::{Obj, Resource};
use crate::import::Cx;

/// Translates one DestinationRule.
pub fn translate(res: &Resource, cx: &mut Cx<'_>) {
    let spec = res.spec();
    let Some(host_text) = spec.str("host") else {
        spec.error(&mut cx.reports, "a DestinationRule needs a `host`; skipped");
        return;
    };
    let host = Host::parse(&host_text, &res.namespace);
    if let Some(export) = spec.get("exportTo") {
        export.note(
            &mut cx.reports,
            "weir's configuration is per workload: the policy applies to this proxy's calls",
        );
    }
    if let Some(selector) = spec.get("workloadSelector") {
        selector.unsupported(
            &mut cx.reports,
            "weir's configuration is for one workload; the policy is applied regardless of the selector",
        );
    }
    let top = spec.get("trafficPolicy");
    let subsets = spec.list("subsets");
    // The host's own service (routes without a subset, and in transparent mode the claim of
    // its cluster IP) takes the top-level policy.
    let plain: Vec<usize> = cx
        .draft
        .services_of(&host)
        .into_iter()
        .filter(|&i| cx.draft.services[i].key.subset.is_none())
        .collect();
    let plain = if plain.is_empty() && cx.options.layout.transparent {
        // In a pod, the host's own service claims its cluster IP, so calls routed by no
        // VirtualService still get this policy.
        let origin = cx.origin(&spec, "host");
        let key = ServiceKey {
            host: host.clone(),
            subset: None,
            port: None,
        };
        vec![cx.draft.service(&key, ISTIO_DEFAULTS, &origin)]
    } else {
        plain
    };
    let mut top_applied = !plain.is_empty();
    for &i in &plain {
        let origin = cx.origin(&spec, "trafficPolicy");
        let service = &mut cx.draft.services[i];
        if !service.origins.contains(&origin) {
            service.origins.push(origin);
        }
        if let Some(top) = &top {
            apply(top, &[], i, cx);
        }
    }
    for (k, subset) in subsets.iter().enumerate() {
        let Some(name) = subset.str("name") else {
            subset.error(&mut cx.reports, "a subset needs a `name`; skipped");
            continue;
        };
        cx.draft.defined_subsets.push((host.clone(), name.clone()));
        let users: Vec<usize> = cx
            .draft
            .services_of(&host)
            .into_iter()
            .filter(|&i| cx.draft.services[i].key.subset.as_deref() == Some(name.as_str()))
            .collect();
        let labels = subset.get("labels");
        if labels.is_none() {
            // No labels: the subset is all of the host's endpoints.
            if let Host::Kubernetes { service, .. } = &host {
                for &i in &users {
                    if let Target::Kubernetes {
                        service: target, ..
                    } = &mut cx.draft.services[i].target
                    {
                        target.clone_from(service);
                    }
                }
            }
        }
        if let Some(labels) = labels {
            let pairs: Vec<String> = labels
                .entries()
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.text().unwrap_or_default()))
                .collect();
            if users.is_empty() {
                labels.note(
                    &mut cx.reports,
                    format!("no route sends traffic to subset {name}; no weir service is generated for it"),
                );
            } else if let Host::Kubernetes { service, .. } = &host {
                labels.note(
                    &mut cx.reports,
                    format!("weir finds a subset's endpoints through a Kubernetes Service: create Service {service}-{name} selecting the host's pods with {{{}}}", pairs.join(", ")),
                );
            } else {
                labels.unsupported(
                    &mut cx.reports,
                    "weir cannot select part of a DNS host's addresses; the subset is every address",
                );
            }
        }
        let own = subset.get("trafficPolicy");
        top_applied |= !users.is_empty();
        if let (true, Some(own)) = (users.is_empty(), &own) {
            check_only(own, &host, cx);
        }
        for &i in &users {
            let origin = cx.origin(subset, &format!("subsets[{k}]"));
            let service = &mut cx.draft.services[i];
            if !service.origins.contains(&origin) {
                service.origins.push(origin);
            }
            // Istio merges per setting: a subset's loadBalancer, connectionPool,
            // outlierDetection or tls replaces the top-level one.
            let replaced: Vec<&str> = own.as_ref().map_or(Vec::new(), |own| {
                ["loadBalancer", "connectionPool", "outlierDetection", "tls"]
                    .into_iter()
                    .filter(|k| own.get(k).is_some())
                    .collect()
            });
            if let Some(top) = &top {
                apply(top, &replaced, i, cx);
            }
            if let Some(own) = &own {
                apply(own, &[], i, cx);
            }
        }
        subset.finish(&mut cx.reports, &|key| format!("`{key}` is not translated"));
    }
    if let (false, Some(top)) = (top_applied, &top) {
        top.note(
            &mut cx.reports,
            format!("no route sends traffic to {host_text} here (and without transparent listeners nothing claims it); the policy generates nothing"),
        );
        check_only(top, &host, cx);
    }
    spec.finish(&mut cx.reports, &|key| format!("`{key}` is not translated"));
}

/// Reads `policy` for its reports only (it applies to no generated service): a throwaway
/// service takes it.
fn check_only(policy: &Obj<'_>, host: &Host, cx: &mut Cx<'_>) {
    let key = ServiceKey {
        host: host.clone(),
        subset: Some("\u{0}unused".to_string()),
        port: None,
    };
    let origin = cx.origin(policy, "");
    let i = cx.draft.service(&key, ISTIO_DEFAULTS, &origin);
    apply(policy, &[], i, cx);
    cx.draft.services.remove(i);
}

/// Applies the settings of `policy` (except those in `skip`) to service `i`.
fn apply(policy: &Obj<'_>, skip: &[&str], i: usize, cx: &mut Cx<'_>) {
    let wanted = |key: &str| !skip.contains(&key);
    if wanted("loadBalancer") {
        if let Some(lb) = policy.get("loadBalancer") {
            load_balancer(&lb, i, cx);
        }
    }
    if wanted("connectionPool") {
        if let Some(pool) = policy.get("connectionPool") {
            connection_pool(&pool, i, cx);
        }
    }
    if wanted("outlierDetection") {
        if let Some(od) = policy.get("outlierDetection") {
            cx.draft.services[i].outlier_detection = outlier_detection(&od, &mut cx.reports);
        }
    }
    if wanted("tls") {
        if let Some(tls) = policy.get("tls") {
            client_tls(&tls, i, cx);
        }
    }
    policy.skip(skip);
    if let Some(port_level) = policy.get("portLevelSettings") {
        port_level.unsupported(
            &mut cx.reports,
            "weir applies one policy per service; the per-port settings are not applied",
        );
    }
    policy.finish(&mut cx.reports, &|key| {
        format!("`{key}` is not translated; the service behaves as if it were absent")
    });
}

fn load_balancer(lb: &Obj<'_>, i: usize, cx: &mut Cx<'_>) {
    if let Some(simple) = lb.get("simple") {
        let chosen = match simple.text().unwrap_or_default().as_str() {
            "ROUND_ROBIN" => Some(LoadBalancer::RoundRobin),
            "LEAST_REQUEST" | "LEAST_CONN" | "UNSPECIFIED" => Some(LoadBalancer::LeastRequest),
            "RANDOM" => Some(LoadBalancer::Random),
            other => {
                simple.unsupported(
                    &mut cx.reports,
                    format!("weir has no {other} balancer; it uses least_request, Istio's default"),
                );
                None
            }
        };
        if let Some(chosen) = chosen {
            cx.draft.services[i].load_balancer = chosen;
        }
    }
    if let Some(hash) = lb.get("consistentHash") {
        match hash.str("httpHeaderName") {
            Some(header) => {
                cx.draft.services[i].load_balancer = LoadBalancer::RingHash;
                cx.draft.services[i].ring_hash_header = Some(header.to_ascii_lowercase());
            }
            None => {
                let kind = ["httpCookie", "useSourceIp", "httpQueryParameterName"]
                    .into_iter()
                    .find(|k| hash.get(k).is_some())
                    .unwrap_or("this hash key");
                hash.unsupported(
                    &mut cx.reports,
                    format!("weir hashes a request header only; {kind} is not translated and the service keeps its balancer"),
                );
                hash.skip(&["httpCookie", "useSourceIp", "httpQueryParameterName"]);
            }
        }
        hash.finish(&mut cx.reports, &|key| {
            format!("`{key}` is not translated; weir's ring has a fixed size")
        });
    }
    lb.finish(&mut cx.reports, &|key| {
        format!("`{key}` is not translated; endpoints are balanced without it")
    });
}

fn connection_pool(pool: &Obj<'_>, i: usize, cx: &mut Cx<'_>) {
    let reports = &mut cx.reports;
    let service = &mut cx.draft.services[i];
    // Istio applies a pool setting only above 0: 0 is unset, and unset is unlimited.
    let count = |o: &Obj<'_>, key: &str| {
        o.get(key)
            .and_then(|v| v.uint())
            .filter(|v| *v > 0)
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
    };
    if let Some(tcp) = pool.get("tcp") {
        if let Some(n) = count(&tcp, "maxConnections") {
            service.limits.max_connections = n;
        }
        if let Some(t) = tcp.get("connectTimeout") {
            if let Some(d) = duration::read(&t, reports).filter(|d| *d > Duration::ZERO) {
                service.connect_timeout = d;
            }
        }
        if let Some(t) = tcp.get("idleTimeout") {
            if let Some(d) = duration::read(&t, reports).filter(|d| *d > Duration::ZERO) {
                service.idle_timeout = d;
            }
        }
        tcp.finish(reports, &|key| {
            format!("`{key}` is not translated; connections behave as if it were absent")
        });
    }
    if let Some(http) = pool.get("http") {
        if let Some(n) = count(&http, "http1MaxPendingRequests") {
            service.limits.max_pending_requests = n;
        }
        if let Some(n) = count(&http, "http2MaxRequests") {
            service.limits.max_requests = n;
        }
        if let Some(n) = count(&http, "maxRetries") {
            service.limits.max_retries = n;
        }
        if let Some(t) = http.get("idleTimeout") {
            if let Some(d) = duration::read(&t, reports).filter(|d| *d > Duration::ZERO) {
                service.idle_timeout = d;
            }
        }
        if let Some(policy) = http.get("h2UpgradePolicy") {
            match policy.text().as_deref() {
                Some("UPGRADE") => service.http2 = true,
                Some("DO_NOT_UPGRADE" | "DEFAULT") => {}
                _ => policy.unsupported(
                    reports,
                    "not translated; weir speaks HTTP/1.1 to the service",
                ),
            }
        }
        http.finish(reports, &|key| {
            format!("`{key}` is not translated; requests behave as if it were absent")
        });
    }
    pool.finish(reports, &|key| format!("`{key}` is not translated"));
}

/// Envoy's outlier detection as Istio configures it: unset fields take Istio's defaults
/// (5 consecutive 5xx, gateway errors off, 10 s, 30 s, 10%).
fn outlier_detection(od: &Obj<'_>, reports: &mut Reports) -> Option<OutlierDetection> {
    let count = |key: &str| {
        od.get(key)
            .and_then(|v| v.uint())
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
    };
    // As Istio applies them: the deprecated `consecutiveErrors` (502, 503 and 504: gateway
    // errors) only above 0, and first, so that the current fields override it.
    let (mut consecutive_5xx, mut consecutive_gateway_errors) = (5, 0);
    if let Some(old) = count("consecutiveErrors").filter(|n| *n > 0) {
        consecutive_gateway_errors = old;
        consecutive_5xx = 0;
    }
    if let Some(n) = count("consecutive5xxErrors") {
        consecutive_5xx = n;
    }
    if let Some(n) = count("consecutiveGatewayErrors") {
        consecutive_gateway_errors = n;
    }
    let time = |key: &str, default: u64, reports: &mut Reports| {
        od.get(key)
            .and_then(|t| duration::read(&t, reports))
            .filter(|d| *d > Duration::ZERO)
            .unwrap_or(Duration::from_secs(default))
    };
    let interval = time("interval", 10, reports);
    let base_ejection_time = time("baseEjectionTime", 30, reports);
    // Istio applies it only above 0: 0 keeps Envoy's 10%.
    let max_ejection_percent = od
        .get("maxEjectionPercent")
        .and_then(|v| v.number())
        .filter(|p| *p > 0.0)
        .unwrap_or(10.0)
        .clamp(0.0, 100.0);
    if let Some(min) = od.get("minHealthPercent") {
        if min.number().unwrap_or(0.0) > 0.0 {
            min.unsupported(
                reports,
                "weir keeps ejecting up to max_ejection_percent however few endpoints are healthy",
            );
        }
    }
    od.finish(reports, &|key| {
        format!("`{key}` is not translated; weir counts local (connect) failures as 5xx, as Envoy does by default")
    });
    Some(OutlierDetection {
        consecutive_5xx,
        consecutive_gateway_errors,
        interval,
        base_ejection_time,
        max_ejection_percent,
    })
}

/// `tls.mode: ISTIO_MUTUAL` → mTLS to the destination's service account.
fn client_tls(tls: &Obj<'_>, i: usize, cx: &mut Cx<'_>) {
    let mode = tls.str("mode").unwrap_or_default();
    match mode.as_str() {
        "ISTIO_MUTUAL" => {
            let sans: Vec<String> = tls
                .list("subjectAltNames")
                .iter()
                .filter_map(|s| s.text())
                .collect();
            let identity = match sans.as_slice() {
                [one] => one.clone(),
                _ => {
                    if sans.len() > 1 {
                        if let Some(f) = tls.get("subjectAltNames") {
                            f.unsupported(&mut cx.reports, "weir expects one identity; the first is used");
                        }
                    }
                    match sans.first() {
                        Some(first) => first.clone(),
                        None => identity_of(i, tls, cx),
                    }
                }
            };
            cx.draft.services[i].tls_identity = Some(identity);
        }
        "DISABLE" | "" => cx.draft.services[i].tls_identity = None,
        other => tls.unsupported(
            &mut cx.reports,
            format!("weir originates only mesh mTLS; `{other}` TLS with your own certificates is not translated, and the service is called in plaintext"),
        ),
    }
    if mode != "ISTIO_MUTUAL" {
        // Settings of the modes already reported as not translated.
        tls.skip(&[
            "sni",
            "credentialName",
            "clientCertificate",
            "privateKey",
            "caCertificates",
            "insecureSkipVerify",
        ]);
    }
    tls.finish(&mut cx.reports, &|key| format!("`{key}` is not translated"));
}

/// The SPIFFE ID of the service account behind service `i`: found through the Kubernetes
/// Service and the workload it selects when the input has them, otherwise any service
/// account of the namespace.
fn identity_of(i: usize, at: &Obj<'_>, cx: &mut Cx<'_>) -> String {
    let service = &cx.draft.services[i];
    let Host::Kubernetes {
        service: name,
        namespace,
    } = &service.key.host
    else {
        let id = cx.spiffe(&at.resource().namespace, "*");
        at.note(
            &mut cx.reports,
            format!("a DNS host has no service account weir can know; it accepts any identity of namespace {}: {id} (set subjectAltNames to pin it)", at.resource().namespace),
        );
        return id;
    };
    let found = super::security::service_accounts(cx.resources, name, namespace);
    match found.as_slice() {
        [one] => cx.spiffe(namespace, one),
        _ => {
            let id = cx.spiffe(namespace, "*");
            at.note(
                &mut cx.reports,
                format!("the service account of {name} is not in the input (give its Service and Deployment to pin it); weir accepts any identity of namespace {namespace}: {id}"),
            );
            id
        }
    }
}
