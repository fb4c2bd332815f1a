//! The keys of an `snmp` source (an SNMP agent, typically a UPS network card speaking
//! UPS-MIB, RFC 1628) and of its sensors, their validation and the built source.
//! Configuration layer: imports only `config` helpers and this folder's pure codec (the OID
//! grammar, the USM protocol names); see `sources/config.rs`.

use super::ber::Oid;
use super::usm::{AuthProtocol, PrivProtocol};
use crate::config::collect::Collector;
use crate::config::model::SensorInput;
use crate::config::units::{format_duration, split_host_port};
use crate::sources::config::{positive_duration, reconnect_max, SourceConfig};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The keys of an `snmp` source as written (besides `name`, `type`, `url`).
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    /// "2c" or "3".
    pub version: Option<String>,
    /// v2c: the file holding the community.
    pub community_file: Option<String>,
    /// v3: the USM user.
    pub username: Option<String>,
    /// v3: "sha1" or "sha256".
    pub auth_protocol: Option<String>,
    pub auth_password_file: Option<String>,
    /// v3: "none" (authNoPriv, the default) or "aes128" (authPriv).
    pub priv_protocol: Option<String>,
    pub priv_password_file: Option<String>,
    /// Default "1s".
    pub poll_interval: Option<String>,
    /// One attempt's wait for the answer. Default "1s".
    pub timeout: Option<String>,
    /// Attempts after the first before a poll fails. Default 1.
    pub retries: Option<i64>,
    /// Cap of the exponential backoff while the agent does not answer. Default "30s".
    pub reconnect_max: Option<String>,
}

/// The keys of a sensor on an `snmp` source.
#[derive(Debug, Default, Deserialize)]
pub struct SensorRaw {
    /// Numeric, dotted; the leading dot is optional.
    pub oid: Option<String>,
    /// The reading is 1 when the raw value equals this, else 0 (an enumeration such as
    /// upsOutputSource, battery(5), read as on_battery).
    pub equals: Option<f64>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
}

/// A sensor's object on the agent and how its raw value becomes the reading.
#[derive(Debug, Clone, PartialEq)]
pub struct SnmpInput {
    pub oid: Oid,
    pub equals: Option<f64>,
    pub scale: f64,
    pub offset: f64,
}

impl SnmpInput {
    /// The reading for a raw value.
    pub fn reading(&self, raw: f64) -> f64 {
        match self.equals {
            Some(e) => f64::from(u8::from(raw == e)),
            None => raw * self.scale + self.offset,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SnmpSource {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub reconnect_max: Duration,
}

/// Who the agent is asked as; the secrets stay in their files until the source starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Security {
    V2c {
        community_file: PathBuf,
    },
    V3 {
        username: String,
        auth_protocol: AuthProtocol,
        auth_password_file: PathBuf,
        priv_protocol: PrivProtocol,
        /// Set exactly when `priv_protocol` is not `none`.
        priv_password_file: Option<PathBuf>,
    },
}

impl SnmpSource {
    /// The secret files the source reads at start, with their keys.
    pub fn secret_files(&self) -> Vec<(&'static str, PathBuf)> {
        match &self.security {
            Security::V2c { community_file } => vec![("community_file", community_file.clone())],
            Security::V3 {
                auth_password_file,
                priv_password_file,
                ..
            } => {
                let mut out = vec![("auth_password_file", auth_password_file.clone())];
                if let Some(p) = priv_password_file {
                    out.push(("priv_password_file", p.clone()));
                }
                out
            }
        }
    }
}

const V3_KEYS: [&str; 5] = [
    "username",
    "auth_protocol",
    "auth_password_file",
    "priv_protocol",
    "priv_password_file",
];

impl SourceConfig for SnmpSource {
    type Raw = Raw;
    type SensorRaw = SensorRaw;

    fn sensor_input(c: &mut Collector, path: &str, s: SensorRaw) -> Option<SensorInput> {
        let oid = c
            .required_str(&format!("{path}.oid"), &s.oid)
            .and_then(|text| match text.parse::<Oid>() {
                Ok(o) => Some(o),
                Err(e) => {
                    c.err(format!("{path}.oid"), format!("`{text}` {e}"));
                    None
                }
            });
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
        oid.map(|oid| {
            SensorInput::Snmp(SnmpInput {
                oid,
                equals: s.equals,
                scale,
                offset,
            })
        })
    }

    fn describe(&self) -> String {
        let who = match &self.security {
            Security::V2c { .. } => "v2c".to_string(),
            Security::V3 {
                username,
                auth_protocol,
                priv_protocol,
                ..
            } => format!("v3 user {username} ({auth_protocol}, priv {priv_protocol})"),
        };
        format!(
            "snmp {who} udp://{}:{}, every {}, timeout {} x{}",
            self.host,
            self.port,
            format_duration(self.poll_interval),
            format_duration(self.timeout),
            self.retries + 1
        )
    }

    /// One agent, one device: its OIDs fail together.
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
        let endpoint = url.and_then(|u| match parse_snmp_url(u) {
            Ok(e) => Some(e),
            Err(e) => {
                c.err(format!("{path}.url"), e);
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
        let reconnect_max = reconnect_max(c, path, &s.reconnect_max);
        let security = security(c, path, &s);
        let (host, port) = endpoint?;
        Some(SnmpSource {
            host,
            port,
            security: security?,
            poll_interval,
            timeout,
            retries,
            reconnect_max,
        })
    }
}

/// The version's keys: a key of the other version is an error naming the version.
fn security(c: &mut Collector, path: &str, s: &Raw) -> Option<Security> {
    let v3_keys_set = [
        s.username.is_some(),
        s.auth_protocol.is_some(),
        s.auth_password_file.is_some(),
        s.priv_protocol.is_some(),
        s.priv_password_file.is_some(),
    ];
    match s.version.as_deref() {
        Some("2c") => {
            for (key, set) in V3_KEYS.iter().zip(v3_keys_set) {
                if set {
                    c.err(
                        format!("{path}.{key}"),
                        "applies to version \"3\" (USM) only; this source is version \"2c\"",
                    );
                }
            }
            let file = c.required_str(&format!("{path}.community_file"), &s.community_file);
            file.map(|f| Security::V2c {
                community_file: PathBuf::from(f),
            })
        }
        Some("3") => {
            if s.community_file.is_some() {
                c.err(
                    format!("{path}.community_file"),
                    "applies to version \"2c\" only; this source is version \"3\" (use username and auth_password_file)",
                );
            }
            let username = c.required_str(&format!("{path}.username"), &s.username);
            if username.is_some_and(str::is_empty) {
                c.err(format!("{path}.username"), "must not be empty");
            }
            let auth_protocol =
                match c.required_str(&format!("{path}.auth_protocol"), &s.auth_protocol) {
                    Some("sha1") => Some(AuthProtocol::Sha1),
                    Some("sha256") => Some(AuthProtocol::Sha256),
                    Some(other) => {
                        c.err(
                            format!("{path}.auth_protocol"),
                            format!("unknown auth protocol `{other}` (\"sha1\" or \"sha256\")"),
                        );
                        None
                    }
                    None => None,
                };
            let auth_password_file =
                c.required_str(&format!("{path}.auth_password_file"), &s.auth_password_file);
            let priv_protocol = match s.priv_protocol.as_deref() {
                None if s.priv_password_file.is_some() => {
                    c.err(
                        format!("{path}.priv_protocol"),
                        "missing: priv_password_file is set, so say which cipher (\"aes128\")",
                    );
                    None
                }
                None | Some("none") => Some(PrivProtocol::None),
                Some("aes128") => Some(PrivProtocol::Aes128),
                Some(other) => {
                    c.err(
                        format!("{path}.priv_protocol"),
                        format!("unknown privacy protocol `{other}` (\"none\" or \"aes128\")"),
                    );
                    None
                }
            };
            match (priv_protocol, &s.priv_password_file) {
                (Some(PrivProtocol::Aes128), None) => c.err(
                    format!("{path}.priv_password_file"),
                    "missing: priv_protocol \"aes128\" needs the privacy password's file",
                ),
                (Some(PrivProtocol::None), Some(_)) if s.priv_protocol.is_some() => c.err(
                    format!("{path}.priv_password_file"),
                    "priv_protocol is \"none\": there is no privacy password",
                ),
                _ => {}
            }
            Some(Security::V3 {
                username: username?.to_string(),
                auth_protocol: auth_protocol?,
                auth_password_file: PathBuf::from(auth_password_file?),
                priv_password_file: match priv_protocol? {
                    PrivProtocol::None => None,
                    PrivProtocol::Aes128 => Some(PathBuf::from(s.priv_password_file.as_ref()?)),
                },
                priv_protocol: priv_protocol?,
            })
        }
        Some(other) => {
            c.err(
                format!("{path}.version"),
                format!("unknown SNMP version `{other}` (\"2c\" or \"3\")"),
            );
            None
        }
        None => {
            c.err(
                format!("{path}.version"),
                "missing (required): \"2c\" (community_file) or \"3\" (USM: username, auth_protocol, auth_password_file)",
            );
            None
        }
    }
}

/// `udp://host[:port]`, port 161 by default.
pub fn parse_snmp_url(u: &str) -> Result<(String, u16), String> {
    let rest = u
        .strip_prefix("udp://")
        .ok_or_else(|| format!("`{u}` is not an SNMP URL (udp://host or udp://host:161)"))?;
    split_host_port(rest.trim_end_matches('/'), 161).map_err(|e| format!("`{u}`: {e}"))
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
name = "ups"
type = "snmp"
{source}

[[sensors]]
id = "ups.runtime"
zone = "z"
kind = "runtime"
source = "ups"
{sensor}

[[zones]]
id = "z"
runbook = "r"

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

    const V2C: &str = r#"url = "udp://10.20.0.32"
version = "2c"
community_file = "/etc/firebreak/snmp.community""#;

    #[test]
    fn a_v2c_source_defaults_to_port_161_one_retry_and_one_second() {
        let config = load(
            V2C,
            r#"oid = ".1.3.6.1.2.1.33.1.2.3.0"
scale = 60.0"#,
        )
        .unwrap();
        let crate::config::SourceSpec::Snmp(s) = &config.sources[0].spec else {
            panic!("an snmp source")
        };
        assert_eq!((s.host.as_str(), s.port), ("10.20.0.32", 161));
        assert_eq!(s.retries, 1);
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!(
            s.describe(),
            "snmp v2c udp://10.20.0.32:161, every 1s, timeout 1s x2"
        );
        let SensorInput::Snmp(input) = &config.sensors[0].input else {
            panic!("an snmp sensor")
        };
        assert_eq!(input.oid.to_string(), "1.3.6.1.2.1.33.1.2.3.0");
        assert_eq!(input.reading(12.0), 720.0);
    }

    #[test]
    fn equals_reads_an_enumeration_as_zero_or_one() {
        let input = SnmpInput {
            oid: "1.3.6.1.2.1.33.1.4.1.0".parse().unwrap(),
            equals: Some(5.0),
            scale: 1.0,
            offset: 0.0,
        };
        assert_eq!(input.reading(5.0), 1.0);
        assert_eq!(input.reading(3.0), 0.0);
    }

    #[test]
    fn v3_keys_on_a_v2c_source_are_errors_naming_the_version() {
        let p = load(
            &format!("{V2C}\nusername = \"fb\"\npriv_protocol = \"aes128\""),
            r#"oid = "1.3.6.1.2.1.33.1.2.3.0""#,
        )
        .unwrap_err();
        assert!(
            p.iter().any(
                |e| e.starts_with("sources[0].username: applies to version \"3\"")
                    && e.contains("this source is version \"2c\"")
            ),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|e| e.starts_with("sources[0].priv_protocol: applies to version \"3\"")),
            "{p:?}"
        );
    }

    #[test]
    fn a_v3_source_needs_its_user_and_auth_and_the_cipher_needs_its_password() {
        let p = load(
            r#"url = "udp://10.20.0.33:1161"
version = "3"
community_file = "/etc/c"
auth_protocol = "md5"
priv_protocol = "aes128""#,
            r#"oid = "1.3.6.1.2.1.33.1.2.3.0""#,
        )
        .unwrap_err();
        for expected in [
            "sources[0].community_file: applies to version \"2c\" only",
            "sources[0].username: missing",
            "sources[0].auth_protocol: unknown auth protocol `md5`",
            "sources[0].auth_password_file: missing",
            "sources[0].priv_password_file: missing: priv_protocol \"aes128\"",
        ] {
            assert!(
                p.iter().any(|e| e.starts_with(expected)),
                "{expected}: {p:?}"
            );
        }
    }

    #[test]
    fn a_v3_source_reads_as_written() {
        let config = load(
            r#"url = "udp://10.20.0.33"
version = "3"
username = "firebreak"
auth_protocol = "sha256"
auth_password_file = "/etc/firebreak/snmp.auth"
priv_protocol = "aes128"
priv_password_file = "/etc/firebreak/snmp.priv"
retries = 0"#,
            r#"oid = "1.3.6.1.2.1.33.1.2.3.0""#,
        )
        .unwrap();
        let crate::config::SourceSpec::Snmp(s) = &config.sources[0].spec else {
            panic!("an snmp source")
        };
        assert_eq!(
            s.describe(),
            "snmp v3 user firebreak (sha256, priv aes128) udp://10.20.0.33:161, every 1s, timeout 1s x1"
        );
        assert_eq!(
            s.secret_files(),
            [
                (
                    "auth_password_file",
                    PathBuf::from("/etc/firebreak/snmp.auth")
                ),
                (
                    "priv_password_file",
                    PathBuf::from("/etc/firebreak/snmp.priv")
                )
            ]
        );
    }

    #[test]
    fn a_version_or_url_that_is_not_snmp_is_an_error() {
        let p = load(
            r#"url = "tcp://10.20.0.33:161"
version = "1"
retries = 99"#,
            r#"oid = "1.3.6.1.2.1.33.1.2.3.0""#,
        )
        .unwrap_err();
        for expected in [
            "sources[0].url: `tcp://10.20.0.33:161` is not an SNMP URL",
            "sources[0].version: unknown SNMP version `1`",
            "sources[0].retries: 99 is out of range",
        ] {
            assert!(
                p.iter().any(|e| e.starts_with(expected)),
                "{expected}: {p:?}"
            );
        }
    }

    #[test]
    fn a_sensor_names_a_numeric_oid_and_equals_goes_alone() {
        let p = load(
            V2C,
            r#"oid = "upsEstimatedMinutesRemaining.0"
equals = 5
scale = 60.0
register = { table = "input", address = 1, type = "u16" }"#,
        )
        .unwrap_err();
        for expected in [
            "sensors[0].oid: `upsEstimatedMinutesRemaining.0` ",
            "sensors[0].equals: equals gives 0/1",
            "sensors[0].register: does not apply to a `snmp` source",
        ] {
            assert!(
                p.iter().any(|e| e.starts_with(expected)),
                "{expected}: {p:?}"
            );
        }
    }
}
