//! Running weir in Kubernetes: what a pod needs around the proxy itself (DESIGN §2). Today
//! the transparent-redirect rules of `weir init-iptables` ([`iptables`]).

pub mod iptables;
