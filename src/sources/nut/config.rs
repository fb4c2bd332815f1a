//! The keys of a `nut` source (a UPS served by a Network UPS Tools `upsd`), their validation
//! and the built source. Configuration layer: imports only `config` helpers and the
//! protocol's pure grammar (`proto.rs`; see `sources/config.rs`).

use super::proto::StatusFlag;
use crate::config::collect::Collector;
use crate::config::model::SensorInput;
use crate::config::units::split_host_port;
use crate::sources::config::{positive_duration, reconnect_max, SourceConfig};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// upsd's port (IANA "nut").
pub const DEFAULT_PORT: u16 = 3493;

/// The keys of a `nut` source as written (besides `name`, `type`, `url`).
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    /// The UPS's name in upsd (`upsc -l` lists them).
    pub ups: Option<String>,
    /// The upsd user for privileged commands (the `nut_fsd` step); reads need none.
    pub username: Option<String>,
    pub password_file: Option<String>,
    /// CA of upsd's certificate for `nuts://` (STARTTLS); default: the system roots.
    pub ca_file: Option<String>,
    /// Default "1s".
    pub poll_interval: Option<String>,
    /// Connect and per-request limit. Default "1s".
    pub timeout: Option<String>,
    /// Cap of the exponential reconnect backoff. Default "30s".
    pub reconnect_max: Option<String>,
}

/// Where upsd listens and how to talk to it: one connection per distinct value, shared by
/// every NUT source on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upsd {
    pub host: String,
    pub port: u16,
    /// `nuts://`: `STARTTLS` before anything else.
    pub tls: Option<StartTls>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StartTls {
    pub ca_file: Option<PathBuf>,
}

impl Upsd {
    /// As written in `url` (with the port).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "nuts" } else { "nut" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The keys of a sensor on a `nut` source: the variable it reads.
#[derive(Debug, Default, Deserialize)]
pub struct SensorRaw {
    /// The NUT variable (`battery.runtime`, `battery.charge`, `ups.temperature`,
    /// `input.voltage`, `ups.status`, ...).
    pub variable: Option<String>,
    /// With `variable = "ups.status"`: the flag read as 1 while present, else 0. Default
    /// "OB" (on battery).
    pub status_flag: Option<String>,
    /// A numeric variable's value is `raw * scale + offset`. Default 1 and 0.
    pub scale: Option<f64>,
    pub offset: Option<f64>,
}

/// The variable holding the UPS's status flags.
pub const STATUS_VARIABLE: &str = "ups.status";

/// What a sensor on a NUT source reads: one variable of its UPS.
#[derive(Debug, Clone, PartialEq)]
pub struct NutInput {
    pub variable: String,
    pub read: NutRead,
}

/// How a variable's text becomes a reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NutRead {
    /// A number, `raw * scale + offset`.
    Number { scale: f64, offset: f64 },
    /// 1 while `ups.status` holds the flag, else 0.
    Flag(StatusFlag),
}

#[derive(Debug, Clone)]
pub struct NutSource {
    pub upsd: Upsd,
    pub ups: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub reconnect_max: Duration,
}

impl SourceConfig for NutSource {
    type Raw = Raw;
    type SensorRaw = SensorRaw;

    /// `ups.status` is text: a sensor on it reads one flag as 0/1 (`status_flag`, "OB"
    /// when left out, so that `variable = "ups.status"` alone is the on-battery signal).
    /// Every other variable is read as a number.
    fn sensor_input(c: &mut Collector, path: &str, s: SensorRaw) -> Option<SensorInput> {
        let variable = c
            .required_str(&format!("{path}.variable"), &s.variable)
            .and_then(|v| {
                if v.chars()
                    .any(|ch| ch.is_whitespace() || ch.is_control() || ch == '"')
                {
                    c.err(
                        format!("{path}.variable"),
                        format!(
                            "`{v}` is not a NUT variable name (`battery.runtime`, `ups.status`)"
                        ),
                    );
                    None
                } else {
                    Some(v.to_string())
                }
            });
        let is_status = variable.as_deref() == Some(STATUS_VARIABLE);
        let flag = match s.status_flag.as_deref() {
            None => StatusFlag::Ob,
            Some(f) => match StatusFlag::parse(f) {
                Some(flag) => flag,
                None => {
                    c.err(
                        format!("{path}.status_flag"),
                        format!(
                            "unknown ups.status flag `{f}` (one of {})",
                            StatusFlag::names().join(", ")
                        ),
                    );
                    StatusFlag::Ob
                }
            },
        };
        if s.status_flag.is_some() && variable.is_some() && !is_status {
            c.err(
                format!("{path}.status_flag"),
                format!("applies only to variable = \"{STATUS_VARIABLE}\""),
            );
        }
        let read = if is_status {
            for (key, set) in [("scale", s.scale.is_some()), ("offset", s.offset.is_some())] {
                if set {
                    c.err(
                        format!("{path}.{key}"),
                        "does not apply to a status flag (its value is 0 or 1)",
                    );
                }
            }
            NutRead::Flag(flag)
        } else {
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
            NutRead::Number { scale, offset }
        };
        variable.map(|variable| SensorInput::Nut(NutInput { variable, read }))
    }

    fn describe(&self) -> String {
        format!(
            "nut {} ups {}{}, every {}",
            self.upsd.url(),
            self.ups,
            if self.upsd.tls.is_some() {
                " (STARTTLS)"
            } else {
                ""
            },
            crate::config::units::format_duration(self.poll_interval)
        )
    }

    /// One UPS: its variables come from one driver and fail together.
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
        // Design: 1 s, as Modbus. A poll is one `LIST VAR` on an open connection, cheap
        // for upsd; its data is as fresh as its driver's (dummy-ups and most serial
        // drivers poll every 2 s), and 1 s keeps the sensors far inside the default
        // `stale_after` (5 s) when a poll is lost.
        let poll_interval = positive_duration(
            c,
            path,
            "poll_interval",
            &s.poll_interval,
            Duration::from_secs(1),
        );
        let timeout = positive_duration(c, path, "timeout", &s.timeout, Duration::from_secs(1));
        let ups =
            c.required_str(&format!("{path}.ups"), &s.ups)
                .and_then(|u| match check_ups_name(u) {
                    Ok(()) => Some(u.to_string()),
                    Err(e) => {
                        c.err(format!("{path}.ups"), e);
                        None
                    }
                });
        if let Some(u) = &s.username {
            if u.trim().is_empty() || u.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                c.err(
                    format!("{path}.username"),
                    format!("`{u}` is not a upsd user name (no spaces)"),
                );
            }
        }
        if s.password_file.is_some() != s.username.is_some() {
            let (key, why) = if s.username.is_some() {
                (
                    "password_file",
                    "username is set but password_file is missing",
                )
            } else {
                ("username", "password_file is set but username is missing")
            };
            c.err(format!("{path}.{key}"), why);
        }
        let upsd = url.and_then(|u| match parse_nut_url(u) {
            Ok((host, port, tls)) => Some(Upsd {
                host,
                port,
                tls: tls.then(|| StartTls {
                    ca_file: s.ca_file.as_deref().map(PathBuf::from),
                }),
            }),
            Err(e) => {
                c.err(format!("{path}.url"), e);
                None
            }
        });
        if upsd.as_ref().is_some_and(|u| u.tls.is_none()) && s.ca_file.is_some() {
            c.err(
                format!("{path}.ca_file"),
                "applies only to nuts:// (STARTTLS)",
            );
        }
        Some(NutSource {
            upsd: upsd?,
            ups: ups?,
            username: s.username,
            password_file: s.password_file.map(PathBuf::from),
            poll_interval,
            timeout,
            reconnect_max,
        })
    }
}

/// `nut://host[:port]` or `nuts://host[:port]` (port 3493 by default): host, port and
/// whether to use STARTTLS.
pub fn parse_nut_url(u: &str) -> Result<(String, u16, bool), String> {
    let (rest, tls) = if let Some(r) = u.strip_prefix("nut://") {
        (r, false)
    } else if let Some(r) = u.strip_prefix("nuts://") {
        (r, true)
    } else {
        return Err(format!(
            "`{u}` is not a upsd URL (nut://host:3493, or nuts://host:3493 for STARTTLS)"
        ));
    };
    if rest.contains('@') {
        return Err(format!(
            "`{u}`: name the UPS with `ups`, not in the URL (upsc's ups@host form)"
        ));
    }
    let (host, port) = split_host_port(rest.trim_end_matches('/'), DEFAULT_PORT)
        .map_err(|e| format!("`{u}`: {e}"))?;
    Ok((host, port, tls))
}

/// A UPS name as upsd's `ups.conf` sections have them: one word, no quotes.
fn check_ups_name(u: &str) -> Result<(), String> {
    if let Some((ups, _)) = u.split_once('@') {
        return Err(format!(
            "`{u}`: the UPS's name only (`{ups}`); upsd's address is the source's url"
        ));
    }
    if u.chars()
        .any(|ch| ch.is_whitespace() || ch.is_control() || ch == '"' || ch == '\\')
    {
        return Err(format!(
            "`{u}` is not a UPS name (one word, as in upsd's ups.conf)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, SourceSpec};

    /// A config with a NUT source (`source` keys), a Modbus one, `sensors` and `steps`.
    fn load(source: &str, sensors: &str, steps: &str) -> Result<Config, Vec<String>> {
        let text = format!(
            r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-unit"

[[sources]]
name = "ups"
type = "nut"
{source}

[[sources]]
name = "env"
type = "modbus"
url = "tcp://127.0.0.1:1502"

[[sensors]]
id = "t1"
zone = "z"
kind = "temperature"
source = "env"
register = {{ table = "input", address = 0, type = "i16" }}

{sensors}

[[zones]]
id = "z"
runbook = "r"

[[runbooks]]
name = "r"

[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"

{steps}
"#
        );
        crate::config::load_str(&text, "unit", Default::default())
            .map(|l| l.config)
            .map_err(|e| e.errors.iter().map(ToString::to_string).collect())
    }

    const SOURCE: &str = r#"url = "nut://10.20.0.31:3493"
ups = "ups-b3-1"
username = "firebreak"
password_file = "/etc/firebreak/nut.password""#;

    fn sensor(id: &str, keys: &str) -> String {
        format!("[[sensors]]\nid = \"{id}\"\nzone = \"z\"\nkind = \"on_battery\"\nsource = \"ups\"\n{keys}\n")
    }

    fn input(c: &Config, id: &str) -> NutInput {
        match &c.sensors.iter().find(|s| s.id == id).unwrap().input {
            SensorInput::Nut(n) => n.clone(),
            other => panic!("{other:?}"),
        }
    }

    /// The NUT parts of the shared contract (contract/integrations.toml), as written there.
    const CONTRACT: &str = r#"
[agent]
name = "pangyo-b3"
state_dir = "/var/lib/firebreak"

[[sources]]
name = "nut-b3"                              # Network UPS Tools upsd (TCP 3493)
type = "nut"
url = "nut://10.20.0.31:3493"                # "nuts://" = STARTTLS, with ca_file
ups = "ups-b3-1"                             # the UPS name upsd knows
username = "firebreak"
password_file = "/etc/firebreak/nut.password"
poll_interval = "1s"
timeout = "1s"

[[sensors]]
id = "ups-b3-1.on_battery"
zone = "b3-battery-room"
kind = "on_battery"
source = "nut-b3"
variable = "ups.status"
status_flag = "OB"                           # 1 while ups.status holds the flag, else 0

[[sensors]]
id = "ups-b3-1.runtime"
zone = "b3-battery-room"
kind = "runtime"
source = "nut-b3"
variable = "battery.runtime"                 # seconds

[[zones]]
id = "b3-battery-room"
runbook = "evacuate-b3"
power_reserve = "5m"

[[runbooks]]
name = "evacuate-b3"
budget = "90s"

[[runbooks.steps]]
name = "shut down the hosts on ups-b3-1"
type = "nut_fsd"
source = "nut-b3"                            # FSD on the source's UPS; verified by FSD in ups.status
"#;

    #[test]
    fn the_contracts_nut_source_sensors_and_step_are_accepted_as_written() {
        let c = crate::config::load_str(CONTRACT, "contract", Default::default())
            .unwrap_or_else(|e| panic!("{:?}", e.errors))
            .config;
        assert_eq!(
            input(&c, "ups-b3-1.on_battery").read,
            NutRead::Flag(StatusFlag::Ob)
        );
        assert_eq!(input(&c, "ups-b3-1.runtime").variable, "battery.runtime");
        assert_eq!(c.runbooks[0].steps[0].action.type_name(), "nut_fsd");
    }

    #[test]
    fn a_nut_source_reads_its_keys_with_their_defaults() {
        let c = load(SOURCE, &sensor("ob", r#"variable = "ups.status""#), "").unwrap();
        let SourceSpec::Nut(n) = &c.sources[0].spec else {
            panic!("{:?}", c.sources[0].spec)
        };
        assert_eq!(n.upsd.url(), "nut://10.20.0.31:3493");
        assert_eq!(n.ups, "ups-b3-1");
        assert_eq!(n.poll_interval, Duration::from_secs(1));
        assert_eq!(n.timeout, Duration::from_secs(1));
        assert_eq!(n.reconnect_max, Duration::from_secs(30));
        assert_eq!(
            c.sources[0].spec.describe(),
            "nut nut://10.20.0.31:3493 ups ups-b3-1, every 1s"
        );
        assert!(c.secret_files().contains(&(
            "sources[0].password_file".into(),
            "/etc/firebreak/nut.password".into()
        )));
    }

    #[test]
    fn sensors_read_a_number_or_a_status_flag_and_ups_status_alone_is_on_battery() {
        let sensors = [
            sensor("ob", r#"variable = "ups.status""#),
            sensor("lb", "variable = \"ups.status\"\nstatus_flag = \"LB\""),
            sensor(
                "runtime",
                "variable = \"battery.runtime\"\nscale = 0.5\noffset = 1",
            ),
        ]
        .concat();
        let c = load(SOURCE, &sensors, "").unwrap();
        assert_eq!(input(&c, "ob").read, NutRead::Flag(StatusFlag::Ob));
        assert_eq!(input(&c, "lb").read, NutRead::Flag(StatusFlag::Lb));
        assert_eq!(
            input(&c, "runtime"),
            NutInput {
                variable: "battery.runtime".into(),
                read: NutRead::Number {
                    scale: 0.5,
                    offset: 1.0
                }
            }
        );
    }

    #[test]
    fn every_wrong_source_key_is_reported_at_its_path() {
        let p = load(
            r#"url = "nut://ups@10.0.0.1"
ca_file = "/etc/ca.pem"
password_file = "/etc/nut.pw"
poll_interval = "0s""#,
            &sensor("ob", r#"variable = "ups.status""#),
            "",
        )
        .unwrap_err();
        for want in [
            "sources[0].url: `nut://ups@10.0.0.1`: name the UPS with `ups`",
            "sources[0].ups: missing (required)",
            "sources[0].username: password_file is set but username is missing",
            "sources[0].poll_interval: must be more than 0",
        ] {
            assert!(p.iter().any(|e| e.starts_with(want)), "{want}\n{p:?}");
        }
        let p = load(
            "url = \"nut://10.0.0.1\"\nups = \"u\"\nca_file = \"/etc/ca.pem\"",
            "",
            "",
        )
        .unwrap_err();
        assert!(
            p.iter()
                .any(|e| e.starts_with("sources[0].ca_file: applies only to nuts://")),
            "{p:?}"
        );
    }

    #[test]
    fn a_status_flag_needs_ups_status_a_known_name_and_no_scale() {
        let sensors = [
            sensor("a", "variable = \"battery.charge\"\nstatus_flag = \"LB\""),
            sensor("b", "variable = \"ups.status\"\nstatus_flag = \"ONBATT\""),
            sensor("c", "variable = \"ups.status\"\nscale = 2.0"),
            sensor("d", "variable = \"battery runtime\""),
            sensor(
                "e",
                "register = { table = \"input\", address = 1, type = \"u16\" }",
            ),
        ]
        .concat();
        let p = load(SOURCE, &sensors, "").unwrap_err();
        for want in [
            "sensors[1].status_flag: applies only to variable = \"ups.status\"",
            "sensors[2].status_flag: unknown ups.status flag `ONBATT` (one of OL, OB, LB,",
            "sensors[3].scale: does not apply to a status flag",
            "sensors[4].variable: `battery runtime` is not a NUT variable name",
            "sensors[5].register: ",
            "sensors[5].variable: missing (required)",
        ] {
            assert!(p.iter().any(|e| e.starts_with(want)), "{want}\n{p:?}");
        }
    }

    #[test]
    fn an_fsd_step_needs_a_nut_source_with_credentials() {
        let step = |source: &str| {
            format!(
                "[[runbooks.steps]]\nname = \"fsd\"\ntype = \"nut_fsd\"\nsource = \"{source}\"\n"
            )
        };
        let ob = sensor("ob", r#"variable = "ups.status""#);
        let c = load(SOURCE, &ob, &step("ups")).unwrap();
        let fsd = &c.runbooks[0].steps[1];
        assert_eq!(
            fsd.action.describe(),
            "nut_fsd ups-b3-1 @ nut://10.20.0.31:3493 via ups"
        );
        assert!(fsd.action.is_idempotent());
        let p = load(SOURCE, &ob, &step("env")).unwrap_err();
        assert!(
            p.iter().any(|e| e.starts_with(
                "runbooks[0].steps[1].source: source `env` is not a NUT source (it is type \"modbus\")"
            )),
            "{p:?}"
        );
        let p = load("url = \"nut://10.0.0.1\"\nups = \"u\"", &ob, &step("ups")).unwrap_err();
        assert!(
            p.iter().any(|e| e.starts_with(
                "runbooks[0].steps[1].source: source `ups` has no username and password_file"
            )),
            "{p:?}"
        );
    }

    #[test]
    fn nut_urls_default_to_port_3493_and_nuts_means_starttls() {
        assert_eq!(
            parse_nut_url("nut://10.20.0.31"),
            Ok(("10.20.0.31".into(), 3493, false))
        );
        assert_eq!(
            parse_nut_url("nuts://ups.example:13493/"),
            Ok(("ups.example".into(), 13493, true))
        );
        assert_eq!(
            parse_nut_url("nut://[::1]:3493"),
            Ok(("::1".into(), 3493, false))
        );
        assert!(parse_nut_url("tcp://10.0.0.1:3493")
            .unwrap_err()
            .contains("nut://host:3493"));
        assert!(parse_nut_url("nut://ups@10.0.0.1")
            .unwrap_err()
            .contains("name the UPS with `ups`"));
    }

    #[test]
    fn a_ups_name_is_one_word_without_the_host() {
        assert!(check_ups_name("ups-b3-1").is_ok());
        assert!(check_ups_name("ups b3").is_err());
        assert!(check_ups_name("ups@10.0.0.1")
            .unwrap_err()
            .contains("(`ups`)"));
    }

    #[test]
    fn a_url_reads_back_as_written_with_its_port() {
        let upsd = Upsd {
            host: "::1".into(),
            port: 3493,
            tls: Some(StartTls { ca_file: None }),
        };
        assert_eq!(upsd.url(), "nuts://[::1]:3493");
    }
}
