//! DNS discovery: resolve a name every `refresh` and hand the addresses to the service.
//! A failed lookup keeps the last good set: a DNS hiccup must not empty a service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::upstream::Service;

/// Resolves `host:port` now and then every `refresh`, until `stop` turns true.
pub async fn run(
    service: Arc<Service>,
    host: String,
    port: u16,
    refresh: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut last: Vec<SocketAddr> = Vec::new();
    loop {
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => {
                let mut addrs: Vec<SocketAddr> = addrs.collect();
                addrs.sort();
                addrs.dedup();
                if addrs != last {
                    tracing::info!(service = %service.name, %host, endpoints = addrs.len(), "dns discovery updated endpoints");
                    let weighted: Vec<(SocketAddr, u32)> = addrs.iter().map(|&a| (a, 1)).collect();
                    service.set_endpoints(&weighted);
                    last = addrs;
                }
            }
            Err(e) => {
                tracing::warn!(service = %service.name, %host, error = %e, "dns lookup failed; keeping the last endpoints")
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(refresh) => {}
        }
    }
}
