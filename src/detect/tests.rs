use super::*;
use crate::config::validate::builtin_defaults;
use std::time::Duration;

const MS: Nanos = 1_000_000;
const S: Nanos = 1_000 * MS;

fn spec(zone: u32, kind: Kind, tweak: impl FnOnce(&mut DetectParams)) -> SensorSpec {
    let mut p = builtin_defaults(kind);
    tweak(&mut p);
    SensorSpec {
        zone,
        kind,
        params: Params::from_config(&p),
        rise_capacity: 512,
    }
}

fn zone(confirm: u32) -> ZoneSpec {
    ZoneSpec {
        confirm,
        stale_votes: true,
        runtime_floor_s: 300.0 + 90.0,
        max_on_battery: Some(600 * S),
    }
}

fn value(sensor: u32, at: Nanos, v: f64) -> Sample {
    Sample {
        sensor,
        at,
        reading: Reading::Value(v),
    }
}

fn sensor_changes(d: &mut Detector) -> Vec<(u32, SensorState, &'static str)> {
    d.drain()
        .filter_map(|o| match o {
            Output::Sensor {
                sensor, to, reason, ..
            } => Some((sensor, to, reason.as_str())),
            _ => None,
        })
        .collect()
}

fn criticals(outputs: &[Output]) -> Vec<(u32, Cause)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Critical { zone, cause } => Some((*zone, *cause)),
            _ => None,
        })
        .collect()
}

/// Feeds `f(t)` every `step` from `from` to `to` (exclusive), ticking too.
fn play(
    d: &mut Detector,
    sensor: u32,
    from: Nanos,
    to: Nanos,
    step: Nanos,
    f: impl Fn(Nanos) -> f64,
) -> Vec<Output> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        d.observe(value(sensor, t, f(t)));
        d.tick(t);
        out.extend(d.drain());
        t += step;
    }
    out
}

#[test]
fn threshold_counts_only_after_holding_for() {
    let mut d = Detector::new(vec![spec(0, Kind::Temperature, |_| {})], vec![zone(2)], 0);
    d.observe(value(0, 0, 60.0));
    assert!(
        sensor_changes(&mut d).is_empty(),
        "no change before `for` has passed"
    );
    d.observe(value(0, S, 60.0));
    assert!(sensor_changes(&mut d).is_empty());
    d.observe(value(0, 2 * S, 60.0));
    assert_eq!(
        sensor_changes(&mut d),
        vec![(0, SensorState::Alarm, "above:alarm_above")]
    );
}

#[test]
fn hold_expires_on_tick_without_a_new_sample() {
    let mut d = Detector::new(vec![spec(0, Kind::Temperature, |_| {})], vec![zone(2)], 0);
    d.observe(value(0, 0, 40.0));
    d.tick(2 * S + 1);
    assert_eq!(
        sensor_changes(&mut d),
        vec![(0, SensorState::Warn, "above:warn_above")]
    );
}

#[test]
fn spike_shorter_than_for_never_changes_state() {
    let mut d = Detector::new(vec![spec(0, Kind::Temperature, |_| {})], vec![zone(2)], 0);
    let out = play(&mut d, 0, 0, 20 * S, 250 * MS, |t| {
        if (5 * S..5 * S + 300 * MS).contains(&t) {
            95.0
        } else {
            23.0
        }
    });
    assert!(
        out.is_empty(),
        "a 300 ms spike must not change anything: {out:?}"
    );
}

#[test]
fn hysteresis_keeps_alarm_until_value_drops_below_threshold_minus_hysteresis() {
    let mut d = Detector::new(
        vec![spec(0, Kind::Temperature, |p| p.hold = Duration::ZERO)],
        vec![zone(2)],
        0,
    );
    d.observe(value(0, 0, 58.0));
    assert_eq!(
        sensor_changes(&mut d),
        vec![(0, SensorState::Alarm, "above:alarm_above")]
    );
    d.observe(value(0, S, 56.5)); // below 57 but within 1.0 hysteresis
    assert!(sensor_changes(&mut d).is_empty());
    d.observe(value(0, 2 * S, 55.9));
    assert_eq!(
        sensor_changes(&mut d),
        vec![(0, SensorState::Warn, "above:warn_above")]
    );
}

#[test]
fn rate_of_rise_alarms_only_after_sustained_slope() {
    let mut d = Detector::new(
        vec![spec(0, Kind::Temperature, |p| {
            p.rise_window = Duration::from_secs(10)
        })],
        vec![zone(2)],
        0,
    );
    // 12 C/min from 23 C: far below alarm_above, but above rise_alarm (8.3 C/min).
    let out = play(&mut d, 0, 0, 12 * S, 250 * MS, |t| {
        23.0 + 0.2 * (t as f64 / S as f64)
    });
    let first_alarm = out.iter().find_map(|o| match o {
        Output::Sensor {
            to: SensorState::Alarm,
            reason,
            ..
        } => Some(reason.as_str()),
        _ => None,
    });
    assert_eq!(first_alarm, Some("rise:rise_alarm"));
}

#[test]
fn noise_around_a_constant_never_warns() {
    let mut d = Detector::new(vec![spec(0, Kind::Temperature, |_| {})], vec![zone(2)], 0);
    let out = play(&mut d, 0, 0, 600 * S, 500 * MS, |t| {
        24.0 + if (t / (500 * MS)) % 2 == 0 { 0.2 } else { -0.2 }
    });
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn silent_sensor_goes_stale_after_stale_after_and_recovers_on_a_good_sample() {
    let mut d = Detector::new(vec![spec(0, Kind::Temperature, |_| {})], vec![zone(2)], 0);
    d.observe(value(0, 0, 23.0));
    d.tick(5 * S);
    assert!(sensor_changes(&mut d).is_empty());
    d.tick(5 * S + 1);
    assert_eq!(
        sensor_changes(&mut d),
        vec![(0, SensorState::Stale, "stale")]
    );
    d.observe(value(0, 6 * S, 23.0));
    assert_eq!(
        sensor_changes(&mut d),
        vec![(0, SensorState::Ok, "cleared")]
    );
}

#[test]
fn out_of_range_and_nan_are_faults_not_values() {
    let mut d = Detector::new(vec![spec(0, Kind::Temperature, |_| {})], vec![zone(2)], 0);
    d.observe(value(0, 0, 6553.5)); // 0xFFFF x 0.1: the classic "no data"
    assert_eq!(
        sensor_changes(&mut d),
        vec![(0, SensorState::Fault, "fault:out_of_range")]
    );
    d.observe(value(0, S, f64::NAN));
    assert_eq!(
        sensor_changes(&mut d),
        vec![(0, SensorState::Fault, "fault:not_a_number")]
    );
    d.observe(Sample {
        sensor: 0,
        at: 2 * S,
        reading: Reading::Fault(FaultKind::ModbusException),
    });
    assert_eq!(
        sensor_changes(&mut d),
        vec![(0, SensorState::Fault, "fault:modbus_exception")]
    );
}

#[test]
fn faulting_sensor_stays_fault_while_faults_keep_arriving() {
    let mut d = Detector::new(vec![spec(0, Kind::Temperature, |_| {})], vec![zone(2)], 0);
    for i in 0..40 {
        d.observe(Sample {
            sensor: 0,
            at: i * 250 * MS,
            reading: Reading::Fault(FaultKind::ModbusException),
        });
        d.tick(i * 250 * MS);
    }
    assert_eq!(d.sensor_state(0).0, SensorState::Fault);
}

#[test]
fn zone_needs_confirm_sensors_at_alarm_to_go_critical() {
    let sensors = vec![
        spec(0, Kind::Temperature, |p| p.hold = Duration::ZERO),
        spec(0, Kind::Offgas, |p| p.hold = Duration::ZERO),
    ];
    let mut d = Detector::new(sensors, vec![zone(2)], 0);
    d.observe(value(1, 0, 30.0)); // offgas at alarm
    let out: Vec<_> = d.drain().collect();
    assert!(criticals(&out).is_empty());
    assert_eq!(d.zone_level(0), ZoneLevel::Alarm);
    d.observe(value(0, S, 60.0)); // temperature at alarm
    let out: Vec<_> = d.drain().collect();
    assert_eq!(criticals(&out), vec![(0, Cause::Fire)]);
    let evidence = out.iter().find_map(|o| match o {
        Output::Zone {
            to: ZoneLevel::Critical,
            evidence,
            ..
        } => Some(evidence.clone()),
        _ => None,
    });
    assert_eq!(
        evidence.map(|e| e.len()),
        Some(2),
        "both sensors are named as evidence"
    );
}

#[test]
fn one_sensor_at_critical_is_enough() {
    let mut d = Detector::new(
        vec![spec(0, Kind::Smoke, |p| p.hold = Duration::ZERO)],
        vec![zone(2)],
        0,
    );
    d.observe(value(0, 0, 2.0));
    let out: Vec<_> = d.drain().collect();
    assert_eq!(criticals(&out), vec![(0, Cause::Fire)]);
}

#[test]
fn stale_sensor_votes_while_another_is_at_alarm() {
    let sensors = vec![
        spec(0, Kind::Temperature, |p| p.hold = Duration::ZERO),
        spec(0, Kind::Offgas, |p| p.hold = Duration::ZERO),
    ];
    let mut d = Detector::new(sensors, vec![zone(2)], 0);
    d.observe(value(0, 0, 23.0));
    d.observe(value(1, 0, 30.0)); // offgas at alarm
    for t in 1..=6 {
        d.observe(value(1, t * S, 30.0)); // offgas keeps talking, temperature went silent
        d.tick(t * S);
    }
    let out: Vec<_> = d.drain().collect();
    assert_eq!(criticals(&out), vec![(0, Cause::Fire)]);
}

#[test]
fn critical_latches_and_starts_the_runbook_once_until_reset() {
    let mut d = Detector::new(
        vec![spec(0, Kind::Smoke, |p| p.hold = Duration::ZERO)],
        vec![zone(2)],
        0,
    );
    let mut all = Vec::new();
    for (i, v) in [2.0, 0.0, 2.0, 0.0].into_iter().enumerate() {
        d.observe(value(0, i as Nanos * S, v));
        all.extend(d.drain());
    }
    assert_eq!(criticals(&all).len(), 1);
    assert_eq!(
        d.zone_level(0),
        ZoneLevel::Critical,
        "latched although smoke cleared"
    );
    d.reset(0, 10 * S);
    assert_eq!(d.zone_level(0), ZoneLevel::Normal);
    d.observe(value(0, 11 * S, 2.0));
    let out: Vec<_> = d.drain().collect();
    assert_eq!(criticals(&out).len(), 1, "a new incident after reset");
}

#[test]
fn on_battery_with_runtime_below_reserve_plus_budget_is_critical_for_power() {
    let sensors = vec![
        spec(0, Kind::OnBattery, |_| {}),
        spec(0, Kind::Runtime, |_| {}),
    ];
    let mut d = Detector::new(sensors, vec![zone(2)], 0);
    d.observe(value(0, 0, 1.0));
    d.observe(value(1, 0, 900.0));
    let out: Vec<_> = d.drain().collect();
    assert!(criticals(&out).is_empty());
    assert_eq!(
        d.zone_level(0),
        ZoneLevel::Warning,
        "on battery is a warning"
    );
    d.observe(value(1, 10 * S, 380.0)); // below 300 s reserve + 90 s budget
    let out: Vec<_> = d.drain().collect();
    assert_eq!(criticals(&out), vec![(0, Cause::Power)]);
}

#[test]
fn on_battery_longer_than_max_on_battery_is_critical() {
    let sensors = vec![
        spec(0, Kind::OnBattery, |_| {}),
        spec(0, Kind::Runtime, |_| {}),
    ];
    let mut d = Detector::new(sensors, vec![zone(2)], 0);
    let mut all = Vec::new();
    let mut t = 0;
    while t <= 601 * S {
        d.observe(value(0, t, 1.0));
        d.observe(value(1, t, 3000.0));
        d.tick(t);
        all.extend(d.drain());
        t += S;
    }
    assert_eq!(criticals(&all), vec![(0, Cause::Power)]);
}
