//! Network UPS Tools: a UPS read through `upsd`.

pub mod client;
pub mod config;
pub mod proto;
