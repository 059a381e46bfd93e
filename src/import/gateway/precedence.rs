//! The order in which the matches of Gateway API routes are tried.
//!
//! weir tries a listener's routes in order and takes the first that matches, while the
//! Gateway API ranks every match of every route attached to the same parent by how
//! specific it is. This module is that ranking as a pure sort, so the written route order
//! is the spec's precedence.
//!
//! HTTPRoute (the spec): an `Exact` path before any other; then `PathPrefix` by the number
//! of characters, longest first (a trailing `/` not counted: `/api/` matches as `/api`); then a match with a method before one without; then more
//! header matches first; then more query parameter matches first. Ties go to the route with
//! the older `metadata.creationTimestamp`, then to `namespace/name` alphabetically, then to
//! rule order and match order within the rule.
//!
//! `RegularExpression` paths (the spec leaves them to the implementation) come after every
//! `PathPrefix`, longer patterns first, as Istio orders them: a regex is taken only by
//! requests no exact or prefix match claimed.
//!
//! GRPCRoute: matches with an `Exact` method match before `RegularExpression` ones, then by
//! the number of characters of the service, then of the method, then more header matches
//! first; the same tie-breaks. A GRPCRoute match is tried before any HTTPRoute match of the
//! same parent (it takes only gRPC requests, which an HTTPRoute would otherwise swallow).

use std::cmp::Ordering;

use crate::import::draft::Host;

/// How an HTTPRoute match's path condition ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRank {
    /// `Exact`: before every other kind.
    Exact,
    /// `PathPrefix` with this many characters, trailing `/` trimmed (an absent path is
    /// `PathPrefix /`, 1).
    Prefix(usize),
    /// `RegularExpression` with this many characters.
    Regex(usize),
}

/// What makes one match more specific than another, per route kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Specificity {
    /// A GRPCRoute match.
    Grpc {
        /// The method match is `Exact` (not `RegularExpression`).
        exact: bool,
        /// Characters of `method.service`.
        service: usize,
        /// Characters of `method.method`.
        method: usize,
        /// Number of header matches.
        headers: usize,
    },
    /// An HTTPRoute match.
    Http {
        /// The path condition.
        path: PathRank,
        /// A method is matched.
        method: bool,
        /// Number of header matches.
        headers: usize,
        /// Number of query parameter matches.
        query: usize,
    },
}

/// A match's place in the precedence: its specificity, then the tie-breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rank {
    /// How specific the match is.
    pub specificity: Specificity,
    /// The route's `metadata.creationTimestamp`, as a key that sorts in time order (see
    /// `gateway::creation_timestamp`); a route without one ranks after those with one.
    pub created: Option<String>,
    /// `namespace/name` of the route.
    pub route: String,
    /// Index of the rule in the route.
    pub rule: usize,
    /// Index of the match in the rule.
    pub matched: usize,
}

/// One item to order: what it is attached to, its rank, and the payload.
#[derive(Debug, Clone)]
pub struct Ranked<T> {
    /// The parent Service (precedence applies among matches of the same parent).
    pub parent: Host,
    /// Its rank.
    pub rank: Rank,
    /// The route being ordered.
    pub item: T,
}

/// Orders `items`: grouped by parent (in the order parents first appear), then by rank.
pub fn sort<T>(items: &mut [Ranked<T>]) {
    let mut parents: Vec<Host> = Vec::new();
    for item in items.iter() {
        if !parents.contains(&item.parent) {
            parents.push(item.parent.clone());
        }
    }
    let group = |h: &Host| parents.iter().position(|p| p == h).unwrap_or(usize::MAX);
    items.sort_by(|a, b| {
        group(&a.parent)
            .cmp(&group(&b.parent))
            .then_with(|| compare(&a.rank, &b.rank))
    });
}

/// `Less` when `a` is tried before `b`.
pub fn compare(a: &Rank, b: &Rank) -> Ordering {
    compare_specificity(&a.specificity, &b.specificity)
        .then_with(|| match (&a.created, &b.created) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then_with(|| a.route.cmp(&b.route))
        .then_with(|| a.rule.cmp(&b.rule))
        .then_with(|| a.matched.cmp(&b.matched))
}

fn compare_specificity(a: &Specificity, b: &Specificity) -> Ordering {
    use Specificity::{Grpc, Http};
    match (a, b) {
        (Grpc { .. }, Http { .. }) => Ordering::Less,
        (Http { .. }, Grpc { .. }) => Ordering::Greater,
        (
            Grpc {
                exact: e1,
                service: s1,
                method: m1,
                headers: h1,
            },
            Grpc {
                exact: e2,
                service: s2,
                method: m2,
                headers: h2,
            },
        ) => e2
            .cmp(e1)
            .then_with(|| s2.cmp(s1))
            .then_with(|| m2.cmp(m1))
            .then_with(|| h2.cmp(h1)),
        (
            Http {
                path: p1,
                method: m1,
                headers: h1,
                query: q1,
            },
            Http {
                path: p2,
                method: m2,
                headers: h2,
                query: q2,
            },
        ) => compare_path(p1, p2)
            .then_with(|| m2.cmp(m1))
            .then_with(|| h2.cmp(h1))
            .then_with(|| q2.cmp(q1)),
    }
}

fn compare_path(a: &PathRank, b: &PathRank) -> Ordering {
    let class = |p: &PathRank| match p {
        PathRank::Exact => 0,
        PathRank::Prefix(_) => 1,
        PathRank::Regex(_) => 2,
    };
    let length = |p: &PathRank| match p {
        PathRank::Exact => 0,
        PathRank::Prefix(n) | PathRank::Regex(n) => *n,
    };
    class(a)
        .cmp(&class(b))
        .then_with(|| length(b).cmp(&length(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(path: PathRank, method: bool, headers: usize) -> Specificity {
        Specificity::Http {
            path,
            method,
            headers,
            query: 0,
        }
    }

    fn rank(specificity: Specificity, created: Option<&str>, route: &str) -> Rank {
        Rank {
            specificity,
            created: created.map(str::to_string),
            route: route.to_string(),
            rule: 0,
            matched: 0,
        }
    }

    fn first(a: Specificity, b: Specificity) {
        let (ra, rb) = (rank(a, None, "shop/a"), rank(b, None, "shop/b"));
        assert_eq!(compare(&ra, &rb), Ordering::Less, "{a:?} before {b:?}");
        let (ra, rb) = (rank(a, None, "shop/b"), rank(b, None, "shop/a"));
        assert_eq!(compare(&ra, &rb), Ordering::Less, "{a:?} before {b:?}");
    }

    #[test]
    fn exact_before_prefix_of_the_same_path() {
        first(
            http(PathRank::Exact, false, 0),
            http(PathRank::Prefix(4), true, 3),
        );
    }

    #[test]
    fn longer_prefix_first() {
        first(
            http(PathRank::Prefix("/api/v1".len()), false, 0),
            http(PathRank::Prefix("/api".len()), true, 2),
        );
    }

    #[test]
    fn regex_after_every_prefix() {
        first(
            http(PathRank::Prefix(1), false, 0),
            http(PathRank::Regex(20), true, 0),
        );
    }

    #[test]
    fn method_before_none_then_more_headers_first() {
        first(
            http(PathRank::Prefix(4), true, 0),
            http(PathRank::Prefix(4), false, 5),
        );
        first(
            http(PathRank::Prefix(4), false, 2),
            http(PathRank::Prefix(4), false, 1),
        );
        let q = |query| Specificity::Http {
            path: PathRank::Prefix(1),
            method: false,
            headers: 0,
            query,
        };
        first(q(1), q(0));
    }

    #[test]
    fn ties_go_to_the_older_route_then_the_name_then_rule_order() {
        let s = http(PathRank::Prefix(1), false, 0);
        let old = rank(s, Some("2023-01-01T00:00:00Z"), "shop/z");
        let new = rank(s, Some("2024-01-01T00:00:00Z"), "shop/a");
        assert_eq!(compare(&old, &new), Ordering::Less);
        let unknown = rank(s, None, "shop/a");
        assert_eq!(compare(&new, &unknown), Ordering::Less);
        let a = rank(s, None, "shop/a");
        let b = rank(s, None, "shop/b");
        assert_eq!(compare(&a, &b), Ordering::Less);
        let mut later_rule = a.clone();
        later_rule.rule = 1;
        assert_eq!(compare(&a, &later_rule), Ordering::Less);
        let mut later_match = a.clone();
        later_match.matched = 1;
        assert_eq!(compare(&a, &later_match), Ordering::Less);
    }

    #[test]
    fn grpc_exact_then_longer_service_and_method() {
        let g = |exact, service, method| Specificity::Grpc {
            exact,
            service,
            method,
            headers: 0,
        };
        first(g(true, 3, 0), g(false, 10, 10));
        first(g(true, 10, 0), g(true, 3, 5));
        first(g(true, 3, 5), g(true, 3, 0));
        first(g(false, 0, 0), http(PathRank::Exact, true, 5));
    }

    #[test]
    fn sort_groups_by_parent_in_first_seen_order() {
        let host = |s: &str| Host::Kubernetes {
            service: s.into(),
            namespace: "shop".into(),
        };
        let item = |parent: &str, path, name: &'static str| Ranked {
            parent: host(parent),
            rank: rank(http(path, false, 0), None, "shop/r"),
            item: name,
        };
        let mut items = vec![
            item("b", PathRank::Prefix(1), "b-root"),
            item("a", PathRank::Prefix(4), "a-api"),
            item("b", PathRank::Exact, "b-exact"),
        ];
        sort(&mut items);
        let order: Vec<&str> = items.iter().map(|i| i.item).collect();
        assert_eq!(order, ["b-exact", "b-root", "a-api"]);
    }
}
