//! The identity check of an inbound listener: which peers its `allow` list lets in. The
//! decision is taken once per connection (a peer's identity does not change while it is
//! connected) and every request on the connection counts it in
//! `weir_tls_peer_requests_total`; a denied peer's requests get 403 `identity_denied`.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use crate::telemetry::metrics::{Metrics, TlsPeerLabels};
use crate::tls::peer::IdentityPattern;

/// Label of peers no `allow` entry names (and of every peer when there is no list).
const OTHER: &str = "other";
/// Label of plaintext clients, which have no identity.
const NONE: &str = "none";

/// A listener's `allow` list with its metric handles resolved.
#[derive(Debug)]
pub struct Authorization {
    entries: Vec<AllowEntry>,
    other: Decisions,
    plaintext: Decisions,
}

#[derive(Debug)]
struct AllowEntry {
    pattern: IdentityPattern,
    allowed: Counter,
}

#[derive(Debug)]
struct Decisions {
    allowed: Counter,
    denied: Counter,
}

/// What a connection's peer may do, and the counter its requests increment.
#[derive(Debug, Clone)]
pub struct PeerDecision {
    /// The peer's SPIFFE ID; `None` for a plaintext client.
    pub peer: Option<Arc<str>>,
    /// Whether its requests are served.
    pub allowed: bool,
    /// `weir_tls_peer_requests_total` for this peer and decision.
    pub counter: Counter,
}

impl Authorization {
    /// The `allow` list (`exact` IDs, or prefixes ending in `*`) of `listener`.
    pub fn new(listener: &str, allow: &[String], metrics: &Metrics) -> Self {
        let counter = |identity: &str, decision: &str| {
            metrics
                .tls_peer_requests
                .get_or_create_owned(&TlsPeerLabels {
                    listener: listener.to_string(),
                    peer_identity: identity.to_string(),
                    decision: decision.to_string(),
                })
        };
        let decisions = |identity: &str| Decisions {
            allowed: counter(identity, "allow"),
            denied: counter(identity, "deny"),
        };
        Authorization {
            entries: allow
                .iter()
                .map(|pattern| AllowEntry {
                    pattern: IdentityPattern::new(pattern),
                    allowed: counter(pattern, "allow"),
                })
                .collect(),
            other: decisions(OTHER),
            plaintext: decisions(NONE),
        }
    }

    /// The decision for a peer (`None`: a plaintext client). Without an `allow` list every
    /// peer the handshake authenticated is let in, and so is a plaintext client of a
    /// permissive listener; with one, only the peers it names.
    pub fn decide(&self, peer: Option<&str>) -> PeerDecision {
        let open = self.entries.is_empty();
        let (allowed, counter) = match peer {
            None if open => (true, self.plaintext.allowed.clone()),
            None => (false, self.plaintext.denied.clone()),
            Some(_) if open => (true, self.other.allowed.clone()),
            Some(id) => match self.entries.iter().find(|e| e.pattern.matches(id)) {
                Some(entry) => (true, entry.allowed.clone()),
                None => (false, self.other.denied.clone()),
            },
        };
        PeerDecision {
            peer: peer.map(Arc::from),
            allowed,
            counter,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(list: &[&str]) -> Authorization {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        Authorization::new("inbound", &list, &Metrics::new())
    }

    #[test]
    fn an_allow_list_lets_in_exactly_the_peers_it_names() {
        let authz = allow(&[
            "spiffe://cluster.local/ns/shop/sa/frontend",
            "spiffe://cluster.local/ns/ops/*",
        ]);
        for (peer, allowed) in [
            (Some("spiffe://cluster.local/ns/shop/sa/frontend"), true),
            (Some("spiffe://cluster.local/ns/shop/sa/frontend2"), false),
            (Some("spiffe://cluster.local/ns/ops/sa/prometheus"), true),
            (Some("spiffe://cluster.local/ns/opsx/sa/a"), false),
            (Some("spiffe://other.domain/ns/shop/sa/frontend"), false),
            (None, false),
        ] {
            assert_eq!(authz.decide(peer).allowed, allowed, "{peer:?}");
        }
    }

    #[test]
    fn without_a_list_every_authenticated_peer_and_plaintext_client_is_let_in() {
        let authz = allow(&[]);
        assert!(
            authz
                .decide(Some("spiffe://cluster.local/ns/a/sa/b"))
                .allowed
        );
        assert!(authz.decide(None).allowed);
    }

    #[test]
    fn requests_are_counted_under_bounded_labels() {
        let metrics = Metrics::new();
        let list = vec!["spiffe://cluster.local/ns/ops/*".to_string()];
        let authz = Authorization::new("inbound", &list, &metrics);
        authz
            .decide(Some("spiffe://cluster.local/ns/ops/sa/a"))
            .counter
            .inc();
        authz
            .decide(Some("spiffe://cluster.local/ns/ops/sa/b"))
            .counter
            .inc();
        authz
            .decide(Some("spiffe://cluster.local/ns/x/sa/y"))
            .counter
            .inc();
        authz.decide(None).counter.inc();
        let text = metrics.render();
        for line in [
            r#"weir_tls_peer_requests_total{listener="inbound",peer_identity="spiffe://cluster.local/ns/ops/*",decision="allow"} 2"#,
            r#"weir_tls_peer_requests_total{listener="inbound",peer_identity="other",decision="deny"} 1"#,
            r#"weir_tls_peer_requests_total{listener="inbound",peer_identity="none",decision="deny"} 1"#,
        ] {
            assert!(text.contains(line), "{line}\n{text}");
        }
        assert!(
            !text.contains("ns/x/sa/y"),
            "no label for an unlisted identity"
        );
    }
}
