//! Hystrix command properties → `circuit_breaker` of the services they protect.
//!
//! Read from a `.properties` file (`hystrix.command.reviews.circuitBreaker.requestVolumeThreshold=10`)
//! or a Spring-style YAML document with a top-level `hystrix:` key. A command key names a
//! weir service (the one with that name, or a new one discovering the Kubernetes Service of
//! that name); `default` applies to every service without a command of its own, as in
//! Hystrix. Unset properties take Hystrix's defaults, and a rolling window that does not
//! divide into its buckets is an error, as Hystrix refuses it.

use std::time::Duration;

use super::draft::{Host, RouteDraft, ServiceKey, LINKERD_DEFAULTS};
use super::report::{Report, Severity};
use super::source::Input;
use super::Cx;
use crate::config::{documents, tree, Backend, CircuitBreaker, RouteMatch};

/// One `key=value` and where it was written.
#[derive(Debug, Clone)]
struct Property {
    key: String,
    value: String,
    line: u32,
    col: u32,
}

/// Whether `input` holds Hystrix properties (a `.properties` file, or YAML documents with a
/// top-level `hystrix:` key), so the Kubernetes reader leaves it alone.
pub fn is_properties_file(input: &Input) -> bool {
    input.name.ends_with(".properties")
}

/// Translates the Hystrix properties in `input`, if it has any.
pub fn translate(input: &Input, cx: &mut Cx<'_>) {
    let properties = if is_properties_file(input) {
        parse_properties(&input.text)
    } else {
        yaml_properties(&input.text)
    };
    if properties.is_empty() {
        return;
    }
    let mut commands: Vec<(String, Vec<Property>)> = Vec::new();
    for p in properties {
        let report = |cx: &mut Cx<'_>, severity, message: String| {
            cx.reports.push(Report {
                file: input.name.clone(),
                line: p.line,
                col: p.col,
                path: p.key.clone(),
                severity,
                message,
            });
        };
        let Some(rest) = p.key.strip_prefix("hystrix.command.") else {
            let instead = if p.key.starts_with("hystrix.threadpool.") {
                "weir has no thread pools; a service's `limits.max_requests` bounds its concurrency"
            } else {
                "not a command property; not translated"
            };
            report(cx, Severity::Unsupported, instead.to_string());
            continue;
        };
        let Some((command, property)) = split_command(rest) else {
            report(
                cx,
                Severity::Error,
                "expected hystrix.command.KEY.PROPERTY".to_string(),
            );
            continue;
        };
        let property = Property {
            key: property.to_string(),
            ..p.clone()
        };
        match commands.iter_mut().find(|(c, _)| c == command) {
            Some((_, list)) => list.push(property),
            None => commands.push((command.to_string(), vec![property])),
        }
    }
    let defaults = commands
        .iter()
        .find(|(c, _)| c == "default")
        .map(|(_, p)| p.clone())
        .unwrap_or_default();
    let mut named: Vec<String> = Vec::new();
    for (command, props) in &commands {
        if command == "default" {
            continue;
        }
        let Some(breaker) = breaker(input, command, &defaults, props, cx) else {
            continue;
        };
        let i = service_for(input, command, props, cx);
        named.push(cx.draft.services[i].name.clone());
        cx.draft.services[i].circuit_breaker = breaker;
    }
    if !defaults.is_empty() {
        if let Some(breaker) = breaker(input, "default", &[], &defaults, cx) {
            for s in cx.draft.services.iter_mut() {
                if !named.contains(&s.name) {
                    s.circuit_breaker = breaker.clone();
                    s.comments.push(format!(
                        "circuit_breaker from hystrix.command.default ({}:{})",
                        input.name, defaults[0].line
                    ));
                }
            }
        }
    }
}

/// `reviews.circuitBreaker.enabled` → (`reviews`, `circuitBreaker.enabled`). Command keys
/// may contain dots (even `.metrics.`): the split that leaves a property weir knows wins,
/// else the first.
fn split_command(rest: &str) -> Option<(&str, &str)> {
    const GROUPS: &[&str] = &[
        ".circuitBreaker.",
        ".metrics.",
        ".execution.",
        ".fallback.",
        ".requestCache.",
        ".requestLog.",
    ];
    let mut splits: Vec<(&str, &str)> = GROUPS
        .iter()
        .flat_map(|g| {
            rest.match_indices(g)
                .map(|(i, _)| (&rest[..i], &rest[i + 1..]))
        })
        .collect();
    splits.sort_by_key(|(command, _)| command.len());
    splits
        .iter()
        .find(|(_, property)| KNOWN.contains(property))
        .or(splits.first())
        .copied()
}

/// The properties weir translates (the rest are reported).
const KNOWN: &[&str] = &[
    "circuitBreaker.enabled",
    "circuitBreaker.forceOpen",
    "circuitBreaker.forceClosed",
    "circuitBreaker.requestVolumeThreshold",
    "circuitBreaker.errorThresholdPercentage",
    "circuitBreaker.sleepWindowInMilliseconds",
    "metrics.rollingStats.timeInMilliseconds",
    "metrics.rollingStats.numBuckets",
];

/// The breaker of one command (its properties over `defaults` over Hystrix's own);
/// `Some(None)` when the breaker is disabled, `None` when the properties are invalid.
fn breaker(
    input: &Input,
    command: &str,
    defaults: &[Property],
    props: &[Property],
    cx: &mut Cx<'_>,
) -> Option<Option<CircuitBreaker>> {
    let mut bad = false;
    let report = |cx: &mut Cx<'_>, p: &Property, severity, message: String| {
        cx.reports.push(Report {
            file: input.name.clone(),
            line: p.line,
            col: p.col,
            path: format!("hystrix.command.{command}.{}", p.key),
            severity,
            message,
        });
    };
    let mut get = |key: &str, default: u64, cx: &mut Cx<'_>| -> (u64, Option<Property>) {
        let found = props
            .iter()
            .rev()
            .find(|p| p.key == key)
            .or_else(|| defaults.iter().rev().find(|p| p.key == key));
        match found {
            None => (default, None),
            Some(p) => match p.value.trim().parse::<u64>() {
                Ok(v) => (v, Some(p.clone())),
                Err(_) => {
                    report(
                        cx,
                        p,
                        Severity::Error,
                        format!("{:?} is not a whole number", p.value),
                    );
                    bad = true;
                    (default, None)
                }
            },
        }
    };
    let (volume, _) = get("circuitBreaker.requestVolumeThreshold", 20, cx);
    let (error_percent, error_at) = get("circuitBreaker.errorThresholdPercentage", 50, cx);
    let (sleep_ms, sleep_at) = get("circuitBreaker.sleepWindowInMilliseconds", 5000, cx);
    let (window_ms, window_at) = get("metrics.rollingStats.timeInMilliseconds", 10_000, cx);
    let (buckets, buckets_at) = get("metrics.rollingStats.numBuckets", 10, cx);
    // The flags, like the numbers, come from the command or else from `default`.
    let flag = |key: &str| {
        props
            .iter()
            .rev()
            .find(|p| p.key == key)
            .or_else(|| defaults.iter().rev().find(|p| p.key == key))
            .map(|p| (p.value.trim().eq_ignore_ascii_case("true"), p.clone()))
    };
    let enabled = flag("circuitBreaker.enabled").is_none_or(|(on, _)| on);
    let force_closed = flag("circuitBreaker.forceClosed").is_some_and(|(on, _)| on);
    if let Some((true, p)) = flag("circuitBreaker.forceOpen") {
        report(
            cx,
            &p,
            Severity::Unsupported,
            "weir cannot hold a breaker open; it opens on errors only".to_string(),
        );
    }
    for p in props {
        match p.key.as_str() {
            "circuitBreaker.enabled"
            | "circuitBreaker.forceOpen"
            | "circuitBreaker.forceClosed" => {}
            "execution.isolation.thread.timeoutInMilliseconds" => report(
                cx,
                p,
                Severity::Unsupported,
                "weir times out per route; set `timeout` on the routes to this service".to_string(),
            ),
            key if KNOWN.contains(&key) => {}
            key => report(
                cx,
                p,
                Severity::Unsupported,
                format!("`{key}` has no weir equivalent; not translated"),
            ),
        }
    }
    if let Some(p) = &error_at {
        if error_percent > 100 {
            report(
                cx,
                p,
                Severity::Error,
                "a percentage from 0 to 100".to_string(),
            );
            bad = true;
        }
    }
    if buckets == 0 || window_ms == 0 || window_ms % buckets != 0 {
        let at = buckets_at.or(window_at);
        if let Some(p) = at {
            report(
                cx,
                &p,
                Severity::Error,
                format!("a rolling window of {window_ms} ms does not divide into {buckets} buckets; Hystrix refuses it too (choose a window that is a multiple of the bucket count)"),
            );
        }
        bad = true;
    }
    if bad {
        return None;
    }
    // A breaker forced closed never opens: no breaker at all.
    if !enabled || force_closed {
        return Some(None);
    }
    if sleep_ms == 0 {
        if let Some(p) = sleep_at {
            report(
                cx,
                &p,
                Severity::Note,
                "a sleep window of 0 ms is written as 1ms, the shortest weir takes".to_string(),
            );
        }
    }
    Some(Some(CircuitBreaker {
        window: Duration::from_millis(window_ms),
        buckets: u32::try_from(buckets).unwrap_or(u32::MAX),
        request_volume_threshold: u32::try_from(volume).unwrap_or(u32::MAX),
        error_threshold_percent: error_percent as f64,
        sleep_window: Duration::from_millis(sleep_ms.max(1)),
        half_open_requests: 1,
    }))
}

/// The service command `command` protects: the generated one of that name, or a new one
/// discovering the Kubernetes Service of that name, with a route for requests to it.
fn service_for(input: &Input, command: &str, props: &[Property], cx: &mut Cx<'_>) -> usize {
    let name = super::draft::sanitize(&command.to_ascii_lowercase());
    if let Some(i) = cx.draft.services.iter().position(|s| s.name == name) {
        return i;
    }
    let line = props.first().map_or(1, |p| p.line);
    let origin = super::draft::Origin {
        what: format!("Hystrix command {command}"),
        at: format!("{}:{line}", input.name),
    };
    let namespace = cx.options.layout.namespace.clone();
    let host = Host::Kubernetes {
        service: name.clone(),
        namespace,
    };
    let key = ServiceKey {
        host: host.clone(),
        subset: None,
        port: None,
    };
    let i = cx.draft.service(&key, LINKERD_DEFAULTS, &origin);
    cx.draft.services[i].comments.push(
        "Hystrix sets no connection timeouts: 1s to connect and 1m idle, weir's own".to_string(),
    );
    cx.reports.push(Report {
        file: input.name.clone(),
        line,
        col: 1,
        path: format!("hystrix.command.{command}"),
        severity: Severity::Note,
        message: format!("no imported service is named {name}: a service discovering Kubernetes Service {name} is generated, with a route for requests addressed to it"),
    });
    let route = cx.draft.route_name(&name);
    let service = cx.draft.services[i].name.clone();
    cx.draft.routes.push(RouteDraft {
        name: route,
        origin,
        matcher: RouteMatch {
            authority: Some(host.authority(&cx.options.layout.namespace)),
            ..RouteMatch::default()
        },
        backends: vec![Backend { service, weight: 1 }],
        timeout: None,
        retries: None,
        fault: None,
        mirror: None,
        comments: Vec::new(),
    });
    i
}

/// The properties of a `.properties` file, as `java.util.Properties` reads them: `#` and
/// `!` start comments; the key ends at the first unescaped `=`, `:` or whitespace; a line
/// ending in an odd number of `\` continues on the next; `\` escapes the next character.
fn parse_properties(text: &str) -> Vec<Property> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with(['#', '!']) {
            continue;
        }
        let col = (line.len() - trimmed.len()) as u32 + 1;
        let mut logical = trimmed.to_string();
        while ends_in_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_property(&logical);
        out.push(Property {
            key,
            value,
            line: n as u32 + 1,
            col,
        });
    }
    out
}

fn ends_in_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// Splits one logical line into its unescaped key and value.
fn split_property(line: &str) -> (String, String) {
    let mut key = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    key.push(next);
                }
            }
            '=' | ':' => break,
            c if c.is_whitespace() => {
                // Whitespace ends the key; one `=` or `:` may follow it.
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if chars.peek().is_some_and(|c| *c == '=' || *c == ':') {
                    chars.next();
                }
                break;
            }
            c => key.push(c),
        }
    }
    let rest: String = chars.collect();
    let mut value = String::new();
    let mut rest = rest.trim_start().chars();
    while let Some(c) = rest.next() {
        if c == '\\' {
            if let Some(next) = rest.next() {
                value.push(next);
            }
        } else {
            value.push(c);
        }
    }
    (key, value)
}

/// The leaves under a top-level `hystrix:` key of YAML documents, as dotted keys.
fn yaml_properties(text: &str) -> Vec<Property> {
    let mut out = Vec::new();
    for doc in documents::split(text) {
        let Ok(root) = tree::parse(doc.text) else {
            continue;
        };
        if !super::source::has_top_level_key(&root, "hystrix") {
            continue;
        }
        let offset = u32::try_from(doc.first_line.saturating_sub(1)).unwrap_or(0);
        flatten(&root, "", offset, &mut out);
    }
    out.retain(|p| p.key.starts_with("hystrix."));
    out
}

fn flatten(node: &tree::Node, prefix: &str, offset: u32, out: &mut Vec<Property>) {
    let tree::Value::Map(entries) = &node.value else {
        return;
    };
    for e in entries {
        let key = if prefix.is_empty() {
            e.key.clone()
        } else {
            format!("{prefix}.{}", e.key)
        };
        let value = match &e.value.value {
            tree::Value::Map(_) => {
                flatten(&e.value, &key, offset, out);
                continue;
            }
            tree::Value::Str(s) => s.clone(),
            tree::Value::Int(i) => i.to_string(),
            tree::Value::Float(f) => f.to_string(),
            tree::Value::Bool(b) => b.to_string(),
            _ => String::new(),
        };
        out.push(Property {
            key,
            value,
            line: e.key_pos.line + offset,
            col: e.key_pos.col,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_keys_may_contain_dots() {
        assert_eq!(
            split_command("shop.Reviews.circuitBreaker.enabled"),
            Some(("shop.Reviews", "circuitBreaker.enabled"))
        );
        assert_eq!(
            split_command("reviews.metrics.rollingStats.numBuckets"),
            Some(("reviews", "metrics.rollingStats.numBuckets"))
        );
        assert_eq!(split_command("reviews"), None);
        assert_eq!(
            split_command("svc.metrics.client.circuitBreaker.enabled"),
            Some(("svc.metrics.client", "circuitBreaker.enabled"))
        );
    }

    #[test]
    fn properties_keep_their_positions() {
        let p = parse_properties("# c\n\n  a.b = 1\nc:2\nd  3\ne = 4\\\n   0\n");
        assert_eq!(p.len(), 4);
        assert_eq!((p[2].key.as_str(), p[2].value.as_str()), ("d", "3"));
        assert_eq!(
            (p[3].key.as_str(), p[3].value.as_str(), p[3].line),
            ("e", "40", 6)
        );
        assert_eq!(
            (p[0].key.as_str(), p[0].value.as_str(), p[0].line, p[0].col),
            ("a.b", "1", 3, 3)
        );
        assert_eq!((p[1].key.as_str(), p[1].line), ("c", 4));
    }
}

#[cfg(test)]
mod translation_tests {
    use crate::import::{import, Input};

    fn translate(text: &str) -> crate::import::Imported {
        let options = crate::import::test_options(false);
        import(
            &[Input {
                name: "h.properties".into(),
                text: text.into(),
            }],
            &options,
        )
    }

    #[test]
    fn default_flags_apply_to_named_commands_and_forced_closed_is_no_breaker() {
        let off = translate("hystrix.command.default.circuitBreaker.enabled=FALSE\nhystrix.command.reviews.circuitBreaker.requestVolumeThreshold=10\n");
        assert!(!off.config.contains("circuit_breaker"), "{}", off.config);
        let closed = translate("hystrix.command.reviews.circuitBreaker.forceClosed=true\n");
        assert!(
            !closed.config.contains("circuit_breaker"),
            "{}",
            closed.config
        );
        let on = translate("hystrix.command.reviews.circuitBreaker.errorThresholdPercentage 30\n");
        assert!(
            on.config.contains("      error_threshold_percent: 30\n"),
            "{}",
            on.config
        );
    }
}
