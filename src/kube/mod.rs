//! Kubernetes: what weir needs to run inside a pod (manifest injection, iptables rules).

pub mod inject;
