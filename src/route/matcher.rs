//! Compiled route conditions: path, headers, method, authority, the mTLS peer and the
//! original destination, checked without allocating.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use http::header::{HeaderName, HOST};
use http::{Method, Request};
use regex::Regex;

use super::mismatch::{Mismatch, Wanted};
use crate::config::{self, AuthorityMatch, HeaderRule, PathMatch};
use crate::tls::peer::IdentityPattern;

/// What a request's connection says about it, beyond the request itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Origin<'a> {
    /// The client's SPIFFE ID on an mTLS connection (for `match.peer`).
    pub peer: Option<&'a str>,
    /// Where the client sent the connection, on a transparent listener (for
    /// `match.destination`).
    pub destination: Option<SocketAddr>,
}

/// A route's conditions, compiled once when the configuration is built.
#[derive(Debug)]
pub struct RouteMatcher {
    path: Option<PathMatcher>,
    headers: Vec<HeaderMatcher>,
    method: Option<Method>,
    /// The peer's SPIFFE ID (exact, or a prefix of whole segments), and the pattern as
    /// configured (for [`Mismatch::Peer`]).
    peer: Option<(IdentityPattern, String)>,
    authority: Option<AuthorityMatcher>,
    /// Original destinations.
    destination: Destinations,
}

/// The original destinations a route matches.
#[derive(Debug)]
enum Destinations {
    /// As configured; empty: any.
    Fixed(Vec<SocketAddr>),
    /// Its service's, as discovery finds them (none until it does).
    Discovered(Arc<ArcSwap<Vec<SocketAddr>>>),
}

impl Destinations {
    /// Whether a route with these destinations may take a connection to `destination`
    /// (`None`: not redirected).
    fn admit(&self, destination: Option<SocketAddr>) -> bool {
        match self {
            Destinations::Fixed(want) if want.is_empty() => true,
            Destinations::Fixed(want) => {
                destination.is_some_and(|d| want.iter().any(|&w| claims(w, d)))
            }
            Destinations::Discovered(found) => {
                destination.is_some_and(|d| found.load().iter().any(|&w| claims(w, d)))
            }
        }
    }

    /// Whether these destinations name `destination` (an empty fixed list names nothing).
    fn name(&self, destination: SocketAddr) -> bool {
        match self {
            Destinations::Fixed(want) => want.iter().any(|&w| claims(w, destination)),
            Destinations::Discovered(found) => found.load().iter().any(|&w| claims(w, destination)),
        }
    }
}

#[derive(Debug)]
enum AuthorityMatcher {
    /// Lower case.
    Exact(String),
    /// Lower case.
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
enum PathMatcher {
    Prefix(String),
    /// Without its trailing `/` (`/` itself becomes empty and matches every path).
    Segments(String),
    Exact(String),
    Regex(Regex),
}

#[derive(Debug)]
struct HeaderMatcher {
    name: HeaderName,
    rule: HeaderCondition,
}

#[derive(Debug)]
enum HeaderCondition {
    Exact(String),
    Prefix(String),
    Regex(Regex),
    Present(bool),
}

/// A regex that failed to compile, with the route field it came from.
#[derive(Debug)]
pub struct MatcherError(pub String);

impl RouteMatcher {
    /// Compiles a route's `match`. Regexes match the whole path or value.
    pub fn new(m: &config::RouteMatch) -> Result<Self, MatcherError> {
        let full = |re: &str| {
            Regex::new(&format!("^(?:{re})$"))
                .map_err(|e| MatcherError(format!("invalid regex {re:?}: {e}")))
        };
        let path = match &m.path {
            None => None,
            Some(PathMatch::Prefix(p)) => Some(PathMatcher::Prefix(p.clone())),
            Some(PathMatch::Exact(p)) => Some(PathMatcher::Exact(p.clone())),
            Some(PathMatch::Regex(r)) => Some(PathMatcher::Regex(full(r)?)),
            Some(PathMatch::SegmentPrefix(p)) => {
                Some(PathMatcher::Segments(p.trim_end_matches('/').to_string()))
            }
        };
        let headers = m
            .headers
            .iter()
            .map(|h| {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| MatcherError(format!("invalid header name {:?}", h.name)))?;
                let rule = match &h.rule {
                    HeaderRule::Exact(v) => HeaderCondition::Exact(v.clone()),
                    HeaderRule::Prefix(v) => HeaderCondition::Prefix(v.clone()),
                    HeaderRule::Regex(r) => HeaderCondition::Regex(full(r)?),
                    HeaderRule::Present(p) => HeaderCondition::Present(*p),
                };
                Ok(HeaderMatcher { name, rule })
            })
            .collect::<Result<_, MatcherError>>()?;
        let method = match &m.method {
            None => None,
            Some(s) => Some(
                Method::from_bytes(s.as_bytes())
                    .map_err(|_| MatcherError(format!("invalid method {s:?}")))?,
            ),
        };
        let peer = m
            .peer
            .as_deref()
            .map(|p| (IdentityPattern::new(p), p.to_string()));
        let authority = match &m.authority {
            None => None,
            Some(AuthorityMatch::Exact(a)) => Some(AuthorityMatcher::Exact(a.to_ascii_lowercase())),
            Some(AuthorityMatch::Prefix(a)) => {
                Some(AuthorityMatcher::Prefix(a.to_ascii_lowercase()))
            }
            Some(AuthorityMatch::Regex(r)) => Some(AuthorityMatcher::Regex(
                regex::RegexBuilder::new(&format!("^(?:{r})$"))
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| MatcherError(format!("invalid regex {r:?}: {e}")))?,
            )),
        };
        Ok(RouteMatcher {
            path,
            headers,
            method,
            peer,
            authority,
            destination: Destinations::Fixed(m.destination.clone()),
        })
    }

    /// The matcher of a route that claims what its service's discovery finds
    /// (`discovered_destination`), read from `found` as it changes.
    pub fn claiming_discovered(mut self, found: Arc<ArcSwap<Vec<SocketAddr>>>) -> Self {
        self.destination = Destinations::Discovered(found);
        self
    }

    /// Whether the route names `destination` among its original destinations
    /// (`match.destination`, or what discovery found): such a route claims connections to
    /// it on a transparent listener.
    pub fn claims(&self, destination: SocketAddr) -> bool {
        self.destination.name(destination)
    }

    /// Whether a connection from `origin` that does not speak HTTP may take this route: its
    /// destination and peer conditions hold, and it has no condition only a request can
    /// meet (path, headers, method, authority).
    pub fn admits_bytes(&self, origin: &Origin<'_>) -> bool {
        let needs_http = self.path.is_some()
            || !self.headers.is_empty()
            || self.method.is_some()
            || self.authority.is_some();
        !needs_http
            && self.destination.admit(origin.destination)
            && self
                .peer
                .as_ref()
                .is_none_or(|(p, _)| origin.peer.is_some_and(|id| p.matches(id)))
    }

    /// Whether every condition holds for the request arriving from `origin`: the router's
    /// question, on every request, so it builds no [`Mismatch`]. Each condition is judged by
    /// the same function [`RouteMatcher::check`] uses, in the same order (the proptest in
    /// `route::table_proptest` holds the two to the same answer).
    #[inline]
    pub fn matches<B>(&self, req: &Request<B>, origin: &Origin<'_>) -> bool {
        self.destination.admit(origin.destination)
            && self
                .peer
                .as_ref()
                .is_none_or(|(p, _)| origin.peer.is_some_and(|id| p.matches(id)))
            && self
                .authority
                .as_ref()
                .is_none_or(|want| authority_of(req).is_some_and(|a| want.matches(a)))
            && self.method.as_ref().is_none_or(|m| req.method() == m)
            && self
                .path
                .as_ref()
                .is_none_or(|p| p.matches(req.uri().path()))
            && self.headers.iter().all(|h| h.holds(req.headers()))
    }

    /// The first condition that does not hold for the request arriving from `origin`, in
    /// the order the router judges them (destination, peer, authority, method, path,
    /// headers), for `weir explain`. Allocates nothing: the mismatch borrows from the route
    /// and the request, and becomes a sentence only when displayed.
    pub fn check<'a, B>(
        &'a self,
        req: &'a Request<B>,
        origin: &Origin<'a>,
    ) -> Result<(), Mismatch<'a>> {
        self.check_destination(origin.destination)?;
        if let Some((pattern, text)) = &self.peer {
            match origin.peer {
                None => return Err(Mismatch::NoPeer { wanted: text }),
                Some(id) if !pattern.matches(id) => {
                    return Err(Mismatch::Peer {
                        got: id,
                        wanted: text,
                    })
                }
                Some(_) => {}
            }
        }
        if let Some(want) = &self.authority {
            let got = authority_of(req);
            if !got.is_some_and(|a| want.matches(a)) {
                return Err(Mismatch::Authority {
                    got,
                    wanted: want.wanted(),
                });
            }
        }
        if let Some(m) = &self.method {
            if req.method() != m {
                return Err(Mismatch::Method {
                    got: req.method(),
                    wanted: m,
                });
            }
        }
        if let Some(p) = &self.path {
            let path = req.uri().path();
            if !p.matches(path) {
                return Err(Mismatch::Path {
                    got: path,
                    wanted: p.wanted(),
                });
            }
        }
        match self.headers.iter().find(|h| !h.holds(req.headers())) {
            Some(h) => Err(h.mismatch(req.headers())),
            None => Ok(()),
        }
    }

    fn check_destination(&self, destination: Option<SocketAddr>) -> Result<(), Mismatch<'_>> {
        if self.destination.admit(destination) {
            return Ok(());
        }
        Err(match (destination, &self.destination) {
            (None, _) => Mismatch::NotRedirected,
            (Some(got), Destinations::Fixed(wanted)) => Mismatch::Destination { got, wanted },
            (Some(got), Destinations::Discovered(_)) => Mismatch::Undiscovered { got },
        })
    }
}

/// The regex as configured: compiled regexes are anchored as `^(?:…)$`.
fn source(re: &Regex) -> &str {
    let s = re.as_str();
    s.strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
}

impl PathMatcher {
    #[inline]
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathMatcher::Exact(exact) => path == exact,
            PathMatcher::Regex(re) => re.is_match(path),
            PathMatcher::Segments(prefix) => path
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }

    fn wanted(&self) -> Wanted<'_> {
        match self {
            PathMatcher::Prefix(p) => Wanted::Prefix(p),
            PathMatcher::Exact(p) => Wanted::Exact(p),
            PathMatcher::Regex(re) => Wanted::Regex(source(re)),
            PathMatcher::Segments(p) => Wanted::Segments(p),
        }
    }
}

/// Whether `want` (a route's or service's destination) names `destination`: the same
/// address, or, for an unspecified IP (`0.0.0.0`, `::`), the same port.
pub fn claims(want: SocketAddr, destination: SocketAddr) -> bool {
    if want.ip().is_unspecified() {
        want.port() == destination.port()
    } else {
        want == destination
    }
}

/// The request's authority: the URI's (HTTP/2 `:authority`, absolute-form) or `Host`.
fn authority_of<B>(req: &Request<B>) -> Option<&str> {
    match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => req.headers().get(HOST).and_then(|h| h.to_str().ok()),
    }
}

impl AuthorityMatcher {
    fn matches(&self, authority: &str) -> bool {
        match self {
            AuthorityMatcher::Exact(want) => {
                let host = match authority.rsplit_once(':') {
                    // `[::1]:80` or `host:80`; a bare IPv6 literal keeps its colons.
                    Some((host, port))
                        if !port.is_empty()
                            && port.bytes().all(|b| b.is_ascii_digit())
                            && (!host.contains(':') || host.ends_with(']')) =>
                    {
                        host
                    }
                    _ => authority,
                };
                authority.eq_ignore_ascii_case(want) || host.eq_ignore_ascii_case(want)
            }
            AuthorityMatcher::Prefix(want) => authority
                .get(..want.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(want)),
            AuthorityMatcher::Regex(re) => re.is_match(authority),
        }
    }

    fn wanted(&self) -> Wanted<'_> {
        match self {
            AuthorityMatcher::Exact(a) => Wanted::Exact(a),
            AuthorityMatcher::Prefix(a) => Wanted::Prefix(a),
            AuthorityMatcher::Regex(re) => Wanted::Regex(source(re)),
        }
    }
}

impl HeaderMatcher {
    #[inline]
    fn holds(&self, headers: &http::HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter().peekable();
        match &self.rule {
            HeaderCondition::Present(want) => values.peek().is_some() == *want,
            HeaderCondition::Exact(v) => values.any(|x| x.as_bytes() == v.as_bytes()),
            HeaderCondition::Prefix(v) => values.any(|x| x.as_bytes().starts_with(v.as_bytes())),
            HeaderCondition::Regex(re) => values.any(|x| x.to_str().is_ok_and(|s| re.is_match(s))),
        }
    }

    /// What [`HeaderMatcher::holds`] found wanting in `headers`.
    fn mismatch<'a>(&'a self, headers: &'a http::HeaderMap) -> Mismatch<'a> {
        Mismatch::Header {
            name: self.name.as_str(),
            got: headers.get(&self.name),
            wanted: match &self.rule {
                HeaderCondition::Present(true) => Wanted::Present,
                HeaderCondition::Present(false) => Wanted::Absent,
                HeaderCondition::Exact(v) => Wanted::Exact(v),
                HeaderCondition::Prefix(v) => Wanted::Prefix(v),
                HeaderCondition::Regex(re) => Wanted::Regex(source(re)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HeaderMatch, RouteMatch};

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn matcher(
        path: Option<PathMatch>,
        headers: Vec<(&str, HeaderRule)>,
        method: Option<&str>,
    ) -> RouteMatcher {
        RouteMatcher::new(&RouteMatch {
            path,
            headers: headers
                .into_iter()
                .map(|(n, rule)| HeaderMatch {
                    name: n.into(),
                    rule,
                })
                .collect(),
            method: method.map(String::from),
            ..RouteMatch::default()
        })
        .unwrap()
    }

    #[test]
    fn path_prefix_exact_and_regex() {
        let prefix = matcher(Some(PathMatch::Prefix("/reviews".into())), vec![], None);
        assert!(prefix.matches(&req("GET", "/reviews/1?x=2", &[]), &Origin::default()));
        assert!(!prefix.matches(&req("GET", "/ratings", &[]), &Origin::default()));
        let exact = matcher(Some(PathMatch::Exact("/a".into())), vec![], None);
        assert!(exact.matches(&req("GET", "/a?q", &[]), &Origin::default()));
        assert!(!exact.matches(&req("GET", "/a/b", &[]), &Origin::default()));
        let re = matcher(Some(PathMatch::Regex("/users/[0-9]+".into())), vec![], None);
        assert!(re.matches(&req("GET", "/users/42", &[]), &Origin::default()));
        assert!(
            !re.matches(&req("GET", "/users/42/x", &[]), &Origin::default()),
            "regex must match the whole path"
        );
    }

    #[test]
    fn header_rules_and_method() {
        let m = matcher(
            None,
            vec![
                ("x-canary", HeaderRule::Exact("true".into())),
                ("x-user", HeaderRule::Prefix("vip-".into())),
                ("x-v", HeaderRule::Regex("v[12]".into())),
                ("x-debug", HeaderRule::Present(false)),
            ],
            Some("GET"),
        );
        let good = [("x-canary", "true"), ("x-user", "vip-7"), ("x-v", "v2")];
        assert!(m.matches(&req("GET", "/", &good), &Origin::default()));
        assert!(!m.matches(&req("POST", "/", &good), &Origin::default()));
        assert!(!m.matches(
            &req(
                "GET",
                "/",
                &[("x-canary", "false"), ("x-user", "vip-7"), ("x-v", "v2")]
            ),
            &Origin::default()
        ));
        assert!(!m.matches(
            &req(
                "GET",
                "/",
                &[("x-canary", "true"), ("x-user", "vip-7"), ("x-v", "v3")]
            ),
            &Origin::default()
        ));
        let mut with_debug = good.to_vec();
        with_debug.push(("x-debug", "1"));
        assert!(!m.matches(&req("GET", "/", &with_debug), &Origin::default()));
    }

    #[test]
    fn empty_match_matches_everything() {
        assert!(matcher(None, vec![], None)
            .matches(&req("DELETE", "/anything", &[]), &Origin::default()));
    }

    fn with(m: RouteMatch) -> RouteMatcher {
        RouteMatcher::new(&m).unwrap()
    }

    #[test]
    fn authority_exact_ignores_case_and_a_port() {
        let m = with(RouteMatch {
            authority: Some(AuthorityMatch::Exact("Reviews.shop".into())),
            ..RouteMatch::default()
        });
        let none = Origin::default();
        assert!(m.matches(&req("GET", "/", &[("host", "reviews.SHOP")]), &none));
        assert!(m.matches(&req("GET", "/", &[("host", "reviews.shop:9080")]), &none));
        assert!(m.matches(&req("GET", "http://reviews.shop:1/x", &[]), &none));
        assert!(!m.matches(&req("GET", "/", &[("host", "reviews.shopx")]), &none));
        assert!(!m.matches(&req("GET", "/", &[]), &none), "no authority");
        let v6 = with(RouteMatch {
            authority: Some(AuthorityMatch::Exact("[::1]".into())),
            ..RouteMatch::default()
        });
        assert!(v6.matches(&req("GET", "/", &[("host", "[::1]:80")]), &none));
        let prefix = with(RouteMatch {
            authority: Some(AuthorityMatch::Prefix("api.".into())),
            ..RouteMatch::default()
        });
        assert!(prefix.matches(&req("GET", "/", &[("host", "API.example")]), &none));
        assert!(!prefix.matches(&req("GET", "/", &[("host", "ap")]), &none));
        let re = with(RouteMatch {
            authority: Some(AuthorityMatch::Regex("[a-z]+\\.shop(:[0-9]+)?".into())),
            ..RouteMatch::default()
        });
        assert!(re.matches(&req("GET", "/", &[("host", "Ratings.shop:80")]), &none));
        assert!(!re.matches(&req("GET", "/", &[("host", "x.shop.evil")]), &none));
    }

    #[test]
    fn destination_is_an_address_or_any_address_on_a_port() {
        let m = with(RouteMatch {
            destination: vec![
                "10.96.0.20:9080".parse().unwrap(),
                "0.0.0.0:8080".parse().unwrap(),
            ],
            ..RouteMatch::default()
        });
        let to = |d: &str| Origin {
            peer: None,
            destination: Some(d.parse().unwrap()),
        };
        let r = req("GET", "/", &[]);
        assert!(m.matches(&r, &to("10.96.0.20:9080")));
        assert!(m.matches(&r, &to("198.51.100.7:8080")));
        assert!(!m.matches(&r, &to("10.96.0.20:9081")));
        assert!(!m.matches(&r, &to("10.96.0.21:9080")));
        assert!(
            !m.matches(&r, &Origin::default()),
            "a connection that was not redirected has no original destination"
        );
    }

    #[test]
    fn a_segment_prefix_matches_whole_segments_only() {
        let api = matcher(Some(PathMatch::SegmentPrefix("/api".into())), vec![], None);
        let none = Origin::default();
        for (path, want) in [
            ("/api", true),
            ("/api/", true),
            ("/api/v1?q=1", true),
            ("/api?q=1", true),
            ("/apiv1", false),
            ("/ap", false),
            ("/", false),
        ] {
            assert_eq!(api.matches(&req("GET", path, &[]), &none), want, "{path}");
        }
        let trailing = matcher(Some(PathMatch::SegmentPrefix("/api/".into())), vec![], None);
        assert!(
            trailing.matches(&req("GET", "/api", &[]), &none),
            "a trailing / is ignored"
        );
        assert!(!trailing.matches(&req("GET", "/apix", &[]), &none));
        let root = matcher(Some(PathMatch::SegmentPrefix("/".into())), vec![], None);
        assert!(root.matches(&req("GET", "/anything/at/all", &[]), &none));
    }

    #[test]
    fn bytes_take_only_routes_that_need_no_request() {
        let to = "10.0.0.1:80".parse().unwrap();
        let origin = |peer| Origin {
            peer,
            destination: Some(to),
        };
        let plain = with(RouteMatch {
            destination: vec![to],
            ..RouteMatch::default()
        });
        assert!(plain.admits_bytes(&origin(None)));
        let for_a = with(RouteMatch {
            destination: vec![to],
            peer: Some("spiffe://td/ns/x/sa/a".into()),
            ..RouteMatch::default()
        });
        assert!(for_a.admits_bytes(&origin(Some("spiffe://td/ns/x/sa/a"))));
        assert!(
            !for_a.admits_bytes(&origin(Some("spiffe://td/ns/x/sa/c"))),
            "not speaking HTTP does not get another peer past `match.peer`"
        );
        let by_path = with(RouteMatch {
            destination: vec![to],
            path: Some(PathMatch::Prefix("/admin".into())),
            ..RouteMatch::default()
        });
        assert!(
            !by_path.admits_bytes(&origin(None)),
            "a path needs a request"
        );
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(RouteMatcher::new(&RouteMatch {
            path: Some(PathMatch::Regex("(".into())),
            headers: vec![],
            ..RouteMatch::default()
        })
        .is_err());
    }
}
