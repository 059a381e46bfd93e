//! Transparent listeners route by where the application sent a connection. A service's
//! `addresses` say where the application believes the service is; loading the file turns
//! them into routes, appended to each transparent listener after the routes written there,
//! so the request path knows only routes (with `match.destination`) and `/config` shows
//! what is in force:
//!
//! - an outbound listener gets a route to each service with an address of a specific IP
//!   (a cluster IP and port), claiming those addresses;
//! - an inbound listener gets a route to each service with an address of an unspecified IP
//!   (`0.0.0.0:8080`: port 8080 of this pod, whatever its IP), claiming that port.
//!
//! The route is named after its service. A service found by `discovery: kubernetes` that
//! lists no address of a specific IP gets a route on outbound listeners too, claiming the
//! Service's cluster IP and port as discovery reports them.

use std::net::SocketAddr;

use super::reader::Ctx;
use super::schema::{Backend, Config, Direction, Discovery, Route, RouteMatch, DEFAULT_UPGRADE};
use super::validate::Facts;

/// Cross-checks: no two services claim the same address, and a route written on a
/// transparent listener does not take the name of a route weir makes for a service.
pub(crate) fn check(ctx: &mut Ctx, facts: &Facts) {
    for (i, (addr, service)) in facts.service_addresses.iter().enumerate() {
        let earlier = facts.service_addresses[..i]
            .iter()
            .find(|(other, owner)| same_claim(other.addr, addr.addr) && owner != service);
        if let Some((other, owner)) = earlier {
            ctx.error(
                addr.pos,
                &addr.path,
                format!(
                    "{} is already claimed by service `{owner}` (line {}); a transparent listener sends a destination to one service: remove it from one of them, or route between them with a route whose `match.destination` names it",
                    addr.addr, other.pos.line
                ),
            );
        }
    }
    for listener in facts.listeners.iter().filter(|l| l.transparent) {
        let direction = if listener.inbound {
            Direction::Inbound
        } else {
            Direction::Outbound
        };
        let added = added_routes(facts, direction);
        for route in &listener.routes {
            if added.contains(&route.name.as_str()) {
                ctx.error(
                    route.pos,
                    &route.path,
                    format!(
                        "on this transparent listener weir adds a route named `{0}` for service `{0}` (its `addresses`, or the cluster IP its discovery finds); give this route another name",
                        route.name
                    ),
                );
            }
        }
    }
}

/// The names of the routes [`expand`] adds to a transparent listener of `direction`, from
/// what the decoder recorded (the same rule, on facts rather than the decoded file).
fn added_routes(facts: &Facts, direction: Direction) -> Vec<&str> {
    let claims = |service: &str, unspecified: bool| {
        facts
            .service_addresses
            .iter()
            .any(|(a, s)| s == service && a.addr.ip().is_unspecified() == unspecified)
    };
    let mut names: Vec<&str> = facts
        .service_addresses
        .iter()
        .map(|(_, s)| s.as_str())
        .filter(|s| claims(s, direction == Direction::Inbound))
        .collect();
    if direction == Direction::Outbound {
        names.extend(
            facts
                .kube_services
                .iter()
                .map(String::as_str)
                .filter(|s| !claims(s, false)),
        );
    }
    names.sort_unstable();
    names.dedup();
    names
}

/// Whether two services' addresses claim the same destinations (`0.0.0.0:P` and `[::]:P`
/// both claim port P).
fn same_claim(a: SocketAddr, b: SocketAddr) -> bool {
    a == b || a.ip().is_unspecified() && b.ip().is_unspecified() && a.port() == b.port()
}

/// Which of `addresses` a transparent listener of `direction` claims for its service.
fn claimed_by(direction: Direction, addresses: &[SocketAddr]) -> Vec<SocketAddr> {
    addresses
        .iter()
        .copied()
        .filter(|a| a.ip().is_unspecified() == (direction == Direction::Inbound))
        .collect()
}

/// Appends, to every transparent listener, a route to each service that claims addresses
/// it sees (see the module documentation).
pub(crate) fn expand(config: &mut Config) {
    let services = &config.services;
    for listener in config.listeners.iter_mut().filter(|l| l.transparent) {
        for service in services {
            let destination = claimed_by(listener.direction, &service.addresses);
            let discovered = destination.is_empty()
                && listener.direction == Direction::Outbound
                && matches!(service.discovery, Some(Discovery::Kubernetes { .. }));
            if destination.is_empty() && !discovered {
                continue;
            }
            listener.routes.push(Route {
                name: service.name.clone(),
                matcher: RouteMatch {
                    destination,
                    discovered_destination: discovered,
                    ..RouteMatch::default()
                },
                backends: vec![Backend {
                    service: service.name.clone(),
                    weight: 1,
                }],
                timeout: None,
                retries: None,
                fault: None,
                mirror: None,
                upgrades: vec![DEFAULT_UPGRADE.to_string()],
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{load_str, AuthorityMatch, LoadError, UnknownDestination};

    const SERVICES: &str = "services:\n  - { name: reviews, endpoints: [\"127.0.0.1:9001\"], addresses: [10.96.0.20:9080] }\n  - { name: local-app, endpoints: [\"127.0.0.1:8080\"], addresses: [\"0.0.0.0:8080\"] }\n";

    fn errors(text: &str) -> Vec<String> {
        match load_str("t.yaml", text) {
            Err(LoadError::Invalid(d)) => d.iter().map(ToString::to_string).collect(),
            Ok(_) => panic!("loaded:\n{text}"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn services_addresses_become_routes_on_the_transparent_listener_of_their_direction() {
        let text = format!(
            "version: 1\nlisteners:\n  - name: outbound\n    address: 127.0.0.1:15001\n    transparent: true\n    routes:\n      - name: by-host\n        match: {{ authority: {{ exact: ratings }} }}\n        backends: [{{ service: reviews }}]\n  - name: inbound\n    address: 0.0.0.0:15006\n    transparent: true\n    direction: inbound\n    unknown_destination: refuse\n{SERVICES}"
        );
        let config = load_str("t.yaml", &text).expect("valid").config;
        let outbound = &config.listeners[0];
        let names: Vec<&str> = outbound.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["by-host", "reviews"], "written routes come first");
        assert_eq!(
            outbound.routes[0].matcher.authority,
            Some(AuthorityMatch::Exact("ratings".into()))
        );
        assert_eq!(
            outbound.routes[1].matcher.destination,
            ["10.96.0.20:9080".parse().unwrap()]
        );
        assert_eq!(outbound.routes[1].backends[0].service, "reviews");
        assert_eq!(
            outbound.unknown_destination,
            UnknownDestination::Passthrough
        );
        let inbound = &config.listeners[1];
        assert_eq!(inbound.routes.len(), 1, "{:?}", inbound.routes);
        assert_eq!(inbound.routes[0].name, "local-app");
        assert_eq!(
            inbound.routes[0].matcher.destination,
            ["0.0.0.0:8080".parse().unwrap()]
        );
        assert_eq!(inbound.unknown_destination, UnknownDestination::Refuse);
    }

    #[test]
    fn a_listener_that_is_not_transparent_gets_no_routes_and_needs_its_own() {
        let text = format!(
            "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:15001\n{SERVICES}"
        );
        assert_eq!(
            errors(&text),
            ["t.yaml:3:5: listeners[0].routes: required field `routes` is missing; add `routes:` with at least one route (name and backends)"]
        );
    }

    #[test]
    fn transparent_only_settings_on_an_ordinary_listener_are_errors() {
        let text = format!(
            "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:15001\n    unknown_destination: refuse\n    routes:\n      - name: r\n        match: {{ destination: [10.0.0.1:80] }}\n        backends: [{{ service: reviews }}]\n{SERVICES}"
        );
        let errors = errors(&text);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].starts_with(
                "t.yaml:5:26: listeners[0].unknown_destination: only a transparent listener"
            ),
            "{errors:#?}"
        );
        assert!(errors[1].starts_with("t.yaml:8:31: listeners[0].routes[0].match.destination: only a transparent listener"), "{errors:#?}");
    }

    #[test]
    fn a_transparent_tcp_listener_routes_by_addresses_only() {
        let text = format!(
            "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:15001\n    protocol: tcp\n    transparent: true\n    routes:\n      - name: r\n        backends: [{{ service: reviews }}]\n{SERVICES}"
        );
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with("t.yaml:8:7: listeners[0].routes: a transparent tcp listener forwards each connection to the service whose `addresses`"),
            "{errors:#?}"
        );
    }

    #[test]
    fn an_address_claimed_twice_and_a_route_named_like_a_claiming_service_are_errors() {
        let text = "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:15001\n    transparent: true\n    routes:\n      - name: a\n        backends: [{ service: b }]\nservices:\n  - { name: a, endpoints: [\"127.0.0.1:1\"], addresses: [10.0.0.1:80] }\n  - { name: b, endpoints: [\"127.0.0.1:2\"], addresses: [10.0.0.2:80, 10.0.0.1:80] }\n";
        let errors = errors(text);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].starts_with("t.yaml:7:15: listeners[0].routes[0].name: on this transparent listener weir adds a route named `a` for service `a`"),
            "{errors:#?}"
        );
        assert!(
            errors[1].starts_with("t.yaml:11:69: services[1].addresses[1]: 10.0.0.1:80 is already claimed by service `a` (line 10)"),
            "{errors:#?}"
        );
    }

    #[test]
    fn route_names_clash_only_with_the_routes_weir_adds_on_that_listener() {
        let text = "version: 1\nlisteners:\n  - name: out\n    address: 127.0.0.1:15001\n    transparent: true\n    routes:\n      - name: db\n        backends: [{ service: app }]\n      - name: app\n        backends: [{ service: app }]\n  - name: in\n    address: 0.0.0.0:15006\n    transparent: true\n    direction: inbound\nservices:\n  - { name: app, endpoints: [\"127.0.0.1:8080\"], addresses: [\"0.0.0.0:8080\"] }\n  - name: db\n    discovery: { kubernetes: { service: db, namespace: shop, port: 5432 } }\n  - { name: other, endpoints: [\"127.0.0.1:9\"], addresses: [\"[::]:8080\"] }\n";
        let errors = errors(text);
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].starts_with("t.yaml:7:15: listeners[0].routes[0].name: on this transparent listener weir adds a route named `db`"),
            "a discovered service gets a route on outbound listeners: {errors:#?}"
        );
        assert!(
            errors[1].starts_with("t.yaml:19:60: services[2].addresses[0]: [::]:8080 is already claimed by service `app`"),
            "`[::]:P` and `0.0.0.0:P` claim the same port: {errors:#?}"
        );
    }

    #[test]
    fn an_authority_with_spaces_is_refused() {
        let text = "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:15001\n    routes:\n      - name: r\n        match: { authority: { exact: \"a b\" } }\n        backends: [{ service: s }]\nservices:\n  - { name: s, endpoints: [\"127.0.0.1:1\"] }\n";
        let errors = errors(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].contains("routes[0].match.authority.exact: an authority is a host"),
            "{errors:#?}"
        );
    }
}
