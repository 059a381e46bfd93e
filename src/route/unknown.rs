//! A transparent listener's traffic to destinations no route claims: where it is relayed
//! (`passthrough`) or that it is closed (`refuse`), and the counters that say so.

use std::net::{Ipv4Addr, SocketAddr};

use prometheus_client::metrics::counter::Counter;

use crate::config::{self, Direction, UnknownDestination};
use crate::telemetry::metrics::{DownstreamErrorLabels, Metrics, TcpBytesLabels, TcpLabels};
use crate::telemetry::series::NONE;

/// What one transparent listener does with connections no route claims, with its metric
/// handles resolved.
#[derive(Debug)]
pub struct UnknownDestinations {
    /// Relay or close.
    pub policy: UnknownDestination,
    direction: Direction,
    /// The listener's own address: a connection that was not redirected has it as its
    /// destination, and relaying it there would loop.
    listener: SocketAddr,
    /// `weir_tcp_connections_total{listener, service="none"}`: connections relayed.
    pub relayed: Counter,
    /// `weir_tcp_bytes_total{listener, service="none", direction="upstream"}`.
    pub bytes_up: Counter,
    /// `weir_tcp_bytes_total{listener, service="none", direction="downstream"}`.
    pub bytes_down: Counter,
    /// `weir_downstream_errors_total{listener, kind="unknown_destination"}`: connections
    /// closed because nothing claims their destination (or relaying would loop).
    pub refused: Counter,
    /// `weir_downstream_errors_total{listener, kind="not_http"}`: connections to a claimed
    /// destination that do not speak HTTP, closed because every route claiming it needs a
    /// request to match (a path, a header, a peer the client is not).
    pub not_http: Counter,
    /// weir's own ports (every listener's and the admin server's): traffic relayed to them
    /// on 127.0.0.1 would reach weir's loopback listeners from outside the pod.
    reserved: Vec<u16>,
}

impl UnknownDestinations {
    /// The handling of `listener` (which must be transparent).
    pub fn new(listener: &config::Listener, metrics: &Metrics) -> Self {
        let bytes = |direction: &str| {
            metrics.tcp_bytes.get_or_create_owned(&TcpBytesLabels {
                listener: listener.name.clone(),
                service: NONE.to_string(),
                direction: direction.to_string(),
            })
        };
        UnknownDestinations {
            policy: listener.unknown_destination,
            direction: listener.direction,
            listener: listener.address,
            relayed: metrics.tcp_connections.get_or_create_owned(&TcpLabels {
                listener: listener.name.clone(),
                service: NONE.to_string(),
            }),
            bytes_up: bytes("upstream"),
            bytes_down: bytes("downstream"),
            refused: metrics
                .downstream_errors
                .get_or_create_owned(&DownstreamErrorLabels {
                    listener: listener.name.clone(),
                    kind: "unknown_destination".to_string(),
                }),
            not_http: metrics
                .downstream_errors
                .get_or_create_owned(&DownstreamErrorLabels {
                    listener: listener.name.clone(),
                    kind: "not_http".to_string(),
                }),
            reserved: vec![listener.address.port()],
        }
    }

    /// Never relays to `ports` (weir's own: its listeners' and admin server's).
    pub fn reserve(&mut self, ports: impl IntoIterator<Item = u16>) {
        self.reserved.extend(ports);
    }

    /// Where a connection to `destination` is relayed, or `None` when it is to be closed:
    /// outbound, the destination itself; inbound (traffic for the application beside
    /// weir), the same port on 127.0.0.1. A destination that is this listener itself (the
    /// connection was not redirected) is closed rather than relayed back to weir.
    pub fn target(&self, destination: SocketAddr) -> Option<SocketAddr> {
        if self.policy == UnknownDestination::Refuse {
            return None;
        }
        let target = match self.direction {
            Direction::Outbound => destination,
            Direction::Inbound => SocketAddr::from((Ipv4Addr::LOCALHOST, destination.port())),
        };
        // Relaying to weir's own ports would loop (this listener), or, inbound, hand a
        // caller from outside the pod weir's loopback-only listeners and admin server.
        let to_weir = self.reserved.contains(&target.port())
            && (target.ip().is_loopback()
                || target.ip() == self.listener.ip()
                || self.listener.ip().is_unspecified() && destination == target);
        (!to_weir).then_some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(direction: &str, policy: &str) -> config::Listener {
        let text = format!(
            "version: 1\nlisteners:\n  - name: l\n    address: 127.0.0.1:15001\n    transparent: true\n    direction: {direction}\n    unknown_destination: {policy}\nservices:\n  - {{ name: s, endpoints: [\"127.0.0.1:2\"] }}\n"
        );
        crate::config::load_str("t.yaml", &text)
            .expect("valid")
            .config
            .listeners
            .remove(0)
    }

    #[test]
    fn outbound_passthrough_relays_to_the_destination_itself() {
        let u = UnknownDestinations::new(&listener("outbound", "passthrough"), &Metrics::new());
        let d: SocketAddr = "198.51.100.9:443".parse().unwrap();
        assert_eq!(u.target(d), Some(d));
    }

    #[test]
    fn inbound_passthrough_relays_to_the_port_on_loopback() {
        let u = UnknownDestinations::new(&listener("inbound", "passthrough"), &Metrics::new());
        assert_eq!(
            u.target("198.51.100.9:9090".parse().unwrap()),
            Some("127.0.0.1:9090".parse().unwrap())
        );
    }

    #[test]
    fn inbound_never_relays_to_weirs_own_loopback_ports() {
        let mut u = UnknownDestinations::new(&listener("inbound", "passthrough"), &Metrics::new());
        u.reserve([15080, 9901]);
        for port in [15080, 9901] {
            let d = SocketAddr::from(([198, 51, 100, 9], port));
            assert_eq!(u.target(d), None, "port {port} is weir's");
        }
        assert_eq!(
            u.target("198.51.100.9:8080".parse().unwrap()),
            Some("127.0.0.1:8080".parse().unwrap())
        );
    }

    #[test]
    fn refuse_closes_and_a_connection_to_the_listener_itself_never_loops() {
        let u = UnknownDestinations::new(&listener("outbound", "refuse"), &Metrics::new());
        assert_eq!(u.target("198.51.100.9:443".parse().unwrap()), None);
        let u = UnknownDestinations::new(&listener("outbound", "passthrough"), &Metrics::new());
        assert_eq!(u.target("127.0.0.1:15001".parse().unwrap()), None);
        let u = UnknownDestinations::new(&listener("inbound", "passthrough"), &Metrics::new());
        assert_eq!(
            u.target("198.51.100.9:15001".parse().unwrap()),
            None,
            "inbound to the listener's port would come back to weir"
        );
    }
}
