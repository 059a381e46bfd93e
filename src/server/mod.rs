//! Starting and stopping weir: build the snapshot, bind the admin server and every
//! listener, start discovery, report ready; apply reloads (see [`apply`]); on shutdown,
//! drain.

mod apply;
mod listeners;
mod services;
mod telemetry;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState, ConfigInfo};
use crate::config::Config;
use crate::reload::{ReloadOutcome, Reloads, Trigger};
use crate::snapshot::{BuildError, Snapshot};
use crate::telemetry::access_log;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::trace::export::Exporter;
use crate::tls::{IdentityError, IdentityStore};
use apply::Running;
use listeners::RunningListener;
use services::ServiceTasks;

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

/// Where the configuration in force came from.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The file it was read from; `None` for an embedded configuration (`weir demo`),
    /// which cannot be reloaded.
    pub path: Option<PathBuf>,
    /// The SHA-256 of the file's text (of the configuration's JSON form when embedded).
    pub sha256: String,
}

impl ConfigSource {
    /// An embedded configuration, named by the hash of its JSON form.
    pub fn embedded(config: &Config) -> ConfigSource {
        let json = serde_json::to_vec(config).unwrap_or_default();
        ConfigSource {
            path: None,
            sha256: crate::config::sha256_hex(&json),
        }
    }
}

/// A running proxy.
#[derive(Debug)]
pub struct Server {
    /// Where the admin server listens.
    pub admin_address: SocketAddr,
    /// State shared with the admin server.
    pub state: Arc<AdminState>,
    reloads: Reloads,
    stop: watch::Sender<bool>,
    running: Arc<Mutex<Running>>,
    background: Vec<JoinHandle<()>>,
    access_log: Option<access_log::Writer>,
    exporter: Option<Exporter>,
}

impl Server {
    /// Builds an embedded configuration and starts serving it (it cannot be reloaded).
    pub async fn start(config: Config) -> Result<Server, StartError> {
        let source = ConfigSource::embedded(&config);
        Self::start_from(config, source).await
    }

    /// Builds the configuration read from `source` and starts serving it. With a file,
    /// SIGHUP (see [`Server::reload`]), `POST /reload` and changes to the file reload it.
    pub async fn start_from(config: Config, source: ConfigSource) -> Result<Server, StartError> {
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
        let (access_log, access_log_writer) = telemetry::start_access_log(&config, &metrics);
        let (span_sink, exporter) = telemetry::start_exporter(&config, &metrics);
        let tracer = telemetry::tracer(&config, span_sink.as_ref());
        let snapshot = Snapshot::build_with_identity(
            config,
            &metrics,
            access_log.clone(),
            identity.as_ref(),
            tracer,
        )
        .map_err(StartError::Build)?;
        let config = snapshot.config.clone();
        let shared = Arc::new(ArcSwap::new(snapshot.clone()));
        let (reloads, requests) = Reloads::channel();

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
        let state = Arc::new(AdminState {
            snapshot: shared.clone(),
            metrics,
            ready: false.into(),
            identity: identity.clone(),
            shutdown: watch::channel(false).0,
            reloads: Some(reloads.clone()),
            info: ArcSwap::from_pointee(ConfigInfo {
                sha256: source.sha256.clone(),
                source: source.path.clone(),
                loaded_at: SystemTime::now(),
                admin: admin_address,
                listeners: Vec::new(),
            }),
        });
        let (stop, stop_rx) = watch::channel(false);
        if let Some(identity) = &identity {
            identity.watch(stop_rx.clone());
        }
        let mut background = vec![tokio::spawn(admin::serve(
            admin_listener,
            state.clone(),
            stop_rx.clone(),
        ))];

        let mut sockets = Vec::new();
        for l in &config.listeners {
            sockets.push(bind(format!("listener {}", l.name), l.address).await?);
        }
        let mut running_listeners = Vec::new();
        for ((index, l), socket) in config.listeners.iter().enumerate().zip(sockets) {
            let policy = listeners::policy(l, identity.as_ref(), &state.metrics)
                .map_err(StartError::Build)?;
            running_listeners.push(RunningListener::start(
                l,
                socket,
                snapshot.listeners[index].clone(),
                policy,
            ));
        }
        let mut service_tasks = HashMap::new();
        for s in &config.services {
            if let Some(service) = snapshot.services.get(&s.name) {
                service_tasks.insert(
                    s.name.clone(),
                    ServiceTasks::start(&config, s, service, &stop_rx),
                );
            }
        }
        background.push(tokio::spawn(close_idle_connections(
            shared.clone(),
            stop_rx.clone(),
        )));
        let source_path = source.path.clone();
        let running = Arc::new(Mutex::new(Running::new(
            source,
            running_listeners,
            service_tasks,
            apply::Shared {
                state: state.clone(),
                identity,
                access_log,
                span_sink,
                stop: stop_rx.clone(),
            },
        )));
        running.lock().await.publish_info(SystemTime::now());
        background.push(tokio::spawn(apply::serve_reloads(
            running.clone(),
            requests,
            stop_rx.clone(),
            source_path,
        )));
        if let Some(watch) = running.lock().await.watch_source(reloads.clone(), stop_rx) {
            background.push(watch);
        }
        state.ready.store(true, Ordering::Release);
        tracing::info!(admin = %admin_address, "weir is ready");
        Ok(Server {
            admin_address,
            state,
            reloads,
            stop,
            running,
            background,
            access_log: access_log_writer,
            exporter,
        })
    }

    /// Reloads the configuration file (as SIGHUP does) and says how it went.
    pub async fn reload(&self, trigger: Trigger) -> ReloadOutcome {
        self.reloads.reload(trigger).await
    }

    /// Makes `/ready` fail while weir still serves (the drain period of a legacy sidecar):
    /// whatever routes by readiness stops sending new work.
    pub fn set_unready(&self) {
        self.state.ready.store(false, Ordering::Release);
    }

    /// Resolves when `POST /shutdown` asks for a drain (the caller then calls
    /// [`Server::shutdown`], as on SIGTERM).
    pub async fn shutdown_requested(&self) {
        let mut asked = self.state.shutdown.subscribe();
        let _ = asked.wait_for(|asked| *asked).await;
    }

    /// The address the named listener is bound to (its port resolved when configured as
    /// 0), in the configuration in force.
    pub fn listener_address(&self, name: &str) -> Option<SocketAddr> {
        self.state
            .info
            .load()
            .listeners
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
        let draining = self.running.lock().await.stop_listeners();
        let drained = tokio::time::timeout(grace, async {
            let mut all = true;
            for l in draining {
                all &= l.await.unwrap_or(false);
            }
            all
        })
        .await
        .unwrap_or(false);
        for task in self.background {
            task.abort();
        }
        self.running.lock().await.stop_services();
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
