//! `modbus_write`: act on the room through one of the agent's Modbus sources: write a coil
//! (stop a battery string's charge, open its breaker) or a holding register (a setpoint),
//! then read it back, or read another address that shows the result. Runner: `run.rs`.
//!
//! The register is described with the sensors' `register = { ... }` keys and checked by
//! the same function (`sources::modbus::config::register`), and the value is encoded by
//! the inverse of the sensors' decoder, so every register type a sensor can read can be
//! written.

use super::{Refs, StepConfig, StepInfo};
use crate::config::collect::Collector;
use crate::config::model::{RegisterSpec, Table};
use crate::sources::modbus::config::{register, RawRegister};
use serde::Deserialize;

pub mod run;

/// The keys of a `modbus_write` step as written.
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    pub source: Option<String>,
    pub register: Option<RawRegister>,
    pub value: Option<f64>,
    pub verify: Option<RawVerify>,
}

/// `verify = { table, address, equals }` as written.
#[derive(Debug, Default, Deserialize)]
pub struct RawVerify {
    pub table: Option<String>,
    pub address: Option<i64>,
    pub equals: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ModbusWriteStep {
    /// Index of the Modbus source in `Config::sources`.
    pub source: usize,
    /// Its name, for summaries.
    pub source_name: String,
    /// Where the value goes: a coil or holding registers.
    pub register: RegisterSpec,
    /// The engineering value, as configured.
    pub value: f64,
    /// What is written: one word per holding register, or 0/1 for a coil.
    pub words: Vec<u16>,
    pub verify: Verify,
}

/// How a write is checked: what is read afterwards and what it must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Verify {
    pub table: Table,
    pub address: u16,
    /// The words (bits: 0 or 1) the read must return.
    pub equals: Vec<u16>,
    /// `false`: the default, reading back what was written.
    pub explicit: bool,
}

impl ModbusWriteStep {
    /// "coil 12 := 0 on bms-b3 (verify discrete 12 == 0)".
    pub fn what(&self) -> String {
        let r = &self.register;
        let target = if r.table.is_bits() {
            format!("coil {}", r.address)
        } else {
            format!("holding {} ({})", r.address, r.kind.as_str())
        };
        let verify = if self.verify.explicit {
            format!(
                "verify {} {} == {}",
                self.verify.table.as_str(),
                self.verify.address,
                self.verify.equals[0]
            )
        } else {
            "verify by reading it back".to_string()
        };
        format!(
            "{target} := {} on {} ({verify})",
            self.value, self.source_name
        )
    }
}

impl StepInfo for ModbusWriteStep {
    fn describe(&self) -> String {
        format!("modbus_write {}", self.what())
    }

    // Writing the same value again leaves the device as one write did.
    fn is_idempotent(&self) -> bool {
        true
    }

    fn device_write(&self) -> Option<String> {
        Some(format!("write {}", self.what()))
    }
}

impl StepConfig for ModbusWriteStep {
    type Raw = Raw;

    fn validate(c: &mut Collector, path: &str, s: Raw, refs: &Refs) -> Option<Self> {
        let source = (refs.modbus_source)(c, &format!("{path}.source"), &s.source);
        let rpath = format!("{path}.register");
        let spec = match &s.register {
            None => {
                c.err(
                    &rpath,
                    "missing: the register to write, register = { table = \"coil\", address = 12 } \
                     or { table = \"holding\", address = N, type = \"u16\" }",
                );
                None
            }
            Some(r) => match r.table.as_deref() {
                Some(t @ ("input" | "discrete")) => {
                    c.err(
                        format!("{rpath}.table"),
                        format!(
                            "`{t}` is read-only in Modbus: a write goes to a \"coil\" or \
                             \"holding\" register"
                        ),
                    );
                    None
                }
                _ => {
                    if r.bit.is_some() {
                        c.err(
                            format!("{rpath}.bit"),
                            "does not apply to a write: a bit of a status word cannot be \
                             written alone (write the whole register, or a coil)",
                        );
                    }
                    register(c, &rpath, r).filter(|_| r.bit.is_none())
                }
            },
        };
        let vpath = format!("{path}.value");
        let words = match (s.value, &spec) {
            (None, _) => {
                c.err(
                    &vpath,
                    "missing: the value to write (0 or 1 for a coil; the engineering value \
                     for a holding register)",
                );
                None
            }
            (Some(_), None) => None,
            (Some(v), Some(r)) if r.table.is_bits() => {
                if v == 0.0 || v == 1.0 {
                    Some(vec![v as u16])
                } else {
                    c.err(&vpath, format!("{v}: a coil takes 0 or 1"));
                    None
                }
            }
            (Some(v), Some(r)) => match crate::sources::modbus::decode::encode(v, r) {
                Ok(w) => Some(w),
                Err(e) => {
                    c.err(&vpath, e);
                    None
                }
            },
        };
        let verify = match &s.verify {
            None => spec.zip(words.clone()).map(|(r, w)| Verify {
                table: r.table,
                address: r.address,
                equals: w,
                explicit: false,
            }),
            Some(v) => verify(c, &format!("{path}.verify"), v),
        };
        let (source, source_name) = source?;
        Some(ModbusWriteStep {
            source,
            source_name,
            register: spec?,
            value: s.value?,
            words: words?,
            verify: verify?,
        })
    }
}

fn verify(c: &mut Collector, path: &str, v: &RawVerify) -> Option<Verify> {
    const TABLES: &str = "\"holding\", \"input\", \"coil\" or \"discrete\"";
    let table = match v.table.as_deref() {
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
    let address = match v.address {
        None => {
            c.err(format!("{path}.address"), "missing (required): 0 to 65535");
            None
        }
        Some(a @ 0..=65535) => Some(a as u16),
        Some(a) => {
            c.err(
                format!("{path}.address"),
                format!("{a} is not an address (0 to 65535)"),
            );
            None
        }
    };
    let equals = match (v.equals, table) {
        (None, _) => {
            c.err(
                format!("{path}.equals"),
                "missing (required): the value the read must return (0 or 1 for a bit, the \
                 raw 16-bit value for a register)",
            );
            None
        }
        (Some(_), None) => None,
        (Some(e @ 0..=1), Some(t)) if t.is_bits() => Some(e as u16),
        (Some(e), Some(t)) if t.is_bits() => {
            c.err(
                format!("{path}.equals"),
                format!("{e}: a {} is 0 or 1", t.as_str()),
            );
            None
        }
        (Some(e @ 0..=65535), Some(_)) => Some(e as u16),
        (Some(e), Some(_)) => {
            c.err(
                format!("{path}.equals"),
                format!("{e} is not a raw 16-bit register value (0 to 65535)"),
            );
            None
        }
    };
    Some(Verify {
        table: table?,
        address: address?,
        equals: vec![equals?],
        explicit: true,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Action, Table};

    fn load(step: &str) -> Result<crate::config::Config, Vec<String>> {
        let text = format!(
            r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-unit"

[[sources]]
name = "bms"
type = "modbus"
url = "tcp://127.0.0.1:1502"
unit = 1

[[sources]]
name = "broker"
type = "mqtt"
url = "mqtt://127.0.0.1:1883"

[[sensors]]
id = "t1"
zone = "z"
kind = "temperature"
source = "bms"
register = {{ table = "input", address = 0, type = "i16" }}

[[zones]]
id = "z"
runbook = "r"

[[runbooks]]
name = "r"

[[runbooks.steps]]
name = "w"
type = "modbus_write"
{step}
"#
        );
        crate::config::load_str(&text, "unit", Default::default())
            .map(|l| l.config)
            .map_err(|e| e.errors.iter().map(|p| format!("{}: {}", p.path, p.message)).collect())
    }

    fn step(text: &str) -> super::ModbusWriteStep {
        let config = load(text).unwrap_or_else(|e| panic!("{e:?}"));
        match &config.runbooks[0].steps[0].action {
            Action::ModbusWrite(s) => s.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn problems(text: &str) -> Vec<String> {
        load(text).err().unwrap_or_default()
    }

    #[test]
    fn the_contract_step_stops_the_charge_and_checks_the_state_input() {
        let s = step(
            r#"source = "bms"
register = { table = "coil", address = 12 }
value = 0
verify = { table = "discrete", address = 12, equals = 0 }"#,
        );
        assert_eq!(s.register.table, Table::Coil);
        assert_eq!(s.words, [0]);
        assert_eq!(s.verify.table, Table::Discrete);
        assert_eq!(
            crate::runbook::steps::StepInfo::describe(&s),
            "modbus_write coil 12 := 0 on bms (verify discrete 12 == 0)"
        );
        assert!(crate::runbook::steps::StepInfo::is_idempotent(&s));
    }

    #[test]
    fn without_verify_the_written_address_is_read_back() {
        let s = step(
            r#"source = "bms"
register = { table = "holding", address = 40, type = "f32", word_order = "low_first", scale = 0.5 }
value = 12.5"#,
        );
        let bits = 25.0f32.to_bits();
        assert_eq!(s.words, [bits as u16, (bits >> 16) as u16]);
        assert_eq!(
            s.verify,
            super::Verify {
                table: Table::Holding,
                address: 40,
                equals: s.words.clone(),
                explicit: false
            }
        );
        assert_eq!(
            crate::runbook::steps::StepInfo::describe(&s),
            "modbus_write holding 40 (f32) := 12.5 on bms (verify by reading it back)"
        );
    }

    #[test]
    fn read_only_tables_wrong_values_and_wrong_sources_are_each_reported() {
        assert_eq!(
            problems(
                r#"source = "bms"
register = { table = "discrete", address = 12 }
value = 0"#
            ),
            ["runbooks[0].steps[0].register.table: `discrete` is read-only in Modbus: a write \
              goes to a \"coil\" or \"holding\" register"]
        );
        let p = problems(
            r#"source = "broker"
register = { table = "input", address = 3, type = "u16" }
value = 1"#,
        );
        assert!(
            p.contains(
                &"runbooks[0].steps[0].source: source `broker` is not a Modbus source (it is type \"mqtt\")"
                    .to_string()
            ),
            "{p:?}"
        );
        assert!(p.iter().any(|e| e.starts_with("runbooks[0].steps[0].register.table: `input` is read-only")), "{p:?}");
        assert_eq!(
            problems(r#"source = "ghost"
register = { table = "coil", address = 12 }
value = 2"#),
            [
                "runbooks[0].steps[0].source: unknown source `ghost` (known: bms, broker)",
                "runbooks[0].steps[0].value: 2: a coil takes 0 or 1"
            ]
        );
        assert_eq!(
            problems(r#"source = "bms"
register = { table = "holding", address = 3, type = "i16", scale = 0.1 }
value = 4000.0"#),
            ["runbooks[0].steps[0].value: 4000 does not fit an i16: raw 40000 is outside -32768 to 32767"]
        );
        assert_eq!(
            problems(r#"source = "bms"
register = { table = "holding", address = 3, type = "u16", bit = 2 }
value = 1
verify = { table = "coil", address = 70000, equals = 3, extra = 1 }"#),
            [
                "runbooks[0].steps[0].register.bit: does not apply to a write: a bit of a status \
                 word cannot be written alone (write the whole register, or a coil)",
                "runbooks[0].steps[0].verify.extra: unknown key `extra`",
                "runbooks[0].steps[0].verify.address: 70000 is not an address (0 to 65535)",
                "runbooks[0].steps[0].verify.equals: 3: a coil is 0 or 1",
            ]
        );
        assert_eq!(
            problems("source = \"bms\""),
            [
                "runbooks[0].steps[0].register: missing: the register to write, register = { \
                 table = \"coil\", address = 12 } or { table = \"holding\", address = N, type = \
                 \"u16\" }",
                "runbooks[0].steps[0].value: missing: the value to write (0 or 1 for a coil; the \
                 engineering value for a holding register)"
            ]
        );
    }
}
