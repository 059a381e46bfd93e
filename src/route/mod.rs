//! Routing: which route a request takes and which weighted backend serves it.

pub mod fault;
pub mod matcher;
pub mod mirror;
pub mod mismatch;
pub mod replay;
pub mod retry;
pub mod table;
pub mod unknown;

#[cfg(test)]
mod table_proptest;

pub use table::{Route, RouteBackend, RouteTable};
