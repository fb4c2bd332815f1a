//! Staged response in virtual time: `should` steps skipped when power is expected to go
//! first, prepare runbooks that never declare safe to cut power, a failover that waits for
//! its prepare when told to. Steps are `wait` steps, so tokio's paused clock runs them.

use firebreak::clock::SystemClock;
use firebreak::config::{load_str, Config};
use firebreak::detect::Cause;
use firebreak::events::EventLog;
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
    })
}

fn events(shared: &Shared) -> Vec<serde_json::Value> {
    std::fs::read_to_string(&shared.config.agent.event_log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn named<'a>(events: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["event"] == name).collect()
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
    let skipped: Vec<&str> = named(&ev, "step_skipped")
        .iter()
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    // 18 s left after the first step: the 30 s drain cannot fit, the 10 s page can.
    assert_eq!(skipped, ["drain batch jobs"]);
    for e in named(&ev, "step_skipped") {
        assert_eq!(e["runbook"], "failover");
        assert_eq!(e["incident"], d.incident.as_str());
        let reason = e["reason"].as_str().unwrap();
        assert!(reason.contains("power loss expected in"), "{reason}");
    }
    let ran: Vec<&str> = named(&ev, "step_finished")
        .iter()
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        ran,
        ["lower the DNS TTL", "page the on-call", "move the service"]
    );
    assert_eq!(
        named(&ev, "safe_to_cut_power").len(),
        1,
        "skipped should steps do not stand in the way of cutting power"
    );
    let started = named(&ev, "runbook_started");
    assert_eq!(started[0]["stage"], "failover");
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
    assert!(named(&ev, "step_skipped").is_empty());
    assert_eq!(named(&ev, "step_finished").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_prepare_runbook_never_declares_safe_to_cut_power_and_is_not_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let s = shared(config(dir.path(), &wait_step("move", 1, "must"), ""));
    let d = dispatch_stage(s.clone(), 0, Cause::Fire, 1, Stage::Prepare, None, None);
    assert!(d.task.await.unwrap());
    let ev = events(&s);
    assert_eq!(named(&ev, "runbook_started")[0]["stage"], "prepare");
    assert_eq!(named(&ev, "runbook_started")[0]["runbook"], "prepare");
    assert_eq!(named(&ev, "runbook_finished")[0]["ok"], true);
    assert!(named(&ev, "safe_to_cut_power").is_empty());
    assert!(named(&ev, "not_safe_to_cut_power").is_empty());
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
        .filter(|e| e["event"] != "step_finished")
        .map(|e| {
            format!(
                "{} {}",
                e["event"].as_str().unwrap(),
                e["runbook"]
                    .as_str()
                    .unwrap_or(e["zone"].as_str().unwrap_or(""))
            )
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
    assert_eq!(named(&ev, "safe_to_cut_power").len(), 1);
    assert!(named(&ev, "runbook_finished")
        .iter()
        .all(|e| e["runbook"] == "failover"));
    assert!(prep.task.await.unwrap());
}
