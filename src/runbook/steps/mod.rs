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
    /// Resolves a required reference to a NUT source: its index, name and settings, or a
    /// problem reported at the given path.
    #[allow(clippy::type_complexity)]
    pub nut_source: &'a dyn Fn(
        &mut Collector,
        &str,
        &Option<String>,
    )
        -> Option<(usize, String, crate::sources::nut::config::NutSource)>,
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

    /// Whether the step raises something that stays open until its incident ends (a
    /// page), which `runbook::resolve_step` ends then.
    fn resolves_with_incident(&self) -> bool {
        false
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
            nut_fsd => NutFsd(NutFsdStep),
            wait => Wait(WaitStep),
            bgp_withdraw => BgpWithdraw(BgpStep),
            powerdns => PowerDns(PowerDnsStep),
            alertmanager => Alertmanager(AlertmanagerStep),
            pagerduty => Pagerduty(PagerdutyStep),
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

/// A fixed `http` or `https` URL (no placeholders) at `path`, reported when it is not one.
pub fn check_http_url(c: &mut Collector, path: &str, u: &str) -> Option<url::Url> {
    match url::Url::parse(u) {
        Ok(p) if (p.scheme() == "http" || p.scheme() == "https") && p.host().is_some() => Some(p),
        Ok(p) if p.host().is_none() => {
            c.err(path, format!("`{u}` has no host"));
            None
        }
        Ok(p) => {
            c.err(
                path,
                format!("`{u}`: scheme `{}` is not http or https", p.scheme()),
            );
            None
        }
        Err(e) => {
            c.err(path, format!("`{u}` is not a URL: {e}"));
            None
        }
    }
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
    fn the_contract_keys_of_bgp_withdraw_and_powerdns_are_accepted() {
        // As written in the shared contract's runbook `evacuate-b3`.
        let bgp = r#"name = "withdraw the anycast prefix from B3"
type = "bgp_withdraw"
socket = "unix:///run/bird/bird.ctl"
protocol = "anycast_b3"
prefix = "203.0.113.0/24"
verify_peer = "unix:///run/bird-edge/bird.ctl""#;
        assert_eq!(problems(bgp), Vec::<String>::new());
        let pdns = r#"name = "move api.example.com in PowerDNS"
type = "powerdns"
url = "http://10.20.0.54:8081"
server_id = "localhost"
api_key_file = "/etc/firebreak/pdns.key"
zone = "example.com"
record = "api.example.com"
rtype = "A"
ttl = 30
values = ["198.51.100.21"]
verify_server = "10.20.0.54:53""#;
        assert_eq!(problems(pdns), Vec::<String>::new());
    }

    #[test]
    fn bgp_withdraw_reports_each_wrong_key_at_its_path() {
        let p = problems(
            r#"name = "w"
type = "bgp_withdraw"
socket = "tcp://127.0.0.1:179"
protocol = "to_*"
prefix = "203.0.113.7/24"
verify_from = "edge"
action = "drop""#,
        );
        let at = |key: &str| {
            p.iter()
                .any(|e| e.starts_with(&format!("runbooks[0].steps[0].{key}: ")))
        };
        for key in ["socket", "protocol", "prefix", "verify_from", "action"] {
            assert!(at(key), "{key}: {p:?}");
        }
        assert!(
            p.iter()
                .any(|e| e.contains("verify_from: needs verify_peer")),
            "{p:?}"
        );
    }

    #[test]
    fn powerdns_reports_missing_keys_bad_values_and_a_record_outside_the_zone() {
        let p = problems(
            r#"name = "p"
type = "powerdns"
url = "ftp://10.20.0.54"
zone = "example.com"
record = "api.example.com"
rtype = "A"
values = ["198.51.100.21"]"#,
        );
        for key in ["url", "api_key_file", "verify_server"] {
            assert!(
                p.iter()
                    .any(|e| e.starts_with(&format!("runbooks[0].steps[0].{key}: "))),
                "{key}: {p:?}"
            );
        }
        let p = problems(
            r#"name = "p"
type = "powerdns"
url = "http://10.20.0.54:8081"
api_key_file = "/k"
zone = "example.com"
record = "api.example.com"
rtype = "A"
values = ["198.51.100.21"]
only_if = ["not-an-address"]
verify_server = "10.20.0.54""#,
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("runbooks[0].steps[0].only_if[0]: "),
            "{p:?}"
        );
        let p = problems(
            r#"name = "p"
type = "powerdns"
url = "http://10.20.0.54:8081"
api_key_file = "/k"
zone = "example.com"
record = "api.example.org"
rtype = "A"
values = ["198.51.100.21"]
verify_server = "10.20.0.54""#,
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("runbooks[0].steps[0].record: ") && p[0].contains("not inside zone"),
            "{p:?}"
        );
    }

    #[test]
    fn alertmanager_labels_the_agent_sets_and_malformed_ones_are_refused() {
        let p = problems(
            r#"name = "page"
type = "alertmanager"
url = "http://127.0.0.1:9093"
labels = { agent = "a", zone = "z", team = "{{agent}}", "bad-name" = "x", ok = "{{zone}}" }
expires_after = "10s""#,
        );
        let at = |key: &str| {
            p.iter()
                .find(|e| e.starts_with(&format!("runbooks[0].steps[0].{key}: ")))
                .unwrap_or_else(|| panic!("no problem at {key}: {p:?}"))
                .clone()
        };
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(at("labels.agent").contains("set by the agent"));
        assert!(at("labels.zone").contains("set by the agent"));
        assert!(at("labels.bad-name").contains("not an Alertmanager label name"));
        assert!(at("expires_after").contains("at least 1m"));
    }

    #[test]
    fn a_pagerduty_step_needs_its_key_file_and_a_known_severity() {
        let p = problems("name = \"page\"\ntype = \"pagerduty\"\nseverity = \"high\"");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("runbooks[0].steps[0].routing_key_file: missing"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("runbooks[0].steps[0].severity: unknown `high`")
                && p[1].contains("critical, error, warning, info"),
            "{p:?}"
        );
        assert!(problems(
            "name = \"page\"\ntype = \"pagerduty\"\nrouting_key_file = \"/etc/firebreak/pd.key\""
        )
        .is_empty());
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
