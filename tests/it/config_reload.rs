//! SIGHUP reloads the config of the real binary: a broken file or a restart-only change is
//! rejected (the old config keeps running: API, detection, the log says why); a valid change
//! is applied (new threshold, new zone, dry_run) without dropping an open incident; and the
//! config never changes under a running runbook.

use crate::support;

use firebreak::api::status::{Status, Zone};
use firebreak::detect::{SensorState, ZoneLevel};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::agent::{post, status, Agent};
use support::events::{Event, LoggedEvent};
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
max_rate = 1000000.0  # values set by hand, far apart within a second

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
max_rate = 1000000.0  # values set by hand, far apart within a second
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
        agent.wait_for("agent_started", DEADLINE, |e| {
            matches!(e.event, Event::AgentStarted { .. })
        });
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
        pred: impl Fn(&LoggedEvent) -> bool,
    ) -> LoggedEvent {
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

fn zone<'a>(status: &'a Status, id: &str) -> Option<&'a Zone> {
    status.zones.iter().find(|z| z.id == id)
}

fn count(agent: &Agent, pred: impl Fn(&Event) -> bool) -> usize {
    agent.events().iter().filter(|e| pred(&e.event)).count()
}

fn sensor_to(sensor: &'static str, to: SensorState) -> impl Fn(&LoggedEvent) -> bool {
    move |e| matches!(&e.event, Event::SensorState { sensor: s, to: t, .. } if s == sensor && *t == to)
}

fn is_reloaded(e: &Event) -> bool {
    matches!(e, Event::ConfigReloaded { .. })
}

fn is_reload_failed(e: &Event) -> bool {
    matches!(e, Event::ConfigReloadFailed { .. })
}

/// `config_reload_failed`'s config path and reason.
fn failure(e: &LoggedEvent) -> (&str, &str) {
    match &e.event {
        Event::ConfigReloadFailed { config, reason } => (config, reason),
        other => panic!("not config_reload_failed: {other:?}"),
    }
}

/// `config_reloaded`'s changed sections and dry run.
fn reload(e: &LoggedEvent) -> (&[String], bool) {
    match &e.event {
        Event::ConfigReloaded {
            changed, dry_run, ..
        } => (changed, *dry_run),
        other => panic!("not config_reloaded: {other:?}"),
    }
}

fn stderr(agent: &Agent) -> String {
    std::fs::read_to_string(&agent.stderr_log).unwrap_or_default()
}

/// Sends SIGHUP and waits for the `nth` event that satisfies `pred` (`event` names it).
fn sighup_until(
    agent: &mut Agent,
    event: &str,
    pred: fn(&Event) -> bool,
    nth: usize,
) -> LoggedEvent {
    agent.signal("HUP");
    let until = Instant::now() + DEADLINE;
    loop {
        let found: Vec<LoggedEvent> = agent
            .events()
            .into_iter()
            .filter(|e| pred(&e.event))
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
        sensor_to("a.temp", SensorState::Warn),
    );
    room.publish_until(
        &agent,
        "room/a/temp",
        "20",
        "sensor ok",
        sensor_to("a.temp", SensorState::Ok),
    );

    // A value that is not a number where one is expected: validation names the key.
    let good = std::fs::read_to_string(room.config_path()).unwrap();
    std::fs::write(
        room.config_path(),
        good.replace("alarm_above = 50.0", "alarm_above = \"hot\""),
    )
    .unwrap();
    let failed = sighup_until(&mut agent, "config_reload_failed", is_reload_failed, 1);
    let (config, reason) = failure(&failed);
    assert!(reason.contains("alarm_above"), "{reason}");
    assert_eq!(config, path_str(&room.config_path()));
    assert!(
        stderr(&agent).contains("config reload rejected"),
        "{}",
        agent.diagnostics()
    );
    assert_eq!(count(&agent, is_reloaded), 0);

    // The API still answers with the running config, and detection still works with its
    // thresholds: 45 is above the old warn_above (40).
    let s = status(room.api_port);
    assert!(s.dry_run);
    assert!(zone(&s, "a").is_some());
    room.publish_until(
        &agent,
        "room/a/temp",
        "45",
        "warn with the old config",
        sensor_to("a.temp", SensorState::Warn),
    );

    // A valid file that moves the API: that needs a restart, so nothing is applied (not
    // even the threshold changed alongside).
    let mut moved = k.clone();
    moved.api_port = support::free_port();
    moved.warn_above = 30.0;
    room.write(&moved);
    let failed = sighup_until(&mut agent, "config_reload_failed", is_reload_failed, 2);
    let (_, reason) = failure(&failed);
    assert!(
        reason.contains("api changed") && reason.contains("restart"),
        "{reason}"
    );
    room.publish_until(
        &agent,
        "room/a/temp",
        "20",
        "back to ok",
        sensor_to("a.temp", SensorState::Ok),
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
        sensor_to("a.temp", SensorState::Warn),
    );
    let changes: Vec<LoggedEvent> = agent
        .events()
        .into_iter()
        .skip(seen)
        .filter(|e| matches!(&e.event, Event::SensorState { sensor, .. } if sensor == "a.temp"))
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        matches!(changes[0].event, Event::SensorState { value: Some(v), .. } if v == 45.0),
        "35 warned: {changes:?}"
    );
    assert_eq!(count(&agent, is_reloaded), 0);
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
    let finished = agent.wait_for(
        "runbook_finished",
        DEADLINE,
        |e| matches!(&e.event, Event::RunbookFinished { zone, .. } if zone == "a"),
    );
    let incident = finished.event.incident().unwrap().to_string();
    assert_eq!(
        zone(&status(room.api_port), "a")
            .unwrap()
            .incident
            .as_deref(),
        Some(incident.as_str())
    );

    // The new file: a lower warn threshold, a new zone, dry_run off.
    let mut next = k.clone();
    next.warn_above = 30.0;
    next.zone_b = true;
    next.dry_run = false;
    room.write(&next);
    let reloaded = sighup_until(&mut agent, "config_reloaded", is_reloaded, 1);
    let (changed, dry_run) = reload(&reloaded);
    let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
    for section in ["agent.dry_run", "sensors", "zones"] {
        assert!(changed.contains(&section), "{changed:?}");
    }
    assert!(!dry_run);

    let s = status(room.api_port);
    assert!(!s.dry_run);
    let a = zone(&s, "a").expect("zone a still there");
    assert_eq!(
        a.incident.as_deref(),
        Some(incident.as_str()),
        "the open incident survived: {s:?}"
    );
    assert_eq!(a.level, ZoneLevel::Critical, "{s:?}");
    assert!(zone(&s, "b").is_some(), "the new zone is live: {s:?}");

    // The new threshold is the one detection uses: 35 warns now.
    room.publish_until(
        &agent,
        "room/a/temp",
        "35",
        "warn at 35 under the new config",
        |e| {
            sensor_to("a.temp", SensorState::Warn)(e)
                && matches!(e.event, Event::SensorState { value: Some(v), .. } if v == 35.0)
        },
    );
    // The new zone's sensor is read too.
    room.publish_until(
        &agent,
        "room/b/temp",
        "45",
        "zone b's sensor",
        sensor_to("b.temp", SensorState::Warn),
    );
    // No second incident, no reset: the same incident is still open after the reload.
    assert_eq!(
        count(&agent, |e| matches!(e, Event::IncidentReset { .. })),
        0
    );
    let started: Vec<LoggedEvent> = agent
        .events()
        .into_iter()
        .filter(|e| matches!(&e.event, Event::RunbookStarted { zone, .. } if zone == "a"))
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");

    // And it can still be reset by the operator afterwards.
    let (code, body) = post(room.api_port, "/api/v1/zones/a/reset", Some(TOKEN));
    assert!(code < 300, "{code} {body}");
    agent.wait_for(
        "incident_reset",
        DEADLINE,
        |e| matches!(&e.event, Event::IncidentReset { incident: i, .. } if *i == incident),
    );
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
    agent.wait_for(
        "runbook_started",
        DEADLINE,
        |e| matches!(&e.event, Event::RunbookStarted { zone, .. } if zone == "a"),
    );
    let mut next = k.clone();
    next.warn_above = 30.0;
    room.write(&next);
    let failed = sighup_until(&mut agent, "config_reload_failed", is_reload_failed, 1);
    let (_, reason) = failure(&failed);
    assert!(reason.contains("runbook is running in zone a"), "{reason}");
    let s = status(room.api_port);
    assert!(zone(&s, "a").unwrap().runbook_running, "{s:?}");
    assert_eq!(
        count(&agent, |e| matches!(e, Event::RunbookFinished { .. })),
        0
    );
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
max_rate = 1000000.0  # values set by hand, far apart within a second
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
    agent.wait_for(
        "warn at 45 over Modbus",
        DEADLINE,
        sensor_to("t", SensorState::Warn),
    );
    agent.wait_for_api(api_port);

    // warn_above 50: the rebuilt detection reads 45 again, from a new connection, as ok.
    write("300ms", 50.0);
    let reloaded = sighup_until(&mut agent, "config_reloaded", is_reloaded, 1);
    let (changed, _) = reload(&reloaded);
    assert!(
        changed.iter().any(|c| c == "sources") && changed.iter().any(|c| c == "sensors"),
        "{reloaded:?}"
    );
    let until = Instant::now() + DEADLINE;
    loop {
        let s = status(api_port);
        let t = &zone(&s, "z").unwrap().sensors[0];
        if t.value == Some(45.0) && t.state == SensorState::Ok {
            break;
        }
        assert!(
            Instant::now() < until,
            "45 is ok under warn_above 50: {s:?}\n{}",
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // And back under 40: the reconnected source's reading warns again.
    write("250ms", 40.0);
    let seen = agent.events().len();
    sighup_until(&mut agent, "config_reloaded", is_reloaded, 2);
    let until = Instant::now() + DEADLINE;
    while !agent
        .events()
        .iter()
        .skip(seen)
        .any(sensor_to("t", SensorState::Warn))
    {
        assert!(
            Instant::now() < until,
            "no warn after the second reload\n{}",
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count(&agent, is_reload_failed), 0);
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
}
