//! Routes that can never match: an earlier route of the same listener takes every request
//! they would. Reported as warnings (the configuration still works), and only when certain:
//! a regex covers only the identical regex, a condition we cannot compare covers nothing.

use super::diagnostic::Diagnostic;
use super::schema::{
    AuthorityMatch, Config, HeaderMatch, HeaderRule, Listener, PathMatch, Route, RouteMatch,
};

/// One warning per shadowed route written in the file, naming the first earlier route that
/// shadows it, both with their positions in `text`.
pub(crate) fn warnings(file: &str, text: &str, config: &Config) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (l, listener) in config.listeners.iter().enumerate() {
        let l = l.to_string();
        let at = |r: usize| {
            let r = r.to_string();
            super::diagnostic_at(file, text, &["listeners", &l, "routes", &r], String::new())
        };
        for (later, earlier) in shadowed_routes(listener) {
            let shadow = at(earlier);
            let mut d = at(later);
            d.message = format!(
                "route {} can never match: route {} ({}:{}:{}, {}) takes every request it would",
                listener.routes[later].name,
                listener.routes[earlier].name,
                shadow.file,
                shadow.line,
                shadow.col,
                shadow.path
            );
            out.push(d);
        }
    }
    out
}

/// Each route that can never match, with the first earlier route that takes every request
/// it would: `(shadowed, shadowing)` indices into the listener's routes. `weir check` warns
/// about them; `weir explain` and `/explain` say so too. The routes a transparent listener
/// gets for services' addresses (`transparent::expand`) are not judged: nobody wrote them,
/// and `weir check` judges the file before they exist.
pub fn shadowed_routes(listener: &Listener) -> Vec<(usize, usize)> {
    let routes = &listener.routes;
    (0..routes.len())
        .filter(|&later| !(listener.transparent && added_for_service(&routes[later])))
        .filter_map(|later| {
            routes[..later]
                .iter()
                .position(|e| covers(&e.matcher, &routes[later].matcher))
                .map(|earlier| (later, earlier))
        })
        .collect()
}

/// Whether `route` has the shape of one `transparent::expand` adds: named after its only
/// backend, matching destinations only, with no policy of its own.
fn added_for_service(route: &Route) -> bool {
    let m = &route.matcher;
    route.backends.len() == 1
        && route.backends[0].service == route.name
        && m.path.is_none()
        && m.headers.is_empty()
        && m.method.is_none()
        && m.peer.is_none()
        && m.authority.is_none()
        && route.timeout.is_none()
        && route.retries.is_none()
        && route.fault.is_none()
        && route.mirror.is_none()
}

/// Whether every request (and connection) that meets `later` also meets `earlier`.
pub(crate) fn covers(earlier: &RouteMatch, later: &RouteMatch) -> bool {
    let path = match (&earlier.path, &later.path) {
        (None, _) => true,
        (Some(e), Some(l)) => path_covers(e, l),
        (Some(_), None) => false,
    };
    let method = earlier.method.is_none() || earlier.method == later.method;
    let peer = earlier.peer.is_none() || earlier.peer == later.peer;
    let authority = match (&earlier.authority, &later.authority) {
        (None, _) => true,
        (Some(e), Some(l)) => authority_covers(e, l),
        (Some(_), None) => false,
    };
    let headers = earlier
        .headers
        .iter()
        .all(|e| later.headers.iter().any(|l| header_covers(e, l)));
    let destination = if earlier.discovered_destination {
        later.discovered_destination && earlier.destination == later.destination
    } else if earlier.destination.is_empty() {
        true
    } else {
        !later.discovered_destination
            && !later.destination.is_empty()
            && later.destination.iter().all(|&d| {
                earlier
                    .destination
                    .iter()
                    .any(|&w| w == d || (w.ip().is_unspecified() && w.port() == d.port()))
            })
    };
    path && method && peer && authority && headers && destination
}

/// Whether every path `later` matches, `earlier` matches too.
fn path_covers(earlier: &PathMatch, later: &PathMatch) -> bool {
    use PathMatch::*;
    // What every path `later` matches starts with, and whether that is all it can be.
    let under = |s: &str, segments: &str| s == segments || s.starts_with(&format!("{segments}/"));
    match (earlier, later) {
        (Prefix(e), Prefix(l) | Exact(l)) => l.starts_with(e.as_str()),
        (Prefix(e), SegmentPrefix(l)) => l.trim_end_matches('/').starts_with(e.as_str()),
        (Exact(e), Exact(l)) => e == l,
        (SegmentPrefix(e), Exact(l) | SegmentPrefix(l)) => {
            under(l.trim_end_matches('/'), e.trim_end_matches('/'))
                || (e.trim_end_matches('/').is_empty() && l.starts_with('/'))
        }
        (SegmentPrefix(e), Prefix(l)) => {
            let e = e.trim_end_matches('/');
            l.starts_with(&format!("{e}/"))
        }
        (Regex(e), Regex(l)) => e == l,
        _ => false,
    }
}

/// Whether every authority `later` matches, `earlier` matches too (compared without case).
fn authority_covers(earlier: &AuthorityMatch, later: &AuthorityMatch) -> bool {
    use AuthorityMatch::*;
    match (earlier, later) {
        (Exact(e), Exact(l)) => e.eq_ignore_ascii_case(l),
        (Prefix(e), Prefix(l)) => l.to_ascii_lowercase().starts_with(&e.to_ascii_lowercase()),
        (Regex(e), Regex(l)) => e == l,
        _ => false,
    }
}

/// Whether every request meeting header condition `later` meets `earlier`.
fn header_covers(earlier: &HeaderMatch, later: &HeaderMatch) -> bool {
    use HeaderRule::*;
    if !earlier.name.eq_ignore_ascii_case(&later.name) {
        return false;
    }
    match (&earlier.rule, &later.rule) {
        (e, l) if e == l => true,
        (Present(true), Exact(_) | Prefix(_) | Regex(_)) => true,
        (Prefix(e), Exact(l) | Prefix(l)) => l.starts_with(e.as_str()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(yaml_path: Option<PathMatch>) -> RouteMatch {
        RouteMatch {
            path: yaml_path,
            ..RouteMatch::default()
        }
    }

    fn prefix(p: &str) -> RouteMatch {
        m(Some(PathMatch::Prefix(p.into())))
    }

    fn segments(p: &str) -> RouteMatch {
        m(Some(PathMatch::SegmentPrefix(p.into())))
    }

    fn exact(p: &str) -> RouteMatch {
        m(Some(PathMatch::Exact(p.into())))
    }

    #[test]
    fn a_route_without_conditions_covers_every_route() {
        let all = RouteMatch::default();
        assert!(covers(&all, &prefix("/reviews")));
        assert!(covers(&all, &all));
        let narrow = RouteMatch {
            method: Some("GET".into()),
            peer: Some("spiffe://td/ns/a/sa/b".into()),
            ..prefix("/x")
        };
        assert!(covers(&all, &narrow));
    }

    #[test]
    fn prefixes_cover_longer_prefixes_and_exact_paths_under_them() {
        assert!(covers(&prefix("/"), &prefix("/reviews")));
        assert!(covers(&prefix("/a"), &prefix("/a/b")));
        assert!(covers(&prefix("/a"), &exact("/a/x")));
        assert!(
            covers(&prefix("/a"), &prefix("/ab")),
            "a prefix is not whole segments"
        );
        assert!(covers(&prefix("/a"), &segments("/ab")));
        assert!(!covers(&prefix("/a/b"), &prefix("/a")));
        assert!(!covers(&prefix("/a"), &exact("/b")));
        assert!(
            !covers(&prefix("/"), &RouteMatch::default()),
            "a request may have no / path (CONNECT, OPTIONS *)"
        );
    }

    #[test]
    fn segment_prefixes_cover_whole_segments_only() {
        assert!(!covers(&segments("/a"), &prefix("/ab")));
        assert!(
            !covers(&segments("/a"), &prefix("/a")),
            "/ab starts with /a"
        );
        assert!(covers(&segments("/a"), &prefix("/a/")));
        assert!(covers(&segments("/a/"), &exact("/a")));
        assert!(covers(&segments("/a"), &segments("/a/b")));
        assert!(!covers(&segments("/a"), &segments("/ab")));
        assert!(covers(&segments("/"), &exact("/x")));
        assert!(covers(&exact("/a"), &exact("/a")));
        assert!(!covers(&exact("/a"), &prefix("/a")));
    }

    #[test]
    fn regexes_cover_only_the_identical_regex() {
        let re = |r: &str| m(Some(PathMatch::Regex(r.into())));
        assert!(covers(&re("/u/[0-9]+"), &re("/u/[0-9]+")));
        assert!(!covers(&re("/u/.*"), &re("/u/[0-9]+")));
        assert!(!covers(&re("/.*"), &prefix("/a")));
    }

    #[test]
    fn conditions_of_the_earlier_route_must_all_hold_for_the_later() {
        let get = |r: RouteMatch| RouteMatch {
            method: Some("GET".into()),
            ..r
        };
        assert!(!covers(&get(prefix("/")), &prefix("/a")), "any method");
        assert!(covers(&get(prefix("/")), &get(prefix("/a"))));
        let post = RouteMatch {
            method: Some("POST".into()),
            ..prefix("/a")
        };
        assert!(!covers(&get(prefix("/")), &post), "different methods");
        let header = |rule: HeaderRule| HeaderMatch {
            name: "x-canary".into(),
            rule,
        };
        let canary = RouteMatch {
            headers: vec![header(HeaderRule::Exact("true".into()))],
            ..prefix("/")
        };
        assert!(!covers(&canary, &prefix("/reviews")), "a header condition");
        let later = RouteMatch {
            headers: vec![
                header(HeaderRule::Exact("true".into())),
                HeaderMatch {
                    name: "x-user".into(),
                    rule: HeaderRule::Present(true),
                },
            ],
            ..prefix("/reviews")
        };
        assert!(covers(&canary, &later), "the later route asks for more");
        let present = RouteMatch {
            headers: vec![header(HeaderRule::Present(true))],
            ..RouteMatch::default()
        };
        assert!(covers(&present, &later));
        assert!(!covers(
            &RouteMatch {
                headers: vec![header(HeaderRule::Present(false))],
                ..RouteMatch::default()
            },
            &prefix("/")
        ));
        let host = |a: AuthorityMatch| RouteMatch {
            authority: Some(a),
            ..RouteMatch::default()
        };
        assert!(covers(
            &host(AuthorityMatch::Exact("A.shop".into())),
            &host(AuthorityMatch::Exact("a.SHOP".into()))
        ));
        assert!(!covers(
            &host(AuthorityMatch::Exact("a.shop".into())),
            &RouteMatch::default()
        ));
    }

    #[test]
    fn destinations_cover_the_same_or_any_address_on_the_port() {
        let to = |ds: &[&str]| RouteMatch {
            destination: ds.iter().map(|d| d.parse().expect("address")).collect(),
            ..RouteMatch::default()
        };
        assert!(covers(&to(&["0.0.0.0:80"]), &to(&["10.0.0.1:80"])));
        assert!(covers(
            &to(&["10.0.0.1:80", "10.0.0.2:80"]),
            &to(&["10.0.0.2:80"])
        ));
        assert!(!covers(
            &to(&["10.0.0.1:80"]),
            &to(&["10.0.0.1:80", "10.0.0.2:80"])
        ));
        assert!(!covers(&to(&["10.0.0.1:80"]), &RouteMatch::default()));
        let discovered = RouteMatch {
            discovered_destination: true,
            ..RouteMatch::default()
        };
        assert!(!covers(&discovered, &to(&["10.0.0.1:80"])));
        assert!(!covers(&to(&["10.0.0.1:80"]), &discovered));
    }

    #[test]
    fn routes_added_for_services_on_a_transparent_listener_are_not_judged() {
        let text = "version: 1\nlisteners:\n  - name: out\n    address: 127.0.0.1:15001\n    transparent: true\n    routes:\n      - name: everything\n        backends: [{ service: reviews }]\nservices:\n  - { name: reviews, endpoints: [\"127.0.0.1:9001\"], addresses: [10.96.0.20:9080] }\n";
        let loaded = crate::config::load_str("t.yaml", text).expect("valid");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let listener = &loaded.config.listeners[0];
        assert_eq!(listener.routes.len(), 2, "the route for reviews' address");
        assert_eq!(shadowed_routes(listener), []);
    }

    #[test]
    fn weir_check_warns_with_both_positions() {
        let text = "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: catch-all\n        backends: [{ service: s }]\n      - name: reviews\n        match: { path: { prefix: /reviews } }\n        backends: [{ service: s }]\n      - name: get\n        match: { method: GET }\n        backends: [{ service: s }]\nservices:\n  - { name: s, endpoints: [\"127.0.0.1:2\"] }\n";
        let loaded = crate::config::load_str("w.yaml", text).expect("valid");
        let lines: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "w.yaml:8:9: listeners[0].routes[1]: route reviews can never match: route catch-all (w.yaml:6:9, listeners[0].routes[0]) takes every request it would",
                "w.yaml:11:9: listeners[0].routes[2]: route get can never match: route catch-all (w.yaml:6:9, listeners[0].routes[0]) takes every request it would",
            ]
        );
    }
}
