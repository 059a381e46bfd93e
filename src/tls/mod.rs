//! Mutual TLS between sidecars: this workload's identity (certificate, key and the trust
//! bundle that signs its peers) and the SPIFFE checks a peer's certificate must pass, and
//! the minting of a mesh CA and workload certificates (`weir certs`). rustls with the
//! aws-lc-rs provider, passed explicitly everywhere.
//!
//! Minting: [`spiffe`] (SPIFFE IDs and trust domains, validated in one place), [`mint`] (a
//! mesh CA and the workload certificates it signs, in memory), [`files`] (where they live on
//! disk, written whole, keys 0600), [`secret`] (a workload certificate as a Kubernetes
//! `kubernetes.io/tls` Secret), [`lifetime`] (lifetimes as text, `24h`, `10y`) and
//! [`command`] (the `weir certs` command line).

pub mod command;
pub mod files;
pub mod identity;
pub mod lifetime;
pub mod mint;
pub mod peer;
pub mod secret;
pub mod spiffe;
pub mod store;
pub mod stream;

pub use identity::{Identity, IdentityError};
pub use peer::spiffe_id;
pub use store::IdentityStore;

/// The one cryptographic provider weir uses (aws-lc-rs), passed to every rustls builder so
/// no process-wide default is needed and no second provider creeps in.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
