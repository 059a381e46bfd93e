//! The immutable runtime view of one configuration: compiled route tables, services and
//! resolved metric handles. A request holds the snapshot it started with.

use std::collections::HashMap;
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
                (before == s && kept.route_slots() == route_slots.as_slice()).then(|| kept.clone())
            });
            let service = match unchanged {
                Some(kept) => kept,
                None => {
                    let tls = OutboundTls::new(s, identity, metrics).map_err(BuildError)?;
                    Service::with_tls(s, route_slots, metrics.clone(), tls)
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
