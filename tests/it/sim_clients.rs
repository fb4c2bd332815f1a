//! Clients we did not write read the simulator's devices and get the documented values:
//! mbpoll and pymodbus's client read every documented register of every Modbus device of
//! the `encoding` scenario (hardware-sim/README.md, "Device models"), and mosquitto_sub
//! receives the smoke detector's JSON.

use crate::support;

use std::process::Command;

use hardware_sim::{PlayExtras, PlayOptions, Scenario};
use support::mosquitto::{Mosquitto, Options};

/// (device, table, address, raw words, engineering value, what) as documented.
type Documented = (
    &'static str,
    &'static str,
    u16,
    &'static [u16],
    f64,
    &'static str,
);

const DOCUMENTED: &[Documented] = &[
    ("env-b3", "input", 0, &[0x00B4], 18.0, "temp.row1 C x0.1"),
    ("env-b3", "input", 1, &[0x00B9], 18.5, "temp.row2 C x0.1"),
    (
        "env-b3",
        "input",
        2,
        &[0xFFCE],
        -5.0,
        "temp.inlet -5 C as signed 0xFFCE",
    ),
    ("env-b3", "input", 3, &[0x012C], 30.0, "humidity %RH x0.1"),
    ("env-b3", "holding", 10, &[0x0000], 0.0, "offgas.1 ppm"),
    (
        "ups-b3-1",
        "holding",
        0,
        &[0x0000, 0x0002],
        2.0,
        "status: bit 1 online",
    ),
    (
        "ups-b3-1",
        "holding",
        128,
        &[0x0001, 0x1170],
        70000.0,
        "runtime s, high word first",
    ),
    (
        "ups-b3-1",
        "holding",
        130,
        &[0xC800],
        100.0,
        "charge % /512",
    ),
    (
        "ups-b3-1",
        "holding",
        131,
        &[0x3980],
        230.0,
        "input voltage /64",
    ),
    (
        "ups-b3-1",
        "holding",
        132,
        &[0x3980],
        230.0,
        "output voltage /64",
    ),
    (
        "ups-b3-1",
        "holding",
        135,
        &[0xFF00],
        -2.0,
        "battery temp /128 signed",
    ),
    (
        "ups-b3-2",
        "holding",
        0,
        &[0x0002, 0x0000],
        2.0,
        "status, words swapped",
    ),
    (
        "ups-b3-2",
        "holding",
        128,
        &[0x1170, 0x0001],
        70000.0,
        "runtime, words swapped",
    ),
    (
        "ups-b3-2",
        "holding",
        130,
        &[0xC800],
        100.0,
        "charge % /512",
    ),
    (
        "ups-b3-2",
        "holding",
        131,
        &[0x3980],
        230.0,
        "input voltage /64",
    ),
    (
        "ups-b3-2",
        "holding",
        132,
        &[0x3980],
        230.0,
        "output voltage /64",
    ),
    (
        "ups-b3-2",
        "holding",
        135,
        &[0xFF00],
        -2.0,
        "battery temp /128 signed",
    ),
];

/// Decodes `words` the way the README documents each register.
fn decode(what: &str, words: &[u16]) -> f64 {
    let u32_of = |hi: u16, lo: u16| f64::from((u32::from(hi) << 16) | u32::from(lo));
    match (words, what) {
        ([hi, lo], w) if !w.contains("swapped") => u32_of(*hi, *lo),
        ([lo, hi], _) => u32_of(*hi, *lo),
        ([w], x) if x.contains("/512") => f64::from(*w) / 512.0,
        ([w], x) if x.contains("/64") => f64::from(*w) / 64.0,
        ([w], x) if x.contains("/128") => f64::from(*w as i16) / 128.0,
        ([w], x) if x.contains("x0.1") || x.contains("0xFFCE") => f64::from(*w as i16) * 0.1,
        ([w], _) => f64::from(*w),
        _ => panic!("no decoding for {what}"),
    }
}

fn play_encoding(rt: &tokio::runtime::Runtime, broker: &Mosquitto) -> hardware_sim::PlayHandle {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("hardware-sim/scenarios/encoding.toml");
    let scenario = Scenario::from_file(&path).unwrap();
    rt.block_on(hardware_sim::play_with(
        scenario,
        PlayOptions {
            speed: 1.0,
            host: None,
        },
        PlayExtras {
            mqtt_broker: Some(format!("mqtt://127.0.0.1:{}", broker.port)),
            start_paused: false,
        },
    ))
    .expect("play the encoding scenario")
}

fn mbpoll(port: u16, table: &str, address: u16, count: usize) -> Vec<u16> {
    let kind = if table == "input" { "3:hex" } else { "4:hex" };
    let bin = support::peer::require("mbpoll", "apt-get install -y mbpoll");
    let out = Command::new(bin)
        .args(["-m", "tcp", "-p", &port.to_string(), "-a", "1", "-t", kind])
        .args(["-r", &(address + 1).to_string(), "-c", &count.to_string()])
        .args(["-1", "-q", "127.0.0.1"])
        .output()
        .expect("mbpoll not found: apt-get install -y mbpoll (or run scripts/test)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "mbpoll failed: {text}");
    (0..count)
        .map(|i| {
            let reference = usize::from(address) + 1 + i;
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("[{reference}]:")))
                .unwrap_or_else(|| panic!("mbpoll printed no [{reference}]:\n{text}"));
            let hex = line.rsplit("0x").next().unwrap().trim();
            u16::from_str_radix(hex, 16).unwrap()
        })
        .collect()
}

const PYMODBUS_READ: &str = r#"
import json, sys
from pymodbus.client import ModbusTcpClient
port, reads = int(sys.argv[1]), json.loads(sys.argv[2])
c = ModbusTcpClient("127.0.0.1", port=port, timeout=3)
assert c.connect(), "connect"
out = []
for table, address, count in reads:
    f = c.read_input_registers if table == "input" else c.read_holding_registers
    r = f(address, count=count, device_id=1)
    assert not r.isError(), repr(r)
    out.append(list(r.registers))
c.close()
print(json.dumps(out))
"#;

fn pymodbus(port: u16, reads: &[(&str, u16, usize)]) -> Vec<Vec<u16>> {
    let out = Command::new(support::pymodbus::python())
        .args(["-c", PYMODBUS_READ, &port.to_string()])
        .arg(serde_json::to_string(reads).unwrap())
        .output()
        .expect("pymodbus python");
    assert!(
        out.status.success(),
        "pymodbus client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn mbpoll_and_pymodbus_read_every_documented_register_with_its_documented_value() {
    let broker = Mosquitto::start(Options::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = play_encoding(&rt, &broker);

    for device in ["env-b3", "ups-b3-1", "ups-b3-2"] {
        let port = sim.addr(device).unwrap().port();
        let regs: Vec<_> = DOCUMENTED.iter().filter(|r| r.0 == device).collect();
        let reads: Vec<(&str, u16, usize)> = regs.iter().map(|r| (r.1, r.2, r.3.len())).collect();
        let py = pymodbus(port, &reads);
        for (r, py_words) in regs.iter().zip(&py) {
            let (_, table, address, words, value, what) = **r;
            let mb_words = mbpoll(port, table, address, words.len());
            assert_eq!(
                mb_words, words,
                "mbpoll, {device} {table} {address} ({what})"
            );
            assert_eq!(
                py_words, words,
                "pymodbus, {device} {table} {address} ({what})"
            );
            let decoded = decode(what, &mb_words);
            assert!(
                (decoded - value).abs() < 1e-9,
                "{device} {address} ({what}): {decoded} != {value}"
            );
        }
    }
    rt.block_on(sim.shutdown());
}

#[test]
fn mosquitto_sub_receives_the_smoke_detectors_json() {
    let broker = Mosquitto::start(Options::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The detector publishes every second and does not retain: mosquitto_sub waits for
    // the first message it gets (up to 30 s), whenever its subscription lands.
    let mosquitto_sub =
        support::peer::require("mosquitto_sub", "apt-get install -y mosquitto-clients");
    let sub = Command::new(mosquitto_sub)
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", "dc1/b3/asd1/state", "-C", "1", "-W", "30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("mosquitto_sub not found: apt-get install -y mosquitto-clients");
    let sim = play_encoding(&rt, &broker);
    let out = sub.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let payload: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(
        payload,
        serde_json::json!({"obscuration": 0.0, "alarm_level": "normal"})
    );
    rt.block_on(sim.shutdown());
}
