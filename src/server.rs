//! Starting and stopping weir: build the snapshot, bind the admin server and every
//! listener, start discovery, report ready; on shutdown, drain.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState};
use crate::config::{Config, Discovery, ListenerProtocol, Node};
use crate::proxy::listener::ListenerPolicy;
use crate::proxy::tcp::TcpForwarding;
use crate::proxy::tls_accept::InboundTls;
use crate::snapshot::{BuildError, Snapshot};
use crate::telemetry::access_log::{self, AccessLog};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace::export::Exporter;
use crate::telemetry::trace::tracer::Tracer;
use crate::telemetry::trace::{Attribute, AttributeValue, Resource};
use crate::tls::{IdentityError, IdentityStore};

/// Why weir could not start.
#[derive(Debug)]
pub enum StartError {
    /// A socket could not be bound.
    Bind {
        /// What the socket is for (`admin`, `listener outbound`).
        what: String,
        /// The address.
        address: SocketAddr,
        /// The OS error.
        error: std::io::Error,
    },
    /// The configuration could not be built.
    Build(BuildError),
    /// The workload's identity files could not be used.
    Identity(IdentityError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind {
                what,
                address,
                error,
            } if error.kind() == std::io::ErrorKind::AddrInUse => {
                write!(f, "{what}: cannot bind {address}: the address is in use; stop the other process or change the address")
            }
            StartError::Bind {
                what,
                address,
                error,
            } => write!(f, "{what}: cannot bind {address}: {error}"),
            StartError::Build(e) => write!(f, "cannot build the configuration: {e}"),
            StartError::Identity(e) => write!(f, "identity: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running proxy.
#[derive(Debug)]
pub struct Server {
    /// Where the admin server listens.
    pub admin_address: SocketAddr,
    /// Where each HTTP listener listens, by listener name (ports resolved when 0).
    pub listener_addresses: Vec<(String, SocketAddr)>,
    /// State shared with the admin server.
    pub state: Arc<AdminState>,
    stop: watch::Sender<bool>,
    listeners: Vec<JoinHandle<bool>>,
    background: Vec<JoinHandle<()>>,
    access_log: Option<access_log::Writer>,
    exporter: Option<Exporter>,
}

impl Server {
    /// Builds the configuration and starts serving it.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let metrics = Metrics::new();
        let identity = match &config.identity {
            Some(files) => {
                Some(IdentityStore::load(files, &metrics).map_err(StartError::Identity)?)
            }
            None => None,
        };
        if let Some(identity) = &identity {
            tracing::info!(spiffe_id = %identity.current().spiffe_id, "workload identity loaded");
        }
        let (access_log, access_log_writer) = start_access_log(&config, &metrics);
        let (tracer, exporter) = start_tracing(&config, &metrics);
        let snapshot =
            Snapshot::build_with_identity(config, &metrics, access_log, identity.as_ref(), tracer)
                .map_err(StartError::Build)?;
        let config = snapshot.config.clone();
        let shared = Arc::new(ArcSwap::new(snapshot.clone()));
        let state = Arc::new(AdminState {
            snapshot: shared.clone(),
            metrics,
            ready: false.into(),
            identity: identity.clone(),
            shutdown: watch::channel(false).0,
        });
        let (stop, stop_rx) = watch::channel(false);
        if let Some(identity) = &identity {
            identity.watch(stop_rx.clone());
        }

        let bind = |what: String, address: SocketAddr| async move {
            TcpListener::bind(address)
                .await
                .map_err(|error| StartError::Bind {
                    what,
                    address,
                    error,
                })
        };
        let admin_listener = bind("admin".into(), config.admin.address).await?;
        let admin_address = admin_listener.local_addr().unwrap_or(config.admin.address);
        let mut background = vec![tokio::spawn(admin::serve(
            admin_listener,
            state.clone(),
            stop_rx.clone(),
        ))];

        let mut bound = Vec::new();
        for (index, l) in config.listeners.iter().enumerate() {
            let listener = bind(format!("listener {}", l.name), l.address).await?;
            bound.push((index, l.name.clone(), listener));
        }
        let grace = Duration::from_secs(3600); // bounded by `shutdown`'s own grace period
        let mut listener_addresses = Vec::new();
        let mut listeners = Vec::new();
        for (index, name, listener) in bound {
            let address = listener
                .local_addr()
                .unwrap_or(config.listeners[index].address);
            tracing::info!(listener = %name, %address, "listening");
            listener_addresses.push((name, address));
            let l = &config.listeners[index];
            let policy = ListenerPolicy::new(l, &state.metrics).with_tls(
                InboundTls::new(l, identity.as_ref(), &state.metrics)
                    .map_err(|e| StartError::Build(BuildError(e)))?,
            );
            let table = snapshot.listeners[index].clone();
            listeners.push(match l.protocol {
                ListenerProtocol::Http => tokio::spawn(crate::proxy::listener::serve(
                    listener,
                    table,
                    stop_rx.clone(),
                    grace,
                    policy,
                )),
                ListenerProtocol::Tcp => {
                    let forwarding =
                        Arc::new(TcpForwarding::new(table, l.timeouts.idle, &state.metrics));
                    tokio::spawn(crate::proxy::tcp::serve(
                        listener,
                        forwarding,
                        stop_rx.clone(),
                        grace,
                        policy,
                    ))
                }
            });
        }

        for s in &config.services {
            if let (
                Some(Discovery::Dns {
                    host,
                    port,
                    refresh,
                }),
                Some(service),
            ) = (&s.discovery, snapshot.services.get(&s.name))
            {
                let (endpoints, updates) = watch::channel(Vec::new());
                background.push(tokio::spawn(crate::discovery::dns::run(
                    s.name.clone(),
                    host.clone(),
                    *port,
                    *refresh,
                    endpoints,
                    stop_rx.clone(),
                )));
                let (service, stop) = (service.clone(), stop_rx.clone());
                background.push(tokio::spawn(async move {
                    service.follow_discovery(updates, stop).await
                }));
            }
        }
        for s in &config.services {
            let Some(service) = snapshot.services.get(&s.name) else {
                continue;
            };
            let (sweeping, stop) = (service.clone(), stop_rx.clone());
            background.push(tokio::spawn(async move {
                sweeping.run_outlier_sweeps(&sweeping.outlier, stop).await
            }));
            if let Some(hc) = &s.health_check {
                background.push(tokio::spawn(crate::upstream::health::run(
                    service.clone(),
                    hc.clone(),
                    stop_rx.clone(),
                )));
            }
        }
        background.push(tokio::spawn(close_idle_connections(
            shared.clone(),
            stop_rx.clone(),
        )));
        state.ready.store(true, Ordering::Release);
        tracing::info!(admin = %admin_address, "weir is ready");
        Ok(Server {
            admin_address,
            listener_addresses,
            state,
            stop,
            listeners,
            background,
            access_log: access_log_writer,
            exporter,
        })
    }

    /// Resolves when `POST /shutdown` asks for a drain (the caller then calls
    /// [`Server::shutdown`], as on SIGTERM).
    pub async fn shutdown_requested(&self) {
        let mut asked = self.state.shutdown.subscribe();
        let _ = asked.wait_for(|asked| *asked).await;
    }

    /// The address of the named listener.
    pub fn listener_address(&self, name: &str) -> Option<SocketAddr> {
        self.listener_addresses
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`, then stops.
    /// Returns whether every connection finished in time.
    /// Spans still queued for export are sent within what is left of `grace`.
    pub async fn shutdown(self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        self.state.ready.store(false, Ordering::Release);
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(grace, async {
            let mut all = true;
            for l in self.listeners {
                all &= l.await.unwrap_or(false);
            }
            all
        })
        .await
        .unwrap_or(false);
        for task in self.background {
            task.abort();
        }
        if let Some(exporter) = self.exporter {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !exporter.shutdown(left).await {
                tracing::warn!("spans still queued at shutdown could not be exported in time");
            }
        }
        if let Some(writer) = self.access_log {
            if !writer.shutdown(access_log::SHUTDOWN_FLUSH).await {
                tracing::warn!(
                    "the access log could not be flushed in time; its last lines are lost"
                );
            }
        }
        drained
    }
}

/// Starts the access-log writer when `logging.access_log` is on. If its thread cannot be
/// started, weir serves without the access log rather than not at all.
fn start_access_log(
    config: &Config,
    metrics: &Metrics,
) -> (Option<AccessLog>, Option<access_log::Writer>) {
    if !config.logging.access_log {
        return (None, None);
    }
    match AccessLog::start(config.logging.format, metrics.access_log_dropped.clone()) {
        Ok((log, writer)) => (Some(log), Some(writer)),
        Err(e) => {
            tracing::warn!("cannot start the access-log writer ({e}); the access log is off");
            (None, None)
        }
    }
}

/// Starts the tracer when `tracing` is configured, and its span exporter when it names a
/// collector.
fn start_tracing(config: &Config, metrics: &Metrics) -> (Option<Arc<Tracer>>, Option<Exporter>) {
    let Some(tracing_config) = &config.tracing else {
        return (None, None);
    };
    let (sink, exporter) = match &tracing_config.otlp {
        Some(otlp) => {
            let resource = resource(&config.node, |name| std::env::var(name).ok());
            let (sink, exporter) = Exporter::start(otlp, resource, metrics.trace_spans.clone());
            (Some(sink), Some(exporter))
        }
        None => (None, None),
    };
    (Some(Arc::new(Tracer::new(tracing_config, sink))), exporter)
}

/// The OTLP resource of this proxy's spans: `service.name` from `node.service` (`weir` when
/// unset), the namespace from `node.namespace` or `POD_NAMESPACE`, the pod from `POD_NAME`
/// (the Downward API variables `weir inject` sets).
fn resource(node: &Node, env: impl Fn(&str) -> Option<String>) -> Resource {
    let text = |s: String| AttributeValue::Text(s);
    let mut attributes: Vec<Attribute> = vec![(
        "service.name",
        text(match node.service.as_str() {
            "" => "weir".to_string(),
            s => s.to_string(),
        }),
    )];
    let namespace = Some(node.namespace.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| env("POD_NAMESPACE"));
    if let Some(namespace) = namespace {
        attributes.push(("k8s.namespace.name", text(namespace)));
    }
    if let Some(pod) = env("POD_NAME").filter(|p| !p.is_empty()) {
        attributes.push(("k8s.pod.name", text(pod)));
    }
    if !node.workload.is_empty() {
        attributes.push(("k8s.deployment.name", text(node.workload.clone())));
    }
    Resource { attributes }
}

/// Sweeps expired idle upstream connections, at half the shortest idle timeout (at most
/// once a second), so quiet endpoints release their sockets.
async fn close_idle_connections(snapshot: Arc<ArcSwap<Snapshot>>, mut stop: watch::Receiver<bool>) {
    loop {
        let current = snapshot.load_full();
        let period = current
            .services
            .values()
            .map(|s| s.idle_timeout() / 2)
            .min()
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        for s in current.services.values() {
            s.close_expired_connections();
        }
        drop(current);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(period) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<'a>(resource: &'a Resource, key: &str) -> Option<&'a str> {
        resource.attributes.iter().find_map(|(k, v)| match v {
            AttributeValue::Text(t) if *k == key => Some(t.as_str()),
            _ => None,
        })
    }

    #[test]
    fn spans_name_the_node_and_the_pod_from_the_downward_api() {
        let node = Node {
            service: "reviews".into(),
            namespace: String::new(),
            workload: "reviews-v2".into(),
        };
        let env = |name: &str| match name {
            "POD_NAMESPACE" => Some("shop".to_string()),
            "POD_NAME" => Some("reviews-v2-7d9f".to_string()),
            _ => None,
        };
        let r = resource(&node, env);
        assert_eq!(text(&r, "service.name"), Some("reviews"));
        assert_eq!(text(&r, "k8s.namespace.name"), Some("shop"));
        assert_eq!(text(&r, "k8s.pod.name"), Some("reviews-v2-7d9f"));
        assert_eq!(text(&r, "k8s.deployment.name"), Some("reviews-v2"));

        // The configured namespace wins over the environment; an unnamed node is `weir`.
        let node = Node {
            namespace: "billing".into(),
            ..Node::default()
        };
        let r = resource(&node, env);
        assert_eq!(text(&r, "service.name"), Some("weir"));
        assert_eq!(text(&r, "k8s.namespace.name"), Some("billing"));
        let r = resource(&Node::default(), |_| None);
        assert_eq!(r.attributes.len(), 1, "{r:?}");
    }
}
