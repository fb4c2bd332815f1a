//! The validated scenario: every duration parsed, every default applied, the room model
//! written out. Built only by `validate`, so holding one means the file made sense.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::registers::{Encoding, Table};
use crate::timeline::{DeviceTimeline, Segment, SegmentKind, Timeline};

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// After this the last values are held and the runner reports `finished`.
    pub duration: Duration,
    pub devices: Vec<Device>,
    /// What should happen, to score an agent against (`[truth]`); `None` if not given.
    pub truth: Option<Truth>,
    /// The room model (`[room]`), if the scenario has one.
    pub room: Option<crate::room::Room>,
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
    /// The room role the value follows (`room = "..."` in its timeline).
    pub room: Option<crate::room::Role>,
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
    /// A UPS in the room of a closed-loop scenario: it stops answering when the room's
    /// runaway (if the run comes to one) says so, not at a time written in its events.
    pub room_ups: bool,
}

#[derive(Debug, Clone)]
pub struct Register {
    pub signal: String,
    pub table: Table,
    pub address: u16,
    pub encoding: Encoding,
    pub timeline: Timeline,
    /// The room role the value follows (`room = "..."` in its timeline).
    pub room: Option<crate::room::Role>,
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
    /// Whether a client closes the loop: a coil follows the room's `charging`, so writing
    /// it stops or resumes the charge while the scenario plays.
    pub fn is_closed_loop(&self) -> bool {
        self.room.is_some()
            && self
                .devices
                .iter()
                .flat_map(|d| &d.registers)
                .any(|r| r.table == Table::Coil && r.room == Some(crate::room::Role::Charging))
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

/// How often a `noise` entry draws a new value when it does not say.
pub(super) const DEFAULT_NOISE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
