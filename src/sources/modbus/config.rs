//! The keys of a `modbus` source (Modbus TCP or RTU), their validation and the built
//! source. Configuration layer: imports only `config` helpers (see `sources/config.rs`).

use crate::config::collect::Collector;
use crate::config::model::{ByteOrder, RegType, RegisterSpec, SensorInput, Table, WordOrder};
use crate::config::units::split_host_port;
use crate::sources::config::{positive_duration, reconnect_max, SourceConfig};
use serde::Deserialize;
use std::time::Duration;

/// The keys of a `modbus` source as written (besides `name`, `type`, `url`).
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    /// Unit (slave) id. Default 1.
    pub unit: Option<i64>,
    pub poll_interval: Option<String>,
    pub timeout: Option<String>,
    pub max_registers_per_read: Option<i64>,
    pub max_gap: Option<i64>,
    /// Cap of the exponential reconnect backoff. Default "30s".
    pub reconnect_max: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ModbusSource {
    pub link: ModbusLink,
    pub unit: u8,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub max_registers_per_read: u16,
    pub max_gap: u16,
    pub reconnect_max: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModbusLink {
    Tcp {
        host: String,
        port: u16,
    },
    Rtu {
        path: String,
        baud: u32,
        parity: Parity,
        stop_bits: u8,
        data_bits: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// The keys of a sensor on a `modbus` source: where its value is.
#[derive(Debug, Default, Deserialize)]
pub struct SensorRaw {
    pub register: Option<RawRegister>,
}

/// `register = { table, address, type, ... }` as written.
#[derive(Debug, Default, Deserialize)]
pub struct RawRegister {
    pub table: Option<String>,
    pub address: Option<i64>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub word_order: Option<String>,
    /// `big` (default, Modbus's own) or `little`: the bytes inside each register.
    pub byte_order: Option<String>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub bit: Option<i64>,
}

impl SourceConfig for ModbusSource {
    type Raw = Raw;
    type SensorRaw = SensorRaw;

    fn sensor_input(c: &mut Collector, path: &str, raw: SensorRaw) -> Option<SensorInput> {
        match &raw.register {
            None => {
                c.err(
                    format!("{path}.register"),
                    "missing: a Modbus sensor needs register = { table, address, type }",
                );
                None
            }
            Some(r) => register(c, &format!("{path}.register"), r).map(SensorInput::Register),
        }
    }

    fn describe(&self) -> String {
        let link = match &self.link {
            ModbusLink::Tcp { host, port } => format!("tcp://{host}:{port}"),
            ModbusLink::Rtu { path, baud, .. } => format!("rtu://{path} @{baud}"),
        };
        format!(
            "modbus {link} unit {}, every {}",
            self.unit,
            crate::config::units::format_duration(self.poll_interval)
        )
    }

    fn is_one_device(&self) -> bool {
        true
    }

    fn expected_interval(&self) -> Duration {
        self.poll_interval
    }

    fn validate(
        c: &mut Collector,
        path: &str,
        _name: Option<&str>,
        url: Option<&str>,
        s: Raw,
    ) -> Option<Self> {
        let reconnect_max = reconnect_max(c, path, &s.reconnect_max);
        let link = url.and_then(|u| match parse_modbus_url(u) {
            Ok(l) => Some(l),
            Err(e) => {
                c.err(format!("{path}.url"), e);
                None
            }
        });
        let unit = match s.unit {
            None => 1,
            Some(u) if (0..=255).contains(&u) => u as u8,
            Some(u) => {
                c.err(
                    format!("{path}.unit"),
                    format!("{u} is not a Modbus unit id (0 to 255; RTU uses 1 to 247)"),
                );
                1
            }
        };
        if matches!(link, Some(ModbusLink::Rtu { .. })) && !(1..=247).contains(&unit) {
            c.err(
                format!("{path}.unit"),
                format!("{unit} is not an RTU unit id (1 to 247)"),
            );
        }
        let poll_interval = positive_duration(
            c,
            path,
            "poll_interval",
            &s.poll_interval,
            Duration::from_secs(1),
        );
        let timeout = positive_duration(c, path, "timeout", &s.timeout, Duration::from_secs(1));
        let max_registers_per_read = c
            .int_in(
                &format!("{path}.max_registers_per_read"),
                s.max_registers_per_read,
                1..=125,
                ", the Modbus limit",
            )
            .map_or(125, |n| n as u16);
        let max_gap = c
            .int_in(&format!("{path}.max_gap"), s.max_gap, 0..=124, "")
            .map_or(0, |n| n as u16);
        link.map(|link| ModbusSource {
            link,
            unit,
            poll_interval,
            timeout,
            max_registers_per_read,
            max_gap,
            reconnect_max,
        })
    }
}

pub fn register(c: &mut Collector, path: &str, r: &RawRegister) -> Option<RegisterSpec> {
    const TABLES: &str = "\"holding\", \"input\", \"coil\" or \"discrete\"";
    let table = match r.table.as_deref() {
        None => {
            c.err(
                format!("{path}.table"),
                format!("missing (required): {TABLES}"),
            );
            None
        }
        Some("holding") => Some(Table::Holding),
        Some("input") => Some(Table::Input),
        Some("coil") => Some(Table::Coil),
        Some("discrete") => Some(Table::Discrete),
        Some(t) => {
            c.err(
                format!("{path}.table"),
                format!("unknown table `{t}` ({TABLES})"),
            );
            None
        }
    };
    if let Some(t) = table.filter(|t| t.is_bits()) {
        return bit_register(c, path, r, t);
    }
    let kind = match r.kind.as_deref() {
        None => {
            c.err(
                format!("{path}.type"),
                format!("missing (required): {}", RegType::NAMES),
            );
            None
        }
        Some(t) => {
            let k = RegType::parse(t);
            if k.is_none() {
                c.err(
                    format!("{path}.type"),
                    format!("unknown type `{t}` ({})", RegType::NAMES),
                );
            }
            k
        }
    };
    let address = match r.address {
        None => {
            c.err(format!("{path}.address"), "missing (required): 0 to 65535");
            None
        }
        Some(a) if !(0..=65535).contains(&a) => {
            c.err(
                format!("{path}.address"),
                format!("{a} is not a register address (0 to 65535)"),
            );
            None
        }
        Some(a) => {
            let w = kind.map(|k| k.width()).unwrap_or(1) as i64;
            if a + w - 1 > 65535 {
                c.err(
                    format!("{path}.address"),
                    format!(
                        "{a} + {w} registers runs past 65535 (a {}-bit value needs {w} registers)",
                        w * 16
                    ),
                );
                None
            } else {
                Some(a as u16)
            }
        }
    };
    let word_order = match r.word_order.as_deref() {
        None | Some("high_first") => WordOrder::HighFirst,
        Some("low_first") => WordOrder::LowFirst,
        Some(w) => {
            c.err(
                format!("{path}.word_order"),
                format!("unknown word order `{w}` (\"high_first\" or \"low_first\")"),
            );
            WordOrder::HighFirst
        }
    };
    if r.word_order.is_some() && kind.is_some_and(|k| k.width() == 1) {
        c.err(
            format!("{path}.word_order"),
            "applies only to 32- and 64-bit types (u32, i32, f32, u64, i64, f64)",
        );
    }
    let byte_order = match r.byte_order.as_deref() {
        None | Some("big") => ByteOrder::Big,
        Some("little") => ByteOrder::Little,
        Some(b) => {
            c.err(
                format!("{path}.byte_order"),
                format!("unknown byte order `{b}` (\"big\" or \"little\")"),
            );
            ByteOrder::Big
        }
    };
    let scale = r.scale.unwrap_or(1.0);
    if !scale.is_finite() || scale == 0.0 {
        c.err(
            format!("{path}.scale"),
            "must be a finite number other than 0",
        );
    }
    let offset = r.offset.unwrap_or(0.0);
    if !offset.is_finite() {
        c.err(format!("{path}.offset"), "must be a finite number");
    }
    let bit = match (r.bit, kind) {
        (None, _) => None,
        (Some(_), Some(k)) if k.is_float() => {
            c.err(
                format!("{path}.bit"),
                format!(
                    "does not apply to {} (bits come from integer status words)",
                    crate::names::name_of(&k)
                ),
            );
            None
        }
        (Some(b), k) => {
            let max = k.map(|k| k.width() as i64 * 16 - 1).unwrap_or(63);
            if !(0..=max).contains(&b) {
                c.err(
                    format!("{path}.bit"),
                    format!("{b} is out of range (0 to {max} for this type)"),
                );
                None
            } else {
                Some(b as u8)
            }
        }
    };
    if r.bit.is_some() && (r.scale.is_some() || r.offset.is_some()) {
        c.err(
            format!("{path}.bit"),
            "bit gives 0/1 and cannot be combined with scale or offset",
        );
    }
    Some(RegisterSpec {
        table: table?,
        address: address?,
        kind: kind?,
        word_order,
        byte_order,
        scale,
        offset,
        bit,
    })
}

/// A sensor on a coil or discrete input: the value is the bit itself (0 or 1), so every
/// key that shapes a register's value is rejected rather than silently ignored.
fn bit_register(
    c: &mut Collector,
    path: &str,
    r: &RawRegister,
    table: Table,
) -> Option<RegisterSpec> {
    let what = format!(
        "does not apply to table \"{}\" (its value is 0 or 1)",
        table.as_str()
    );
    for (key, set) in [
        ("type", r.kind.is_some()),
        ("word_order", r.word_order.is_some()),
        ("byte_order", r.byte_order.is_some()),
        ("scale", r.scale.is_some()),
        ("offset", r.offset.is_some()),
        ("bit", r.bit.is_some()),
    ] {
        if set {
            c.err(format!("{path}.{key}"), what.clone());
        }
    }
    let address = match r.address {
        None => {
            c.err(format!("{path}.address"), "missing (required): 0 to 65535");
            None
        }
        Some(a) if !(0..=65535).contains(&a) => {
            c.err(
                format!("{path}.address"),
                format!("{a} is not a {} address (0 to 65535)", table.as_str()),
            );
            None
        }
        Some(a) => Some(a as u16),
    };
    Some(RegisterSpec {
        table,
        address: address?,
        // Design: one bit is carried as a one-"word" u16 of 0 or 1, so decoding,
        // plausibility and the sample path stay the same for every table.
        kind: RegType::U16,
        word_order: WordOrder::HighFirst,
        byte_order: ByteOrder::Big,
        scale: 1.0,
        offset: 0.0,
        bit: None,
    })
}

/// `tcp://host[:port]` or `rtu:///dev/ttyUSB0?baud=19200&parity=E&stop=1&data=8`.
pub fn parse_modbus_url(u: &str) -> Result<ModbusLink, String> {
    if let Some(rest) = u.strip_prefix("tcp://") {
        let (host, port) = split_host_port(rest, 502).map_err(|e| format!("`{u}`: {e}"))?;
        return Ok(ModbusLink::Tcp { host, port });
    }
    if let Some(rest) = u.strip_prefix("rtu://") {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if !path.starts_with('/') {
            return Err(format!(
                "`{u}`: the serial device must be an absolute path (rtu:///dev/ttyUSB0?baud=19200)"
            ));
        }
        let (mut baud, mut parity, mut stop_bits, mut data_bits) =
            (19200u32, Parity::Even, 1u8, 8u8);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{u}`: `{pair}` is not key=value"))?;
            match k {
                "baud" => {
                    baud = v
                        .parse()
                        .map_err(|_| format!("`{u}`: baud `{v}` is not a number"))?
                }
                "parity" => {
                    parity = match v {
                        "N" | "n" | "none" => Parity::None,
                        "E" | "e" | "even" => Parity::Even,
                        "O" | "o" | "odd" => Parity::Odd,
                        _ => return Err(format!("`{u}`: parity `{v}` is not N, E or O")),
                    }
                }
                "stop" => {
                    stop_bits = match v {
                        "1" => 1,
                        "2" => 2,
                        _ => return Err(format!("`{u}`: stop `{v}` is not 1 or 2")),
                    }
                }
                "data" => {
                    data_bits = match v {
                        "7" => 7,
                        "8" => 8,
                        _ => return Err(format!("`{u}`: data `{v}` is not 7 or 8")),
                    }
                }
                _ => {
                    return Err(format!(
                        "`{u}`: unknown option `{k}` (baud, parity, stop, data)"
                    ))
                }
            }
        }
        return Ok(ModbusLink::Rtu {
            path: path.to_string(),
            baud,
            parity,
            stop_bits,
            data_bits,
        });
    }
    Err(format!("`{u}` is not a Modbus URL (tcp://host:port or rtu:///dev/ttyUSB0?baud=19200&parity=N&stop=1)"))
}
