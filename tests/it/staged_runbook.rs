//! Staged response in virtual time: `should` steps skipped when power is expected to go
//! first, prepare runbooks that never declare safe to cut power, a failover that waits for
//! its prepare when told to. Steps are `wait` steps, so tokio's paused clock runs them.

use firebreak::clock::SystemClock;
use firebreak::config::{load_str, Config};
use firebreak::detect::Cause;
use firebreak::events::{Event, EventLog, LoggedEvent};
use firebreak::incident::{dispatch_stage, PowerBoard, Shared, Stage};
use firebreak::journal::Journal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn config(dir: &Path, failover_steps: &str, zone_extra: &str) -> Config {
    let text = format!(
        r#"
[agent]
name = "t"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[[zones]]
id = "z"
runbook = "failover"
prepare_runbook = "prepare"
{zone_extra}

[[runbooks]]
name = "failover"
{failover_steps}

[[runbooks]]
name = "prepare"

[[runbooks.steps]]
name = "warm the standby"
type = "wait"
duration = "5s"

[[runbooks.undo_steps]]
name = "cool the standby"
type = "wait"
duration = "1s"
"#,
        state = dir.join("state").display()
    );
    load_str(&text, "t.toml", Default::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .config
}

fn wait_step(name: &str, secs: u32, priority: &str) -> String {
    format!(
        "[[runbooks.steps]]\nname = \"{name}\"\ntype = \"wait\"\nduration = \"{secs}s\"\npriority = \"{priority}\"\n\n"
    )
}

fn shared(config: Config) -> Arc<Shared> {
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.agent.state_dir).unwrap();
    Arc::new(Shared {
        config: config.clone(),
        metrics: Arc::new(firebreak::sinks::prometheus::Metrics::new()),
        log: Arc::new(EventLog::open(&config.agent.event_log, "t").unwrap()),
        journal: Journal::open(&config.agent.state_dir).unwrap(),
        clock: Arc::new(SystemClock::new()),
        telemetry: None,
        status: None,
        power: PowerBoard::new(config.zones.len()),
        coordinator: Arc::new(firebreak::incident::Alone),
        modbus: Default::default(),
    })
}

/// Every event the run wrote, as the agent's type.
fn events(shared: &Shared) -> Vec<Event> {
    std::fs::read_to_string(&shared.config.agent.event_log)
        .unwrap()
        .lines()
        .map(|l| {
            LoggedEvent::parse(l)
                .unwrap_or_else(|e| panic!("{e}: {l}"))
                .event
        })
        .collect()
}

/// The names of the steps that finished.
fn finished_steps(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StepFinished { step, .. } => Some(step.as_str()),
            _ => None,
        })
        .collect()
}

fn safe_verdicts(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::SafeToCutPower { .. }))
        .count()
}

#[tokio::test(start_paused = true)]
async fn only_the_should_steps_that_do_not_fit_before_the_expected_power_loss_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let steps = [
        wait_step("lower the DNS TTL", 2, "must"),
        wait_step("drain batch jobs", 30, "should"),
        wait_step("page the on-call", 10, "should"),
        wait_step("move the service", 2, "must"),
    ]
    .concat();
    let s = shared(config(dir.path(), &steps, ""));
    // The UPS says 20 s of battery: the four steps would need 44 s.
    s.power.set(0, Some(20.0));
    let started = tokio::time::Instant::now();
    let d = dispatch_stage(s.clone(), 0, Cause::Power, 1, Stage::Failover, None, None);
    assert!(d.task.await.unwrap(), "the runbook counts as ok");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "must steps finished before the power loss: {took:?}"
    );

    let ev = events(&s);
    let skipped: Vec<(&str, &str, &str, &str)> = ev
        .iter()
        .filter_map(|e| match e {
            Event::StepSkipped {
                runbook,
                incident,
                step,
                reason,
            } => Some((
                step.as_str(),
                runbook.as_str(),
                incident.as_str(),
                reason.as_str(),
            )),
            _ => None,
        })
        .collect();
    // 18 s left after the first step: the 30 s drain cannot fit, the 10 s page can.
    assert_eq!(
        skipped.iter().map(|s| s.0).collect::<Vec<_>>(),
        ["drain batch jobs"]
    );
    for (_, runbook, incident, reason) in skipped {
        assert_eq!(runbook, "failover");
        assert_eq!(incident, d.incident.as_str());
        assert!(reason.contains("power loss expected in"), "{reason}");
    }
    assert_eq!(
        finished_steps(&ev),
        ["lower the DNS TTL", "page the on-call", "move the service"]
    );
    assert_eq!(
        safe_verdicts(&ev),
        1,
        "skipped should steps do not stand in the way of cutting power"
    );
    let started = ev
        .iter()
        .find(|e| matches!(e, Event::RunbookStarted { .. }))
        .unwrap();
    assert!(matches!(
        started,
        Event::RunbookStarted {
            stage: Stage::Failover,
            ..
        }
    ));
    let journaled = s.journal.load("z").unwrap().unwrap();
    assert_eq!(
        journaled.steps[1].status,
        firebreak::journal::StepStatus::Skipped
    );
}

#[tokio::test(start_paused = true)]
async fn without_an_expected_power_loss_every_step_runs() {
    let dir = tempfile::tempdir().unwrap();
    let steps = [
        wait_step("lower the DNS TTL", 2, "must"),
        wait_step("drain batch jobs", 30, "should"),
    ]
    .concat();
    let s = shared(config(dir.path(), &steps, ""));
    let d = dispatch_stage(s.clone(), 0, Cause::Fire, 1, Stage::Failover, None, None);
    assert!(d.task.await.unwrap());
    let ev = events(&s);
    assert!(!ev.iter().any(|e| matches!(e, Event::StepSkipped { .. })));
    assert_eq!(finished_steps(&ev).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_prepare_runbook_never_declares_safe_to_cut_power_and_is_not_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(config(dir.path(), &wait_step("move", 1, "must"), ""));
    let d = dispatch_stage(s.clone(), 0, Cause::Fire, 1, Stage::Prepare, None, None);
    assert!(d.task.await.unwrap());
    let ev = events(&s);
    let started = ev
        .iter()
        .find(|e| matches!(e, Event::RunbookStarted { .. }))
        .unwrap();
    assert!(matches!(
        started,
        Event::RunbookStarted {
            stage: Stage::Prepare,
            ..
        }
    ));
    assert!(matches!(started, Event::RunbookStarted { runbook, .. } if runbook == "prepare"));
    let finished = ev
        .iter()
        .find(|e| matches!(e, Event::RunbookFinished { .. }))
        .unwrap();
    assert!(matches!(finished, Event::RunbookFinished { ok: true, .. }));
    assert_eq!(safe_verdicts(&ev), 0);
    assert!(!ev
        .iter()
        .any(|e| matches!(e, Event::NotSafeToCutPower { .. })));
    assert!(
        s.journal.load("z").unwrap().is_none(),
        "a prepare opens no failover incident"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failover_told_to_wait_starts_after_its_prepare_and_continues_its_incident() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(config(
        dir.path(),
        &wait_step("move", 1, "must"),
        "failover_waits_for_prepare = true",
    ));
    let prep = dispatch_stage(s.clone(), 0, Cause::Fire, 1, Stage::Prepare, None, None);
    let fo = dispatch_stage(
        s.clone(),
        0,
        Cause::Fire,
        2,
        Stage::Failover,
        Some(prep.incident.clone()),
        Some(prep.done.clone()),
    );
    assert_eq!(fo.incident, prep.incident, "one incident, two stages");
    assert!(fo.task.await.unwrap());
    let ev = events(&s);
    let order: Vec<String> = ev
        .iter()
        .filter_map(|e| {
            let what = match e {
                Event::StepFinished { .. } => return None,
                Event::RunbookStarted { runbook, .. } => format!("runbook_started {runbook}"),
                Event::RunbookFinished { runbook, .. } => format!("runbook_finished {runbook}"),
                Event::SafeToCutPower { zone, .. } => format!("safe_to_cut_power {zone}"),
                other => format!("{other:?}"),
            };
            Some(what)
        })
        .collect();
    assert_eq!(
        order,
        [
            "runbook_started prepare",
            "runbook_finished prepare",
            "runbook_started failover",
            "runbook_finished failover",
            "safe_to_cut_power z",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failover_that_does_not_wait_runs_alongside_its_prepare() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(config(dir.path(), &wait_step("move", 1, "must"), ""));
    let prep = dispatch_stage(s.clone(), 0, Cause::Fire, 1, Stage::Prepare, None, None);
    let fo = dispatch_stage(
        s.clone(),
        0,
        Cause::Fire,
        2,
        Stage::Failover,
        Some(prep.incident.clone()),
        None,
    );
    assert!(fo.task.await.unwrap());
    // The 1 s failover ends while the 5 s prepare still runs.
    assert!(!prep.task.is_finished());
    let ev = events(&s);
    assert_eq!(safe_verdicts(&ev), 1);
    assert!(ev.iter().all(|e| match e {
        Event::RunbookFinished { runbook, .. } => runbook == "failover",
        _ => true,
    }));
    assert!(prep.task.await.unwrap());
}

/// A failover whose first step ended and was journaled, as an agent leaves it when it is
/// killed between the journal write and the `step_finished` event.
fn journaled_with_first_step_ended(shared: &Shared) -> firebreak::journal::Incident {
    use firebreak::journal::StepStatus;
    let mut inc = firebreak::incident::new_incident(shared, 0, Cause::Fire, 1);
    inc.steps[0].status = StepStatus::Succeeded;
    inc.steps[0].verified = true;
    inc.steps[0].attempts = 1;
    inc.steps[0].unannounced = true;
    inc
}

#[tokio::test(start_paused = true)]
async fn a_step_journaled_but_not_announced_before_a_restart_is_announced_once_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let steps = [
        wait_step("lower the DNS TTL", 2, "must"),
        wait_step("drain the load balancer", 3, "must"),
    ]
    .concat();
    let shared = shared(config(dir.path(), &steps, ""));
    let inc = journaled_with_first_step_ended(&shared);
    firebreak::incident::run(shared.clone(), 0, inc).await;

    let events = events(&shared);
    assert_eq!(
        finished_steps(&events),
        ["lower the DNS TTL", "drain the load balancer"]
    );
    let first = events.iter().find_map(|e| match e {
        Event::StepFinished { step, detail, .. } if step == "lower the DNS TTL" => detail.clone(),
        _ => None,
    });
    assert!(
        first.is_some_and(|d| d.starts_with("written after a restart")),
        "{events:?}"
    );
    assert_eq!(safe_verdicts(&events), 1);
    // The journal no longer says the step waits for its event.
    let journal = shared.journal.load("z").unwrap().unwrap();
    assert!(journal.steps.iter().all(|s| !s.unannounced), "{journal:?}");
}

#[tokio::test(start_paused = true)]
async fn a_step_whose_event_was_written_before_the_restart_is_not_announced_twice() {
    let dir = tempfile::tempdir().unwrap();
    let steps = [
        wait_step("lower the DNS TTL", 2, "must"),
        wait_step("drain the load balancer", 3, "must"),
    ]
    .concat();
    let shared = shared(config(dir.path(), &steps, ""));
    let inc = journaled_with_first_step_ended(&shared);
    // The agent wrote the event, then died before its next journal write.
    shared.write(&Event::StepFinished {
        runbook: inc.runbook.clone(),
        incident: inc.incident.clone(),
        step: "lower the DNS TTL".into(),
        step_type: "wait".into(),
        ok: true,
        attempts: 1,
        elapsed_ms: 2000,
        error: None,
        verified: true,
        detail: None,
    });
    firebreak::incident::run(shared.clone(), 0, inc).await;

    let events = events(&shared);
    assert_eq!(
        finished_steps(&events),
        ["lower the DNS TTL", "drain the load balancer"]
    );
    assert_eq!(safe_verdicts(&events), 1);
}

#[tokio::test(start_paused = true)]
async fn a_verdict_journaled_but_not_announced_before_a_restart_is_announced_once() {
    use firebreak::journal::StepStatus;
    let dir = tempfile::tempdir().unwrap();
    let steps = [
        wait_step("lower the DNS TTL", 2, "must"),
        wait_step("drain the load balancer", 3, "must"),
    ]
    .concat();
    let shared = shared(config(dir.path(), &steps, ""));
    // Every step ran and was announced; the end was journaled, then the agent died.
    let mut inc = firebreak::incident::new_incident(&shared, 0, Cause::Fire, 1);
    for s in &mut inc.steps {
        s.status = StepStatus::Succeeded;
        s.verified = true;
        s.attempts = 1;
    }
    inc.finished = true;
    inc.safe_to_cut_power = Some(true);
    inc.verdict_unannounced = true;
    shared.save(&inc);

    firebreak::incident::announce_verdict_after_restart(&shared, 0, &mut inc);
    // A second restart finds the events in the log and writes nothing more.
    firebreak::incident::announce_verdict_after_restart(&shared, 0, &mut inc);

    let events = events(&shared);
    let ends = events
        .iter()
        .filter(|e| matches!(e, Event::RunbookFinished { ok: true, .. }))
        .count();
    assert_eq!(ends, 1, "{events:?}");
    assert_eq!(safe_verdicts(&events), 1, "{events:?}");
    let journal = shared.journal.load("z").unwrap().unwrap();
    assert!(!journal.verdict_unannounced);
}
