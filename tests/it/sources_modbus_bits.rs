//! Coils and discrete inputs: the config rules for bit tables, and a UPS "on battery"
//! contact served as a discrete input by the simulator reaching the detection core.

use firebreak::clock::{Clock, SystemClock};
use firebreak::config::{self, Config, Table};
use firebreak::detect::{Cause, Detector, Output, Reading};
use firebreak::sources::modbus;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(15);

fn text(source_url: &str, register: &str) -> String {
    format!(
        r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-modbus-bits-test"

[[sources]]
name = "ups"
type = "modbus"
url = "{source_url}"
unit = 1
poll_interval = "50ms"
timeout = "500ms"

[[sensors]]
id = "ups.on_battery"
zone = "z"
kind = "on_battery"
source = "ups"
register = {{ {register} }}

[[zones]]
id = "z"
runbook = "r"
confirm = 1
max_on_battery = "300ms"

[[runbooks]]
name = "r"
[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"
"#
    )
}

fn load(register: &str) -> Result<Config, Vec<String>> {
    config::load_str(
        &text("tcp://127.0.0.1:502", register),
        "test",
        HashMap::new(),
    )
    .map(|l| l.config)
    .map_err(|e| {
        e.errors
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect()
    })
}

#[test]
fn a_discrete_input_or_coil_needs_only_an_address() {
    for table in ["coil", "discrete"] {
        let c = load(&format!("table = \"{table}\", address = 65535")).unwrap();
        let config::SensorInput::Register(r) = &c.sensors[0].input else {
            panic!("not a register sensor");
        };
        assert_eq!(r.table.as_str(), table);
        assert_eq!(r.address, 65535);
        assert!(r.table.is_bits());
    }
}

#[test]
fn value_shaping_keys_on_a_bit_table_are_each_rejected_with_their_path() {
    let errors = load(
        "table = \"discrete\", address = 3, type = \"u16\", word_order = \"low_first\", scale = 2.0, offset = 1.0, bit = 0",
    )
    .unwrap_err();
    for key in ["type", "word_order", "scale", "offset", "bit"] {
        let path = format!("sensors[0].register.{key}");
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&path) && e.contains("does not apply to table \"discrete\"")),
            "no error for {path} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), 5, "{errors:#?}");
}

#[test]
fn a_bit_address_outside_0_to_65535_or_a_missing_one_is_rejected() {
    let errors = load("table = \"coil\", address = 65536").unwrap_err();
    assert_eq!(
        errors,
        vec!["sensors[0].register.address: 65536 is not a coil address (0 to 65535)"]
    );
    let errors = load("table = \"coil\"").unwrap_err();
    assert_eq!(
        errors,
        vec!["sensors[0].register.address: missing (required): 0 to 65535"]
    );
}

#[test]
fn an_unknown_table_names_all_four() {
    let errors = load("table = \"coils\", address = 0").unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("sensors[0].register.table")
                && e.contains("\"holding\", \"input\", \"coil\" or \"discrete\"")),
        "{errors:#?}"
    );
}

fn scenario() -> hardware_sim::Scenario {
    // The contact closes 500 ms in: mains lost. A coil next to it stays 0 and a discrete
    // input at 10 stays 1, to show the bits are not mixed up.
    hardware_sim::Scenario::from_toml_str(
        r#"
[scenario]
name = "ups"
duration = "600s"

[[devices]]
name = "ups"
unit = 1

[[devices.registers]]
signal = "on_battery"
table = "discrete"
address = 2
timeline = [{ at = "0s", set = 0.0 }, { at = "500ms", set = 1.0 }]

[[devices.registers]]
signal = "other"
table = "discrete"
address = 10
timeline = [{ at = "0s", set = 7.0 }]

[[devices.registers]]
signal = "relay"
table = "coil"
address = 2
timeline = [{ at = "0s", set = 0.0 }]
"#,
    )
    .unwrap_or_else(|e| panic!("scenario: {e}"))
}

async fn play() -> hardware_sim::PlayHandle {
    hardware_sim::play(
        scenario(),
        hardware_sim::PlayOptions {
            speed: 1.0,
            host: None,
        },
    )
    .await
    .expect("start the simulator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discrete_input_on_battery_flag_reaches_the_detection_core_as_a_power_incident() {
    let sim = play().await;
    let url = format!("tcp://{}", sim.addr("ups").unwrap());
    let config = config::load_str(
        &text(&url, "table = \"discrete\", address = 2"),
        "test",
        HashMap::new(),
    )
    .unwrap_or_else(|e| panic!("{:?}", e.errors))
    .config;
    let clock = Arc::new(SystemClock::new());
    let mut detector = Detector::from_config(&config, clock.mono());
    let (tx, mut rx) = mpsc::channel(1024);
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    for d in modbus::devices(&config) {
        assert_eq!(d.reads.len(), 1);
        assert_eq!(d.reads[0].table, Table::Discrete);
        tasks.push(modbus::spawn(d, clock.clone(), tx.clone(), cancel.clone()));
    }
    let until = Instant::now() + DEADLINE;
    let mut values = Vec::new();
    let cause = 'outer: loop {
        let s = tokio::time::timeout_at(until, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no power incident within {DEADLINE:?}; saw {values:?}"))
            .expect("pollers running");
        values.push(s.reading);
        detector.observe(s);
        detector.tick(clock.mono());
        for out in detector.drain() {
            if let Output::Critical { cause, .. } = out {
                break 'outer cause;
            }
        }
    };
    cancel.cancel();
    for t in tasks {
        let _ = t.await;
    }
    assert_eq!(cause, Cause::Power);
    assert_eq!(values.first(), Some(&Reading::Value(0.0)), "{values:?}");
    assert_eq!(values.last(), Some(&Reading::Value(1.0)), "{values:?}");
    assert!(values
        .iter()
        .all(|v| matches!(v, Reading::Value(x) if *x == 0.0 || *x == 1.0)));
    assert!(
        sim.stats("ups").unwrap().exceptions == 0,
        "every read was a valid discrete-input read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_prints_coils_and_discrete_inputs_as_bits() {
    let sim = play().await;
    let url = format!("tcp://{}", sim.addr("ups").unwrap());
    let probe = |table, address, count| firebreak::probe::ModbusProbe {
        url: url.clone(),
        unit: 1,
        table,
        address,
        count,
        scale: 1.0,
        timeout: Duration::from_secs(2),
    };
    let report = firebreak::probe::modbus(&probe(Table::Discrete, 8, 4))
        .await
        .unwrap();
    assert!(report.contains("discrete bits 8..11"), "{report}");
    assert!(report.contains("set (1): 10\n"), "{report}");
    let report = firebreak::probe::modbus(&probe(Table::Coil, 0, 3))
        .await
        .unwrap();
    assert!(report.contains("set (1): none\n"), "{report}");
    let err = firebreak::probe::modbus(&probe(Table::Coil, 0, 2001))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1 to 2000"), "{err}");
}
