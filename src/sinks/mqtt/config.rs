//! The keys of `[telemetry.mqtt]`, their validation and the built settings.
//! Configuration layer: imports only `config` helpers.

use crate::config::collect::Collector;
use serde::Deserialize;

/// `[telemetry.mqtt]` as written.
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    /// The MQTT source whose broker gets the telemetry.
    pub source: Option<String>,
    /// Topic prefix. Default `firebreak/<agent name>`.
    pub prefix: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TelemetryMqtt {
    /// Index of the MQTT source in `Config::sources`.
    pub source: usize,
    pub prefix: String,
}

/// Checks `[telemetry.mqtt]` (at `p`); `source` is its `source` key already resolved to an
/// MQTT source (its problems reported by the caller, which knows the sources).
pub fn validate(
    c: &mut Collector,
    p: &str,
    m: &Raw,
    source: Option<usize>,
    agent: &str,
) -> Option<TelemetryMqtt> {
    let prefix = m
        .prefix
        .clone()
        .unwrap_or_else(|| format!("firebreak/{agent}"));
    if prefix.contains(['+', '#']) || prefix.ends_with('/') {
        c.err(
            format!("{p}.prefix"),
            "must not contain wildcards or end with '/'",
        );
    }
    Some(TelemetryMqtt {
        source: source?,
        prefix,
    })
}
