//! The `firebreak-sim` binary: check, registers, play.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use hardware_sim::Scenario;
use support::{shipped, shipped_scenarios};

const BIN: &str = env!("CARGO_BIN_EXE_firebreak-sim");

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn every_shipped_scenario_passes_check() {
    let files = shipped_scenarios();
    assert!(
        files.len() >= 3,
        "expected the shipped scenarios, found {files:?}"
    );
    for file in files {
        Scenario::from_file(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let out = Command::new(BIN)
            .args(["check", "--scenario"])
            .arg(&file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {stdout}{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(": ok"), "{stdout}");
        let scenario = Scenario::from_file(&file).unwrap();
        assert!(
            scenario.truth.is_some(),
            "{}: every library scenario says what should happen ([truth])",
            file.display()
        );
    }
}

#[test]
fn scenarios_lists_the_library_with_its_ground_truth() {
    let out = Command::new(BIN).arg("scenarios").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for file in shipped_scenarios() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(stdout.contains(&name), "{name} missing from\n{stdout}");
    }
    let runaway = stdout
        .lines()
        .find(|l| l.starts_with("li-ion-runaway.toml"))
        .expect("li-ion-runaway listed");
    assert!(runaway.contains("fire") && runaway.contains("expected") && runaway.contains("14m"));
    let spikes = stdout
        .lines()
        .find(|l| l.starts_with("nuisance-spikes.toml"))
        .expect("nuisance-spikes listed");
    assert!(spikes.contains("forbidden"), "{spikes}");
}

fn write_events(name: &str, lines: &[&str]) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("firebreak-sim-{}-{name}.jsonl", std::process::id()));
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

fn score(scenario: &str, events: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["score", "--scenario"])
        .arg(shipped(scenario))
        .arg("--events")
        .arg(events)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn score_passes_a_failover_before_the_power_cut_and_fails_a_missing_one() {
    let started = r#"{"ts":"2026-11-25T10:00:00.000Z","event":"agent_started","agent":"a"}"#;
    let alarm = r#"{"ts":"2026-11-25T10:00:45.000Z","event":"zone_level","agent":"a","zone":"b3-battery-room","from":"warning","to":"critical"}"#;
    let runbook = r#"{"ts":"2026-11-25T10:00:45.100Z","event":"runbook_started","agent":"a","runbook":"evacuate-b3","zone":"b3-battery-room","incident":"i1","cause":"fire","dry_run":false}"#;
    let safe = r#"{"ts":"2026-11-25T10:00:46.000Z","event":"safe_to_cut_power","agent":"a","zone":"b3-battery-room","incident":"i1"}"#;

    // Played at speed 10: verified 46 wall seconds in = 460 sim seconds, cut at 840.
    let good = write_events("good", &[started, alarm, runbook, safe]);
    let out = score("li-ion-runaway.toml", &good, &["--speed", "10", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["failover_verified_ms"], 460_000);
    assert_eq!(json["lead_ms"], 380_000);
    assert_eq!(json["passed"], true);

    let missing = write_events("missing", &[started, alarm]);
    let out = score("li-ion-runaway.toml", &missing, &["--speed", "10"]);
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("FAIL: no verified failover"), "{table}");

    // The same log in a nuisance scenario is a false failover.
    let out = score("nuisance-spikes.toml", &good, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["false_failovers"], 1);
    let _ = std::fs::remove_file(good);
    let _ = std::fs::remove_file(missing);
}

#[test]
fn check_lists_every_problem_with_its_path_and_exits_64() {
    let out = Command::new(BIN)
        .args(["check", "--scenario"])
        .arg(fixture("broken.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "devices[0].registers[1].type: unknown type `u17`",
        "devices[0].registers[1].timeline[1].over: `ramp` needs `over`",
        "devices[0].registers[2].address: u32 at 65535 needs 2 registers and runs past 65535",
        "devices[0].registers[2].timeline[1].at: 20s is after the end of the scenario (10s)",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(stderr.contains("broken.toml: 4 problem(s)"), "{stderr}");
}

#[test]
fn a_missing_file_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["check", "--scenario", "/nonexistent/scenario.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn registers_prints_the_documented_map() {
    let out = Command::new(BIN)
        .args(["registers", "--scenario"])
        .arg(shipped("offgas-then-heat.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec![
                "DEVICE",
                "UNIT",
                "TABLE",
                "ADDRESS",
                "TYPE",
                "WORD_ORDER",
                "SCALE",
                "OFFSET",
                "SIGNAL"
            ],
            vec!["env-b3", "1", "holding", "10", "u16", "-", "1", "0", "offgas.1"],
            vec![
                "env-b3",
                "1",
                "input",
                "0",
                "i16",
                "-",
                "0.1",
                "0",
                "temp.row1"
            ],
            vec![
                "env-b3",
                "1",
                "input",
                "1",
                "i16",
                "-",
                "0.1",
                "0",
                "temp.row2"
            ],
            vec![
                "ups-b3-1",
                "1",
                "holding",
                "0-1",
                "u32",
                "high_first",
                "1",
                "0",
                "status"
            ],
            vec![
                "ups-b3-1",
                "1",
                "holding",
                "128-129",
                "u32",
                "high_first",
                "1",
                "0",
                "runtime"
            ],
            vec![
                "ups-b3-1",
                "1",
                "holding",
                "135",
                "i16",
                "-",
                "0.0078125",
                "0",
                "battery_temp"
            ],
        ]
    );
}

#[test]
fn play_prints_listening_ready_segments_finished_and_exits_at_end() {
    let mut child = Command::new(BIN)
        .args(["play", "--speed", "100", "--exit-at-end", "--scenario"])
        .arg(shipped("nuisance-spike.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // 30 s of sim at speed 100 is 0.3 s of wall time; allow a slow machine plenty more.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("play --exit-at-end did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(&kinds[..3], ["listening", "listening", "ready"]);
    assert_eq!(kinds.last(), Some(&"finished"));
    assert_eq!(lines[0]["device"], "env-b3");
    assert_eq!(lines[0]["protocol"], "modbus-tcp");
    assert_eq!(lines[0]["unit"], 1);
    let addr: std::net::SocketAddr = lines[0]["addr"].as_str().unwrap().parse().unwrap();
    assert_ne!(addr.port(), 0, "the real, bound port is reported");
    assert!(lines.iter().any(|l| l["event"] == "segment"
        && l["t_ms"] == 8000
        && l["signal"] == "temp.row1"
        && l["what"] == "spike"));
}

/// Runs `play --exit-at-end` with `args` and returns its stdout lines, parsed.
fn play_to_end(args: &[&str]) -> Vec<serde_json::Value> {
    let mut child = Command::new(BIN)
        .args(["play", "--exit-at-end"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("play --exit-at-end did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn devices_serves_that_many_copies_of_every_modbus_device() {
    let lines = play_to_end(&[
        "--speed",
        "1000",
        "--devices",
        "50",
        "--scenario",
        shipped("normal-day.toml").to_str().unwrap(),
    ]);
    let listening: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["event"] == "listening").collect();
    assert_eq!(listening.len(), 100, "2 devices x 50");
    let ports: std::collections::HashSet<&str> = listening
        .iter()
        .map(|l| l["addr"].as_str().unwrap())
        .collect();
    assert_eq!(ports.len(), 100, "each copy on its own port");
    assert!(listening.iter().any(|l| l["device"] == "ups-b3-1-50"));
}

#[test]
fn without_a_broker_url_an_embedded_broker_carries_the_mqtt_devices() {
    use std::io::BufRead as _;
    let mut child = Command::new(BIN)
        .args(["play", "--scenario"])
        .arg(shipped("encoding.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let broker = lines
        .by_ref()
        .map(|l| serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap())
        .find(|l| l["event"] == "broker")
        .expect("a broker line");
    let url = broker["url"].as_str().unwrap();
    let port = url.rsplit(':').next().unwrap();
    // mosquitto_sub, a client we did not write, gets the detector's JSON from it.
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", port, "-t", "dc1/b3/asd1/state"])
        .args(["-C", "1", "-W", "30"])
        .output()
        .expect("mosquitto_sub not found: apt-get install -y mosquitto-clients");
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&sub.stdout);
    let payload: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(payload["alarm_level"], "normal");
    assert_eq!(payload["obscuration"], 0.0);
}
