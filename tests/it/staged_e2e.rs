//! Staged response end to end: the simulator plays a room over Modbus TCP, the real
//! `firebreak` binary watches it, a real Knot takes the DNS updates and an HTTP receiver
//! the webhook calls. Prepare at alarm, failover at critical, undo after the cooldown,
//! `should` steps skipped when the UPS is about to run dry.

use crate::support;

use base64::Engine as _;
use firebreak::detect::{Cause, SensorState, ZoneLevel};
use firebreak::events::UndoneBy;
use firebreak::incident::Stage;
use firebreak::staged::Basis;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::agent::{status_of, Agent};
use support::events::{index_of, Event, LoggedEvent};
use support::knot::Knot;
use support::mosquitto::{Mosquitto, Options};
use support::receiver::Receiver;

/// One test at a time: each starts an agent, a simulator, Knot and a receiver, and picks
/// free ports that a parallel test could take in between.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

const SECRET: [u8; 32] = *b"firebreak-test-secret-32-bytes!!";
const ZONE: &str = "b3-battery-room";

fn secret_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(SECRET)
}

fn knot() -> Knot {
    Knot::start(
        "example.test",
        &[("app", "A", "192.0.2.10"), ("api", "A", "192.0.2.11")],
        Some(("firebreak", "hmac-sha256", &secret_b64())),
    )
}

/// The TTL Knot serves for `name` A (read with kdig, not by the agent).
fn ttl(knot: &Knot, name: &str) -> u32 {
    let lines = knot.kdig(&[name, "A", "+noall", "+answer"]);
    let line = lines
        .first()
        .unwrap_or_else(|| panic!("no answer for {name}"));
    line.split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the TTL from `{line}`"))
}

/// A scenario file of our own: off-gas, UPS status word and runtime timelines; both
/// temperatures as given (TOML inline arrays).
fn scenario(dir: &Path, offgas: &str, temp1: &str, status: &str, runtime: &str) -> String {
    let text = format!(
        r#"
[scenario]
name = "staged"
description = "staged response test"
duration = "600s"

[[devices]]
name = "env-b3"
protocol = "modbus-tcp"
listen = "127.0.0.1:0"
unit = 1

[[devices.registers]]
signal = "temp.row1"
table = "input"
address = 0
type = "i16"
scale = 0.1
timeline = {temp1}

[[devices.registers]]
signal = "temp.row2"
table = "input"
address = 1
type = "i16"
scale = 0.1
timeline = [{{ at = "0s", set = 23.0 }}]

[[devices.registers]]
signal = "offgas.1"
table = "holding"
address = 10
type = "u16"
timeline = {offgas}

[[devices]]
name = "ups-b3-1"
protocol = "modbus-tcp"
listen = "127.0.0.1:0"
unit = 1

[[devices.registers]]
signal = "status"
table = "holding"
address = 0
type = "u32"
word_order = "high_first"
timeline = {status}

[[devices.registers]]
signal = "runtime"
table = "holding"
address = 128
type = "u32"
word_order = "high_first"
timeline = {runtime}
"#
    );
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn start_scenario(
    rt: &tokio::runtime::Runtime,
    path: &str,
    speed: f64,
) -> hardware_sim::PlayHandle {
    let scenario =
        hardware_sim::Scenario::from_file(path).unwrap_or_else(|e| panic!("scenario {path}: {e}"));
    rt.block_on(hardware_sim::play(
        scenario,
        hardware_sim::PlayOptions { speed, host: None },
    ))
    .expect("start the simulator")
}

struct Room<'a> {
    env: SocketAddr,
    ups: SocketAddr,
    dns: SocketAddr,
    hook: &'a Receiver,
    api_port: u16,
    zone_extra: &'a str,
    failover_steps: &'a str,
    /// Appended to the config (more sources, `[telemetry.mqtt]`).
    extra: &'a str,
}

fn room_config(dir: &Path, room: &Room<'_>) -> std::path::PathBuf {
    let secret_file = dir.join("tsig.secret");
    std::fs::write(&secret_file, format!("{}\n", secret_b64())).unwrap();
    let token_file = dir.join("api.token");
    std::fs::write(&token_file, "test-token\n").unwrap();
    let dns_step = |name: &str, record: &str, value: &str, ttl: u32, extra: &str| {
        format!(
            r#"name = "{name}"
type = "dns_update"
server = "{dns}"
zone = "example.test"
record = "{record}"
rtype = "A"
ttl = {ttl}
values = ["{value}"]
tsig_key = "firebreak"
tsig_algorithm = "hmac-sha256"
tsig_secret_file = "{secret}"
timeout = "3s"
{extra}
"#,
            dns = room.dns,
            secret = secret_file.display()
        )
    };
    let failover_steps = room
        .failover_steps
        .replace(
            "{{dns_move}}",
            &dns_step(
                "move app to the DR site",
                "app.example.test",
                "198.51.100.20",
                30,
                "",
            ),
        )
        .replace("{{hook}}", &room.hook.url("/failover"));
    let text = format!(
        r#"
[agent]
name = "test-b3"
state_dir = "{state}"
event_log = "{state}/events.jsonl"
dry_run = false

[api]
listen = "127.0.0.1:{api_port}"
token_file = "{token}"

{sensors}

[[zones]]
id = "{ZONE}"
runbook = "evacuate-b3"
confirm = 2
stale_votes = true
power_reserve = "5m"
prepare_runbook = "prepare-b3"
{zone_extra}

[[runbooks]]
name = "prepare-b3"

[[runbooks.steps]]
{lower}
[[runbooks.steps]]
name = "warm the standby site"
type = "http"
method = "POST"
url = "{prepare_hook}"
body = '{{"incident":"{{{{incident}}}}","level":"{{{{level}}}}"}}'

[[runbooks.undo_steps]]
{restore}
[[runbooks]]
name = "evacuate-b3"
budget = "90s"

{failover_steps}

{extra}
"#,
        state = dir.join("state").display(),
        token = token_file.display(),
        api_port = room.api_port,
        sensors = support::room::room_sensors(room.env, room.ups),
        zone_extra = room.zone_extra,
        extra = room.extra,
        lower = dns_step("lower the api TTL", "api.example.test", "192.0.2.11", 5, ""),
        restore = dns_step(
            "restore the api TTL",
            "api.example.test",
            "192.0.2.11",
            300,
            ""
        ),
        prepare_hook = room.hook.url("/prepare"),
    );
    let path = dir.join("firebreak.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn is_started(e: &LoggedEvent, stage: Stage) -> bool {
    matches!(&e.event, Event::RunbookStarted { stage: s, .. } if *s == stage)
}

fn is_finished(e: &LoggedEvent, runbook: &str) -> bool {
    matches!(&e.event, Event::RunbookFinished { runbook: r, .. } if r == runbook)
}

fn is_level(e: &LoggedEvent, level: ZoneLevel) -> bool {
    matches!(&e.event, Event::ZoneLevel { to, .. } if *to == level)
}

fn is_safe(e: &LoggedEvent) -> bool {
    matches!(e.event, Event::SafeToCutPower { .. })
}

/// The incident an event names (panics for one that names none).
fn incident(e: &LoggedEvent) -> &str {
    e.event
        .incident()
        .unwrap_or_else(|| panic!("no incident: {e:?}"))
}

const MOVE_APP: &str = "[[runbooks.steps]]\n{{dns_move}}\n";

/// The agent's status document, as its type.
fn get_status(rt: &tokio::runtime::Runtime, port: u16) -> firebreak::api::status::Status {
    status_of(&get_text(rt, port, "/api/v1/status"))
}

fn get_text(rt: &tokio::runtime::Runtime, port: u16, path: &str) -> String {
    rt.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

#[test]
fn offgas_alarm_prepares_and_only_the_confirmed_fire_fails_over() {
    let _serial = serial();
    let knot = knot();
    let hook = Receiver::start(204);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = support::agent::start_sim(&rt, "offgas-then-heat.toml", 2.0);
    let dir = tempfile::tempdir().unwrap();
    let api_port = support::free_port();
    let config = room_config(
        dir.path(),
        &Room {
            env: sim.addr("env-b3").unwrap(),
            ups: sim.addr("ups-b3-1").unwrap(),
            dns: knot.addr(),
            hook: &hook,
            api_port,
            zone_extra: "",
            failover_steps: MOVE_APP,
            extra: "",
        },
    );
    let mut agent = Agent::start(&config, &dir.path().join("state/events.jsonl"));

    // The prepare has run while the zone was at alarm on the off-gas sensor alone.
    agent.wait_for("the prepare runbook's end", Duration::from_secs(90), |e| {
        is_finished(e, "prepare-b3")
    });
    agent.wait_for("safe_to_cut_power", Duration::from_secs(90), is_safe);
    let events = agent.events();
    let d = agent.diagnostics();

    let alarm = index_of(&events, |e| is_level(e, ZoneLevel::Alarm)).expect("zone at alarm");
    let prepare = index_of(&events, |e| is_started(e, Stage::Prepare)).expect("prepare started");
    let critical = index_of(&events, |e| is_level(e, ZoneLevel::Critical)).expect("zone critical");
    let failover = index_of(&events, |e| is_started(e, Stage::Failover)).expect("failover started");
    let failover_done = index_of(&events, |e| is_finished(e, "evacuate-b3")).unwrap();
    let safe = index_of(&events, is_safe).unwrap();
    assert!(alarm < prepare && prepare < critical, "{d}");
    let Event::ZoneLevel { evidence, .. } = &events[alarm].event else {
        unreachable!()
    };
    let alarm_evidence: Vec<&str> = evidence
        .iter()
        .filter(|e| e.state == SensorState::Alarm)
        .map(|e| e.sensor.as_str())
        .collect();
    assert_eq!(alarm_evidence, ["b3.offgas.1"], "one sensor's word: {d}");
    assert!(critical < failover, "no failover before critical: {d}");
    assert!(
        failover_done < safe,
        "safe only after the failover runbook: {d}"
    );
    assert_eq!(events.iter().filter(|e| is_safe(e)).count(), 1);
    let runbook = |e: &LoggedEvent| match &e.event {
        Event::RunbookStarted { runbook, .. } => runbook.clone(),
        other => panic!("not runbook_started: {other:?}"),
    };
    assert_eq!(runbook(&events[prepare]), "prepare-b3");
    assert_eq!(runbook(&events[failover]), "evacuate-b3");
    assert_eq!(
        incident(&events[prepare]),
        incident(&events[failover]),
        "one incident, two stages"
    );
    for e in events.iter().filter(|e| {
        matches!(&e.event, Event::StepFinished { incident: i, .. } if i == incident(&events[prepare]))
    }) {
        assert!(matches!(e.event, Event::StepFinished { ok: true, .. }), "{d}");
    }

    // Independent checks: Knot serves the lowered TTL and the moved record, the webhook
    // was called by the prepare runbook with its incident.
    assert_eq!(ttl(&knot, "api.example.test"), 5, "{d}");
    assert_eq!(knot.dig("app.example.test", "A"), ["198.51.100.20"], "{d}");
    let posts = hook.posts();
    let prep_posts: Vec<_> = posts.iter().filter(|p| p.path == "/prepare").collect();
    assert_eq!(prep_posts.len(), 1, "{d}");
    let body: serde_json::Value = serde_json::from_str(&prep_posts[0].body).unwrap();
    assert_eq!(body["incident"], incident(&events[prepare]));
    assert_eq!(body["level"], "alarm");

    let status = get_status(&rt, api_port);
    let zone = &status.zones[0];
    let prep = zone.prepare.as_ref().expect("the zone's prepare");
    assert_eq!(prep.runbook, "prepare-b3");
    assert_eq!(prep.incident, incident(&events[prepare]));
    assert!(!prep.undone);
    assert!(zone.safe_to_cut_power);

    assert_eq!(agent.stop(), Some(0));
    rt.block_on(sim.shutdown());
}

#[test]
fn offgas_that_clears_prepares_then_undoes_after_the_cooldown_without_failing_over() {
    let _serial = serial();
    let knot = knot();
    let hook = Receiver::start(204);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // DOMAIN.md scenario 2, compressed: vapour rises past alarm, then falls back; the
    // temperature stays level; the UPS stays on mains.
    let path = scenario(
        dir.path(),
        r#"[{ at = "0s", set = 0.0 }, { at = "1s", ramp = 30.0, over = "3s" }, { at = "7s", ramp = 0.0, over = "3s" }]"#,
        r#"[{ at = "0s", set = 23.0 }]"#,
        r#"[{ at = "0s", set = 2 }]"#,
        r#"[{ at = "0s", set = 900 }]"#,
    );
    let sim = start_scenario(&rt, &path, 1.0);
    let api_port = support::free_port();
    let config = room_config(
        dir.path(),
        &Room {
            env: sim.addr("env-b3").unwrap(),
            ups: sim.addr("ups-b3-1").unwrap(),
            dns: knot.addr(),
            hook: &hook,
            api_port,
            // Real time, shortened by config.
            zone_extra: "prepare_cooldown = \"3s\"",
            failover_steps: MOVE_APP,
            extra: "",
        },
    );
    let mut agent = Agent::start(&config, &dir.path().join("state/events.jsonl"));

    let undone = agent.wait_for("prepare_undone", Duration::from_secs(60), |e| {
        matches!(e.event, Event::PrepareUndone { .. })
    });
    let events = agent.events();
    let d = agent.diagnostics();
    let Event::PrepareUndone { by, ok, zone, .. } = &undone.event else {
        unreachable!()
    };
    assert_eq!(*by, UndoneBy::Cooldown, "{d}");
    assert!(*ok, "{d}");
    assert_eq!(zone, ZONE);
    let prepare = index_of(&events, |e| is_started(e, Stage::Prepare)).expect("prepare started");
    assert_eq!(incident(&undone), incident(&events[prepare]));
    let undo = index_of(&events, |e| is_started(e, Stage::Undo)).expect("undo started");
    let normal = events
        .iter()
        .rposition(|e| is_level(e, ZoneLevel::Normal))
        .expect("zone back to normal");
    assert!(prepare < normal && normal < undo, "{d}");
    assert!(
        !events.iter().any(|e| is_started(e, Stage::Failover)
            || is_level(e, ZoneLevel::Critical)
            || is_safe(e)),
        "no failover for off-gas that clears: {d}"
    );
    // The cooldown is a lower bound: normal for 3 s before the undo. Event stamps are
    // taken when each line is written, a few ms after the detection time the cooldown
    // counts from, hence the margin.
    let ts = |e: &LoggedEvent| {
        time::OffsetDateTime::parse(&e.ts, &time::format_description::well_known::Rfc3339).unwrap()
    };
    assert!(
        ts(&events[undo]) - ts(&events[normal]) >= time::Duration::milliseconds(2500),
        "{d}"
    );

    // Knot: the TTL was lowered, then restored by the undo step.
    assert_eq!(ttl(&knot, "api.example.test"), 300, "{d}");
    assert_eq!(
        knot.dig("app.example.test", "A"),
        ["192.0.2.10"],
        "DNS app untouched"
    );
    assert_eq!(hook.posts().len(), 1, "the prepare's webhook, once: {d}");
    let status = get_status(&rt, api_port);
    let zone = &status.zones[0];
    let prep = zone.prepare.as_ref().expect("the zone's prepare");
    assert!(prep.undone);
    assert!(!prep.running);
    assert!(zone.incident.is_none());
    // On mains with level temperatures, the expected power loss is unknown: null, not
    // absent (`status_of` checks that the document holds every field of its type).
    assert!(zone.seconds_to_power_loss.is_none(), "{zone:?}");
    assert!(zone.power_loss_basis.is_none(), "{zone:?}");

    assert_eq!(agent.stop(), Some(0));
    rt.block_on(sim.shutdown());
}

#[test]
fn ups_runtime_shorter_than_the_steps_skips_should_steps_and_must_steps_finish_in_time() {
    let _serial = serial();
    let knot = knot();
    let hook = Receiver::start(204);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Utility loss: on battery at 1 s with 120 s of runtime, counting down.
    let path = scenario(
        dir.path(),
        r#"[{ at = "0s", set = 0.0 }]"#,
        r#"[{ at = "0s", set = 23.0 }]"#,
        r#"[{ at = "0s", set = 2 }, { at = "1s", set = 4 }]"#,
        r#"[{ at = "0s", set = 900 }, { at = "1s", set = 120 }, { at = "2s", ramp = 0, over = "119s" }]"#,
    );
    let sim = start_scenario(&rt, &path, 1.0);
    let api_port = support::free_port();
    let broker = Mosquitto::start(Options::default());
    let mqtt_status = format!(
        r#"
[[sources]]
name = "site-broker"
type = "mqtt"
url = "mqtt://127.0.0.1:{port}"
client_id = "firebreak-staged-test"

[telemetry.mqtt]
source = "site-broker"
prefix = "firebreak/test-b3"
"#,
        port = broker.port
    );
    // 3 + 300 + 5 + 5 s of step timeouts against 120 s of battery.
    let steps = r#"[[runbooks.steps]]
{{dns_move}}
[[runbooks.steps]]
name = "warm the DR caches"
type = "wait"
duration = "300s"
priority = "should"

[[runbooks.steps]]
name = "tell the incident channel"
type = "http"
method = "POST"
url = "{{hook}}"
body = '{"step":"tell"}'
priority = "should"

[[runbooks.steps]]
name = "stop batch writers"
type = "http"
method = "POST"
url = "{{hook}}"
body = '{"step":"stop"}'
"#;
    let config = room_config(
        dir.path(),
        &Room {
            env: sim.addr("env-b3").unwrap(),
            ups: sim.addr("ups-b3-1").unwrap(),
            dns: knot.addr(),
            hook: &hook,
            api_port,
            zone_extra: "",
            failover_steps: steps,
            extra: &mqtt_status,
        },
    );
    let mut agent = Agent::start(&config, &dir.path().join("state/events.jsonl"));

    let safe = agent.wait_for("safe_to_cut_power", Duration::from_secs(60), is_safe);
    let events = agent.events();
    let d = agent.diagnostics();
    let skipped: Vec<&LoggedEvent> = events
        .iter()
        .filter(|e| matches!(e.event, Event::StepSkipped { .. }))
        .collect();
    assert_eq!(skipped.len(), 1, "{d}");
    let Event::StepSkipped {
        step,
        runbook,
        incident: skipped_incident,
        reason,
    } = &skipped[0].event
    else {
        unreachable!()
    };
    assert_eq!(step, "warm the DR caches");
    assert_eq!(runbook, "evacuate-b3");
    assert_eq!(skipped_incident, incident(&safe));
    assert!(reason.starts_with("power loss expected in"), "{reason}");
    let ran: Vec<(&str, bool)> = events
        .iter()
        .filter_map(|e| match &e.event {
            Event::StepFinished {
                runbook, step, ok, ..
            } if runbook == "evacuate-b3" => Some((step.as_str(), *ok)),
            _ => None,
        })
        .collect();
    assert_eq!(
        ran,
        [
            ("move app to the DR site", true),
            ("tell the incident channel", true),
            ("stop batch writers", true)
        ],
        "{d}"
    );
    let started = index_of(&events, |e| is_started(e, Stage::Failover)).unwrap();
    assert!(matches!(
        events[started].event,
        Event::RunbookStarted {
            cause: Cause::Power,
            ..
        }
    ));
    // The must steps finished with battery to spare: the runbook took far less than the
    // 120 s of runtime the UPS reported when the zone went critical.
    let finished = events
        .iter()
        .find(|e| is_finished(e, "evacuate-b3"))
        .unwrap();
    assert!(
        matches!(finished.event, Event::RunbookFinished { elapsed_ms, .. } if elapsed_ms < 100_000),
        "{d}"
    );
    assert_eq!(knot.dig("app.example.test", "A"), ["198.51.100.20"]);
    assert_eq!(
        hook.posts()
            .iter()
            .filter(|p| p.path == "/failover")
            .count(),
        2
    );

    // The estimate is exposed while the UPS counts down.
    let status = get_status(&rt, api_port);
    let zone = &status.zones[0];
    assert_eq!(zone.power_loss_basis, Some(Basis::UpsRuntime), "{zone:?}");
    let left = zone.seconds_to_power_loss.unwrap();
    assert!(left > 0.0 && left <= 120.0, "{left}");
    let metrics = get_text(&rt, api_port, "/metrics");
    assert!(
        metrics.lines().any(|l| l.starts_with(&format!(
            "firebreak_zone_seconds_to_power_loss{{zone=\"{ZONE}\"}}"
        ))),
        "{metrics}"
    );

    // And in the zone's retained MQTT document, read with mosquitto_sub.
    let doc = retained_zone_document(&broker);
    assert_eq!(doc["power_loss_basis"], "ups_runtime", "{doc}");
    assert!(doc["seconds_to_power_loss"].as_f64().is_some(), "{doc}");
    assert_eq!(doc["prepare"]["runbook"], "prepare-b3", "{doc}");

    assert_eq!(agent.stop(), Some(0));
    rt.block_on(sim.shutdown());
}

/// The retained `<prefix>/zones/<zone>` document, read with `mosquitto_sub -C 1`.
fn retained_zone_document(broker: &Mosquitto) -> serde_json::Value {
    let sub = support::peer::require("mosquitto_sub", "apt-get install -y mosquitto-clients");
    let out = std::process::Command::new(sub)
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", &format!("firebreak/test-b3/zones/{ZONE}")])
        .args(["-C", "1", "-W", "10"])
        .output()
        .expect("run mosquitto_sub");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("zone document is not JSON ({e}): {text}"))
}

#[test]
fn operator_reset_of_a_prepared_zone_undoes_the_prepare() {
    let _serial = serial();
    let knot = knot();
    let hook = Receiver::start(204);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Off-gas past alarm that stays there: only an operator ends this.
    let path = scenario(
        dir.path(),
        r#"[{ at = "0s", set = 0.0 }, { at = "1s", ramp = 30.0, over = "2s" }]"#,
        r#"[{ at = "0s", set = 23.0 }]"#,
        r#"[{ at = "0s", set = 2 }]"#,
        r#"[{ at = "0s", set = 900 }]"#,
    );
    let sim = start_scenario(&rt, &path, 1.0);
    let api_port = support::free_port();
    let config = room_config(
        dir.path(),
        &Room {
            env: sim.addr("env-b3").unwrap(),
            ups: sim.addr("ups-b3-1").unwrap(),
            dns: knot.addr(),
            hook: &hook,
            api_port,
            zone_extra: "",
            failover_steps: MOVE_APP,
            extra: "",
        },
    );
    let mut agent = Agent::start(&config, &dir.path().join("state/events.jsonl"));
    let finished = agent.wait_for("the prepare runbook's end", Duration::from_secs(60), |e| {
        is_finished(e, "prepare-b3")
    });
    assert_eq!(ttl(&knot, "api.example.test"), 5, "{}", agent.diagnostics());

    let (code, body) = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{api_port}/api/v1/zones/{ZONE}/reset"
            ))
            .bearer_auth("test-token")
            .json(&serde_json::json!({"by": "operator-kim"}))
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    });
    assert_eq!(code, 200, "{body}\n{}", agent.diagnostics());
    assert_eq!(body["incident"], incident(&finished));

    let undone = agent.wait_for("prepare_undone", Duration::from_secs(30), |e| {
        matches!(e.event, Event::PrepareUndone { .. })
    });
    let d = agent.diagnostics();
    let Event::PrepareUndone { by, ok, .. } = &undone.event else {
        unreachable!()
    };
    assert_eq!(*by, UndoneBy::Reset, "{d}");
    assert!(*ok, "{d}");
    assert_eq!(incident(&undone), incident(&finished));
    let events = agent.events();
    let reset = events
        .iter()
        .find(|e| matches!(e.event, Event::IncidentReset { .. }))
        .expect("incident_reset");
    assert!(matches!(&reset.event, Event::IncidentReset { by, .. } if by == "operator-kim"));
    assert_eq!(incident(reset), incident(&finished));
    assert!(
        !events.iter().any(|e| is_started(e, Stage::Failover)),
        "{d}"
    );
    assert_eq!(ttl(&knot, "api.example.test"), 300, "{d}");

    assert_eq!(agent.stop(), Some(0));
    rt.block_on(sim.shutdown());
}

/// A page sent by the prepare runbook (level `alarm`) ends with the prepare: the reset
/// that undoes it resolves the page, under the same `dedup_key`.
#[test]
fn a_prepare_runbooks_page_is_resolved_when_a_reset_undoes_the_prepare() {
    let _serial = serial();
    let knot = knot();
    let hook = Receiver::start(204);
    let pd = support::pagerduty::PagerDuty::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        dir.path(),
        r#"[{ at = "0s", set = 0.0 }, { at = "1s", ramp = 30.0, over = "2s" }]"#,
        r#"[{ at = "0s", set = 23.0 }]"#,
        r#"[{ at = "0s", set = 2 }]"#,
        r#"[{ at = "0s", set = 900 }]"#,
    );
    let sim = start_scenario(&rt, &path, 1.0);
    let api_port = support::free_port();
    let config = room_config(
        dir.path(),
        &Room {
            env: sim.addr("env-b3").unwrap(),
            ups: sim.addr("ups-b3-1").unwrap(),
            dns: knot.addr(),
            hook: &hook,
            api_port,
            zone_extra: "",
            failover_steps: MOVE_APP,
            extra: "",
        },
    );
    // The prepare runbook pages too (its last step).
    let key = dir.path().join("pagerduty.key");
    std::fs::write(&key, "R0UT1NGKEY0123456789abcdefABCDEF\n").unwrap();
    let page = format!(
        "[[runbooks.steps]]\nname = \"page the on-call\"\ntype = \"pagerduty\"\nurl = \"{}\"\n\
         routing_key_file = \"{}\"\nseverity = \"warning\"\n\n[[runbooks.undo_steps]]",
        pd.url(),
        key.display()
    );
    let text =
        std::fs::read_to_string(&config)
            .unwrap()
            .replacen("[[runbooks.undo_steps]]", &page, 1);
    std::fs::write(&config, text).unwrap();

    let mut agent = Agent::start(&config, &dir.path().join("state/events.jsonl"));
    let finished = agent.wait_for("the prepare runbook's end", Duration::from_secs(60), |e| {
        is_finished(e, "prepare-b3")
    });
    let id = incident(&finished).to_string();
    let trigger = pd.accepted().pop().expect("the prepare's trigger");
    assert_eq!(trigger["dedup_key"], id.as_str());
    assert_eq!(trigger["payload"]["severity"], "warning");
    assert_eq!(trigger["payload"]["custom_details"]["level"], "alarm");
    assert!(pd.alert(&id).open);

    let (code, body) = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{api_port}/api/v1/zones/{ZONE}/reset"
            ))
            .bearer_auth("test-token")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    assert_eq!(code, 200, "{body}\n{}", agent.diagnostics());
    let resolved = agent.wait_for("page_resolved", Duration::from_secs(30), |e| {
        matches!(e.event, Event::PageResolved { .. })
    });
    assert!(
        matches!(&resolved.event, Event::PageResolved { ok: true, runbook, incident, .. }
            if runbook == "prepare-b3" && *incident == id),
        "{resolved:?}"
    );
    let events = agent.events();
    let undone = index_of(&events, |e| matches!(e.event, Event::PrepareUndone { .. }));
    let resolved_at = index_of(&events, |e| matches!(e.event, Event::PageResolved { .. }));
    assert!(undone < resolved_at, "the page ends after the undo steps");
    let alert = pd.alert(&id);
    assert_eq!((alert.opened, alert.resolves, alert.open), (1, 1, false));
    assert_eq!(agent.stop(), Some(0));
    rt.block_on(sim.shutdown());
}
