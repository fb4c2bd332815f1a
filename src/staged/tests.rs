use super::*;
use crate::detect::{Reading, Sample};

const S: Nanos = 1_000_000_000;

/// A room with two temperatures, an off-gas sensor and a UPS; `zone_extra` goes into the
/// zone, `steps` are the prepare runbook's steps.
fn config_text(zone_extra: &str, prepare_steps: &str) -> String {
    format!(
        r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-staged-unit"
event_log = "/tmp/firebreak-staged-unit/e.jsonl"

[[sources]]
name = "env"
type = "modbus"
url = "tcp://127.0.0.1:502"
unit = 1
poll_interval = "1s"

[[sensors]]
id = "t1"
zone = "z"
kind = "temperature"
source = "env"
register = {{ table = "input", address = 0, type = "i16", scale = 0.1 }}

[[sensors]]
id = "t2"
zone = "z"
kind = "temperature"
source = "env"
register = {{ table = "input", address = 1, type = "i16", scale = 0.1 }}

[[sensors]]
id = "gas"
zone = "z"
kind = "offgas"
source = "env"
register = {{ table = "input", address = 2, type = "u16" }}

[[sensors]]
id = "ups.on_battery"
zone = "z"
kind = "on_battery"
source = "env"
register = {{ table = "input", address = 3, type = "u16" }}

[[sensors]]
id = "ups.runtime"
zone = "z"
kind = "runtime"
source = "env"
register = {{ table = "input", address = 4, type = "u16" }}

[detect.temperature]
rise_window = "20s"
stale_after = "1h"

[detect.offgas]
stale_after = "1h"

[detect.on_battery]
stale_after = "1h"

[detect.runtime]
stale_after = "1h"

[[zones]]
id = "z"
runbook = "failover"
{zone_extra}

[[runbooks]]
name = "failover"

[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"

[[runbooks]]
name = "prepare"
{prepare_steps}
"#
    )
}

const PREPARE_STEPS: &str = r#"
[[runbooks.steps]]
name = "lower ttl"
type = "wait"
duration = "1s"

[[runbooks.undo_steps]]
name = "raise ttl"
type = "wait"
duration = "1s"
"#;

fn load(zone_extra: &str, prepare_steps: &str) -> Result<Config, Vec<String>> {
    crate::config::load_str(
        &config_text(zone_extra, prepare_steps),
        "t.toml",
        Default::default(),
    )
    .map(|l| l.config)
    .map_err(|e| e.errors.iter().map(|p| p.to_string()).collect())
}

fn staged_config() -> Config {
    load(
        "prepare_runbook = \"prepare\"\nprepare_cooldown = \"10m\"",
        PREPARE_STEPS,
    )
    .unwrap()
}

#[test]
fn config_accepts_prepare_runbook_cooldown_wait_priority_and_undo_steps() {
    let c = load(
        "prepare_runbook = \"prepare\"\nprepare_cooldown = \"90s\"\nfailover_waits_for_prepare = true",
        &format!("{PREPARE_STEPS}priority = \"should\"\n"),
    )
    .unwrap();
    let z = &c.zones[0];
    assert_eq!(c.runbooks[z.prepare_runbook.unwrap()].name, "prepare");
    assert_eq!(z.prepare_cooldown, Duration::from_secs(90));
    assert!(z.failover_waits_for_prepare);
    let prep = &c.runbooks[z.prepare_runbook.unwrap()];
    assert_eq!(
        prep.steps[0].priority,
        Priority::Must,
        "must is the default"
    );
    assert_eq!(prep.undo_steps[0].name, "raise ttl");
    assert_eq!(prep.undo_steps[0].priority, Priority::Should);
}

#[test]
fn config_defaults_the_cooldown_to_ten_minutes() {
    let c = load("prepare_runbook = \"prepare\"", PREPARE_STEPS).unwrap();
    assert_eq!(c.zones[0].prepare_cooldown, Duration::from_secs(600));
    assert!(!c.zones[0].failover_waits_for_prepare);
}

#[test]
fn config_errors_name_the_key_of_a_bad_prepare_runbook_cooldown_or_priority() {
    let errs = load("prepare_runbook = \"nope\"", PREPARE_STEPS).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.starts_with("zones[0].prepare_runbook")
                && e.contains("unknown runbook `nope`")),
        "{errs:?}"
    );
    let errs = load("prepare_runbook = \"failover\"", PREPARE_STEPS).unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.starts_with("zones[0].prepare_runbook") && e.contains("failover runbook")),
        "{errs:?}"
    );
    let errs = load(
        "prepare_runbook = \"prepare\"\nprepare_cooldown = \"a while\"",
        PREPARE_STEPS,
    )
    .unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.starts_with("zones[0].prepare_cooldown")),
        "{errs:?}"
    );
    let errs = load(
        "prepare_runbook = \"prepare\"",
        &format!("{PREPARE_STEPS}priority = \"nice-to-have\"\n"),
    )
    .unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.starts_with("runbooks[1].undo_steps[0].priority")
                && e.contains("\"must\" or \"should\"")),
        "{errs:?}"
    );
}

#[test]
fn alarm_starts_the_prepare_runbook_and_not_the_failover() {
    let mut st = Stager::from_config(&staged_config());
    assert_eq!(st.level(0, ZoneLevel::Warning, 0), None);
    assert_eq!(
        st.level(0, ZoneLevel::Alarm, S),
        Some(Decision::Prepare { zone: 0 })
    );
    assert_eq!(st.phase(0), Phase::Prepared);
    // Back and forth between warning and alarm is the same incident: no second prepare.
    assert_eq!(st.level(0, ZoneLevel::Warning, 2 * S), None);
    assert_eq!(st.level(0, ZoneLevel::Alarm, 3 * S), None);
}

#[test]
fn critical_after_a_prepare_starts_only_the_failover() {
    let mut st = Stager::from_config(&staged_config());
    st.level(0, ZoneLevel::Alarm, S);
    assert_eq!(
        st.critical(0),
        vec![Decision::Failover {
            zone: 0,
            wait_for_prepare: false
        }]
    );
    assert_eq!(st.phase(0), Phase::FailedOver);
    assert!(st.critical(0).is_empty(), "once per incident");
}

#[test]
fn critical_directly_runs_the_prepare_first_and_the_failover_waits_only_when_configured() {
    let mut st = Stager::from_config(&staged_config());
    assert_eq!(
        st.critical(0),
        vec![
            Decision::Prepare { zone: 0 },
            Decision::Failover {
                zone: 0,
                wait_for_prepare: false
            }
        ]
    );
    let waits = load(
        "prepare_runbook = \"prepare\"\nfailover_waits_for_prepare = true",
        PREPARE_STEPS,
    )
    .unwrap();
    let mut st = Stager::from_config(&waits);
    assert_eq!(
        st.critical(0)[1],
        Decision::Failover {
            zone: 0,
            wait_for_prepare: true
        }
    );
}

#[test]
fn a_zone_without_prepare_runbook_fails_over_at_critical_and_does_nothing_at_alarm() {
    let c = load("", PREPARE_STEPS).unwrap();
    let mut st = Stager::from_config(&c);
    assert_eq!(st.level(0, ZoneLevel::Alarm, S), None);
    assert_eq!(
        st.critical(0),
        vec![Decision::Failover {
            zone: 0,
            wait_for_prepare: false
        }]
    );
}

#[test]
fn prepare_is_undone_only_after_the_zone_stays_normal_for_the_cooldown() {
    let mut st = Stager::from_config(&staged_config());
    let idle = |_| false;
    st.level(0, ZoneLevel::Alarm, 0);
    st.level(0, ZoneLevel::Normal, 60 * S);
    assert!(st.tick(60 * S + 599 * S, idle).is_empty());
    // A warning in between restarts the cooldown.
    st.level(0, ZoneLevel::Warning, 300 * S);
    st.level(0, ZoneLevel::Normal, 400 * S);
    assert!(st.tick(999 * S, idle).is_empty());
    assert_eq!(st.tick(1000 * S, idle), vec![Decision::Undo { zone: 0 }]);
    assert_eq!(st.phase(0), Phase::Idle);
    assert!(st.tick(2000 * S, idle).is_empty(), "undone once");
    // The next alarm is a new incident with a new prepare.
    assert_eq!(
        st.level(0, ZoneLevel::Alarm, 2001 * S),
        Some(Decision::Prepare { zone: 0 })
    );
}

#[test]
fn a_prepare_still_running_is_undone_once_it_has_finished() {
    let mut st = Stager::from_config(&staged_config());
    st.level(0, ZoneLevel::Alarm, 0);
    st.level(0, ZoneLevel::Normal, S);
    assert!(st.tick(700 * S, |_| true).is_empty());
    assert_eq!(
        st.tick(701 * S, |_| false),
        vec![Decision::Undo { zone: 0 }]
    );
}

#[test]
fn a_zone_that_went_critical_is_never_undone_by_the_cooldown() {
    let mut st = Stager::from_config(&staged_config());
    st.level(0, ZoneLevel::Alarm, 0);
    st.critical(0);
    st.level(0, ZoneLevel::Normal, S);
    assert!(st.tick(3600 * S, |_| false).is_empty());
}

#[test]
fn operator_reset_undoes_a_prepare_but_not_a_failover() {
    let mut st = Stager::from_config(&staged_config());
    st.level(0, ZoneLevel::Alarm, 0);
    assert_eq!(st.reset(0), Some(Decision::Undo { zone: 0 }));
    st.level(0, ZoneLevel::Normal, S);
    st.level(0, ZoneLevel::Alarm, 2 * S);
    st.critical(0);
    assert_eq!(st.reset(0), None);
    assert_eq!(st.phase(0), Phase::Idle);
}

fn sample(sensor: u32, at: Nanos, v: f64) -> Sample {
    Sample {
        sensor,
        at,
        reading: Reading::Value(v),
    }
}

#[test]
fn power_loss_is_unknown_when_on_mains_and_temperatures_are_flat() {
    let c = staged_config();
    let mut d = Detector::from_config(&c, 0);
    for t in 0..30 {
        d.observe(sample(0, t * S, 24.0));
        d.observe(sample(1, t * S, 24.0));
        d.observe(sample(3, t * S, 0.0));
        d.observe(sample(4, t * S, 900.0));
    }
    d.tick(30 * S);
    assert_eq!(power_loss(&c, &d, 0, 30 * S), None);
}

#[test]
fn power_loss_on_battery_is_the_ups_runtime_aged_since_its_reading() {
    let c = staged_config();
    let mut d = Detector::from_config(&c, 0);
    d.observe(sample(3, 10 * S, 1.0));
    d.observe(sample(4, 10 * S, 120.0));
    d.tick(10 * S);
    let p = power_loss(&c, &d, 0, 13 * S).unwrap();
    assert_eq!(p.basis, Basis::UpsRuntime);
    assert!((p.seconds - 117.0).abs() < 1e-6, "{p:?}");
}

#[test]
fn power_loss_projects_rising_temperatures_linearly_to_critical_above() {
    let c = staged_config();
    let mut d = Detector::from_config(&c, 0);
    // 0.5 C per second from 40 C: 90 C (critical_above) is 100 s after 40 C.
    for t in 0..=20 {
        d.observe(sample(0, t * S, 40.0 + 0.5 * t as f64));
        d.observe(sample(1, t * S, 25.0));
    }
    d.tick(20 * S);
    let p = power_loss(&c, &d, 0, 20 * S).unwrap();
    assert_eq!(p.basis, Basis::TemperatureTrend);
    // At 20 s the sensor reads 50 C: 40 C to go at 0.5 C/s.
    assert!((p.seconds - 80.0).abs() < 1.0, "{p:?}");
}

#[test]
fn power_loss_takes_the_sooner_of_ups_runtime_and_temperature_trend() {
    let c = staged_config();
    let mut d = Detector::from_config(&c, 0);
    for t in 0..=20 {
        d.observe(sample(0, t * S, 40.0 + 0.5 * t as f64));
    }
    d.observe(sample(3, 20 * S, 1.0));
    d.observe(sample(4, 20 * S, 30.0));
    d.tick(20 * S);
    let p = power_loss(&c, &d, 0, 20 * S).unwrap();
    assert_eq!(
        p,
        PowerLoss {
            seconds: 30.0,
            basis: Basis::UpsRuntime
        }
    );
}

fn step(c: &Config, name: &str) -> Step {
    let mut s = c.runbooks[0].steps[0].clone();
    s.name = name.into();
    s
}

#[test]
fn should_steps_are_skipped_only_when_the_remaining_steps_do_not_fit_before_power_loss() {
    let c = staged_config();
    let must = |n: &str| {
        let mut s = step(&c, n);
        s.action = crate::config::Action::Wait(crate::config::WaitStep {
            duration: Duration::from_secs(10),
        });
        s
    };
    let should = |n: &str| Step {
        priority: Priority::Should,
        ..must(n)
    };
    let steps = vec![should("a"), must("b"), should("c"), must("d")];
    // Unknown power loss: nothing is skipped.
    assert_eq!(skip_reason(&steps, 0, None), None);
    // 40 s needed, 45 s left: everything runs.
    assert_eq!(skip_reason(&steps, 0, Some(Duration::from_secs(45))), None);
    // 25 s left: the should steps go, the must steps are never skipped.
    let reason = skip_reason(&steps, 0, Some(Duration::from_secs(25))).unwrap();
    assert!(
        reason.contains("power loss expected in 25s") && reason.contains("need up to 40s"),
        "{reason}"
    );
    assert_eq!(skip_reason(&steps, 1, Some(Duration::from_secs(1))), None);
    assert!(skip_reason(&steps, 2, Some(Duration::from_secs(15))).is_some());
    assert_eq!(skip_reason(&steps, 2, Some(Duration::from_secs(20))), None);
}

#[test]
fn a_prepare_carried_over_by_a_reload_is_undone_a_full_cooldown_later_and_not_prepared_again() {
    let mut st = Stager::from_config(&staged_config());
    st.carry_prepared(0, 100 * S);
    assert_eq!(st.phase(0), Phase::Prepared);
    assert_eq!(
        st.level(0, ZoneLevel::Alarm, 101 * S),
        None,
        "no second prepare"
    );
    st.level(0, ZoneLevel::Normal, 102 * S);
    assert!(st.tick(102 * S + 599 * S, |_| false).is_empty());
    assert_eq!(
        st.tick(102 * S + 600 * S, |_| false),
        vec![Decision::Undo { zone: 0 }]
    );
    // Without a prepare runbook there is nothing to carry.
    let mut plain = Stager::from_config(&load("", PREPARE_STEPS).unwrap());
    plain.carry_prepared(0, 0);
    assert_eq!(plain.phase(0), Phase::Idle);
}

fn zone_to(from: ZoneLevel, to: ZoneLevel) -> Output {
    Output::Zone {
        zone: 0,
        from,
        to,
        evidence: Vec::new(),
    }
}

#[test]
fn a_zone_reaching_alarm_is_recorded_first_then_prepares_as_a_fire_precaution() {
    let mut st = Stager::from_config(&staged_config());
    let outputs = [
        Output::Sensor {
            sensor: 2,
            from: SensorState::Ok,
            to: SensorState::Alarm,
            value: Some(30.0),
            reason: crate::detect::Reason::Above(crate::detect::Level::Alarm),
        },
        zone_to(ZoneLevel::Normal, ZoneLevel::Alarm),
    ];
    assert_eq!(
        st.respond(&outputs, S),
        vec![
            Effect::Record(&outputs[0]),
            Effect::Record(&outputs[1]),
            Effect::Prepare {
                zone: 0,
                cause: Cause::Fire
            },
        ]
    );
}

#[test]
fn a_zone_going_straight_to_critical_prepares_after_its_level_then_fails_over_for_the_detected_cause(
) {
    let waits = load(
        "prepare_runbook = \"prepare\"\nfailover_waits_for_prepare = true",
        PREPARE_STEPS,
    )
    .unwrap();
    let mut st = Stager::from_config(&waits);
    let outputs = [
        zone_to(ZoneLevel::Normal, ZoneLevel::Critical),
        Output::Critical {
            zone: 0,
            cause: Cause::Power,
        },
    ];
    assert_eq!(
        st.respond(&outputs, S),
        vec![
            Effect::Record(&outputs[0]),
            Effect::Prepare {
                zone: 0,
                cause: Cause::Fire
            },
            Effect::Failover {
                zone: 0,
                cause: Cause::Power,
                wait_for_prepare: true
            },
        ]
    );
}

#[test]
fn a_critical_zone_without_a_prepare_runbook_only_fails_over() {
    let mut st = Stager::from_config(&load("", PREPARE_STEPS).unwrap());
    let outputs = [
        zone_to(ZoneLevel::Alarm, ZoneLevel::Critical),
        Output::Critical {
            zone: 0,
            cause: Cause::Fire,
        },
    ];
    assert_eq!(
        st.respond(&outputs, S),
        vec![
            Effect::Record(&outputs[0]),
            Effect::Failover {
                zone: 0,
                cause: Cause::Fire,
                wait_for_prepare: false
            },
        ]
    );
}

#[test]
fn a_manual_failover_after_a_prepare_fails_over_once_and_then_nothing() {
    let mut st = Stager::from_config(&staged_config());
    st.respond(&[zone_to(ZoneLevel::Normal, ZoneLevel::Alarm)], S);
    assert_eq!(
        st.fail_over(0, Cause::Manual),
        vec![Effect::Failover {
            zone: 0,
            cause: Cause::Manual,
            wait_for_prepare: false
        }]
    );
    assert!(st.fail_over(0, Cause::Manual).is_empty());
}

#[test]
fn time_undoes_a_prepare_after_the_cooldown_once_its_runbook_has_finished() {
    let mut st = Stager::from_config(&staged_config());
    st.respond(&[zone_to(ZoneLevel::Normal, ZoneLevel::Alarm)], 0);
    st.respond(&[zone_to(ZoneLevel::Alarm, ZoneLevel::Normal)], S);
    assert!(st.elapse(S + 599 * S, |_| false).is_empty());
    assert!(st.elapse(S + 600 * S, |_| true).is_empty(), "still running");
    assert_eq!(
        st.elapse(S + 601 * S, |_| false),
        vec![Effect::Undo { zone: 0 }]
    );
    assert!(st.elapse(S + 602 * S, |_| false).is_empty(), "undone once");
}

#[test]
fn a_level_change_at_the_end_of_the_cooldown_counts_before_the_cooldown() {
    // Outputs are answered before time is: an alarm at the very end of the cooldown is
    // the same incident (no undo, no second prepare).
    let mut st = Stager::from_config(&staged_config());
    st.respond(&[zone_to(ZoneLevel::Normal, ZoneLevel::Alarm)], 0);
    st.respond(&[zone_to(ZoneLevel::Alarm, ZoneLevel::Normal)], S);
    let alarm = [zone_to(ZoneLevel::Normal, ZoneLevel::Alarm)];
    assert_eq!(st.respond(&alarm, 601 * S), vec![Effect::Record(&alarm[0])]);
    assert!(st.elapse(601 * S, |_| false).is_empty());
    assert_eq!(st.phase(0), Phase::Prepared);
}
