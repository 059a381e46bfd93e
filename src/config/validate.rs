//! Checks that span several parts of the file: unique names, resolvable service references
//! and listener addresses that can all be bound.
//!
//! The decoder records the located [`Facts`] these checks need as it goes, so they run even
//! when other parts of the file failed to decode, and every problem is reported together.

use std::net::SocketAddr;

use super::reader::Ctx;
use super::suggest::did_you_mean;
use super::tree::Pos;

/// A located string value: a name or a reference to one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Named {
    /// The text.
    pub name: String,
    /// Where the value is.
    pub pos: Pos,
    /// The field's path.
    pub path: String,
}

/// A located socket address.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Addr {
    /// The address.
    pub addr: SocketAddr,
    /// Where the value is.
    pub pos: Pos,
    /// The field's path.
    pub path: String,
}

/// What one listener contributed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ListenerFacts {
    /// Its name, if it decoded.
    pub name: Option<Named>,
    /// Its address, if it decoded.
    pub address: Option<Addr>,
    /// Its route names that decoded.
    pub routes: Vec<Named>,
    /// Whether it is `transparent: true`.
    pub transparent: bool,
    /// Whether its direction is inbound (given, or by default for a listener with `tls`).
    pub inbound: bool,
    /// Where its `tls` is, when its mode is `strict` or `permissive` (which need the
    /// workload's identity).
    pub tls: Option<Named>,
}

/// Everything the cross-checks need, recorded by the decoder.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Facts {
    /// `admin.address` when given explicitly.
    pub admin: Option<Addr>,
    /// One entry per listener item.
    pub listeners: Vec<ListenerFacts>,
    /// Service names that decoded.
    pub services: Vec<Named>,
    /// False when `services` was not a list, so references cannot be judged.
    pub services_unreadable: bool,
    /// Every reference to a service (route backends, mirrors).
    pub service_refs: Vec<Named>,
    /// Whether the file has an `identity` section.
    pub identity: bool,
    /// Where each service's `tls` is (origination needs the workload's identity).
    pub service_tls: Vec<Named>,
    /// Every address a service claims (`addresses`), with the service's name.
    pub service_addresses: Vec<(Addr, String)>,
    /// Services found by `discovery: kubernetes`.
    pub kube_services: Vec<String>,
}

/// Runs every cross-check, reporting into `ctx`.
pub(crate) fn check(ctx: &mut Ctx, facts: &Facts) {
    let listener_names: Vec<Named> = facts
        .listeners
        .iter()
        .filter_map(|l| l.name.clone())
        .collect();
    unique(ctx, &listener_names, "listener");
    for listener in &facts.listeners {
        unique(ctx, &listener.routes, "route");
    }
    unique(ctx, &facts.services, "service");
    if !facts.services_unreadable {
        references(ctx, facts);
    }
    addresses(ctx, facts);
    if !facts.identity {
        for tls in facts.listeners.iter().filter_map(|l| l.tls.as_ref()) {
            ctx.error(
                tls.pos,
                &tls.path,
                format!(
                    "mode `{}` needs this workload's identity: add a top-level `identity: {{ cert: FILE, key: FILE, trust_bundle: FILE }}` (`weir certs issue` writes them), or set `mode: disabled`",
                    tls.name
                ),
            );
        }
        for tls in &facts.service_tls {
            ctx.error(
                tls.pos,
                &tls.path,
                "mTLS to this service needs this workload's identity to present: add a top-level `identity: { cert: FILE, key: FILE, trust_bundle: FILE }` (`weir certs issue` writes them), or remove `tls`",
            );
        }
    }
}

/// Reports each name that repeats an earlier one, at the repeat.
fn unique(ctx: &mut Ctx, names: &[Named], what: &str) {
    for (i, item) in names.iter().enumerate() {
        if let Some(first) = names[..i].iter().find(|n| n.name == item.name) {
            let scope = if what == "route" {
                " within a listener"
            } else {
                ""
            };
            ctx.error(
                item.pos,
                &item.path,
                format!(
                    "duplicate {what} name `{}` (first defined at line {}); {what} names must be unique{scope}, rename one",
                    item.name, first.pos.line
                ),
            );
        }
    }
}

/// Reports every service reference that names no service.
fn references(ctx: &mut Ctx, facts: &Facts) {
    let names: Vec<&str> = facts.services.iter().map(|s| s.name.as_str()).collect();
    for reference in &facts.service_refs {
        if names.contains(&reference.name.as_str()) {
            continue;
        }
        let hint = match did_you_mean(&reference.name, names.iter().copied()) {
            Some(close) => format!("did you mean `{close}`?"),
            None if names.is_empty() => format!(
                "no services are defined; add one under `services:` with `name: {}`",
                reference.name
            ),
            None => format!(
                "define it under `services:` or use one of the defined services: {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        ctx.error(
            reference.pos,
            &reference.path,
            format!("no service named `{}`; {hint}", reference.name),
        );
    }
}

/// Whether sockets bound to `a` and `b` collide: same non-zero port and the same IP, or one
/// of them is a wildcard that covers the other (`0.0.0.0` covers IPv4, `[::]` covers both).
pub(crate) fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    let covers =
        |x: SocketAddr, y: SocketAddr| x.ip().is_unspecified() && (x.is_ipv6() || y.is_ipv4());
    a.port() == b.port() && a.port() != 0 && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

/// Why two conflicting addresses collide, when they are not identical.
fn overlap(a: SocketAddr, b: SocketAddr) -> String {
    if a.ip() == b.ip() {
        String::new()
    } else {
        let wildcard = if a.ip().is_unspecified() { a } else { b };
        format!(": {} covers every interface", wildcard.ip())
    }
}

/// Reports listener addresses that collide with an earlier listener or the admin server.
fn addresses(ctx: &mut Ctx, facts: &Facts) {
    let admin = facts
        .admin
        .as_ref()
        .map_or(crate::config::Admin::default().address, |a| a.addr);
    let located: Vec<(&Addr, Option<&Named>)> = facts
        .listeners
        .iter()
        .filter_map(|l| l.address.as_ref().map(|a| (a, l.name.as_ref())))
        .collect();
    for (i, (addr, _)) in located.iter().enumerate() {
        let earlier = located[..i]
            .iter()
            .find(|(f, _)| conflicts(f.addr, addr.addr));
        let message = if let Some((first, first_name)) = earlier {
            let name = first_name.map_or(String::new(), |n| format!(" `{}`", n.name));
            if first.addr.ip() == addr.addr.ip() {
                format!(
                    "{} is already used by listener{name} (line {}); give each listener its own port",
                    addr.addr, first.pos.line
                )
            } else {
                format!(
                    "{} conflicts with listener{name} on {} (line {}){}, so both cannot bind port {}; give each listener its own port",
                    addr.addr,
                    first.addr,
                    first.pos.line,
                    overlap(first.addr, addr.addr),
                    addr.addr.port()
                )
            }
        } else if conflicts(admin, addr.addr) {
            let whose = match &facts.admin {
                Some(a) => format!(
                    "the admin server on {} (admin.address, line {})",
                    a.addr, a.pos.line
                ),
                None => format!("the admin server's default address {admin}"),
            };
            format!(
                "{} conflicts with {whose}{}; move the listener to another port or set `admin.address` elsewhere",
                addr.addr,
                overlap(admin, addr.addr)
            )
        } else {
            continue;
        };
        ctx.error(addr.pos, &addr.path, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, line: u32, path: &str) -> Named {
        Named {
            name: name.to_string(),
            pos: Pos { line, col: 5 },
            path: path.to_string(),
        }
    }

    fn addr(a: &str, line: u32, path: &str) -> Addr {
        Addr {
            addr: a.parse().expect("addr"),
            pos: Pos { line, col: 14 },
            path: path.to_string(),
        }
    }

    fn run(facts: &Facts) -> Vec<String> {
        let mut ctx = Ctx::new("f");
        check(&mut ctx, facts);
        ctx.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn wildcard_conflicts() {
        let p = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert!(conflicts(p("0.0.0.0:80"), p("127.0.0.1:80")));
        assert!(conflicts(p("127.0.0.1:80"), p("0.0.0.0:80")));
        assert!(conflicts(p("[::]:80"), p("127.0.0.1:80")));
        assert!(!conflicts(p("0.0.0.0:80"), p("[::1]:80")));
        assert!(!conflicts(p("127.0.0.1:80"), p("127.0.0.2:80")));
        assert!(!conflicts(p("127.0.0.1:0"), p("127.0.0.1:0")));
        assert!(!conflicts(p("0.0.0.0:80"), p("0.0.0.0:81")));
    }

    #[test]
    fn duplicates_and_references() {
        let facts = Facts {
            listeners: vec![ListenerFacts {
                name: Some(named("a", 2, "listeners[0].name")),
                address: None,
                routes: vec![
                    named("r", 3, "listeners[0].routes[0].name"),
                    named("r", 4, "listeners[0].routes[1].name"),
                ],
                tls: None,
                transparent: false,
                inbound: false,
            }],
            services: vec![named("reviews", 8, "services[0].name")],
            service_refs: vec![named(
                "reviewz",
                5,
                "listeners[0].routes[0].backends[0].service",
            )],
            ..Facts::default()
        };
        assert_eq!(
            run(&facts),
            vec![
                "f:4:5: listeners[0].routes[1].name: duplicate route name `r` (first defined at line 3); route names must be unique within a listener, rename one",
                "f:5:5: listeners[0].routes[0].backends[0].service: no service named `reviewz`; did you mean `reviews`?",
            ]
        );
    }

    #[test]
    fn listener_on_the_default_admin_address() {
        let facts = Facts {
            listeners: vec![ListenerFacts {
                address: Some(addr("0.0.0.0:9901", 3, "listeners[0].address")),
                ..ListenerFacts::default()
            }],
            ..Facts::default()
        };
        assert_eq!(
            run(&facts),
            vec!["f:3:14: listeners[0].address: 0.0.0.0:9901 conflicts with the admin server's default address 127.0.0.1:9901: 0.0.0.0 covers every interface; move the listener to another port or set `admin.address` elsewhere"]
        );
    }
}
