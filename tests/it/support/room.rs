//! The simulated battery room most end-to-end tests watch: its agent config and the Knot
//! server its runbook moves a record on.

use base64::Engine as _;
use std::net::SocketAddr;
use std::path::Path;

use super::knot::Knot;

const SECRET: [u8; 32] = *b"firebreak-test-secret-32-bytes!!";

pub fn secret_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(SECRET)
}

/// A room config using only the contract's keys: two Modbus devices (environment
/// module and UPS) as the simulator's `env-b3` and `ups-b3-1` play them, one zone, a
/// runbook that moves `app.example.test` on the Knot server at `dns`. `extra` is
/// appended (more sections for a test).
pub fn room_config_with(
    dir: &Path,
    env: SocketAddr,
    ups: SocketAddr,
    dns: SocketAddr,
    api_port: u16,
    extra: &str,
) -> std::path::PathBuf {
    let secret_file = dir.join("tsig.secret");
    std::fs::write(&secret_file, format!("{}\n", secret_b64())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let owner_only = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(&secret_file, owner_only).unwrap();
    }
    let text = format!(
        r#"
[agent]
name = "test-b3"
state_dir = "{state}"
event_log = "{state}/events.jsonl"
dry_run = false

[api]
listen = "127.0.0.1:{api_port}"

{sensors}

[[zones]]
id = "b3-battery-room"
runbook = "evacuate-b3"
confirm = 2
stale_votes = true
power_reserve = "5m"

[[runbooks]]
name = "evacuate-b3"
budget = "90s"

[[runbooks.steps]]
name = "move app.example.test to the DR site"
type = "dns_update"
server = "{dns}"
zone = "example.test"
record = "app.example.test"
rtype = "A"
ttl = 30
values = ["198.51.100.20"]
tsig_key = "firebreak"
tsig_algorithm = "hmac-sha256"
tsig_secret_file = "{secret}"
timeout = "3s"
retries = 3
{extra}
"#,
        state = dir.join("state").display(),
        secret = secret_file.display(),
        sensors = room_sensors(env, ups),
    );
    let path = dir.join("firebreak.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The room's devices as the simulator's `env-b3` (environment module) and `ups-b3-1`
/// (UPS) serve them: `[[sources]]`, `[[sensors]]` in zone `b3-battery-room`, and the
/// `[detect.*]` settings the end-to-end tests use (short windows and holds).
pub fn room_sensors(env: SocketAddr, ups: SocketAddr) -> String {
    format!(
        r#"
[[sources]]
name = "env-b3"
type = "modbus"
url = "tcp://{env}"
unit = 1
poll_interval = "100ms"
timeout = "500ms"

[[sources]]
name = "ups-b3-1"
type = "modbus"
url = "tcp://{ups}"
unit = 1
poll_interval = "250ms"
timeout = "500ms"

[[sensors]]
id = "b3.temp.row1"
zone = "b3-battery-room"
kind = "temperature"
source = "env-b3"
register = {{ table = "input", address = 0, type = "i16", scale = 0.1 }}

[[sensors]]
id = "b3.temp.row2"
zone = "b3-battery-room"
kind = "temperature"
source = "env-b3"
register = {{ table = "input", address = 1, type = "i16", scale = 0.1 }}

[[sensors]]
id = "b3.offgas.1"
zone = "b3-battery-room"
kind = "offgas"
source = "env-b3"
register = {{ table = "holding", address = 10, type = "u16" }}

[[sensors]]
id = "ups-b3-1.on_battery"
zone = "b3-battery-room"
kind = "on_battery"
source = "ups-b3-1"
register = {{ table = "holding", address = 0, type = "u32", bit = 2 }}

[[sensors]]
id = "ups-b3-1.runtime"
zone = "b3-battery-room"
kind = "runtime"
source = "ups-b3-1"
register = {{ table = "holding", address = 128, type = "u32", word_order = "high_first" }}

[detect.temperature]
# The test sets values by hand, tens of degrees apart within a second; the glitch check
# (max_rate, tested in detect_scenarios) is not what this test is about.
max_rate = 1000000.0
warn_above = 35.0
alarm_above = 57.0
critical_above = 90.0
rise_warn = 2.0
rise_alarm = 8.3
rise_window = "10s"
for = "1s"
hysteresis = 1.0
stale_after = "5s"

[detect.offgas]
warn_above = 5.0
alarm_above = 20.0
critical_above = 200.0
for = "1s"
hysteresis = 2.0
stale_after = "5s"

"#
    )
}

/// `room_config_with` and nothing extra.
pub fn room_config(
    dir: &Path,
    env: SocketAddr,
    ups: SocketAddr,
    dns: SocketAddr,
    api_port: u16,
) -> std::path::PathBuf {
    room_config_with(dir, env, ups, dns, api_port, "")
}

/// Knot serving `example.test` with `app A 192.0.2.10`, updates signed with the room's
/// TSIG key.
pub fn knot() -> Knot {
    Knot::start(
        "example.test",
        &[("app", "A", "192.0.2.10")],
        Some(("firebreak", "hmac-sha256", &secret_b64())),
    )
}
