//! Staged response end to end: the simulator plays a room over Modbus TCP, the real
//! `firebreak` binary watches it, a real Knot takes the DNS updates and an HTTP receiver
//! the webhook calls. Prepare at alarm, failover at critical, undo after the cooldown,
//! `should` steps skipped when the UPS is about to run dry.

mod support;

use base64::Engine as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::agent::Agent;
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

fn index_of(
    events: &[serde_json::Value],
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<usize> {
    events.iter().position(pred)
}

fn is_started(e: &serde_json::Value, stage: &str) -> bool {
    e["event"] == "runbook_started" && e["stage"] == stage
}

const MOVE_APP: &str = "[[runbooks.steps]]\n{{dns_move}}\n";

fn get_json(rt: &tokio::runtime::Runtime, port: u16, path: &str) -> serde_json::Value {
    rt.block_on(async {
        reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
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
        e["event"] == "runbook_finished" && e["runbook"] == "prepare-b3"
    });
    agent.wait_for("safe_to_cut_power", Duration::from_secs(90), |e| {
        e["event"] == "safe_to_cut_power"
    });
    let events = agent.events();
    let d = agent.diagnostics();

    let alarm = index_of(&events, |e| {
        e["event"] == "zone_level" && e["to"] == "alarm"
    })
    .expect("zone at alarm");
    let prepare = index_of(&events, |e| is_started(e, "prepare")).expect("prepare started");
    let critical = index_of(&events, |e| {
        e["event"] == "zone_level" && e["to"] == "critical"
    })
    .expect("zone critical");
    let failover = index_of(&events, |e| is_started(e, "failover")).expect("failover started");
    let failover_done = index_of(&events, |e| {
        e["event"] == "runbook_finished" && e["runbook"] == "evacuate-b3"
    })
    .unwrap();
    let safe = index_of(&events, |e| e["event"] == "safe_to_cut_power").unwrap();
    assert!(alarm < prepare && prepare < critical, "{d}");
    let alarm_evidence: Vec<&str> = events[alarm]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state"] == "alarm")
        .filter_map(|e| e["sensor"].as_str())
        .collect();
    assert_eq!(alarm_evidence, ["b3.offgas.1"], "one sensor's word: {d}");
    assert!(critical < failover, "no failover before critical: {d}");
    assert!(
        failover_done < safe,
        "safe only after the failover runbook: {d}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "safe_to_cut_power")
            .count(),
        1
    );
    assert_eq!(events[prepare]["runbook"], "prepare-b3");
    assert_eq!(events[failover]["runbook"], "evacuate-b3");
    assert_eq!(
        events[prepare]["incident"], events[failover]["incident"],
        "one incident, two stages"
    );
    for e in events
        .iter()
        .filter(|e| e["event"] == "step_finished" && e["incident"] == events[prepare]["incident"])
    {
        assert_eq!(e["ok"], true, "{d}");
    }

    // Independent checks: Knot serves the lowered TTL and the moved record, the webhook
    // was called by the prepare runbook with its incident.
    assert_eq!(ttl(&knot, "api.example.test"), 5, "{d}");
    assert_eq!(knot.dig("app.example.test", "A"), ["198.51.100.20"], "{d}");
    let posts = hook.posts();
    let prep_posts: Vec<_> = posts.iter().filter(|p| p.path == "/prepare").collect();
    assert_eq!(prep_posts.len(), 1, "{d}");
    let body: serde_json::Value = serde_json::from_str(&prep_posts[0].body).unwrap();
    assert_eq!(body["incident"], events[prepare]["incident"]);
    assert_eq!(body["level"], "alarm");

    let status = get_json(&rt, api_port, "/api/v1/status");
    let zone = &status["zones"][0];
    assert_eq!(zone["prepare"]["runbook"], "prepare-b3");
    assert_eq!(zone["prepare"]["incident"], events[prepare]["incident"]);
    assert_eq!(zone["prepare"]["undone"], false);
    assert_eq!(zone["safe_to_cut_power"], true);

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
        e["event"] == "prepare_undone"
    });
    let events = agent.events();
    let d = agent.diagnostics();
    assert_eq!(undone["by"], "cooldown", "{d}");
    assert_eq!(undone["ok"], true, "{d}");
    assert_eq!(undone["zone"], ZONE);
    let prepare = index_of(&events, |e| is_started(e, "prepare")).expect("prepare started");
    assert_eq!(undone["incident"], events[prepare]["incident"]);
    let undo = index_of(&events, |e| is_started(e, "undo")).expect("undo started");
    let normal = events
        .iter()
        .rposition(|e| e["event"] == "zone_level" && e["to"] == "normal")
        .expect("zone back to normal");
    assert!(prepare < normal && normal < undo, "{d}");
    assert!(
        !events.iter().any(|e| is_started(e, "failover")
            || (e["event"] == "zone_level" && e["to"] == "critical")
            || e["event"] == "safe_to_cut_power"),
        "no failover for off-gas that clears: {d}"
    );
    // The cooldown is a lower bound: normal for 3 s before the undo. Event stamps are
    // taken when each line is written, a few ms after the detection time the cooldown
    // counts from, hence the margin.
    let ts = |e: &serde_json::Value| {
        time::OffsetDateTime::parse(
            e["ts"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
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
    let status = get_json(&rt, api_port, "/api/v1/status");
    assert_eq!(status["zones"][0]["prepare"]["undone"], true);
    assert_eq!(status["zones"][0]["prepare"]["running"], false);
    assert!(status["zones"][0]["incident"].is_null());
    // On mains with level temperatures, the expected power loss is unknown: null, not absent.
    let zone = status["zones"][0].as_object().unwrap();
    assert!(zone["seconds_to_power_loss"].is_null(), "{zone:?}");
    assert!(zone["power_loss_basis"].is_null(), "{zone:?}");

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

    let safe = agent.wait_for("safe_to_cut_power", Duration::from_secs(60), |e| {
        e["event"] == "safe_to_cut_power"
    });
    let events = agent.events();
    let d = agent.diagnostics();
    let skipped: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"] == "step_skipped")
        .collect();
    assert_eq!(skipped.len(), 1, "{d}");
    assert_eq!(skipped[0]["step"], "warm the DR caches");
    assert_eq!(skipped[0]["runbook"], "evacuate-b3");
    assert_eq!(skipped[0]["incident"], safe["incident"]);
    let reason = skipped[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("power loss expected in"), "{reason}");
    let ran: Vec<(&str, bool)> = events
        .iter()
        .filter(|e| e["event"] == "step_finished" && e["runbook"] == "evacuate-b3")
        .map(|e| (e["step"].as_str().unwrap(), e["ok"] == true))
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
    let started = index_of(&events, |e| is_started(e, "failover")).unwrap();
    assert_eq!(events[started]["cause"], "power");
    // The must steps finished with battery to spare: the runbook took far less than the
    // 120 s of runtime the UPS reported when the zone went critical.
    let finished = events
        .iter()
        .find(|e| e["event"] == "runbook_finished" && e["runbook"] == "evacuate-b3")
        .unwrap();
    assert!(finished["elapsed_ms"].as_u64().unwrap() < 100_000, "{d}");
    assert_eq!(knot.dig("app.example.test", "A"), ["198.51.100.20"]);
    assert_eq!(
        hook.posts()
            .iter()
            .filter(|p| p.path == "/failover")
            .count(),
        2
    );

    // The estimate is exposed while the UPS counts down.
    let status = get_json(&rt, api_port, "/api/v1/status");
    let zone = &status["zones"][0];
    assert_eq!(zone["power_loss_basis"], "ups_runtime", "{zone}");
    let left = zone["seconds_to_power_loss"].as_f64().unwrap();
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
    let sub = ["/usr/bin/mosquitto_sub", "/usr/local/bin/mosquitto_sub"]
        .iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| {
            panic!("mosquitto_sub not found: install it with `apt-get install -y mosquitto-clients` (or run scripts/test)")
        });
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
        e["event"] == "runbook_finished" && e["runbook"] == "prepare-b3"
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
    assert_eq!(body["incident"], finished["incident"]);

    let undone = agent.wait_for("prepare_undone", Duration::from_secs(30), |e| {
        e["event"] == "prepare_undone"
    });
    let d = agent.diagnostics();
    assert_eq!(undone["by"], "reset", "{d}");
    assert_eq!(undone["ok"], true, "{d}");
    assert_eq!(undone["incident"], finished["incident"]);
    let events = agent.events();
    let reset = events
        .iter()
        .find(|e| e["event"] == "incident_reset")
        .expect("incident_reset");
    assert_eq!(reset["by"], "operator-kim");
    assert_eq!(reset["incident"], finished["incident"]);
    assert!(!events.iter().any(|e| is_started(e, "failover")), "{d}");
    assert_eq!(ttl(&knot, "api.example.test"), 300, "{d}");

    assert_eq!(agent.stop(), Some(0));
    rt.block_on(sim.shutdown());
}
