//! Applying a new configuration while traffic flows. One task owns what a reload changes
//! (the running listeners and the services' background tasks) and applies one reload at a
//! time:
//!
//! 1. read and validate the file exactly as `weir check` does, and refuse changes that need
//!    a restart (the admin address, the identity files, logging, the collector);
//! 2. build the new snapshot, keeping every service whose definition did not change (its
//!    endpoints, pools, breaker window and ejections live on);
//! 3. bind the sockets of new listeners and build every listener's policy;
//! 4. only then commit: swap the snapshot, swap routes and policy under kept listeners
//!    (their connections stay open), start new listeners, drain removed ones, start or stop
//!    service tasks, and drop the series of whatever left.
//!
//! Any failure before step 4 leaves the old configuration untouched and is counted in
//! `weir_config_reloads_total{result="failure"}`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::JoinHandle;

use super::listeners::{self, RunningListener};
use super::services::ServiceTasks;
use super::telemetry;
use super::ConfigSource;
use crate::admin::{AdminState, ConfigInfo};
use crate::config::{self, Config, Diagnostic, LoadError};
use crate::file_watch::{directory_of, DirectoryWatch};
use crate::proxy::listener::ListenerPolicy;
use crate::reload::{ReloadOutcome, ReloadRequest, Reloads, Trigger};
use crate::snapshot::Snapshot;
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::series::Live;
use crate::telemetry::trace::export::SpanSink;
use crate::tls::IdentityStore;

/// What every configuration shares: started once, kept across reloads.
#[derive(Debug)]
pub(super) struct Shared {
    /// The admin server's view (snapshot, metrics, `/config` facts).
    pub state: Arc<AdminState>,
    /// The workload identity, when configured.
    pub identity: Option<Arc<IdentityStore>>,
    /// The access-log writer's handle, when the access log is on.
    pub access_log: Option<AccessLog>,
    /// The span exporter's queue, when spans are exported.
    pub span_sink: Option<SpanSink>,
    /// Turns true when weir shuts down (service tasks stop on it).
    pub stop: watch::Receiver<bool>,
}

/// The listeners and service tasks of the configuration in force.
#[derive(Debug)]
pub(super) struct Running {
    source: ConfigSource,
    listeners: Vec<RunningListener>,
    /// Removed listeners still draining their connections.
    retired: Vec<JoinHandle<bool>>,
    services: HashMap<String, ServiceTasks>,
    /// The hash of the file refused last: a file watch does not try it again.
    refused: Option<String>,
    /// Set when shutdown stopped the listeners.
    stopping: bool,
    shared: Shared,
}

/// How each listener of a new configuration will be served.
enum Plan {
    /// By the running listener at this index (same name, address and protocol).
    Keep(usize),
    /// By a new accept loop on this freshly bound socket.
    Start(TcpListener),
}

impl Running {
    /// The configuration `source` is in force with these listeners and service tasks.
    pub fn new(
        source: ConfigSource,
        listeners: Vec<RunningListener>,
        services: HashMap<String, ServiceTasks>,
        shared: Shared,
    ) -> Running {
        Running {
            source,
            listeners,
            retired: Vec::new(),
            services,
            refused: None,
            stopping: false,
            shared,
        }
    }

    /// Publishes what `/config` says besides the configuration: its hash, file, load time
    /// and the addresses bound.
    pub fn publish_info(&self, loaded_at: SystemTime) {
        let state = &self.shared.state;
        let admin = state.info.load().admin;
        state.info.store(Arc::new(ConfigInfo {
            sha256: self.source.sha256.clone(),
            source: self.source.path.clone(),
            loaded_at,
            admin,
            listeners: self
                .listeners
                .iter()
                .map(|l| (l.config.name.clone(), l.address))
                .collect(),
        }));
    }

    /// Watches the configuration file's directory (a Kubernetes ConfigMap update swaps its
    /// `..data` symlink) and asks `reloads` for a reload when the file or a `..`-named
    /// entry changes. `None` without a file, or when the watch cannot be set up.
    pub fn watch_source(
        &self,
        reloads: Reloads,
        mut stop: watch::Receiver<bool>,
    ) -> Option<JoinHandle<()>> {
        let path = self.source.path.clone()?;
        let name = path.file_name()?.to_os_string();
        let relevant = move |changed: &Path| {
            changed
                .file_name()
                .is_some_and(|n| n == name.as_os_str() || n.to_string_lossy().starts_with(".."))
        };
        let mut changes =
            DirectoryWatch::start(&[directory_of(&path)], relevant, "configuration file")?;
        Some(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    changed = changes.changed() => if changed.is_none() { return },
                }
                reloads.reload(Trigger::FileChange).await;
            }
        }))
    }

    /// Stops every listener (at shutdown): the handles resolve as their connections drain.
    /// No reload is applied after this.
    pub fn stop_listeners(&mut self) -> Vec<JoinHandle<bool>> {
        self.stopping = true;
        let mut draining: Vec<_> = self.listeners.drain(..).map(|l| l.stop()).collect();
        draining.append(&mut self.retired);
        draining
    }

    /// Stops every service's background tasks (at shutdown).
    pub fn stop_services(&mut self) {
        self.services.clear();
    }

    /// Reloads the configuration file, whose content `read` holds (read by the caller,
    /// outside the lock shutdown also takes).
    pub async fn reload(
        &mut self,
        trigger: Trigger,
        read: Option<std::io::Result<Vec<u8>>>,
    ) -> ReloadOutcome {
        if self.stopping {
            return ReloadOutcome::Unavailable("weir is shutting down\n".into());
        }
        let (Some(path), Some(read)) = (self.source.path.clone(), read) else {
            return ReloadOutcome::Unavailable(
                "weir was started with an embedded configuration (weir demo), not a file; there is nothing to reload\n".into(),
            );
        };
        let name = path.display().to_string();
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(e) => {
                return self.refuse(
                    trigger,
                    None,
                    format!("{name}: cannot read the configuration: {e}"),
                )
            }
        };
        let sha256 = config::sha256_hex(&bytes);
        if trigger == Trigger::FileChange
            && (sha256 == self.source.sha256 || self.refused.as_ref() == Some(&sha256))
        {
            return ReloadOutcome::Unchanged;
        }
        let loaded = match config::load_bytes(&name, &bytes) {
            Ok(loaded) => loaded,
            Err(LoadError::Invalid(diagnostics)) => {
                return self.refuse(trigger, Some(sha256), lines(&diagnostics))
            }
            Err(e) => return self.refuse(trigger, Some(sha256), e.to_string()),
        };
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let text = String::from_utf8_lossy(&bytes);
        let current = self.shared.state.snapshot.load_full();
        let restart = needs_restart(&current.config, &loaded.config, &name, &text);
        if !restart.is_empty() {
            return self.refuse(trigger, Some(sha256), lines(&restart));
        }
        match self.apply(loaded.config, &current, &name, &text).await {
            Ok(summary) => {
                self.source = ConfigSource {
                    path: Some(path),
                    sha256,
                };
                self.refused = None;
                self.publish_info(SystemTime::now());
                self.shared.state.metrics.config_reloads.success.inc();
                tracing::info!(trigger = trigger.as_str(), changes = %summary.trim_end().replace('\n', "; "), "configuration reloaded");
                ReloadOutcome::Applied(summary)
            }
            Err(why) => self.refuse(trigger, Some(sha256), why),
        }
    }

    fn refuse(&mut self, trigger: Trigger, sha256: Option<String>, why: String) -> ReloadOutcome {
        self.refused = sha256;
        self.shared.state.metrics.config_reloads.failure.inc();
        tracing::error!(
            trigger = trigger.as_str(),
            "configuration refused; the old one stays in force:\n{why}"
        );
        ReloadOutcome::Refused(why)
    }

    /// Steps 2–4 of a reload (see the module documentation). `Err` before anything
    /// changed.
    async fn apply(
        &mut self,
        config: Config,
        current: &Snapshot,
        file: &str,
        text: &str,
    ) -> Result<String, String> {
        let prepared = self.prepare(config, current, file, text).await;
        let (snapshot, plans) = match prepared {
            Ok(prepared) => prepared,
            Err(why) => {
                self.undo_prepare(current);
                return Err(why);
            }
        };
        let shared = &self.shared;
        let metrics = &shared.state.metrics;

        // Commit: nothing below can fail.
        let mut summary = String::new();
        shared.state.snapshot.store(snapshot.clone());
        let mut old: Vec<Option<RunningListener>> = self.listeners.drain(..).map(Some).collect();
        for ((index, l), (plan, policy)) in snapshot.config.listeners.iter().enumerate().zip(plans)
        {
            let table = snapshot.listeners[index].clone();
            match plan {
                Plan::Keep(kept) => {
                    if let Some(mut running) = old[kept].take() {
                        if running.config != *l {
                            summary.push_str(&format!("listener {} updated\n", l.name));
                        }
                        running.update(l, table, policy);
                        self.listeners.push(running);
                    }
                }
                Plan::Start(socket) => {
                    let running = RunningListener::start(l, socket, table, policy);
                    summary.push_str(&format!(
                        "listener {} added on {}\n",
                        l.name, running.address
                    ));
                    self.listeners.push(running);
                }
            }
        }
        for removed in old.into_iter().flatten() {
            summary.push_str(&format!(
                "listener {} removed; its connections drain\n",
                removed.config.name
            ));
            self.retired.retain(|t| !t.is_finished());
            self.retired.push(removed.stop());
        }
        let mut before = std::mem::take(&mut self.services);
        for s in &snapshot.config.services {
            let Some(service) = snapshot.services.get(&s.name) else {
                continue;
            };
            let tasks = match before.remove(&s.name) {
                Some(tasks) if Arc::ptr_eq(&tasks.service, service) => tasks,
                replaced => {
                    summary.push_str(&match &replaced {
                        Some(old) => {
                            old.service.retire(Some(service));
                            format!("service {} rebuilt (its state starts afresh)\n", s.name)
                        }
                        None => format!("service {} added\n", s.name),
                    });
                    // Its discovery, sweeps and health checks stop before the new ones start.
                    drop(replaced);
                    service.forget_departed_endpoints();
                    ServiceTasks::start(&snapshot.config, s, service, &shared.stop)
                }
            };
            self.services.insert(s.name.clone(), tasks);
        }
        for (name, removed) in &before {
            removed.service.retire(None);
            summary.push_str(&format!("service {name} removed\n"));
        }
        drop(before);
        let live = Live::of(&snapshot.config);
        metrics.forget_removed(&live);
        for table in &current.listeners {
            table.retire_unless(&live);
        }
        if summary.is_empty() {
            summary.push_str("routes updated; listeners and services kept\n");
        }
        Ok(summary)
    }

    /// Steps 2 and 3: the new snapshot, and how each of its listeners will be served.
    /// Nothing in force changes, except the metric series and gauges the new services and
    /// listeners share with the running ones (see [`Running::undo_prepare`]).
    async fn prepare(
        &self,
        config: Config,
        current: &Snapshot,
        file: &str,
        text: &str,
    ) -> Result<(Arc<Snapshot>, Vec<(Plan, ListenerPolicy)>), String> {
        let shared = &self.shared;
        let metrics = &shared.state.metrics;
        let tracer = telemetry::tracer(&config, shared.span_sink.as_ref());
        let snapshot = Snapshot::build_reusing(
            config,
            metrics,
            shared.access_log.clone(),
            shared.identity.as_ref(),
            tracer,
            Some(current),
        )
        .map_err(|e| format!("{file}: cannot build the configuration: {e}"))?;
        let mut plans = Vec::new();
        for (index, l) in snapshot.config.listeners.iter().enumerate() {
            let policy = listeners::policy(l, shared.identity.as_ref(), metrics)
                .map_err(|e| format!("{file}: {e}"))?;
            let plan = match self.listeners.iter().position(|r| r.can_serve(l)) {
                Some(kept) => Plan::Keep(kept),
                None => Plan::Start(
                    RunningListener::bind(l)
                        .await
                        .map_err(|e| self.bind_error(file, text, index, l, e))?,
                ),
            };
            plans.push((plan, policy));
        }
        Ok((snapshot, plans))
    }

    /// After a refused [`Running::prepare`]: the series it created for things the running
    /// configuration does not have leave `/metrics`, and the running services write their
    /// endpoint counts and breaker states again over the fresh ones the new services wrote.
    fn undo_prepare(&self, current: &Snapshot) {
        self.shared
            .state
            .metrics
            .forget_removed(&Live::of(&current.config));
        for service in current.services.values() {
            service.forget_departed_endpoints();
            service.publish_gauges();
        }
    }

    /// Why a new listener's address could not be bound, as a diagnostic at the address.
    fn bind_error(
        &self,
        file: &str,
        text: &str,
        index: usize,
        listener: &config::Listener,
        error: std::io::Error,
    ) -> String {
        let held_by = self
            .listeners
            .iter()
            .find(|r| r.config.address == listener.address || r.address == listener.address);
        let message = match held_by {
            Some(r) => format!(
                "{} is held by listener {}, which this configuration removes or changes; a reload cannot hand a socket from one listener to another: keep that listener's name and protocol for this address, or restart weir",
                listener.address, r.config.name
            ),
            None => format!("cannot bind {}: {error}", listener.address),
        };
        let index = index.to_string();
        config::diagnostic_at(file, text, &["listeners", &index, "address"], message).to_string()
    }
}

/// Serves reload requests one at a time until weir shuts down. The file at `source` is
/// read for each request before the lock on `running` is taken, so a file system that hangs
/// cannot hold up shutdown.
pub(super) async fn serve_reloads(
    running: Arc<Mutex<Running>>,
    mut requests: mpsc::Receiver<ReloadRequest>,
    mut stop: watch::Receiver<bool>,
    source: Option<PathBuf>,
) {
    loop {
        let request = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return,
            request = requests.recv() => match request {
                Some(r) => r,
                None => return,
            },
        };
        let read = match &source {
            Some(path) => Some(read_file(path.clone()).await),
            None => None,
        };
        let outcome = running.lock().await.reload(request.trigger, read).await;
        let _ = request.reply.send(outcome);
    }
}

/// How long reading the configuration file may take.
const READ_LIMIT: Duration = Duration::from_secs(10);

/// The bytes of the configuration file, read on a blocking thread within [`READ_LIMIT`].
async fn read_file(path: PathBuf) -> std::io::Result<Vec<u8>> {
    let reading = tokio::task::spawn_blocking(move || config::read_bounded(&path));
    match tokio::time::timeout(READ_LIMIT, reading).await {
        Ok(Ok(read)) => read,
        Ok(Err(panicked)) => Err(std::io::Error::other(panicked)),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the file could not be read within 10 s",
        )),
    }
}

/// The sections a running weir cannot change: each one that differs is a diagnostic.
fn needs_restart(old: &Config, new: &Config, file: &str, text: &str) -> Vec<Diagnostic> {
    let otlp = |c: &Config| c.tracing.as_ref().and_then(|t| t.otlp.clone());
    let changed = [
        (old.admin != new.admin, &["admin"][..], "the admin server"),
        (
            old.identity != new.identity,
            &["identity"][..],
            "the identity files (their content is re-read on change; their paths are not)",
        ),
        (old.logging != new.logging, &["logging"][..], "logging"),
        (
            old.node != new.node,
            &["node"][..],
            "the node (it names exported spans)",
        ),
        (
            otlp(old) != otlp(new),
            &["tracing", "otlp"][..],
            "the trace collector (sampling and propagation may change)",
        ),
    ];
    changed
        .into_iter()
        .filter(|(differs, _, _)| *differs)
        .map(|(_, path, what)| {
            config::diagnostic_at(
                file,
                text,
                path,
                format!("{what} cannot change while weir runs; put the old value back to reload the rest, or restart weir to apply it"),
            )
        })
        .collect()
}

/// Diagnostics, one per line.
fn lines(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("{d}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Config {
        config::load_str("weir.yaml", text).expect("valid").config
    }

    const BASE: &str = "version: 1\nadmin:\n  address: 127.0.0.1:9901\nlisteners:\n  - name: l\n    address: 127.0.0.1:1\n    routes:\n      - name: r\n        backends: [{ service: s }]\nservices:\n  - { name: s, endpoints: [\"127.0.0.1:2\"] }\n";

    #[test]
    fn sections_a_running_weir_cannot_change_are_refused_at_their_place() {
        let old = load(BASE);
        let changed = BASE.replace("9901", "9902") + "logging:\n  level: debug\n";
        let new = load(&changed);
        let refused: Vec<String> = needs_restart(&old, &new, "weir.yaml", &changed)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(
            refused[0].starts_with("weir.yaml:2:1: admin: the admin server cannot change"),
            "{refused:?}"
        );
        assert!(
            refused[1].starts_with("weir.yaml:12:1: logging: logging cannot change"),
            "{refused:?}"
        );
        // Routes, services and listeners may change.
        let routes = BASE.replace("127.0.0.1:2", "127.0.0.1:3");
        assert!(needs_restart(&old, &load(&routes), "weir.yaml", &routes).is_empty());
    }

    #[test]
    fn diagnostics_are_placed_at_list_items_too() {
        let d = config::diagnostic_at(
            "weir.yaml",
            BASE,
            &["listeners", "0", "address"],
            "taken".into(),
        );
        assert_eq!(d.to_string(), "weir.yaml:6:5: listeners[0].address: taken");
        let missing = config::diagnostic_at("weir.yaml", BASE, &["tracing", "otlp"], "x".into());
        assert_eq!((missing.line, missing.col), (1, 1));
    }

    #[test]
    fn a_source_path_names_its_directory() {
        assert_eq!(directory_of(Path::new("weir.yaml")), PathBuf::from("."));
        assert_eq!(
            directory_of(Path::new("/etc/weir/weir.yaml")),
            PathBuf::from("/etc/weir")
        );
    }
}
