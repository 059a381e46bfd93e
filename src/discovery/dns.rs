//! DNS discovery: resolve a name every `refresh` and deliver the addresses to the service
//! over a channel. A failed lookup keeps the last good set: a DNS hiccup must not empty a
//! service.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;

/// Resolves `host:port` now and then every `refresh`, sending each new set of addresses
/// (weight 1 each) on `endpoints`, until `stop` turns true or nobody listens. `service`
/// names the service in logs.
pub async fn run(
    service: String,
    host: String,
    port: u16,
    refresh: Duration,
    endpoints: watch::Sender<Vec<(SocketAddr, u32)>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last: Vec<SocketAddr> = Vec::new();
    loop {
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => {
                let mut addrs: Vec<SocketAddr> = addrs.collect();
                if addrs.is_empty() {
                    // The service empties only when its source says so on purpose; an empty
                    // answer is treated as a failed lookup.
                    tracing::warn!(%service, %host, "dns lookup found no address; keeping the last endpoints");
                    addrs = last.clone();
                }
                addrs.sort();
                addrs.dedup();
                if addrs != last {
                    tracing::info!(%service, %host, endpoints = addrs.len(), "dns discovery updated endpoints");
                    if endpoints
                        .send(addrs.iter().map(|&a| (a, 1)).collect())
                        .is_err()
                    {
                        return;
                    }
                    last = addrs;
                }
            }
            Err(e) => {
                tracing::warn!(%service, %host, error = %e, "dns lookup failed; keeping the last endpoints")
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(refresh) => {}
        }
    }
}
