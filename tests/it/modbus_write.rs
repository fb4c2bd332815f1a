//! The `modbus_write` step against pymodbus, a Modbus server we did not write: coils and
//! holding registers written with the function codes the protocol names, verified by
//! reading back or by another address, exceptions named and not retried, a device that
//! is down retried, a drill that only reads, and the source's running connection shared.

use crate::support;

use firebreak::config::{Config, Step};
use firebreak::runbook::{run_step, StepContext, StepReport, TemplateVars};
use firebreak::sources::modbus;
use serde_json::json;
use std::sync::Arc;
use support::pymodbus::PyModbus;

fn vars() -> TemplateVars {
    TemplateVars {
        agent: "a".into(),
        zone: "b3".into(),
        level: "alarm".into(),
        incident: "b3-1".into(),
        cause: "fire".into(),
        runbook: "protect-b3".into(),
    }
}

/// A BMS as pymodbus serves it: charge-enable coils 0-15 all on, the "charging" state
/// inputs 0-15 all on, discrete 12 following coil 12 (the BMS's own state report), a u16
/// setpoint at holding 0 and an f32 (low word first) at holding 20.
fn bms() -> PyModbus {
    PyModbus::tcp(json!([{
        "id": 1,
        "registers": [
            { "address": 0, "type": "uint16", "value": 100 },
            { "address": 20, "type": "float32", "value": 1.5, "word_order": "little" },
        ],
        "coils": vec![true; 16],
        "discrete": vec![true; 16],
        "mirror": [[12, 12]],
    }]))
}

/// A config with one Modbus source `bms` at `port` (polled for one register, so that it
/// has a running link) and one runbook whose only step is `step`.
fn config(port: u16, step: &str) -> Config {
    let text = format!(
        r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-modbus-write-test"

[[sources]]
name = "bms"
type = "modbus"
url = "tcp://127.0.0.1:{port}"
unit = 1
poll_interval = "100ms"
timeout = "500ms"

[[sensors]]
id = "bms.charge"
zone = "b3"
kind = "charge"
source = "bms"
register = {{ table = "holding", address = 0, type = "u16" }}

[[zones]]
id = "b3"
runbook = "r"

[[runbooks]]
name = "r"

[[runbooks.steps]]
name = "write"
type = "modbus_write"
source = "bms"
{step}
"#
    );
    firebreak::config::load_str(&text, "t.toml", Default::default())
        .unwrap_or_else(|e| panic!("{:#?}", e.errors))
        .config
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn the_step(config: &Config) -> &Step {
    &config.runbooks[0].steps[0]
}

/// Runs the config's step (with its retries) on a connection of its own.
fn run(config: &Config, dry_run: bool) -> StepReport {
    let v = vars();
    let ctx = StepContext {
        config,
        vars: &v,
        dry_run,
        fence: None,
        modbus: None,
    };
    rt().block_on(run_step(the_step(config), &ctx))
}

/// The write requests pymodbus received, as it printed them.
fn writes(server: &PyModbus) -> Vec<String> {
    server
        .log()
        .lines()
        .filter(|l| l.starts_with("write "))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_coil_write_stops_the_charge_and_the_bms_state_input_confirms_it() {
    let server = bms();
    let config = config(
        server.port.unwrap(),
        r#"register = { table = "coil", address = 12 }
value = 0
verify = { table = "discrete", address = 12, equals = 0 }"#,
    );
    let report = run(&config, false);
    assert!(report.ok && report.verified, "{report:?}\n{}", server.log());
    assert_eq!(report.attempts, 1);
    let detail = report.detail.unwrap();
    assert!(
        detail.starts_with(
            "wrote coil 12 := 0 on bms unit 1 (over a connection of its own); discrete 12 reads 0"
        ),
        "{detail}"
    );
    assert_eq!(writes(&server), ["write fc=5 address=12 values=[False]"]);

    // Resuming the charge, verified by reading the coil back (no `verify`).
    let resume = config_with_value(&server, 1);
    let report = run(&resume, false);
    assert!(report.ok && report.verified, "{report:?}");
    assert!(report.detail.unwrap().ends_with("coil 12 reads 1"));
    assert_eq!(writes(&server)[1], "write fc=5 address=12 values=[True]");
}

fn config_with_value(server: &PyModbus, value: u8) -> Config {
    config(
        server.port.unwrap(),
        &format!("register = {{ table = \"coil\", address = 12 }}\nvalue = {value}"),
    )
}

#[test]
fn holding_registers_take_a_u16_with_function_6_and_a_scaled_f32_with_function_16() {
    let server = bms();
    let u16 = config(
        server.port.unwrap(),
        r#"register = { table = "holding", address = 0, type = "u16", scale = 0.1 }
value = 23.5"#,
    );
    let report = run(&u16, false);
    assert!(report.ok && report.verified, "{report:?}\n{}", server.log());
    assert!(
        report
            .detail
            .as_deref()
            .unwrap()
            .ends_with("holding 0 reads 23.5 (raw [235])"),
        "{report:?}"
    );
    let f32 = config(
        server.port.unwrap(),
        r#"register = { table = "holding", address = 20, type = "f32", word_order = "low_first", scale = 0.5 }
value = 12.5"#,
    );
    let report = run(&f32, false);
    assert!(report.ok && report.verified, "{report:?}\n{}", server.log());
    // 12.5 / 0.5 = 25.0 = 0x41C8_0000, low word first.
    assert_eq!(
        writes(&server),
        [
            "write fc=6 address=0 values=[235]",
            "write fc=16 address=20 values=[0, 16840]"
        ]
    );
}

/// The registers Python's struct packs `value` into with `format` (">e", ">d", ...), in
/// the layout `byte_order` and `word_order` ("big" or "little") name: an encoder we did not
/// write.
fn struct_packed(format: &str, value: f64, byte_order: &str, word_order: &str) -> Vec<u16> {
    let code = format!(
        "import struct\n\
         data = struct.pack('{format}', {value})\n\
         if '{byte_order}' == 'little':\n    data = b''.join(data[i:i+2][::-1] for i in range(0, len(data), 2))\n\
         regs = [int.from_bytes(data[i:i+2], 'big') for i in range(0, len(data), 2)]\n\
         if '{word_order}' == 'little':\n    regs.reverse()\n\
         print(' '.join(map(str, regs)))"
    );
    let out = std::process::Command::new(support::pymodbus::python())
        .args(["-c", &code])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect()
}

#[test]
fn f16_and_f64_in_any_byte_layout_are_written_as_python_packs_them() {
    let server = PyModbus::tcp(json!([{
        "id": 1,
        "registers": [
            { "address": 30, "type": "packed", "format": ">d", "value": 0.0 },
            { "address": 40, "type": "packed", "format": ">e", "value": 0.0 },
        ],
        "coils": vec![true; 16],
    }]));
    let f64 = config(
        server.port.unwrap(),
        r#"register = { table = "holding", address = 30, type = "f64", byte_order = "little", word_order = "low_first" }
value = -0.000123"#,
    );
    let report = run(&f64, false);
    assert!(report.ok && report.verified, "{report:?}\n{}", server.log());
    let f16 = config(
        server.port.unwrap(),
        r#"register = { table = "holding", address = 40, type = "f16", scale = 0.5 }
value = 10.75"#,
    );
    let report = run(&f16, false);
    assert!(report.ok && report.verified, "{report:?}\n{}", server.log());
    let fmt = |words: Vec<u16>| {
        format!(
            "[{}]",
            words
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    assert_eq!(
        writes(&server),
        [
            format!(
                "write fc=16 address=30 values={}",
                fmt(struct_packed(">d", -0.000123, "little", "little"))
            ),
            format!(
                "write fc=6 address=40 values={}",
                fmt(struct_packed(">e", 21.5, "big", "big"))
            ),
        ]
    );
}

#[test]
fn a_verify_address_that_does_not_follow_the_write_is_not_verified() {
    let server = bms();
    // Coil 13 has no state input following it: discrete 13 stays 1.
    let config = config(
        server.port.unwrap(),
        r#"register = { table = "coil", address = 13 }
value = 0
verify = { table = "discrete", address = 13, equals = 0 }
retries = 1"#,
    );
    let report = run(&config, false);
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.attempts, 2, "not verified is retried: {report:?}");
    assert_eq!(
        report.error.as_deref(),
        Some("not verified: discrete 13 on bms reads 1, expected 0")
    );
    assert_eq!(writes(&server).len(), 2, "written once per attempt");
}

#[test]
fn an_illegal_data_address_is_named_and_not_retried() {
    let server = bms();
    let config = config(
        server.port.unwrap(),
        r#"register = { table = "coil", address = 100 }
value = 0
retries = 3"#,
    );
    let report = run(&config, false);
    assert!(!report.ok);
    assert_eq!(report.attempts, 1, "{report:?}");
    assert_eq!(
        report.error.as_deref(),
        Some("bms: write of coil 100 refused with Modbus exception 0x02 (illegal data address)")
    );
}

#[test]
fn a_device_that_is_down_is_a_retryable_failure() {
    // Nothing listens on this port.
    let config = config(
        support::free_port(),
        r#"register = { table = "coil", address = 12 }
value = 0
retries = 2"#,
    );
    let report = run(&config, false);
    assert!(!report.ok);
    assert_eq!(report.attempts, 3, "{report:?}");
    let error = report.error.unwrap();
    assert!(
        error.starts_with("Modbus: bms: connect to 127.0.0.1:") && error.contains("refused"),
        "{error}"
    );
}

#[test]
fn a_drill_reads_the_target_and_the_verify_address_and_writes_nothing() {
    let server = bms();
    let config = config(
        server.port.unwrap(),
        r#"register = { table = "coil", address = 12 }
value = 0
verify = { table = "discrete", address = 12, equals = 0 }"#,
    );
    let report = run(&config, true);
    assert!(report.ok && !report.verified, "{report:?}");
    assert_eq!(
        report.detail.as_deref(),
        Some(
            "dry run, nothing written (over a connection of its own): coil 12 on bms reads 1 \
             (would write 0); discrete 12 reads 1 (verify expects 0)"
        )
    );
    let holding = self::config(
        server.port.unwrap(),
        r#"register = { table = "holding", address = 20, type = "f32", word_order = "low_first" }
value = 3.0"#,
    );
    let report = run(&holding, true);
    assert!(report.ok, "{report:?}");
    assert!(
        report
            .detail
            .as_deref()
            .unwrap()
            .ends_with("holding 20-21 on bms reads 1.5 (would write 3)"),
        "{report:?}"
    );
    assert!(writes(&server).is_empty(), "{}", server.log());
}

#[test]
fn the_step_writes_over_the_running_source_connection() {
    let server = bms();
    let config = config(
        server.port.unwrap(),
        r#"register = { table = "coil", address = 12 }
value = 0"#,
    );
    let rt = rt();
    let (devices, links) = modbus::plan_links(&config);
    let link = links.values().next().unwrap().clone();
    let registry = modbus::Links::default();
    registry.replace(links);
    // The source's poller: one read opens the link's connection.
    let first = rt
        .block_on(link.call(
            1,
            std::time::Duration::from_secs(1),
            modbus::Request::Read {
                table: firebreak::config::Table::Holding,
                start: 0,
                count: 1,
            },
        ))
        .unwrap();
    assert_eq!(first, Ok(vec![100]));
    let v = vars();
    let ctx = StepContext {
        config: &config,
        vars: &v,
        dry_run: false,
        fence: None,
        modbus: Some(&registry),
    };
    let report = rt.block_on(run_step(the_step(&config), &ctx));
    assert!(report.ok && report.verified, "{report:?}");
    assert!(report
        .detail
        .unwrap()
        .contains("(over the source's connection)"),);
    assert!(Arc::ptr_eq(&devices[0].link, &link));
}

#[test]
fn check_config_lists_every_device_write_per_zone() {
    let config = config(
        1502,
        r#"register = { table = "coil", address = 12 }
value = 0
verify = { table = "discrete", address = 12, equals = 0 }"#,
    );
    let summary = firebreak::agent::summary(std::path::Path::new("t.toml"), &config);
    assert!(
        summary.ends_with(
            "device writes (1), per zone:\n  b3:\n    failover r -> write: write coil 12 := 0 \
             on bms (verify discrete 12 == 0)\n"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("1. write: modbus_write coil 12 := 0 on bms (verify discrete 12 == 0)")
    );
}
