//! Every scenario of the simulator's library, played through the real `firebreak` binary
//! over real Modbus TCP and a real Mosquitto broker, then scored against the scenario's
//! ground truth: every fire/power scenario fails over (verified) before `power_cut_at`,
//! no nuisance or normal scenario fails over at all.
//!
//! Scenarios are played faster than real time. So that a rate-of-rise detector sees what
//! it would see in real time, the agent's config (hardware-sim/scenarios/agent/firebreak.toml,
//! written in sim time) is rescaled: poll intervals, `for`, `rise_window`, `stale_after`,
//! `max_on_battery` are divided by the speed and the per-minute `rise_*` thresholds are
//! multiplied by it (`stale_after` too, but not below 2 s of wall time). The scenarios run
//! concurrently, each with its own agent and its own MQTT topic prefix on one broker.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hardware_sim::score::{self, Score};
use hardware_sim::{PlayExtras, PlayOptions, Scenario};
use support::agent::Agent;
use support::mosquitto::{Mosquitto, Options};
use toml_edit::{value, DocumentMut, Item, Table};

/// Wall seconds a scenario should take at most (the speed follows from its duration).
const WALL_TARGET_SECS: f64 = 90.0;
/// Shortest wall-clock `stale_after` given to the agent.
const STALE_FLOOR: Duration = Duration::from_secs(2);
/// Slowest speed used: short scenarios still run a little faster than real time.
const MIN_SPEED: f64 = 2.0;

fn library_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("hardware-sim/scenarios")
}

fn library() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(library_dir())
        .expect("hardware-sim/scenarios exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn speed_for(scenario: &Scenario) -> f64 {
    (scenario.duration.as_secs_f64() / WALL_TARGET_SECS).max(MIN_SPEED)
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// Divides the duration at `table[key]` (if present) by `speed`, not below `floor`.
fn scale_duration(table: &mut Table, key: &str, speed: f64, floor: Duration) {
    if let Some(text) = table.get(key).and_then(Item::as_str) {
        let d = hardware_sim::scenario::parse_duration(text)
            .unwrap_or_else(|e| panic!("agent config `{key}`: {e}"));
        table[key] = value(ms(d.div_f64(speed).max(floor)));
    }
}

/// The shared agent config for one scenario: its devices' addresses, the broker, a
/// temp state dir and every time constant rescaled for `speed`.
fn agent_config(
    scenario: &Scenario,
    sim: &hardware_sim::PlayHandle,
    broker_port: u16,
    speed: f64,
    dir: &Path,
) -> PathBuf {
    let text = std::fs::read_to_string(library_dir().join("agent/firebreak.toml")).unwrap();
    let mut doc: DocumentMut = text.parse().expect("agent config is TOML");
    let state = dir.join("state");
    doc["agent"]["state_dir"] = value(state.display().to_string());
    doc["agent"]["event_log"] = value(state.join("events.jsonl").display().to_string());
    doc["agent"]["tick_interval"] = value("20ms");
    // Port 0: the test does not use the API, and 15 agents picking "free" ports race.
    doc["api"]["listen"] = value("127.0.0.1:0");

    let has_mqtt = scenario.devices.iter().any(|d| d.mqtt.is_some());
    let sources = doc["sources"].as_array_of_tables_mut().unwrap();
    let mut dropped = Vec::new();
    sources.retain(|s| {
        let name = s["name"].as_str().unwrap().to_string();
        let keep = s["type"].as_str() == Some("mqtt") || sim.addr(&name).is_some();
        if !keep {
            dropped.push(name);
        }
        keep
    });
    for s in sources.iter_mut() {
        let name = s["name"].as_str().unwrap().to_string();
        if s["type"].as_str() == Some("mqtt") {
            s["url"] = value(format!("mqtt://127.0.0.1:{broker_port}"));
            s["client_id"] = value(format!("firebreak-{}", scenario.name));
        } else {
            s["url"] = value(format!("tcp://{}", sim.addr(&name).unwrap()));
            scale_duration(s, "poll_interval", speed, Duration::from_millis(20));
            // Not a detection constant: only how long a dead device takes to notice.
            scale_duration(s, "timeout", speed, Duration::from_millis(300));
        }
    }
    let sensors = doc["sensors"].as_array_of_tables_mut().unwrap();
    for s in sensors.iter_mut() {
        if let Some(topic) = s.get("topic").and_then(Item::as_str) {
            let topic = format!("{}/{topic}", scenario.name);
            s["topic"] = value(topic);
        }
    }
    sensors.retain(|s| {
        let source = s["source"].as_str().unwrap();
        if s.contains_key("topic") {
            has_mqtt
        } else {
            !dropped.iter().any(|d| d == source)
        }
    });
    let kinds: std::collections::BTreeSet<String> = sensors
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_string())
        .collect();

    let detect = doc["detect"].as_table_mut().unwrap();
    for kind in kinds {
        if !detect.contains_key(&kind) {
            detect.insert(&kind, Item::Table(Table::new()));
        }
        let t = detect[&kind].as_table_mut().unwrap();
        // The agent's built-in defaults, written out so that they get rescaled too.
        if !t.contains_key("for") {
            t["for"] = value("2s");
        }
        if !t.contains_key("stale_after") {
            t["stale_after"] = value("5s");
        }
        for key in ["for", "rise_window"] {
            scale_duration(t, key, speed, Duration::from_millis(1));
        }
        // Staleness is not what a rate-of-rise detector sees; a floor keeps a busy CI
        // machine's scheduling hiccups from looking like dead sensors.
        scale_duration(t, "stale_after", speed, STALE_FLOOR);
        for key in ["rise_warn", "rise_alarm"] {
            if let Some(v) = t.get(key).and_then(Item::as_float) {
                t[key] = value(v * speed);
            }
        }
    }
    for zone in doc["zones"].as_array_of_tables_mut().unwrap().iter_mut() {
        scale_duration(zone, "max_on_battery", speed, Duration::from_millis(1));
    }

    let path = dir.join("firebreak.toml");
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

/// Plays one scenario against its own agent and scores the event log.
fn run_one(file: &Path, broker_port: u16) -> (Score, String) {
    let mut scenario =
        Scenario::from_file(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    // The scenarios share one broker: each publishes under its own prefix.
    for d in &mut scenario.devices {
        if let Some(m) = &mut d.mqtt {
            m.topic = format!("{}/{}", scenario.name, m.topic);
        }
    }
    let speed = speed_for(&scenario);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt
        .block_on(hardware_sim::play_with(
            scenario.clone(),
            PlayOptions { speed, host: None },
            PlayExtras {
                mqtt_broker: Some(format!("mqtt://127.0.0.1:{broker_port}")),
                start_paused: true,
            },
        ))
        .unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
    let dir = tempfile::tempdir().unwrap();
    let config = agent_config(&scenario, &sim, broker_port, speed, dir.path());
    let mut agent = Agent::start(&config, &dir.path().join("state/events.jsonl"));

    // Nothing happens until the agent is polling every device.
    agent.wait_for("agent_started", Duration::from_secs(60), |e| {
        e["event"] == "agent_started"
    });
    let until = Instant::now() + Duration::from_secs(60);
    while !sim
        .devices()
        .iter()
        .all(|d| sim.stats(&d.name).is_some_and(|s| s.requests > 0))
    {
        assert!(
            Instant::now() < until,
            "{}: the agent never polled every device\n{}",
            scenario.name,
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sim.start();
    let t0 = sim.started_wall().expect("started");
    rt.block_on(sim.finished());

    let events = agent.events();
    if let Some(critical) = events
        .iter()
        .find(|e| e["event"] == "zone_level" && e["to"] == "critical")
    {
        // Why the zone went critical, for the people reading the test's output.
        println!("{}: critical on {}", scenario.name, critical["evidence"]);
    }
    let result = score::score(
        &scenario.name,
        scenario.truth.as_ref(),
        &events,
        Some(time::OffsetDateTime::from(t0)),
        speed,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
    let diagnostics = if result.passed {
        String::new()
    } else {
        format!(
            "=== {} (speed {speed:.1}) ===\n{}",
            scenario.name,
            agent.diagnostics()
        )
    };
    agent.stop();
    rt.block_on(sim.shutdown());
    (result, diagnostics)
}

#[test]
fn every_library_scenario_fails_over_in_time_or_not_at_all() {
    let broker = Mosquitto::start(Options::default());
    let files = library();
    assert!(
        files.len() >= 12,
        "the library: normal day, DOMAIN 1-8, a Pangyo-like replay (found {files:?})"
    );
    for f in &files {
        let s = Scenario::from_file(f).unwrap();
        assert!(s.truth.is_some(), "{}: no [truth]", f.display());
    }
    let port = broker.port;
    let runs: Vec<_> = files
        .into_iter()
        .map(|f| std::thread::spawn(move || run_one(&f, port)))
        .collect();
    let results: Vec<(Score, String)> = runs
        .into_iter()
        .map(|h| h.join().expect("scenario thread"))
        .collect();
    let scores: Vec<Score> = results.iter().map(|(s, _)| s.clone()).collect();
    let table = score::table(&scores);
    println!("{table}");

    let failed: Vec<&String> = results
        .iter()
        .filter(|(s, _)| !s.passed)
        .map(|(_, d)| d)
        .collect();
    assert!(
        failed.is_empty(),
        "{table}\n{}",
        failed
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The fire and power scenarios did fail over, with time to spare.
    for s in scores.iter().filter(|s| s.failover_expected) {
        assert!(s.lead_ms.is_some_and(|l| l > 0), "{table}");
    }
    assert!(scores.iter().any(|s| s.kind == "fire"));
    assert!(scores.iter().any(|s| s.kind == "power"));
}
