//! Runbook step types: one folder each, registered by one line in [`with_step_types!`].
//!
//! A step folder spans two layers:
//! - `mod.rs` is configuration: the raw keys (serde), their pure validation into the shared
//!   [`Collector`], the built step, its summary for `check-config` and dry runs, its secret
//!   files. It imports only `config::collect`, `config::units`, `dns` and the sources'
//!   own configuration layer (`sources::<kind>::config`, `sources::modbus::decode`), so
//!   `config` may use it without importing anything that does I/O.
//! - `run.rs` is the runner and verifier, used by the step engine in `runbook/mod.rs`. Its
//!   `execute` is the one entry the engine calls.
//! - `README.md` shows a sample.
//!
//! A step's common keys are read by `config`, the rest are kept as values, and
//! [`validate`] reads them into the chosen type's raw struct with `config::collect::read_keys`
//! (its Design note says why the step enum is not `#[serde(tag = "type")]`), so every
//! unknown key is reported, by name and line, and a key that belongs to another step type
//! says so. Sources are read the same way (`sources/config.rs`).

use crate::config::collect::{read_keys, Collector};
use crate::config::fields;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The time limit of a step that sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Values templates may use: `{{agent}} {{zone}} {{level}} {{incident}} {{cause}} {{runbook}}`.
pub const TEMPLATE_VARS: [&str; 6] = ["agent", "zone", "level", "incident", "cause", "runbook"];

/// What a step's validation needs beyond its own keys.
pub struct Refs<'a> {
    /// Resolves a required reference to an MQTT source: its index and name, or a problem
    /// reported at the given path.
    #[allow(clippy::type_complexity)]
    pub mqtt_source: &'a dyn Fn(&mut Collector, &str, &Option<String>) -> Option<(usize, String)>,
    /// The same for a Modbus source.
    #[allow(clippy::type_complexity)]
    pub modbus_source: &'a dyn Fn(&mut Collector, &str, &Option<String>) -> Option<(usize, String)>,
}

/// What every configured step can say about itself.
pub trait StepInfo {
    /// One line for `check-config` and dry runs, starting with the type's name.
    fn describe(&self) -> String;

    /// Whether running the step again after an interruption cannot do harm.
    fn is_idempotent(&self) -> bool {
        true
    }

    /// What the step writes to a device in the room, for `check-config`'s list of every
    /// write a config can make (`None`: the step writes to no device).
    fn device_write(&self) -> Option<String> {
        None
    }

    /// Files whose contents are secrets, by key (checked for permissions at start).
    fn secret_files(&self) -> Vec<(&'static str, PathBuf)> {
        Vec::new()
    }

    /// The step's time limit from the `timeout` it was given (already checked to be more
    /// than 0), reporting a limit that cannot work.
    fn timeout(&self, _c: &mut Collector, _path: &str, given: Option<Duration>) -> Duration {
        given.unwrap_or(DEFAULT_TIMEOUT)
    }

    /// How long the step is expected to take, to decide which `should` steps to skip: its
    /// timeout (one attempt at worst) unless the type knows better.
    fn expected_duration(&self, timeout: Duration) -> Duration {
        timeout
    }
}

/// How a step type's keys become a step.
pub trait StepConfig: StepInfo + Sized {
    /// The type's own keys as written (every field optional: validation reports what is
    /// missing, with its path).
    type Raw: DeserializeOwned;

    /// Checks the keys, reporting every problem at `{path}.{key}`.
    fn validate(c: &mut Collector, path: &str, raw: Self::Raw, refs: &Refs) -> Option<Self>;
}

/// The list of step types: `type` name => `Action` variant (the step's type in its folder).
/// Adding a step type is a folder under `src/runbook/steps/` and one line here.
macro_rules! with_step_types {
    ($then:ident) => {
        $then! {
            dns_update => DnsUpdate(DnsStep),
            haproxy => Haproxy(HaproxyStep),
            http => Http(HttpStep),
            command => Command(CommandStep),
            mqtt_publish => MqttPublish(MqttPublishStep),
            modbus_write => ModbusWrite(ModbusWriteStep),
            wait => Wait(WaitStep),
        }
    };
}
pub(crate) use with_step_types;

macro_rules! define_steps {
    ($($name:ident => $Variant:ident($Step:ident)),* $(,)?) => {
        $(pub mod $name;)*
        $(pub use $name::$Step;)*

        /// A configured step's action: one variant per step type.
        #[derive(Debug, Clone)]
        pub enum Action {
            $($Variant($Step),)*
        }

        /// Every step type's name, as written in `type = "..."`.
        pub const TYPE_NAMES: &[&str] = &[$(stringify!($name)),*];

        impl Action {
            /// The step type's name, as written in `type = "..."`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Action::$Variant(_) => stringify!($name),)*
                }
            }

            /// The step, as what every step can say about itself.
            pub fn info(&self) -> &dyn StepInfo {
                match self {
                    $(Action::$Variant(s) => s,)*
                }
            }
        }

        /// The keys a step type takes (its raw struct's fields).
        fn keys_of(kind: &str) -> &'static [&'static str] {
            match kind {
                $(stringify!($name) => fields::of::<<$Step as StepConfig>::Raw>(),)*
                _ => &[],
            }
        }

        /// Reads and checks the keys of a step of type `kind`; `None` for an unknown type.
        fn validate_kind(
            c: &mut Collector,
            path: &str,
            kind: &str,
            params: BTreeMap<String, ::config::Value>,
            refs: &Refs,
        ) -> Option<Option<Action>> {
            match kind {
                $(stringify!($name) => Some(
                    read::<$Step>(c, path, kind, params, refs).map(Action::$Variant)
                ),)*
                _ => None,
            }
        }
    };
}

with_step_types!(define_steps);

impl Action {
    pub fn describe(&self) -> String {
        self.info().describe()
    }

    /// Whether running the step again after an interruption cannot do harm: DNS replace,
    /// HAProxy state, HTTP with an Idempotency-Key, MQTT publish, Modbus writes and waits
    /// are; a command is only when it says so.
    pub fn is_idempotent(&self) -> bool {
        self.info().is_idempotent()
    }
}

/// Reads a step's own keys (`params`: every key but the common ones) as a step of type
/// `kind`. Reports an unknown type, unknown keys (and keys of another type as such), type
/// errors and the type's own validation problems.
pub fn validate(
    c: &mut Collector,
    path: &str,
    kind: &str,
    params: BTreeMap<String, ::config::Value>,
    refs: &Refs,
) -> Option<Action> {
    match validate_kind(c, path, kind, params, refs) {
        Some(action) => action,
        None => {
            c.err(
                format!("{path}.type"),
                format!("unknown step type `{kind}` ({})", TYPE_NAMES.join(", ")),
            );
            None
        }
    }
}

fn read<T: StepConfig>(
    c: &mut Collector,
    path: &str,
    kind: &str,
    params: BTreeMap<String, ::config::Value>,
    refs: &Refs,
) -> Option<T> {
    let elsewhere = |key: &str| {
        TYPE_NAMES
            .iter()
            .any(|other| *other != kind && keys_of(other).contains(&key))
    };
    let raw = read_keys::<T::Raw>(c, path, "step", kind, params, &elsewhere)?;
    T::validate(c, path, raw, refs)
}

/// Reports `{{placeholders}}` that are not known template variables.
pub fn check_template(c: &mut Collector, path: &str, text: &str) {
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let var = after[..end].trim();
                if !TEMPLATE_VARS.contains(&var) {
                    c.err(
                        path,
                        format!(
                            "unknown placeholder `{{{{{var}}}}}` (known: {})",
                            TEMPLATE_VARS.map(|v| format!("{{{{{v}}}}}")).join(" ")
                        ),
                    );
                }
                rest = &after[end + 2..];
            }
            None => {
                c.err(path, "unclosed `{{` placeholder");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TYPE_NAMES;

    fn problems(step: &str) -> Vec<String> {
        let text = format!(
            r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-unit"

[[sources]]
name = "env"
type = "modbus"
url = "tcp://127.0.0.1:1502"
unit = 1

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
{step}
"#
        );
        match crate::config::load_str(&text, "unit", Default::default()) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn every_wrong_key_of_a_step_is_reported_at_once_with_its_line() {
        let p = problems(
            r#"name = "move"
type = "dns_update"
server = "127.0.0.1:53"
zone = "example.test"
record = "app.example.test"
rtype = "A"
values = ["198.51.100.20"]
recrod = "typo"
url = "http://127.0.0.1/"
ttl = "thirty""#,
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p.contains(&"runbooks[0].steps[0].recrod: unknown key `recrod` (line 34)".to_string()),
            "{p:?}"
        );
        assert!(
            p.contains(
                &"runbooks[0].steps[0].url: does not apply to a `dns_update` step (line 35)"
                    .to_string()
            ),
            "{p:?}"
        );
        assert!(
            p.iter().any(|e| e
                .starts_with("runbooks[0].steps[0].ttl: invalid type: string \"thirty\"")
                && e.ends_with("(line 36)")),
            "{p:?}"
        );
    }

    #[test]
    fn an_unknown_step_type_lists_the_known_ones() {
        let p = problems("name = \"x\"\ntype = \"teleport\"");
        assert_eq!(
            p,
            [format!(
                "runbooks[0].steps[0].type: unknown step type `teleport` ({}) (line 28)",
                TYPE_NAMES.join(", ")
            )]
        );
    }

    #[test]
    fn a_wait_longer_than_its_timeout_is_refused_and_without_one_sets_it() {
        let p = problems("name = \"w\"\ntype = \"wait\"\nduration = \"10s\"\ntimeout = \"5s\"");
        assert_eq!(
            p,
            ["runbooks[0].steps[0].timeout: is shorter than the wait's duration (line 30)"]
        );
    }
}
