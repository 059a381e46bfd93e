//! Where a redirected connection was going: iptables' `REDIRECT` rewrites the destination
//! of the application's connection to weir's listener and keeps the original for
//! `getsockopt(SO_ORIGINAL_DST)`, which a transparent listener routes by.

use std::net::{IpAddr, SocketAddr};

use socket2::SockRef;
use tokio::net::TcpStream;

/// The destination `stream` had before iptables redirected it; its local address when it
/// was not redirected (a client that connected to the listener directly), or when the
/// kernel has no record (no conntrack entry).
pub fn original_destination(stream: &TcpStream) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    let socket = SockRef::from(stream);
    // An IPv4 client of a dual-stack (`[::]`) listener has an IPv4-mapped address, and its
    // NAT record is IPv4's.
    let ipv4 = match local.ip() {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    };
    let original = if ipv4 {
        socket.original_dst_v4()
    } else {
        socket.original_dst_v6()
    };
    match original.map(|address| address.as_socket()) {
        Ok(Some(original)) => Some(original),
        Ok(None) | Err(_) => {
            tracing::trace!(%local, "no original destination recorded; taking the local address");
            Some(local)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_that_was_not_redirected_keeps_its_local_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let _client = TcpStream::connect(address).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert_eq!(original_destination(&accepted), Some(address));
    }
}
