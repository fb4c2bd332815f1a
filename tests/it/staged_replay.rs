//! `firebreak replay` with a staged response (config/staged-response.toml): the prepare
//! and failover decisions, and the undo after the cooldown, with their recorded times.

use firebreak::detect::ZoneLevel;
use firebreak::events::{Event, LoggedEvent};
use firebreak::incident::Stage;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/staged-response.toml")
}

/// 06:13:00Z on the day of the Pangyo fire.
const T0_MS: i64 = 1_665_814_380_000;

/// One row per sensor per second for `secs` seconds; `gas`, `air` and `smoke` by second.
fn rows(
    secs: i64,
    gas: impl Fn(f64) -> f64,
    air: impl Fn(f64) -> f64,
    smoke: impl Fn(f64) -> f64,
) -> String {
    let mut csv = String::from("ts,sensor,value\n");
    for s in 0..secs {
        let t = s as f64;
        let ts = T0_MS + s * 1000;
        let _ = writeln!(csv, "{ts},b3.temp.row1,{:.2}", air(t));
        let _ = writeln!(csv, "{ts},b3.temp.row2,{:.2}", air(t) - 0.3);
        let _ = writeln!(csv, "{ts},b3.offgas.1,{:.2}", gas(t));
        let _ = writeln!(csv, "{ts},b3.smoke.asd1,{:.3}", smoke(t));
        let _ = writeln!(csv, "{ts},ups-b3-1.on_battery,0");
        let _ = writeln!(csv, "{ts},ups-b3-1.runtime,1800");
        let _ = writeln!(csv, "{ts},ups-b3-1.battery_temp,24.0");
    }
    csv
}

fn replay(dir: &Path, csv: &str) -> (String, serde_json::Value) {
    let input = dir.join("room.csv");
    std::fs::write(&input, csv).unwrap();
    let json = dir.join("decisions.json");
    let out = Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .arg("replay")
        .arg("--config")
        .arg(config())
        .arg("--input")
        .arg(&input)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run firebreak replay");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    (stdout, report)
}

/// The events of the `--json` export, as the agent's type.
fn events(report: &serde_json::Value) -> Vec<LoggedEvent> {
    serde_json::from_value(report["events"].clone()).expect("the export's events")
}

/// The event lines among the replay's output, as the agent's type.
fn printed_events(stdout: &str) -> Vec<Event> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            LoggedEvent::parse(l)
                .unwrap_or_else(|e| panic!("{e}: {l}"))
                .event
        })
        .collect()
}

fn ms(ts: &str) -> i64 {
    let t =
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[test]
fn replay_of_offgas_that_clears_shows_the_prepare_and_its_undo_after_the_cooldown() {
    let dir = tempfile::tempdir().unwrap();
    // DOMAIN.md scenario 2: vapour rises for 3 min (8 ppm/min, under rise_alarm), then
    // falls back over 10 min.
    let gas = |t: f64| {
        if t < 60.0 {
            0.5
        } else if t < 240.0 {
            0.5 + (t - 60.0) * 8.0 / 60.0
        } else {
            (24.5 - (t - 240.0) / 25.0).max(0.5)
        }
    };
    let (stdout, report) = replay(dir.path(), &rows(2400, gas, |_| 23.0, |_| 0.0));
    let decisions = report["decisions"].as_array().expect("decisions");
    let stages: Vec<&str> = decisions
        .iter()
        .map(|d| d["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["prepare", "undo"], "{stdout}");
    assert_eq!(decisions[0]["runbook"], "prepare-b3");
    assert_eq!(decisions[0]["incident"], decisions[1]["incident"]);
    // Gas passes 20 ppm (alarm_above) at 206.25 s, held for 2 s.
    let prepare_at = ms(decisions[0]["ts"].as_str().unwrap()) - T0_MS;
    assert!((208_000..=209_000).contains(&prepare_at), "{prepare_at}");
    // Normal once below warn_above - hysteresis (3 ppm) at ~778 s; undone 10 min later.
    let normal = events(&report)
        .into_iter()
        .rfind(|e| {
            matches!(
                e.event,
                Event::ZoneLevel {
                    to: ZoneLevel::Normal,
                    ..
                }
            )
        })
        .expect("back to normal");
    let normal_at = ms(&normal.ts);
    let undo_at = ms(decisions[1]["ts"].as_str().unwrap());
    assert!(undo_at - normal_at >= 600_000, "{stdout}");
    assert!(undo_at - normal_at <= 601_000, "{stdout}");
    assert!(report["criticals"].as_array().unwrap().is_empty());
    assert!(
        stdout
            .contains("would have started its prepare runbook `prepare-b3` at 2022-10-15T06:16:2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("would have undone its prepare runbook `prepare-b3`"),
        "{stdout}"
    );
    assert!(
        printed_events(&stdout)
            .iter()
            .any(|e| matches!(e, Event::PrepareUndone { .. })),
        "{stdout}"
    );
    assert!(
        stdout.contains("no zone would have gone critical"),
        "{stdout}"
    );
}

#[test]
fn replay_of_a_runaway_shows_the_prepare_at_alarm_then_the_failover_at_critical() {
    let dir = tempfile::tempdir().unwrap();
    // Vapour from +60 s at 30 ppm/min; runaway at +420 s: air +10 C/min, smoke rising.
    let gas = |t: f64| 0.5 + if t > 60.0 { 0.5 * (t - 60.0) } else { 0.0 };
    let air = |t: f64| 23.0 + if t > 420.0 { (t - 420.0) / 6.0 } else { 0.0 };
    let smoke = |t: f64| {
        if t > 420.0 {
            ((t - 420.0) / 120.0 * 1.65).min(1.65)
        } else {
            0.0
        }
    };
    let (stdout, report) = replay(dir.path(), &rows(600, gas, air, smoke));
    let decisions = report["decisions"].as_array().expect("decisions");
    let stages: Vec<&str> = decisions
        .iter()
        .map(|d| d["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["prepare", "failover"], "{stdout}");
    assert_eq!(decisions[1]["runbook"], "evacuate-b3");
    assert_eq!(
        decisions[0]["incident"], decisions[1]["incident"],
        "one incident, two stages"
    );
    let prepare_at = ms(decisions[0]["ts"].as_str().unwrap());
    let failover_at = ms(decisions[1]["ts"].as_str().unwrap());
    // The prepare had the whole pre-runaway window: minutes before the failover.
    assert!(failover_at - prepare_at > 180_000, "{stdout}");
    assert_eq!(
        report["criticals"][0]["ts"], decisions[1]["ts"],
        "the failover decision is the critical"
    );
    let started: Vec<(Stage, String)> = events(&report)
        .into_iter()
        .filter_map(|e| match e.event {
            Event::RunbookStarted { stage, runbook, .. } => Some((stage, runbook)),
            _ => None,
        })
        .collect();
    assert_eq!(
        started,
        [
            (Stage::Prepare, "prepare-b3".to_string()),
            (Stage::Failover, "evacuate-b3".to_string())
        ]
    );
    assert!(
        stdout.contains("would have started its failover runbook `evacuate-b3`"),
        "{stdout}"
    );
}
