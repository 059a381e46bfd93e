//! The stage a transparent listener adds before HTTP: a connection whose original
//! destination no route claims is relayed or refused ([`super::passthrough`]); a claimed one
//! that does not start with HTTP (a database, a cache: iptables sends all of a pod's TCP to
//! one port) is forwarded as bytes to the claiming route's service ([`super::detect`]);
//! the rest is served as HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::authorize::PeerDecision;
use super::connection::OpenConnection;
use super::detect::{detect, Detected, Prefixed, SILENT_CLIENT};
use super::opaque::forward_opaque;
use super::passthrough::relay_unclaimed;
use super::tls_accept::ClientStream;
use crate::route::matcher::Origin;
use crate::route::RouteTable;

/// What became of a transparent connection.
pub enum Diverted {
    /// It speaks HTTP to a claimed destination: serve it (its first bytes come again).
    Http(Prefixed<ClientStream>, OpenConnection),
    /// It was handed to a relay, or closed.
    Taken,
}

/// What a relay needs besides the connection: how long it may idle, and the listener's TLS
/// generation, whose change (a reload that edits `tls` or `allow`) ends it, as it drains
/// the listener's HTTP connections, so a revoked peer keeps no raw tunnel.
pub struct RelayLimits {
    /// A relay that moves no byte this long ends.
    pub idle: Duration,
    /// Changes when the listener's TLS settings do.
    pub tls_changes: watch::Receiver<u64>,
}

/// Decides how a connection to `destination`, past the listener's TLS (`peer` is what the
/// handshake said), is served by `table`. Relays run in tasks of their own, outside the
/// HTTP connection's timeouts (see [`RelayLimits`]).
pub async fn divert(
    mut stream: ClientStream,
    client: SocketAddr,
    destination: SocketAddr,
    table: Arc<RouteTable>,
    peer: Option<&PeerDecision>,
    limits: RelayLimits,
    open: OpenConnection,
) -> Diverted {
    let RelayLimits {
        idle,
        mut tls_changes,
    } = limits;
    let claimed = table.claims(destination);
    let prefix = if claimed {
        match detect(&mut stream, SILENT_CLIENT).await {
            Ok((Detected::Http, prefix)) => {
                return Diverted::Http(Prefixed::new(stream, prefix), open)
            }
            Ok((Detected::Opaque, prefix)) => prefix,
            Ok((Detected::Closed, _)) => return Diverted::Taken,
            Err(e) => {
                tracing::debug!(%client, error = %e, "connection failed before its first bytes");
                return Diverted::Taken;
            }
        }
    } else {
        Vec::new()
    };
    // Bytes: the listener's `allow` decides once, for the connection.
    if let Some(peer) = peer {
        peer.counter.inc();
        if !peer.allowed {
            tracing::debug!(%client, peer = ?peer.peer, "peer identity denied; connection closed");
            return Diverted::Taken;
        }
    }
    // Bytes to a claimed destination take the first route whose connection-level
    // conditions (destination, peer) hold and that needs no request to match: a route
    // that asks for a peer, a path or a header is not bypassed by not speaking HTTP.
    let route = if claimed {
        let origin = Origin {
            peer: peer.and_then(|p| p.peer.as_deref()),
            destination: Some(destination),
        };
        match table.for_bytes(&origin) {
            Some(route) => Some(route),
            None => {
                if let Some(unknown) = &table.unknown {
                    unknown.not_http.inc();
                }
                tracing::debug!(%client, %destination, "bytes that are not HTTP, and no route takes them without a request; connection closed");
                return Diverted::Taken;
            }
        }
    } else {
        None
    };
    let stream = Prefixed::new(stream, prefix);
    tokio::spawn(async move {
        let relayed = async {
            match (route, &table.unknown) {
                (Some(route), _) => {
                    forward_opaque(&table, route, stream, &client, idle).await;
                    drop(open);
                }
                (None, Some(unknown)) => {
                    relay_unclaimed(stream, client, destination, unknown, idle, open).await
                }
                (None, None) => {}
            }
        };
        tokio::select! {
            () = relayed => {}
            Ok(()) = tls_changes.changed() => {
                tracing::debug!(%client, "the listener's TLS settings changed; relay closed");
            }
        }
    });
    Diverted::Taken
}
