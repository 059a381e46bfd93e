//! `weir init-iptables`: the nat rules that send a pod's TCP through weir without the
//! application knowing (Istio's `istio-iptables`, in weir's own chains).
//!
//! Decided first, then applied: [`script`] writes the `iptables-restore` text from the
//! options and from what `iptables-save` shows; [`backend`] picks iptables-nft or
//! iptables-legacy; [`apply`] runs the tools; [`command`] is the command line.

pub mod apply;
pub mod backend;
mod cidr;
pub mod command;
pub mod script;

pub use cidr::Cidr;
pub use script::Redirect;
