//! The simulator's environment module over Modbus RTU (a socat pseudo-terminal pair as the
//! serial cable), read by pymodbus's serial client, a client we did not write.

use crate::support;

use std::process::Command;

use hardware_sim::{PlayOptions, Scenario};
use support::pymodbus::PtyPair;

fn env_module_on(path: &std::path::Path) -> Scenario {
    Scenario::from_toml_str(&format!(
        r#"
[scenario]
name = "rtu"
duration = "1h"

[[devices]]
name = "env-b3"
protocol = "modbus-rtu"
serial = "{}"
baud = 19200
unit = 1

[[devices.registers]]
signal = "temp.inlet"
table = "input"
address = 2
type = "i16"
scale = 0.1
timeline = [{{ at = "0s", set = -5.0 }}]

[[devices.registers]]
signal = "offgas.1"
table = "holding"
address = 10
type = "u16"
timeline = [{{ at = "0s", set = 42 }}]
"#,
        path.display()
    ))
    .unwrap()
}

const PYMODBUS_RTU: &str = r#"
import json, sys
from pymodbus.client import ModbusSerialClient
c = ModbusSerialClient(sys.argv[1], baudrate=19200, timeout=1, retries=0)
assert c.connect(), "open the serial port"
inlet = c.read_input_registers(2, count=1, device_id=1)
offgas = c.read_holding_registers(10, count=1, device_id=1)
try:
    other_answered = not c.read_holding_registers(10, count=1, device_id=2).isError()
except Exception:  # pymodbus raises when no response comes at all
    other_answered = False
print(json.dumps({
    "inlet": None if inlet.isError() else inlet.registers,
    "offgas": None if offgas.isError() else offgas.registers,
    "other_unit_answered": other_answered,
}))
c.close()
"#;

#[test]
fn pymodbus_reads_the_env_module_over_rtu_and_other_units_get_no_answer() {
    let pty = PtyPair::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(hardware_sim::play(
            env_module_on(&pty.a),
            PlayOptions {
                speed: 1.0,
                host: None,
            },
        ))
        .expect("serve the env module on the pty");
    let out = Command::new(support::pymodbus::python())
        .args(["-c", PYMODBUS_RTU])
        .arg(&pty.b)
        .output()
        .expect("pymodbus python");
    assert!(
        out.status.success(),
        "pymodbus: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got["inlet"],
        serde_json::json!([0xFFCE]),
        "-5.0 C x0.1 signed"
    );
    assert_eq!(got["offgas"], serde_json::json!([42]));
    assert_eq!(
        got["other_unit_answered"], false,
        "on a serial bus, unit 2 is not this device: silence, not an exception"
    );
    let stats = sim.stats("env-b3").expect("RTU devices have stats too");
    assert!(stats.requests >= 3, "{stats:?}");
    rt.block_on(sim.shutdown());
}
