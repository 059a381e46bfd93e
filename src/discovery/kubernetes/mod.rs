//! Kubernetes discovery: watch the EndpointSlices of a Service and deliver its usable
//! endpoints to the weir service over a channel, as DNS discovery does. The API server
//! going away keeps the last good set: an API hiccup must not empty a service; only the
//! API saying that no endpoint is usable does.
//!
//! [`kubeconfig`] finds the API server, [`client`] asks it, [`watch`] speaks list/watch,
//! [`slices`] turns slices into addresses, [`backoff`] paces retries.

pub mod backoff;
pub mod client;
pub mod cluster_ip;
pub mod kubeconfig;
pub mod slices;
pub mod watch;

use std::net::SocketAddr;

use tokio::sync::watch as channel;

use self::backoff::Backoff;
use self::watch::{SliceState, SliceWatch, WatchError};
use crate::config::KubePort;

/// What to watch: a Kubernetes Service, its namespace and the port of its endpoints.
#[derive(Debug, Clone)]
pub struct Target {
    /// The weir service the endpoints are for (named in logs).
    pub weir_service: String,
    /// The Kubernetes Service whose slices are watched.
    pub service: String,
    /// Its namespace.
    pub namespace: String,
    /// The port of its endpoints.
    pub port: KubePort,
}

/// Watches `target`'s EndpointSlices and sends each new set of usable endpoints (weight 1
/// each) on `endpoints`, until `stop` turns true or nobody listens.
pub async fn run(
    target: Target,
    endpoints: channel::Sender<Vec<(SocketAddr, u32)>>,
    mut stop: channel::Receiver<bool>,
) {
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        _ = discover(target, endpoints) => {}
    }
}

/// The list/watch loop: list, watch from the listed version, watch again when the server
/// ends the stream, list again on `410 Gone`, pause with [`Backoff`] after failures.
async fn discover(target: Target, endpoints: channel::Sender<Vec<(SocketAddr, u32)>>) {
    let mut backoff = Backoff::default();
    let api = loop {
        match kubeconfig::infer() {
            Ok(api) => break api,
            Err(e) => {
                let pause = backoff::jittered(backoff.after_failure());
                tracing::warn!(service = %target.weir_service, error = %e, retry_in = ?pause, "kubernetes discovery has no API server");
                tokio::time::sleep(pause).await;
            }
        }
    };
    let slices = SliceWatch::new(api, &target.namespace, &target.service);
    let mut publisher = Publisher::new(target, endpoints);
    let mut state = SliceState::default();
    // Whether a watch has delivered an event since the last list: a `410 Gone` right after a
    // list is paced, so a server that expires what it just listed is not asked in a loop.
    let mut event_since_list = true;
    while !publisher.endpoints.is_closed() {
        let failure = if state.resource_version.is_none() {
            match slices.list(&mut state).await {
                Ok(()) => {
                    event_since_list = false;
                    publisher.publish(&state);
                    continue;
                }
                // Listing has no version to expire: a 410 there is an error like any other.
                Err(e) => WatchError::Failed(e.to_string()),
            }
        } else {
            let watched = slices
                .watch(&mut state, |s| {
                    event_since_list = true;
                    backoff.reset();
                    publisher.publish(s);
                })
                .await;
            match watched {
                Ok(events) if events > 0 => continue,
                // The server ended a quiet watch (no bookmark either): watch again, paced
                // like a failure so a server that closes every watch is not hammered.
                Ok(_) => {
                    let pause = backoff::jittered(backoff.after_failure());
                    tracing::debug!(service = %publisher.target.weir_service, retry_in = ?pause, "endpointslice watch ended without an event");
                    tokio::time::sleep(pause).await;
                    continue;
                }
                Err(e) => e,
            }
        };
        let t = &publisher.target;
        match failure {
            WatchError::Gone => {
                tracing::info!(service = %t.weir_service, kubernetes_service = %t.service, "endpointslice watch expired (410 Gone); listing again");
                state.resource_version = None;
                if !event_since_list {
                    tokio::time::sleep(backoff::jittered(backoff.after_failure())).await;
                }
            }
            WatchError::Failed(why) => {
                let pause = backoff::jittered(backoff.after_failure());
                tracing::warn!(service = %t.weir_service, kubernetes_service = %t.service, namespace = %t.namespace, error = %why, retry_in = ?pause, "endpointslice list/watch failed; keeping the last endpoints");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Sends the endpoint set when it changes, and says why slices contribute nothing.
struct Publisher {
    target: Target,
    endpoints: channel::Sender<Vec<(SocketAddr, u32)>>,
    /// What was sent last; `None` before the first list.
    last: Option<Vec<SocketAddr>>,
    /// Slices without the wanted port, as last warned about.
    without_port: Vec<String>,
}

impl Publisher {
    fn new(target: Target, endpoints: channel::Sender<Vec<(SocketAddr, u32)>>) -> Self {
        Publisher {
            target,
            endpoints,
            last: None,
            without_port: Vec::new(),
        }
    }

    /// Sends the set `state` gives when it differs from the last one sent. An empty set is
    /// sent too: the API said the Service has no usable endpoint (errors never get here).
    fn publish(&mut self, state: &SliceState) {
        let t = &self.target;
        let without_port = slices::slices_without_port(&state.slices, &t.port);
        if without_port != self.without_port && !without_port.is_empty() {
            tracing::warn!(service = %t.weir_service, kubernetes_service = %t.service, port = ?t.port, slices = ?without_port, "endpointslices without the configured port contribute no endpoints; name the port (`port: NAME`) or give its target port number");
        }
        self.without_port = without_port;
        let set = slices::endpoint_set(&state.slices, &t.port);
        if self.last.as_ref() == Some(&set) {
            return;
        }
        if set.is_empty() {
            tracing::warn!(service = %t.weir_service, kubernetes_service = %t.service, namespace = %t.namespace, slices = state.slices.len(), "the Kubernetes Service has no ready or serving endpoint; the service has none");
        } else {
            tracing::info!(service = %t.weir_service, kubernetes_service = %t.service, endpoints = set.len(), "kubernetes discovery updated endpoints");
        }
        let _ = self.endpoints.send(set.iter().map(|&a| (a, 1)).collect());
        self.last = Some(set);
    }
}
