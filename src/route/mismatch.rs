//! The first condition of a route a request does not meet, as the router found it: cheap
//! to make (borrowed data, no formatting), a sentence only when displayed.

use std::fmt;
use std::net::SocketAddr;

use http::header::HeaderValue;
use http::Method;

/// What a condition wanted, borrowed from the compiled route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted<'a> {
    /// Exactly this text.
    Exact(&'a str),
    /// Text starting with this.
    Prefix(&'a str),
    /// A path that is this (without a trailing `/`) or continues it with `/`.
    Segments(&'a str),
    /// Text the whole of which matches this regex.
    Regex(&'a str),
    /// The header is present.
    Present,
    /// The header is absent.
    Absent,
}

/// The first failed condition of a route, in the order the router checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch<'a> {
    /// The route wants original destinations and the connection was not redirected.
    NotRedirected,
    /// The connection's original destination is not one of the route's.
    Destination {
        /// The original destination.
        got: SocketAddr,
        /// The route's destinations.
        wanted: &'a [SocketAddr],
    },
    /// The original destination is not among what discovery found for the route's service.
    Undiscovered {
        /// The original destination.
        got: SocketAddr,
    },
    /// The route wants an mTLS peer and the connection has none.
    NoPeer {
        /// The configured pattern (`*` suffix: a prefix).
        wanted: &'a str,
    },
    /// The mTLS peer is another identity.
    Peer {
        /// The peer's SPIFFE ID.
        got: &'a str,
        /// The configured pattern.
        wanted: &'a str,
    },
    /// The request's authority (`Host`) does not match.
    Authority {
        /// The authority, if the request has one.
        got: Option<&'a str>,
        /// The condition.
        wanted: Wanted<'a>,
    },
    /// Another method.
    Method {
        /// The request's method.
        got: &'a Method,
        /// The route's method.
        wanted: &'a Method,
    },
    /// The path does not match.
    Path {
        /// The request's path (no query).
        got: &'a str,
        /// The condition.
        wanted: Wanted<'a>,
    },
    /// A header condition does not hold.
    Header {
        /// The header's name.
        name: &'a str,
        /// Its first value, if present.
        got: Option<&'a HeaderValue>,
        /// The condition.
        wanted: Wanted<'a>,
    },
}

impl fmt::Display for Wanted<'_> {
    /// `exactly "true"`, `a value starting with "vip-"`, `present`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wanted::Exact(v) => write!(f, "exactly {v:?}"),
            Wanted::Prefix(v) => write!(f, "a value starting with {v:?}"),
            Wanted::Segments(v) => write!(f, "{v:?} or a path under \"{v}/\""),
            Wanted::Regex(v) => write!(f, "a value matching the regex {v:?}"),
            Wanted::Present => f.write_str("present"),
            Wanted::Absent => f.write_str("absent"),
        }
    }
}

impl fmt::Display for Mismatch<'_> {
    /// One plain sentence, e.g. `header x-canary is "false", wanted exactly "true"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::NotRedirected => f.write_str(
                "destination: the connection was not redirected, so it has no original destination",
            ),
            Mismatch::Destination { got, wanted } => {
                write!(f, "destination {got}, wanted ")?;
                for (i, w) in wanted.iter().enumerate() {
                    let sep = if i == 0 { "" } else { " or " };
                    if w.ip().is_unspecified() {
                        write!(f, "{sep}any address on port {}", w.port())?;
                    } else {
                        write!(f, "{sep}{w}")?;
                    }
                }
                Ok(())
            }
            Mismatch::Undiscovered { got } => write!(
                f,
                "destination {got} is not among the addresses discovery found for the service"
            ),
            Mismatch::NoPeer { wanted } => {
                write!(f, "peer: the request has no mTLS peer, wanted {wanted}")
            }
            Mismatch::Peer { got, wanted } => write!(f, "peer {got}, wanted {wanted}"),
            Mismatch::Authority { got: None, wanted } => {
                write!(
                    f,
                    "authority: the request has none (no Host), wanted {wanted}"
                )
            }
            Mismatch::Authority {
                got: Some(got),
                wanted,
            } => write!(f, "authority {got:?}, wanted {wanted}"),
            Mismatch::Method { got, wanted } => write!(f, "method {got}, wanted {wanted}"),
            Mismatch::Path { got, wanted } => match wanted {
                Wanted::Prefix(p) => write!(f, "path {got} does not start with {p}"),
                Wanted::Exact(p) => write!(f, "path {got} is not exactly {p}"),
                Wanted::Segments("") => {
                    write!(f, "path {got} does not start with /")
                }
                Wanted::Segments(p) => write!(f, "path {got} is neither {p} nor under {p}/"),
                Wanted::Regex(r) => write!(f, "path {got} does not match the regex {r:?}"),
                other => write!(f, "path {got}, wanted {other}"),
            },
            Mismatch::Header {
                name,
                got: None,
                wanted,
            } => write!(f, "header {name} is absent, wanted {wanted}"),
            Mismatch::Header {
                name,
                got: Some(value),
                wanted,
            } => match value.to_str() {
                Ok(v) => write!(f, "header {name} is {v:?}, wanted {wanted}"),
                Err(_) => write!(f, "header {name} is not text, wanted {wanted}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use http::Request;

    use crate::config::{AuthorityMatch, HeaderMatch, HeaderRule, PathMatch, RouteMatch};
    use crate::route::matcher::{Origin, RouteMatcher};

    fn why(m: RouteMatch, req: &Request<()>, origin: &Origin<'_>) -> String {
        let matcher = RouteMatcher::new(&m).expect("compiles");
        let result = matcher.check(req, origin);
        assert_eq!(result.is_ok(), matcher.matches(req, origin));
        match result {
            Ok(()) => "matches".to_string(),
            Err(mismatch) => mismatch.to_string(),
        }
    }

    fn get(path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::get(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).expect("request")
    }

    fn header(name: &str, rule: HeaderRule) -> RouteMatch {
        RouteMatch {
            headers: vec![HeaderMatch {
                name: name.into(),
                rule,
            }],
            ..RouteMatch::default()
        }
    }

    fn path(p: PathMatch) -> RouteMatch {
        RouteMatch {
            path: Some(p),
            ..RouteMatch::default()
        }
    }

    const NONE: Origin<'static> = Origin {
        peer: None,
        destination: None,
    };

    #[test]
    fn a_header_mismatch_names_the_value_and_what_was_wanted() {
        let canary = header("x-canary", HeaderRule::Exact("true".into()));
        assert_eq!(
            why(canary.clone(), &get("/", &[("x-canary", "false")]), &NONE),
            "header x-canary is \"false\", wanted exactly \"true\""
        );
        assert_eq!(
            why(canary, &get("/", &[]), &NONE),
            "header x-canary is absent, wanted exactly \"true\""
        );
        assert_eq!(
            why(
                header("x-user", HeaderRule::Present(true)),
                &get("/", &[]),
                &NONE
            ),
            "header x-user is absent, wanted present"
        );
        assert_eq!(
            why(
                header("x-debug", HeaderRule::Present(false)),
                &get("/", &[("x-debug", "1")]),
                &NONE
            ),
            "header x-debug is \"1\", wanted absent"
        );
        assert_eq!(
            why(
                header("x-user", HeaderRule::Prefix("vip-".into())),
                &get("/", &[("x-user", "bob")]),
                &NONE
            ),
            "header x-user is \"bob\", wanted a value starting with \"vip-\""
        );
        assert_eq!(
            why(
                header("x-v", HeaderRule::Regex("v[12]".into())),
                &get("/", &[("x-v", "v3")]),
                &NONE
            ),
            "header x-v is \"v3\", wanted a value matching the regex \"v[12]\""
        );
    }

    #[test]
    fn a_path_mismatch_says_how_the_path_differs() {
        let r = get("/ratings?x=1", &[]);
        for (rule, want) in [
            (
                PathMatch::Prefix("/reviews".into()),
                "path /ratings does not start with /reviews",
            ),
            (
                PathMatch::Exact("/rating".into()),
                "path /ratings is not exactly /rating",
            ),
            (
                PathMatch::SegmentPrefix("/rating/".into()),
                "path /ratings is neither /rating nor under /rating/",
            ),
            (
                PathMatch::Regex("/r[0-9]+".into()),
                "path /ratings does not match the regex \"/r[0-9]+\"",
            ),
        ] {
            assert_eq!(why(path(rule), &r, &NONE), want);
        }
        assert_eq!(
            why(path(PathMatch::Prefix("/rat".into())), &r, &NONE),
            "matches"
        );
    }

    #[test]
    fn method_authority_peer_and_destination_mismatches() {
        let post = Request::post("/").body(()).expect("request");
        let by_method = RouteMatch {
            method: Some("GET".into()),
            ..RouteMatch::default()
        };
        assert_eq!(why(by_method, &post, &NONE), "method POST, wanted GET");
        let by_host = RouteMatch {
            authority: Some(AuthorityMatch::Exact("reviews.shop".into())),
            ..RouteMatch::default()
        };
        assert_eq!(
            why(
                by_host.clone(),
                &get("/", &[("host", "ratings.shop")]),
                &NONE
            ),
            "authority \"ratings.shop\", wanted exactly \"reviews.shop\""
        );
        assert_eq!(
            why(by_host, &get("/", &[]), &NONE),
            "authority: the request has none (no Host), wanted exactly \"reviews.shop\""
        );
        let by_peer = RouteMatch {
            peer: Some("spiffe://td/ns/shop/*".into()),
            ..RouteMatch::default()
        };
        assert_eq!(
            why(by_peer.clone(), &get("/", &[]), &NONE),
            "peer: the request has no mTLS peer, wanted spiffe://td/ns/shop/*"
        );
        let other = Origin {
            peer: Some("spiffe://td/ns/ops/sa/x"),
            destination: None,
        };
        assert_eq!(
            why(by_peer, &get("/", &[]), &other),
            "peer spiffe://td/ns/ops/sa/x, wanted spiffe://td/ns/shop/*"
        );
        let by_destination = RouteMatch {
            destination: vec![
                "10.96.0.20:9080".parse().expect("address"),
                "0.0.0.0:8080".parse().expect("address"),
            ],
            ..RouteMatch::default()
        };
        assert_eq!(
            why(by_destination.clone(), &get("/", &[]), &NONE),
            "destination: the connection was not redirected, so it has no original destination"
        );
        let elsewhere = Origin {
            peer: None,
            destination: Some("10.96.0.21:9080".parse().expect("address")),
        };
        assert_eq!(
            why(by_destination, &get("/", &[]), &elsewhere),
            "destination 10.96.0.21:9080, wanted 10.96.0.20:9080 or any address on port 8080"
        );
    }

    #[test]
    fn the_first_failed_condition_is_reported_in_the_routers_order() {
        let both = RouteMatch {
            method: Some("GET".into()),
            path: Some(PathMatch::Prefix("/reviews".into())),
            ..RouteMatch::default()
        };
        let post = Request::post("/ratings").body(()).expect("request");
        assert_eq!(why(both, &post, &NONE), "method POST, wanted GET");
    }
}
