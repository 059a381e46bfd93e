//! weir: a service-mesh sidecar proxy.
//!
//! The request path, left to right as in DESIGN §1: [`proxy`] (listeners, request phases)
//! → [`route`] (matching, weighted split) → [`upstream`] (services, balancers, pools) →
//! [`discovery`]. [`config`] is plain data; [`telemetry`] observes and never calls back.
#![forbid(unsafe_code)]

pub mod admin;
pub mod alerts;
pub mod body;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod error;
pub mod explain;
pub mod file_watch;
pub mod headers;
pub mod import;
pub mod kube;
pub mod logging;
pub mod proxy;
pub mod rand;
pub mod reload;
pub mod route;
pub mod server;
pub mod snapshot;
pub mod stall;
pub mod telemetry;
#[cfg(test)]
mod test_support;
pub mod tls;
pub mod upstream;
