//! `VirtualService` → routes of the outbound listener.
//!
//! Istio's meaning, kept: the `match` blocks of an `http` rule are ORed and the fields of a
//! block ANDed, so each block is one weir route (tried in order, like Istio's); a rule with
//! no `match` matches everything; requests to the hosts that no rule matches get 404, as
//! Envoy answers them; a rule without `retries` gets Istio's default retry policy, written
//! out; fault percentages are fractions; `mirrorPercentage` absent is 100%.

use std::time::Duration;

use super::duration;
use crate::config::{
    AuthorityMatch, Backend, Fault, FaultAbort, FaultDelay, HeaderMatch, HeaderRule, Mirror,
    PathMatch, Retries, RetryOn, RouteMatch,
};
use crate::import::draft::{Host, Origin, RouteDraft, ServiceKey, ISTIO_DEFAULTS};
use crate::import::report::Reports;
use crate::import::source::{Obj, Resource};
use crate::import::Cx;

/// Istio's retry policy for a route that sets none: 2 retries on connect failures,
/// refused streams, gRPC `unavailable` and `cancelled`, and 503 (`retriable-status-codes`).
const DEFAULT_RETRY_NOTE: &str = "Istio's default retry policy (the rule sets no `retries`): 2 retries on connect-failure, refused-stream (weir: reset), 503; gRPC unavailable/cancelled have no weir equivalent";

/// Translates one VirtualService.
pub fn translate(res: &Resource, cx: &mut Cx<'_>) {
    let spec = res.spec();
    if let Some(gateways) = spec.get("gateways") {
        let names: Vec<String> = gateways.items().iter().filter_map(|g| g.text()).collect();
        // An empty list means `mesh`, as no list does.
        if !names.is_empty() && !names.iter().any(|g| g == "mesh") {
            gateways.unsupported(
                &mut cx.reports,
                "weir is a sidecar; a VirtualService bound only to gateways is not translated",
            );
            return;
        }
        if names.len() > 1 {
            gateways.note(
                &mut cx.reports,
                "only the `mesh` part is translated; the gateway bindings are not",
            );
        }
    }
    if let Some(export) = spec.get("exportTo") {
        export.note(
            &mut cx.reports,
            "weir's configuration is per workload: the rules apply to this proxy wherever it is",
        );
    }
    let hosts: Vec<Host> = spec
        .list("hosts")
        .iter()
        .filter_map(|h| h.text())
        .map(|h| Host::parse(&h, &res.namespace))
        .collect();
    if hosts.is_empty() {
        res.report(
            &mut cx.reports,
            crate::import::Severity::Error,
            "a VirtualService needs `hosts`; skipped",
        );
        return;
    }
    let authority = authority_of(&hosts, &cx.options.layout.namespace);
    let mut catch_all = false;
    let mut first_backend: Option<String> = None;
    for (i, rule) in spec.list("http").iter().enumerate() {
        let made = http_rule(res, rule, i, &authority, cx);
        if let Some((all, backend)) = made {
            catch_all |= all;
            first_backend = first_backend.or(backend);
        }
    }
    for key in ["tcp", "tls"] {
        if let Some(section) = spec.get(key) {
            section.unsupported(
                &mut cx.reports,
                format!("`{key}` routes are not translated; that traffic follows weir's transparent routing (the destination's own service)"),
            );
        }
    }
    if cx.options.layout.transparent {
        // The Service itself claims its cluster IP, so the connection reaches these routes.
        for host in hosts.iter().filter(|h| h.namespace().is_some()) {
            let origin = cx.origin(&spec, "hosts");
            let key = ServiceKey {
                host: host.clone(),
                subset: None,
                port: None,
            };
            cx.draft.service(&key, ISTIO_DEFAULTS, &origin);
        }
    }
    if let (false, Some(backend)) = (catch_all, first_backend) {
        let origin = cx.origin(&spec, "no rule matched");
        let name = cx.draft.route_name(&format!("{}-no-match", res.name));
        cx.draft.routes.push(RouteDraft::not_found(
            name,
            origin,
            authority,
            backend,
            "requests to these hosts that no rule matches get 404, as in Istio",
        ));
    }
    spec.finish(&mut cx.reports, &|key| {
        format!("`{key}` is not translated; the routes behave as if it were absent")
    });
}

/// One authority condition for every host of the VirtualService.
fn authority_of(hosts: &[Host], local: &str) -> AuthorityMatch {
    if let [one] = hosts {
        return one.authority(local);
    }
    let parts: Vec<String> = hosts
        .iter()
        .map(|h| match h.authority(local) {
            AuthorityMatch::Regex(re) => format!("(?:{re})"),
            AuthorityMatch::Exact(s) | AuthorityMatch::Prefix(s) => {
                format!("(?:{}(:[0-9]+)?)", regex::escape(&s))
            }
        })
        .collect();
    AuthorityMatch::Regex(parts.join("|"))
}

/// Translates `http[i]`; returns whether it matches every request, and its first backend.
fn http_rule(
    res: &Resource,
    rule: &Obj<'_>,
    i: usize,
    authority: &AuthorityMatch,
    cx: &mut Cx<'_>,
) -> Option<(bool, Option<String>)> {
    let rule_name = rule.str("name");
    for key in ["redirect", "directResponse", "delegate"] {
        if let Some(f) = rule.get(key) {
            f.unsupported(
                &mut cx.reports,
                format!("weir cannot answer with `{key}`; this rule is not translated, so its requests go to the next matching rule"),
            );
            rule.skip(&[
                "match",
                "route",
                "rewrite",
                "headers",
                "corsPolicy",
                "timeout",
                "retries",
                "fault",
                "mirror",
                "mirrorPercentage",
                "mirrorPercent",
                "mirrors",
            ]);
            rule.skip(&["name"]);
            rule.finish(&mut cx.reports, &|key| {
                format!("`{key}` is not translated (the rule is skipped)")
            });
            return None;
        }
    }
    let origin_part = format!("http[{i}]");
    let backends = destinations(rule, cx);
    if backends.is_empty() {
        if rule.list("route").is_empty() {
            rule.error(
                &mut cx.reports,
                "this rule has no `route` destination; skipped",
            );
        }
        return None;
    }
    let timeout = rule.get("timeout").and_then(|t| {
        let d = duration::read(&t, &mut cx.reports)?;
        (d > Duration::ZERO).then_some(d)
    });
    let (retries, retry_note) = retries(rule, &mut cx.reports);
    let fault = fault(rule, &mut cx.reports);
    let mirror = mirror(rule, cx);
    for (key, instead) in [
        (
            "rewrite",
            "requests are forwarded with their path and authority unchanged",
        ),
        (
            "headers",
            "requests and responses are forwarded with their headers unchanged",
        ),
        (
            "corsPolicy",
            "CORS preflight requests are forwarded to the service like any other",
        ),
    ] {
        if let Some(f) = rule.get(key) {
            f.unsupported(&mut cx.reports, instead);
        }
    }
    let blocks = rule.list("match");
    rule.skip(&["name"]);
    rule.finish(&mut cx.reports, &|key| {
        format!("`{key}` is not translated; the route behaves as if it were absent")
    });
    let mut conditions: Vec<(RouteMatch, String)> = Vec::new();
    if blocks.is_empty() {
        conditions.push((RouteMatch::default(), origin_part.clone()));
    }
    for (j, block) in blocks.iter().enumerate() {
        let m = match_block(block, &mut cx.reports);
        conditions.push((m, format!("{origin_part}.match[{j}]")));
    }
    let catch_all = conditions
        .iter()
        .any(|(m, _)| m.path.is_none() && m.headers.is_empty() && m.method.is_none());
    let base = match &rule_name {
        Some(name) => format!("{}-{name}", res.name),
        None => format!("{}-{i}", res.name),
    };
    let several = conditions.len() > 1;
    for (j, (mut matcher, part)) in conditions.into_iter().enumerate() {
        matcher.authority = Some(authority.clone());
        let name = if several {
            cx.draft.route_name(&format!("{base}-{j}"))
        } else {
            cx.draft.route_name(&base)
        };
        let origin = Origin {
            what: format!("{}, {part}", res.title()),
            at: format!("{}:{}", res.file, rule.line()),
        };
        let comments = retry_note.iter().map(|s| s.to_string()).collect();
        cx.draft.routes.push(RouteDraft {
            name,
            origin,
            matcher,
            backends: backends.clone(),
            timeout,
            retries: retries.clone(),
            fault: fault.clone(),
            mirror: mirror.clone(),
            comments,
        });
    }
    Some((catch_all, backends.first().map(|b| b.service.clone())))
}

/// A `match` block: its fields ANDed.
fn match_block(block: &Obj<'_>, reports: &mut Reports) -> RouteMatch {
    let mut m = RouteMatch::default();
    if let Some(uri) = block.get("uri") {
        let found = string_match(&uri, reports);
        let found = found.filter(|(kind, v)| match *kind {
            "regex" => regex_ok(&uri, v, reports),
            _ if !v.starts_with('/') => {
                uri.error(reports, format!("a path {kind} must start with `/`"));
                false
            }
            _ => true,
        });
        m.path = found.map(|(kind, v)| match kind {
            "exact" => PathMatch::Exact(v),
            "prefix" => PathMatch::Prefix(v),
            _ => PathMatch::Regex(v),
        });
    }
    if let Some(method) = block.get("method") {
        match string_match(&method, reports) {
            Some(("exact", v)) => m.method = Some(v.to_ascii_uppercase()),
            Some(_) => method.unsupported(
                reports,
                "weir matches one exact method; this block matches any method",
            ),
            None => {}
        }
    }
    if let Some(headers) = block.get("headers") {
        for (name, rule) in headers.entries() {
            let name = name.to_ascii_lowercase();
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                rule.error(reports, format!("{name:?} is not a header name"));
                continue;
            }
            if rule.is_empty_map() {
                m.headers.push(HeaderMatch {
                    name,
                    rule: HeaderRule::Present(true),
                });
                continue;
            }
            if let Some((kind, v)) = string_match(&rule, reports) {
                if kind == "regex" && !regex_ok(&rule, &v, reports) {
                    continue;
                }
                let rule = match kind {
                    "exact" => HeaderRule::Exact(v),
                    "prefix" => HeaderRule::Prefix(v),
                    _ => HeaderRule::Regex(v),
                };
                m.headers.push(HeaderMatch { name, rule });
            }
        }
    }
    if let Some(ignore) = block.get("ignoreUriCase") {
        if ignore.boolean() == Some(true) {
            ignore.unsupported(
                reports,
                "weir compares paths with their case; requests whose path differs only in case do not take the route",
            );
        }
    }
    block.skip(&["name"]);
    block.finish(reports, &|key| {
        format!("weir cannot match on `{key}`; this block matches whatever it is, so more requests take the route than in Istio")
    });
    m
}

/// Whether `value` (of a `regex` match) compiles as weir compiles it; reported where it
/// is written when it does not (RE2 and Rust's regex differ at the edges).
fn regex_ok(f: &Obj<'_>, value: &str, reports: &mut Reports) -> bool {
    match regex::Regex::new(&format!("^(?:{value})$")) {
        Ok(_) => true,
        Err(e) => {
            let why = e.to_string();
            let why = why
                .lines()
                .last()
                .unwrap_or_default()
                .trim_start_matches("error: ");
            f.error(
                reports,
                format!("weir cannot compile this regex: {why}; the match block is skipped"),
            );
            false
        }
    }
}

/// An Istio `StringMatch` (`exact`, `prefix` or `regex`).
fn string_match(f: &Obj<'_>, reports: &mut Reports) -> Option<(&'static str, String)> {
    let found = ["exact", "prefix", "regex"]
        .into_iter()
        .find_map(|k| f.str(k).map(|v| (k, v)));
    if found.is_none() {
        f.error(reports, "expected `exact`, `prefix` or `regex`");
    }
    f.finish(reports, &|key| format!("`{key}` is not translated"));
    found
}

/// `route[]` destinations as weighted backends.
fn destinations(rule: &Obj<'_>, cx: &mut Cx<'_>) -> Vec<Backend> {
    let routes = rule.list("route");
    let single = routes.len() == 1;
    let mut backends = Vec::new();
    for (k, dest) in routes.iter().enumerate() {
        let Some(d) = dest.get("destination") else {
            dest.error(&mut cx.reports, "a route needs a `destination`; skipped");
            continue;
        };
        let Some(service) = service_of(&d, cx, &format!("route[{k}]")) else {
            continue;
        };
        // One destination takes all traffic whatever its weight; among several, an unset
        // weight is 0.
        let weight = match dest.get("weight").and_then(|w| w.uint()) {
            _ if single => 1,
            Some(w) => u32::try_from(w).unwrap_or(u32::MAX),
            None => 0,
        };
        if let Some(h) = dest.get("headers") {
            h.unsupported(
                &mut cx.reports,
                "requests and responses are forwarded with their headers unchanged",
            );
        }
        dest.finish(&mut cx.reports, &|key| format!("`{key}` is not translated"));
        backends.push(Backend { service, weight });
    }
    if !backends.is_empty() && backends.iter().all(|b| b.weight == 0) {
        rule.error(&mut cx.reports, "every destination has weight 0; skipped");
        return Vec::new();
    }
    backends
}

/// The weir service of a `Destination` (`host`, `subset`, `port.number`).
pub(super) fn service_of(d: &Obj<'_>, cx: &mut Cx<'_>, part: &str) -> Option<String> {
    let res = d.resource();
    let Some(host) = d.str("host") else {
        d.error(&mut cx.reports, "a destination needs a `host`; skipped");
        return None;
    };
    let port = d.get("port").and_then(|p| {
        let number = p.get("number").and_then(|n| n.uint());
        p.finish(&mut cx.reports, &|key| format!("`{key}` is not translated"));
        match number.map(u16::try_from) {
            Some(Ok(n)) if n > 0 => Some(n),
            Some(_) => {
                p.error(&mut cx.reports, "a port is a number from 1 to 65535");
                None
            }
            None => None,
        }
    });
    let key = ServiceKey {
        host: Host::parse(&host, &res.namespace),
        subset: d.str("subset"),
        port,
    };
    d.finish(&mut cx.reports, &|key| format!("`{key}` is not translated"));
    let origin = cx.origin(d, part);
    let i = cx.draft.service(&key, ISTIO_DEFAULTS, &origin);
    Some(cx.draft.services[i].name.clone())
}

/// `retries`, or Istio's default policy when absent; and the comment that says which.
fn retries(rule: &Obj<'_>, reports: &mut Reports) -> (Option<Retries>, Option<&'static str>) {
    let Some(r) = rule.get("retries") else {
        let policy = Retries {
            attempts: 2,
            per_try_timeout: None,
            on: vec![
                RetryOn::ConnectFailure,
                RetryOn::Reset,
                RetryOn::Status(503),
            ],
            budget_percent: 100.0,
        };
        return (Some(policy), Some(DEFAULT_RETRY_NOTE));
    };
    let attempts = r.get("attempts").and_then(|a| a.uint()).unwrap_or(0);
    let per_try_timeout = r
        .get("perTryTimeout")
        .and_then(|t| duration::read(&t, reports))
        .filter(|d| *d > Duration::ZERO);
    if let Some(remote) = r.get("retryRemoteLocalities") {
        if remote.boolean() == Some(true) {
            remote.unsupported(
                reports,
                "weir has no localities; retries may go to any endpoint",
            );
        }
    }
    let on = match r.get("retryOn") {
        Some(on) => retry_on(&on, reports),
        None => vec![
            RetryOn::ConnectFailure,
            RetryOn::Reset,
            RetryOn::Status(503),
        ],
    };
    r.finish(reports, &|key| format!("`{key}` is not translated"));
    if attempts == 0 {
        return (
            None,
            Some("`retries.attempts` is 0: no retries, as in Istio"),
        );
    }
    if on.is_empty() {
        return (
            None,
            Some("no retry condition weir can express: no retries"),
        );
    }
    let policy = Retries {
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        per_try_timeout,
        on,
        budget_percent: 100.0,
    };
    (
        Some(policy),
        Some("Istio has no retry budget: budget_percent 100 (only the service's max_retries bounds them)"),
    )
}

/// Envoy's `retry_on` list as weir conditions; the ones weir lacks are reported.
fn retry_on(field: &Obj<'_>, reports: &mut Reports) -> Vec<RetryOn> {
    let text = field.text().unwrap_or_default();
    let mut on = Vec::new();
    let mut lost = Vec::new();
    for cond in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let mapped = match cond {
            "5xx" => Some(RetryOn::Status5xx),
            "gateway-error" => Some(RetryOn::GatewayError),
            "reset" | "refused-stream" => Some(RetryOn::Reset),
            "connect-failure" => Some(RetryOn::ConnectFailure),
            // The codes are the numbers listed beside it (Istio replaces its default 503
            // with them); the keyword itself adds nothing.
            "retriable-status-codes" => continue,
            "retriable-4xx" => Some(RetryOn::Status(409)),
            code => code
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .map(RetryOn::Status),
        };
        match mapped {
            Some(c) if !on.contains(&c) => on.push(c),
            Some(_) => {}
            None => lost.push(cond),
        }
    }
    if !lost.is_empty() {
        field.unsupported(
            reports,
            format!(
                "weir cannot retry on {}; those failures are not retried",
                lost.join(", ")
            ),
        );
    }
    let codes = text.split(',').any(|c| c.trim().parse::<u16>().is_ok());
    if text
        .split(',')
        .any(|c| c.trim() == "retriable-status-codes")
        && !codes
    {
        field.note(
            reports,
            "retriable-status-codes without codes: Istio then retries no status, and neither does weir",
        );
    }
    if text.split(',').any(|c| c.trim() == "refused-stream") {
        field.note(
            reports,
            "refused-stream becomes weir's `reset`, which also retries other resets before response headers",
        );
    }
    on
}

/// Istio's `Percent` (`{ value: 0.1 }`, a fraction of 100); `None` when absent.
fn percentage(parent: &Obj<'_>, reports: &mut Reports) -> Option<f64> {
    if let Some(p) = parent.get("percentage") {
        let value = p.get("value").and_then(|v| v.number()).unwrap_or(0.0);
        p.finish(reports, &|key| format!("`{key}` is not translated"));
        return Some(value.clamp(0.0, 100.0));
    }
    parent
        .get("percent")
        .and_then(|p| p.number())
        .map(|p| p.clamp(0.0, 100.0))
}

/// `fault`: fixed delays and HTTP aborts, with their percentages.
fn fault(rule: &Obj<'_>, reports: &mut Reports) -> Option<Fault> {
    let f = rule.get("fault")?;
    let delay = f.get("delay").and_then(|d| {
        let fixed = d
            .get("fixedDelay")
            .and_then(|t| duration::read(&t, reports));
        if let Some(e) = d.get("exponentialDelay") {
            e.unsupported(
                reports,
                "weir injects fixed delays only; no delay is injected",
            );
        }
        let percent = percentage(&d, reports);
        d.finish(reports, &|key| format!("`{key}` is not translated"));
        match percent {
            None => {
                d.note(
                    reports,
                    "no `percentage`: Istio delays no request, so no delay is written",
                );
                None
            }
            Some(percent) => {
                if fixed.is_none() && d.get("exponentialDelay").is_none() {
                    d.error(reports, "a delay needs `fixedDelay`; no delay is injected");
                }
                fixed.map(|fixed| FaultDelay { fixed, percent })
            }
        }
    });
    let abort = f.get("abort").and_then(|a| {
        let status = a.get("httpStatus").and_then(|s| s.uint());
        for key in ["grpcStatus", "http2Error"] {
            if let Some(g) = a.get(key) {
                g.unsupported(
                    reports,
                    "weir aborts with an HTTP status only; no abort is injected",
                );
            }
        }
        let percent = percentage(&a, reports);
        a.finish(reports, &|key| format!("`{key}` is not translated"));
        let Some(status) = status else {
            if a.get("grpcStatus").is_none() && a.get("http2Error").is_none() {
                a.error(reports, "an abort needs `httpStatus`; no abort is injected");
            }
            return None;
        };
        let status = u16::try_from(status).unwrap_or(0);
        if !(200..=599).contains(&status) {
            a.error(
                reports,
                format!("{status} is not a status weir can answer with (200-599)"),
            );
            return None;
        }
        match percent {
            None => {
                a.note(
                    reports,
                    "no `percentage`: Istio aborts no request, so no abort is written",
                );
                None
            }
            Some(percent) => Some(FaultAbort { status, percent }),
        }
    });
    f.finish(reports, &|key| format!("`{key}` is not translated"));
    (delay.is_some() || abort.is_some()).then_some(Fault { delay, abort })
}

/// `mirror` with `mirrorPercentage` (absent: 100%), or the first of `mirrors`.
fn mirror(rule: &Obj<'_>, cx: &mut Cx<'_>) -> Option<Mirror> {
    if let Some(m) = rule.get("mirror") {
        let service = service_of(&m, cx, "mirror")?;
        let percent = match rule.get("mirrorPercentage") {
            Some(p) => {
                let value = p.get("value").and_then(|v| v.number()).unwrap_or(0.0);
                p.finish(&mut cx.reports, &|key| format!("`{key}` is not translated"));
                value
            }
            None => rule
                .get("mirrorPercent")
                .and_then(|p| p.number())
                .unwrap_or(100.0),
        };
        return Some(Mirror {
            service,
            percent: percent.clamp(0.0, 100.0),
        });
    }
    let mirrors = rule.list("mirrors");
    let first = mirrors.first()?;
    for extra in &mirrors[1..] {
        extra.unsupported(
            &mut cx.reports,
            "weir mirrors to one service per route; this copy is not sent",
        );
    }
    let percent = first.get("percentage").map_or(100.0, |p| {
        let value = p.get("value").and_then(|v| v.number()).unwrap_or(0.0);
        p.finish(&mut cx.reports, &|key| format!("`{key}` is not translated"));
        value
    });
    let dest = first.get("destination");
    first.finish(&mut cx.reports, &|key| format!("`{key}` is not translated"));
    let Some(dest) = dest else {
        first.error(
            &mut cx.reports,
            "a mirror needs a `destination`; no copies are sent",
        );
        return None;
    };
    let service = service_of(&dest, cx, "mirrors[0]")?;
    Some(Mirror {
        service,
        percent: percent.clamp(0.0, 100.0),
    })
}
