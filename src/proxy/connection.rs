//! One accepted downstream connection: what every request on it shares (its listener's
//! route table, the client, the slow-head clock).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::HeaderValue;

use super::authorize::PeerDecision;
use super::client_timeouts::ClientClock;
use crate::headers::Downstream;
use crate::route::matcher::Origin;
use crate::route::RouteTable;

/// What every request on one downstream connection shares.
#[derive(Debug)]
pub struct Connection {
    /// The routes of the listener that accepted the connection: each request is routed by
    /// the table in force when it starts (a reload changes what the next request sees, never a request
    /// halfway through).
    pub routes: Arc<ArcSwap<RouteTable>>,
    /// The client's address.
    pub client: SocketAddr,
    /// What requests forwarded upstream say about the client (`x-forwarded-for`, `-proto`,
    /// `-client-cert`), worked out once per connection.
    pub downstream: Downstream,
    /// Times request heads against the slow-head limit.
    pub clock: Arc<ClientClock>,
    /// A request or response body that moves no byte this long is ended (the listener's
    /// `timeouts.stream_idle`).
    pub stream_idle: Duration,
    /// The client's address as the access log writes it, formatted once per connection;
    /// `None` when the listener writes no access log.
    pub client_text: Option<Box<str>>,
    /// The connection's place among its listener's open connections, given back when the
    /// last request (or tunnel) on it is done.
    _open: Option<OpenConnection>,
    /// On a listener with TLS: the peer's identity and whether its `allow` list lets it in.
    pub peer: Option<PeerDecision>,
    /// On a transparent listener: where the client sent the connection before iptables
    /// redirected it to weir (routes claim destinations with `match.destination`).
    pub destination: Option<SocketAddr>,
}

/// Counts a connection among its listener's open ones while it lives.
#[derive(Debug)]
pub struct OpenConnection(Arc<AtomicU32>);

impl OpenConnection {
    /// Counts one more connection in `open`.
    pub fn new(open: &Arc<AtomicU32>) -> Self {
        open.fetch_add(1, Relaxed);
        OpenConnection(open.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl<'a> Origin<'a> {
    /// What `conn` says about its requests' origin, for route matching.
    pub fn of(conn: &'a Connection) -> Self {
        Origin {
            peer: conn.peer.as_ref().and_then(|p| p.peer.as_deref()),
            destination: conn.destination,
        }
    }
}

impl Connection {
    /// State for a newly accepted connection.
    pub fn new(
        routes: Arc<ArcSwap<RouteTable>>,
        client: SocketAddr,
        clock: Arc<ClientClock>,
        stream_idle: Duration,
    ) -> Self {
        let client_ip = HeaderValue::from_str(&client.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        let client_text = routes
            .load()
            .access_log
            .as_ref()
            .map(|_| client.to_string().into_boxed_str());
        Connection {
            routes,
            client,
            downstream: Downstream::new(client_ip, None),
            clock,
            stream_idle,
            client_text,
            _open: None,
            peer: None,
            destination: None,
        }
    }

    /// Notes the peer's identity and the listener's decision on it.
    pub fn with_peer(mut self, peer: Option<PeerDecision>) -> Self {
        let identity = peer.as_ref().and_then(|p| p.peer.as_deref());
        self.downstream = Downstream::new(self.downstream.client_ip.clone(), identity);
        self.peer = peer;
        self
    }

    /// Notes the connection's original destination (a transparent listener's).
    pub fn with_destination(mut self, destination: Option<SocketAddr>) -> Self {
        self.destination = destination;
        self
    }

    /// Holds the connection's place among its listener's open connections.
    pub fn counted(mut self, open: OpenConnection) -> Self {
        self._open = Some(open);
        self
    }
}
