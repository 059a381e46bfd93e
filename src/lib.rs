//! weir: a service-mesh sidecar proxy.
#![forbid(unsafe_code)]

pub mod config;
