//! The keys of a `modbus` source (Modbus TCP or RTU), their validation and the built
//! source. Configuration layer: imports only `config` helpers (see `sources/config.rs`).

use crate::config::collect::Collector;
use crate::config::units::split_host_port;
use crate::sources::config::{reconnect_max, SourceConfig};
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

impl SourceConfig for ModbusSource {
    type Raw = Raw;

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
        let poll_interval = c.duration(
            &format!("{path}.poll_interval"),
            &s.poll_interval,
            Duration::from_secs(1),
        );
        let timeout = c.duration(
            &format!("{path}.timeout"),
            &s.timeout,
            Duration::from_secs(1),
        );
        if poll_interval.is_zero() {
            c.err(format!("{path}.poll_interval"), "must be more than 0");
        }
        if timeout.is_zero() {
            c.err(format!("{path}.timeout"), "must be more than 0");
        }
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
