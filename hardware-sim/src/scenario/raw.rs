//! The scenario file as written (serde, unknown keys rejected). Durations, names and
//! enums stay text here so that validation can report every bad one with its path.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) scenario: RawHeader,
    #[serde(default)]
    pub(super) devices: Vec<RawDevice>,
    pub(super) truth: Option<RawTruth>,
    pub(super) room: Option<RawRoom>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoom {
    pub(super) ambient: f64,
    #[serde(default)]
    pub(super) battery_heat: f64,
    pub(super) hvac_fails_at: Option<String>,
    pub(super) hvac_drift: Option<f64>,
    pub(super) offgas_at: Option<String>,
    pub(super) offgas_rate: Option<f64>,
    pub(super) venting_at: Option<String>,
    pub(super) runaway_at: Option<String>,
    pub(super) charging_stops_at: Option<String>,
    pub(super) runaway_air_rise: Option<f64>,
    #[serde(default)]
    pub(super) ups_in_room: Vec<String>,
    pub(super) ups_lost_after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTruth {
    pub(super) kind: String,
    pub(super) failover_expected: bool,
    pub(super) power_cut_at: Option<String>,
    pub(super) failover_by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeader {
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: String,
    pub(super) duration: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevice {
    pub(super) name: String,
    pub(super) protocol: Option<String>,
    pub(super) listen: Option<String>,
    pub(super) unit: Option<i64>,
    #[serde(default)]
    pub(super) registers: Vec<RawRegister>,
    #[serde(default)]
    pub(super) events: Vec<RawEvent>,
    /// MQTT only: where the JSON payload goes.
    pub(super) topic: Option<String>,
    /// MQTT only: sim time between publishes (default 1s).
    pub(super) every: Option<String>,
    /// MQTT only: a device model that derives fields (`asd`).
    pub(super) model: Option<String>,
    /// MQTT only: the payload's keys.
    #[serde(default)]
    pub(super) fields: Vec<RawField>,
    /// Modbus RTU only: the serial device (e.g. one end of a socat pty pair).
    pub(super) serial: Option<String>,
    /// Modbus RTU only: baud rate (default 19200).
    pub(super) baud: Option<u32>,
    /// Set by the room expansion: a UPS in the room of a closed-loop scenario, lost (or
    /// not) as the run decides.
    #[serde(skip)]
    pub(super) room_ups: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawField {
    pub(super) signal: String,
    #[serde(default)]
    pub(super) timeline: Vec<RawSegment>,
    /// Set by the room expansion: the role the field follows.
    #[serde(skip)]
    pub(super) follows: Option<crate::room::Role>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegister {
    pub(super) signal: String,
    pub(super) table: String,
    pub(super) address: i64,
    /// Required for holding/input; not allowed for coil/discrete (a bit is 0 or 1).
    #[serde(rename = "type")]
    pub(super) data_type: Option<String>,
    pub(super) word_order: Option<String>,
    pub(super) scale: Option<f64>,
    pub(super) offset: Option<f64>,
    #[serde(default)]
    pub(super) timeline: Vec<RawSegment>,
    /// Set by the room expansion: the role the register follows.
    #[serde(skip)]
    pub(super) follows: Option<crate::room::Role>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSegment {
    pub(super) at: String,
    pub(super) set: Option<f64>,
    pub(super) ramp: Option<f64>,
    pub(super) over: Option<String>,
    pub(super) exponential: Option<f64>,
    pub(super) tau: Option<String>,
    pub(super) spike: Option<f64>,
    #[serde(rename = "for")]
    pub(super) hold: Option<String>,
    pub(super) noise: Option<f64>,
    pub(super) seed: Option<u64>,
    pub(super) every: Option<String>,
    pub(super) fault: Option<String>,
    pub(super) freeze: Option<String>,
    pub(super) dropout: Option<String>,
    pub(super) silence: Option<String>,
    /// Follow the room model (`[room]`) in this role: air, cell, offgas, smoke, h2,
    /// charging.
    pub(super) room: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvent {
    pub(super) at: String,
    pub(super) gone: bool,
    pub(super) mode: Option<String>,
}
