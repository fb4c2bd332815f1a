//! The keys of a `bacnet` source (a BACnet/IP device: a fire alarm panel's interface, an
//! aspirating smoke detector's high-level interface, a building management system) and of
//! its sensors, their validation and the built source. Configuration layer: imports only
//! `config` helpers and this folder's pure codec (the object grammar); see
//! `sources/config.rs`.

use super::codec::{self, ObjectId};
use crate::config::collect::Collector;
use crate::config::model::SensorInput;
use crate::config::units::{format_duration, split_host_port};
use crate::sources::config::{positive_duration, reconnect_max, SourceConfig};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// BACnet/IP's own UDP port (0xBAC0).
pub const DEFAULT_PORT: u16 = 47808;

/// The keys of a `bacnet` source as written (besides `name`, `type`, `url`).
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    /// The device's Device object instance.
    pub device_instance: Option<i64>,
    /// The agent's own BACnet/IP address:port; any address and a free port by default.
    pub local: Option<String>,
    /// SubscribeCOV per object (default false: read every poll_interval only).
    pub cov: Option<bool>,
    /// The lifetime asked for each subscription, renewed at half of it. Default "5m".
    pub cov_lifetime: Option<String>,
    /// Default "1s"; with COV, the liveness read.
    pub poll_interval: Option<String>,
    /// One attempt's wait for the answer. Default "1s".
    pub timeout: Option<String>,
    /// Attempts after the first before a request fails. Default 1.
    pub retries: Option<i64>,
    /// A BBMD to register with as a foreign device (`ip:port`).
    pub bbmd: Option<String>,
    /// Cap of the exponential backoff while the device does not answer. Default "30s".
    pub reconnect_max: Option<String>,
}

/// The keys of a sensor on a `bacnet` source.
#[derive(Debug, Default, Deserialize)]
pub struct SensorRaw {
    /// `"<object-type>,<instance>"`, e.g. `"analog-input,3"`.
    pub object: Option<String>,
    /// Default `present-value`.
    pub property: Option<String>,
    /// The reading is 1 while the value equals this, else 0 (a multi-state zone's fire
    /// state).
    pub equals: Option<f64>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
}

/// A sensor's object on the device and how its value becomes the reading.
#[derive(Debug, Clone, PartialEq)]
pub struct BacnetInput {
    pub object: ObjectId,
    pub property: u32,
    pub equals: Option<f64>,
    pub scale: f64,
    pub offset: f64,
}

impl BacnetInput {
    /// The reading for a raw value (analog: its number; binary: 1 active, 0 inactive;
    /// multi-state: the state number).
    pub fn reading(&self, raw: f64) -> f64 {
        match self.equals {
            Some(e) => f64::from(u8::from(raw == e)),
            None => raw * self.scale + self.offset,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BacnetSource {
    pub host: String,
    pub port: u16,
    pub device_instance: u32,
    pub local: Option<SocketAddr>,
    pub cov: Cov,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub bbmd: Option<SocketAddr>,
    pub reconnect_max: Duration,
}

/// Whether the source subscribes to changes of value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cov {
    /// Read every poll_interval only.
    Off,
    /// SubscribeCOV to each object for `lifetime`, renewed at half of it; still read every
    /// poll_interval.
    Subscribe { lifetime: Duration },
}

impl BacnetSource {
    /// `host:port`, as the client resolves it.
    pub fn target(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl SourceConfig for BacnetSource {
    type Raw = Raw;
    type SensorRaw = SensorRaw;

    fn sensor_input(c: &mut Collector, path: &str, s: SensorRaw) -> Option<SensorInput> {
        let object = c
            .required_str(&format!("{path}.object"), &s.object)
            .and_then(|text| match text.parse::<ObjectId>() {
                Ok(o) => Some(o),
                Err(e) => {
                    c.err(format!("{path}.object"), format!("`{text}` {e}"));
                    None
                }
            });
        let property = match s.property.as_deref() {
            None => Some(codec::prop::PRESENT_VALUE),
            Some(p) => match codec::parse_property(p) {
                Some(n) => Some(n),
                None => {
                    c.err(
                        format!("{path}.property"),
                        format!("unknown property `{p}` (present-value, or a property number)"),
                    );
                    None
                }
            },
        };
        let scale = s.scale.unwrap_or(1.0);
        if !scale.is_finite() || scale == 0.0 {
            c.err(
                format!("{path}.scale"),
                "must be a finite number other than 0",
            );
        }
        let offset = s.offset.unwrap_or(0.0);
        if !offset.is_finite() {
            c.err(format!("{path}.offset"), "must be a finite number");
        }
        if let Some(e) = s.equals {
            if !e.is_finite() {
                c.err(format!("{path}.equals"), "must be a finite number");
            }
            if s.scale.is_some() || s.offset.is_some() {
                c.err(
                    format!("{path}.equals"),
                    "equals gives 0/1 and cannot be combined with scale or offset",
                );
            }
        }
        Some(SensorInput::Bacnet(BacnetInput {
            object: object?,
            property: property?,
            equals: s.equals,
            scale,
            offset,
        }))
    }

    fn describe(&self) -> String {
        let how = match self.cov {
            Cov::Off => format!("read every {}", format_duration(self.poll_interval)),
            Cov::Subscribe { lifetime } => format!(
                "COV (confirmed, lifetime {}, renewed every {}) and a read every {}",
                format_duration(lifetime),
                format_duration(lifetime / 2),
                format_duration(self.poll_interval)
            ),
        };
        let bbmd = self
            .bbmd
            .map(|b| format!(", foreign device of BBMD {b}"))
            .unwrap_or_default();
        format!(
            "bacnet {} device {}, {how}, timeout {} x{}{bbmd}",
            self.target(),
            self.device_instance,
            format_duration(self.timeout),
            self.retries + 1
        )
    }

    /// One device: its objects fail together (a panel's sensors are one source, and
    /// count once when they glitch together).
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
        let endpoint = url.and_then(|u| match parse_bacnet_url(u) {
            Ok(e) => Some(e),
            Err(e) => {
                c.err(format!("{path}.url"), e);
                None
            }
        });
        let device_instance = match s.device_instance {
            None => {
                c.err(
                    format!("{path}.device_instance"),
                    "missing (required): the instance of the device's Device object (`firebreak probe bacnet` lists it)",
                );
                None
            }
            Some(n) => c
                .int_in(
                    &format!("{path}.device_instance"),
                    Some(n),
                    0..=i64::from(codec::MAX_INSTANCE) - 1,
                    "",
                )
                .map(|n| n as u32),
        };
        let local = s
            .local
            .as_deref()
            .and_then(|l| match l.parse::<SocketAddr>() {
                Ok(a) if a.is_ipv4() => Some(a),
                _ => {
                    c.err(
                        format!("{path}.local"),
                        format!("`{l}` is not an IPv4 address:port (e.g. \"0.0.0.0:47808\")"),
                    );
                    None
                }
            });
        let bbmd = s
            .bbmd
            .as_deref()
            .and_then(|b| match b.parse::<SocketAddr>() {
                Ok(a) if a.is_ipv4() && a.port() != 0 => Some(a),
                _ => {
                    c.err(
                        format!("{path}.bbmd"),
                        format!("`{b}` is not an IPv4 address:port (e.g. \"10.20.0.1:47808\")"),
                    );
                    None
                }
            });
        let poll_interval = positive_duration(
            c,
            path,
            "poll_interval",
            &s.poll_interval,
            Duration::from_secs(1),
        );
        let timeout = positive_duration(c, path, "timeout", &s.timeout, Duration::from_secs(1));
        let retries = c
            .int_in(&format!("{path}.retries"), s.retries, 0..=10, "")
            .map_or(1, |n| n as u32);
        let lifetime = c.duration(
            &format!("{path}.cov_lifetime"),
            &s.cov_lifetime,
            Duration::from_secs(300),
        );
        if lifetime.subsec_nanos() != 0
            || lifetime < Duration::from_secs(2)
            || lifetime > Duration::from_secs(86400)
        {
            c.err(
                format!("{path}.cov_lifetime"),
                "must be whole seconds between 2s and 24h (BACnet counts it in seconds; 0, for ever, is not offered: a subscription the agent forgets must lapse)",
            );
        }
        let cov = match s.cov {
            Some(true) => Cov::Subscribe { lifetime },
            Some(false) | None => {
                if s.cov_lifetime.is_some() {
                    c.warn(
                        format!("{path}.cov_lifetime"),
                        "has no effect without cov = true",
                    );
                }
                Cov::Off
            }
        };
        let reconnect_max = reconnect_max(c, path, &s.reconnect_max);
        let (host, port) = endpoint?;
        Some(BacnetSource {
            host,
            port,
            device_instance: device_instance?,
            local,
            cov,
            poll_interval,
            timeout,
            retries,
            bbmd,
            reconnect_max,
        })
    }
}

/// `bacnet://host[:port]`, port 47808 by default.
pub fn parse_bacnet_url(u: &str) -> Result<(String, u16), String> {
    let rest = u.strip_prefix("bacnet://").ok_or_else(|| {
        format!("`{u}` is not a BACnet/IP URL (bacnet://host or bacnet://host:47808)")
    })?;
    split_host_port(rest.trim_end_matches('/'), DEFAULT_PORT).map_err(|e| format!("`{u}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(source: &str, sensor: &str) -> Result<crate::config::Config, Vec<String>> {
        let text = format!(
            r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-unit"

[[sources]]
name = "panel"
type = "bacnet"
{source}

[[sensors]]
id = "panel.zone3"
zone = "z"
kind = "smoke"
source = "panel"
{sensor}

[[zones]]
id = "z"
runbook = "r"
confirm = 1

[[runbooks]]
name = "r"

[[runbooks.steps]]
name = "drain"
type = "wait"
duration = "1s"
"#
        );
        crate::config::load_str(&text, "unit", Default::default())
            .map(|l| l.config)
            .map_err(|e| e.errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_source_defaults_to_port_47808_polling_every_second() {
        let config = load(
            "url = \"bacnet://10.20.0.61\"\ndevice_instance = 2201",
            "object = \"analog-input,101\"",
        )
        .unwrap();
        let crate::config::SourceSpec::Bacnet(s) = &config.sources[0].spec else {
            panic!("a bacnet source")
        };
        assert_eq!((s.host.as_str(), s.port), ("10.20.0.61", 47808));
        assert_eq!(s.cov, Cov::Off);
        assert_eq!(
            s.describe(),
            "bacnet 10.20.0.61:47808 device 2201, read every 1s, timeout 1s x2"
        );
        let SensorInput::Bacnet(input) = &config.sensors[0].input else {
            panic!("a bacnet sensor")
        };
        assert_eq!(input.object, ObjectId::new(0, 101));
        assert_eq!(input.property, codec::prop::PRESENT_VALUE);
    }

    #[test]
    fn a_cov_source_says_how_it_renews() {
        let config = load(
            r#"url = "bacnet://10.20.0.60:47808"
device_instance = 3101
local = "0.0.0.0:47808"
cov = true
cov_lifetime = "5m"
poll_interval = "5s"
timeout = "2s"
retries = 2
bbmd = "10.20.0.1:47808""#,
            "object = \"multi-state-input,12\"\nequals = 3",
        )
        .unwrap();
        let crate::config::SourceSpec::Bacnet(s) = &config.sources[0].spec else {
            panic!("a bacnet source")
        };
        assert_eq!(
            s.describe(),
            "bacnet 10.20.0.60:47808 device 3101, COV (confirmed, lifetime 5m, renewed every 150s) and a read every 5s, timeout 2s x3, foreign device of BBMD 10.20.0.1:47808"
        );
        let SensorInput::Bacnet(input) = &config.sensors[0].input else {
            panic!("a bacnet sensor")
        };
        assert_eq!(input.reading(3.0), 1.0);
        assert_eq!(input.reading(1.0), 0.0);
    }

    #[test]
    fn wrong_keys_are_reported_together() {
        let p = load(
            r#"url = "udp://10.20.0.60"
local = "nowhere"
bbmd = "10.20.0.1"
cov_lifetime = "1.5s"
cov = true"#,
            r#"object = "analog-inptu,3"
property = "presentvalue"
equals = 3
scale = 2.0
oid = "1.3.6.1""#,
        )
        .unwrap_err();
        for expected in [
            "sources[0].url: `udp://10.20.0.60` is not a BACnet/IP URL",
            "sources[0].device_instance: missing (required)",
            "sources[0].local: `nowhere` is not an IPv4 address:port",
            "sources[0].bbmd: `10.20.0.1` is not an IPv4 address:port",
            "sources[0].cov_lifetime: must be whole seconds",
        ] {
            assert!(
                p.iter().any(|e| e.starts_with(expected)),
                "{expected}: {p:?}"
            );
        }
        let p = load(
            "url = \"bacnet://10.20.0.60\"\ndevice_instance = 4194302",
            r#"object = "analog-inptu,3"
property = "presentvalue"
equals = 3
scale = 2.0
oid = "1.3.6.1""#,
        )
        .unwrap_err();
        for expected in [
            "sensors[0].object: `analog-inptu,3` unknown object type `analog-inptu`",
            "sensors[0].property: unknown property `presentvalue`",
            "sensors[0].equals: equals gives 0/1",
            "sensors[0].oid: does not apply to a `bacnet` source",
        ] {
            assert!(
                p.iter().any(|e| e.starts_with(expected)),
                "{expected}: {p:?}"
            );
        }
    }
}
