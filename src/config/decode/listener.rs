//! Listeners and their routes.

use super::{check_regex, exactly_one, header_name, maybe, or_default, spiffe_id};
use crate::config::not_enforced::warn_if_not_enforced;
use crate::config::reader::{Ctx, Field};
use crate::config::schema::{
    open_files_limit, AuthorityMatch, Backend, Direction, Fault, FaultAbort, FaultDelay,
    HeaderMatch, HeaderRule, Listener, ListenerLimits, ListenerProtocol, ListenerTimeouts,
    ListenerTls, Mirror, PathMatch, Retries, RetryOn, Route, RouteMatch, TlsMode,
    UnknownDestination, DEFAULT_UPGRADE,
};
use crate::config::suggest::{did_you_mean, one_of};
use crate::config::tree::{quote, Value};
use crate::config::validate::{Addr, Facts, ListenerFacts, Named};

/// `listeners:`: a non-empty list.
pub(super) fn decode_listeners(
    ctx: &mut Ctx,
    f: &Field<'_>,
    facts: &mut Facts,
) -> Option<Vec<Listener>> {
    let items = f.non_empty_seq(
        ctx,
        "listeners",
        "add at least one listener with `name`, `address` and `routes`",
    )?;
    let decoded: Vec<Option<Listener>> = items
        .iter()
        .map(|item| decode_listener(ctx, item, facts))
        .collect();
    decoded.into_iter().collect()
}

fn named(ctx: &mut Ctx, f: &Field<'_>, what: &str) -> Option<Named> {
    f.identifier(ctx, what).map(|name| Named {
        name,
        pos: f.pos(),
        path: f.path.clone(),
    })
}

fn decode_listener(ctx: &mut Ctx, f: &Field<'_>, facts: &mut Facts) -> Option<Listener> {
    let mut lf = ListenerFacts::default();
    let Some(mut m) = f.map(ctx, "a listener with `name`, `address` and `routes`") else {
        facts.listeners.push(lf);
        return None;
    };
    let name = m
        .required(ctx, "name", "add a unique `name:`, e.g. `name: inbound`")
        .and_then(|f| named(ctx, &f, "a listener name"));
    lf.name.clone_from(&name);
    let address = m
        .required(
            ctx,
            "address",
            "add `address: IP:PORT`, e.g. `address: 0.0.0.0:15006`",
        )
        .and_then(|f| {
            let addr = f.socket_addr(ctx)?;
            lf.address = Some(Addr {
                addr,
                pos: f.pos(),
                path: f.path.clone(),
            });
            Some(addr)
        });
    let protocol = or_default(m.optional("protocol"), ListenerProtocol::Http, |f| {
        f.choice(
            ctx,
            &[
                ("http", ListenerProtocol::Http),
                ("tcp", ListenerProtocol::Tcp),
            ],
        )
    });
    let transparent = or_default(m.optional("transparent"), false, |f| f.bool(ctx));
    lf.transparent = transparent == Some(true);
    let unknown_destination = or_default(
        m.optional("unknown_destination"),
        UnknownDestination::default(),
        |f| {
            let policy = f.choice(
                ctx,
                &[
                    ("passthrough", UnknownDestination::Passthrough),
                    ("refuse", UnknownDestination::Refuse),
                ],
            )?;
            if transparent == Some(false) {
                f.error(
                    ctx,
                    "only a transparent listener sees connections meant for other destinations; set `transparent: true` or remove `unknown_destination`",
                );
                return None;
            }
            Some(policy)
        },
    );
    let tls = maybe(m.optional("tls"), |f| {
        let tls = decode_listener_tls(ctx, f)?;
        if tls.mode != TlsMode::Disabled {
            lf.tls = Some(Named {
                name: if tls.mode == TlsMode::Strict {
                    "strict"
                } else {
                    "permissive"
                }
                .to_string(),
                pos: f.key_pos,
                path: f.path.clone(),
            });
        }
        Some(tls)
    });
    let direction = maybe(m.optional("direction"), |f| {
        f.choice(
            ctx,
            &[
                ("inbound", Direction::Inbound),
                ("outbound", Direction::Outbound),
            ],
        )
    });
    let limits = or_default(
        m.optional("limits"),
        ListenerLimits::with_defaults(open_files_limit()),
        |f| decode_listener_limits(ctx, f),
    );
    let timeouts = or_default(m.optional("timeouts"), ListenerTimeouts::default(), |f| {
        decode_listener_timeouts(ctx, f)
    });
    let routes = match (m.optional("routes"), transparent) {
        // A transparent listener routes by the services' `addresses`; routes are optional.
        (None, Some(true)) => Some(Vec::new()),
        (field, _) => field
            .or_else(|| {
                m.required(
                    ctx,
                    "routes",
                    "add `routes:` with at least one route (name and backends)",
                )
            })
            .and_then(|f| {
                // A transparent listener may list none: its services' `addresses` route.
                let items = if transparent == Some(true) {
                    f.seq(ctx, "routes")?
                } else {
                    f.non_empty_seq(
                        ctx,
                        "routes",
                        "add at least one route with `name` and `backends`",
                    )?
                };
                if protocol == Some(ListenerProtocol::Tcp)
                    && transparent == Some(true)
                    && !items.is_empty()
                {
                    f.error(
                        ctx,
                        "a transparent tcp listener forwards each connection to the service whose `addresses` hold its original destination; remove `routes` and give the services `addresses`",
                    );
                    return None;
                }
                if protocol == Some(ListenerProtocol::Tcp) && items.len() > 1 {
                    f.error(
                        ctx,
                        "a tcp listener forwards every connection by one route (its backends' weights); keep one route",
                    );
                }
                let decoded: Vec<Option<Route>> = items
                    .iter()
                    .map(|item| decode_route(ctx, item, facts, &mut lf))
                    .collect();
                decoded.into_iter().collect::<Option<Vec<Route>>>()
            }),
    };
    m.finish(ctx);
    if let (Some(ListenerProtocol::Tcp), Some([route])) = (protocol, routes.as_deref()) {
        let http_only = [
            ("match", route.matcher != RouteMatch::default()),
            ("timeout", route.timeout.is_some()),
            ("retries", route.retries.is_some()),
            ("fault", route.fault.is_some()),
            ("mirror", route.mirror.is_some()),
        ];
        for (key, present) in http_only {
            if present {
                ctx.error(
                    f.pos(),
                    &format!("{}.routes[0].{key}", f.path),
                    format!("`{key}` is for HTTP; a tcp listener forwards connections by its route's backends only; remove it"),
                );
            }
        }
    }
    lf.inbound = match (&direction, &tls) {
        (Some(Some(d)), _) => *d == Direction::Inbound,
        (_, Some(Some(_))) => true,
        _ => false,
    };
    facts.listeners.push(lf);
    Some(Listener {
        name: name?.name,
        address: address?,
        protocol: protocol?,
        transparent: transparent?,
        unknown_destination: unknown_destination?,
        direction: direction?.unwrap_or(match &tls {
            Some(Some(_)) => Direction::Inbound,
            _ => Direction::Outbound,
        }),
        tls: tls?,
        limits: limits?,
        timeouts: timeouts?,
        routes: routes?,
    })
}

fn decode_listener_limits(ctx: &mut Ctx, f: &Field<'_>) -> Option<ListenerLimits> {
    let mut m = f.map(
        ctx,
        "`max_connections`, `max_request_header_bytes`, `max_request_headers`, `max_concurrent_streams`",
    )?;
    let defaults = ListenerLimits::with_defaults(open_files_limit());
    let max_connections = or_default(
        m.optional("max_connections"),
        defaults.max_connections,
        |f| f.u32_min(ctx, 1),
    );
    // hyper reads a request head into a buffer of at least 8 KiB.
    let max_request_header_bytes = or_default(
        m.optional("max_request_header_bytes"),
        defaults.max_request_header_bytes,
        |f| f.u32_min(ctx, 8192),
    );
    let max_request_headers = or_default(
        m.optional("max_request_headers"),
        defaults.max_request_headers,
        |f| f.u32_min(ctx, 1),
    );
    let max_concurrent_streams = or_default(
        m.optional("max_concurrent_streams"),
        defaults.max_concurrent_streams,
        |f| f.u32_min(ctx, 1),
    );
    m.finish(ctx);
    Some(ListenerLimits {
        max_connections: max_connections?,
        max_request_header_bytes: max_request_header_bytes?,
        max_request_headers: max_request_headers?,
        max_concurrent_streams: max_concurrent_streams?,
    })
}

fn decode_listener_timeouts(ctx: &mut Ctx, f: &Field<'_>) -> Option<ListenerTimeouts> {
    let mut m = f.map(ctx, "`first_byte`, `idle`, `stream_idle` (durations)")?;
    let defaults = ListenerTimeouts::default();
    let first_byte = or_default(m.optional("first_byte"), defaults.first_byte, |f| {
        f.positive_duration(ctx)
    });
    let idle = or_default(m.optional("idle"), defaults.idle, |f| {
        f.positive_duration(ctx)
    });
    let stream_idle = or_default(m.optional("stream_idle"), defaults.stream_idle, |f| {
        f.positive_duration(ctx)
    });
    m.finish(ctx);
    Some(ListenerTimeouts {
        first_byte: first_byte?,
        idle: idle?,
        stream_idle: stream_idle?,
    })
}

fn decode_listener_tls(ctx: &mut Ctx, f: &Field<'_>) -> Option<ListenerTls> {
    let mut m = f.map(ctx, "`mode` and `allow`")?;
    let mode = m
        .required(
            ctx,
            "mode",
            "add `mode: strict`, `mode: permissive` or `mode: disabled`",
        )
        .and_then(|f| {
            f.choice(
                ctx,
                &[
                    ("strict", TlsMode::Strict),
                    ("permissive", TlsMode::Permissive),
                    ("disabled", TlsMode::Disabled),
                ],
            )
        });
    let allow = or_default(m.optional("allow"), Vec::new(), |f| {
        let items = f.seq(ctx, "SPIFFE IDs of the peers allowed in")?;
        if items.is_empty() {
            f.error(
                ctx,
                "an empty `allow` would let every authenticated peer in, as no `allow` does; list the identities allowed, or remove `allow`",
            );
            return None;
        }
        let decoded: Vec<Option<String>> = items.iter().map(|i| spiffe_id(ctx, i, true)).collect();
        decoded.into_iter().collect()
    });
    m.finish(ctx);
    Some(ListenerTls {
        mode: mode?,
        allow: allow?,
    })
}

fn decode_route(
    ctx: &mut Ctx,
    f: &Field<'_>,
    facts: &mut Facts,
    lf: &mut ListenerFacts,
) -> Option<Route> {
    let mut m = f.map(ctx, "a route with `name`, `match` and `backends`")?;
    let name = m
        .required(
            ctx,
            "name",
            "add a `name:` unique within this listener, e.g. `name: default`",
        )
        .and_then(|f| named(ctx, &f, "a route name"));
    if let Some(n) = &name {
        lf.routes.push(n.clone());
    }
    let transparent = lf.transparent;
    let matcher = or_default(m.optional("match"), RouteMatch::default(), |f| {
        decode_match(ctx, f, transparent)
    });
    let backends = m
        .required(ctx, "backends", "add `backends: [{ service: NAME }]`")
        .and_then(|f| decode_backends(ctx, &f, facts));
    let timeout = maybe(m.optional("timeout"), |f| f.positive_duration(ctx));
    let retries = maybe(m.optional("retries"), |f| decode_retries(ctx, f));
    let fault = maybe(m.optional("fault"), |f| decode_fault(ctx, f));
    let mirror = maybe(m.optional("mirror"), |f| decode_mirror(ctx, f, facts));
    let upgrades = or_default(
        m.optional("upgrades"),
        vec![DEFAULT_UPGRADE.to_string()],
        |f| decode_upgrades(ctx, f),
    );
    m.finish(ctx);
    Some(Route {
        name: name?.name,
        matcher: matcher?,
        backends: backends?,
        timeout: timeout?,
        retries: retries?,
        fault: fault?,
        mirror: mirror?,
        upgrades: upgrades?,
    })
}

/// `upgrades`: protocol names a client may switch to (`Upgrade` tokens, RFC 9110 §7.8).
fn decode_upgrades(ctx: &mut Ctx, f: &Field<'_>) -> Option<Vec<String>> {
    let items = f.seq(ctx, "protocol names such as `websocket`")?;
    let mut names = Vec::with_capacity(items.len());
    for item in &items {
        let name = item.str(ctx)?;
        let lower = name.to_ascii_lowercase();
        if lower == "h2c" {
            item.error(
                ctx,
                "`h2c` cannot be carried: weir speaks HTTP/2 to clients that start with it (prior knowledge); remove it",
            );
            return None;
        }
        let is_token = !lower.is_empty()
            && lower.len() <= 64
            && lower
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !is_token {
            item.error(
                ctx,
                format!(
                    "{name:?} is not a protocol name; use an `Upgrade` token such as `websocket`"
                ),
            );
            return None;
        }
        if !names.contains(&lower) {
            names.push(lower);
        }
    }
    Some(names)
}

fn decode_match(ctx: &mut Ctx, f: &Field<'_>, transparent: bool) -> Option<RouteMatch> {
    let mut m = f.map(
        ctx,
        "`path`, `headers`, `method`, `authority`, `peer` and `destination`",
    )?;
    let path = maybe(m.optional("path"), |f| decode_path(ctx, f));
    let headers = or_default(m.optional("headers"), Vec::new(), |f| {
        let items = f.seq(ctx, "header conditions")?;
        let decoded: Vec<Option<HeaderMatch>> =
            items.iter().map(|i| decode_header(ctx, i)).collect();
        decoded.into_iter().collect()
    });
    let method = maybe(m.optional("method"), |f| method(ctx, f));
    let authority = maybe(m.optional("authority"), |f| decode_authority(ctx, f));
    let peer = maybe(m.optional("peer"), |f| spiffe_id(ctx, f, true));
    let destination = or_default(m.optional("destination"), Vec::new(), |f| {
        if !transparent {
            f.error(
                ctx,
                "only a transparent listener knows where a connection was going; set `transparent: true` on the listener or remove `destination`",
            );
            return None;
        }
        let items = f.non_empty_seq(
            ctx,
            "IP:PORT destinations",
            "list the addresses, e.g. `[10.96.0.20:9080]` (`0.0.0.0:PORT`: any address on PORT)",
        )?;
        let decoded: Vec<_> = items.iter().map(|i| i.socket_addr(ctx)).collect();
        decoded.into_iter().collect()
    });
    m.finish(ctx);
    Some(RouteMatch {
        path: path?,
        headers: headers?,
        method: method?,
        peer: peer?,
        authority: authority?,
        destination: destination?,
        discovered_destination: false,
    })
}

/// `authority: { exact | prefix | regex }`: the request's `Host` (or `:authority`).
fn decode_authority(ctx: &mut Ctx, f: &Field<'_>) -> Option<AuthorityMatch> {
    let mut m = f.map(
        ctx,
        "one of `exact`, `prefix` or `regex`, e.g. `{ exact: reviews.shop.svc.cluster.local }`",
    )?;
    let chosen = exactly_one(
        ctx,
        &mut m,
        &["exact", "prefix", "regex"],
        "an authority match",
        "authority: { exact: reviews.shop.svc.cluster.local }",
    );
    m.finish(ctx);
    let (key, f) = chosen?;
    let s = f.str(ctx)?;
    if s.is_empty()
        || s.bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        f.error(
            ctx,
            "an authority is a host, optionally with `:PORT`, without spaces; e.g. `reviews.shop.svc.cluster.local`",
        );
        return None;
    }
    match key {
        "regex" => check_regex(ctx, &f, s).map(|()| AuthorityMatch::Regex(s.to_string())),
        "prefix" => Some(AuthorityMatch::Prefix(s.to_string())),
        _ => Some(AuthorityMatch::Exact(s.to_string())),
    }
}

fn decode_path(ctx: &mut Ctx, f: &Field<'_>) -> Option<PathMatch> {
    let mut m = f.map(
        ctx,
        "one of `prefix`, `segment_prefix`, `exact` or `regex`, e.g. `{ prefix: /api }`",
    )?;
    let chosen = exactly_one(
        ctx,
        &mut m,
        &["prefix", "segment_prefix", "exact", "regex"],
        "a path match",
        "path: { prefix: /api }",
    );
    m.finish(ctx);
    let (key, f) = chosen?;
    let s = f.str(ctx)?;
    match key {
        "regex" => check_regex(ctx, &f, s).map(|()| PathMatch::Regex(s.to_string())),
        _ if !s.starts_with('/') => {
            f.error(
                ctx,
                format!(
                    "a path {key} must start with `/`; write `/{}`",
                    s.trim_start_matches('/')
                ),
            );
            None
        }
        "prefix" => Some(PathMatch::Prefix(s.to_string())),
        "segment_prefix" => Some(PathMatch::SegmentPrefix(s.to_string())),
        _ => Some(PathMatch::Exact(s.to_string())),
    }
}

fn decode_header(ctx: &mut Ctx, f: &Field<'_>) -> Option<HeaderMatch> {
    let mut m = f.map(
        ctx,
        "a header condition such as `{ name: x-canary, exact: \"true\" }`",
    )?;
    let name = m
        .required(
            ctx,
            "name",
            "add the header's `name:`, e.g. `name: x-canary`",
        )
        .and_then(|f| header_name(ctx, &f));
    let chosen = exactly_one(
        ctx,
        &mut m,
        &["exact", "prefix", "regex", "present"],
        "a header condition",
        "{ name: x-canary, exact: \"true\" }",
    );
    m.finish(ctx);
    let rule = chosen.and_then(|(key, f)| match key {
        "present" => f.bool(ctx).map(HeaderRule::Present),
        _ => {
            let s = f.str(ctx)?.to_string();
            match key {
                "regex" => check_regex(ctx, &f, &s).map(|()| HeaderRule::Regex(s)),
                "prefix" => Some(HeaderRule::Prefix(s)),
                _ => Some(HeaderRule::Exact(s)),
            }
        }
    });
    Some(HeaderMatch {
        name: name?,
        rule: rule?,
    })
}

/// An HTTP method: one token (RFC 9110), stored upper case.
fn method(ctx: &mut Ctx, f: &Field<'_>) -> Option<String> {
    let s = f.str(ctx)?;
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if s.is_empty() || !s.chars().all(is_tchar) {
        f.error(
            ctx,
            format!(
                "{} is not an HTTP method; write one token such as `GET` or `POST` (no spaces)",
                quote(s)
            ),
        );
        return None;
    }
    Some(s.to_ascii_uppercase())
}

fn decode_backends(ctx: &mut Ctx, f: &Field<'_>, facts: &mut Facts) -> Option<Vec<Backend>> {
    let items = f.non_empty_seq(
        ctx,
        "weighted backends",
        "add at least one backend, e.g. `- { service: reviews }`",
    )?;
    let decoded: Vec<Option<Backend>> = items
        .iter()
        .map(|i| decode_backend(ctx, i, facts))
        .collect();
    let backends: Vec<Backend> = decoded.into_iter().collect::<Option<_>>()?;
    if backends.iter().all(|b| b.weight == 0) {
        f.error(
            ctx,
            "every backend has weight 0, so the route can send traffic nowhere; give at least one backend a weight above 0",
        );
        return None;
    }
    Some(backends)
}

fn service_ref(ctx: &mut Ctx, f: &Field<'_>, facts: &mut Facts) -> Option<String> {
    let name = f.identifier(ctx, "a service name")?;
    facts.service_refs.push(Named {
        name: name.clone(),
        pos: f.pos(),
        path: f.path.clone(),
    });
    Some(name)
}

fn decode_backend(ctx: &mut Ctx, f: &Field<'_>, facts: &mut Facts) -> Option<Backend> {
    let mut m = f.map(ctx, "a backend such as `{ service: reviews, weight: 90 }`")?;
    let service = m
        .required(
            ctx,
            "service",
            "add `service: NAME` naming one of `services`",
        )
        .and_then(|f| service_ref(ctx, &f, facts));
    let weight = or_default(m.optional("weight"), 1, |f| f.u32_min(ctx, 0));
    m.finish(ctx);
    Some(Backend {
        service: service?,
        weight: weight?,
    })
}

const RETRY_ON: &[(&str, RetryOn)] = &[
    ("connect-failure", RetryOn::ConnectFailure),
    ("reset", RetryOn::Reset),
    ("gateway-error", RetryOn::GatewayError),
    ("5xx", RetryOn::Status5xx),
];

fn retry_on(ctx: &mut Ctx, f: &Field<'_>) -> Option<RetryOn> {
    let status = |ctx: &mut Ctx, code: i128| match u16::try_from(code) {
        Ok(c) if (100..=599).contains(&c) => Some(RetryOn::Status(c)),
        _ => {
            f.error(
                ctx,
                format!("{code} is not an HTTP status code; use a code from 100 to 599"),
            );
            None
        }
    };
    let names: Vec<&str> = RETRY_ON.iter().map(|(n, _)| *n).collect();
    let accepted = format!(
        "{} or a status code from 100 to 599",
        one_of(&names).replacen(" or ", ", ", 1)
    );
    match &f.node.value {
        Value::Int(code) => status(ctx, *code),
        Value::Str(s) => {
            if let Some((_, v)) = RETRY_ON.iter().find(|(n, _)| n == s) {
                return Some(*v);
            }
            if let Ok(code) = s.parse::<i128>() {
                return status(ctx, code);
            }
            let message = match did_you_mean(s, names.iter().copied()) {
                Some(close) => format!(
                    "unknown retry condition {}; did you mean `{close}`? (accepted: {accepted})",
                    quote(s)
                ),
                None => format!(
                    "unknown retry condition {}; accepted are {accepted}",
                    quote(s)
                ),
            };
            f.error(ctx, message);
            None
        }
        _ => {
            f.type_error(ctx, &format!("a retry condition: {accepted}"));
            None
        }
    }
}

fn decode_retries(ctx: &mut Ctx, f: &Field<'_>) -> Option<Retries> {
    warn_if_not_enforced(ctx, "route.retries", f.key_pos, &f.path);
    let mut m = f.map(
        ctx,
        "`attempts`, `per_try_timeout`, `on` and `budget_percent`",
    )?;
    let attempts = or_default(m.optional("attempts"), 1, |f| f.u32_min(ctx, 1));
    let per_try_timeout = maybe(m.optional("per_try_timeout"), |f| f.positive_duration(ctx));
    let default_on = vec![
        RetryOn::ConnectFailure,
        RetryOn::Reset,
        RetryOn::GatewayError,
    ];
    let on = or_default(m.optional("on"), default_on, |f| {
        let items = f.non_empty_seq(
            ctx,
            "retry conditions",
            "list at least one condition, e.g. `on: [connect-failure]`",
        )?;
        let decoded: Vec<Option<RetryOn>> = items.iter().map(|i| retry_on(ctx, i)).collect();
        decoded.into_iter().collect()
    });
    let budget_percent = or_default(m.optional("budget_percent"), 20.0, |f| f.percent(ctx));
    m.finish(ctx);
    Some(Retries {
        attempts: attempts?,
        per_try_timeout: per_try_timeout?,
        on: on?,
        budget_percent: budget_percent?,
    })
}

fn decode_fault(ctx: &mut Ctx, f: &Field<'_>) -> Option<Fault> {
    warn_if_not_enforced(ctx, "route.fault", f.key_pos, &f.path);
    let mut m = f.map(ctx, "`delay` and/or `abort`")?;
    let delay_field = m.optional("delay");
    let abort_field = m.optional("abort");
    let delay = maybe(delay_field.clone(), |f| {
        let mut m = f.map(
            ctx,
            "`fixed` and `percent`, e.g. `{ fixed: 100ms, percent: 5 }`",
        )?;
        let fixed = m
            .required(ctx, "fixed", "add the delay, e.g. `fixed: 100ms`")
            .and_then(|f| f.positive_duration(ctx));
        let percent = m
            .required(
                ctx,
                "percent",
                "add the share of requests to delay, e.g. `percent: 5`",
            )
            .and_then(|f| f.percent(ctx));
        m.finish(ctx);
        Some(FaultDelay {
            fixed: fixed?,
            percent: percent?,
        })
    });
    let abort = maybe(abort_field.clone(), |f| {
        let mut m = f.map(
            ctx,
            "`status` and `percent`, e.g. `{ status: 503, percent: 1 }`",
        )?;
        let status = m
            .required(
                ctx,
                "status",
                "add the status to answer with, e.g. `status: 503`",
            )
            .and_then(|f| f.u16_in(ctx, 200, 599));
        let percent = m
            .required(
                ctx,
                "percent",
                "add the share of requests to abort, e.g. `percent: 1`",
            )
            .and_then(|f| f.percent(ctx));
        m.finish(ctx);
        Some(FaultAbort {
            status: status?,
            percent: percent?,
        })
    });
    if delay_field.is_none() && abort_field.is_none() {
        ctx.error(
            m.pos(),
            m.path(),
            "fault injects nothing; add `delay: { fixed: 100ms, percent: 5 }` and/or `abort: { status: 503, percent: 1 }`, or remove `fault`",
        );
    }
    m.finish(ctx);
    if delay_field.is_none() && abort_field.is_none() {
        return None;
    }
    Some(Fault {
        delay: delay?,
        abort: abort?,
    })
}

fn decode_mirror(ctx: &mut Ctx, f: &Field<'_>, facts: &mut Facts) -> Option<Mirror> {
    warn_if_not_enforced(ctx, "route.mirror", f.key_pos, &f.path);
    let mut m = f.map(ctx, "`service` and `percent`")?;
    let service = m
        .required(
            ctx,
            "service",
            "add `service: NAME` naming the service that receives the copies",
        )
        .and_then(|f| service_ref(ctx, &f, facts));
    let percent = or_default(m.optional("percent"), 100.0, |f| f.percent(ctx));
    m.finish(ctx);
    Some(Mirror {
        service: service?,
        percent: percent?,
    })
}
