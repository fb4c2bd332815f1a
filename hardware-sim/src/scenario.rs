//! Scenario files: parse (serde, unknown keys rejected), then validate purely, collecting
//! every problem with its path (`devices[0].registers[2].address: ...`).

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::registers::{DataType, Encoding, Table, WordOrder};
use crate::timeline::{
    self, DeviceEvent, DeviceTimeline, Fault, GoneMode, Presence, Segment, SegmentKind, Timeline,
};

/// Unit id range accepted for a device (0 is broadcast, so never a device's own id).
const UNIT_RANGE: std::ops::RangeInclusive<i64> = 1..=255;
const DEFAULT_LISTEN: &str = "127.0.0.1:0";
const DEFAULT_NOISE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid TOML: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("{} problem(s) in the scenario:\n{}", .0.len(), issues_text(.0))]
    Invalid(Vec<Issue>),
}

impl ScenarioError {
    /// Every problem as a line `path: message` (parse errors are one multi-line problem).
    pub fn lines(&self) -> Vec<String> {
        match self {
            ScenarioError::Invalid(issues) => issues.iter().map(Issue::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

fn issues_text(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(Issue::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One validation problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// After this the last values are held and the runner reports `finished`.
    pub duration: Duration,
    pub devices: Vec<Device>,
    /// What should happen, to score an agent against (`[truth]`); `None` if not given.
    pub truth: Option<Truth>,
}

/// What kind of incident a scenario plays, for people and for the library test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentKind {
    /// A room fire (off-gas, heat, smoke): fail over before the power is cut.
    Fire,
    /// A power problem (utility loss, UPS running down): fail over before the batteries end.
    Power,
    /// Something an agent must ride out without failing over.
    Nuisance,
    /// Nothing happens.
    Normal,
}

impl IncidentKind {
    pub const NAMES: &'static str = "fire, power, nuisance, normal";

    pub fn parse(s: &str) -> Option<IncidentKind> {
        match s {
            "fire" => Some(IncidentKind::Fire),
            "power" => Some(IncidentKind::Power),
            "nuisance" => Some(IncidentKind::Nuisance),
            "normal" => Some(IncidentKind::Normal),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Fire => "fire",
            IncidentKind::Power => "power",
            IncidentKind::Nuisance => "nuisance",
            IncidentKind::Normal => "normal",
        }
    }
}

/// Ground truth of a scenario, in sim time from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truth {
    pub kind: IncidentKind,
    /// Whether a correct agent fails over in this scenario.
    pub failover_expected: bool,
    /// When the fire service (or the batteries) cut the power.
    pub power_cut_at: Option<Duration>,
    /// The latest acceptable time for a verified failover (defaults to `power_cut_at`).
    pub failover_by: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    ModbusTcp,
    /// Modbus RTU on a serial device (`serial`, `baud`): one unit per line.
    ModbusRtu,
    Mqtt,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::ModbusTcp => "modbus-tcp",
            Protocol::ModbusRtu => "modbus-rtu",
            Protocol::Mqtt => "mqtt",
        }
    }
}

/// What an MQTT device publishes: one JSON object per period on one topic.
#[derive(Debug, Clone)]
pub struct MqttDevice {
    pub topic: String,
    /// Sim time between two publishes.
    pub every: Duration,
    pub model: Option<MqttModel>,
    pub fields: Vec<Field>,
}

/// Extra fields a device model derives from its signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttModel {
    /// Aspirating smoke detector: `alarm_level` from the `obscuration` field with the
    /// factory thresholds of one common model (alert 0.04, action1 0.165, action2 0.33,
    /// fire1 0.825, fire2 1.65 %obs/m).
    Asd,
}

/// One key of an MQTT device's JSON payload.
#[derive(Debug, Clone)]
pub struct Field {
    pub signal: String,
    pub timeline: Timeline,
}

/// Alarm level of an aspirating smoke detector at `obscuration` %obs/m.
pub fn asd_level(obscuration: f64) -> &'static str {
    const LEVELS: [(f64, &str); 5] = [
        (1.65, "fire2"),
        (0.825, "fire1"),
        (0.33, "action2"),
        (0.165, "action1"),
        (0.04, "alert"),
    ];
    LEVELS
        .iter()
        .find(|(threshold, _)| obscuration >= *threshold)
        .map_or("normal", |(_, name)| name)
}

#[derive(Debug, Clone)]
pub struct Device {
    pub name: String,
    pub protocol: Protocol,
    pub listen: SocketAddr,
    pub unit: u8,
    pub registers: Vec<Register>,
    pub events: DeviceTimeline,
    /// Set for `protocol = "mqtt"` (then `registers` is empty).
    pub mqtt: Option<MqttDevice>,
    /// Set for `protocol = "modbus-rtu"`: the serial device and its baud rate.
    pub serial: Option<(PathBuf, u32)>,
}

#[derive(Debug, Clone)]
pub struct Register {
    pub signal: String,
    pub table: Table,
    pub address: u16,
    pub encoding: Encoding,
    pub timeline: Timeline,
}

impl Register {
    /// The words this register serves for `value`: the encoding, or for a coil or
    /// discrete input 1 while the value is not 0.
    pub fn words(&self, value: f64) -> crate::registers::Words {
        if self.table.is_bits() {
            crate::registers::Words::one(u16::from(value != 0.0))
        } else {
            self.encoding.encode(value)
        }
    }
}

impl Scenario {
    pub fn from_file(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.to_owned(),
            source,
        })?;
        Scenario::from_toml_str(&text)
    }

    pub fn from_toml_str(text: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawFile = toml::from_str(text)?;
        validate(raw).map_err(ScenarioError::Invalid)
    }

    /// Every noise seed XORed with `seed` (`--seed`); 0 changes nothing.
    pub fn reseeded(mut self, seed: u64) -> Scenario {
        for d in &mut self.devices {
            for r in &mut d.registers {
                r.timeline = std::mem::replace(&mut r.timeline, empty_timeline()).reseeded(seed);
            }
            if let Some(m) = &mut d.mqtt {
                for f in &mut m.fields {
                    f.timeline =
                        std::mem::replace(&mut f.timeline, empty_timeline()).reseeded(seed);
                }
            }
        }
        self
    }

    /// `copies` of every Modbus device for load tests (`--devices`): the first keeps its
    /// name, the others are `NAME-2`, `NAME-3`, ... With `base_port`, the Modbus devices of
    /// the result listen on consecutive ports from it, in order; without it every
    /// device must listen on port 0 (ephemeral). MQTT devices are not copied.
    pub fn replicated(mut self, copies: usize, base_port: Option<u16>) -> Result<Scenario, String> {
        if copies == 0 {
            return Err("--devices must be at least 1".into());
        }
        let mut out = Vec::new();
        for d in std::mem::take(&mut self.devices) {
            if d.protocol != Protocol::ModbusTcp {
                out.push(d);
                continue;
            }
            for k in 1..=copies {
                let mut copy = d.clone();
                if k > 1 {
                    copy.name = format!("{}-{k}", d.name);
                }
                out.push(copy);
            }
        }
        let mut port = base_port.map(u32::from);
        for d in out.iter_mut().filter(|d| d.protocol == Protocol::ModbusTcp) {
            match &mut port {
                Some(p) => {
                    let this = u16::try_from(*p).map_err(|_| {
                        format!("the port range from {base_port:?} runs past 65535")
                    })?;
                    d.listen.set_port(this);
                    *p += 1;
                }
                None if copies > 1 && d.listen.port() != 0 => {
                    return Err(format!(
                        "device {} listens on fixed port {}: give a base port for the copies",
                        d.name,
                        d.listen.port()
                    ))
                }
                None => {}
            }
        }
        self.devices = out;
        Ok(self)
    }

    pub fn signal_count(&self) -> usize {
        self.devices
            .iter()
            .map(|d| d.registers.len() + d.mqtt.as_ref().map_or(0, |m| m.fields.len()))
            .sum()
    }
}

fn empty_timeline() -> Timeline {
    // A valid one-segment timeline used only as a placeholder while another is rebuilt.
    Timeline::new(vec![Segment::new(
        Duration::ZERO,
        SegmentKind::Set { value: 0.0 },
    )])
    .expect("a set at 0s is a valid timeline")
}

/// Parses "250ms", "5s", "1.5s", "2m", "1h", compounds such as "2m30s" (largest unit
/// first), and a bare "0".
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || format!("`{text}` is not a duration like \"250ms\", \"5s\", \"2m\" or \"2m30s\"");
    let mut rest = text;
    let mut secs = 0.0;
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{text}` has no unit (use ms, s, m or h)"))?;
        let (number, after) = rest.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_len);
        let (factor, rank) = match unit {
            "ms" => (0.001, 0),
            "s" => (1.0, 1),
            "m" => (60.0, 2),
            "h" => (3600.0, 3),
            _ => {
                return Err(format!(
                    "`{text}` has an unknown unit `{unit}` (use ms, s, m or h)"
                ))
            }
        };
        if rank >= last_rank {
            return Err(bad());
        }
        last_rank = rank;
        secs += number * factor;
        rest = tail;
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{text}` is out of range"))
}

/// Formats a duration the way scenario files write them.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

// ------------------------------------------------------------------ raw file shape

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    scenario: RawHeader,
    #[serde(default)]
    devices: Vec<RawDevice>,
    truth: Option<RawTruth>,
    room: Option<RawRoom>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoom {
    ambient: f64,
    #[serde(default)]
    battery_heat: f64,
    hvac_fails_at: Option<String>,
    hvac_drift: Option<f64>,
    offgas_at: Option<String>,
    offgas_rate: Option<f64>,
    venting_at: Option<String>,
    runaway_at: Option<String>,
    charging_stops_at: Option<String>,
    runaway_air_rise: Option<f64>,
    #[serde(default)]
    ups_in_room: Vec<String>,
    ups_lost_after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTruth {
    kind: String,
    failover_expected: bool,
    power_cut_at: Option<String>,
    failover_by: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: String,
    #[serde(default)]
    description: String,
    duration: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: String,
    protocol: Option<String>,
    listen: Option<String>,
    unit: Option<i64>,
    #[serde(default)]
    registers: Vec<RawRegister>,
    #[serde(default)]
    events: Vec<RawEvent>,
    /// MQTT only: where the JSON payload goes.
    topic: Option<String>,
    /// MQTT only: sim time between publishes (default 1s).
    every: Option<String>,
    /// MQTT only: a device model that derives fields (`asd`).
    model: Option<String>,
    /// MQTT only: the payload's keys.
    #[serde(default)]
    fields: Vec<RawField>,
    /// Modbus RTU only: the serial device (e.g. one end of a socat pty pair).
    serial: Option<String>,
    /// Modbus RTU only: baud rate (default 19200).
    baud: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    signal: String,
    #[serde(default)]
    timeline: Vec<RawSegment>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    signal: String,
    table: String,
    address: i64,
    /// Required for holding/input; not allowed for coil/discrete (a bit is 0 or 1).
    #[serde(rename = "type")]
    data_type: Option<String>,
    word_order: Option<String>,
    scale: Option<f64>,
    offset: Option<f64>,
    #[serde(default)]
    timeline: Vec<RawSegment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    at: String,
    set: Option<f64>,
    ramp: Option<f64>,
    over: Option<String>,
    exponential: Option<f64>,
    tau: Option<String>,
    spike: Option<f64>,
    #[serde(rename = "for")]
    hold: Option<String>,
    noise: Option<f64>,
    seed: Option<u64>,
    every: Option<String>,
    fault: Option<String>,
    freeze: Option<String>,
    dropout: Option<String>,
    silence: Option<String>,
    /// Follow the room model (`[room]`) in this role: air, cell, offgas, smoke, h2.
    room: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at: String,
    gone: bool,
    mode: Option<String>,
}

// ------------------------------------------------------------------ validation

#[derive(Default)]
struct Issues(Vec<Issue>);

impl Issues {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Issue {
            path: path.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, path: impl Into<String>, text: &str) -> Option<Duration> {
        match parse_duration(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.push(path, e);
                None
            }
        }
    }
}

fn validate(mut raw: RawFile) -> Result<Scenario, Vec<Issue>> {
    let mut issues = Issues::default();
    if raw.scenario.name.trim().is_empty() {
        issues.push("scenario.name", "must not be empty");
    }
    let duration = issues.duration("scenario.duration", &raw.scenario.duration);
    if duration == Some(Duration::ZERO) {
        issues.push("scenario.duration", "must be greater than 0");
    }
    if raw.devices.is_empty() {
        issues.push("devices", "a scenario needs at least one device");
    }
    let room = raw.room.take().and_then(|r| validate_room(r, &mut issues));
    if let Some(duration) = duration {
        expand_room(&mut raw.devices, room.as_ref(), duration, &mut issues);
    }

    let mut names = HashSet::new();
    let mut listens: Vec<(SocketAddr, usize)> = Vec::new();
    let mut devices = Vec::new();
    for (d, mut raw_dev) in raw.devices.into_iter().enumerate() {
        let path = format!("devices[{d}]");
        if raw_dev.name.trim().is_empty() {
            issues.push(format!("{path}.name"), "must not be empty");
        } else if !names.insert(raw_dev.name.clone()) {
            issues.push(
                format!("{path}.name"),
                format!("device name `{}` is used twice", raw_dev.name),
            );
        }
        let protocol = match raw_dev.protocol.as_deref().unwrap_or("modbus-tcp") {
            "modbus-tcp" => Some(Protocol::ModbusTcp),
            "modbus-rtu" => Some(Protocol::ModbusRtu),
            "mqtt" => Some(Protocol::Mqtt),
            other => {
                issues.push(
                    format!("{path}.protocol"),
                    format!("unknown protocol `{other}` (expected modbus-tcp, modbus-rtu or mqtt)"),
                );
                None
            }
        };
        let serial = if protocol == Some(Protocol::ModbusRtu) {
            if raw_dev.listen.is_some() {
                issues.push(
                    format!("{path}.listen"),
                    "does not apply to a modbus-rtu device (it serves `serial`)",
                );
            }
            match raw_dev.serial.take() {
                Some(p) if p.starts_with('/') => {
                    Some((PathBuf::from(p), raw_dev.baud.unwrap_or(19_200)))
                }
                Some(p) => {
                    issues.push(
                        format!("{path}.serial"),
                        format!("`{p}` is not an absolute path to a serial device"),
                    );
                    None
                }
                None => {
                    issues.push(
                        format!("{path}.serial"),
                        "a modbus-rtu device needs `serial`",
                    );
                    None
                }
            }
        } else {
            for (key, set) in [
                ("serial", raw_dev.serial.is_some()),
                ("baud", raw_dev.baud.is_some()),
            ] {
                if set {
                    issues.push(
                        format!("{path}.{key}"),
                        "only applies to a modbus-rtu device",
                    );
                }
            }
            None
        };
        let is_mqtt = protocol == Some(Protocol::Mqtt);
        let mqtt = if is_mqtt {
            for (key, set) in [
                ("listen", raw_dev.listen.is_some()),
                ("unit", raw_dev.unit.is_some()),
                ("registers", !raw_dev.registers.is_empty()),
            ] {
                if set {
                    issues.push(
                        format!("{path}.{key}"),
                        "does not apply to an mqtt device (it publishes `fields` to `topic`)",
                    );
                }
            }
            validate_mqtt(
                &path,
                raw_dev.topic.take(),
                raw_dev.every.take(),
                raw_dev.model.take(),
                std::mem::take(&mut raw_dev.fields),
                duration,
                &mut issues,
            )
        } else {
            for (key, set) in [
                ("topic", raw_dev.topic.is_some()),
                ("every", raw_dev.every.is_some()),
                ("model", raw_dev.model.is_some()),
                ("fields", !raw_dev.fields.is_empty()),
            ] {
                if set {
                    issues.push(
                        format!("{path}.{key}"),
                        "only applies to an mqtt device (protocol = \"mqtt\")",
                    );
                }
            }
            None
        };
        let listen_text = raw_dev.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = match listen_text.parse::<SocketAddr>() {
            Ok(addr) => {
                if addr.port() != 0 {
                    if let Some((_, other)) = listens.iter().find(|(a, _)| *a == addr) {
                        issues.push(
                            format!("{path}.listen"),
                            format!("{addr} is already used by devices[{other}]"),
                        );
                    }
                    listens.push((addr, d));
                }
                Some(addr)
            }
            Err(_) => {
                issues.push(
                    format!("{path}.listen"),
                    format!("`{listen_text}` is not an IP:port address like \"127.0.0.1:0\""),
                );
                None
            }
        };
        let unit = raw_dev.unit.unwrap_or(1);
        let unit = if UNIT_RANGE.contains(&unit) {
            u8::try_from(unit).ok()
        } else {
            issues.push(
                format!("{path}.unit"),
                format!("{unit} is not a unit id (1..=255)"),
            );
            None
        };
        if raw_dev.registers.is_empty() && !is_mqtt {
            issues.push(
                format!("{path}.registers"),
                "a device needs at least one register",
            );
        }

        let registers = validate_registers(&path, raw_dev.registers, duration, &mut issues);
        let events = validate_events(&path, raw_dev.events, duration, &mut issues);

        if let (Some(protocol), Some(listen), Some(unit), Some(registers), Some(events)) =
            (protocol, listen, unit, registers, events)
        {
            if is_mqtt == mqtt.is_some() && (protocol == Protocol::ModbusRtu) == serial.is_some() {
                devices.push(Device {
                    name: raw_dev.name,
                    protocol,
                    listen,
                    unit,
                    registers,
                    events,
                    mqtt,
                    serial,
                });
            }
        }
    }
    let truth = raw
        .truth
        .and_then(|t| validate_truth(t, duration, &mut issues));

    match duration {
        Some(duration) if issues.0.is_empty() => Ok(Scenario {
            name: raw.scenario.name,
            description: raw.scenario.description,
            duration,
            devices,
            truth,
        }),
        _ => Err(issues.0),
    }
}

fn validate_room(raw: RawRoom, issues: &mut Issues) -> Option<crate::room::Room> {
    let before = issues.0.len();
    let mut at = |key: &str, text: &Option<String>| {
        text.as_deref()
            .and_then(|t| issues.duration(format!("room.{key}"), t))
    };
    let hvac_fails_at = at("hvac_fails_at", &raw.hvac_fails_at);
    let offgas_at = at("offgas_at", &raw.offgas_at);
    let venting_at = at("venting_at", &raw.venting_at);
    let runaway_at = at("runaway_at", &raw.runaway_at);
    let charging_stops_at = at("charging_stops_at", &raw.charging_stops_at);
    let ups_lost_after = at("ups_lost_after", &raw.ups_lost_after);
    for (key, v) in [
        ("ambient", Some(raw.ambient)),
        ("battery_heat", Some(raw.battery_heat)),
        ("hvac_drift", raw.hvac_drift),
        ("offgas_rate", raw.offgas_rate),
        ("runaway_air_rise", raw.runaway_air_rise),
    ] {
        if v.is_some_and(|v| !v.is_finite()) {
            issues.push(format!("room.{key}"), "must be a finite number");
        }
    }
    if let (Some(o), Some(v)) = (offgas_at, venting_at) {
        if v < o {
            issues.push(
                "room.venting_at",
                "comes after offgas_at (off-gas -> venting -> runaway)",
            );
        }
    }
    if let (Some(v), Some(r)) = (venting_at.or(offgas_at), runaway_at) {
        if r < v {
            issues.push(
                "room.runaway_at",
                "comes after off-gas and venting (off-gas -> venting -> runaway)",
            );
        }
    }
    (issues.0.len() == before).then(|| crate::room::Room {
        ambient: raw.ambient,
        battery_heat: raw.battery_heat,
        hvac_fails_at,
        hvac_drift: raw.hvac_drift.unwrap_or(0.3),
        offgas_at,
        offgas_rate: raw.offgas_rate.unwrap_or(30.0),
        venting_at,
        runaway_at,
        charging_stops_at,
        runaway_air_rise: raw.runaway_air_rise.unwrap_or(13.0),
        ups_in_room: raw.ups_in_room,
        ups_lost_after: ups_lost_after.unwrap_or(Duration::from_secs(180)),
    })
}

/// Replaces every `{ at = "0s", room = ROLE }` entry with the room model's segments for
/// that role, merged in time order with the entry's other (non-value) segments, and adds
/// `gone` events to the UPS units in the room.
fn expand_room(
    devices: &mut [RawDevice],
    room: Option<&crate::room::Room>,
    duration: Duration,
    issues: &mut Issues,
) {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let expand = |path: &str, timeline: &mut Vec<RawSegment>, issues: &mut Issues| {
        let Some(i) = timeline.iter().position(|s| s.room.is_some()) else {
            return;
        };
        let role_text = timeline[i].room.clone().unwrap_or_default();
        let entry = format!("{path}.timeline[{i}]");
        let Some(room) = room else {
            issues.push(format!("{entry}.room"), "needs a [room] section");
            return;
        };
        let Some(role) = crate::room::Role::parse(&role_text) else {
            issues.push(
                format!("{entry}.room"),
                format!(
                    "unknown role `{role_text}` (expected {})",
                    crate::room::Role::NAMES
                ),
            );
            return;
        };
        if parse_duration(&timeline[i].at) != Ok(Duration::ZERO) {
            issues.push(format!("{entry}.at"), "a `room` entry starts at 0s");
            return;
        }
        if timeline.iter().filter(|s| s.room.is_some()).count() > 1
            || timeline
                .iter()
                .any(|s| s.set.is_some() || s.ramp.is_some() || s.exponential.is_some())
        {
            issues.push(
                format!("{path}.timeline"),
                "a timeline that follows the room takes no other room, set, ramp or exponential entry",
            );
            return;
        }
        let points = room.breakpoints(role, duration);
        let mut generated = vec![RawSegment {
            at: "0s".into(),
            set: Some(points[0].1),
            ..RawSegment::default()
        }];
        for pair in points.windows(2) {
            // The first ramp starts 1 ms in: a `set` holds the instant 0.
            let from = pair[0].0.max(Duration::from_millis(1));
            generated.push(RawSegment {
                at: ms(from),
                ramp: Some(pair[1].1),
                over: Some(ms(pair[1].0 - from)),
                ..RawSegment::default()
            });
        }
        timeline.remove(i);
        // Generated first at equal times, then the file's own entries in their order.
        let mut all: Vec<(Duration, usize, RawSegment)> = generated
            .into_iter()
            .chain(timeline.drain(..))
            .enumerate()
            .map(|(k, s)| (parse_duration(&s.at).unwrap_or(Duration::ZERO), k, s))
            .collect();
        all.sort_by_key(|(at, k, _)| (*at, *k));
        *timeline = all.into_iter().map(|(_, _, s)| s).collect();
    };
    for (d, dev) in devices.iter_mut().enumerate() {
        for (r, reg) in dev.registers.iter_mut().enumerate() {
            expand(
                &format!("devices[{d}].registers[{r}]"),
                &mut reg.timeline,
                issues,
            );
        }
        for (f, field) in dev.fields.iter_mut().enumerate() {
            expand(
                &format!("devices[{d}].fields[{f}]"),
                &mut field.timeline,
                issues,
            );
        }
    }
    let Some(room) = room else { return };
    for (i, name) in room.ups_in_room.iter().enumerate() {
        let Some(dev) = devices.iter_mut().find(|d| &d.name == name) else {
            issues.push(
                format!("room.ups_in_room[{i}]"),
                format!("no device named `{name}`"),
            );
            continue;
        };
        if let Some(at) = room.ups_lost_at().filter(|at| *at <= duration) {
            dev.events.push(RawEvent {
                at: ms(at),
                gone: true,
                mode: None,
            });
            dev.events
                .sort_by_key(|e| parse_duration(&e.at).unwrap_or(Duration::ZERO));
        }
    }
}

fn validate_truth(raw: RawTruth, duration: Option<Duration>, issues: &mut Issues) -> Option<Truth> {
    let before = issues.0.len();
    let kind = IncidentKind::parse(&raw.kind);
    if kind.is_none() {
        issues.push(
            "truth.kind",
            format!(
                "unknown kind `{}` (expected {})",
                raw.kind,
                IncidentKind::NAMES
            ),
        );
    }
    let mut at = |key: &str, text: &Option<String>| {
        let d = text
            .as_deref()
            .and_then(|t| issues.duration(format!("truth.{key}"), t))?;
        if let Some(duration) = duration {
            if d > duration {
                issues.push(
                    format!("truth.{key}"),
                    format!(
                        "{} is after the end of the scenario ({})",
                        format_duration(d),
                        format_duration(duration)
                    ),
                );
            }
        }
        Some(d)
    };
    let power_cut_at = at("power_cut_at", &raw.power_cut_at);
    let failover_by = at("failover_by", &raw.failover_by);
    if raw.failover_expected {
        if failover_by.is_none() && power_cut_at.is_none() && raw.failover_by.is_none() {
            issues.push(
                "truth.failover_by",
                "a scenario that expects a failover needs `failover_by` or `power_cut_at`",
            );
        }
    } else if raw.failover_by.is_some() {
        issues.push(
            "truth.failover_by",
            "only goes with `failover_expected = true`",
        );
    }
    if let (Some(by), Some(cut)) = (failover_by, power_cut_at) {
        if by > cut {
            issues.push(
                "truth.failover_by",
                format!(
                    "{} is after power_cut_at ({}): a failover must be verified while there is power",
                    format_duration(by),
                    format_duration(cut)
                ),
            );
        }
    }
    match kind {
        Some(kind) if issues.0.len() == before => Some(Truth {
            kind,
            failover_expected: raw.failover_expected,
            power_cut_at,
            failover_by: failover_by.or(if raw.failover_expected {
                power_cut_at
            } else {
                None
            }),
        }),
        _ => None,
    }
}

fn validate_mqtt(
    path: &str,
    topic: Option<String>,
    every: Option<String>,
    model: Option<String>,
    fields: Vec<RawField>,
    duration: Option<Duration>,
    issues: &mut Issues,
) -> Option<MqttDevice> {
    let before = issues.0.len();
    let topic = match topic {
        Some(t) if !t.is_empty() && !t.contains(['+', '#']) => Some(t),
        Some(t) => {
            issues.push(
                format!("{path}.topic"),
                format!("`{t}` is not a topic to publish to (not empty, no wildcards)"),
            );
            None
        }
        None => {
            issues.push(format!("{path}.topic"), "an mqtt device needs a `topic`");
            None
        }
    };
    let every = match every {
        None => Some(DEFAULT_NOISE_EVERY),
        Some(text) => issues.duration(format!("{path}.every"), &text),
    };
    if every == Some(Duration::ZERO) {
        issues.push(format!("{path}.every"), "must be greater than 0");
    }
    let model = match model.as_deref() {
        None => None,
        Some("asd") => Some(MqttModel::Asd),
        Some(other) => {
            issues.push(
                format!("{path}.model"),
                format!("unknown model `{other}` (expected asd)"),
            );
            None
        }
    };
    if fields.is_empty() {
        issues.push(
            format!("{path}.fields"),
            "an mqtt device needs at least one field",
        );
    }
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (f, raw) in fields.into_iter().enumerate() {
        let fpath = format!("{path}.fields[{f}]");
        if raw.signal.trim().is_empty() {
            issues.push(format!("{fpath}.signal"), "must not be empty");
        } else if !names.insert(raw.signal.clone()) {
            issues.push(
                format!("{fpath}.signal"),
                format!("field `{}` is used twice on this device", raw.signal),
            );
        }
        if let Some(timeline) = validate_timeline(&fpath, raw.timeline, duration, issues) {
            out.push(Field {
                signal: raw.signal,
                timeline,
            });
        }
    }
    if model == Some(MqttModel::Asd) && !names.contains("obscuration") {
        issues.push(
            format!("{path}.model"),
            "model `asd` derives alarm_level from a field named `obscuration`, which is missing",
        );
    }
    match (topic, every) {
        (Some(topic), Some(every)) if issues.0.len() == before => Some(MqttDevice {
            topic,
            every,
            model,
            fields: out,
        }),
        _ => None,
    }
}

fn validate_registers(
    dev_path: &str,
    raws: Vec<RawRegister>,
    duration: Option<Duration>,
    issues: &mut Issues,
) -> Option<Vec<Register>> {
    let before = issues.0.len();
    let mut signals = HashSet::new();
    // (table, first, end exclusive, index, signal) of every register laid out so far
    let mut spans: Vec<(Table, u32, u32, usize, String)> = Vec::new();
    let mut registers = Vec::new();
    for (r, raw) in raws.into_iter().enumerate() {
        let path = format!("{dev_path}.registers[{r}]");
        if raw.signal.trim().is_empty() {
            issues.push(format!("{path}.signal"), "must not be empty");
        } else if !signals.insert(raw.signal.clone()) {
            issues.push(
                format!("{path}.signal"),
                format!("signal `{}` is used twice on this device", raw.signal),
            );
        }
        let table = raw
            .table
            .parse::<Table>()
            .map_err(|e| issues.push(format!("{path}.table"), e.to_string()))
            .ok();
        let data_type = if table.is_some_and(Table::is_bits) {
            // A coil or discrete input serves 1 while the signal is not 0, else 0.
            for (key, set) in [
                ("type", raw.data_type.is_some()),
                ("word_order", raw.word_order.is_some()),
                ("scale", raw.scale.is_some()),
                ("offset", raw.offset.is_some()),
            ] {
                if set {
                    issues.push(
                        format!("{path}.{key}"),
                        "does not apply to coil or discrete (the bit is 1 while the signal is not 0)",
                    );
                }
            }
            Some(DataType::U16)
        } else {
            match raw.data_type.as_deref() {
                None => {
                    issues.push(
                        format!("{path}.type"),
                        "missing (u16, i16, u32, i32 or f32)",
                    );
                    None
                }
                Some(t) => t
                    .parse::<DataType>()
                    .map_err(|e| issues.push(format!("{path}.type"), e.to_string()))
                    .ok(),
            }
        };
        let word_order = match raw.word_order.as_deref() {
            None => Some(WordOrder::HighFirst),
            Some(text) => text
                .parse::<WordOrder>()
                .map_err(|e| issues.push(format!("{path}.word_order"), e.to_string()))
                .ok(),
        };
        let scale = raw.scale.unwrap_or(1.0);
        if !scale.is_finite() || scale == 0.0 {
            issues.push(
                format!("{path}.scale"),
                "must be a finite number other than 0",
            );
        }
        let offset = raw.offset.unwrap_or(0.0);
        if !offset.is_finite() {
            issues.push(format!("{path}.offset"), "must be a finite number");
        }
        let address = match u16::try_from(raw.address) {
            Ok(a) => Some(a),
            Err(_) => {
                issues.push(
                    format!("{path}.address"),
                    format!("{} is not a register address (0..=65535)", raw.address),
                );
                None
            }
        };
        if let (Some(address), Some(data_type), Some(table)) = (address, data_type, table) {
            let first = u32::from(address);
            let end = first + u32::from(data_type.width());
            if end > 65_536 {
                issues.push(
                    format!("{path}.address"),
                    format!(
                        "{data_type} at {address} needs {} registers and runs past 65535",
                        data_type.width()
                    ),
                );
            }
            for (other_table, o_first, o_end, o_index, o_signal) in &spans {
                if *other_table == table && first < *o_end && *o_first < end {
                    issues.push(
                        format!("{path}.address"),
                        format!(
                            "{table} {first}..={} overlaps {dev_path}.registers[{o_index}] (`{o_signal}`, {table} {o_first}..={})",
                            end - 1,
                            o_end - 1
                        ),
                    );
                }
            }
            spans.push((table, first, end, r, raw.signal.clone()));
        }
        let timeline = validate_timeline(&path, raw.timeline, duration, issues);

        if let (Some(table), Some(address), Some(data_type), Some(word_order), Some(timeline)) =
            (table, address, data_type, word_order, timeline)
        {
            registers.push(Register {
                signal: raw.signal,
                table,
                address,
                encoding: Encoding::new(data_type)
                    .word_order(word_order)
                    .scaled(scale, offset),
                timeline,
            });
        }
    }
    (issues.0.len() == before).then_some(registers)
}

fn validate_timeline(
    reg_path: &str,
    raws: Vec<RawSegment>,
    duration: Option<Duration>,
    issues: &mut Issues,
) -> Option<Timeline> {
    let before = issues.0.len();
    if raws.is_empty() {
        issues.push(
            format!("{reg_path}.timeline"),
            "needs at least one segment, starting with { at = \"0s\", set = ... }",
        );
        return None;
    }
    let mut segments = Vec::new();
    for (i, raw) in raws.into_iter().enumerate() {
        let path = format!("{reg_path}.timeline[{i}]");
        if let Some(segment) = parse_segment(&path, raw, duration, issues) {
            segments.push(segment);
        }
    }
    if issues.0.len() != before {
        return None;
    }
    for e in timeline::check(&segments) {
        let path = match (e.index(), e.field()) {
            (Some(i), Some(field)) => format!("{reg_path}.timeline[{i}].{field}"),
            (Some(i), None) => format!("{reg_path}.timeline[{i}]"),
            _ => format!("{reg_path}.timeline"),
        };
        issues.push(path, e.to_string());
    }
    if issues.0.len() != before {
        return None;
    }
    Timeline::new(segments).ok()
}

fn check_at(path: &str, at: Duration, duration: Option<Duration>, issues: &mut Issues) {
    if let Some(duration) = duration {
        if at > duration {
            issues.push(
                format!("{path}.at"),
                format!(
                    "{} is after the end of the scenario ({})",
                    format_duration(at),
                    format_duration(duration)
                ),
            );
        }
    }
}

fn parse_segment(
    path: &str,
    raw: RawSegment,
    duration: Option<Duration>,
    issues: &mut Issues,
) -> Option<Segment> {
    let before = issues.0.len();
    let at = issues.duration(format!("{path}.at"), &raw.at);
    if let Some(at) = at {
        check_at(path, at, duration, issues);
    }

    let kinds: Vec<&str> = [
        ("set", raw.set.is_some()),
        ("ramp", raw.ramp.is_some()),
        ("exponential", raw.exponential.is_some()),
        ("spike", raw.spike.is_some()),
        ("noise", raw.noise.is_some()),
        ("fault", raw.fault.is_some()),
        ("freeze", raw.freeze.is_some()),
        ("dropout", raw.dropout.is_some()),
        ("silence", raw.silence.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();

    // Companion keys belong to exactly one kind; anything else is a mistake worth naming.
    let companions = [
        ("over", raw.over.is_some(), "ramp"),
        ("tau", raw.tau.is_some(), "exponential"),
        ("for", raw.hold.is_some(), "spike"),
        ("seed", raw.seed.is_some(), "noise"),
        ("every", raw.every.is_some(), "noise"),
    ];
    for (key, present, owner) in companions {
        if present && !kinds.contains(&owner) {
            issues.push(
                format!("{path}.{key}"),
                format!("`{key}` only goes with `{owner}`"),
            );
        }
    }

    let kind = match kinds.as_slice() {
        [] => {
            issues.push(
                path,
                "says nothing: expected one of set, ramp, exponential, spike, noise, fault, freeze, dropout, silence",
            );
            None
        }
        [_, _, ..] => {
            issues.push(
                path,
                format!(
                    "has more than one kind ({}): write one entry per kind",
                    kinds.join(", ")
                ),
            );
            None
        }
        [kind] => {
            let mut required = |key: &str, value: &Option<String>| match value {
                None => {
                    issues.push(format!("{path}.{key}"), format!("`{kind}` needs `{key}`"));
                    None
                }
                Some(text) => issues.duration(format!("{path}.{key}"), text),
            };
            match *kind {
                "set" => raw.set.map(|value| SegmentKind::Set { value }),
                "ramp" => required("over", &raw.over).map(|over| SegmentKind::Ramp {
                    target: raw.ramp.unwrap_or_default(),
                    over,
                }),
                "exponential" => required("tau", &raw.tau).map(|tau| SegmentKind::Exponential {
                    target: raw.exponential.unwrap_or_default(),
                    tau,
                }),
                "spike" => required("for", &raw.hold).map(|hold| SegmentKind::Spike {
                    value: raw.spike.unwrap_or_default(),
                    hold,
                }),
                "freeze" => raw
                    .freeze
                    .as_deref()
                    .and_then(|t| issues.duration(format!("{path}.freeze"), t))
                    .map(|hold| SegmentKind::Freeze { hold }),
                "dropout" | "silence" => raw
                    .dropout
                    .as_deref()
                    .or(raw.silence.as_deref())
                    .and_then(|t| issues.duration(format!("{path}.{kind}"), t))
                    .map(|hold| SegmentKind::Dropout { hold }),
                "noise" => {
                    let every = match &raw.every {
                        None => Some(DEFAULT_NOISE_EVERY),
                        Some(text) => issues.duration(format!("{path}.every"), text),
                    };
                    every.map(|every| SegmentKind::Noise {
                        amplitude: raw.noise.unwrap_or_default(),
                        seed: raw.seed.unwrap_or(0),
                        every,
                    })
                }
                _ => {
                    let text = raw.fault.as_deref().unwrap_or_default();
                    match Fault::parse(text) {
                        Some(f) => Some(SegmentKind::Fault(f)),
                        None => {
                            issues.push(
                                format!("{path}.fault"),
                                format!("unknown fault `{text}` (expected {})", Fault::NAMES),
                            );
                            None
                        }
                    }
                }
            }
        }
    };
    match (at, kind) {
        (Some(at), Some(kind)) if issues.0.len() == before => Some(Segment::new(at, kind)),
        _ => None,
    }
}

fn validate_events(
    dev_path: &str,
    raws: Vec<RawEvent>,
    duration: Option<Duration>,
    issues: &mut Issues,
) -> Option<DeviceTimeline> {
    let before = issues.0.len();
    let mut events = Vec::new();
    for (i, raw) in raws.into_iter().enumerate() {
        let path = format!("{dev_path}.events[{i}]");
        let at = issues.duration(format!("{path}.at"), &raw.at);
        if let Some(at) = at {
            check_at(&path, at, duration, issues);
        }
        let presence = match (raw.gone, raw.mode.as_deref()) {
            (false, None) => Some(Presence::Present),
            (false, Some(_)) => {
                issues.push(
                    format!("{path}.mode"),
                    "`mode` only goes with `gone = true`",
                );
                None
            }
            (true, None) => Some(Presence::Gone(GoneMode::Silent)),
            (true, Some(text)) => match GoneMode::parse(text) {
                Some(mode) => Some(Presence::Gone(mode)),
                None => {
                    issues.push(
                        format!("{path}.mode"),
                        format!("unknown mode `{text}` (expected silent or refuse)"),
                    );
                    None
                }
            },
        };
        if let (Some(at), Some(presence)) = (at, presence) {
            events.push(DeviceEvent { at, presence });
        }
    }
    if issues.0.len() != before {
        return None;
    }
    for e in timeline::check_events(&events) {
        let path = match e.index() {
            Some(i) => format!("{dev_path}.events[{i}].at"),
            None => format!("{dev_path}.events"),
        };
        issues.push(path, e.to_string());
    }
    if issues.0.len() != before {
        return None;
    }
    DeviceTimeline::new(events).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[scenario]
name = "offgas-then-heat"
description = "test"
duration = "60s"

[[devices]]
name = "env-b3"
protocol = "modbus-tcp"
listen = "127.0.0.1:0"
unit = 1

[[devices.registers]]
signal = "temp.row1"
table = "input"
address = 0
type = "i16"
word_order = "high_first"
scale = 0.1
offset = 0.0
timeline = [
  { at = "0s",  set = 23.0 },
  { at = "10s", ramp = 80.0, over = "20s" },
  { at = "40s", spike = 95.0, for = "300ms" },
  { at = "45s", fault = "exception" },
  { at = "50s", fault = "none" },
  { at = "50s", noise = 0.2, seed = 7 },
  { at = "55s", exponential = 150.0, tau = "20s" },
]

[[devices.events]]
at = "20s"
gone = true

[[devices.events]]
at = "30s"
gone = false
"#;

    fn issues_of(text: &str) -> Vec<String> {
        match Scenario::from_toml_str(text) {
            Err(ScenarioError::Invalid(issues)) => issues.iter().map(|i| i.to_string()).collect(),
            Err(other) => panic!("expected validation issues, got {other}"),
            Ok(_) => panic!("expected validation issues, got a valid scenario"),
        }
    }

    #[test]
    fn durations_take_ms_s_m_and_h() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("s").is_err());
        assert_eq!(parse_duration("2m30s"), Ok(Duration::from_secs(150)));
        assert_eq!(parse_duration("1h0m5s"), Ok(Duration::from_secs(3605)));
        assert!(parse_duration("30s2m").is_err(), "largest unit first");
        assert!(parse_duration("2m2m").is_err());
        assert_eq!(format_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn the_documented_example_is_valid() {
        let s = Scenario::from_toml_str(GOOD).unwrap();
        assert_eq!(s.duration, Duration::from_secs(60));
        let dev = &s.devices[0];
        assert_eq!(dev.unit, 1);
        assert_eq!(dev.listen, "127.0.0.1:0".parse().unwrap());
        let reg = &dev.registers[0];
        assert_eq!(reg.table, Table::Input);
        assert_eq!(reg.encoding.data_type, DataType::I16);
        assert_eq!(reg.timeline.segments().len(), 7);
        assert_eq!(
            dev.events.presence_at(Duration::from_secs(25)),
            Presence::Gone(GoneMode::Silent)
        );
    }

    #[test]
    fn defaults_fill_protocol_listen_unit_scale_and_word_order() {
        let s = Scenario::from_toml_str(
            r#"
[scenario]
name = "x"
duration = "1s"
[[devices]]
name = "d"
[[devices.registers]]
signal = "s"
table = "holding"
address = 3
type = "u32"
timeline = [{ at = "0s", set = 1 }]
"#,
        )
        .unwrap();
        let d = &s.devices[0];
        assert_eq!(d.protocol, Protocol::ModbusTcp);
        assert_eq!(d.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(d.unit, 1);
        let e = d.registers[0].encoding;
        assert_eq!(
            (e.scale, e.offset, e.word_order),
            (1.0, 0.0, WordOrder::HighFirst)
        );
    }

    #[test]
    fn unknown_keys_are_parse_errors() {
        let text = GOOD.replace("unit = 1", "unit = 1\ncolour = \"red\"");
        match Scenario::from_toml_str(&text) {
            Err(ScenarioError::Parse(e)) => assert!(e.to_string().contains("colour")),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let text = r#"
[scenario]
name = ""
duration = "1 minute"

[[devices]]
name = "env"
protocol = "modbus-ascii"
listen = "localhost"
unit = 0

[[devices.registers]]
signal = "a"
table = "input"
address = 0
type = "i32"
timeline = [{ at = "0s", set = 1 }]

[[devices.registers]]
signal = "b"
table = "input"
address = 1
type = "u16"
timeline = [{ at = "0s", set = 1 }]

[[devices.registers]]
signal = "c"
table = "holding"
address = 65535
type = "u32"
scale = 0.0
timeline = [{ at = "0s", set = 1 }]

[[devices.registers]]
signal = "d"
table = "bogus"
address = 70000
type = "u17"
word_order = "middle"
timeline = [
  { at = "0s", set = 1 },
  { at = "10s", ramp = 5 },
  { at = "5s", set = 2 },
  { at = "6s", set = 2, spike = 3, for = "1s" },
  { at = "7s" },
  { at = "8s", fault = "smoke" },
  { at = "9s", set = 1, tau = "1s" },
]

[[devices.registers]]
signal = "a"
table = "holding"
address = 20
type = "u16"
timeline = [{ at = "1s", ramp = 4, over = "0s" }]

[[devices.events]]
at = "5s"
gone = true
mode = "explode"
"#;
        let issues = issues_of(text);
        let expected = [
            "scenario.name: must not be empty",
            "scenario.duration: `1 minute` has an unknown unit ` minute` (use ms, s, m or h)",
            "devices[0].protocol: unknown protocol `modbus-ascii` (expected modbus-tcp, modbus-rtu or mqtt)",
            "devices[0].listen: `localhost` is not an IP:port address like \"127.0.0.1:0\"",
            "devices[0].unit: 0 is not a unit id (1..=255)",
            "devices[0].registers[1].address: input 1..=1 overlaps devices[0].registers[0] (`a`, input 0..=1)",
            "devices[0].registers[2].scale: must be a finite number other than 0",
            "devices[0].registers[2].address: u32 at 65535 needs 2 registers and runs past 65535",
            "devices[0].registers[3].table: unknown table `bogus` (expected holding, input, coil or discrete)",
            "devices[0].registers[3].type: unknown type `u17` (expected u16, i16, u32, i32 or f32)",
            "devices[0].registers[3].word_order: unknown word order `middle` (expected high_first or low_first)",
            "devices[0].registers[3].address: 70000 is not a register address (0..=65535)",
            "devices[0].registers[3].timeline[1].over: `ramp` needs `over`",
            "devices[0].registers[3].timeline[3]: has more than one kind (set, spike): write one entry per kind",
            "devices[0].registers[3].timeline[4]: says nothing: expected one of set, ramp, exponential, spike, noise, fault, freeze, dropout, silence",
            "devices[0].registers[3].timeline[5].fault: unknown fault `smoke` (expected none, exception, busy, ffff, zeros, timeout)",
            "devices[0].registers[3].timeline[6].tau: `tau` only goes with `exponential`",
            "devices[0].registers[4].signal: signal `a` is used twice on this device",
            "devices[0].registers[4].timeline[0]: must start with a `set` at 0s so that every instant has a value",
            "devices[0].registers[4].timeline[0].over: must be greater than 0",
            "devices[0].events[0].mode: unknown mode `explode` (expected silent or refuse)",
        ];
        for e in &expected {
            assert!(
                issues.contains(&e.to_string()),
                "missing {e:?} in\n{}",
                issues.join("\n")
            );
        }
        assert_eq!(issues.len(), expected.len(), "{}", issues.join("\n"));
    }

    #[test]
    fn segments_out_of_time_order_or_after_the_end_are_listed() {
        let text = r#"
[scenario]
name = "x"
duration = "30s"
[[devices]]
name = "d"
[[devices.registers]]
signal = "s"
table = "holding"
address = 0
type = "u16"
timeline = [
  { at = "0s", set = 1 },
  { at = "20s", set = 2 },
  { at = "10s", set = 3 },
  { at = "40s", fault = "busy" },
]
[[devices.events]]
at = "10s"
gone = true
[[devices.events]]
at = "5s"
gone = false
"#;
        assert_eq!(
            issues_of(text),
            vec![
                "devices[0].registers[0].timeline[3].at: 40s is after the end of the scenario (30s)",
                "devices[0].events[1].at: 5s is earlier than the entry before it (10s): entries must be in time order",
            ]
        );
        // fix the one above and the timeline check itself reports order
        let text = text.replace("\n  { at = \"40s\", fault = \"busy\" },", "");
        assert_eq!(
            issues_of(&text)[0],
            "devices[0].registers[0].timeline[2].at: 10s is earlier than the entry before it (20s): entries must be in time order"
        );
    }

    #[test]
    fn duplicate_devices_and_ports_are_listed() {
        let dev = r#"
[[devices]]
name = "d"
listen = "127.0.0.1:15020"
[[devices.registers]]
signal = "s"
table = "holding"
address = 0
type = "u16"
timeline = [{ at = "0s", set = 1 }]
"#;
        let text = format!("[scenario]\nname = \"x\"\nduration = \"1s\"\n{dev}{dev}");
        assert_eq!(
            issues_of(&text),
            vec![
                "devices[1].name: device name `d` is used twice",
                "devices[1].listen: 127.0.0.1:15020 is already used by devices[0]",
            ]
        );
    }

    #[test]
    fn a_scenario_without_devices_is_invalid() {
        assert_eq!(
            issues_of("[scenario]\nname = \"x\"\nduration = \"0s\"\n"),
            vec![
                "scenario.duration: must be greater than 0",
                "devices: a scenario needs at least one device"
            ]
        );
    }

    #[test]
    fn a_seed_changes_the_noise_and_seed_zero_changes_nothing() {
        let text = r#"
[scenario]
name = "n"
duration = "60s"
[[devices]]
name = "d"
[[devices.registers]]
signal = "s"
table = "holding"
address = 0
type = "u16"
timeline = [{ at = "0s", set = 100 }, { at = "0s", noise = 10, seed = 7 }]
"#;
        let base = Scenario::from_toml_str(text).unwrap();
        let at = Duration::from_secs(3);
        let v = |s: &Scenario| s.devices[0].registers[0].timeline.value_at(at);
        assert_eq!(v(&base.clone().reseeded(0)), v(&base));
        assert_eq!(v(&base.clone().reseeded(42)), v(&base.clone().reseeded(42)));
        assert_ne!(v(&base.clone().reseeded(42)), v(&base));
    }

    #[test]
    fn replicas_get_names_and_consecutive_ports() {
        let s = Scenario::from_toml_str(GOOD).unwrap();
        let r = s.clone().replicated(3, Some(15000)).unwrap();
        let names: Vec<_> = r.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["env-b3", "env-b3-2", "env-b3-3"]);
        let ports: Vec<_> = r.devices.iter().map(|d| d.listen.port()).collect();
        assert_eq!(ports, [15000, 15001, 15002]);
        assert!(s.clone().replicated(0, None).is_err());
        assert_eq!(s.replicated(2, None).unwrap().devices.len(), 2);
    }

    const ROOMY: &str = r#"
[scenario]
name = "room"
duration = "10m"

[room]
ambient = 23.0
offgas_at = "1m"
runaway_at = "5m"
ups_in_room = ["ups"]
ups_lost_after = "1m"

[[devices]]
name = "env"
[[devices.registers]]
signal = "air"
table = "input"
address = 0
type = "i16"
scale = 0.1
timeline = [{ at = "0s", room = "air" }, { at = "0s", noise = 0.1, seed = 3 }, { at = "2m", spike = 90.0, for = "1s" }]

[[devices]]
name = "ups"
[[devices.registers]]
signal = "cell"
table = "holding"
address = 0
type = "i16"
timeline = [{ at = "0s", room = "cell" }]
"#;

    #[test]
    fn room_entries_follow_the_model_and_the_ups_in_the_room_is_lost() {
        let s = Scenario::from_toml_str(ROOMY).unwrap();
        let air = &s.devices[0].registers[0].timeline;
        // Spikes and noise still lay over the model's values.
        assert_eq!(air.value_at(Duration::from_secs(120)), 90.0);
        let at_six = air.base_value_at(Duration::from_secs(360));
        assert!((at_six - (23.0 + 13.0)).abs() < 0.01, "{at_six}");
        let cell = &s.devices[1].registers[0].timeline;
        assert_eq!(cell.value_at(Duration::from_secs(60)), 25.0);
        assert!(cell.value_at(Duration::from_secs(400)) > 150.0);
        let gone = s.devices[1].events.events();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].at, Duration::from_secs(360));
    }

    #[test]
    fn room_entries_are_checked() {
        let start = ROOMY.find("[room]").unwrap();
        let end = ROOMY.find("[[devices]]").unwrap();
        let no_room = format!("{}{}", &ROOMY[..start], &ROOMY[end..]);
        let err = Scenario::from_toml_str(&no_room).unwrap_err().to_string();
        assert!(
            err.contains("devices[0].registers[0].timeline[0].room: needs a [room] section"),
            "{err}"
        );
        let bad_role = ROOMY.replace(r#"room = "cell""#, r#"room = "lava""#);
        let err = Scenario::from_toml_str(&bad_role).unwrap_err().to_string();
        assert!(
            err.contains("devices[1].registers[0].timeline[0].room: unknown role `lava`"),
            "{err}"
        );
        let mixed = ROOMY.replace(
            r#"[{ at = "0s", room = "cell" }]"#,
            r#"[{ at = "0s", room = "cell" }, { at = "1m", set = 1 }]"#,
        );
        let err = Scenario::from_toml_str(&mixed).unwrap_err().to_string();
        assert!(
            err.contains("takes no other room, set, ramp or exponential"),
            "{err}"
        );
        let stranger = ROOMY.replace(r#"ups_in_room = ["ups"]"#, r#"ups_in_room = ["nobody"]"#);
        let err = Scenario::from_toml_str(&stranger).unwrap_err().to_string();
        assert!(
            err.contains("room.ups_in_room[0]: no device named `nobody`"),
            "{err}"
        );
    }
}
