//! Where the agent's telemetry goes.

pub mod prometheus;
