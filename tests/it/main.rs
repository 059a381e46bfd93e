//! weir's integration tests: one binary, one module per area. Every test talks to real
//! sockets on 127.0.0.1 and real processes.

mod admin;
mod alerts;
mod balancing;
mod certs;
mod charts;
mod config_check;
mod demo;
mod explain;
mod grpc;
mod hostile;
mod hystrix;
mod import;
mod inject;
mod iptables;
mod kube_discovery;
mod layout;
mod lifecycle;
mod monitoring;
mod mtls;
mod netns;
mod observe;
mod pods;
mod proxy;
mod reload;
mod resilience;
mod streaming;
mod support;
mod tcp;
#[path = "../../src/test_support.rs"]
mod test_support;
mod tracing;
mod transparent;
mod websocket;
