//! Hostile input: clients and upstreams that send what they must not, or too much, or too
//! slowly.

mod client_faults;
mod framing;
mod slow_peers;
