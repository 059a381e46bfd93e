//! Metric families that remember the series they created, so that the series of an
//! endpoint that left its service, or of a listener, route or service a reload removed, can
//! be taken out of `/metrics` (a series nobody will ever increment again is noise that
//! dashboards and Prometheus storage pay for).
//!
//! prometheus-client's `Family` can remove a label set but cannot list them; [`Tracked`]
//! keeps the list beside it. Series are created when configuration is built (and, for a
//! status code seen for the first time, once per handle), never per request, so the list's
//! lock is off the request path.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::Metric;

/// The label value of a label that names nothing: the route of a request no route matched,
/// the service and endpoint of a request that never reached one, the error of a response
/// relayed from an upstream. Empty label values are avoided because Prometheus treats them
/// as an absent label.
pub const NONE: &str = "none";

/// A [`Family`] and the label sets it holds.
#[derive(Debug)]
pub struct Tracked<L, M> {
    family: Family<L, M>,
    created: Arc<Mutex<HashSet<L>>>,
}

impl<L, M> Clone for Tracked<L, M> {
    fn clone(&self) -> Self {
        Tracked {
            family: self.family.clone(),
            created: self.created.clone(),
        }
    }
}

impl<L, M> Default for Tracked<L, M>
where
    L: Clone + Hash + Eq,
    M: Default,
{
    fn default() -> Self {
        Tracked {
            family: Family::default(),
            created: Arc::default(),
        }
    }
}

impl<L, M> Tracked<L, M>
where
    L: Clone + Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
    M: Default + Clone + TypedMetric + Metric,
{
    /// The family, for registering it.
    pub fn family(&self) -> Family<L, M> {
        self.family.clone()
    }

    /// The metric of `labels`, created (and remembered) on first use. A series that exists
    /// is found under the family's read lock alone.
    pub fn get_or_create_owned(&self, labels: &L) -> M {
        if let Some(metric) = self.family.get(labels) {
            return metric.clone();
        }
        let mut created = self.created();
        if !created.contains(labels) {
            created.insert(labels.clone());
        }
        self.family.get_or_create_owned(labels)
    }

    /// Removes every series whose labels `keep` refuses. A handle still held elsewhere keeps
    /// counting, unseen; asking for the labels again starts a new series at zero, which
    /// Prometheus reads as a counter reset.
    pub fn retain(&self, keep: impl Fn(&L) -> bool) {
        let mut created = self.created();
        created.retain(|labels| {
            let kept = keep(labels);
            if !kept {
                self.family.remove(labels);
            }
            kept
        });
    }

    /// How many series the family holds.
    pub fn len(&self) -> usize {
        self.created().len()
    }

    /// Whether the family holds no series.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn created(&self) -> MutexGuard<'_, HashSet<L>> {
        match self.created.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// What a configuration names, so series of anything else can be removed after a reload.
#[derive(Debug, Default)]
pub struct Live {
    listeners: HashSet<String>,
    /// (listener, route)
    routes: HashSet<(String, String)>,
    /// (route, service): a route's backends and mirror.
    route_services: HashSet<(String, String)>,
    services: HashSet<String>,
    breakers: HashSet<String>,
    tls_services: HashSet<String>,
    /// Listeners with `tls`, and their `allow` entries.
    tls_listeners: std::collections::HashMap<String, HashSet<String>>,
}

impl Live {
    /// The names `config` declares.
    pub fn of(config: &crate::config::Config) -> Live {
        let mut live = Live::default();
        for l in &config.listeners {
            live.listeners.insert(l.name.clone());
            if let Some(tls) = &l.tls {
                live.tls_listeners
                    .insert(l.name.clone(), tls.allow.iter().cloned().collect());
            }
            for r in &l.routes {
                live.routes.insert((l.name.clone(), r.name.clone()));
                let mirror = r.mirror.as_ref().map(|m| &m.service);
                for s in r.backends.iter().map(|b| &b.service).chain(mirror) {
                    live.route_services.insert((r.name.clone(), s.clone()));
                }
            }
        }
        for s in &config.services {
            live.services.insert(s.name.clone());
            if s.circuit_breaker.is_some() {
                live.breakers.insert(s.name.clone());
            }
            if s.tls.is_some() {
                live.tls_services.insert(s.name.clone());
            }
        }
        live
    }

    /// Whether `listener` exists with `route` (or [`NONE`]) sending to `service` (or
    /// [`NONE`]): the names a request's series carry.
    pub fn names(&self, listener: &str, route: &str, service: &str) -> bool {
        self.listener(listener) && self.route(listener, route) && self.service(service)
    }

    /// Whether listener `name` exists.
    pub fn listener(&self, name: &str) -> bool {
        self.listeners.contains(name)
    }

    /// Whether `listener` has route `route` (or `route` is [`NONE`]).
    pub fn route(&self, listener: &str, route: &str) -> bool {
        route == NONE
            || self
                .routes
                .contains(&(listener.to_string(), route.to_string()))
    }

    /// Whether some route named `route` sends to `service`.
    pub fn route_service(&self, route: &str, service: &str) -> bool {
        self.route_services
            .contains(&(route.to_string(), service.to_string()))
    }

    /// Whether service `name` exists (or `name` is [`NONE`]).
    pub fn service(&self, name: &str) -> bool {
        name == NONE || self.services.contains(name)
    }

    /// Whether service `name` has a circuit breaker.
    pub fn breaker(&self, name: &str) -> bool {
        self.breakers.contains(name)
    }

    /// Whether listener `name` has `tls`.
    pub fn tls_listener(&self, name: &str) -> bool {
        self.tls_listeners.contains_key(name)
    }

    /// Whether `peer_identity` is a value `weir_tls_peer_requests_total` can still take on
    /// listener `name`: one of its `allow` entries, `other` or `none`.
    pub fn tls_peer(&self, name: &str, peer_identity: &str) -> bool {
        self.tls_listeners.get(name).is_some_and(|allow| {
            matches!(peer_identity, "other" | "none") || allow.contains(peer_identity)
        })
    }

    /// Whether service `name` is reached over TLS.
    pub fn tls_service(&self, name: &str) -> bool {
        self.tls_services.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct L {
        service: String,
    }

    fn l(s: &str) -> L {
        L { service: s.into() }
    }

    #[test]
    fn retained_series_keep_counting_and_removed_ones_leave_the_family() {
        let t = Tracked::<L, Counter>::default();
        t.get_or_create_owned(&l("a")).inc();
        let b = t.get_or_create_owned(&l("b"));
        b.inc_by(5);
        assert_eq!(t.len(), 2);
        t.retain(|labels| labels.service == "a");
        assert_eq!(t.len(), 1);
        assert!(t.family().get(&l("b")).is_none(), "b left the family");
        assert_eq!(t.get_or_create_owned(&l("a")).get(), 1, "a kept its count");
        // A handle held across the removal counts unseen; asking again starts at zero.
        b.inc();
        assert_eq!(t.get_or_create_owned(&l("b")).get(), 0);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn live_names_come_from_the_configuration() {
        let text = "version: 1\nlisteners:\n  - name: out\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        backends: [{ service: s }]\n        mirror: { service: m }\nservices:\n  - { name: s, endpoints: [\"127.0.0.1:2\"], circuit_breaker: {} }\n  - { name: m, endpoints: [\"127.0.0.1:3\"] }\n";
        let config = crate::config::load_str("t.yaml", text)
            .expect("valid")
            .config;
        let live = Live::of(&config);
        assert!(live.listener("out") && !live.listener("in"));
        assert!(live.route("out", "r") && live.route("out", NONE) && !live.route("out", "x"));
        assert!(live.route_service("r", "s") && live.route_service("r", "m"));
        assert!(!live.route_service("r", "x"));
        assert!(live.service("s") && live.service(NONE) && !live.service("gone"));
        assert!(live.breaker("s") && !live.breaker("m"));
        assert!(!live.tls_listener("out") && !live.tls_peer("out", "other"));
        let with_tls = text.replace(
            "    routes:",
            "    tls: { mode: permissive, allow: [\"spiffe://td/ns/a/sa/b\"] }\n    routes:",
        ) + "identity: { cert: c.pem, key: k.pem, trust_bundle: t.pem }\n";
        let config = crate::config::load_str("t.yaml", &with_tls)
            .expect("valid")
            .config;
        let live = Live::of(&config);
        assert!(live.tls_listener("out"));
        for peer in ["spiffe://td/ns/a/sa/b", "other", "none"] {
            assert!(live.tls_peer("out", peer), "{peer}");
        }
        assert!(!live.tls_peer("out", "spiffe://td/ns/a/sa/gone"));
    }
}
