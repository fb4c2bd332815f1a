//! Telemetry out: everything the agent sends elsewhere, behind bounded channels.

pub mod influxdb;
pub mod mqtt;
pub mod prometheus;
