//! Running weir in Kubernetes: what a pod needs around the proxy itself (DESIGN §2):
//! manifest injection ([`inject`]) and the transparent-redirect rules of `weir init-iptables`
//! ([`iptables`]).

pub mod inject;
pub mod iptables;
