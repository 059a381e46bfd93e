//! Linkerd's retry and timeout annotations (`retry.linkerd.io/*`, `timeout.linkerd.io/*`)
//! on Services, HTTPRoutes and GRPCRoutes, applied to the routes already translated.
//!
//! A Service's annotations apply to every route addressed to it (whichever source made the
//! route); a route resource's annotations apply to the routes made from it: any retry
//! annotation on the route replaces ALL the Service's retry annotations (as Linkerd does),
//! while the timeout annotations override setting by setting. Both sides are read each time a route is touched, so the
//! result does not depend on the order of the files.
//!
//! Retries are on when any of `retry.linkerd.io/http`, `/limit` or `/timeout` is present.
//! The mapping: `retry.linkerd.io/http` (`5xx`, `gateway-error`, codes and ranges; a range
//! covering 500-599 becomes `5xx` plus its other codes; at most 200 single codes; default
//! `5xx`) → `retries.on`; `retry.linkerd.io/limit` (0 to 65535, 0 meaning unset) →
//! `retries.attempts` (default 1);
//! `retry.linkerd.io/timeout` → `retries.per_try_timeout`; `timeout.linkerd.io/request` →
//! the route `timeout`. Linkerd retries have no budget, so `budget_percent` is 100.
//! `retry.linkerd.io/grpc` (gRPC status names), `timeout.linkerd.io/response` and
//! `timeout.linkerd.io/idle` have no weir equivalent and are reported.

use std::time::Duration;

use super::draft::{Host, RouteDraft};
use super::gateway::is_route;
use super::report::Reports;
use super::source::Resource;
use super::Cx;
use crate::config::{parse_duration, Retries, RetryOn};

/// Applies the annotations of a Service or route resource to the routes it concerns.
/// Always false: a Service is a context kind and routes are claimed by the route phase.
pub fn policy(res: &Resource, cx: &mut Cx<'_>) -> bool {
    let own = read_settings(res, &mut cx.reports);
    if own.is_empty() {
        return false;
    }
    let resources = cx.resources;
    let local = cx.options.layout.namespace.clone();
    let local = local.as_str();
    if res.kind == "Service" && res.group().is_empty() {
        let authority = Some(service_host(res).authority(local));
        let mut applied = 0;
        for route in cx.draft.routes.iter_mut() {
            if route.matcher.authority != authority {
                continue;
            }
            applied += 1;
            let route_res = resources
                .iter()
                .find(|r| is_route(r) && made_from(route, r));
            let from_route = route_res
                .map(|r| read_settings(r, &mut Reports::default()))
                .unwrap_or_default();
            apply(&own.overridden_by(&from_route), route);
            note_sources(
                route,
                Some(res),
                route_res.filter(|_| !from_route.is_empty()),
            );
        }
        if applied == 0 {
            report_no_route(res, cx);
        }
    } else if is_route(res) {
        for route in cx.draft.routes.iter_mut() {
            if !made_from(route, res) {
                continue;
            }
            let service_res = resources.iter().find(|s| {
                s.kind == "Service"
                    && s.group().is_empty()
                    && Some(service_host(s).authority(local)) == route.matcher.authority
            });
            let from_service = service_res
                .map(|s| read_settings(s, &mut Reports::default()))
                .unwrap_or_default();
            apply(&from_service.overridden_by(&own), route);
            note_sources(
                route,
                service_res.filter(|_| !from_service.is_empty()),
                Some(res),
            );
        }
    }
    false
}

/// A Service's annotations with no route to apply to (Linkerd applies them to every
/// request to the Service; weir has a route only where a source made one).
fn report_no_route(res: &Resource, cx: &mut Cx<'_>) {
    for (key, _) in &res.annotations {
        if !matches!(
            key.as_str(),
            "retry.linkerd.io/http"
                | "retry.linkerd.io/limit"
                | "retry.linkerd.io/timeout"
                | "timeout.linkerd.io/request"
        ) {
            continue;
        }
        if let Some(at) = res.annotation_obj(key) {
            at.unsupported(
                &mut cx.reports,
                "no translated route addresses this Service, so there is no route to apply it to: requests to the Service are neither retried nor bounded by it (an HTTPRoute, TrafficSplit or VirtualService for the Service gives it one)",
            );
        }
    }
}

/// A comment on `route` naming the resources whose annotations set its retries and timeout
/// (the same text whichever resource is processed first, so it is written once).
fn note_sources(route: &mut RouteDraft, service: Option<&Resource>, route_res: Option<&Resource>) {
    let titles: Vec<String> = [service, route_res]
        .into_iter()
        .flatten()
        .map(Resource::title)
        .collect();
    let line = format!(
        "retries and timeout from the Linkerd annotations of {}",
        titles.join(" and ")
    );
    if !route.comments.contains(&line) {
        route.comments.push(line);
    }
}

fn service_host(res: &Resource) -> Host {
    Host::Kubernetes {
        service: res.name.clone(),
        namespace: res.namespace.clone(),
    }
}

/// Whether `route` was translated from `res` (its origin starts with the resource's title).
fn made_from(route: &RouteDraft, res: &Resource) -> bool {
    let title = res.title();
    route.origin.what == title || route.origin.what.starts_with(&format!("{title},"))
}

/// The settings of one resource's annotations; `None` where it has none.
#[derive(Debug, Clone, Default, PartialEq)]
struct Settings {
    /// Some `retry.linkerd.io/http`, `/limit` or `/timeout` annotation is present: retries
    /// are on (Linkerd enables them with any of the three).
    retry: bool,
    retry_on: Option<Vec<RetryOn>>,
    limit: Option<u32>,
    per_try_timeout: Option<Option<Duration>>,
    timeout: Option<Option<Duration>>,
}

impl Settings {
    fn is_empty(&self) -> bool {
        *self == Settings::default()
    }

    /// These settings overridden by `other` (a route's): its retry annotations replace ALL
    /// of these retry settings when it has any (as Linkerd does); timeouts merge setting by
    /// setting.
    fn overridden_by(&self, other: &Settings) -> Settings {
        let retry = if other.retry { other } else { self };
        Settings {
            retry: retry.retry,
            retry_on: retry.retry_on.clone(),
            limit: retry.limit,
            per_try_timeout: retry.per_try_timeout,
            timeout: other.timeout.or(self.timeout),
        }
    }
}

fn apply(settings: &Settings, route: &mut RouteDraft) {
    if let Some(timeout) = settings.timeout {
        route.timeout = timeout;
    }
    if settings.retry {
        // Linkerd: no `http` retries 5xx; a limit of 0 is unset (1).
        let on = settings
            .retry_on
            .clone()
            .unwrap_or_else(|| vec![RetryOn::Status5xx]);
        route.retries = Some(Retries {
            attempts: settings.limit.filter(|n| *n > 0).unwrap_or(1),
            per_try_timeout: settings.per_try_timeout.flatten(),
            on,
            budget_percent: 100.0,
        });
    }
}

/// The annotations any of which turns Linkerd's retries on.
const RETRY_KEYS: [&str; 3] = [
    "retry.linkerd.io/http",
    "retry.linkerd.io/limit",
    "retry.linkerd.io/timeout",
];

/// How many single status codes `retry.linkerd.io/http` may list (weir writes each).
const MAX_CODES: usize = 200;

/// Reads the Linkerd annotations of `res`, reporting into `reports`.
fn read_settings(res: &Resource, reports: &mut Reports) -> Settings {
    let mut settings = Settings::default();
    for (key, value) in &res.annotations {
        let Some(at) = res.annotation_obj(key) else {
            continue;
        };
        match key.as_str() {
            "retry.linkerd.io/http" => match retry_conditions(value) {
                Ok(on) => {
                    at.note(reports, format!(
                        "retried on {} (weir retry conditions; no retry budget, as Linkerd has none)",
                        describe(&on)
                    ));
                    settings.retry_on = Some(on);
                }
                Err(e) => at.error(reports, format!("{e}; ignored")),
            },
            "retry.linkerd.io/limit" => match value.trim().parse::<u16>() {
                Ok(n) => settings.limit = Some(u32::from(n)),
                Err(_) => at.error(reports, format!("`{value}` is not a number of retries (0 to 65535, as Linkerd reads it); ignored")),
            },
            "retry.linkerd.io/timeout" => {
                if let Some(d) = duration(value, &at, reports) {
                    settings.per_try_timeout = Some(d);
                }
            }
            "timeout.linkerd.io/request" => {
                if let Some(d) = duration(value, &at, reports) {
                    settings.timeout = Some(d);
                }
            }
            "retry.linkerd.io/grpc" => at.unsupported(
                reports,
                "weir retries on HTTP conditions only; gRPC status names are not translated, so these gRPC failures are not retried",
            ),
            "timeout.linkerd.io/response" => at.unsupported(
                reports,
                "weir has no separate bound on the response; only the request timeout (`timeout.linkerd.io/request`) is applied",
            ),
            "timeout.linkerd.io/idle" => at.unsupported(
                reports,
                "weir has no per-route idle timeout; the listener's stream idle timeout applies",
            ),
            other if other.starts_with("retry.linkerd.io/") || other.starts_with("timeout.linkerd.io/") => {
                at.unsupported(reports, "this Linkerd annotation is not translated")
            }
            _ => {}
        }
    }
    settings.retry = RETRY_KEYS.iter().any(|k| res.annotation(k).is_some());
    if settings.retry && res.annotation("retry.linkerd.io/http").is_none() {
        if let Some(at) = RETRY_KEYS.iter().find_map(|k| res.annotation_obj(k)) {
            at.note(
                reports,
                "retries are on without `retry.linkerd.io/http`: retried on 5xx, Linkerd's default",
            );
        }
    }
    settings
}

/// A duration annotation: `Some(None)` for `0s` (no timeout).
fn duration(
    value: &str,
    at: &super::source::Obj<'_>,
    reports: &mut Reports,
) -> Option<Option<Duration>> {
    match parse_duration(value) {
        Ok(d) if d.is_zero() => Some(None),
        Ok(d) => Some(Some(d)),
        Err(e) => {
            at.error(reports, format!("not a duration: {e}; ignored"));
            None
        }
    }
}

/// The conditions of `retry.linkerd.io/http`: `5xx`, `gateway-error`, `503`, `400-599`. A
/// range covering 500-599 is `5xx` plus its other codes one by one; at most [`MAX_CODES`]
/// single codes.
fn retry_conditions(value: &str) -> Result<Vec<RetryOn>, String> {
    let mut on = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "5xx" => on.push(RetryOn::Status5xx),
            "gateway-error" => on.push(RetryOn::GatewayError),
            _ => match item.split_once('-') {
                Some((low, high)) => on.extend(range(item, status(low)?, status(high)?)?),
                None => on.push(RetryOn::Status(status(item)?)),
            },
        }
    }
    if on.is_empty() {
        return Err("no retry condition".to_string());
    }
    let mut seen = Vec::new();
    on.retain(|c| {
        let new = !seen.contains(c);
        seen.push(*c);
        new
    });
    let codes = on
        .iter()
        .filter(|c| matches!(c, RetryOn::Status(_)))
        .count();
    if codes > MAX_CODES {
        return Err(format!(
            "{codes} single status codes; weir takes at most {MAX_CODES} (besides whole 5xx)"
        ));
    }
    Ok(on)
}

/// A status code of `retry.linkerd.io/http`.
fn status(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u16>() {
        Ok(c) if (100..=599).contains(&c) => Ok(c),
        _ => Err(format!("`{s}` is not an HTTP status code")),
    }
}

/// A range of codes: `5xx` for the part covering 500-599 whole, the other codes singly.
fn range(item: &str, low: u16, high: u16) -> Result<Vec<RetryOn>, String> {
    if low > high {
        return Err(format!("`{item}` is not a range of status codes"));
    }
    if low <= 500 && high == 599 {
        let mut on: Vec<RetryOn> = (low..500).map(RetryOn::Status).collect();
        on.push(RetryOn::Status5xx);
        return Ok(on);
    }
    Ok((low..=high).map(RetryOn::Status).collect())
}

fn describe(on: &[RetryOn]) -> String {
    let names: Vec<String> = on
        .iter()
        .map(|c| match c {
            RetryOn::Status5xx => "5xx".to_string(),
            RetryOn::GatewayError => "gateway-error".to_string(),
            RetryOn::Status(code) => code.to_string(),
            RetryOn::ConnectFailure => "connect-failure".to_string(),
            RetryOn::Reset => "reset".to_string(),
        })
        .collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::gateway::testing::{reports, run};

    const ROUTES: &str = "apiVersion: policy.linkerd.io/v1beta3\nkind: HTTPRoute\nmetadata:\n  name: api\n  namespace: shop\n  annotations:\n    retry.linkerd.io/http: gateway-error\n    timeout.linkerd.io/response: 1s\nspec:\n  parentRefs: [{ group: core, kind: Service, name: web, port: 80 }]\n  rules:\n    - matches: [{ path: { value: /api } }]\n      backendRefs: [{ name: web, port: 80 }]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: plain, namespace: shop }\nspec:\n  parentRefs: [{ group: \"\", kind: Service, name: web, port: 80 }]\n  rules:\n    - backendRefs: [{ name: web, port: 80 }]\n";

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\n  annotations:\n    retry.linkerd.io/http: 5xx,429\n    retry.linkerd.io/limit: \"2\"\n    retry.linkerd.io/timeout: 300ms\n    retry.linkerd.io/grpc: unavailable\n    timeout.linkerd.io/request: 10s\nspec:\n  ports: [{ port: 80 }]\n";

    #[test]
    fn annotations_of_the_service_and_the_route_become_retries_and_timeouts() {
        for text in [
            format!("{SERVICE}---\n{ROUTES}"),
            format!("{ROUTES}---\n{SERVICE}"),
        ] {
            let imported = run(&text);
            let c = &imported.config;
            assert!(
                c.contains("timeout: 10s\n        retries: { attempts: 1, on: [gateway-error], budget_percent: 100 }"),
                "the route's retry annotations override all the Service's:\n{c}"
            );
            assert!(
                c.contains("timeout: 10s\n        retries: { attempts: 2, on: [5xx, 429], per_try_timeout: 300ms, budget_percent: 100 }"),
                "the Service's apply to the other route:\n{c}"
            );
            assert_eq!(
                c.matches("# retries and timeout from the Linkerd annotations of Service shop/web and HTTPRoute shop/api\n").count(),
                1,
                "{c}"
            );
            let text = reports(&imported);
            assert!(text.contains("retry.linkerd.io/grpc: not supported by weir: weir retries on HTTP conditions only"), "{text}");
            assert!(
                text.contains("timeout.linkerd.io/response: not supported by weir"),
                "{text}"
            );
            assert!(
                text.contains("retry.linkerd.io/http: note: retried on 5xx, 429"),
                "{text}"
            );
            assert_eq!(text.matches("retried on 5xx, 429").count(), 1, "{text}");
        }
    }

    #[test]
    fn any_retry_annotation_turns_retries_on_with_5xx_by_default() {
        let service = |annotations: &str| {
            format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\n  annotations:\n{annotations}spec:\n  ports: [{{ port: 80 }}]\n---\n{ROUTES}")
        };
        let limit = run(&service("    retry.linkerd.io/limit: \"0\"\n"));
        assert!(
            limit
                .config
                .contains("retries: { attempts: 1, on: [5xx], budget_percent: 100 }"),
            "{}",
            limit.config
        );
        assert!(reports(&limit).contains("retried on 5xx, Linkerd's default"));
        let timeout = run(&service("    retry.linkerd.io/timeout: 2s\n"));
        assert!(
            timeout.config.contains(
                "retries: { attempts: 1, on: [5xx], per_try_timeout: 2s, budget_percent: 100 }"
            ),
            "{}",
            timeout.config
        );
        let big = run(&service("    retry.linkerd.io/limit: \"65536\"\n"));
        assert!(reports(&big).contains("`65536` is not a number of retries (0 to 65535"));
    }

    #[test]
    fn annotations_of_a_service_without_routes_are_reported() {
        let imported = run(&format!(
            "{SERVICE}---\n{}",
            ROUTES.replace(
                "name: web, port: 80 }]\n  rules",
                "name: other, port: 80 }]\n  rules"
            )
        ));
        let text = reports(&imported);
        assert!(
            text.contains("routes.yaml:7:5: Service(shop/web).metadata.annotations.retry.linkerd.io/http: not supported by weir: no translated route addresses this Service"),
            "{text}"
        );
    }

    #[test]
    fn retry_conditions_take_classes_codes_and_ranges() {
        assert_eq!(
            retry_conditions("5xx, gateway-error, 429, 500-502").expect("valid"),
            [
                RetryOn::Status5xx,
                RetryOn::GatewayError,
                RetryOn::Status(429),
                RetryOn::Status(500),
                RetryOn::Status(501),
                RetryOn::Status(502)
            ]
        );
        assert_eq!(
            retry_conditions("500-599").expect("valid"),
            [RetryOn::Status5xx]
        );
        let wide = retry_conditions("400-599").expect("valid");
        assert_eq!(wide.len(), 101);
        assert_eq!(wide[0], RetryOn::Status(400));
        assert_eq!(wide[100], RetryOn::Status5xx);
        assert_eq!(
            retry_conditions("100-299").expect("valid").len(),
            200,
            "200 single codes are allowed"
        );
        for bad in ["", "400-600", "abc", "504-500", "99", "100-300"] {
            assert!(retry_conditions(bad).is_err(), "{bad}");
        }
    }
}
