//! The agent prevents the fire itself: the simulator plays `charge-stopped-by-agent`
//! (closed loop: nothing in the scenario stops the battery's charge), the real `firebreak`
//! binary watches the room, the off-gas alarm starts the prepare runbook, whose
//! `modbus_write` stops the charge on the BMS over Modbus TCP; the vapour decays, nothing
//! runs away, nothing fails over, and once the zone has been normal for
//! `prepare_cooldown` the undo step resumes the charge.

use crate::support;

use firebreak::detect::ZoneLevel;
use firebreak::events::UndoneBy;
use firebreak::incident::Stage;
use hardware_sim::{PlayExtras, PlayOptions, Scenario};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use support::agent::Agent;
use support::events::{index_of, Event, LoggedEvent};

const ZONE: &str = "b3-battery-room";
/// Sim seconds per wall second: the 3 min to the off-gas alarm take 6 s.
const SPEED: f64 = 30.0;

/// The library scenario without its smoke detector (MQTT: no broker in this test).
fn scenario() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("hardware-sim/scenarios/charge-stopped-by-agent.toml");
    let mut s = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    s.devices.retain(|d| d.mqtt.is_none());
    s
}

/// The room as the agent sees it, with the recommended battery-room setup: stop the
/// charge at the off-gas alarm, resume it when the prepare is undone. Detection times are
/// wall time (the room plays `SPEED` times faster).
fn config(dir: &Path, env: SocketAddr, ups: SocketAddr, bms: SocketAddr) -> std::path::PathBuf {
    let text = format!(
        r#"
[agent]
name = "test-b3"
state_dir = "{state}"
event_log = "{state}/events.jsonl"
dry_run = false

[[sources]]
name = "env-b3"
type = "modbus"
url = "tcp://{env}"
unit = 1
poll_interval = "100ms"
timeout = "1s"

[[sources]]
name = "ups-b3-1"
type = "modbus"
url = "tcp://{ups}"
unit = 1
poll_interval = "250ms"
timeout = "1s"

[[sources]]
name = "bms-b3"
type = "modbus"
url = "tcp://{bms}"
unit = 1
poll_interval = "200ms"
timeout = "1s"

[[sensors]]
id = "b3.temp.row1"
zone = "{ZONE}"
kind = "temperature"
source = "env-b3"
register = {{ table = "input", address = 0, type = "i16", scale = 0.1 }}

[[sensors]]
id = "b3.temp.row2"
zone = "{ZONE}"
kind = "temperature"
source = "env-b3"
register = {{ table = "input", address = 1, type = "i16", scale = 0.1 }}

[[sensors]]
id = "b3.offgas.1"
zone = "{ZONE}"
kind = "offgas"
source = "env-b3"
register = {{ table = "holding", address = 10, type = "u16" }}

[[sensors]]
id = "b3.temp.bms"
zone = "{ZONE}"
kind = "temperature"
source = "bms-b3"
register = {{ table = "input", address = 22, type = "f32", word_order = "low_first" }}
critical_above = 80.0

[[sensors]]
id = "ups-b3-1.on_battery"
zone = "{ZONE}"
kind = "on_battery"
source = "ups-b3-1"
register = {{ table = "holding", address = 0, type = "u32", bit = 2 }}

[detect.temperature]
# The room plays 30 times faster than the agent's clock: its noise would look like
# implausible jumps.
max_rate = 1000000.0
warn_above = 35.0
alarm_above = 57.0
critical_above = 90.0
for = "1s"
stale_after = "5s"

[detect.offgas]
warn_above = 10.0
alarm_above = 20.0
critical_above = 200.0
for = "1s"
hysteresis = 1.0
stale_after = "5s"

[[zones]]
id = "{ZONE}"
runbook = "evacuate-b3"
confirm = 2
stale_votes = true
prepare_runbook = "protect-b3"
prepare_cooldown = "2s"

[[runbooks]]
name = "protect-b3"
budget = "30s"

[[runbooks.steps]]
name = "stop charging the B3 strings"
type = "modbus_write"
source = "bms-b3"
register = {{ table = "coil", address = 12 }}
value = 0
verify = {{ table = "discrete", address = 12, equals = 0 }}

[[runbooks.undo_steps]]
name = "resume charging"
type = "modbus_write"
source = "bms-b3"
register = {{ table = "coil", address = 12 }}
value = 1

[[runbooks]]
name = "evacuate-b3"

[[runbooks.steps]]
name = "stop batch writers"
type = "command"
argv = ["true"]
"#,
        state = dir.join("state").display(),
    );
    let path = dir.join("firebreak.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn step_finished<'a>(events: &'a [LoggedEvent], step: &str) -> &'a LoggedEvent {
    events
        .iter()
        .find(|e| matches!(&e.event, Event::StepFinished { step: s, .. } if s == step))
        .unwrap_or_else(|| panic!("no step_finished for `{step}`"))
}

#[test]
fn the_prepare_runbook_stops_the_charge_at_the_offgas_alarm_so_nothing_burns_and_the_undo_resumes_it(
) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt
        .block_on(hardware_sim::play_with(
            scenario(),
            PlayOptions {
                speed: SPEED,
                host: None,
            },
            PlayExtras {
                mqtt_broker: None,
                start_paused: true,
            },
        ))
        .expect("start the simulator");
    let dir = tempfile::tempdir().unwrap();
    let config = config(
        dir.path(),
        sim.addr("env-b3").unwrap(),
        sim.addr("ups-b3-1").unwrap(),
        sim.addr("bms-b3").unwrap(),
    );
    let mut agent = Agent::start(&config, &dir.path().join("state/events.jsonl"));

    // Nothing happens until the agent polls every device it has a source for.
    let until = Instant::now() + Duration::from_secs(30);
    while !["env-b3", "ups-b3-1", "bms-b3"]
        .iter()
        .all(|d| sim.stats(d).is_some_and(|s| s.requests > 0))
    {
        assert!(
            Instant::now() < until,
            "the agent never polled its devices\n{}",
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sim.start();
    assert_eq!(sim.charging(), Some(true));

    let undone = agent.wait_for("prepare_undone", Duration::from_secs(90), |e| {
        matches!(e.event, Event::PrepareUndone { .. })
    });
    let events = agent.events();
    let d = agent.diagnostics();
    let Event::PrepareUndone { by, ok, .. } = &undone.event else {
        unreachable!()
    };
    assert_eq!(*by, UndoneBy::Cooldown, "{d}");
    assert!(*ok, "{d}");

    // The off-gas alarm started the prepare, whose write stopped the charge, verified by
    // the BMS's own state input; the undo resumed it, verified by reading the coil back.
    let alarm = index_of(&events, |e| {
        matches!(
            &e.event,
            Event::ZoneLevel {
                to: ZoneLevel::Alarm,
                ..
            }
        )
    })
    .expect("zone at alarm");
    let prepare = index_of(&events, |e| {
        matches!(
            &e.event,
            Event::RunbookStarted {
                stage: Stage::Prepare,
                ..
            }
        )
    })
    .expect("prepare started");
    let undo = index_of(&events, |e| {
        matches!(
            &e.event,
            Event::RunbookStarted {
                stage: Stage::Undo,
                ..
            }
        )
    })
    .expect("undo started");
    assert!(alarm < prepare && prepare < undo, "{d}");
    let Event::StepFinished {
        ok,
        verified,
        step_type,
        detail,
        ..
    } = &step_finished(&events, "stop charging the B3 strings").event
    else {
        unreachable!()
    };
    assert!(*ok && *verified, "{d}");
    assert_eq!(step_type, "modbus_write");
    let detail = detail.as_deref().unwrap_or_default();
    assert!(
        detail.starts_with("wrote coil 12 := 0 on bms-b3 unit 1 (over the source's connection); discrete 12 reads 0"),
        "{detail}"
    );
    let Event::StepFinished { ok, verified, .. } = &step_finished(&events, "resume charging").event
    else {
        unreachable!()
    };
    assert!(*ok && *verified, "{d}");

    // The room did what the agent told it: stopped once, resumed once, in that order,
    // the stop well before the runaway the scenario plans for 7 min on charge.
    let commands = sim.charge_commands();
    assert_eq!(
        commands.iter().map(|(_, on)| *on).collect::<Vec<_>>(),
        [false, true],
        "{commands:?}\n{d}"
    );
    assert!(commands[0].0 < Duration::from_secs(300), "{commands:?}");
    assert_eq!(sim.charging(), Some(true));

    // No runaway: nothing critical, no failover, the UPS still answers; the agent shared
    // the BMS's one connection between its poller and its steps.
    assert!(
        !events.iter().any(|e| matches!(
            &e.event,
            Event::RunbookStarted {
                stage: Stage::Failover,
                ..
            } | Event::ZoneLevel {
                to: ZoneLevel::Critical,
                ..
            } | Event::SafeToCutPower { .. }
        )),
        "{d}"
    );
    let answered = rt.block_on(async {
        use tokio_modbus::prelude::*;
        let mut ups = tcp::connect_slave(sim.addr("ups-b3-1").unwrap(), Slave(1))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(2), ups.read_holding_registers(0, 2)).await
    });
    assert!(matches!(answered, Ok(Ok(Ok(_)))), "{answered:?}");
    assert_eq!(
        sim.stats("bms-b3").map(|s| s.connections),
        Some(1),
        "one connection to the BMS, polls and writes alike\n{d}"
    );

    assert_eq!(agent.stop(), Some(0));
    rt.block_on(sim.shutdown());
}
