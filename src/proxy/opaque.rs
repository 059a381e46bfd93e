//! Forwarding a connection as bytes to a route's service: a tcp listener's connections, and
//! a transparent HTTP listener's connections that do not speak HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderMap;

use super::relay::{relay, TunnelEnd};
use crate::route::RouteTable;
use crate::upstream::Exchange;

/// Forwards `client` as bytes by route `route` of `table`: picks the backend by weight and
/// the endpoint by the service's balancer, connects (an exchange judges the connect for
/// outlier detection, holds the endpoint's in-flight count, and speaks mTLS for a service
/// with `tls`), and relays until the end, counting the connection in the table's `tcp`
/// counters.
pub async fn forward_opaque<C>(
    table: &RouteTable,
    route: usize,
    client: C,
    peer: &SocketAddr,
    idle: Duration,
) where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(chosen) = table.routes.get(route) else {
        return;
    };
    let Some(index) = chosen.pick_backend() else {
        return;
    };
    let service = &chosen.backends[index].service;
    let Some(endpoint) = service.pick(&HeaderMap::new()) else {
        tracing::debug!(client = %peer, service = %service.name, "no endpoint in rotation; connection closed");
        return;
    };
    let mut exchange = Exchange::request(service, endpoint);
    let stream = match exchange.connect().await {
        Ok(stream) => stream,
        Err(judged) => {
            tracing::debug!(client = %peer, service = %service.name, endpoint = %exchange.endpoint().label, ?judged, "could not connect; connection closed");
            return;
        }
    };
    let relayed = relay(client, stream.io, idle).await;
    if let Some(counters) = table.tcp.get(route).and_then(|r| r.get(index)) {
        counters.connections.inc();
        counters.upstream.inc_by(relayed.from_client);
        counters.downstream.inc_by(relayed.from_upstream);
    }
    match relayed.end {
        TunnelEnd::Closed => {}
        TunnelEnd::Idle => tracing::debug!(client = %peer, "tcp connection closed: idle"),
        TunnelEnd::Failed(e) => {
            tracing::debug!(client = %peer, error = %e, "tcp connection failed")
        }
    }
}
