//! `firebreak demo` end to end, as CI and a newcomer run it: the real binary with
//! `--no-tui`, no external services. It plays the Pangyo-like scenario to its power cut,
//! declares the room safe to cut power before it, and writes a report picture (SVG and
//! PNG) and the event log.

use firebreak::events::{Event, LoggedEvent};
use std::path::Path;
use std::process::{Command, Output};

fn demo(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .arg("demo")
        .arg("--no-tui")
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .expect("runs the firebreak binary")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_demo_plays_the_pangyo_fire_fails_over_before_the_power_cut_and_writes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let o = demo(&[], &out);
    let all = text(&o);
    assert_eq!(o.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    // The story as the plain lines tell it: escalation with evidence, the runbook's steps
    // (the dry-run ones say so), the verdict with its lead before the power cut.
    for line in [
        "scenario `pangyo-replay`",
        "ZONE b3-battery-room is now ■ CRITICAL: ",
        "RUNBOOK protect-b3 started (fire",
        "step `stop charging the B3 strings`: ✓ ok dry run (step configured dry_run, nothing contacted): would run modbus_write coil 12 := 0 on bms-b3",
        "RUNBOOK evacuate-b3 started (fire",
        "step `move app.example.test to site B`: ✓ ok dry run (step configured dry_run, nothing contacted): would run dns_update app.example.test A -> 198.51.100.20",
        "step `raise the failover flag for other sites`: ✓ ok published to dc1/failover/b3",
        "*** SAFE TO CUT POWER in b3-battery-room at ",
        "before the scenario cuts the power (at 18:00) ***",
        "note: `move app.example.test to site B` was only rehearsed (dry run)",
        "The scenario's expectation was met (fail over before the power cut; lead ",
    ] {
        assert!(stdout.contains(line), "missing `{line}`\n{all}");
    }

    let svg = std::fs::read_to_string(out.join("report.svg")).expect("report.svg");
    for label in [
        "b3.temp.row1",
        "b3.offgas.1",
        "b3.smoke.asd1",
        "ups-b3-2.runtime",
        "alarm_above 57",
        "critical",
        "SAFE TO CUT POWER",
        "power cut",
    ] {
        assert!(svg.contains(label), "report.svg lacks `{label}`");
    }
    // Non-trivial: hundreds of plotted points, not an empty frame.
    assert!(svg.len() > 50_000, "report.svg is only {} bytes", svg.len());
    let png = std::fs::read(out.join("report.png")).expect("report.png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 50_000, "report.png is only {} bytes", png.len());

    let text = std::fs::read_to_string(out.join("events.jsonl")).expect("events.jsonl");
    let events: Vec<LoggedEvent> = text
        .lines()
        .map(|l| LoggedEvent::parse(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let at = |what: &str, pred: fn(&Event) -> bool| {
        events
            .iter()
            .position(|e| pred(&e.event))
            .unwrap_or_else(|| panic!("no {what}"))
    };
    let started = |e: &Event| matches!(e, Event::RunbookStarted { .. });
    assert!(
        at("agent_started", |e| matches!(e, Event::AgentStarted { .. }))
            < at("runbook_started", started)
    );
    assert!(
        at("runbook_started", started)
            < at("safe_to_cut_power", |e| matches!(
                e,
                Event::SafeToCutPower { .. }
            ))
    );
    // One failover; the staged response's prepare (the off-gas alarm) is not one.
    let failover = |e: &Event| {
        matches!(
            e,
            Event::RunbookStarted {
                stage: firebreak::incident::Stage::Failover,
                ..
            }
        )
    };
    assert_eq!(events.iter().filter(|e| failover(&e.event)).count(), 1);
}

#[test]
fn a_nuisance_scenario_plays_to_its_end_without_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let o = demo(&["--scenario", "nuisance-spike"], &out);
    let all = text(&o);
    assert_eq!(o.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("No failover: the zone never went critical"),
        "{all}"
    );
    assert!(
        stdout.contains("The scenario's expectation was met (no failover)"),
        "{all}"
    );
    assert!(!stdout.contains("RUNBOOK"), "{all}");
    assert!(out.join("report.png").exists() && out.join("report.svg").exists());
}

#[test]
fn an_unknown_scenario_is_refused_with_the_names_to_choose_from() {
    let dir = tempfile::tempdir().unwrap();
    let o = demo(&["--scenario", "pangyo"], dir.path());
    let all = text(&o);
    assert_ne!(o.status.code(), Some(0), "{all}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("no scenario `pangyo` in the library; choose one of: ")
            && stderr.contains("pangyo-replay")
            && stderr.contains("utility-loss"),
        "{all}"
    );
}
