//! Every scenario of the simulator's library, played through the real `firebreak` binary
//! over real Modbus TCP and a real Mosquitto broker, then scored against the scenario's
//! ground truth: every fire/power scenario fails over (verified) before `power_cut_at`,
//! no nuisance or normal scenario fails over at all.
//!
//! Scenarios are played faster than real time. So that a rate-of-rise detector sees what
//! it would see in real time, the agent's config (config/demo.toml, written in sim time) is
//! rescaled by `firebreak::demo::fit`: poll intervals, `for`, `rise_window`, `stale_after`,
//! `max_on_battery` are divided by the speed and the per-minute `rise_*` thresholds and
//! `max_rate` are multiplied by it (`stale_after` not below 2 s of wall time). The scenarios run
//! concurrently, each with its own agent and its own MQTT topic prefix on one broker.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use firebreak::demo::fit::Fit;
use firebreak::detect::ZoneLevel;
use hardware_sim::score::{self, Score};
use hardware_sim::{PlayExtras, PlayOptions, Scenario};
use support::agent::Agent;
use support::events::Event;
use support::mosquitto::{Mosquitto, Options};

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

/// The demo's agent config fitted to one scenario's run (see `firebreak::demo::fit`).
fn agent_config(
    scenario: &Scenario,
    sim: &hardware_sim::PlayHandle,
    broker_port: u16,
    speed: f64,
    dir: &Path,
) -> PathBuf {
    let text = firebreak::demo::fit::fit(
        firebreak::demo::DEMO_CONFIG,
        &Fit {
            devices: sim
                .devices()
                .iter()
                .map(|d| (d.name.clone(), d.addr))
                .collect(),
            broker: Some(("127.0.0.1".into(), broker_port)),
            mqtt_devices: scenario.devices.iter().any(|d| d.mqtt.is_some()),
            topic_prefix: Some(scenario.name.clone()),
            client_id: format!("firebreak-{}", scenario.name),
            speed,
            stale_floor: STALE_FLOOR,
            state_dir: dir.join("state"),
            // Port 0: the test does not use the API, and 15 agents picking "free" ports race.
            api_listen: Some("127.0.0.1:0".parse().unwrap()),
            tick_interval: Duration::from_millis(20),
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
    let path = dir.join("firebreak.toml");
    std::fs::write(&path, text).unwrap();
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
        matches!(e.event, Event::AgentStarted { .. })
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
    if let Some(Event::ZoneLevel { evidence, .. }) = events.iter().map(|e| &e.event).find(|e| {
        matches!(
            e,
            Event::ZoneLevel {
                to: ZoneLevel::Critical,
                ..
            }
        )
    }) {
        // Why the zone went critical, for the people reading the test's output.
        println!(
            "{}: critical on {}",
            scenario.name,
            serde_json::to_string(evidence).unwrap()
        );
    }
    // The scorer is the simulator's, a crate of its own: it reads the lines as JSON.
    let lines: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    let result = score::score(
        &scenario.name,
        scenario.truth.as_ref(),
        &lines,
        Some(time::OffsetDateTime::from(t0)),
        speed,
    )
    .unwrap_or_else(|e| panic!("{}: {e}", scenario.name));
    // Closed loop: no failover because the agent stopped the charge, not by luck.
    let mut result = result;
    if scenario.is_closed_loop() && sim.charge_commands().first().map(|(_, on)| *on) != Some(false)
    {
        result.passed = false;
        result
            .problems
            .push("closed loop: the agent never stopped the charge".into());
    }
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
