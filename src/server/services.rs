//! The background work of each service: discovery, outlier sweeps and health checks. It
//! lives as long as the service does: a reload that keeps a service keeps its tasks, one
//! that replaces or removes it stops them.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{self, Discovery};
use crate::upstream::Service;

/// The tasks of one service; dropping this stops them.
#[derive(Debug)]
pub(super) struct ServiceTasks {
    /// The service they work for (a reload compares it with the new snapshot's).
    pub service: Arc<Service>,
    tasks: Vec<JoinHandle<()>>,
}

/// Whether a route of `config` claims the destinations discovery finds for `service`.
fn claims_discovered(config: &config::Config, service: &str) -> bool {
    config.listeners.iter().flat_map(|l| &l.routes).any(|r| {
        r.matcher.discovered_destination && r.backends.iter().any(|b| b.service == service)
    })
}

impl ServiceTasks {
    /// Starts what `config` (a service of `whole`) asks of `service`. `stop` turns true
    /// when weir shuts down.
    pub fn start(
        whole: &config::Config,
        config: &config::Service,
        service: &Arc<Service>,
        stop: &watch::Receiver<bool>,
    ) -> ServiceTasks {
        let mut tasks = Vec::new();
        let discovery = match &config.discovery {
            Some(Discovery::Dns {
                host,
                port,
                refresh,
            }) => {
                let (endpoints, updates) = watch::channel(Vec::new());
                tasks.push(tokio::spawn(crate::discovery::dns::run(
                    config.name.clone(),
                    host.clone(),
                    *port,
                    *refresh,
                    endpoints,
                    stop.clone(),
                )));
                Some(updates)
            }
            Some(Discovery::Kubernetes {
                service: k8s_service,
                namespace,
                port,
            }) => {
                let (endpoints, updates) = watch::channel(Vec::new());
                let target = crate::discovery::kubernetes::Target {
                    weir_service: config.name.clone(),
                    service: k8s_service.clone(),
                    namespace: namespace.clone(),
                    port: port.clone(),
                };
                // A transparent listener routes the Service's cluster IP here: find it.
                if claims_discovered(whole, &config.name) {
                    tasks.push(tokio::spawn(crate::discovery::kubernetes::cluster_ip::run(
                        target.clone(),
                        service.discovered_addresses.clone(),
                        stop.clone(),
                    )));
                }
                tasks.push(tokio::spawn(crate::discovery::kubernetes::run(
                    target,
                    endpoints,
                    stop.clone(),
                )));
                Some(updates)
            }
            None => None,
        };
        if let Some(updates) = discovery {
            let (following, stop) = (service.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                following.follow_discovery(updates, stop).await
            }));
        }
        let (sweeping, stopping) = (service.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            sweeping
                .run_outlier_sweeps(&sweeping.outlier, stopping)
                .await
        }));
        if let Some(hc) = &config.health_check {
            tasks.push(tokio::spawn(crate::upstream::health::run(
                service.clone(),
                hc.clone(),
                stop.clone(),
            )));
        }
        ServiceTasks {
            service: service.clone(),
            tasks,
        }
    }
}

impl Drop for ServiceTasks {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
