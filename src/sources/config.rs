//! Source types: one folder each (`modbus/`, `mqtt/`, `snmp/`, `bacnet/`), whose `config.rs` owns the type's
//! keys, their pure validation and the built source; one line in [`with_source_types!`]
//! registers a type.
//!
//! Like a runbook step folder, a source folder spans two layers: `config.rs` is
//! configuration (it imports only `config::collect`, `config::units` and pure grammars such
//! as `mqtt_topic` and `nut/proto.rs`, so `config` may use it without importing anything that does I/O); the
//! rest of the folder is the source task. The keys every source has (`name`, `type`, `url`)
//! are read by `config`; the rest are read into the type's raw struct with
//! `config::collect::read_keys`, so an unknown key, or a key of the other type, is reported
//! by name and line.

use crate::config::collect::{read_keys, Collector};
use crate::config::fields;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::time::Duration;

pub use super::bacnet::config::BacnetSource;
pub use super::modbus::config::{ModbusLink, ModbusSource, Parity};
pub use super::mqtt::config::MqttSource;
pub use super::nut::config::NutSource;
pub use super::snmp::config::SnmpSource;
use crate::config::model::SensorInput;

/// How a source type's keys become a source.
pub trait SourceConfig: Sized {
    /// The type's own keys as written (every field optional: validation reports what is
    /// missing, with its path).
    type Raw: DeserializeOwned;

    /// Checks the keys, reporting every problem at `{path}.{key}`. `name` and `url` are
    /// the source's common keys (already reported when missing).
    fn validate(
        c: &mut Collector,
        path: &str,
        name: Option<&str>,
        url: Option<&str>,
        raw: Self::Raw,
    ) -> Option<Self>;

    /// How often a reading is expected (the detection core sizes its rate-of-rise windows
    /// with it): a polled source's poll interval, a pushed one's typical rate.
    fn expected_interval(&self) -> Duration;

    /// Whether the source is one device, whose sensors fail together (a Modbus unit), not
    /// a channel many devices share (an MQTT broker).
    fn is_one_device(&self) -> bool;

    /// The keys a sensor on this source takes besides the ones every sensor has (`id`,
    /// `zone`, `kind`, `source`, the detection overrides, `sentinels`): where on the
    /// device its value is (a register, a topic, a variable, an OID).
    type SensorRaw: DeserializeOwned;

    /// Checks a sensor's own keys, reporting every problem at `{path}.{key}`. Needs no
    /// source, so that a sensor whose source is misnamed is still checked.
    fn sensor_input(c: &mut Collector, path: &str, raw: Self::SensorRaw) -> Option<SensorInput>;

    /// One line for `check-config`: what the source is and how it is read
    /// (`modbus tcp://10.0.0.5:502 unit 1, every 500ms`).
    fn describe(&self) -> String;
}

/// The list of source types: `type` name => `SourceSpec` variant (the type's built source
/// in its folder's `config.rs`). Adding a source type is a folder under `src/sources/` and
/// one line here (and its task in `agent.rs`'s source start-up, its summary in
/// `check-config`).
macro_rules! with_source_types {
    ($then:ident) => {
        $then! {
            modbus => Modbus(ModbusSource),
            mqtt => Mqtt(MqttSource),
            nut => Nut(NutSource),
            snmp => Snmp(SnmpSource),
            bacnet => Bacnet(BacnetSource),
        }
    };
}

macro_rules! define_sources {
    ($($name:ident => $Variant:ident($Spec:ident)),* $(,)?) => {
        /// A configured source's protocol and settings: one variant per source type.
        #[derive(Debug, Clone)]
        pub enum SourceSpec {
            $($Variant($Spec),)*
        }

        /// Every source type's name, as written in `type = "..."`.
        pub const TYPE_NAMES: &[&str] = &[$(stringify!($name)),*];

        impl SourceSpec {
            /// The source type's name, as written in `type = "..."`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(SourceSpec::$Variant(_) => stringify!($name),)*
                }
            }

            /// How often a reading is expected ([`SourceConfig::expected_interval`]).
            pub fn expected_interval(&self) -> Duration {
                match self {
                    $(SourceSpec::$Variant(s) => s.expected_interval(),)*
                }
            }

            /// Whether the source is one device ([`SourceConfig::is_one_device`]).
            pub fn is_one_device(&self) -> bool {
                match self {
                    $(SourceSpec::$Variant(s) => s.is_one_device(),)*
                }
            }

            /// One line for `check-config` ([`SourceConfig::describe`]).
            pub fn describe(&self) -> String {
                match self {
                    $(SourceSpec::$Variant(s) => s.describe(),)*
                }
            }

            /// Reads a sensor's source-specific keys (`params`: every key but the ones all
            /// sensors have) as a sensor on this source.
            pub fn sensor_input(
                &self,
                c: &mut Collector,
                path: &str,
                params: BTreeMap<String, ::config::Value>,
            ) -> Option<SensorInput> {
                sensor_input_of(c, path, self.type_name(), params)
            }
        }

        /// Reads a sensor's source-specific keys as a sensor on a source of type `kind`.
        fn sensor_input_of(
            c: &mut Collector,
            path: &str,
            kind: &str,
            params: BTreeMap<String, ::config::Value>,
        ) -> Option<SensorInput> {
            let elsewhere = |key: &str| {
                TYPE_NAMES
                    .iter()
                    .any(|other| *other != kind && sensor_keys_of(other).contains(&key))
            };
            match kind {
                $(stringify!($name) => {
                    let raw = read_keys::<<$Spec as SourceConfig>::SensorRaw>(
                        c, path, "source's sensor", kind, params, &elsewhere,
                    )?;
                    <$Spec as SourceConfig>::sensor_input(c, path, raw)
                })*
                _ => None,
            }
        }

        /// The keys a sensor on a source of this type takes.
        fn sensor_keys_of(kind: &str) -> &'static [&'static str] {
            match kind {
                $(stringify!($name) => fields::of::<<$Spec as SourceConfig>::SensorRaw>(),)*
                _ => &[],
            }
        }

        /// The keys a source type takes (its raw struct's fields).
        fn keys_of(kind: &str) -> &'static [&'static str] {
            match kind {
                $(stringify!($name) => fields::of::<<$Spec as SourceConfig>::Raw>(),)*
                _ => &[],
            }
        }

        /// Reads and checks the keys of a source of type `kind`; `None` for an unknown type.
        fn validate_kind(
            c: &mut Collector,
            path: &str,
            kind: &str,
            name: Option<&str>,
            url: Option<&str>,
            params: BTreeMap<String, ::config::Value>,
        ) -> Option<Option<SourceSpec>> {
            match kind {
                $(stringify!($name) => Some(
                    read::<$Spec>(c, path, kind, name, url, params).map(SourceSpec::$Variant)
                ),)*
                _ => None,
            }
        }
    };
}

with_source_types!(define_sources);

/// Checks the source-specific keys of a sensor whose source is unknown (a typo, reported
/// already) as those of the first source type that takes every one of them, so that their
/// own mistakes are reported in the same pass.
pub fn check_sensor_keys_without_source(
    c: &mut Collector,
    path: &str,
    params: BTreeMap<String, ::config::Value>,
) {
    if params.is_empty() {
        return;
    }
    let fits = |kind: &&&str| {
        params
            .keys()
            .all(|k| sensor_keys_of(kind).contains(&k.as_str()))
    };
    if let Some(kind) = TYPE_NAMES.iter().find(fits) {
        let _ = sensor_input_of(c, path, kind, params);
    }
}

/// `"modbus", "mqtt" or "nut"`: the known types, for messages.
fn type_list() -> String {
    let quoted: Vec<String> = TYPE_NAMES.iter().map(|t| format!("\"{t}\"")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Reads a source's own keys (`params`: every key but `name`, `type` and `url`) as a source
/// of type `kind`. Reports a missing or unknown type, unknown keys (and keys of another type
/// as such), type errors and the type's own validation problems.
pub fn validate(
    c: &mut Collector,
    path: &str,
    name: Option<&str>,
    kind: Option<&str>,
    url: Option<&str>,
    params: BTreeMap<String, ::config::Value>,
) -> Option<SourceSpec> {
    let Some(kind) = kind else {
        c.err(
            format!("{path}.type"),
            format!("missing (required): {}", type_list()),
        );
        return None;
    };
    match validate_kind(c, path, kind, name, url, params) {
        Some(spec) => spec,
        None => {
            c.err(
                format!("{path}.type"),
                format!("unknown source type `{kind}` ({})", type_list()),
            );
            None
        }
    }
}

fn read<T: SourceConfig>(
    c: &mut Collector,
    path: &str,
    kind: &str,
    name: Option<&str>,
    url: Option<&str>,
    params: BTreeMap<String, ::config::Value>,
) -> Option<T> {
    let elsewhere = |key: &str| {
        TYPE_NAMES
            .iter()
            .any(|other| *other != kind && keys_of(other).contains(&key))
    };
    let raw = read_keys::<T::Raw>(c, path, "source", kind, params, &elsewhere)?;
    T::validate(c, path, name, url, raw)
}

/// A duration every polled source takes (`poll_interval`, `timeout`): `default` when
/// absent, and more than 0.
pub fn positive_duration(
    c: &mut Collector,
    path: &str,
    key: &str,
    v: &Option<String>,
    default: Duration,
) -> Duration {
    let d = c.duration(&format!("{path}.{key}"), v, default);
    if d.is_zero() {
        c.err(format!("{path}.{key}"), "must be more than 0");
    }
    d
}

/// `reconnect_max`, which every source type takes: the cap of its exponential reconnect
/// backoff. Default 30 s.
pub fn reconnect_max(c: &mut Collector, path: &str, v: &Option<String>) -> Duration {
    let d = c.duration(&format!("{path}.reconnect_max"), v, Duration::from_secs(30));
    if d < Duration::from_millis(250) || d > Duration::from_secs(3600) {
        c.err(
            format!("{path}.reconnect_max"),
            "must be between 250ms (the first retry) and 1h",
        );
    }
    d
}

#[cfg(test)]
mod tests {
    fn problems(source: &str) -> Vec<String> {
        let text = format!(
            r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-unit"

[[sources]]
{source}

[[sensors]]
id = "t1"
zone = "z"
kind = "temperature"
source = "env"
register = {{ table = "input", address = 0, type = "i16" }}

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
        match crate::config::load_str(&text, "unit", Default::default()) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_wrong_key_of_a_source_is_reported_at_once_with_its_line() {
        let p = problems(
            r#"name = "env"
type = "modbus"
url = "tcp://127.0.0.1:1502"
unti = 1
keep_alive = "15s"
poll_interval = 5"#,
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p.contains(&"sources[0].unti: unknown key `unti` (line 10)".to_string()),
            "{p:?}"
        );
        assert!(
            p.contains(
                &"sources[0].keep_alive: does not apply to a `modbus` source (line 11)".to_string()
            ),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|e| e.starts_with("sources[0].poll_interval: ") && e.contains("line 12")),
            "{p:?}"
        );
    }

    #[test]
    fn a_missing_or_unknown_source_type_names_the_known_ones() {
        let missing = problems("name = \"env\"\nurl = \"tcp://127.0.0.1:1502\"");
        assert!(
            missing.iter().any(|e| e.starts_with(
                r#"sources[0].type: missing (required): "modbus", "mqtt", "nut", "snmp" or "bacnet""#
            )),
            "{missing:?}"
        );
        let unknown = problems("name = \"env\"\ntype = \"opcua\"\nurl = \"tcp://127.0.0.1:1502\"");
        assert!(
            unknown.iter().any(|e| e.starts_with(
                r#"sources[0].type: unknown source type `opcua` ("modbus", "mqtt", "nut", "snmp" or "bacnet")"#
            )),
            "{unknown:?}"
        );
    }

    #[test]
    fn a_source_says_how_often_it_reads() {
        let config = crate::config::load_str(
            r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-unit"

[[sources]]
name = "env"
type = "modbus"
url = "tcp://127.0.0.1:1502"
poll_interval = "2s"

[[sources]]
name = "bus"
type = "mqtt"
url = "mqtt://127.0.0.1:1883"

[[sensors]]
id = "t1"
zone = "z"
kind = "temperature"
source = "env"
register = { table = "input", address = 0, type = "i16" }

[[zones]]
id = "z"
runbook = "r"

[[runbooks]]
name = "r"

[[runbooks.steps]]
name = "drain"
type = "wait"
duration = "1s"
"#,
            "unit",
            Default::default(),
        )
        .expect("valid")
        .config;
        let intervals: Vec<_> = config
            .sources
            .iter()
            .map(|s| (s.spec.type_name(), s.spec.expected_interval()))
            .collect();
        assert_eq!(
            intervals,
            [
                ("modbus", std::time::Duration::from_secs(2)),
                ("mqtt", std::time::Duration::from_millis(250))
            ]
        );
    }
}
