//! A transparent listener's connections to destinations no route claims: relayed byte for
//! byte to where the application sent them (`unknown_destination: passthrough`), or closed
//! (`refuse`). Nothing is parsed, so TLS the application makes itself, and protocols weir
//! does not speak, pass as they are.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::connection::OpenConnection;
use super::relay::{relay, TunnelEnd};
use crate::route::unknown::UnknownDestinations;

/// How long a relayed connection may take to connect (Istio's passthrough default).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Relays `client` (already past the listener's TLS, if any) to where `unknown` sends
/// connections for `destination`, or closes it and counts the refusal. `open` is the
/// connection's place among its listener's open connections, held until the relay ends.
pub async fn relay_unclaimed<C>(
    client: C,
    peer: SocketAddr,
    destination: SocketAddr,
    unknown: &UnknownDestinations,
    idle: Duration,
    open: OpenConnection,
) where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let Some(target) = unknown.target(destination) else {
        unknown.refused.inc();
        tracing::debug!(client = %peer, %destination, "no route claims the original destination; connection closed");
        return;
    };
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(e)) => {
            tracing::debug!(client = %peer, %target, error = %e, "passthrough connect failed; connection closed");
            return;
        }
        Err(_) => {
            tracing::debug!(client = %peer, %target, "passthrough connect timed out; connection closed");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    unknown.relayed.inc();
    let relayed = relay(client, upstream, idle).await;
    unknown.bytes_up.inc_by(relayed.from_client);
    unknown.bytes_down.inc_by(relayed.from_upstream);
    if let TunnelEnd::Failed(e) = relayed.end {
        tracing::debug!(client = %peer, %target, error = %e, "passthrough connection failed");
    }
    drop(open);
}
