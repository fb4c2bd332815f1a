//! The whole chain, with real protocols: the simulator plays a room over Modbus TCP, the
//! real `firebreak` binary watches it, and on a confirmed fire moves a DNS record on a real
//! Knot server with a TSIG-signed RFC 2136 UPDATE.

mod support;

use base64::Engine as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::agent::{start_sim, Agent};
use support::knot::Knot;

const SECRET: [u8; 32] = *b"firebreak-test-secret-32-bytes!!";

fn secret_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(SECRET)
}

/// A room config using only the contract's keys.
fn room_config(
    dir: &Path,
    env: SocketAddr,
    ups: SocketAddr,
    dns: SocketAddr,
    api_port: u16,
) -> std::path::PathBuf {
    let secret_file = dir.join("tsig.secret");
    std::fs::write(&secret_file, format!("{}\n", secret_b64())).unwrap();
    let text = format!(
        r#"
[agent]
name = "test-b3"
state_dir = "{state}"
event_log = "{state}/events.jsonl"
dry_run = false

[api]
listen = "127.0.0.1:{api_port}"

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
"#,
        state = dir.join("state").display(),
        secret = secret_file.display(),
    );
    let path = dir.join("firebreak.toml");
    std::fs::write(&path, text).unwrap();
    path
}

thread_local! {
    /// The API port of the agent a test starts (one agent per test thread).
    static API_PORT: u16 = support::free_port();
}

fn knot() -> Knot {
    Knot::start(
        "example.test",
        &[("app", "A", "192.0.2.10")],
        Some(("firebreak", "hmac-sha256", &secret_b64())),
    )
}

fn index_of(
    events: &[serde_json::Value],
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<usize> {
    events.iter().position(pred)
}

#[test]
fn confirmed_fire_moves_the_dns_record_and_declares_safe_to_cut_power() {
    let knot = knot();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(&rt, "offgas-then-heat.toml", 2.0);
    let dir = tempfile::tempdir().unwrap();
    let config = room_config(
        dir.path(),
        sim.addr("env-b3").unwrap(),
        sim.addr("ups-b3-1").unwrap(),
        knot.addr(),
        API_PORT.with(|p| *p),
    );
    let mut agent = Agent::start(&config, &dir.path().join("state/events.jsonl"));

    let safe = agent.wait_for("safe_to_cut_power", Duration::from_secs(90), |e| {
        e["event"] == "safe_to_cut_power"
    });
    assert_eq!(safe["zone"], "b3-battery-room");

    // Checked with an independent client, not the agent's own verification.
    assert_eq!(
        knot.dig("app.example.test", "A"),
        vec!["198.51.100.20".to_string()],
        "{}",
        agent.diagnostics()
    );

    let events = agent.events();
    let incident = safe["incident"].as_str().unwrap().to_string();
    let critical = index_of(&events, |e| {
        e["event"] == "zone_level" && e["to"] == "critical"
    })
    .expect("zone_level to critical");
    let started = index_of(&events, |e| e["event"] == "runbook_started").expect("runbook_started");
    let step = index_of(&events, |e| e["event"] == "step_finished").expect("step_finished");
    let finished =
        index_of(&events, |e| e["event"] == "runbook_finished").expect("runbook_finished");
    let safe_at = index_of(&events, |e| e["event"] == "safe_to_cut_power").unwrap();
    assert!(
        critical < started && started < step && step < finished && finished < safe_at,
        "{}",
        agent.diagnostics()
    );

    let evidence = events[critical]["evidence"].as_array().unwrap();
    let named: Vec<&str> = evidence
        .iter()
        .filter_map(|e| e["sensor"].as_str())
        .collect();
    assert!(
        named.contains(&"b3.offgas.1"),
        "off-gas is part of the evidence: {named:?}"
    );
    assert!(
        named.iter().any(|s| s.starts_with("b3.temp")),
        "a temperature is part of the evidence: {named:?}"
    );

    assert_eq!(events[started]["cause"], "fire");
    assert_eq!(events[started]["incident"], incident.as_str());
    assert_eq!(events[step]["ok"], true, "{}", agent.diagnostics());
    assert_eq!(events[step]["verified"], true);
    assert_eq!(events[step]["incident"], incident.as_str());
    assert_eq!(events[finished]["ok"], true);
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "runbook_started")
            .count(),
        1,
        "the runbook runs once per incident"
    );
    for e in &events {
        assert_eq!(e["agent"], "test-b3");
        assert!(e["ts"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    assert_eq!(
        agent.stop(),
        Some(0),
        "clean exit on SIGTERM\n{}",
        agent.diagnostics()
    );
    assert_eq!(agent.events().last().unwrap()["event"], "agent_stopped");
    rt.block_on(sim.shutdown());
}

#[test]
fn single_sample_spike_above_critical_does_not_start_the_runbook() {
    let knot = knot();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(&rt, "nuisance-spike.toml", 2.0);
    let dir = tempfile::tempdir().unwrap();
    let config = room_config(
        dir.path(),
        sim.addr("env-b3").unwrap(),
        sim.addr("ups-b3-1").unwrap(),
        knot.addr(),
        API_PORT.with(|p| *p),
    );
    let mut agent = Agent::start(&config, &dir.path().join("state/events.jsonl"));

    // The agent was watching: the genuine (harmless) rise of row 2 later in the scenario
    // shows up, after the spike of row 1 has come and gone.
    agent.wait_for("row 2 warming", Duration::from_secs(60), |e| {
        e["event"] == "sensor_state" && e["sensor"] == "b3.temp.row2" && e["to"] != "ok"
    });
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), sim.finished()).await })
        .expect("scenario finished");

    let events = agent.events();
    assert!(
        !events.iter().any(|e| e["event"] == "runbook_started"
            || (e["event"] == "zone_level" && e["to"] == "critical")),
        "a one-sample spike must not start a failover\n{}",
        agent.diagnostics()
    );
    assert!(
        !events.iter().any(|e| e["event"] == "sensor_state"
            && e["sensor"] == "b3.temp.row1"
            && e["to"] == "critical"),
        "the spike is shorter than `for`: row 1 never counts as critical"
    );
    assert_eq!(
        knot.dig("app.example.test", "A"),
        vec!["192.0.2.10".to_string()],
        "DNS untouched"
    );
    assert_eq!(agent.stop(), Some(0));
    rt.block_on(sim.shutdown());
}
