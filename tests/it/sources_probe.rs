//! `firebreak probe`, run as a technician would: against a pymodbus server and a real
//! Mosquitto. mbpoll (a client we did not write) reads the same registers and agrees.

use crate::support;

use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::mosquitto::{Mosquitto, Options};
use support::pymodbus::PyModbus;

fn firebreak() -> Command {
    Command::new(env!("CARGO_BIN_EXE_firebreak"))
}

#[test]
fn probe_modbus_prints_every_plausible_decoding_and_agrees_with_mbpoll() {
    let server = PyModbus::tcp(json!([{ "id": 3, "registers": [
        {"address": 0, "type": "int16", "value": -50},
        {"address": 1, "type": "uint32", "value": 70000, "word_order": "big"},
        {"address": 3, "type": "float32", "value": 23.5, "word_order": "little"},
    ]}]));
    let port = server.port.unwrap().to_string();
    let out = firebreak()
        .args(["probe", "modbus", &format!("tcp://127.0.0.1:{port}")])
        .args([
            "--unit",
            "3",
            "--table",
            "holding",
            "--address",
            "0",
            "--count",
            "5",
            "--scale",
            "0.1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |addr: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(addr))
            .unwrap_or_else(|| panic!("no line for {addr}:\n{text}"))
            .to_string()
    };
    assert!(
        line("0").contains("0xFFCE") && line("0").contains("-5"),
        "{text}"
    );
    // 70000 x 0.1 as u32 high_first at register 1.
    assert!(text.contains("7000"), "{text}");
    // 23.5 as f32 low_first at register 3 (times the scale: 2.35).
    assert!(text.contains("2.35"), "{text}");

    // mbpoll reads the same raw words.
    let mbpoll = support::peer::require("mbpoll", "apt-get install -y mbpoll");
    let mb = Command::new(mbpoll)
        .args([
            "-m",
            "tcp",
            "-p",
            &port,
            "-a",
            "3",
            "-t",
            "4:hex",
            "-r",
            "1",
            "-c",
            "5",
            "-1",
            "-q",
            "127.0.0.1",
        ])
        .output()
        .expect("mbpoll not found: apt-get install -y mbpoll (or run scripts/test)");
    let mb = String::from_utf8_lossy(&mb.stdout);
    for (i, hex) in ["0xFFCE", "0x0001", "0x1170", "0x0000", "0x41BC"]
        .iter()
        .enumerate()
    {
        assert!(
            mb.contains(&format!("[{}]: \t{hex}", i + 1)),
            "mbpoll:\n{mb}"
        );
        assert!(line(&i.to_string()).contains(hex), "probe:\n{text}");
    }
}

#[test]
fn probe_modbus_explains_an_exception() {
    let server = PyModbus::tcp(
        json!([{ "id": 1, "registers": [{"address": 0, "type": "int16", "value": 1}]}]),
    );
    let out = firebreak()
        .args([
            "probe",
            "modbus",
            &format!("tcp://127.0.0.1:{}", server.port.unwrap()),
        ])
        .args(["--address", "400", "--count", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exception"), "{err}");
}

#[test]
fn probe_mqtt_prints_what_arrives_and_what_the_pointer_extracts() {
    let broker = Mosquitto::start(Options::default());
    let mut child = firebreak()
        .args([
            "probe",
            "mqtt",
            &format!("mqtt://127.0.0.1:{}", broker.port),
        ])
        .args([
            "--topic",
            "dc1/+/state",
            "--json-pointer",
            "/obscuration",
            "--count",
            "1",
            "--for",
            "20s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Publish until the probe (subscribed by then) has printed one message and exited.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        broker.publish("dc1/asd1/state", br#"{"obscuration": 0.05}"#, None);
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            break;
        }
        assert!(Instant::now() < until, "probe did not exit after a message");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("dc1/asd1/state"), "{text}");
    assert!(
        text.contains("json_pointer /obscuration: value 0.05"),
        "{text}"
    );
}
