//! SIGHUP reloads the config of the real binary: a broken file or a restart-only change is
//! rejected (the old config keeps running: API, detection, the log says why); a valid change
//! is applied (new threshold, new zone, dry_run) without dropping an open incident; and the
//! config never changes under a running runbook.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::agent::{post, Agent};
use support::mosquitto::{Mosquitto, Options};

const DEADLINE: Duration = Duration::from_secs(20);
const TOKEN: &str = "reload-test-token-0123456789";

struct Room {
    broker: Mosquitto,
    dir: tempfile::TempDir,
    api_port: u16,
}

/// Knobs of the test config: the temperature's warn threshold, dry_run, an extra zone,
/// the API port, the runbook's wait.
#[derive(Clone)]
struct Knobs {
    warn_above: f64,
    dry_run: bool,
    zone_b: bool,
    api_port: u16,
    wait: &'static str,
}

impl Room {
    fn new() -> Room {
        let broker = Mosquitto::start(Options::default());
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("api.token");
        std::fs::write(&token, TOKEN).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        Room {
            broker,
            dir,
            api_port: support::free_port(),
        }
    }

    fn knobs(&self) -> Knobs {
        Knobs {
            warn_above: 40.0,
            dry_run: true,
            zone_b: false,
            api_port: self.api_port,
            wait: "100ms",
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("firebreak.toml")
    }

    fn write(&self, k: &Knobs) {
        let zone_b = if k.zone_b {
            r#"
[[sensors]]
id = "b.temp"
zone = "b"
kind = "temperature"
source = "broker"
topic = "room/b/temp"
for = "0s"

[[zones]]
id = "b"
runbook = "r"
confirm = 1
"#
        } else {
            ""
        };
        let text = format!(
            r#"
[agent]
name = "reload-test"
state_dir = "{state}"
event_log = "{state}/events.jsonl"
dry_run = {dry_run}

[api]
listen = "127.0.0.1:{api_port}"
token_file = "{token}"

[[sources]]
name = "broker"
type = "mqtt"
url = "mqtt://127.0.0.1:{port}"
client_id = "firebreak-reload-test"

[[sensors]]
id = "a.temp"
zone = "a"
kind = "temperature"
source = "broker"
topic = "room/a/temp"
for = "0s"
warn_above = {warn}
alarm_above = 50.0
critical_above = 60.0

[[zones]]
id = "a"
runbook = "r"
confirm = 1
{zone_b}
[[runbooks]]
name = "r"
[[runbooks.steps]]
name = "w"
type = "wait"
duration = "{wait}"
"#,
            state = self.state().display(),
            dry_run = k.dry_run,
            api_port = k.api_port,
            token = self.dir.path().join("api.token").display(),
            port = self.broker.port,
            warn = k.warn_above,
            wait = k.wait,
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    fn start(&self) -> Agent {
        let mut agent = Agent::start(&self.config_path(), &self.state().join("events.jsonl"));
        agent.wait_for("agent_started", DEADLINE, |e| e["event"] == "agent_started");
        agent.wait_for_api(self.api_port);
        agent
    }

    /// Publishes `value` on the sensor's topic until an event written after this call
    /// satisfies `pred` (the subscriber may not be connected yet, and MQTT does not keep
    /// the message for it).
    fn publish_until(
        &self,
        agent: &Agent,
        topic: &str,
        value: &str,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let until = Instant::now() + DEADLINE;
        let seen = agent.events().len();
        loop {
            self.broker.publish(topic, value.as_bytes(), None);
            if let Some(e) = agent.events().into_iter().skip(seen).find(|e| pred(e)) {
                return e;
            }
            assert!(Instant::now() < until, "{what}\n{}", agent.diagnostics());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn status(port: u16) -> serde_json::Value {
    support::agent::rt().block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}/api/v1/status"))
            .await
            .expect("API answers")
            .json()
            .await
            .expect("status is JSON")
    })
}

fn zone<'a>(status: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    status["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["id"] == id)
}

fn count(agent: &Agent, event: &str) -> usize {
    agent
        .events()
        .iter()
        .filter(|e| e["event"] == event)
        .count()
}

fn sensor_to(sensor: &'static str, to: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |e| e["event"] == "sensor_state" && e["sensor"] == sensor && e["to"] == to
}

fn stderr(agent: &Agent) -> String {
    std::fs::read_to_string(&agent.stderr_log).unwrap_or_default()
}

fn sighup_until(agent: &mut Agent, event: &str, nth: usize) -> serde_json::Value {
    agent.signal("HUP");
    let name = event.to_string();
    let until = Instant::now() + DEADLINE;
    loop {
        let found: Vec<serde_json::Value> = agent
            .events()
            .into_iter()
            .filter(|e| e["event"] == name.as_str())
            .collect();
        if found.len() >= nth {
            return found[nth - 1].clone();
        }
        assert!(
            Instant::now() < until,
            "no {event} #{nth} after SIGHUP\n{}",
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_broken_config_or_a_restart_only_change_is_rejected_and_the_old_config_keeps_running() {
    let room = Room::new();
    let k = room.knobs();
    room.write(&k);
    let mut agent = room.start();
    room.publish_until(
        &agent,
        "room/a/temp",
        "45",
        "sensor warn",
        sensor_to("a.temp", "warn"),
    );
    room.publish_until(
        &agent,
        "room/a/temp",
        "20",
        "sensor ok",
        sensor_to("a.temp", "ok"),
    );

    // A value that is not a number where one is expected: validation names the key.
    let good = std::fs::read_to_string(room.config_path()).unwrap();
    std::fs::write(
        room.config_path(),
        good.replace("alarm_above = 50.0", "alarm_above = \"hot\""),
    )
    .unwrap();
    let failed = sighup_until(&mut agent, "config_reload_failed", 1);
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("alarm_above"), "{reason}");
    assert_eq!(failed["config"], path_str(&room.config_path()));
    assert!(
        stderr(&agent).contains("config reload rejected"),
        "{}",
        agent.diagnostics()
    );
    assert_eq!(count(&agent, "config_reloaded"), 0);

    // The API still answers with the running config, and detection still works with its
    // thresholds: 45 is above the old warn_above (40).
    let s = status(room.api_port);
    assert_eq!(s["dry_run"], true);
    assert!(zone(&s, "a").is_some());
    room.publish_until(
        &agent,
        "room/a/temp",
        "45",
        "warn with the old config",
        sensor_to("a.temp", "warn"),
    );

    // A valid file that moves the API: that needs a restart, so nothing is applied (not
    // even the threshold changed alongside).
    let mut moved = k.clone();
    moved.api_port = support::free_port();
    moved.warn_above = 30.0;
    room.write(&moved);
    let failed = sighup_until(&mut agent, "config_reload_failed", 2);
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("api changed") && reason.contains("restart"),
        "{reason}"
    );
    room.publish_until(
        &agent,
        "room/a/temp",
        "20",
        "back to ok",
        sensor_to("a.temp", "ok"),
    );
    // 35 would be a warning under the rejected file (30), not under the running one (40):
    // the next state change of the sensor is the 45 that follows, not the 35s.
    let seen = agent.events().len();
    for _ in 0..5 {
        room.broker.publish("room/a/temp", b"35", None);
        std::thread::sleep(Duration::from_millis(100));
    }
    room.publish_until(
        &agent,
        "room/a/temp",
        "45",
        "warn again",
        sensor_to("a.temp", "warn"),
    );
    let changes: Vec<serde_json::Value> = agent
        .events()
        .into_iter()
        .skip(seen)
        .filter(|e| e["event"] == "sensor_state" && e["sensor"] == "a.temp")
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["value"], 45.0, "35 warned: {changes:?}");
    assert_eq!(count(&agent, "config_reloaded"), 0);
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
}

#[test]
fn a_valid_change_applies_live_and_keeps_the_open_incident() {
    let room = Room::new();
    let k = room.knobs();
    room.write(&k);
    let mut agent = room.start();

    // An open incident: manual failover of zone a, its runbook finished, not reset.
    let (code, body) = post(room.api_port, "/api/v1/zones/a/failover", Some(TOKEN));
    assert!(code < 300, "{code} {body}");
    let finished = agent.wait_for("runbook_finished", DEADLINE, |e| {
        e["event"] == "runbook_finished" && e["zone"] == "a"
    });
    let incident = finished["incident"].as_str().unwrap().to_string();
    assert_eq!(
        zone(&status(room.api_port), "a").unwrap()["incident"],
        incident.as_str()
    );

    // The new file: a lower warn threshold, a new zone, dry_run off.
    let mut next = k.clone();
    next.warn_above = 30.0;
    next.zone_b = true;
    next.dry_run = false;
    room.write(&next);
    let reloaded = sighup_until(&mut agent, "config_reloaded", 1);
    let changed: Vec<&str> = reloaded["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for section in ["agent.dry_run", "sensors", "zones"] {
        assert!(changed.contains(&section), "{changed:?}");
    }
    assert_eq!(reloaded["dry_run"], false);

    let s = status(room.api_port);
    assert_eq!(s["dry_run"], false);
    let a = zone(&s, "a").expect("zone a still there");
    assert_eq!(
        a["incident"],
        incident.as_str(),
        "the open incident survived: {s}"
    );
    assert_eq!(a["level"], "critical", "{s}");
    assert!(zone(&s, "b").is_some(), "the new zone is live: {s}");

    // The new threshold is the one detection uses: 35 warns now.
    room.publish_until(
        &agent,
        "room/a/temp",
        "35",
        "warn at 35 under the new config",
        |e| sensor_to("a.temp", "warn")(e) && e["value"] == 35.0,
    );
    // The new zone's sensor is read too.
    room.publish_until(
        &agent,
        "room/b/temp",
        "45",
        "zone b's sensor",
        sensor_to("b.temp", "warn"),
    );
    // No second incident, no reset: the same incident is still open after the reload.
    assert_eq!(count(&agent, "incident_reset"), 0);
    let started: Vec<serde_json::Value> = agent
        .events()
        .into_iter()
        .filter(|e| e["event"] == "runbook_started" && e["zone"] == "a")
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");

    // And it can still be reset by the operator afterwards.
    let (code, body) = post(room.api_port, "/api/v1/zones/a/reset", Some(TOKEN));
    assert!(code < 300, "{code} {body}");
    agent.wait_for("incident_reset", DEADLINE, |e| {
        e["event"] == "incident_reset" && e["incident"] == incident.as_str()
    });
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
}

#[test]
fn the_config_does_not_change_under_a_running_runbook() {
    let room = Room::new();
    let mut k = room.knobs();
    k.dry_run = false;
    k.wait = "10m";
    room.write(&k);
    let mut agent = room.start();
    let (code, body) = post(room.api_port, "/api/v1/zones/a/failover", Some(TOKEN));
    assert!(code < 300, "{code} {body}");
    agent.wait_for("runbook_started", DEADLINE, |e| {
        e["event"] == "runbook_started" && e["zone"] == "a"
    });
    let mut next = k.clone();
    next.warn_above = 30.0;
    room.write(&next);
    let failed = sighup_until(&mut agent, "config_reload_failed", 1);
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("runbook is running in zone a"), "{reason}");
    let s = status(room.api_port);
    assert_eq!(zone(&s, "a").unwrap()["runbook_running"], true, "{s}");
    assert_eq!(count(&agent, "runbook_finished"), 0);
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
}

#[test]
fn a_modbus_source_is_reconnected_by_a_reload_with_its_new_settings() {
    // pymodbus serves a fixed 45.0 C (i16 tenths in holding register 0).
    let server = support::pymodbus::PyModbus::tcp(serde_json::json!([{ "id": 1, "registers": [
        {"address": 0, "type": "int16", "value": 450, "word_order": "big"},
    ]}]));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let api_port = support::free_port();
    let path = dir.path().join("firebreak.toml");
    let write = |poll: &str, warn: f64| {
        let text = format!(
            r#"
[agent]
name = "reload-modbus"
state_dir = "{state}"

[api]
listen = "127.0.0.1:{api_port}"

[[sources]]
name = "env"
type = "modbus"
url = "tcp://127.0.0.1:{port}"
unit = 1
poll_interval = "{poll}"
timeout = "1s"

[[sensors]]
id = "t"
zone = "z"
kind = "temperature"
source = "env"
register = {{ table = "holding", address = 0, type = "i16", scale = 0.1 }}
for = "0s"
warn_above = {warn}
alarm_above = 60.0
critical_above = 90.0

[[zones]]
id = "z"
runbook = "r"

[[runbooks]]
name = "r"
[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"
"#,
            state = state.display(),
            port = server.port.unwrap(),
        );
        std::fs::write(&path, text).unwrap();
    };
    write("250ms", 40.0);
    let mut agent = Agent::start(&path, &state.join("events.jsonl"));
    agent.wait_for("warn at 45 over Modbus", DEADLINE, sensor_to("t", "warn"));
    agent.wait_for_api(api_port);

    // warn_above 50: the rebuilt detection reads 45 again, from a new connection, as ok.
    write("300ms", 50.0);
    let reloaded = sighup_until(&mut agent, "config_reloaded", 1);
    let changed = reloaded["changed"].as_array().unwrap();
    assert!(
        changed.contains(&"sources".into()) && changed.contains(&"sensors".into()),
        "{reloaded}"
    );
    let until = Instant::now() + DEADLINE;
    loop {
        let s = status(api_port);
        let t = &zone(&s, "z").unwrap()["sensors"][0];
        if t["value"] == 45.0 && t["state"] == "ok" {
            break;
        }
        assert!(
            Instant::now() < until,
            "45 is ok under warn_above 50: {s}\n{}",
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // And back under 40: the reconnected source's reading warns again.
    write("250ms", 40.0);
    let seen = agent.events().len();
    sighup_until(&mut agent, "config_reloaded", 2);
    let until = Instant::now() + DEADLINE;
    while !agent.events().iter().skip(seen).any(sensor_to("t", "warn")) {
        assert!(
            Instant::now() < until,
            "no warn after the second reload\n{}",
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count(&agent, "config_reload_failed"), 0);
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
}
