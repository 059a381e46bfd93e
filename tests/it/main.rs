//! weir's integration tests: one binary, one module per area. Every test talks to real
//! sockets on 127.0.0.1 and real processes.

mod config_check;
mod support;
mod proxy;
mod balancing;
