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
        source: None,
    }
}

fn zone(confirm: u32) -> ZoneSpec {
    ZoneSpec {
        confirm,
        confirm_across: ConfirmAcross::Sensors,
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
    // The hold alone: a 72 C jump in one poll is also far past `max_rate` (a fault, tested
    // below), so that check is off here.
    let mut d = Detector::new(
        vec![spec(0, Kind::Temperature, |p| p.max_rate = None)],
        vec![zone(2)],
        0,
    );
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
fn staleness_is_measured_from_when_a_sample_was_taken_not_when_it_was_processed() {
    // The agent observes the samples waiting in its queue before each tick: a sample
    // taken at 4 s that waited (the agent was busy) keeps the sensor fresh at an 8 s tick.
    let mut d = Detector::new(vec![spec(0, Kind::Temperature, |_| {})], vec![zone(2)], 0);
    d.observe(value(0, 0, 23.0));
    d.tick(3 * S);
    d.observe(value(0, 4 * S, 23.0));
    d.tick(8 * S);
    assert!(sensor_changes(&mut d).is_empty());
    // Silence of the device itself still counts: nothing after 4 s, stale past 9 s.
    d.tick(9 * S + 1);
    assert_eq!(
        sensor_changes(&mut d),
        vec![(0, SensorState::Stale, "stale")]
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

#[test]
fn value_stuck_for_frozen_after_is_a_fault_and_recovers_when_it_moves() {
    let mut d = Detector::new(
        vec![spec(0, Kind::Temperature, |p| {
            p.frozen_after = Some(Duration::from_secs(60))
        })],
        vec![zone(2)],
        0,
    );
    let out = play(&mut d, 0, 0, 60 * S, S, |_| 23.0);
    assert!(out.is_empty(), "not frozen before frozen_after: {out:?}");
    d.observe(value(0, 60 * S, 23.0));
    assert_eq!(
        sensor_changes(&mut d),
        vec![(0, SensorState::Fault, "fault:frozen")]
    );
    assert_eq!(d.zone_level(0), ZoneLevel::Warning);
    let out = play(&mut d, 0, 61 * S, 120 * S, S, |_| 23.0);
    assert!(out.is_empty(), "stays frozen, reported once: {out:?}");
    d.observe(value(0, 120 * S, 23.1));
    assert_eq!(
        sensor_changes(&mut d),
        vec![(0, SensorState::Ok, "cleared")]
    );
}

#[test]
fn frozen_check_is_off_by_default() {
    let mut d = Detector::new(vec![spec(0, Kind::Temperature, |_| {})], vec![zone(2)], 0);
    let out = play(&mut d, 0, 0, 3600 * S, S, |_| 23.0);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn samples_at_the_same_instant_are_judged_together_whatever_their_order() {
    // Sensor 0 clears while sensor 1 rises at the same instant: never two votes at once.
    let run = |first_clears: bool| {
        let sensors = vec![
            // 60 -> 23 C in a second is past `max_rate`: off, this is about ordering.
            spec(0, Kind::Temperature, |p| {
                p.hold = Duration::ZERO;
                p.max_rate = None;
            }),
            spec(0, Kind::Offgas, |p| p.hold = Duration::ZERO),
        ];
        let mut d = Detector::new(sensors, vec![zone(2)], 0);
        d.observe(value(0, 0, 60.0));
        d.observe(value(1, 0, 0.0));
        let mut out: Vec<Output> = d.drain().collect();
        let pair = [value(0, S, 23.0), value(1, S, 30.0)];
        let order: [usize; 2] = if first_clears { [0, 1] } else { [1, 0] };
        for k in order {
            d.observe(pair[k]);
        }
        d.tick(2 * S);
        out.extend(d.drain());
        out.into_iter()
            .filter_map(|o| match o {
                Output::Zone { to, .. } => Some(to),
                Output::Critical { .. } => Some(ZoneLevel::Critical),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(true), run(false));
    assert_eq!(run(true), vec![ZoneLevel::Alarm]);
}

#[test]
fn reset_while_still_critical_starts_a_new_incident() {
    let mut d = Detector::new(
        vec![spec(0, Kind::Smoke, |p| p.hold = Duration::ZERO)],
        vec![zone(2)],
        0,
    );
    d.observe(value(0, 0, 2.0));
    assert_eq!(criticals(&d.drain().collect::<Vec<_>>()).len(), 1);
    d.observe(value(0, S, 2.0));
    d.reset(0, S);
    let out: Vec<_> = d.drain().collect();
    assert_eq!(criticals(&out), vec![(0, Cause::Fire)]);
    assert!(d.is_latched(0));
}

#[test]
fn sensor_silenced_while_in_alarm_keeps_the_zone_at_alarm() {
    let mut d = Detector::new(
        vec![spec(0, Kind::Temperature, |p| p.hold = Duration::ZERO)],
        vec![zone(2)],
        0,
    );
    d.observe(value(0, 0, 60.0));
    d.tick(0);
    assert_eq!(d.zone_level(0), ZoneLevel::Alarm);
    d.tick(6 * S);
    assert_eq!(d.sensor_state(0).0, SensorState::Stale);
    assert_eq!(
        d.zone_level(0),
        ZoneLevel::Alarm,
        "silence must not resolve the alarm"
    );
    d.observe(value(0, 7 * S, 23.0));
    d.tick(7 * S);
    assert_eq!(d.zone_level(0), ZoneLevel::Normal);
}

#[test]
fn manual_latch_makes_the_zone_critical_without_a_second_runbook_start() {
    let mut d = Detector::new(vec![spec(0, Kind::Smoke, |_| {})], vec![zone(2)], 0);
    d.latch(0);
    let out: Vec<_> = d.drain().collect();
    assert!(criticals(&out).is_empty(), "the caller starts the runbook");
    assert_eq!(d.zone_level(0), ZoneLevel::Critical);
}

fn config_with(sensor_extra: &str, detect_extra: &str) -> Result<(), Vec<String>> {
    let text = format!(
        r#"
[agent]
name = "t"
state_dir = "/tmp/x"
event_log = "/tmp/x/e.jsonl"

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
{sensor_extra}

[detect.temperature]
{detect_extra}

[[zones]]
id = "z"
runbook = "r"

[[runbooks]]
name = "r"

[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"
"#
    );
    crate::config::load_str(&text, "t.toml", Default::default())
        .map(|_| ())
        .map_err(|e| e.errors.iter().map(|p| p.to_string()).collect())
}

#[test]
fn frozen_after_is_accepted_per_kind_and_per_sensor_and_bad_values_name_their_path() {
    config_with("", "frozen_after = \"30m\"").unwrap();
    config_with("frozen_after = \"10m\"", "").unwrap();
    let errs = config_with("frozen_after = \"soon\"", "").unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.starts_with("sensors[0].frozen_after")),
        "{errs:?}"
    );
    let errs = config_with("", "frozen_after = \"1s\"").unwrap_err();
    assert!(
        errs.iter()
            .any(|e| e.starts_with("detect.temperature.frozen_after") && e.contains("stale_after")),
        "{errs:?}"
    );
}

mod fast_path {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Sample {
            sensor: u32,
            dt_ms: u64,
            reading: Reading,
        },
        Tick {
            dt_ms: u64,
        },
        Reset {
            zone: u32,
        },
    }

    /// Values that sit in the quiet band, straddle every threshold and hysteresis edge,
    /// leave the range, or are not numbers at all.
    fn reading() -> impl Strategy<Value = Reading> {
        prop_oneof![
            6 => (-60.0..260.0f64).prop_map(Reading::Value),
            3 => prop::sample::select(vec![
                -55.0, -1.0, 0.0, 0.04, 0.165, 0.5, 1.0, 1.65, 5.0, 19.0, 20.0, 34.0, 35.0,
                56.0, 57.0, 89.0, 90.0, 200.0, 1200.0, 1e7,
            ])
            .prop_map(Reading::Value),
            1 => (0.0..2.0f64).prop_map(Reading::Value),
            1 => prop::sample::select(vec![
                Reading::Value(f64::NAN),
                Reading::Value(f64::INFINITY),
                Reading::Value(f64::NEG_INFINITY),
                Reading::Fault(FaultKind::ModbusException),
                Reading::Fault(FaultKind::NoData),
            ]),
        ]
    }

    fn step(sensors: u32, zones: u32) -> impl Strategy<Value = Step> {
        prop_oneof![
            12 => (0..sensors, prop::sample::select(vec![0u64, 0, 0, 100, 250, 1000, 3000, 7000]), reading())
                .prop_map(|(sensor, dt_ms, reading)| Step::Sample { sensor, dt_ms, reading }),
            2 => (0u64..4000).prop_map(|dt_ms| Step::Tick { dt_ms }),
            1 => (0..zones).prop_map(|zone| Step::Reset { zone }),
        ]
    }

    fn build(kinds: &[(Kind, bool, u64, u64)], fast: bool) -> Detector {
        let sensors = kinds
            .iter()
            .enumerate()
            .map(|(i, &(kind, frozen, hysteresis_tenths, stale_s))| {
                spec(i as u32 % 2, kind, |p| {
                    if frozen {
                        p.frozen_after = Some(Duration::from_secs(6));
                    }
                    p.hysteresis = hysteresis_tenths as f64 / 10.0;
                    // Short stale times too, so ticks cross them often (`due` in tick).
                    if stale_s > 0 {
                        p.stale_after = Duration::from_secs(stale_s);
                    }
                })
            })
            .collect();
        let mut d = Detector::new(sensors, vec![zone(2), zone(1)], 0);
        d.fast = fast;
        d
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn fast_path_matches_the_full_evaluation(
            kinds in prop::collection::vec(
                (
                    prop::sample::select(Kind::ALL.to_vec()),
                    prop::bool::weighted(0.3),
                    0u64..30,
                    prop::sample::select(vec![0u64, 2, 5, 11]),
                ),
                1..6,
            ),
            steps in prop::collection::vec(step(6, 2), 1..400),
        ) {
            let mut fast = build(&kinds, true);
            let mut full = build(&kinds, false);
            let n = kinds.len() as u32;
            let mut t: Nanos = 0;
            for st in steps {
                match st {
                    Step::Sample { sensor, dt_ms, reading } => {
                        t += dt_ms * MS;
                        let s = Sample { sensor: sensor % n, at: t, reading };
                        fast.observe(s);
                        full.observe(s);
                    }
                    Step::Tick { dt_ms } => {
                        t += dt_ms * MS;
                        fast.tick(t);
                        full.tick(t);
                    }
                    Step::Reset { zone } => {
                        fast.reset(zone, t);
                        full.reset(zone, t);
                    }
                }
                let a: Vec<Output> = fast.drain().collect();
                let b: Vec<Output> = full.drain().collect();
                prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
                for i in 0..n {
                    prop_assert_eq!(
                        format!("{:?}", fast.sensor_state(i)),
                        format!("{:?}", full.sensor_state(i))
                    );
                    prop_assert_eq!(fast.sensor_reason(i), full.sensor_reason(i));
                    prop_assert_eq!(fast.last_good(i), full.last_good(i));
                }
            }
        }
    }
}

/// The layout `observe` relies on for speed (see `SensorRt`): a quiet sample touches only
/// the first four cache lines of a sensor's state.
#[test]
fn a_quiet_samples_fields_fit_in_four_cache_lines() {
    use std::mem::{align_of, offset_of, size_of};
    assert_eq!(align_of::<SensorRt>(), 64);
    let hot_end = offset_of!(SensorRt, spec) + offset_of!(SensorSpec, params) + 64;
    assert_eq!(offset_of!(Params, above), 64, "hot parameters first");
    assert!(
        offset_of!(SensorRt, window) < offset_of!(SensorRt, spec) && hot_end <= 256,
        "hot part ends at byte {hot_end}: window at {}, {} bytes; spec at {}",
        offset_of!(SensorRt, window),
        size_of::<Option<RiseWindow>>(),
        offset_of!(SensorRt, spec)
    );
}

// ---- implausible rates and common-mode faults ----

/// Sensors `ids` of one device read `f(t)` at the same instants (one poll each `step`).
fn play_device(
    d: &mut Detector,
    ids: &[u32],
    from: Nanos,
    to: Nanos,
    step: Nanos,
    f: impl Fn(Nanos) -> f64,
) -> Vec<Output> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        for &id in ids {
            d.observe(value(id, t, f(t)));
        }
        d.tick(t);
        out.extend(d.drain());
        t += step;
    }
    out
}

fn on_source(mut s: SensorSpec, source: u32) -> SensorSpec {
    s.source = Some(source);
    s
}

fn zone_levels(outputs: &[Output]) -> Vec<ZoneLevel> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Zone { to, .. } => Some(*to),
            _ => None,
        })
        .collect()
}

#[test]
fn a_step_faster_than_max_rate_is_a_fault_and_the_next_reading_starts_afresh() {
    let mut d = Detector::new(vec![spec(0, Kind::Temperature, |_| {})], vec![zone(2)], 0);
    // A module that reboots reads 0, then the real 24 C a second later.
    let out = play(&mut d, 0, 0, 60 * S, S, |t| {
        if (20 * S..25 * S).contains(&t) {
            0.0
        } else {
            24.0
        }
    });
    let changes: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Sensor { to, reason, .. } => Some((*to, reason.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            (SensorState::Fault, "fault:implausible_rate"),
            (SensorState::Ok, "cleared"),
            (SensorState::Fault, "fault:implausible_rate"),
            (SensorState::Ok, "cleared"),
        ],
        "never a rise alarm"
    );
}

#[test]
fn a_real_fires_rise_stays_under_max_rate() {
    let mut d = Detector::new(vec![spec(0, Kind::Temperature, |_| {})], vec![zone(2)], 0);
    // The room model's steepest curve: a cell's surface, exponential to 650 C with a
    // 40 s time constant (about 15 C/s at its start), read every second.
    let out = play(&mut d, 0, 0, 120 * S, S, |t| {
        let s = t as f64 / 1e9;
        if s < 10.0 {
            27.0
        } else {
            27.0 + (650.0 - 27.0) * (1.0 - (-(s - 10.0) / 40.0).exp())
        }
    });
    assert!(
        !out.iter().any(|o| matches!(
            o,
            Output::Sensor {
                to: SensorState::Fault,
                ..
            }
        )),
        "{out:?}"
    );
    assert_eq!(d.sensor_state(0).0, SensorState::Critical);
}

#[test]
fn sensors_of_one_device_that_alarm_after_it_read_zeros_count_once() {
    // Polled every 2 s, the reboot's 0 -> 24 C step (720 C/min) is under max_rate: both
    // sensors see the same steep slope and alarm, a vote that began while the device was
    // suspect (it had just read 0 on every register).
    let sensors = vec![
        on_source(spec(0, Kind::Temperature, |_| {}), 7),
        on_source(spec(0, Kind::Temperature, |_| {}), 7),
    ];
    let mut d = Detector::new(sensors, vec![zone(2)], 0);
    // The room at 24 C, the module reads 0 from 2 s to 20 s, then the room again.
    let out = play_device(&mut d, &[0, 1], 0, 90 * S, 2 * S, |t| {
        if (2 * S..20 * S).contains(&t) {
            0.0
        } else {
            24.0
        }
    });
    assert!(criticals(&out).is_empty(), "{out:?}");
    assert!(zone_levels(&out).contains(&ZoneLevel::Alarm), "{out:?}");
    let evidence = out.iter().find_map(|o| match o {
        Output::Zone {
            to: ZoneLevel::Alarm,
            evidence,
            ..
        } => Some(evidence.clone()),
        _ => None,
    });
    let evidence = evidence.expect("the zone says why");
    assert!(
        evidence
            .iter()
            .all(|e| e.common_mode && e.reason.as_str() == "rise:rise_alarm"),
        "{evidence:?}"
    );
}

#[test]
fn sensors_of_one_device_that_alarm_at_different_instants_confirm_each_other() {
    let sensors = vec![
        on_source(spec(0, Kind::Temperature, |p| p.hold = Duration::ZERO), 7),
        on_source(spec(0, Kind::Temperature, |p| p.hold = Duration::ZERO), 7),
    ];
    let mut d = Detector::new(sensors, vec![zone(2)], 0);
    d.observe(value(0, 0, 25.0));
    d.observe(value(1, 0, 25.0));
    d.observe(value(0, S, 25.5));
    d.observe(value(1, S, 25.2));
    // Over 57 C one poll apart (rises of a few C per second, under max_rate).
    let mut out = Vec::new();
    for (k, (a, b)) in [
        (30.0, 28.0),
        (35.0, 31.0),
        (40.0, 35.0),
        (45.0, 40.0),
        (50.0, 45.0),
        (58.0, 50.0),
        (62.0, 58.0),
    ]
    .into_iter()
    .enumerate()
    {
        let t = (2 + k as Nanos) * S;
        d.observe(value(0, t, a));
        d.observe(value(1, t, b));
        d.tick(t);
        out.extend(d.drain());
    }
    d.tick(20 * S);
    out.extend(d.drain());
    assert_eq!(criticals(&out), vec![(0, Cause::Fire)], "{out:?}");
}

#[test]
fn confirm_across_sources_counts_a_device_once_whatever_the_timing() {
    let zone_by_source = || ZoneSpec {
        confirm_across: ConfirmAcross::Sources,
        ..zone(2)
    };
    let t = |s: u32| on_source(spec(0, Kind::Temperature, |p| p.hold = Duration::ZERO), s);
    // Two sensors of device 7 over 57 C, a poll apart: one vote.
    let mut d = Detector::new(vec![t(7), t(7), t(8)], vec![zone_by_source()], 0);
    for id in 0..3 {
        d.observe(value(id, 0, 25.0));
    }
    d.observe(value(0, S, 58.0));
    d.observe(value(1, 2 * S, 59.0));
    d.tick(3 * S);
    let out: Vec<Output> = d.drain().collect();
    assert!(criticals(&out).is_empty(), "{out:?}");
    // Device 8 agrees: two sources.
    d.observe(value(2, 4 * S, 58.0));
    d.tick(5 * S);
    let out: Vec<Output> = d.drain().collect();
    assert_eq!(criticals(&out), vec![(0, Cause::Fire)], "{out:?}");
}
