//! The schema walk: turns the YAML tree into a [`Config`], reporting every problem.
//!
//! Each `decode_*` function reads every field it knows before combining them, so one bad
//! field never hides another; it returns `None` when anything in its part failed (the errors
//! are in the [`Ctx`]). Located facts for the cross-checks go into [`Facts`].

mod listener;
mod service;

use std::path::PathBuf;

use super::reader::{Ctx, Field, MapReader};
use super::schema::{
    Admin, Config, Identity, LogFormat, LogLevel, Logging, Node, Otlp, Propagation, Tracing,
};
use super::suggest::one_of;
use super::tree::{self, quote, Value};
use super::validate::{Addr, Facts};

/// Decodes the whole document.
pub(crate) fn decode(ctx: &mut Ctx, root: &tree::Node, facts: &mut Facts) -> Option<Config> {
    if root.value == Value::Null {
        ctx.error(
            root.pos,
            "",
            "the configuration is empty; start with `version: 1`, then `listeners:` and `services:`",
        );
        return None;
    }
    let root = Field::root(root);
    let mut m = root.map(
        ctx,
        "the configuration: `version`, `listeners`, `services`, …",
    )?;
    let version = m
        .required(ctx, "version", "start the file with `version: 1`")
        .and_then(|f| version(ctx, &f));
    let node = or_default(m.optional("node"), Node::default(), |f| decode_node(ctx, f));
    let admin = or_default(m.optional("admin"), Admin::default(), |f| {
        decode_admin(ctx, f, facts)
    });
    let identity_field = m.optional("identity");
    facts.identity = identity_field.is_some();
    let identity = maybe(identity_field, |f| decode_identity(ctx, f));
    let namespace = node
        .as_ref()
        .map(|n| n.namespace.clone())
        .unwrap_or_default();
    let listeners = m
        .required(
            ctx,
            "listeners",
            "add `listeners:` with at least one listener (name, address, routes)",
        )
        .and_then(|f| listener::decode_listeners(ctx, &f, facts));
    let services = or_default(m.optional("services"), Vec::new(), |f| {
        service::decode_services(ctx, f, facts, &namespace)
    });
    let tracing = maybe(m.optional("tracing"), |f| decode_tracing(ctx, f));
    let logging = or_default(m.optional("logging"), Logging::default(), |f| {
        decode_logging(ctx, f)
    });
    m.finish(ctx);
    Some(Config {
        version: version?,
        node: node?,
        admin: admin?,
        identity: identity?,
        listeners: listeners?,
        services: services?,
        tracing: tracing?,
        logging: logging?,
    })
}

/// `Some(default)` when the field is absent, else what `decode` makes of it.
pub(crate) fn or_default<'a, T>(
    field: Option<Field<'a>>,
    default: T,
    decode: impl FnOnce(&Field<'a>) -> Option<T>,
) -> Option<T> {
    match field {
        None => Some(default),
        Some(f) => decode(&f),
    }
}

/// `Some(None)` when the field is absent, `Some(Some(_))` when it decoded, `None` on error.
pub(crate) fn maybe<'a, T>(
    field: Option<Field<'a>>,
    decode: impl FnOnce(&Field<'a>) -> Option<T>,
) -> Option<Option<T>> {
    match field {
        None => Some(None),
        Some(f) => decode(&f).map(Some),
    }
}

/// The one key of `keys` present in `m` (in file order), reporting none or several.
/// `what` names the mapping and `example` shows a correct one.
pub(crate) fn exactly_one<'a>(
    ctx: &mut Ctx,
    m: &mut MapReader<'a>,
    keys: &[&'static str],
    what: &str,
    example: &str,
) -> Option<(&'static str, Field<'a>)> {
    let mut present: Vec<(&'static str, Field<'a>)> = keys
        .iter()
        .filter_map(|k| m.optional(k).map(|f| (*k, f)))
        .collect();
    present.sort_by_key(|(_, f)| f.key_pos);
    match present.len() {
        0 => {
            ctx.error(
                m.pos(),
                m.path(),
                format!("{what} needs one of {}, e.g. `{example}`", one_of(keys)),
            );
            None
        }
        1 => present.pop(),
        _ => {
            let (first, _) = &present[0];
            let (second, field) = &present[1];
            ctx.error(
                field.key_pos,
                &field.path,
                format!(
                    "`{second}` cannot be combined with `{first}`; {what} takes exactly one of {}",
                    one_of(keys)
                ),
            );
            None
        }
    }
}

/// Checks that `pattern` compiles, reporting the regex error's short message.
pub(crate) fn check_regex(ctx: &mut Ctx, field: &Field<'_>, pattern: &str) -> Option<()> {
    // Compiled as the router compiles it (anchored), so a pattern that only breaks once
    // wrapped (`/a(?x) # comment`: the comment swallows the closing parenthesis) is
    // refused here, not when the configuration is applied.
    match regex::Regex::new(&format!("^(?:{pattern})$")) {
        Ok(_) => Some(()),
        Err(err) => {
            let text = err.to_string();
            let short = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or(&text)
                .trim()
                .trim_start_matches("error: ")
                .to_string();
            field.error(
                ctx,
                format!(
                    "invalid regex {}: {short}; fix the pattern (Rust regex syntax)",
                    quote(pattern)
                ),
            );
            None
        }
    }
}

/// A SPIFFE ID (`spiffe://trust-domain/path`); with `wildcard`, also a prefix ending in
/// `/*` (`spiffe://cluster.local/ns/shop/*`): the `*` stands for whole path segments only, so
/// a pattern never reaches into another trust domain or a longer name (`ns/shop*` would also
/// let `ns/shopping` in).
pub(crate) fn spiffe_id(ctx: &mut Ctx, field: &Field<'_>, wildcard: bool) -> Option<String> {
    let s = field.str(ctx)?;
    let body = s.strip_prefix("spiffe://").unwrap_or("");
    let (path_part, is_pattern) = match body.strip_suffix('*') {
        Some(prefix) if wildcard => (prefix, true),
        _ => (body, false),
    };
    let (domain, path) = path_part.split_once('/').unwrap_or((path_part, ""));
    let clean = |t: &str| {
        !t.chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '*' | '?' | '#' | '%'))
    };
    let ok = !domain.is_empty()
        && clean(domain)
        && clean(path)
        && match is_pattern {
            // `spiffe://td/*` or `spiffe://td/a/b/*`: the `*` follows a `/`.
            true => path_part.ends_with('/') && path_part.contains('/'),
            false => !path.is_empty(),
        };
    if !ok {
        let tail = if wildcard {
            ", or a prefix of whole segments ending in `/*` such as `spiffe://cluster.local/ns/shop/*`"
        } else {
            ""
        };
        field.error(
            ctx,
            format!(
                "{} is not a SPIFFE ID; write `spiffe://TRUST-DOMAIN/ns/NAMESPACE/sa/SERVICE-ACCOUNT`{tail}",
                quote(s)
            ),
        );
        return None;
    }
    Some(s.to_string())
}

/// A header name, stored lower case.
pub(crate) fn header_name(ctx: &mut Ctx, field: &Field<'_>) -> Option<String> {
    let s = field.str(ctx)?;
    let lower = s.to_ascii_lowercase();
    if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
        field.error(
            ctx,
            format!(
                "{} is not a valid header name; use a token such as `x-user-id` (no spaces or `:`)",
                quote(s)
            ),
        );
        return None;
    }
    Some(lower)
}

fn version(ctx: &mut Ctx, f: &Field<'_>) -> Option<u32> {
    let v = match &f.node.value {
        Value::Int(i) => *i,
        _ => {
            f.type_error(ctx, "the number 1 (`version: 1`)");
            return None;
        }
    };
    if v != 1 {
        f.error(
            ctx,
            format!("unsupported version {v}; this weir reads `version: 1` only"),
        );
        return None;
    }
    Some(1)
}

fn decode_node(ctx: &mut Ctx, f: &Field<'_>) -> Option<Node> {
    let mut m = f.map(ctx, "`service`, `namespace`, `workload`")?;
    let text = |key: &'static str, m: &mut MapReader<'_>, ctx: &mut Ctx| {
        or_default(m.optional(key), String::new(), |f| {
            f.str(ctx).map(str::to_string)
        })
    };
    let service = text("service", &mut m, ctx);
    let namespace = text("namespace", &mut m, ctx);
    let workload = text("workload", &mut m, ctx);
    m.finish(ctx);
    Some(Node {
        service: service?,
        namespace: namespace?,
        workload: workload?,
    })
}

fn decode_admin(ctx: &mut Ctx, f: &Field<'_>, facts: &mut Facts) -> Option<Admin> {
    let mut m = f.map(ctx, "`address`")?;
    let address = match m.optional("address") {
        None => Some(Admin::default().address),
        Some(f) => {
            let addr = f.socket_addr(ctx);
            if let Some(addr) = addr {
                facts.admin = Some(Addr {
                    addr,
                    pos: f.pos(),
                    path: f.path.clone(),
                });
            }
            addr
        }
    };
    m.finish(ctx);
    Some(Admin { address: address? })
}

fn decode_identity(ctx: &mut Ctx, f: &Field<'_>) -> Option<Identity> {
    let mut m = f.map(ctx, "`cert`, `key` and `trust_bundle` file paths")?;
    let path = |key: &'static str, hint: &str, m: &mut MapReader<'_>, ctx: &mut Ctx| {
        m.required(ctx, key, hint)
            .and_then(|f| f.name(ctx, "the file path").map(PathBuf::from))
    };
    let cert = path(
        "cert",
        "add `cert: path/to/workload.crt` (PEM)",
        &mut m,
        ctx,
    );
    let key = path("key", "add `key: path/to/workload.key` (PEM)", &mut m, ctx);
    let trust_bundle = path(
        "trust_bundle",
        "add `trust_bundle: path/to/ca.crt` (PEM)",
        &mut m,
        ctx,
    );
    m.finish(ctx);
    Some(Identity {
        cert: cert?,
        key: key?,
        trust_bundle: trust_bundle?,
    })
}

fn decode_tracing(ctx: &mut Ctx, f: &Field<'_>) -> Option<Tracing> {
    let mut m = f.map(ctx, "`propagation`, `sampling_percent`, `otlp`")?;
    let propagation = or_default(m.optional("propagation"), vec![Propagation::W3c], |f| {
        let items = f.non_empty_seq(
            ctx,
            "header formats",
            "list at least one of `w3c` or `b3`, or remove `propagation`",
        )?;
        let choices = [("w3c", Propagation::W3c), ("b3", Propagation::B3)];
        let decoded: Vec<Option<Propagation>> =
            items.iter().map(|i| i.choice(ctx, &choices)).collect();
        decoded.into_iter().collect()
    });
    let sampling_percent = or_default(m.optional("sampling_percent"), 1.0, |f| f.percent(ctx));
    let otlp = maybe(m.optional("otlp"), |f| decode_otlp(ctx, f));
    m.finish(ctx);
    Some(Tracing {
        propagation: propagation?,
        sampling_percent: sampling_percent?,
        otlp: otlp?,
    })
}

fn decode_otlp(ctx: &mut Ctx, f: &Field<'_>) -> Option<Otlp> {
    let mut m = f.map(ctx, "`endpoint`, `batch_size`, `queue_size`")?;
    let endpoint = m
        .required(
            ctx,
            "endpoint",
            "add the collector URL, e.g. `endpoint: http://127.0.0.1:4318/v1/traces`",
        )
        .and_then(|f| url(ctx, &f));
    let batch = m.optional("batch_size");
    let queue = m.optional("queue_size");
    let batch_size = or_default(batch.clone(), 512, |f| f.u32_min(ctx, 1));
    let queue_size = or_default(queue.clone(), 2048, |f| f.u32_min(ctx, 1));
    m.finish(ctx);
    if let (Some(b), Some(q)) = (batch_size, queue_size) {
        if b > q {
            let at = batch.as_ref().or(queue.as_ref()).unwrap_or(f);
            ctx.error(
                at.pos(),
                &at.path,
                format!("batch_size {b} is larger than queue_size {q}, so a batch can never fill; lower batch_size or raise queue_size"),
            );
            return None;
        }
    }
    Some(Otlp {
        endpoint: endpoint?,
        batch_size: batch_size?,
        queue_size: queue_size?,
    })
}

fn url(ctx: &mut Ctx, f: &Field<'_>) -> Option<String> {
    let s = f.str(ctx)?;
    let uri = s
        .parse::<http::Uri>()
        .ok()
        .filter(|u| u.authority().is_some());
    match uri.as_ref().and_then(|u| u.scheme_str()) {
        Some("http") => Some(s.to_string()),
        Some("https") => {
            f.error(
                ctx,
                format!("{} is an https:// URL, but weir exports spans over plain HTTP (to a collector or agent in the cluster); use its http:// endpoint, e.g. `http://jaeger-collector.observability:4318/v1/traces`", quote(s)),
            );
            None
        }
        _ => {
            f.error(
                ctx,
                format!(
                    "{} is not an http:// URL; write e.g. `http://127.0.0.1:4318/v1/traces`",
                    quote(s)
                ),
            );
            None
        }
    }
}

fn decode_logging(ctx: &mut Ctx, f: &Field<'_>) -> Option<Logging> {
    let defaults = Logging::default();
    let mut m = f.map(ctx, "`level`, `format`, `access_log`")?;
    let level = or_default(m.optional("level"), defaults.level, |f| {
        f.choice(
            ctx,
            &[
                ("error", LogLevel::Error),
                ("warn", LogLevel::Warn),
                ("info", LogLevel::Info),
                ("debug", LogLevel::Debug),
                ("trace", LogLevel::Trace),
            ],
        )
    });
    let format = or_default(m.optional("format"), defaults.format, |f| {
        f.choice(ctx, &[("text", LogFormat::Text), ("json", LogFormat::Json)])
    });
    let access_log = or_default(m.optional("access_log"), defaults.access_log, |f| {
        f.bool(ctx)
    });
    m.finish(ctx);
    Some(Logging {
        level: level?,
        format: format?,
        access_log: access_log?,
    })
}
