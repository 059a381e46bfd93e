//! Endpoint discovery. Static endpoints are set when a service is built; DNS refreshes
//! them in the background.

pub mod dns;
