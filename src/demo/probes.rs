//! Which requests the demo sends. With `--config FILE`, one request for each route of the
//! loaded listener, built from the route's `match`: its exact path, its prefix, or a path its
//! regex accepts, with the method and headers the route requires. Every request is checked
//! against the listener's routes in order (first match wins, as in weir itself), so a request
//! meant for one route that an earlier route would take is left out with a note, as is a
//! regex the demo cannot find a path for. `--path` replaces all of this with plain `GET`s.

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request};
use regex::Regex;

use crate::config::{HeaderRule, PathMatch, Route};
use crate::route::matcher::{Origin, RouteMatcher};

/// One kind of request the load generator sends; the load cycles through them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The route this request is meant for (`None` for a `--path`).
    pub route: Option<String>,
    /// Request method.
    pub method: Method,
    /// Path (and query) of the request target; starts with `/`.
    pub path: String,
    /// Headers the route requires.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

// === impl Probe ===

impl Probe {
    /// A plain `GET path`, meant for no route in particular.
    pub fn get(path: &str) -> Probe {
        Probe {
            route: None,
            method: Method::GET,
            path: path.to_string(),
            headers: Vec::new(),
        }
    }

    /// `GET /reviews  x-canary: true`, for the intro.
    pub fn describe(&self) -> String {
        let mut s = format!("{} {}", self.method, self.path);
        for (name, value) in &self.headers {
            s.push_str(&format!("  {}: {}", name, value.to_str().unwrap_or("…")));
        }
        s
    }

    /// The request without a body, for matching against routes.
    fn request(&self) -> Option<Request<()>> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str());
        for (name, value) in &self.headers {
            b = b.header(name, value);
        }
        b.body(()).ok()
    }
}

/// Checks a `--path` value: a request target that starts with `/`.
pub fn parse_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!(
            "`{s}` does not start with `/`; give a path such as `/reviews/1`"
        ));
    }
    if s.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(format!("`{s}` is not a valid request path"));
    }
    Ok(s.to_string())
}

/// The requests that reach each of `routes` (in route order), and a note for every route
/// that none reaches.
pub fn for_routes(routes: &[Route]) -> (Vec<Probe>, Vec<String>) {
    let matchers: Vec<Option<RouteMatcher>> = routes
        .iter()
        .map(|r| RouteMatcher::new(&r.matcher).ok())
        .collect();
    let mut probes = Vec::new();
    let mut notes = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        let probe = match derive(route) {
            Ok(p) => p,
            Err(why) => {
                notes.push(format!(
                    "route {} is not driven: {why}; use --path to send to it",
                    route.name
                ));
                continue;
            }
        };
        match first_match(&matchers, &probe) {
            Some(j) if j == i => probes.push(probe),
            Some(j) => notes.push(format!(
                "route {} is not driven: its request ({}) is taken by the earlier route {}",
                route.name,
                probe.describe(),
                routes[j].name
            )),
            None => notes.push(format!(
                "route {} is not driven: no route matches its request ({})",
                route.name,
                probe.describe()
            )),
        }
    }
    (probes, notes)
}

/// The `--path` requests, each with the route it reaches (or a note that it reaches none,
/// so weir will answer 404 `no_route`).
pub fn for_paths(paths: &[String], routes: &[Route]) -> (Vec<Probe>, Vec<String>) {
    let matchers: Vec<Option<RouteMatcher>> = routes
        .iter()
        .map(|r| RouteMatcher::new(&r.matcher).ok())
        .collect();
    let mut notes = Vec::new();
    let probes = paths
        .iter()
        .map(|path| {
            let mut probe = Probe::get(path);
            match first_match(&matchers, &probe) {
                Some(j) => probe.route = Some(routes[j].name.clone()),
                None => notes.push(format!(
                    "--path {path} matches no route: weir answers it 404 no_route"
                )),
            }
            probe
        })
        .collect();
    (probes, notes)
}

/// The index of the first route whose conditions hold for `probe`.
fn first_match(matchers: &[Option<RouteMatcher>], probe: &Probe) -> Option<usize> {
    let req = probe.request()?;
    matchers.iter().position(|m| {
        m.as_ref()
            .is_some_and(|m| m.matches(&req, &Origin::default()))
    })
}

/// A request that satisfies every condition of `route`'s match, or why there is none.
fn derive(route: &Route) -> Result<Probe, String> {
    let m = &route.matcher;
    let path = match &m.path {
        None => "/".to_string(),
        Some(PathMatch::Exact(p) | PathMatch::Prefix(p) | PathMatch::SegmentPrefix(p))
            if p.is_empty() =>
        {
            "/".into()
        }
        Some(PathMatch::Exact(p) | PathMatch::Prefix(p) | PathMatch::SegmentPrefix(p)) => p.clone(),
        Some(PathMatch::Regex(re)) => sample(re)
            .filter(|p| p.starts_with('/'))
            .ok_or_else(|| format!("found no path for its regex {re:?}"))?,
    };
    if parse_path(&path).is_err() {
        return Err(format!("its path {path:?} is not a valid request path"));
    }
    let method = match &m.method {
        None => Method::GET,
        Some(s) => Method::from_bytes(s.as_bytes()).map_err(|_| format!("method {s:?}"))?,
    };
    let mut headers = Vec::new();
    for h in &m.headers {
        let value = match &h.rule {
            HeaderRule::Exact(v) | HeaderRule::Prefix(v) => v.clone(),
            HeaderRule::Regex(re) => sample(re)
                .ok_or_else(|| format!("found no value of header {} for {re:?}", h.name))?,
            HeaderRule::Present(true) => "1".to_string(),
            HeaderRule::Present(false) => continue,
        };
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| format!("header name {:?}", h.name))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| format!("header {} value {value:?}", h.name))?;
        headers.push((name, value));
    }
    Ok(Probe {
        route: Some(route.name.clone()),
        method,
        path,
        headers,
    })
}

/// A string the whole of `re` matches, for simple patterns: literals, escapes, `.`,
/// `\d`/`\w`, bracket classes and quantifiers are walked; groups and alternation are not, and
/// then a few extensions of the literal prefix are tried. Every answer is checked against the
/// regex itself.
fn sample(re: &str) -> Option<String> {
    let full = Regex::new(&format!("^(?:{re})$")).ok()?;
    let pattern = re.strip_prefix('^').unwrap_or(re);
    let pattern = pattern.strip_suffix('$').unwrap_or(pattern);
    let (walked, prefix) = walk(pattern);
    let mut candidates: Vec<String> = walked.into_iter().collect();
    for tail in ["", "1", "a", "1/", "a/", "/"] {
        candidates.push(format!("{prefix}{tail}"));
    }
    candidates.into_iter().find(|c| full.is_match(c))
}

/// Walks a simple pattern: the string it builds (`None` on a construct it does not know),
/// and the literal text before the first construct it cannot walk or any quantifier.
fn walk(pattern: &str) -> (Option<String>, String) {
    let mut atoms: Vec<String> = Vec::new();
    let mut prefix: Option<String> = None;
    let mut chars = pattern.chars().peekable();
    let literal = |atoms: &[String]| atoms.concat();
    while let Some(c) = chars.next() {
        let atom = match c {
            '\\' => match chars.next() {
                Some('d') => "1".to_string(),
                Some('w') => "a".to_string(),
                Some(e) if e.is_ascii_punctuation() => e.to_string(),
                _ => return (None, prefix.unwrap_or_else(|| literal(&atoms))),
            },
            '.' => "a".to_string(),
            '[' => {
                let mut class = String::new();
                for d in chars.by_ref() {
                    if d == ']' && !class.is_empty() {
                        break;
                    }
                    class.push(d);
                }
                match class.chars().next() {
                    Some('^') | Some('\\') | None => {
                        return (None, prefix.unwrap_or_else(|| literal(&atoms)))
                    }
                    Some(first) => first.to_string(),
                }
            }
            '?' | '*' | '+' | '{' => {
                prefix.get_or_insert_with(|| {
                    let mut p = atoms.clone();
                    p.pop();
                    literal(&p)
                });
                match c {
                    '?' | '*' => {
                        atoms.pop();
                    }
                    '{' => {
                        let mut count = String::new();
                        for d in chars.by_ref() {
                            if d == '}' {
                                break;
                            }
                            count.push(d);
                        }
                        let Some(n) = count
                            .split(',')
                            .next()
                            .and_then(|n| n.trim().parse::<usize>().ok())
                        else {
                            return (None, prefix.unwrap_or_default());
                        };
                        let last = atoms.pop().unwrap_or_default();
                        atoms.push(last.repeat(n));
                    }
                    _ => {}
                }
                continue;
            }
            '(' | ')' | '|' | '^' | '$' => {
                return (None, prefix.unwrap_or_else(|| literal(&atoms)))
            }
            c => c.to_string(),
        };
        atoms.push(atom);
    }
    let built = literal(&atoms);
    (Some(built.clone()), prefix.unwrap_or(built))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Backend, HeaderMatch, RouteMatch};

    fn route(name: &str, path: Option<PathMatch>, headers: Vec<(&str, HeaderRule)>) -> Route {
        Route {
            name: name.into(),
            matcher: RouteMatch {
                path,
                headers: headers
                    .into_iter()
                    .map(|(n, rule)| HeaderMatch {
                        name: n.into(),
                        rule,
                    })
                    .collect(),
                method: None,
                peer: None,
                ..RouteMatch::default()
            },
            backends: vec![Backend {
                service: "s".into(),
                weight: 1,
            }],
            timeout: None,
            retries: None,
            fault: None,
            mirror: None,
            upgrades: vec!["websocket".into()],
        }
    }

    fn paths(probes: &[Probe]) -> Vec<&str> {
        probes.iter().map(|p| p.path.as_str()).collect()
    }

    #[test]
    fn exact_and_prefix_routes_get_their_own_path_and_no_match_gets_the_root() {
        let routes = [
            route("one", Some(PathMatch::Exact("/health".into())), vec![]),
            route("api", Some(PathMatch::Prefix("/api/".into())), vec![]),
            route("rest", None, vec![]),
        ];
        let (probes, notes) = for_routes(&routes);
        assert_eq!(paths(&probes), ["/health", "/api/", "/"]);
        assert!(notes.is_empty(), "{notes:?}");
        let names: Vec<_> = probes.iter().map(|p| p.route.as_deref()).collect();
        assert_eq!(names, [Some("one"), Some("api"), Some("rest")]);
        assert!(probes.iter().all(|p| p.method == Method::GET));
    }

    #[test]
    fn the_readme_canary_routes_are_both_reached() {
        let mut canary = route(
            "reviews-canary",
            Some(PathMatch::Prefix("/reviews".into())),
            vec![("x-canary", HeaderRule::Exact("true".into()))],
        );
        canary.matcher.method = Some("GET".into());
        let routes = [
            canary,
            route("reviews", Some(PathMatch::Prefix("/".into())), vec![]),
        ];
        let (probes, notes) = for_routes(&routes);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(probes[0].describe(), "GET /reviews  x-canary: true");
        assert_eq!(probes[1].describe(), "GET /");
    }

    #[test]
    fn method_and_header_rules_are_satisfied() {
        let mut r = route(
            "write",
            Some(PathMatch::Exact("/orders".into())),
            vec![
                ("x-tenant", HeaderRule::Prefix("acme".into())),
                ("x-debug", HeaderRule::Present(true)),
                ("x-skip", HeaderRule::Present(false)),
                ("x-version", HeaderRule::Regex("v[0-9]+".into())),
            ],
        );
        r.matcher.method = Some("POST".into());
        let (probes, notes) = for_routes(std::slice::from_ref(&r));
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(probes[0].method, Method::POST);
        assert_eq!(
            probes[0].describe(),
            "POST /orders  x-tenant: acme  x-debug: 1  x-version: v0"
        );
    }

    #[test]
    fn regex_paths_are_sampled_and_checked() {
        assert_eq!(sample(r"/reviews/\d+").as_deref(), Some("/reviews/1"));
        assert_eq!(
            sample(r"^/users/[0-9]+/orders$").as_deref(),
            Some("/users/0/orders")
        );
        assert_eq!(sample(r"/v[12]/items/.*").as_deref(), Some("/v1/items/"));
        assert_eq!(sample(r"/a\.json").as_deref(), Some("/a.json"));
        assert_eq!(sample(r"/x{3}").as_deref(), Some("/xxx"));
        // Alternation is not walked; the literal prefix with a short tail still is tried.
        assert_eq!(sample(r"/api/(v1|v2)").as_deref(), None);
        assert_eq!(sample(r"/api/(.*)").as_deref(), Some("/api/"));
    }

    #[test]
    fn an_underivable_regex_is_skipped_with_a_note() {
        let routes = [
            route("alt", Some(PathMatch::Regex("/(a|b)c".into())), vec![]),
            route("rest", Some(PathMatch::Prefix("/".into())), vec![]),
        ];
        let (probes, notes) = for_routes(&routes);
        assert_eq!(paths(&probes), ["/"]);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].starts_with("route alt is not driven"), "{notes:?}");
        assert!(notes[0].contains("--path"), "{notes:?}");
    }

    #[test]
    fn a_shadowed_route_is_skipped_with_a_note() {
        let routes = [
            route("all", Some(PathMatch::Prefix("/".into())), vec![]),
            route("api", Some(PathMatch::Prefix("/api".into())), vec![]),
        ];
        let (probes, notes) = for_routes(&routes);
        assert_eq!(paths(&probes), ["/"]);
        assert_eq!(
            notes,
            ["route api is not driven: its request (GET /api) is taken by the earlier route all"]
        );
    }

    #[test]
    fn paths_given_on_the_command_line_say_which_route_they_reach() {
        let routes = [route("api", Some(PathMatch::Prefix("/api".into())), vec![])];
        let (probes, notes) = for_paths(&["/api/x".into(), "/other".into()], &routes);
        assert_eq!(probes[0].route.as_deref(), Some("api"));
        assert_eq!(probes[1].route, None);
        assert_eq!(
            notes,
            ["--path /other matches no route: weir answers it 404 no_route"]
        );
    }

    #[test]
    fn command_line_paths_must_be_request_paths() {
        assert_eq!(parse_path("/a?b=1"), Ok("/a?b=1".into()));
        assert!(parse_path("a").is_err());
        assert!(parse_path("/a b").is_err());
    }
}
