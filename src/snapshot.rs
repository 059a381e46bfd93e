//! The immutable runtime view of one configuration: compiled route tables, services and
//! resolved metric handles. A request holds the snapshot it started with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::route::RouteTable;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace::tracer::Tracer;
use crate::tls::IdentityStore;
use crate::upstream::tls_origin::OutboundTls;
use crate::upstream::Service;

/// Everything the request path reads, built once per configuration.
#[derive(Debug)]
pub struct Snapshot {
    /// The configuration it was built from (served at `/config`).
    pub config: Arc<Config>,
    /// Route tables, indexed like `config.listeners`; each accepted connection holds its
    /// listener's.
    pub listeners: Vec<Arc<RouteTable>>,
    /// Services by name.
    pub services: HashMap<String, Arc<Service>>,
}

/// Why a validated configuration still could not be built (an internal inconsistency).
#[derive(Debug)]
pub struct BuildError(pub String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Snapshot {
    /// Builds services (with their endpoint metric handles) and route tables. `access_log`
    /// is the running writer's handle when `logging.access_log` is on.
    pub fn build(
        config: Config,
        metrics: &Arc<Metrics>,
        access_log: Option<AccessLog>,
    ) -> Result<Arc<Self>, BuildError> {
        Self::build_with_identity(config, metrics, access_log, None, None)
    }

    /// Like [`Snapshot::build`], with the workload's identity for services reached over
    /// mutual TLS, and the tracer when `tracing` is configured.
    pub fn build_with_identity(
        config: Config,
        metrics: &Arc<Metrics>,
        access_log: Option<AccessLog>,
        identity: Option<&Arc<IdentityStore>>,
        tracer: Option<Arc<Tracer>>,
    ) -> Result<Arc<Self>, BuildError> {
        Self::build_reusing(config, metrics, access_log, identity, tracer, None)
    }

    /// Like [`Snapshot::build_with_identity`], for a reload: a service of `previous` whose
    /// definition is unchanged and that the same (listener, route) pairs reach is kept as
    /// it is, with its endpoints, pools, in-flight counts, breaker window and ejections.
    /// Any other change to a service builds it anew (its state starts fresh).
    pub fn build_reusing(
        config: Config,
        metrics: &Arc<Metrics>,
        access_log: Option<AccessLog>,
        identity: Option<&Arc<IdentityStore>>,
        tracer: Option<Arc<Tracer>>,
        previous: Option<&Snapshot>,
    ) -> Result<Arc<Self>, BuildError> {
        let mut slots: HashMap<&str, Vec<(String, String)>> = HashMap::new();
        for l in &config.listeners {
            for r in &l.routes {
                for b in &r.backends {
                    let s = slots.entry(b.service.as_str()).or_default();
                    let key = (l.name.clone(), r.name.clone());
                    if !s.contains(&key) {
                        s.push(key);
                    }
                }
            }
        }
        let mut services: HashMap<String, Arc<Service>> = HashMap::new();
        for s in &config.services {
            let route_slots = slots.remove(s.name.as_str()).unwrap_or_default();
            let unchanged = previous.and_then(|p| {
                let before = p.config.services.iter().find(|b| b.name == s.name)?;
                let kept = p.services.get(&s.name)?;
                (before == s && same_slots(kept.route_slots(), &route_slots)).then(|| kept.clone())
            });
            let service = match unchanged {
                Some(kept) => kept,
                None => {
                    let tls = OutboundTls::new(s, identity, metrics).map_err(BuildError)?;
                    let service = Service::with_tls(s, route_slots, metrics.clone(), tls);
                    if let Some((found, addresses)) = previous.and_then(|p| discovered(p, s)) {
                        service.seed_endpoints(&found);
                        service.discovered_addresses.store(addresses);
                    }
                    service
                }
            };
            services.insert(s.name.clone(), service);
        }
        let listeners = config
            .listeners
            .iter()
            .map(|l| {
                let mut table = RouteTable::new(l, &services, metrics)
                    .map_err(|e| BuildError(format!("listener {}: {}", l.name, e.0)))?;
                table.access_log = access_log.clone();
                table.tracer = tracer.clone();
                if let Some(unknown) = table.unknown.as_mut() {
                    let listeners = config.listeners.iter().map(|l| l.address.port());
                    unknown.reserve(listeners.chain([config.admin.address.port()]));
                }
                Ok(Arc::new(table))
            })
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(Snapshot {
            config: Arc::new(config),
            listeners,
            services,
        }))
    }
}

/// The endpoints the previous service named like `s` found by the same discovery, when it
/// has one: a service rebuilt by a reload starts with them rather than with none until its
/// first lookup.
/// What a service's discovery found for applications to call it at.
type DiscoveredAddresses = Arc<Vec<SocketAddr>>;

fn discovered(
    previous: &Snapshot,
    s: &crate::config::Service,
) -> Option<(Vec<(SocketAddr, u32)>, DiscoveredAddresses)> {
    let before = previous.config.services.iter().find(|b| b.name == s.name)?;
    if s.discovery.is_none() || before.discovery != s.discovery {
        return None;
    }
    let service = previous.services.get(&s.name)?;
    let set = service.endpoint_set();
    let endpoints = set
        .endpoints
        .iter()
        .map(|e| (e.address, e.weight))
        .collect();
    Some((endpoints, service.discovered_addresses.load_full()))
}

/// Whether two services count the same (listener, route) pairs, in any order: the route
/// tables ask the service for each pair's slot, so the order does not matter.
fn same_slots(a: &[(String, String)], b: &[(String, String)]) -> bool {
    a.len() == b.len() && a.iter().all(|slot| b.contains(slot))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str, metrics: &Arc<Metrics>, previous: Option<&Snapshot>) -> Arc<Snapshot> {
        let config = crate::config::load_str("t.yaml", text)
            .expect("valid")
            .config;
        Snapshot::build_reusing(config, metrics, None, None, None, previous).expect("builds")
    }

    const TWO_ROUTES: &str = "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: a\n        match: { path: { prefix: /a } }\n        backends: [{ service: s }]\n      - name: b\n        backends: [{ service: s }]\nservices:\n  - { name: s, endpoints: [\"127.0.0.1:2\"] }\n";

    #[test]
    fn a_service_reached_by_the_same_routes_in_another_order_is_kept() {
        let metrics = Metrics::new();
        let before = build(TWO_ROUTES, &metrics, None);
        let swapped = TWO_ROUTES
            .replace(
                "name: a\n        match: { path: { prefix: /a } }",
                "name: x",
            )
            .replace(
                "name: b\n",
                "name: a\n        match: { path: { prefix: /a } }\n",
            )
            .replace("name: x", "name: b");
        let after = build(&swapped, &metrics, Some(&before));
        assert!(Arc::ptr_eq(&before.services["s"], &after.services["s"]));
        // Each route still counts in its own slot.
        for (index, name) in [(0, "b"), (1, "a")] {
            let route = &after.listeners[0].routes[index];
            assert_eq!(route.name, name);
            assert_eq!(
                after.services["s"].slot("l", name),
                Some(route.backends[0].slot)
            );
        }
        // A route more: the service is built anew.
        let three = TWO_ROUTES.replace(
            "services:",
            "      - name: c\n        backends: [{ service: s }]\nservices:",
        );
        let rebuilt = build(&three, &metrics, Some(&after));
        assert!(!Arc::ptr_eq(&after.services["s"], &rebuilt.services["s"]));
    }

    #[test]
    fn a_rebuilt_service_starts_with_what_its_predecessors_discovery_found() {
        let metrics = Metrics::new();
        let dns = "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        backends: [{ service: s }]\nservices:\n  - { name: s, connect_timeout: 1s, discovery: { dns: \"example.internal:80\" } }\n";
        let before = build(dns, &metrics, None);
        let found: std::net::SocketAddr = "10.0.0.7:80".parse().expect("address");
        before.services["s"].set_endpoints(&[(found, 1)]);
        let after = build(&dns.replace("1s", "2s"), &metrics, Some(&before));
        assert!(!Arc::ptr_eq(&before.services["s"], &after.services["s"]));
        let set = after.services["s"].endpoint_set();
        assert_eq!(set.endpoints.len(), 1);
        assert_eq!(set.endpoints[0].address, found);
        // Another discovery starts empty: its endpoints are not these.
        let other = dns.replace("example.internal", "other.internal");
        let moved = build(&other, &metrics, Some(&after));
        assert!(moved.services["s"].endpoint_set().endpoints.is_empty());
    }
}
