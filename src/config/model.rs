//! The validated configuration: every reference resolved to an index, every duration
//! parsed, every default applied. Built only by `validate`, so holding one means the
//! file made sense.

pub use crate::runbook::steps::command::CommandStep;
pub use crate::runbook::steps::dns_update::{DnsStep, TsigRef};
pub use crate::runbook::steps::haproxy::{HaproxySocket, HaproxyStep, ServerState};
pub use crate::runbook::steps::http::HttpStep;
pub use crate::runbook::steps::modbus_write::ModbusWriteStep;
pub use crate::runbook::steps::mqtt_publish::MqttPublishStep;
pub use crate::runbook::steps::wait::WaitStep;
pub use crate::runbook::steps::Action;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    pub agent: Agent,
    pub api: Option<Api>,
    pub sources: Vec<Source>,
    pub sensors: Vec<Sensor>,
    pub zones: Vec<Zone>,
    pub runbooks: Vec<Runbook>,
    /// The power map (`[[feeds]]`); empty when none is configured.
    pub feeds: Vec<Feed>,
    pub telemetry: Telemetry,
    /// `None`: no `[cluster]`, the agent runs alone.
    pub cluster: Option<Cluster>,
}

/// `[[feeds]]`: a power feed (a breaker, a PDU) and the zones it powers. It is safe to cut
/// when every one of its zones has failed over and verified (`safe_to_cut_power`);
/// Firebreak never opens a breaker itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Feed {
    pub id: String,
    pub description: String,
    /// Indexes into `Config::zones`.
    pub zones: Vec<usize>,
    /// What else it powers that needs no moving.
    pub loads: Vec<String>,
}

/// `[cluster]`: redundant agents for the same zones, one runbook run per incident.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub etcd: Vec<String>,
    pub node: String,
    pub namespace: String,
    pub lease_ttl: Duration,
    pub on_cluster_loss: OnClusterLoss,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
}

/// What an agent does with a critical zone when etcd cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnClusterLoss {
    /// Run the runbook alone: a duplicate, idempotent failover beats none while the room
    /// burns.
    Act,
    /// Run nothing until etcd is back.
    Hold,
}

impl OnClusterLoss {
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }
}

#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub state_dir: PathBuf,
    pub event_log: PathBuf,
    pub dry_run: bool,
    pub tick_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct Api {
    pub listen: SocketAddr,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub spec: SourceSpec,
}

/// A source's protocol and settings, and each type's built source: in the type's folder
/// under `src/sources/` (`config.rs`).
pub use crate::sources::config::{
    ModbusLink, ModbusSource, MqttSource, NutSource, Parity, SourceSpec,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Temperature,
    Offgas,
    Smoke,
    OnBattery,
    Runtime,
    Charge,
    Voltage,
    /// A signal from another detection system (a fire panel's zone, a relay): 1 is its
    /// alarm. `confirmed = true` (or `critical_above = 0.5`) on a sensor says the other
    /// system has confirmed the fire already: critical on its own.
    AlarmInput,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Temperature,
        Kind::Offgas,
        Kind::Smoke,
        Kind::OnBattery,
        Kind::Runtime,
        Kind::Charge,
        Kind::Voltage,
        Kind::AlarmInput,
    ];

    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }

    pub fn parse(s: &str) -> Option<Kind> {
        crate::names::from_name(s)
    }

    pub fn unit(self) -> &'static str {
        match self {
            Kind::Temperature => "C",
            Kind::Offgas => "ppm",
            Kind::Smoke => "%obs/m",
            Kind::OnBattery => "0/1",
            Kind::Runtime => "s",
            Kind::Charge => "%",
            Kind::Voltage => "V",
            Kind::AlarmInput => "0/1",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sensor {
    pub id: String,
    pub zone: usize,
    pub kind: Kind,
    pub source: usize,
    pub input: SensorInput,
    pub detect: DetectParams,
    /// Raw values (before `scale` and `offset`) the device sends for "no data": read as
    /// `fault:out_of_range`, like the built-in no-data patterns of Modbus registers.
    pub sentinels: Vec<f64>,
}

#[derive(Debug, Clone)]
pub enum SensorInput {
    Register(RegisterSpec),
    Topic {
        topic: String,
        json_pointer: Option<String>,
        timestamp_pointer: Option<String>,
    },
    /// A variable of a UPS served by upsd.
    Nut(NutInput),
    /// An object on an SNMP agent (`oid`, `equals`, `scale`, `offset`).
    Snmp(crate::sources::snmp::config::SnmpInput),
    /// An object's property on a BACnet/IP device (`object`, `property`, `equals`,
    /// `scale`, `offset`).
    Bacnet(crate::sources::bacnet::config::BacnetInput),
}

pub use crate::sources::nut::config::{NutInput, NutRead};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Holding,
    Input,
    /// Read/write bits (function code 1 to read; 5 and 15 to write, by `modbus_write`).
    Coil,
    /// Read-only bits (function code 2), e.g. a UPS's "on battery" contact.
    Discrete,
}

impl Table {
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }

    /// Coils and discrete inputs hold single bits; a sensor on them reads 0 or 1.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::Discrete)
    }

    /// The most items one Modbus read of this table may return (the protocol's limit).
    pub fn protocol_max_per_read(self) -> u16 {
        if self.is_bits() {
            2000
        } else {
            125
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegType {
    U16,
    I16,
    U32,
    I32,
    F32,
    /// IEEE 754 half precision in one register (some off-gas detectors report this way).
    F16,
    U64,
    I64,
    F64,
}

impl RegType {
    pub fn parse(s: &str) -> Option<RegType> {
        crate::names::from_name(s)
    }

    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }

    /// Number of 16-bit registers the type occupies.
    pub fn width(self) -> u16 {
        match self {
            RegType::U16 | RegType::I16 | RegType::F16 => 1,
            RegType::U32 | RegType::I32 | RegType::F32 => 2,
            RegType::U64 | RegType::I64 | RegType::F64 => 4,
        }
    }

    /// Floating-point types carry no status bits.
    pub fn is_float(self) -> bool {
        matches!(self, RegType::F16 | RegType::F32 | RegType::F64)
    }

    /// Every type's name, as `type = "..."` takes it, for messages.
    pub const NAMES: &'static str = "u16, i16, u32, i32, u64, i64, f16, f32 or f64";
}

/// Which register holds the most significant word of a multi-register value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordOrder {
    HighFirst,
    LowFirst,
}

/// The order of the two bytes inside each register: `big` is Modbus's own (the high byte
/// first on the wire); `little` is what some gateways send. With [`WordOrder`], each of the
/// four byte layouts of a 32-bit value (ABCD, CDAB, BADC, DCBA), and of a 64-bit one,
/// decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    Big,
    Little,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RegisterSpec {
    pub table: Table,
    pub address: u16,
    pub kind: RegType,
    pub word_order: WordOrder,
    pub byte_order: ByteOrder,
    pub scale: f64,
    pub offset: f64,
    pub bit: Option<u8>,
}

/// Effective detection parameters of one sensor (defaults by kind, `[detect.<kind>]`, then
/// the sensor's own overrides). Thresholds that are not set are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectParams {
    pub warn_above: Option<f64>,
    pub alarm_above: Option<f64>,
    pub critical_above: Option<f64>,
    pub warn_below: Option<f64>,
    pub alarm_below: Option<f64>,
    pub critical_below: Option<f64>,
    /// Per minute.
    pub rise_warn: Option<f64>,
    /// Per minute.
    pub rise_alarm: Option<f64>,
    pub rise_window: Duration,
    pub hold: Duration,
    pub hysteresis: f64,
    pub stale_after: Duration,
    /// A value that has not changed at all for this long makes the sensor `fault:frozen`;
    /// `None` (the default) turns the check off. Only for kinds that always jitter.
    pub frozen_after: Option<Duration>,
    pub min: f64,
    pub max: f64,
    /// Fastest credible change, per minute, between two good samples; a faster step is
    /// `fault:implausible_rate`. `None` turns the check off.
    pub max_rate: Option<f64>,
}

/// What a zone's `confirm` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmAcross {
    /// Distinct sensors, except that sensors of one device whose alarms began while the
    /// device was suspect of a glitch (a reboot, a gateway filling zeros) count once.
    #[default]
    Sensors,
    /// Distinct devices: sensors on one Modbus unit never confirm each other (sensors
    /// behind an MQTT broker count as devices of their own).
    Sources,
}

#[derive(Debug, Clone)]
pub struct Zone {
    pub id: String,
    pub runbook: usize,
    pub confirm: u32,
    pub confirm_across: ConfirmAcross,
    pub stale_votes: bool,
    pub power_reserve: Duration,
    pub max_on_battery: Option<Duration>,
    /// Staged response: runbook index started when the zone first reaches alarm.
    pub prepare_runbook: Option<usize>,
    /// Normal for this long without going critical undoes the prepare runbook.
    pub prepare_cooldown: Duration,
    pub failover_waits_for_prepare: bool,
}

#[derive(Debug, Clone)]
pub struct Runbook {
    pub name: String,
    pub budget: Option<Duration>,
    pub dry_run: bool,
    pub steps: Vec<Step>,
    /// Run when a prepare runbook is undone (zone back to normal, or operator reset).
    pub undo_steps: Vec<Step>,
}

/// Whether a step may be skipped when power is expected to go before the runbook ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    #[default]
    Must,
    Should,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Abort,
    Continue,
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub timeout: Duration,
    pub retries: u32,
    pub on_failure: OnFailure,
    pub priority: Priority,
    /// Extension: the step is only rehearsed, even when the runbook runs for real; it does
    /// not count for or against the safe-to-cut verdict.
    pub dry_run: bool,
    pub action: Action,
}

impl Step {
    /// How long the step is expected to take: its timeout (one attempt at worst), a
    /// `wait` its duration. Used to decide which `should` steps to skip.
    pub fn expected_duration(&self) -> Duration {
        self.action.info().expected_duration(self.timeout)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    pub influxdb: Option<Influx>,
    pub mqtt: Option<TelemetryMqtt>,
}

/// Each sink's settings: in its folder under `src/sinks/` (`config.rs`).
pub use crate::sinks::influxdb::config::Influx;
pub use crate::sinks::mqtt::config::TelemetryMqtt;

impl Config {
    /// Secret files the config names, with the key path that names them.
    pub fn secret_files(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        if let Some(api) = &self.api {
            if let Some(p) = &api.token_file {
                out.push(("api.token_file".to_string(), p.clone()));
            }
        }
        if let Some(cl) = &self.cluster {
            if let Some(p) = &cl.password_file {
                out.push(("cluster.password_file".to_string(), p.clone()));
            }
            if let Some(p) = &cl.key_file {
                out.push(("cluster.key_file".to_string(), p.clone()));
            }
        }
        for (i, s) in self.sources.iter().enumerate() {
            match &s.spec {
                SourceSpec::Snmp(snmp) => {
                    for (key, path) in snmp.secret_files() {
                        out.push((format!("sources[{i}].{key}"), path));
                    }
                }
                SourceSpec::Mqtt(m) => {
                    if let Some(p) = &m.password_file {
                        out.push((format!("sources[{i}].password_file"), p.clone()));
                    }
                    if let Some(p) = &m.key_file {
                        out.push((format!("sources[{i}].key_file"), p.clone()));
                    }
                }
                // Used by the `nut_fsd` steps naming the source (reads need no password).
                SourceSpec::Nut(n) => {
                    if let Some(p) = &n.password_file {
                        out.push((format!("sources[{i}].password_file"), p.clone()));
                    }
                }
                _ => {}
            }
        }
        for (r, rb) in self.runbooks.iter().enumerate() {
            let steps = rb.steps.iter().enumerate().map(|(s, st)| ("steps", s, st));
            let undo = rb
                .undo_steps
                .iter()
                .enumerate()
                .map(|(s, st)| ("undo_steps", s, st));
            for (list, s, step) in steps.chain(undo) {
                for (key, path) in step.action.info().secret_files() {
                    out.push((format!("runbooks[{r}].{list}[{s}].{key}"), path));
                }
            }
        }
        if let Some(i) = &self.telemetry.influxdb {
            if let Some(p) = &i.token_file {
                out.push(("telemetry.influxdb.token_file".to_string(), p.clone()));
            }
        }
        out
    }

    pub fn sensors_in_zone(&self, zone: usize) -> impl Iterator<Item = &Sensor> {
        self.sensors.iter().filter(move |s| s.zone == zone)
    }
}
