//! The whole chain, with real protocols: the simulator plays a room over Modbus TCP, the
//! real `firebreak` binary watches it, and on a confirmed fire moves a DNS record on a real
//! Knot server with a TSIG-signed RFC 2136 UPDATE.

use crate::support;

use firebreak::detect::{Cause, SensorState, ZoneLevel};
use std::time::Duration;
use support::agent::{start_sim, Agent};
use support::events::{index_of, Event};
use support::room::{knot, room_config};

thread_local! {
    /// The API port of the agent a test starts (one agent per test thread).
    static API_PORT: u16 = support::free_port();
}

#[test]
fn confirmed_fire_moves_the_dns_record_and_declares_safe_to_cut_power() {
    let knot = knot();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(&rt, "offgas-then-heat.toml", 2.0);
    let dir = tempfile::tempdir().unwrap();
    let config = room_config(
        dir.path(),
        sim.addr("env-b3").unwrap(),
        sim.addr("ups-b3-1").unwrap(),
        knot.addr(),
        API_PORT.with(|p| *p),
    );
    let mut agent = Agent::start(&config, &dir.path().join("state/events.jsonl"));

    let safe = agent.wait_for("safe_to_cut_power", Duration::from_secs(90), |e| {
        matches!(e.event, Event::SafeToCutPower { .. })
    });
    let Event::SafeToCutPower { zone, incident, .. } = &safe.event else {
        unreachable!()
    };
    assert_eq!(zone, "b3-battery-room");

    // Checked with an independent client, not the agent's own verification.
    assert_eq!(
        knot.dig("app.example.test", "A"),
        vec!["198.51.100.20".to_string()],
        "{}",
        agent.diagnostics()
    );

    let events = agent.events();
    let incident = incident.clone();
    let critical = index_of(&events, |e| {
        matches!(
            e.event,
            Event::ZoneLevel {
                to: ZoneLevel::Critical,
                ..
            }
        )
    })
    .expect("zone_level to critical");
    let started = index_of(&events, |e| matches!(e.event, Event::RunbookStarted { .. }))
        .expect("runbook_started");
    let step = index_of(&events, |e| matches!(e.event, Event::StepFinished { .. }))
        .expect("step_finished");
    let finished = index_of(&events, |e| {
        matches!(e.event, Event::RunbookFinished { .. })
    })
    .expect("runbook_finished");
    let safe_at = index_of(&events, |e| matches!(e.event, Event::SafeToCutPower { .. })).unwrap();
    assert!(
        critical < started && started < step && step < finished && finished < safe_at,
        "{}",
        agent.diagnostics()
    );

    let Event::ZoneLevel { evidence, .. } = &events[critical].event else {
        unreachable!()
    };
    let named: Vec<&str> = evidence.iter().map(|e| e.sensor.as_str()).collect();
    assert!(
        named.contains(&"b3.offgas.1"),
        "off-gas is part of the evidence: {named:?}"
    );
    assert!(
        named.iter().any(|s| s.starts_with("b3.temp")),
        "a temperature is part of the evidence: {named:?}"
    );

    let Event::RunbookStarted {
        cause,
        incident: started_incident,
        ..
    } = &events[started].event
    else {
        unreachable!()
    };
    assert_eq!(*cause, Cause::Fire);
    assert_eq!(started_incident, &incident);
    let Event::StepFinished {
        ok,
        verified,
        incident: step_incident,
        ..
    } = &events[step].event
    else {
        unreachable!()
    };
    assert!(*ok, "{}", agent.diagnostics());
    assert!(*verified);
    assert_eq!(step_incident, &incident);
    assert!(matches!(
        events[finished].event,
        Event::RunbookFinished { ok: true, .. }
    ));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e.event, Event::RunbookStarted { .. }))
            .count(),
        1,
        "the runbook runs once per incident"
    );
    for e in &events {
        assert_eq!(e.agent, "test-b3");
        assert!(e.ts.ends_with('Z'));
    }

    assert_eq!(
        agent.stop(),
        Some(0),
        "clean exit on SIGTERM\n{}",
        agent.diagnostics()
    );
    assert!(matches!(
        agent.events().last().unwrap().event,
        Event::AgentStopped { .. }
    ));
    rt.block_on(sim.shutdown());
}

#[test]
fn single_sample_spike_above_critical_does_not_start_the_runbook() {
    let knot = knot();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(&rt, "nuisance-spike.toml", 2.0);
    let dir = tempfile::tempdir().unwrap();
    let config = room_config(
        dir.path(),
        sim.addr("env-b3").unwrap(),
        sim.addr("ups-b3-1").unwrap(),
        knot.addr(),
        API_PORT.with(|p| *p),
    );
    let mut agent = Agent::start(&config, &dir.path().join("state/events.jsonl"));

    // The agent was watching: the genuine (harmless) rise of row 2 later in the scenario
    // shows up, after the spike of row 1 has come and gone.
    agent.wait_for("row 2 warming", Duration::from_secs(60), |e| {
        matches!(&e.event, Event::SensorState { sensor, to, .. }
            if sensor == "b3.temp.row2" && *to != SensorState::Ok)
    });
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), sim.finished()).await })
        .expect("scenario finished");

    let events = agent.events();
    assert!(
        !events.iter().any(|e| matches!(
            e.event,
            Event::RunbookStarted { .. }
                | Event::ZoneLevel {
                    to: ZoneLevel::Critical,
                    ..
                }
        )),
        "a one-sample spike must not start a failover\n{}",
        agent.diagnostics()
    );
    assert!(
        !events.iter().any(
            |e| matches!(&e.event, Event::SensorState { sensor, to: SensorState::Critical, .. }
            if sensor == "b3.temp.row1")
        ),
        "the spike is shorter than `for`: row 1 never counts as critical"
    );
    assert_eq!(
        knot.dig("app.example.test", "A"),
        vec!["192.0.2.10".to_string()],
        "DNS untouched"
    );
    assert_eq!(agent.stop(), Some(0));
    rt.block_on(sim.shutdown());
}
