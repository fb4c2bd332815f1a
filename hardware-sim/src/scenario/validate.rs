//! Pure validation: the raw file in, either a [`Scenario`] or every problem found, each
//! with the key path that names it (`devices[0].registers[2].address: ...`). Timeline
//! entries are checked in `segments.rs`; `[room]` is written out first (`expand.rs`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::duration::format_duration;
use super::error::{Issue, Issues};
use super::expand::expand_room;
use super::model::*;
use super::raw::*;
use super::segments::{validate_events, validate_timeline};
use crate::registers::{DataType, Encoding, Table, WordOrder};

/// Unit id range accepted for a device (0 is broadcast, so never a device's own id).
const UNIT_RANGE: std::ops::RangeInclusive<i64> = 1..=255;
const DEFAULT_LISTEN: &str = "127.0.0.1:0";

pub(super) fn validate(mut raw: RawFile) -> Result<Scenario, Vec<Issue>> {
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

    let mut taken = Taken::default();
    let devices = raw
        .devices
        .into_iter()
        .enumerate()
        .filter_map(|(d, raw_dev)| validate_device(d, raw_dev, duration, &mut taken, &mut issues))
        .collect();
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
            room,
        }),
        _ => Err(issues.0),
    }
}

/// Device names and fixed listen addresses seen so far, to report the ones used twice.
#[derive(Default)]
struct Taken {
    names: HashSet<String>,
    listens: Vec<(SocketAddr, usize)>,
}

fn validate_device(
    d: usize,
    mut raw_dev: RawDevice,
    duration: Option<Duration>,
    taken: &mut Taken,
    issues: &mut Issues,
) -> Option<Device> {
    let path = format!("devices[{d}]");
    if raw_dev.name.trim().is_empty() {
        issues.push(format!("{path}.name"), "must not be empty");
    } else if !taken.names.insert(raw_dev.name.clone()) {
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
            issues,
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
                if let Some((_, other)) = taken.listens.iter().find(|(a, _)| *a == addr) {
                    issues.push(
                        format!("{path}.listen"),
                        format!("{addr} is already used by devices[{other}]"),
                    );
                }
                taken.listens.push((addr, d));
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

    let registers = validate_registers(&path, raw_dev.registers, duration, issues);
    let events = validate_events(&path, raw_dev.events, duration, issues);

    let (protocol, listen, unit, registers, events) =
        (protocol?, listen?, unit?, registers?, events?);
    // The protocol's own part (mqtt, serial) has reported why it is missing.
    if is_mqtt != mqtt.is_some() || (protocol == Protocol::ModbusRtu) != serial.is_some() {
        return None;
    }
    Some(Device {
        name: raw_dev.name,
        protocol,
        listen,
        unit,
        registers,
        events,
        mqtt,
        serial,
        room_ups: raw_dev.room_ups,
    })
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
                room: raw.follows,
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
                room: raw.follows,
            });
        }
    }
    (issues.0.len() == before).then_some(registers)
}
