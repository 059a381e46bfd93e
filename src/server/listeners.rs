//! The running listeners: each owns its socket's accept loop, and a reload swaps the routes
//! and policy under it without closing a connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{self, ListenerProtocol};
use crate::proxy::listener::{ListenerPolicy, ListenerSlot};
use crate::proxy::tcp::TcpForwarding;
use crate::proxy::tls_accept::InboundTls;
use crate::route::RouteTable;
use crate::snapshot::BuildError;
use crate::telemetry::metrics::Metrics;
use crate::tls::IdentityStore;

/// What a listener's connections are served by: routes (HTTP) or a forwarding (tcp).
#[derive(Debug)]
enum Slot {
    Http(Arc<ListenerSlot<RouteTable>>),
    Tcp(Arc<ListenerSlot<TcpForwarding>>),
}

/// One listener in force: its configuration, its bound address, its accept loop.
#[derive(Debug)]
pub(super) struct RunningListener {
    /// The configuration applied last.
    pub config: config::Listener,
    /// The address actually bound (the port resolved when the configuration says 0).
    pub address: SocketAddr,
    slot: Slot,
    stop: watch::Sender<bool>,
    task: JoinHandle<bool>,
}

/// How long a listener's connections may take to finish once it stops accepting: bounded
/// in practice by the shutdown's own grace period, or by a removed listener's clients.
const DRAIN: Duration = Duration::from_secs(3600);

impl RunningListener {
    /// Binds `listener`'s address.
    pub async fn bind(listener: &config::Listener) -> std::io::Result<TcpListener> {
        TcpListener::bind(listener.address).await
    }

    /// Starts accepting on `socket` for `config`, routed by `table`.
    pub fn start(
        config: &config::Listener,
        socket: TcpListener,
        table: Arc<RouteTable>,
        policy: ListenerPolicy,
    ) -> RunningListener {
        let address = socket.local_addr().unwrap_or(config.address);
        let (stop, stopped) = watch::channel(false);
        let (slot, task) = match config.protocol {
            ListenerProtocol::Http => {
                let slot = ListenerSlot::new(table, policy);
                let task = tokio::spawn(crate::proxy::listener::serve(
                    socket,
                    slot.clone(),
                    stopped,
                    DRAIN,
                ));
                (Slot::Http(slot), task)
            }
            ListenerProtocol::Tcp => {
                let forwarding = TcpForwarding::new(table, config.timeouts.idle);
                let slot = ListenerSlot::new(Arc::new(forwarding), policy);
                let task = tokio::spawn(crate::proxy::tcp::serve(
                    socket,
                    slot.clone(),
                    stopped,
                    DRAIN,
                ));
                (Slot::Tcp(slot), task)
            }
        };
        tracing::info!(listener = %config.name, %address, "listening");
        RunningListener {
            config: config.clone(),
            address,
            slot,
            stop,
            task,
        }
    }

    /// Whether `config` can be served by this listener's socket and accept loop (same
    /// address and protocol): a reload then swaps what it serves instead of rebinding.
    pub fn can_serve(&self, config: &config::Listener) -> bool {
        self.config.name == config.name
            && self.config.address == config.address
            && self.config.protocol == config.protocol
    }

    /// Serves `config` from now on: new requests are routed by `table`, new connections
    /// get `policy`; connections already open stay open, unless the listener's `tls`
    /// changed: its HTTP connections then drain and their clients reconnect under the new
    /// settings.
    pub fn update(
        &mut self,
        config: &config::Listener,
        table: Arc<RouteTable>,
        policy: ListenerPolicy,
    ) {
        match &self.slot {
            Slot::Http(slot) => slot.routing.store(table),
            Slot::Tcp(slot) => slot
                .routing
                .store(Arc::new(TcpForwarding::new(table, config.timeouts.idle))),
        }
        let tls_changed = self.config.tls != config.tls;
        match &self.slot {
            Slot::Http(slot) => {
                slot.policy.store(Arc::new(policy));
                if tls_changed {
                    slot.tls_changed.send_modify(|generation| *generation += 1);
                }
            }
            // A tcp connection is one tunnel: it keeps the decision of its handshake.
            Slot::Tcp(slot) => slot.policy.store(Arc::new(policy)),
        }
        self.config = config.clone();
    }

    /// Stops accepting; open connections drain (idle ones close at once). Resolves with
    /// whether every connection finished within the drain period.
    pub fn stop(self) -> JoinHandle<bool> {
        let _ = self.stop.send(true);
        self.task
    }
}

/// The policy of `listener`: its limits, timeouts and TLS (with `identity`).
pub(super) fn policy(
    listener: &config::Listener,
    identity: Option<&Arc<IdentityStore>>,
    metrics: &Metrics,
) -> Result<ListenerPolicy, BuildError> {
    let tls = InboundTls::new(listener, identity, metrics)
        .map_err(|e| BuildError(format!("listener {}: {e}", listener.name)))?;
    Ok(ListenerPolicy::new(listener, metrics).with_tls(tls))
}
