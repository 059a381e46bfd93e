//! Gateway API `HTTPRoute` and `GRPCRoute`, and Linkerd's `HTTPRoute` (the same shape),
//! attached to Services (GAMMA, the mesh pattern Linkerd and Istio read).
//!
//! Every match block of every rule becomes one weir route whose authority condition is the
//! parent Service; the routes of all the resources attached to one Service are written in
//! the spec's precedence order (module `precedence`), because weir takes the first route that
//! matches while the Gateway API picks the most specific match. So all route resources are
//! translated together, when the phase reaches the first of them.
//!
//! Where the spec leaves a choice, or weir differs:
//! - a rule with no `backendRefs` sends to the parent Service, as Linkerd does;
//! - a rule with every weight 0, or whose backends weir cannot send to (a kind other than
//!   Service, a port out of range) is answered 500 as the spec says: a fault abort of 100%
//!   (or of the unusable backends' share of the weight) with the parent Service as a
//!   placeholder backend that is never called;
//! - requests to a parent Service that match none of its routes get 404 (a last route per
//!   parent), unless a match takes every request;
//! - a cross-namespace backendRef without a ReferenceGrant is routed (as Linkerd), noted;
//! - `timeouts.backendRequest` bounds each try when the rule has `retry`; without one the
//!   route timeout is the shorter of `request` and `backendRequest`; `0s` is no timeout;
//! - `retry` always retries connection errors (GEP-1731), plus its `codes`; without
//!   `attempts`, once;
//! - a GRPCRoute match also requires a gRPC `content-type`, so it takes only gRPC requests
//!   (and goes before the HTTPRoute matches of the same Service);
//! - a consumer route (a parent Service in another namespace) is written only when this
//!   proxy (`node.namespace`) is in the route's namespace;
//! - a parent or backend without a port takes the port of the Service when the input
//!   defines that Service with one port.

mod precedence;

use std::time::Duration;

use self::precedence::{PathRank, Rank, Ranked, Specificity};
use super::draft::{Host, Origin, RouteDraft, ServiceKey, LINKERD_DEFAULTS};
use super::source::{Obj, Resource};
use super::Cx;
use crate::config::tree::Value;
use crate::config::{
    parse_duration, Backend, Fault, FaultAbort, HeaderMatch, HeaderRule, Mirror, PathMatch,
    Retries, RetryOn, RouteMatch,
};

/// The two route shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Grpc,
}

fn kind_of(res: &Resource) -> Option<Kind> {
    match (res.group(), res.kind.as_str()) {
        ("gateway.networking.k8s.io" | "policy.linkerd.io", "HTTPRoute") => Some(Kind::Http),
        ("gateway.networking.k8s.io", "GRPCRoute") => Some(Kind::Grpc),
        _ => None,
    }
}

/// Whether `res` is a route this module translates (for the Linkerd annotations, which
/// apply to the routes made from it).
pub(super) fn is_route(res: &Resource) -> bool {
    kind_of(res).is_some()
}

/// Translates every HTTPRoute and GRPCRoute when called with the first of them (precedence
/// is across resources); whether `res` is one.
pub fn route(res: &Resource, cx: &mut Cx<'_>) -> bool {
    if kind_of(res).is_none() {
        return false;
    }
    let resources = cx.resources;
    let first = resources.iter().find(|r| kind_of(r).is_some());
    if first.is_some_and(|f| std::ptr::eq(f, res)) {
        translate_all(resources, cx);
    }
    true
}

/// One weir route before its name is given and its place decided.
struct Pending {
    base_name: String,
    route: RouteDraft,
    /// The weir service of the parent (the backend of its 404 catch-all).
    parent_service: String,
}

fn translate_all(resources: &[Resource], cx: &mut Cx<'_>) {
    let mut pending = Vec::new();
    let mut made: Vec<(&Resource, Kind, Vec<Host>)> = Vec::new();
    for res in resources {
        if let Some(kind) = kind_of(res) {
            let before = pending.len();
            read_route(res, kind, cx, &mut pending);
            let parents = pending[before..].iter().map(|p| p.parent.clone()).collect();
            made.push((res, kind, parents));
        }
    }
    report_grpc_conflicts(&made, cx);
    precedence::sort(&mut pending);
    let mut done: Vec<Host> = Vec::new();
    for (i, p) in pending.iter().enumerate() {
        let mut route = p.item.route.clone();
        route.name = cx.draft.route_name(&p.item.base_name);
        cx.draft.routes.push(route);
        let last_of_parent = pending.get(i + 1).is_none_or(|n| n.parent != p.parent);
        if last_of_parent && !done.contains(&p.parent) {
            done.push(p.parent.clone());
            let parent_routes = pending.iter().filter(|q| q.parent == p.parent);
            if !parent_routes
                .clone()
                .any(|q| catches_all(&q.item.route.matcher))
            {
                let route = not_found_route(p, cx);
                cx.draft.routes.push(route);
            }
        }
    }
}

/// An HTTPRoute sharing a parent with a GRPCRoute: Linkerd then uses only the GRPCRoutes.
fn report_grpc_conflicts(made: &[(&Resource, Kind, Vec<Host>)], cx: &mut Cx<'_>) {
    for (res, kind, parents) in made {
        if *kind != Kind::Http {
            continue;
        }
        let shared = parents.iter().find(|h| {
            made.iter()
                .any(|(_, k, ps)| *k == Kind::Grpc && ps.contains(h))
        });
        if let Some(Host::Kubernetes { service, namespace }) = shared {
            res.report(
                &mut cx.reports,
                super::Severity::Unsupported,
                format!("a GRPCRoute is attached to Service {namespace}/{service} too: Linkerd then uses only the GRPCRoutes and ignores this HTTPRoute; weir keeps its routes, tried after the gRPC ones"),
            );
        }
    }
}

/// Whether a route's conditions (beyond the authority) take every request.
fn catches_all(m: &RouteMatch) -> bool {
    let any_path = match &m.path {
        None => true,
        Some(PathMatch::SegmentPrefix(p)) => p == "/",
        Some(_) => false,
    };
    any_path && m.headers.is_empty() && m.method.is_none()
}

/// The route after a parent's others: the Gateway API answers 404 to requests to a parent
/// Service with routes when no rule matches (Linkerd does too), where weir would otherwise
/// pass them on to the Service.
fn not_found_route(p: &Ranked<Pending>, cx: &mut Cx<'_>) -> RouteDraft {
    let service = p.item.parent_service.clone();
    let local = cx.options.layout.namespace.clone();
    // Not the origin of one route resource: their Linkerd annotations must not apply.
    let origin = Origin {
        what: match &p.parent {
            Host::Kubernetes { service, namespace } => {
                format!("the routes attached to Service {namespace}/{service}")
            }
            Host::Dns(name) => format!("the routes attached to {name}"),
        },
        at: p.item.route.origin.at.clone(),
    };
    RouteDraft::not_found(
        cx.draft.route_name(&format!("{service}-not-found")),
        origin,
        p.parent.authority(&local),
        service,
        "requests to this Service that no rule of its routes matches get 404, as the Gateway API and Linkerd answer them (the backend is a placeholder, never called)",
    )
}

/// A parent Service of a route.
struct Parent {
    host: Host,
    /// Its weir service (the placeholder backend of a rule that answers 500).
    service: String,
}

fn read_route(res: &Resource, kind: Kind, cx: &mut Cx<'_>, out: &mut Vec<Ranked<Pending>>) {
    let spec = res.spec();
    let parents = read_parents(&spec, cx);
    if parents.is_empty() {
        spec.skip(&["rules", "hostnames"]);
        res.report(
            &mut cx.reports,
            super::Severity::Unsupported,
            "no parent of the route is a Service whose clients include this proxy, so no sidecar route comes of it; skipped",
        );
    } else {
        if let Some(hostnames) = spec.get("hostnames") {
            hostnames.unsupported(
                &mut cx.reports,
                "not translated: Linkerd matches these host names too, while weir's routes take every request addressed to the Service whatever its host name, so they are wider",
            );
        }
        let route = RouteResource {
            res,
            kind,
            parents,
            created: creation_timestamp(res),
        };
        for (i, rule) in spec.list("rules").iter().enumerate() {
            read_rule(&route, rule, i, cx, out);
        }
    }
    spec.finish(&mut cx.reports, &|key| {
        format!("`{key}` is not translated; the routes are written without it")
    });
}

fn read_parents(spec: &Obj<'_>, cx: &mut Cx<'_>) -> Vec<Parent> {
    let res = spec.resource();
    let mut parents = Vec::new();
    for (i, p) in spec.list("parentRefs").iter().enumerate() {
        let group = p
            .str("group")
            .unwrap_or_else(|| "gateway.networking.k8s.io".into());
        let kind = p.str("kind").unwrap_or_else(|| "Gateway".into());
        let namespace = p.str("namespace").unwrap_or_else(|| res.namespace.clone());
        let name = p.str("name").unwrap_or_default();
        if kind == "Service" && p.get("group").is_none() {
            p.skip(&["sectionName", "port"]);
            p.unsupported(
                &mut cx.reports,
                "without `group` a parentRef's group is gateway.networking.k8s.io, so this is not the core Service: write `group: \"\"` (or `core`) to attach the route to the Service (this parent is skipped)",
            );
            continue;
        }
        if kind != "Service" || !matches!(group.as_str(), "" | "core") {
            p.skip(&["sectionName", "port"]);
            p.unsupported(
                &mut cx.reports,
                format!("weir is a sidecar; routes attached to a {kind} are not translated (this parent is skipped)"),
            );
            continue;
        }
        if name.is_empty() {
            p.error(
                &mut cx.reports,
                "a parentRef needs a `name`; this parent is skipped",
            );
            continue;
        }
        if namespace != res.namespace && !consumer_route_applies(p, &namespace, cx) {
            p.skip(&["sectionName", "port"]);
            continue;
        }
        if let Some(section) = p.get("sectionName") {
            section.unsupported(
                &mut cx.reports,
                "the routes apply to every port of the Service, not only this named port",
            );
        }
        let port = match p.get("port") {
            Some(port) => {
                port.unsupported(
                    &mut cx.reports,
                    "the routes apply to requests to every port of the Service, not only this one",
                );
                port_number(&port, cx)
            }
            None => service_port(cx.resources, &name, &namespace),
        };
        p.finish(&mut cx.reports, &|key| {
            format!("`{key}` of a parentRef is not translated")
        });
        let host = Host::Kubernetes {
            service: name,
            namespace,
        };
        let origin = cx.origin(p, &format!("parentRefs[{i}]"));
        let key = ServiceKey {
            host: host.clone(),
            subset: None,
            port,
        };
        let index = parent_service(&key, &origin, cx);
        let service = cx.draft.services[index].name.clone();
        if !parents.iter().any(|q: &Parent| q.host == host) {
            parents.push(Parent { host, service });
        }
    }
    parents
}

/// The weir service of a parent Service: with no port known, any service of the Service
/// already made (a parent names no port when any will do), else a new one.
fn parent_service(key: &ServiceKey, origin: &Origin, cx: &mut Cx<'_>) -> usize {
    if key.port.is_none() {
        let existing = cx
            .draft
            .services_of(&key.host)
            .into_iter()
            .find(|&i| cx.draft.services[i].key.subset.is_none());
        if let Some(i) = existing {
            if !cx.draft.services[i].origins.contains(origin) {
                cx.draft.services[i].origins.push(origin.clone());
            }
            return i;
        }
    }
    cx.draft.service(key, LINKERD_DEFAULTS, origin)
}

/// A route in another namespace than its parent Service is a GAMMA consumer route: it
/// applies only to clients in the route's namespace. Whether this proxy (`node.namespace`)
/// is one; reports either way.
fn consumer_route_applies(p: &Obj<'_>, parent_namespace: &str, cx: &mut Cx<'_>) -> bool {
    let route_namespace = p.resource().namespace.as_str();
    let proxy_namespace = cx.options.layout.namespace.as_str();
    if route_namespace == proxy_namespace {
        p.note(
            &mut cx.reports,
            format!("a consumer route (the Service is in {parent_namespace}): it applies to clients in {route_namespace}, as this proxy is"),
        );
        true
    } else {
        p.note(
            &mut cx.reports,
            format!("a consumer route: it applies to clients in {route_namespace} only, and this proxy is in {proxy_namespace}; this parent is skipped"),
        );
        false
    }
}

/// The port of Service `name` when the input defines it with exactly one port.
pub(super) fn service_port(resources: &[Resource], name: &str, namespace: &str) -> Option<u16> {
    let service = resources
        .iter()
        .find(|r| r.kind == "Service" && r.name == name && r.namespace == namespace)?;
    let spec = service.spec();
    let ports = spec.list("ports");
    match ports.as_slice() {
        [only] => only.get("port")?.uint().and_then(|n| u16::try_from(n).ok()),
        _ => None,
    }
}

/// `metadata.creationTimestamp` as a key that sorts in time order (RFC 3339 read without
/// a date crate, offsets and fractions included); the text as written when it is not RFC
/// 3339 (Kubernetes refuses such a timestamp, so only hand-written input has one).
fn creation_timestamp(res: &Resource) -> Option<String> {
    let field = |node: &crate::config::tree::Node, key: &str| match &node.value {
        Value::Map(entries) => entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.clone()),
        _ => None,
    };
    let metadata = field(&res.root, "metadata")?;
    match field(&metadata, "creationTimestamp")?.value {
        Value::Str(s) => Some(rfc3339_key(&s).unwrap_or(s)),
        _ => None,
    }
}

/// An RFC 3339 time as `SECONDS.NANOS` since year 0 (UTC), zero-padded so text order is
/// time order.
fn rfc3339_key(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = text.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[13] != b':'
        || b[16] != b':'
        || !matches!(b[10], b'T' | b't' | b' ')
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos: i64 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<9}", &frac[..digits.min(9)]);
        nanos = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (num(text.len() - 5, 2)? * 3600 + num(text.len() - 2, 2)? * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some(format!("{:013}.{nanos:09}", seconds.max(0)))
}

/// Days from 0000-03-01 (proleptic Gregorian) to a date, shifted so every year from 0000
/// is positive (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe + 366
}

/// What a rule says apart from its matches, shared by the routes of its match blocks.
struct RuleAction {
    backends: Vec<Backend>,
    /// Percentage of requests answered 500 (backends the spec answers 500 for).
    abort_percent: f64,
    mirror: Option<Mirror>,
    timeout: Option<Duration>,
    retries: Option<Retries>,
    comments: Vec<String>,
    /// The rule has no `backendRefs`: its requests go to the parent Service.
    to_parent: bool,
}

/// What the rules of one route resource share.
struct RouteResource<'a> {
    res: &'a Resource,
    kind: Kind,
    parents: Vec<Parent>,
    /// `metadata.creationTimestamp`, for precedence ties.
    created: Option<String>,
}

fn read_rule(
    route: &RouteResource<'_>,
    rule: &Obj<'_>,
    index: usize,
    cx: &mut Cx<'_>,
    out: &mut Vec<Ranked<Pending>>,
) {
    let (res, kind) = (route.res, route.kind);
    rule.skip(&["name"]);
    let action = read_action(kind, rule, cx);
    let matches = rule.list("matches");
    let blocks: Vec<Option<(RouteMatch, Specificity)>> = if matches.is_empty() {
        vec![Some(default_match(kind))]
    } else {
        matches
            .iter()
            .map(|m| match kind {
                Kind::Http => read_http_match(m, cx),
                Kind::Grpc => read_grpc_match(m, cx),
            })
            .collect()
    };
    let several = blocks.len() > 1;
    for (j, block) in blocks.into_iter().enumerate() {
        let Some((matcher, specificity)) = block else {
            continue;
        };
        let (origin, base_name) = if several {
            (
                cx.origin(&matches[j], &format!("rules[{index}].matches[{j}]")),
                format!("{}-{index}-{j}", res.name),
            )
        } else {
            (
                cx.origin(rule, &format!("rules[{index}]")),
                format!("{}-{index}", res.name),
            )
        };
        for parent in &route.parents {
            out.push(Ranked {
                parent: parent.host.clone(),
                rank: Rank {
                    specificity,
                    created: route.created.clone(),
                    route: format!("{}/{}", res.namespace, res.name),
                    rule: index,
                    matched: j,
                },
                item: Pending {
                    parent_service: parent.service.clone(),
                    base_name: base_name.clone(),
                    route: make_route(
                        &origin,
                        matcher.clone(),
                        &action,
                        parent,
                        &cx.options.layout.namespace,
                    ),
                },
            });
        }
    }
    rule.finish(&mut cx.reports, &|key| match key {
        "sessionPersistence" => "requests are balanced without session affinity".to_string(),
        _ => format!("`{key}` is not translated; the rule's routes are written without it"),
    });
}

fn make_route(
    origin: &Origin,
    mut matcher: RouteMatch,
    action: &RuleAction,
    parent: &Parent,
    local: &str,
) -> RouteDraft {
    matcher.authority = Some(parent.host.authority(local));
    let mut comments = action.comments.clone();
    let backends = if action.backends.is_empty() && action.to_parent {
        comments.push(format!(
            "the rule has no backendRefs: its requests go to the parent Service ({}), as Linkerd sends them",
            parent.service
        ));
        vec![Backend {
            service: parent.service.clone(),
            weight: 1,
        }]
    } else if action.backends.is_empty() {
        comments.push(format!(
            "every request is answered 500, as the Gateway API answers a rule without usable backends ({} is a placeholder, never called)",
            parent.service
        ));
        vec![Backend {
            service: parent.service.clone(),
            weight: 1,
        }]
    } else {
        action.backends.clone()
    };
    let fault = (action.abort_percent > 0.0).then_some(Fault {
        delay: None,
        abort: Some(FaultAbort {
            status: 500,
            percent: action.abort_percent,
        }),
    });
    RouteDraft {
        name: String::new(),
        origin: origin.clone(),
        matcher,
        backends,
        timeout: action.timeout,
        retries: action.retries.clone(),
        fault,
        mirror: action.mirror.clone(),
        comments,
    }
}

/// A rule without `matches`: `PathPrefix /` (HTTPRoute), every gRPC request (GRPCRoute).
fn default_match(kind: Kind) -> (RouteMatch, Specificity) {
    match kind {
        Kind::Http => (
            RouteMatch {
                path: Some(PathMatch::SegmentPrefix("/".into())),
                ..RouteMatch::default()
            },
            Specificity::Http {
                path: PathRank::Prefix(1),
                method: false,
                headers: 0,
                query: 0,
            },
        ),
        Kind::Grpc => (
            RouteMatch {
                headers: vec![grpc_content_type()],
                ..RouteMatch::default()
            },
            Specificity::Grpc {
                exact: false,
                service: 0,
                method: 0,
                headers: 0,
            },
        ),
    }
}

/// A GRPCRoute takes gRPC requests only: those with a gRPC content type.
fn grpc_content_type() -> HeaderMatch {
    HeaderMatch {
        name: "content-type".into(),
        rule: HeaderRule::Regex("application/grpc([+;].*)?".into()),
    }
}

/// Whether weir can compile `pattern`; reports it otherwise.
fn compiles(at: &Obj<'_>, pattern: &str, cx: &mut Cx<'_>) -> bool {
    if regex::Regex::new(&format!("^(?:{pattern})$")).is_ok() {
        return true;
    }
    at.unsupported(
        &mut cx.reports,
        "weir cannot compile this regular expression; this match block is not translated, so its requests fall to later routes",
    );
    false
}

fn read_http_match(m: &Obj<'_>, cx: &mut Cx<'_>) -> Option<(RouteMatch, Specificity)> {
    let mut matcher = RouteMatch::default();
    let (path, rank) = match m.get("path") {
        Some(p) => {
            let kind = p.str("type").unwrap_or_else(|| "PathPrefix".into());
            let value = p.str("value").unwrap_or_else(|| "/".into());
            p.finish(&mut cx.reports, &|key| {
                format!("`{key}` of a path match is not translated")
            });
            if kind != "RegularExpression" && !value.starts_with('/') {
                p.error(
                    &mut cx.reports,
                    format!(
                        "the path `{value}` does not start with `/`; this match block is skipped"
                    ),
                );
                return None;
            }
            match kind.as_str() {
                "Exact" => (PathMatch::Exact(value), PathRank::Exact),
                "PathPrefix" => {
                    // `/api/` and `/api` match the same requests, so they rank the same.
                    let trimmed = value.trim_end_matches('/');
                    let n = trimmed.chars().count().max(1);
                    (PathMatch::SegmentPrefix(value), PathRank::Prefix(n))
                }
                "RegularExpression" => {
                    if !compiles(&p, &value, cx) {
                        return None;
                    }
                    let n = value.chars().count();
                    (PathMatch::Regex(value), PathRank::Regex(n))
                }
                other => {
                    p.error(
                        &mut cx.reports,
                        format!("unknown path match type `{other}`; this match block is skipped"),
                    );
                    return None;
                }
            }
        }
        None => (PathMatch::SegmentPrefix("/".into()), PathRank::Prefix(1)),
    };
    matcher.path = Some(path);
    matcher.headers = read_headers(m, cx)?;
    matcher.method = m.str("method").map(|s| s.to_ascii_uppercase());
    let query = m.list("queryParams").len();
    if let Some(q) = m.get("queryParams") {
        q.unsupported(
            &mut cx.reports,
            "requests match regardless of the query string: the weir route is wider than the source's and takes requests the source would leave to other rules",
        );
    }
    m.finish(&mut cx.reports, &|key| {
        format!("`{key}` of a match is not translated; the match is wider")
    });
    let specificity = Specificity::Http {
        path: rank,
        method: matcher.method.is_some(),
        headers: matcher.headers.len(),
        query,
    };
    Some((matcher, specificity))
}

fn read_headers(m: &Obj<'_>, cx: &mut Cx<'_>) -> Option<Vec<HeaderMatch>> {
    let mut headers = Vec::new();
    for h in m.list("headers") {
        let kind = h.str("type").unwrap_or_else(|| "Exact".into());
        let name = h.str("name").unwrap_or_default().to_ascii_lowercase();
        let value = h.str("value").unwrap_or_default();
        h.finish(&mut cx.reports, &|key| {
            format!("`{key}` of a header match is not translated")
        });
        if name.is_empty() {
            h.error(
                &mut cx.reports,
                "a header match needs a `name`; this match block is skipped",
            );
            return None;
        }
        let rule = match kind.as_str() {
            "Exact" => HeaderRule::Exact(value),
            "RegularExpression" => {
                if !compiles(&h, &value, cx) {
                    return None;
                }
                HeaderRule::Regex(value)
            }
            other => {
                h.error(
                    &mut cx.reports,
                    format!("unknown header match type `{other}`; this match block is skipped"),
                );
                return None;
            }
        };
        if headers.iter().any(|x: &HeaderMatch| x.name == name) {
            h.note(
                &mut cx.reports,
                format!("a second match on header `{name}`: the Gateway API counts only the first match of a name, so this one is ignored"),
            );
            continue;
        }
        headers.push(HeaderMatch { name, rule });
    }
    Some(headers)
}

/// A GRPCRoute method match as a path: gRPC calls are `POST /SERVICE/METHOD`.
fn read_grpc_match(m: &Obj<'_>, cx: &mut Cx<'_>) -> Option<(RouteMatch, Specificity)> {
    let mut matcher = RouteMatch::default();
    let mut specificity = Specificity::Grpc {
        exact: false,
        service: 0,
        method: 0,
        headers: 0,
    };
    if let Some(method) = m.get("method") {
        let kind = method.str("type").unwrap_or_else(|| "Exact".into());
        let service = method.str("service");
        let name = method.str("method");
        method.finish(&mut cx.reports, &|key| {
            format!("`{key}` of a method match is not translated")
        });
        let exact = kind == "Exact";
        let path = match (kind.as_str(), &service, &name) {
            (_, None, None) => {
                method.error(
                    &mut cx.reports,
                    "a method match needs `service` or `method`; this match block is skipped",
                );
                return None;
            }
            ("Exact", Some(s), Some(n)) => PathMatch::Exact(format!("/{s}/{n}")),
            ("Exact", Some(s), None) => PathMatch::SegmentPrefix(format!("/{s}")),
            ("Exact", None, Some(n)) => PathMatch::Regex(format!("/[^/]+/{}", regex::escape(n))),
            ("RegularExpression", s, n) => {
                let s = s.clone().unwrap_or_else(|| "[^/]+".into());
                let n = n.clone().unwrap_or_else(|| "[^/]+".into());
                let pattern = format!("/(?:{s})/(?:{n})");
                if !compiles(&method, &pattern, cx) {
                    return None;
                }
                PathMatch::Regex(pattern)
            }
            (other, _, _) => {
                method.error(
                    &mut cx.reports,
                    format!("unknown method match type `{other}`; this match block is skipped"),
                );
                return None;
            }
        };
        matcher.path = Some(path);
        specificity = Specificity::Grpc {
            exact,
            service: service.map_or(0, |s| s.chars().count()),
            method: name.map_or(0, |n| n.chars().count()),
            headers: 0,
        };
    }
    let headers = read_headers(m, cx)?;
    if let Specificity::Grpc { headers: count, .. } = &mut specificity {
        *count = headers.len();
    }
    matcher.headers = headers;
    matcher.headers.push(grpc_content_type());
    m.finish(&mut cx.reports, &|key| {
        format!("`{key}` of a match is not translated; the match is wider")
    });
    Some((matcher, specificity))
}

/// A rule's backends, filters, timeouts and retries.
fn read_action(kind: Kind, rule: &Obj<'_>, cx: &mut Cx<'_>) -> RuleAction {
    let mut action = RuleAction {
        backends: Vec::new(),
        abort_percent: 0.0,
        mirror: None,
        timeout: None,
        retries: None,
        comments: Vec::new(),
        to_parent: false,
    };
    read_backends(kind, rule, &mut action, cx);
    read_filters(rule, &mut action, cx);
    action.retries = read_retry(rule, cx);
    read_timeouts(rule, &mut action, cx);
    action
}

/// The largest backendRef weight the Gateway API CRD accepts.
const MAX_WEIGHT: u64 = 1_000_000;

/// The backends; the weight of backends weir cannot send to (the spec answers 500 for
/// them) becomes an abort percentage.
fn read_backends(kind: Kind, rule: &Obj<'_>, action: &mut RuleAction, cx: &mut Cx<'_>) {
    let res = rule.resource();
    let mut unusable: u64 = 0;
    let mut total: u64 = 0;
    let refs = rule.list("backendRefs");
    for (i, b) in refs.iter().enumerate() {
        let weight = match b.get("weight") {
            None => 1,
            Some(w) => match w.uint() {
                Some(n) if n <= MAX_WEIGHT => n,
                found => {
                    if found.is_some() {
                        w.error(
                            &mut cx.reports,
                            "a weight is at most 1000000 (the CRD's maximum); this backend is skipped",
                        );
                    }
                    b.skip(&["group", "kind", "name", "namespace", "port"]);
                    b.finish(&mut cx.reports, &|key| {
                        format!("`{key}` of a backendRef is not translated")
                    });
                    continue;
                }
            },
        };
        total += weight;
        if let Some(filters) = b.get("filters") {
            filters.unsupported(
                &mut cx.reports,
                "the backend's filters are not applied: requests reach it unchanged",
            );
        }
        let Some(key) = backend_key(b, res, cx) else {
            unusable += weight;
            continue;
        };
        b.finish(&mut cx.reports, &|key| {
            format!("`{key}` of a backendRef is not translated")
        });
        let origin = cx.origin(
            b,
            &format!(
                "{}.backendRefs[{i}]",
                rule.path().trim_start_matches("spec.")
            ),
        );
        let index = cx.draft.service(&key, LINKERD_DEFAULTS, &origin);
        if kind == Kind::Grpc {
            cx.draft.services[index].http2 = true;
        }
        action.backends.push(Backend {
            service: cx.draft.services[index].name.clone(),
            weight: u32::try_from(weight).unwrap_or(u32::MAX),
        });
    }
    if refs.is_empty() {
        rule.note(&mut cx.reports, "the rule has no backendRefs: its requests go to the parent Service, as Linkerd (the GAMMA implementation) sends them to the Service's own endpoints");
        action.to_parent = true;
        return;
    }
    if total == 0 {
        rule.get("backendRefs").into_iter().for_each(|b| {
            b.note(&mut cx.reports, "every backend has weight 0: as the Gateway API does, the rule's requests are answered 500 (a fault abort of 100%)")
        });
        action.backends.clear();
        action.abort_percent = 100.0;
        return;
    }
    if unusable > 0 {
        action.abort_percent = unusable as f64 * 100.0 / total as f64;
        action.comments.push(format!(
            "{}% of requests are answered 500: the share of backends weir cannot send to, as the Gateway API does",
            action.abort_percent
        ));
        if action.backends.iter().all(|b| b.weight == 0) {
            action.backends.clear();
            action.abort_percent = 100.0;
        }
    }
}

/// The weir service a backendRef (or a mirror's) names; reports and `None` for one weir
/// cannot send to.
fn backend_key(b: &Obj<'_>, res: &Resource, cx: &mut Cx<'_>) -> Option<ServiceKey> {
    let group = b.str("group").unwrap_or_default();
    let kind = b.str("kind").unwrap_or_else(|| "Service".into());
    if kind != "Service" || !matches!(group.as_str(), "" | "core") {
        b.skip(&["name", "namespace", "port", "weight", "filters"]);
        b.unsupported(
            &mut cx.reports,
            format!("a backend of kind {kind} is not translated: its share of requests is answered 500, as the Gateway API answers for a backend it cannot resolve"),
        );
        return None;
    }
    let Some(name) = b.str("name") else {
        b.error(
            &mut cx.reports,
            "a backendRef needs a `name`; this backend is skipped",
        );
        return None;
    };
    let namespace = b.str("namespace").unwrap_or_else(|| res.namespace.clone());
    if namespace != res.namespace && !granted(cx.resources, res, &namespace, &name) {
        b.note(
            &mut cx.reports,
            format!("no ReferenceGrant in {namespace} allows this reference: Istio answers 500 for its share, Linkerd routes it; weir routes it"),
        );
    }
    let port = match b.get("port") {
        Some(p) => Some(port_number(&p, cx)?),
        None => {
            b.unsupported(
                &mut cx.reports,
                "a Service backendRef needs a `port` (the Gateway API and Linkerd treat it as invalid); weir sends to the Service's only port when the input defines one, else to port 80",
            );
            service_port(cx.resources, &name, &namespace)
        }
    };
    Some(ServiceKey {
        host: Host::Kubernetes {
            service: name,
            namespace,
        },
        subset: None,
        port,
    })
}

/// Whether a ReferenceGrant in `namespace` lets routes like `from` refer to Service `name`.
fn granted(resources: &[Resource], from: &Resource, namespace: &str, name: &str) -> bool {
    resources
        .iter()
        .filter(|g| {
            g.group() == "gateway.networking.k8s.io"
                && g.kind == "ReferenceGrant"
                && g.namespace == namespace
        })
        .any(|g| {
            let spec = g.spec();
            let from_ok = spec.list("from").iter().any(|f| {
                f.str("group").as_deref() == Some(from.group())
                    && f.str("kind").as_deref() == Some(from.kind.as_str())
                    && f.str("namespace").as_deref() == Some(from.namespace.as_str())
            });
            let to_ok = spec.list("to").iter().any(|t| {
                matches!(t.str("group").as_deref(), Some("" | "core"))
                    && t.str("kind").as_deref() == Some("Service")
                    && t.str("name").is_none_or(|n| n == name)
            });
            from_ok && to_ok
        })
}

/// A `port` field: a number from 1 to 65535; `None` (reported when out of range) otherwise.
fn port_number(p: &Obj<'_>, cx: &mut Cx<'_>) -> Option<u16> {
    let n = p.uint()?;
    match u16::try_from(n) {
        Ok(port) if port > 0 => Some(port),
        _ => {
            p.error(
                &mut cx.reports,
                format!("{n} is not a port (1 to 65535); this reference is not usable"),
            );
            None
        }
    }
}

fn read_filters(rule: &Obj<'_>, action: &mut RuleAction, cx: &mut Cx<'_>) {
    let res = rule.resource();
    for (i, f) in rule.list("filters").iter().enumerate() {
        let kind = f.str("type").unwrap_or_default();
        let instead = match kind.as_str() {
            "RequestMirror" => {
                read_mirror(f, i, res, action, cx);
                continue;
            }
            "RequestHeaderModifier" => "requests are forwarded with their headers unchanged",
            "ResponseHeaderModifier" => "responses are returned with their headers unchanged",
            "RequestRedirect" => "requests are forwarded to the backends instead of redirected",
            "URLRewrite" => "requests are forwarded with their host and path unchanged",
            "ExtensionRef" => "the extension is not applied",
            "CORS" => "no CORS headers are added and preflight requests are forwarded",
            _ => "this filter is not applied",
        };
        f.skip(&[
            "requestHeaderModifier",
            "responseHeaderModifier",
            "requestRedirect",
            "urlRewrite",
            "extensionRef",
            "cors",
        ]);
        f.unsupported(&mut cx.reports, format!("{kind} filter: {instead}"));
    }
}

fn read_mirror(f: &Obj<'_>, i: usize, res: &Resource, action: &mut RuleAction, cx: &mut Cx<'_>) {
    let Some(m) = f.get("requestMirror") else {
        f.error(
            &mut cx.reports,
            "a RequestMirror filter needs `requestMirror`; skipped",
        );
        return;
    };
    f.finish(&mut cx.reports, &|key| {
        format!("`{key}` of a filter is not translated")
    });
    if action.mirror.is_some() {
        m.skip(&["backendRef", "percent", "fraction"]);
        m.unsupported(
            &mut cx.reports,
            "weir mirrors to one service per route; this mirror is not translated",
        );
        return;
    }
    let percent = match (m.get("percent"), m.get("fraction")) {
        (Some(p), _) => p.number().unwrap_or(100.0),
        (None, Some(fr)) => {
            let numerator = fr.get("numerator").and_then(|n| n.number()).unwrap_or(0.0);
            let denominator = fr
                .get("denominator")
                .and_then(|n| n.number())
                .unwrap_or(100.0);
            fr.finish(&mut cx.reports, &|key| {
                format!("`{key}` of a fraction is not translated")
            });
            if denominator <= 0.0 {
                fr.error(
                    &mut cx.reports,
                    "the denominator must be above 0; the mirror is skipped",
                );
                return;
            }
            numerator * 100.0 / denominator
        }
        (None, None) => 100.0,
    };
    let Some(b) = m.get("backendRef") else {
        m.error(&mut cx.reports, "a mirror needs a `backendRef`; skipped");
        return;
    };
    let Some(key) = backend_key(&b, res, cx) else {
        return;
    };
    b.finish(&mut cx.reports, &|key| {
        format!("`{key}` of a mirror's backendRef is not translated")
    });
    m.finish(&mut cx.reports, &|key| {
        format!("`{key}` of a mirror is not translated")
    });
    let origin = cx.origin(f, &format!("filters[{i}]"));
    let index = cx.draft.service(&key, LINKERD_DEFAULTS, &origin);
    action.mirror = Some(Mirror {
        service: cx.draft.services[index].name.clone(),
        percent: percent.clamp(0.0, 100.0),
    });
}

/// A duration field: `Some(None)` for `0s` (no timeout), `None` when absent or invalid.
fn timeout_field(obj: &Obj<'_>, key: &str, cx: &mut Cx<'_>) -> Option<Option<Duration>> {
    let field = obj.get(key)?;
    let text = field.text().unwrap_or_default();
    match parse_duration(&text) {
        Ok(d) if d.is_zero() => Some(None),
        Ok(d) => Some(Some(d)),
        Err(e) => {
            field.error(&mut cx.reports, format!("not a duration: {e}; ignored"));
            None
        }
    }
}

fn read_timeouts(rule: &Obj<'_>, action: &mut RuleAction, cx: &mut Cx<'_>) {
    let Some(t) = rule.get("timeouts") else {
        return;
    };
    let request = timeout_field(&t, "request", cx);
    let backend = timeout_field(&t, "backendRequest", cx);
    action.timeout = request.flatten();
    if let Some(backend) = backend {
        let at = t.get("backendRequest");
        if let Some(retries) = &mut action.retries {
            retries.per_try_timeout = backend;
        } else if let Some(at) = at {
            let bound = match (request.flatten(), backend) {
                (Some(r), Some(b)) => Some(r.min(b)),
                (r, b) => r.or(b),
            };
            action.timeout = bound;
            at.note(
                &mut cx.reports,
                "without retries a request makes one backend request, so the route timeout is the shorter of `request` and `backendRequest`",
            );
        }
    }
    t.finish(&mut cx.reports, &|key| {
        format!("`{key}` timeout is not translated")
    });
}

/// GEP-1731 `retry`: retries after the first attempt, on the listed status codes.
fn read_retry(rule: &Obj<'_>, cx: &mut Cx<'_>) -> Option<Retries> {
    let r = rule.get("retry")?;
    let attempts = match r.get("attempts") {
        Some(a) => match a.uint().map(u32::try_from) {
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                a.error(
                    &mut cx.reports,
                    "more attempts than weir can count (at most 4294967295); the rule is not retried",
                );
                0
            }
            None => 0,
        },
        None => {
            r.note(
                &mut cx.reports,
                "`attempts` is unset: 1 retry, as weir's default",
            );
            1
        }
    };
    let mut on = Vec::new();
    for code in r.list("codes") {
        // A code of the wrong shape is already reported by `uint`.
        match code.uint().map(u16::try_from) {
            Some(Ok(c)) if (100..=599).contains(&c) => on.push(RetryOn::Status(c)),
            Some(_) => code.error(&mut cx.reports, "not an HTTP status code; ignored"),
            None => {}
        }
    }
    if on.is_empty() {
        r.note(
            &mut cx.reports,
            "no `codes`: retried only on connection errors (failed connections, resets, per-try timeouts)",
        );
    }
    // GEP-1731: a retry stanza always retries connection errors (disconnect, reset, timeout,
    // TCP failure); weir's `reset` covers resets and per-try timeouts.
    on.extend([RetryOn::ConnectFailure, RetryOn::Reset]);
    if let Some(backoff) = r.get("backoff") {
        backoff.unsupported(
            &mut cx.reports,
            "retries are spaced by weir's own backoff, not this one",
        );
    }
    r.finish(&mut cx.reports, &|key| {
        format!("`{key}` of retry is not translated")
    });
    if attempts == 0 {
        return None;
    }
    Some(Retries {
        attempts,
        per_try_timeout: None,
        on,
        budget_percent: 100.0,
    })
}

/// Running an import over YAML in tests, checking the result is a valid weir configuration.
#[cfg(test)]
pub(super) mod testing {
    use crate::import::{import, Imported, Input};

    /// Imports `text` (as `routes.yaml`, namespace `shop`) and checks weir loads the result.
    pub fn run(text: &str) -> Imported {
        let options = crate::import::test_options(false);
        let imported = import(
            &[Input {
                name: "routes.yaml".into(),
                text: text.into(),
            }],
            &options,
        );
        if let Err(e) = crate::config::load_str("x", &imported.config) {
            panic!("not a valid weir config: {e:?}\n{}", imported.config);
        }
        imported
    }

    /// The reports as text, one a line.
    pub fn reports(imported: &Imported) -> String {
        imported.reports.iter().map(|r| format!("{r}\n")).collect()
    }

    /// The route names in the order written.
    pub fn route_names(imported: &Imported) -> Vec<String> {
        let mut names = Vec::new();
        let mut in_routes = false;
        for line in imported.config.lines() {
            if line.starts_with("    routes:") {
                in_routes = true;
            } else if !line.starts_with("      ") {
                in_routes = false;
            } else if let Some(name) = line.strip_prefix("      - name: ") {
                if in_routes {
                    names.push(name.to_string());
                }
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{reports, route_names, run};

    const PARENT: &str =
        "  parentRefs:\n    - { group: \"\", kind: Service, name: reviews, port: 9080 }\n";

    fn http_route(name: &str, created: &str, rules: &str) -> String {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: shop\n  creationTimestamp: \"{created}\"\nspec:\n{PARENT}  rules:\n{rules}"
        )
    }

    #[test]
    fn matches_are_written_in_the_spec_precedence() {
        let newer = http_route(
            "newer",
            "2024-05-01T00:00:00Z",
            "    - matches:\n        - path: { type: PathPrefix, value: /api }\n        - path: { type: PathPrefix, value: /abc }\n        - path: { type: PathPrefix, value: /abc }\n          headers: [{ name: X-A, value: \"1\" }, { name: x-b, value: \"2\" }]\n      backendRefs: [{ name: reviews, port: 9080 }]\n    - matches:\n        - path: { type: Exact, value: /abc }\n      backendRefs: [{ name: reviews, port: 9080 }]\n    - matches:\n        - path: { type: PathPrefix, value: /api/v1 }\n        - path: { type: PathPrefix, value: /api }\n          method: GET\n        - path: { type: PathPrefix, value: /abc }\n          headers: [{ name: x-a, value: \"1\" }]\n      backendRefs: [{ name: reviews, port: 9080 }]\n",
        );
        let older = http_route(
            "older",
            "2023-05-01T00:00:00Z",
            "    - matches:\n        - path: { type: PathPrefix, value: /api }\n      backendRefs: [{ name: reviews, port: 9080 }]\n",
        );
        let imported = run(&format!("{newer}---\n{older}"));
        assert_eq!(
            route_names(&imported),
            [
                "newer-1",   // Exact /abc
                "newer-2-0", // /api/v1
                "newer-2-1", // /api with a method (4 characters, as /abc)
                "newer-0-2", // /abc, 2 headers
                "newer-2-2", // /abc, 1 header
                "older-0",   // /api, the older route
                "newer-0-0", // /api, rule 0 match 0
                "newer-0-1", // /abc, rule 0 match 1
                "reviews-not-found",
            ],
            "{}",
            imported.config
        );
        assert!(imported
            .config
            .contains("path: { segment_prefix: /api/v1 }"));
        assert!(imported.config.contains("- { name: x-a, exact: \"1\" }"));
        assert!(imported
            .config
            .contains("# from HTTPRoute shop/newer, rules[1] (routes.yaml:"));
    }

    #[test]
    fn every_route_matches_its_parent_and_the_parent_has_a_service() {
        let imported = run(&http_route(
            "r",
            "2024-05-01T00:00:00Z",
            "    - backendRefs: [{ name: ratings, port: 8080 }]\n",
        ));
        let c = &imported.config;
        assert!(c.contains("authority: { regex: \"reviews(\\\\.shop"), "{c}");
        assert!(c.contains("path: { segment_prefix: / }"), "{c}");
        assert!(
            c.contains("service: reviews, namespace: shop, port: 9080"),
            "{c}"
        );
        assert!(
            c.contains("service: ratings, namespace: shop, port: 8080"),
            "{c}"
        );
        let text = reports(&imported);
        assert!(
            text.contains("routes.yaml:9:50: HTTPRoute(shop/r).spec.parentRefs[0].port: not supported by weir: the routes apply to requests to every port"),
            "{text}"
        );
    }

    #[test]
    fn weights_are_carried_over_and_unusable_backends_answer_500() {
        let imported = run(&http_route(
            "split",
            "2024-05-01T00:00:00Z",
            "    - backendRefs:\n        - { name: v1, port: 80, weight: 90 }\n        - { name: v2, port: 80, weight: 10 }\n    - matches: [{ path: { type: Exact, value: /x } }]\n      backendRefs:\n        - { name: v1, port: 80, weight: 3 }\n        - { group: example.com, kind: Bucket, name: b, weight: 1 }\n    - matches: [{ path: { type: Exact, value: /none } }]\n",
        ));
        let c = &imported.config;
        assert!(
            c.contains("- { service: v1, weight: 90 }\n          - { service: v2, weight: 10 }"),
            "{c}"
        );
        assert!(c.contains("abort: { status: 500, percent: 25 }"), "{c}");
        assert!(!c.contains("abort: { status: 500, percent: 100 }"), "{c}");
        assert!(
            c.contains(
                "# the rule has no backendRefs: its requests go to the parent Service (reviews)"
            ),
            "{c}"
        );
        let text = reports(&imported);
        assert!(
            text.contains("backendRefs[1]: not supported by weir: a backend of kind Bucket"),
            "{text}"
        );
        assert!(
            text.contains("rules[2]: note: the rule has no backendRefs: its requests go to the parent Service"),
            "{text}"
        );
    }

    #[test]
    fn unsupported_filters_and_query_params_are_reported_where_they_are() {
        let imported = run(&http_route(
            "f",
            "2024-05-01T00:00:00Z",
            "    - matches:\n        - queryParams: [{ name: a, value: b }]\n      filters:\n        - type: RequestHeaderModifier\n          requestHeaderModifier: { add: [{ name: a, value: b }] }\n        - type: RequestMirror\n          requestMirror: { backendRef: { name: shadow, port: 80 }, fraction: { numerator: 1, denominator: 4 } }\n      backendRefs: [{ name: reviews, port: 9080 }]\n      sessionPersistence: { type: Cookie }\n",
        ));
        let text = reports(&imported);
        assert!(
            text.contains("routes.yaml:14:11: HTTPRoute(shop/f).spec.rules[0].filters[0]: not supported by weir: RequestHeaderModifier filter: requests are forwarded with their headers unchanged"),
            "{text}"
        );
        assert!(text.contains("matches[0].queryParams: not supported by weir: requests match regardless of the query string"), "{text}");
        assert!(
            text.contains("rules[0].sessionPersistence: not supported by weir"),
            "{text}"
        );
        assert!(
            imported
                .config
                .contains("mirror: { service: shadow, percent: 25 }"),
            "{}",
            imported.config
        );
    }

    #[test]
    fn routes_attached_to_a_gateway_are_skipped() {
        let imported = run(&format!("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{ name: edge, namespace: shop }}\nspec:\n  parentRefs: [{{ name: public-gw }}]\n  hostnames: [shop.example.com]\n  rules:\n    - backendRefs: [{{ name: web, port: 80 }}]\n---\n{}", http_route("mesh", "2024-05-01T00:00:00Z", "    - backendRefs: [{ name: web, port: 80 }]\n")));
        let text = reports(&imported);
        assert!(text.contains("routes.yaml:5:16: HTTPRoute(shop/edge).spec.parentRefs[0]: not supported by weir: weir is a sidecar; routes attached to a Gateway are not translated"), "{text}");
        assert!(
            text.contains("no parent of the route is a Service"),
            "{text}"
        );
        assert_eq!(route_names(&imported), ["mesh-0"], "{}", imported.config);
    }

    #[test]
    fn consumer_routes_apply_only_to_clients_in_their_namespace() {
        let route = |ns: &str| {
            format!("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{ name: c, namespace: {ns} }}\nspec:\n  parentRefs: [{{ kind: Service, group: \"\", name: pay, namespace: billing }}]\n  rules:\n    - backendRefs: [{{ name: pay, namespace: billing, port: 80 }}]\n")
        };
        let mine = run(&route("shop"));
        assert_eq!(route_names(&mine), ["c-0"]);
        assert!(
            mine.config
                .contains("authority: { regex: \"pay\\\\.billing(\\\\.svc"),
            "{}",
            mine.config
        );
        let theirs = run(&format!(
            "{}---\n{}",
            route("web"),
            http_route(
                "r",
                "2024-05-01T00:00:00Z",
                "    - backendRefs: [{ name: reviews, port: 9080 }]\n"
            )
        ));
        assert_eq!(route_names(&theirs), ["r-0"]);
        assert!(reports(&theirs).contains("clients in web only, and this proxy is in shop"));
    }

    #[test]
    fn one_mirror_per_route_and_grpc_routes_first() {
        let http = http_route(
            "m",
            "2020-01-01T00:00:00Z",
            "    - filters:\n        - { type: RequestMirror, requestMirror: { backendRef: { name: shadow, port: 80 }, percent: 10 } }\n        - { type: RequestMirror, requestMirror: { backendRef: { name: shadow2, port: 80 } } }\n      backendRefs: [{ name: reviews, port: 9080 }]\n",
        );
        let grpc = "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: { name: g, namespace: shop }\nspec:\n  parentRefs: [{ kind: Service, group: \"\", name: reviews }]\n  rules:\n    - backendRefs: [{ name: reviews-grpc, port: 9090 }]\n";
        let imported = run(&format!("{http}---\n{grpc}"));
        assert_eq!(route_names(&imported), ["g-0", "m-0"]);
        assert_eq!(
            imported
                .services
                .iter()
                .filter(|s| s.starts_with("reviews"))
                .count(),
            2,
            "the parent once, and reviews-grpc"
        );
        assert!(imported
            .config
            .contains("mirror: { service: shadow, percent: 10 }"));
        assert!(reports(&imported).contains(
            "filters[1].requestMirror: not supported by weir: weir mirrors to one service per route"
        ));
    }

    #[test]
    fn timeouts_and_retries() {
        let imported = run(&http_route(
            "t",
            "2024-05-01T00:00:00Z",
            "    - timeouts: { request: 10s, backendRequest: 2s }\n      retry: { attempts: 3, codes: [503, 504], backoff: 100ms }\n      backendRefs: [{ name: reviews, port: 9080 }]\n    - matches: [{ path: { value: /slow } }]\n      timeouts: { backendRequest: 500ms }\n      backendRefs: [{ name: reviews, port: 9080 }]\n",
        ));
        let c = &imported.config;
        assert!(c.contains("timeout: 10s\n        retries: { attempts: 3, on: [503, 504, connect-failure, reset], per_try_timeout: 2s, budget_percent: 100 }"), "{c}");
        assert!(c.contains("timeout: 500ms"), "{c}");
        assert!(reports(&imported).contains("retry.backoff: not supported by weir"));
    }

    #[test]
    fn only_the_first_match_of_a_header_name_counts() {
        let imported = run(&http_route(
            "h",
            "2024-05-01T00:00:00Z",
            "    - matches:\n        - headers: [{ name: X-A, value: \"1\" }, { name: x-a, value: \"2\" }]\n      backendRefs: [{ name: reviews, port: 9080 }]\n    - matches:\n        - headers: [{ name: x-b, value: \"1\" }, { name: x-c, value: \"1\" }]\n      backendRefs: [{ name: reviews, port: 9080 }]\n",
        ));
        let c = &imported.config;
        assert!(c.contains("- { name: x-a, exact: \"1\" }"), "{c}");
        assert!(!c.contains("exact: \"2\""), "{c}");
        assert_eq!(route_names(&imported), ["h-1", "h-0", "reviews-not-found"]);
        assert!(reports(&imported).contains("headers[1]: note: a second match on header `x-a`"));
    }

    #[test]
    fn retries_always_cover_connection_errors_and_attempts_fit() {
        let imported = run(&http_route(
            "r",
            "2024-05-01T00:00:00Z",
            "    - retry: {}\n      backendRefs: [{ name: reviews, port: 9080 }]\n    - matches: [{ path: { value: /x } }]\n      retry: { attempts: 4294967296 }\n      backendRefs: [{ name: reviews, port: 9080 }]\n",
        ));
        let c = &imported.config;
        assert!(
            c.contains("retries: { attempts: 1, on: [connect-failure, reset]"),
            "{c}"
        );
        assert!(
            reports(&imported).contains("retry.attempts: error: more attempts than weir can count")
        );
    }

    #[test]
    fn bad_ports_and_weights_are_errors_and_unusable() {
        let imported = run(&http_route(
            "p",
            "2024-05-01T00:00:00Z",
            "    - backendRefs:\n        - { name: v1, port: 70000, weight: 1 }\n        - { name: v2, port: 80, weight: 3 }\n        - { name: v3, port: 80, weight: 1000001 }\n        - { name: v4 }\n",
        ));
        let c = &imported.config;
        assert!(c.contains("abort: { status: 500, percent: 20 }"), "{c}");
        assert!(
            !c.contains("port: 80\n") || !c.contains("service: v1,"),
            "{c}"
        );
        let text = reports(&imported);
        assert!(
            text.contains("backendRefs[0].port: error: 70000 is not a port"),
            "{text}"
        );
        assert!(
            text.contains("backendRefs[2].weight: error: a weight is at most 1000000"),
            "{text}"
        );
        assert!(
            text.contains(
                "backendRefs[3]: not supported by weir: a Service backendRef needs a `port`"
            ),
            "{text}"
        );
    }

    #[test]
    fn unmatched_requests_get_404_unless_a_route_catches_all() {
        let imported = run(&format!(
            "{}---\n{}",
            http_route(
                "a",
                "2024-05-01T00:00:00Z",
                "    - matches: [{ path: { value: /api/ } }]\n      backendRefs: [{ name: reviews, port: 9080 }]\n",
            ),
            http_route(
                "b",
                "2024-06-01T00:00:00Z",
                "    - matches: [{ path: { value: /api } }]\n      backendRefs: [{ name: reviews, port: 9080 }]\n",
            )
        ));
        assert_eq!(route_names(&imported), ["a-0", "b-0", "reviews-not-found"]);
        let c = &imported.config;
        assert_eq!(
            c.matches("abort: { status: 404, percent: 100 }").count(),
            1,
            "{c}"
        );
        let all = run(&http_route(
            "c",
            "2024-05-01T00:00:00Z",
            "    - matches: [{ path: { value: /api } }]\n      backendRefs: [{ name: reviews, port: 9080 }]\n    - backendRefs: [{ name: reviews, port: 9080 }]\n",
        ));
        assert_eq!(route_names(&all), ["c-0", "c-1"]);
    }

    #[test]
    fn cross_namespace_backends_without_a_reference_grant_are_noted() {
        let grant = "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: { name: g, namespace: pay }\nspec:\n  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: shop }]\n  to: [{ group: \"\", kind: Service, name: allowed }]\n";
        let route = http_route(
            "x",
            "2024-05-01T00:00:00Z",
            "    - backendRefs:\n        - { name: allowed, namespace: pay, port: 80 }\n        - { name: other, namespace: pay, port: 80 }\n",
        );
        let imported = run(&format!("{route}---\n{grant}"));
        let text = reports(&imported);
        assert!(
            text.contains("backendRefs[1]: note: no ReferenceGrant in pay allows this reference: Istio answers 500 for its share, Linkerd routes it; weir routes it"),
            "{text}"
        );
        assert!(
            !text.contains("backendRefs[0]: note: no ReferenceGrant"),
            "{text}"
        );
        assert!(
            !text.contains("does not translate ReferenceGrant"),
            "{text}"
        );
    }

    #[test]
    fn parent_groups_hostnames_and_grpc_conflicts_are_reported() {
        let http = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: h, namespace: shop }\nspec:\n  hostnames: [reviews.example]\n  parentRefs:\n    - { kind: Service, name: nogroup }\n    - { group: \"\", kind: Service, name: reviews }\n  rules:\n    - backendRefs: [{ name: reviews, port: 9080 }]\n";
        let grpc = "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: { name: g, namespace: shop }\nspec:\n  parentRefs: [{ kind: Service, group: \"\", name: reviews }]\n  rules:\n    - backendRefs: [{ name: reviews-grpc, port: 9090 }]\n";
        let imported = run(&format!("{http}---\n{grpc}"));
        let text = reports(&imported);
        assert!(text.contains("parentRefs[0]: not supported by weir: without `group` a parentRef's group is gateway.networking.k8s.io"), "{text}");
        assert!(
            text.contains("spec.hostnames: not supported by weir"),
            "{text}"
        );
        assert!(text.contains("HTTPRoute(shop/h): not supported by weir: a GRPCRoute is attached to Service shop/reviews too"), "{text}");
    }

    #[test]
    fn fields_of_the_wrong_shape_are_reported_once() {
        let imported = run(&http_route(
            "w",
            "2024-05-01T00:00:00Z",
            "    - retry: { codes: [[503]] }\n      backendRefs:\n        - { name: v1, port: 80, weight: [1] }\n        - { name: v2, port: 80 }\n",
        ));
        let text = reports(&imported);
        assert_eq!(text.matches("backendRefs[0].weight").count(), 1, "{text}");
        assert_eq!(text.matches("retry.codes[0]").count(), 1, "{text}");
    }

    #[test]
    fn creation_timestamps_order_by_time() {
        let key = |t: &str| super::rfc3339_key(t).expect(t);
        assert!(key("2024-05-01T01:00:00+02:00") < key("2024-05-01T00:00:00Z"));
        assert!(key("2024-05-01T00:00:00.5Z") > key("2024-05-01T00:00:00Z"));
        assert!(key("2023-12-31T23:59:59Z") < key("2024-01-01T00:00:00Z"));
        assert!(key("1999-12-31T23:59:59Z") < key("2000-01-01T00:00:00Z"));
        for bad in [
            "2024-05-01",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-05-01T00:00:00+0200",
        ] {
            assert!(super::rfc3339_key(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn grpc_methods_become_paths_and_backends_speak_http2() {
        let imported = run("apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: { name: g, namespace: shop }\nspec:\n  parentRefs: [{ kind: Service, group: \"\", name: echo }]\n  rules:\n    - matches:\n        - method: { service: echo.Echo, method: Say }\n        - method: { service: echo.Echo }\n        - method: { method: Say }\n        - method: { type: RegularExpression, service: \"echo\\\\..*\", method: \"S.*\" }\n      backendRefs: [{ name: echo-v2, port: 50051 }]\n");
        let c = &imported.config;
        for want in [
            "path: { exact: /echo.Echo/Say }",
            "path: { segment_prefix: /echo.Echo }",
            "path: { regex: \"/[^/]+/Say\" }",
            "path: { regex: \"/(?:echo\\\\..*)/(?:S.*)\" }",
            "- { name: content-type, regex: \"application/grpc([+;].*)?\" }",
            "protocol: http2",
        ] {
            assert!(c.contains(want), "{want}\n{c}");
        }
        assert_eq!(
            route_names(&imported),
            ["g-0-0", "g-0-1", "g-0-2", "g-0-3", "echo-not-found"]
        );
    }
}
