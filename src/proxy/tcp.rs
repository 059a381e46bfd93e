//! TCP listeners (`protocol: tcp`): every accepted connection is forwarded to an endpoint
//! of the service its route's split picks (the service's balancer, per connection), and
//! bytes are relayed both ways until both sides end, one fails, or nothing moves for the
//! listener's `timeouts.idle`. A half-closed side is passed on (its peer's write side is
//! shut), so a client that finishes its upload still gets its answer.
//!
//! What HTTP listeners enforce applies where it means something for bytes: mutual TLS in
//! front (the `allow` list closes a denied peer's connection, counted), `max_connections`,
//! the service's `connect_timeout`, `max_connections` and mTLS origination, and outlier
//! detection (a failed connect is a connect failure; a connection made is a success).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::accept::AcceptBackoff;
use super::connection::OpenConnection;
use super::listener::{ListenerPolicy, ListenerSlot};
use super::opaque::forward_opaque;
use super::original_dst::original_destination;
use super::passthrough::relay_unclaimed;
use super::tls_accept::ClientStream;
use crate::route::RouteTable;

/// A tcp listener's forwarding: its route (a transparent listener's: one per service that
/// claims destinations), with the counters of each route's backends in the table.
#[derive(Debug)]
pub struct TcpForwarding {
    table: Arc<RouteTable>,
    idle: Duration,
}

impl TcpForwarding {
    /// The forwarding of a tcp listener whose route table is `table`.
    pub fn new(table: Arc<RouteTable>, idle: Duration) -> Self {
        TcpForwarding { table, idle }
    }

    /// Forwards one client connection by its route (a transparent listener's: the one
    /// claiming `destination`; a destination none claims is relayed or refused as the
    /// listener's `unknown_destination` says).
    async fn forward(
        &self,
        client: ClientStream,
        peer: &SocketAddr,
        destination: Option<SocketAddr>,
        open: OpenConnection,
    ) {
        let route = match (destination, &self.table.unknown) {
            (Some(destination), Some(unknown)) => match self.table.claiming(destination) {
                Some(index) => index,
                None => {
                    relay_unclaimed(client, *peer, destination, unknown, self.idle, open).await;
                    return;
                }
            },
            _ => 0,
        };
        forward_opaque(&self.table, route, client, peer, self.idle).await;
        drop(open);
    }
}

/// Accepts connections on `listener` and forwards them until `stop` turns true, then waits
/// up to `grace` for open connections to end. Returns whether they all did.
pub async fn serve(
    listener: TcpListener,
    slot: Arc<ListenerSlot<TcpForwarding>>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> bool {
    let open = Arc::new(AtomicU32::new(0));
    let (closed_tx, mut closed) = watch::channel(());
    let mut backoff = AcceptBackoff::default();
    let mut policy = slot.policy.load_full();
    while let Some((stream, client, counted)) = policy
        .next_connection(&listener, &mut stop, &mut backoff, &open)
        .await
    {
        // A reload may have replaced the routing or the policy while the loop waited; the
        // connection keeps what is in force now.
        policy = slot.policy.load_full();
        let forwarding = slot.routing.load_full();
        let policy = policy.clone();
        let closed_tx = closed_tx.clone();
        // A transparent listener routes by where the client was going.
        let destination = forwarding
            .table
            .unknown
            .as_ref()
            .and_then(|_| original_destination(&stream));
        tokio::spawn(async move {
            if let Some(client_stream) = meet(stream, &client, &policy).await {
                forwarding
                    .forward(client_stream, &client, destination, counted)
                    .await;
            }
            let _ = closed_tx.send(());
        });
    }
    drop(listener);
    let drained = async {
        while open.load(Relaxed) > 0 {
            if closed.changed().await.is_err() {
                break;
            }
        }
    };
    tokio::time::timeout(grace, drained).await.is_ok()
}

/// How long a permissive tcp listener waits for a client's first byte before taking it for
/// plaintext: some protocols (SMTP, MySQL, FTP) wait for the server to speak first.
const PLAINTEXT_AFTER: Duration = Duration::from_secs(1);

/// The listener's TLS and `allow` list, when it has them; `None` when the client is not to
/// be served. The handshake must finish within `first_byte` (a plain TCP client may wait
/// for the server to speak first, so plaintext has no such bound).
async fn meet(
    stream: TcpStream,
    client: &SocketAddr,
    policy: &ListenerPolicy,
) -> Option<ClientStream> {
    let Some(tls) = &policy.tls else {
        return Some(ClientStream::Plain(stream));
    };
    let accepted = tokio::time::timeout(
        policy.timeouts.first_byte,
        tls.accept(stream, Some(PLAINTEXT_AFTER)),
    )
    .await;
    let (stream, peer) = match accepted {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(e)) => {
            tracing::debug!(%client, error = %e.0, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%client, "TLS handshake not finished within first_byte");
            return None;
        }
    };
    peer.counter.inc();
    if !peer.allowed {
        tracing::debug!(%client, peer = ?peer.peer, listener = %policy.name, "peer identity denied; connection closed");
        return None;
    }
    Some(stream)
}
