//! Firebreak: an edge agent that watches server-room battery rooms for fire and power risk
//! and fails services over (DNS, load balancers, webhooks) while there is still power.
#![forbid(unsafe_code)]

pub mod agent;
pub mod api;
pub mod assets;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod detect;
pub mod dns;
pub mod events;
pub mod feeds;
pub mod incident;
pub mod journal;
pub mod logging;
pub mod mqtt_topic;
pub mod names;
pub mod ops;
pub mod probe;
pub mod replay;
pub mod runbook;
pub mod sinks;
pub mod sources;
pub mod staged;
pub mod systemd;
