//! Compiled route conditions: path, headers and method, checked without allocating.

use http::header::HeaderName;
use http::{Method, Request};
use regex::Regex;

use crate::config::{self, HeaderRule, PathMatch};
use crate::tls::peer::IdentityPattern;

/// A route's conditions, compiled once when the configuration is built.
#[derive(Debug)]
pub struct RouteMatcher {
    path: Option<PathMatcher>,
    headers: Vec<HeaderMatcher>,
    method: Option<Method>,
    /// The peer's SPIFFE ID (exact, or a prefix of whole segments).
    peer: Option<IdentityPattern>,
}

#[derive(Debug)]
enum PathMatcher {
    Prefix(String),
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
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
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
        };
        let headers = m
            .headers
            .iter()
            .map(|h| {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| MatcherError(format!("invalid header name {:?}", h.name)))?;
                let rule = match &h.rule {
                    HeaderRule::Exact(v) => HeaderCondition::Exact(v.clone().into_bytes()),
                    HeaderRule::Prefix(v) => HeaderCondition::Prefix(v.clone().into_bytes()),
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
        let peer = m.peer.as_deref().map(IdentityPattern::new);
        Ok(RouteMatcher {
            path,
            headers,
            method,
            peer,
        })
    }

    /// Whether every condition holds for the request.
    /// `peer` is the client's SPIFFE ID on an mTLS connection.
    pub fn matches<B>(&self, req: &Request<B>, peer: Option<&str>) -> bool {
        if let Some(pattern) = &self.peer {
            if !peer.is_some_and(|id| pattern.matches(id)) {
                return false;
            }
        }
        if let Some(m) = &self.method {
            if req.method() != m {
                return false;
            }
        }
        if let Some(p) = &self.path {
            let path = req.uri().path();
            let ok = match p {
                PathMatcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
                PathMatcher::Exact(exact) => path == exact,
                PathMatcher::Regex(re) => re.is_match(path),
            };
            if !ok {
                return false;
            }
        }
        self.headers.iter().all(|h| h.matches(req.headers()))
    }
}

impl HeaderMatcher {
    fn matches(&self, headers: &http::HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter().peekable();
        match &self.rule {
            HeaderCondition::Present(want) => values.peek().is_some() == *want,
            HeaderCondition::Exact(v) => values.any(|x| x.as_bytes() == v.as_slice()),
            HeaderCondition::Prefix(v) => values.any(|x| x.as_bytes().starts_with(v)),
            HeaderCondition::Regex(re) => values.any(|x| x.to_str().is_ok_and(|s| re.is_match(s))),
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
            peer: None,
        })
        .unwrap()
    }

    #[test]
    fn path_prefix_exact_and_regex() {
        let prefix = matcher(Some(PathMatch::Prefix("/reviews".into())), vec![], None);
        assert!(prefix.matches(&req("GET", "/reviews/1?x=2", &[]), None));
        assert!(!prefix.matches(&req("GET", "/ratings", &[]), None));
        let exact = matcher(Some(PathMatch::Exact("/a".into())), vec![], None);
        assert!(exact.matches(&req("GET", "/a?q", &[]), None));
        assert!(!exact.matches(&req("GET", "/a/b", &[]), None));
        let re = matcher(Some(PathMatch::Regex("/users/[0-9]+".into())), vec![], None);
        assert!(re.matches(&req("GET", "/users/42", &[]), None));
        assert!(
            !re.matches(&req("GET", "/users/42/x", &[]), None),
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
        assert!(m.matches(&req("GET", "/", &good), None));
        assert!(!m.matches(&req("POST", "/", &good), None));
        assert!(!m.matches(
            &req(
                "GET",
                "/",
                &[("x-canary", "false"), ("x-user", "vip-7"), ("x-v", "v2")]
            ),
            None
        ));
        assert!(!m.matches(
            &req(
                "GET",
                "/",
                &[("x-canary", "true"), ("x-user", "vip-7"), ("x-v", "v3")]
            ),
            None
        ));
        let mut with_debug = good.to_vec();
        with_debug.push(("x-debug", "1"));
        assert!(!m.matches(&req("GET", "/", &with_debug), None));
    }

    #[test]
    fn empty_match_matches_everything() {
        assert!(matcher(None, vec![], None).matches(&req("DELETE", "/anything", &[]), None));
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(RouteMatcher::new(&RouteMatch {
            path: Some(PathMatch::Regex("(".into())),
            headers: vec![],
            method: None,
            peer: None,
        })
        .is_err());
    }
}
