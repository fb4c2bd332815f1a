//! `firebreak replay`: recorded telemetry in, the events and a summary out, through the
//! real binary, on small files generated here.

use crate::detect_support;

use detect_support::jitter;
use firebreak::detect::{Cause, FaultKind, Level, Reason, ZoneLevel};
use firebreak::events::{Event, LoggedEvent};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every sensor `reason` the replay printed: of `sensor_state` lines and of the evidence
/// of `zone_level` lines.
fn reasons_written(stdout: &str) -> Vec<Reason> {
    let mut out = Vec::new();
    for l in stdout.lines().filter(|l| l.starts_with('{')) {
        match LoggedEvent::parse(l)
            .unwrap_or_else(|e| panic!("{e}: {l}"))
            .event
        {
            Event::SensorState { reason, .. } => out.push(reason),
            Event::ZoneLevel { evidence, .. } => out.extend(evidence.iter().map(|e| e.reason)),
            _ => {}
        }
    }
    out
}

fn contract() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/firebreak.toml")
}

fn replay(input: &Path, json: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_firebreak"));
    cmd.arg("replay")
        .arg("--config")
        .arg(contract())
        .arg("--input")
        .arg(input);
    if let Some(j) = json {
        cmd.arg("--json").arg(j);
    }
    cmd.output().expect("run firebreak replay")
}

/// 06:13:00Z (15:13 in Pangyo): vapour from +60 s at 30 ppm/min, runaway at +420 s.
const T0_MS: i64 = 1_665_814_380_000;

fn runaway_rows() -> Vec<(i64, &'static str, String)> {
    let mut rows = Vec::new();
    for s in 0..600i64 {
        let t = s as f64;
        let ts = T0_MS + s * 1000;
        let air =
            |id: &str| 23.0 + jitter(id, t, 0.2) + if t > 420.0 { (t - 420.0) / 6.0 } else { 0.0 };
        let gas = 0.5 + if t > 60.0 { 0.5 * (t - 60.0) } else { 0.0 };
        let smoke = if t > 420.0 {
            ((t - 420.0) / 120.0 * 1.65).min(1.65)
        } else {
            0.0
        };
        let bms = if t > 420.0 {
            (24.0 + 5.0 * (t - 420.0)).min(210.0)
        } else {
            24.0 + jitter("b", t, 0.1)
        };
        rows.push((ts, "b3.temp.row1", format!("{:.2}", air("r1"))));
        rows.push((ts, "b3.temp.row2", format!("{:.2}", air("r2"))));
        rows.push((ts, "b3.offgas.1", format!("{gas:.2}")));
        rows.push((ts, "b3.smoke.asd1", format!("{smoke:.3}")));
        rows.push((ts, "ups-b3-1.on_battery", "0".into()));
        rows.push((ts, "ups-b3-1.runtime", "1800".into()));
        rows.push((ts, "ups-b3-1.battery_temp", format!("{bms:.3}")));
    }
    rows
}

fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).unwrap();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[test]
fn replaying_a_recorded_runaway_reports_when_and_on_what_the_zone_would_have_gone_critical() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("b3.csv");
    let mut csv = String::from("ts,sensor,value\n");
    for (ts, sensor, value) in runaway_rows() {
        writeln!(csv, "{},{sensor},{value}", rfc3339(ts)).unwrap();
    }
    std::fs::write(&input, csv).unwrap();
    let json = dir.path().join("decisions.json");
    let out = replay(&input, Some(&json));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );

    let events: Vec<LoggedEvent> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| LoggedEvent::parse(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(events.iter().all(|e| e.agent == "pangyo-b3"));
    let critical = events
        .iter()
        .find(|e| {
            matches!(
                e.event,
                Event::ZoneLevel {
                    to: ZoneLevel::Critical,
                    ..
                }
            )
        })
        .expect("a zone_level event to critical");
    // Recorded wall time, in the event log's format: runaway at 06:20:00Z, critical
    // within the following half minute.
    let ts = &critical.ts;
    assert!(ts.starts_with("2022-10-15T06:20:"), "{ts}");
    assert!(ts.ends_with('Z') && ts.len() == 24, "{ts}");
    assert!(matches!(&critical.event, Event::ZoneLevel { evidence, .. } if evidence.len() >= 2));
    assert!(events.iter().any(|e| matches!(
        e.event,
        Event::SensorState {
            reason: Reason::Rise(Level::Alarm),
            ..
        }
    )));
    assert!(events.iter().any(|e| matches!(
        e.event,
        Event::RunbookStarted {
            cause: Cause::Fire,
            dry_run: true,
            ..
        }
    )));

    let summary = stdout
        .lines()
        .filter(|l| !l.starts_with('{'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        summary.contains("zone b3-battery-room would have gone critical at 2022-10-15T06:20:")
            && summary.contains("on evidence b3.offgas.1"),
        "{summary}"
    );
    assert!(summary.contains("replayed 4200 sample(s)"), "{summary}");

    let export: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(export["samples"], 4200);
    assert_eq!(export["criticals"][0]["zone"], "b3-battery-room");
    assert_eq!(export["criticals"][0]["cause"], "fire");
    assert_eq!(export["events"].as_array().unwrap().len(), events.len());
}

#[test]
fn json_lines_with_epoch_ms_faults_gaps_and_unknown_sensors_replay_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("feed.jsonl");
    let mut text = String::new();
    for s in 0..30i64 {
        let ts = T0_MS + s * 1000;
        let v = match s {
            10 => serde_json::json!(null),
            11 => serde_json::json!("nan"),
            12 => serde_json::json!("fault:modbus_exception"),
            _ => serde_json::json!(23.0 + jitter("x", s as f64, 0.2)),
        };
        writeln!(
            text,
            "{}",
            serde_json::json!({"ts": ts, "sensor": "b3.temp.row1", "value": v})
        )
        .unwrap();
        writeln!(
            text,
            "{}",
            serde_json::json!({"ts": ts, "sensor": "b9.mystery", "value": 1})
        )
        .unwrap();
    }
    std::fs::write(&input, text).unwrap();
    let out = replay(&input, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reasons = reasons_written(&stdout);
    for reason in [
        Reason::Fault(FaultKind::NoData),
        Reason::Fault(FaultKind::NotANumber),
        Reason::Fault(FaultKind::ModbusException),
        Reason::Stale,
    ] {
        assert!(reasons.contains(&reason), "{reason} missing:\n{stdout}");
    }
    assert!(
        stdout.contains("ignored 30 sample(s) of 1 sensor(s) not in the config: b9.mystery (30)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("no zone would have gone critical"),
        "{stdout}"
    );
}

#[test]
fn every_recorded_fault_reason_replays_as_that_fault() {
    // An event log's `reason` (`fault:not_numeric`, ...) is a valid recorded value: the
    // replay reads each fault kind back, rather than failing on "unknown fault".
    let faults: Vec<FaultKind> = firebreak::names::all::<FaultKind>().collect();
    assert!(faults.contains(&FaultKind::NotNumeric), "{faults:?}");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("faults.csv");
    let mut csv = String::from("ts,sensor,value\n");
    for (i, fault) in faults.iter().enumerate() {
        let ts = T0_MS + 2 * i as i64 * 1000;
        writeln!(csv, "{ts},b3.temp.row1,23.0").unwrap();
        writeln!(csv, "{},b3.temp.row1,{}", ts + 1000, fault.as_str()).unwrap();
    }
    std::fs::write(&input, csv).unwrap();
    let out = replay(&input, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reasons = reasons_written(&stdout);
    for fault in faults {
        assert!(
            reasons.contains(&Reason::Fault(fault)),
            "{} missing:\n{stdout}",
            fault.as_str()
        );
    }
}

#[test]
fn a_malformed_line_is_named_and_exits_65() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.csv");
    std::fs::write(
        &input,
        "ts,sensor,value\n1665814380000,b3.temp.row1,23.0\n1665814381000,b3.temp.row1,warm\n",
    )
    .unwrap();
    let out = replay(&input, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("bad.csv:3: bad value `warm`"), "{stderr}");

    let out = replay(&dir.path().join("missing.csv"), None);
    assert_eq!(out.status.code(), Some(66));
}

#[test]
fn a_recorded_module_reboot_replays_as_device_faults_not_a_fire() {
    // A quiet minute at 1 Hz on the environment module (both rows and the off-gas sensor),
    // then it reads 0 on every register for 5 s, then the room again.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("reboot.csv");
    let mut csv = String::from("ts,sensor,value\n");
    for s in 0..180i64 {
        let ts = T0_MS + s * 1000;
        let zero = (60..65).contains(&s);
        for (sensor, v) in [
            ("b3.temp.row1", 23.0),
            ("b3.temp.row2", 23.4),
            ("b3.offgas.1", 0.5),
        ] {
            let v = if zero { 0.0 } else { v + (s % 3) as f64 * 0.1 };
            writeln!(csv, "{},{sensor},{v}", rfc3339(ts)).unwrap();
        }
    }
    std::fs::write(&input, csv).unwrap();
    let out = replay(&input, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reasons = reasons_written(&stdout);
    assert!(
        reasons.contains(&Reason::Fault(FaultKind::ImplausibleRate)),
        "{stdout}"
    );
    assert!(!reasons.contains(&Reason::Rise(Level::Alarm)), "{stdout}");
    assert!(
        !stdout.contains("\"to\":\"critical\""),
        "a reboot is no fire:\n{stdout}"
    );
}
