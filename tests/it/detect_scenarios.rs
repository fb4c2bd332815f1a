//! Every scenario of ../shared/DOMAIN.md played through the detection core in virtual time,
//! with the contract's default parameters (config/firebreak.toml): the fire and power ones
//! go critical in time, on more than one piece of evidence; the nuisance ones never do.

use crate::detect_support;

use detect_support::*;
use firebreak::detect::{Cause, FaultKind, Reading, ZoneLevel};
use firebreak::sources::modbus::decode::decode;
use std::time::Duration;

const ROW1: &str = "b3.temp.row1";
const ROW2: &str = "b3.temp.row2";
const OFFGAS: &str = "b3.offgas.1";
const SMOKE: &str = "b3.smoke.asd1";
const ON_BATTERY: &str = "ups-b3-1.on_battery";
const RUNTIME: &str = "ups-b3-1.runtime";
const BATTERY_TEMP: &str = "ups-b3-1.battery_temp";

const TICK: Duration = Duration::from_millis(50);

/// A quiet battery room: air ~23 C, batteries ~24 C, no gas, no smoke, on mains.
fn quiet(sensor: &str, t: f64) -> f64 {
    match sensor {
        ROW1 => 23.0 + jitter(sensor, t, 0.2),
        ROW2 => 23.4 + jitter(sensor, t, 0.2),
        OFFGAS => 0.5 + jitter(sensor, t, 0.3).abs(),
        SMOKE => 0.002 + jitter(sensor, t, 0.002).abs(),
        ON_BATTERY => 0.0,
        RUNTIME => 1800.0,
        BATTERY_TEMP => 24.0 + jitter(sensor, t, 0.1),
        other => panic!("unknown sensor {other}"),
    }
}

fn value(v: f64) -> Option<Reading> {
    Some(Reading::Value(v))
}

/// Piecewise-linear through `(t, v)` points, flat outside them.
fn ramp(points: &[(f64, f64)], t: f64) -> f64 {
    if t <= points[0].0 {
        return points[0].1;
    }
    for w in points.windows(2) {
        let ((t0, v0), (t1, v1)) = (w[0], w[1]);
        if t <= t1 {
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0);
        }
    }
    points[points.len() - 1].1
}

/// Scenario 1, as DNV-GL saw it: off-gas first (`gas_per_min`) from `onset`, runaway 6 min
/// later: cell temperature past 150 C (if the BMS sees it), room air +10 C/min, smoke
/// 0 -> 0.04 -> 1.65 %obs/m within 2 min, then the UPS in the room fails (goes silent).
fn runaway(sensor: &str, t: f64, gas_per_min: f64, bms_sees_it: bool) -> Option<Reading> {
    let onset = 60.0;
    let runaway = onset + 360.0;
    let ups_dies = runaway + 90.0;
    let q = quiet(sensor, t);
    match sensor {
        OFFGAS if t > onset => value(q + gas_per_min * (t - onset) / 60.0),
        ROW1 | ROW2 if t > runaway => value(q + 10.0 * (t - runaway) / 60.0),
        SMOKE if t > runaway => value(ramp(
            &[
                (runaway, 0.0),
                (runaway + 30.0, 0.04),
                (runaway + 120.0, 1.65),
            ],
            t,
        )),
        BATTERY_TEMP if t > runaway && bms_sees_it => value((q + 5.0 * (t - runaway)).min(210.0)),
        ON_BATTERY | RUNTIME | BATTERY_TEMP if t > ups_dies => None,
        _ => value(q),
    }
}

#[test]
fn li_ion_runaway_gas_first_warns_five_minutes_ahead_and_goes_critical_within_30s_of_runaway() {
    let config = contract_config(&[]);
    let (_, run) = play(&config, Duration::from_secs(600), TICK, &|s, t| {
        runaway(s, t, 30.0, true)
    });
    let warned = run.first_level(ZoneLevel::Warning).expect("warned");
    let alarmed = run.first_level(ZoneLevel::Alarm).expect("alarmed");
    assert!(
        warned <= 420.0 - 300.0,
        "GB 38031: warn at least 5 min before runaway; warned at {warned} s"
    );
    assert!(
        alarmed <= 60.0 + 60.0,
        "off-gas alarm within a minute of venting: {alarmed} s"
    );
    let (at, cause) = run.first_critical().expect("went critical");
    eprintln!("gas first: warning at {warned} s, alarm at {alarmed} s, critical at {at} s (runaway at 420 s)");
    assert_eq!(cause, Cause::Fire);
    assert!(
        (420.0..=450.0).contains(&at),
        "critical within 30 s of runaway (420 s), not before: {at} s"
    );
    let evidence = run.critical_evidence(&config);
    assert!(evidence.len() >= 2, "more than one sensor: {evidence:?}");
    assert!(evidence.iter().any(|(s, _)| s == OFFGAS), "{evidence:?}");
    let changes = run.sensor_changes(&config);
    assert!(
        changes.contains(&(OFFGAS.into(), "alarm", "rise:rise_alarm")),
        "off-gas alarms on its rate of rise first: {changes:?}"
    );
}

#[test]
fn li_ion_runaway_with_a_flat_bms_still_goes_critical_on_off_gas_and_smoke() {
    // Pangyo: the BMS showed nothing; one temperature sensor is not enough.
    let config = contract_config(&[]);
    let (_, run) = play(&config, Duration::from_secs(600), TICK, &|s, t| {
        runaway(s, t, 10.0, false)
    });
    let (at, cause) = run.first_critical().expect("went critical");
    eprintln!("flat BMS: critical at {at} s (runaway at 420 s)");
    assert_eq!(cause, Cause::Fire);
    assert!(
        (420.0..=480.0).contains(&at),
        "critical within 60 s of runaway: {at} s"
    );
    let evidence = run.critical_evidence(&config);
    let named: Vec<&str> = evidence.iter().map(|(s, _)| s.as_str()).collect();
    assert!(
        named.contains(&OFFGAS) && named.contains(&SMOKE),
        "{evidence:?}"
    );
    assert!(
        !named.contains(&BATTERY_TEMP),
        "the flat BMS is not evidence: {evidence:?}"
    );
}

#[test]
fn utility_loss_goes_critical_for_power_while_reserve_and_budget_remain() {
    let config = contract_config(&[]);
    let lost = 10.0;
    let (_, run) = play(&config, Duration::from_secs(930), TICK, &|s, t| match s {
        ON_BATTERY if t >= lost => value(1.0),
        RUNTIME if t >= lost => value((900.0 - (t - lost).floor()).max(0.0)),
        _ => value(quiet(s, t)),
    });
    let warned = run
        .first_level(ZoneLevel::Warning)
        .expect("on battery warns");
    assert!(warned < lost + 1.0, "{warned}");
    let (at, cause) = run.first_critical().expect("went critical");
    assert_eq!(cause, Cause::Power);
    let runtime_left = 900.0 - (at - lost);
    eprintln!("utility loss: critical at {at} s with {runtime_left} s of runtime left");
    assert!(
        runtime_left >= 300.0 + 90.0 - 1.0,
        "critical with power_reserve (5m) + budget (90s) of runtime left, got {runtime_left} s"
    );
    assert!(
        runtime_left <= 390.0,
        "not before the rule says: {runtime_left}"
    );
    assert_eq!(
        run.critical_evidence(&config)
            .last()
            .map(|(s, r)| (s.as_str(), *r)),
        Some((RUNTIME, "power:runtime_below_reserve"))
    );
}

/// A nuisance scenario: what it plays and the most it may do.
struct Nuisance {
    name: &'static str,
    patches: &'static [(&'static str, &'static str)],
    minutes: u64,
    signal: fn(&str, f64) -> Option<Reading>,
    max_level: ZoneLevel,
    /// Sensor changes that must be among the outputs.
    must_see: &'static [(&'static str, &'static str, &'static str)],
    final_level: ZoneLevel,
}

const FROZEN_10M: &[(&str, &str)] = &[(
    "[detect.temperature]\n",
    "[detect.temperature]\nfrozen_after = \"10m\"\n",
)];

fn nuisances() -> Vec<Nuisance> {
    vec![
        Nuisance {
            name: "off-gas that clears: rises 3 min, falls back over 10 min",
            patches: &[],
            minutes: 20,
            signal: |s, t| match s {
                OFFGAS => value(quiet(s, t) + ramp(&[(60.0, 0.0), (240.0, 60.0), (840.0, 0.0)], t)),
                ROW1 | ROW2 => value(quiet(s, t) + ramp(&[(60.0, 0.0), (240.0, 1.0)], t)),
                _ => value(quiet(s, t)),
            },
            max_level: ZoneLevel::Alarm,
            must_see: &[
                (OFFGAS, "alarm", "rise:rise_alarm"),
                (OFFGAS, "ok", "cleared"),
            ],
            final_level: ZoneLevel::Normal,
        },
        Nuisance {
            name: "slow HVAC failure: inlet from 22 C at 0.3 C/min for an hour",
            patches: &[],
            minutes: 60,
            signal: |s, t| match s {
                ROW1 | ROW2 => value(22.0 + 0.3 * t / 60.0 + jitter(s, t, 0.2)),
                BATTERY_TEMP => value(24.0 + 0.15 * t / 60.0 + jitter(s, t, 0.1)),
                _ => value(quiet(s, t)),
            },
            max_level: ZoneLevel::Warning,
            must_see: &[
                (ROW1, "warn", "above:warn_above"),
                (ROW2, "warn", "above:warn_above"),
            ],
            final_level: ZoneLevel::Warning,
        },
        Nuisance {
            // 23 -> 70 C in one 250 ms poll is far past max_rate: a fault for one poll (the
            // zone shows a warning), never an alarm.
            name: "nuisance spike: one sample at 70 C",
            patches: &[],
            minutes: 5,
            signal: |s, t| match s {
                ROW1 if (100.0..100.25).contains(&t) => value(70.0),
                _ => value(quiet(s, t)),
            },
            max_level: ZoneLevel::Warning,
            must_see: &[(ROW1, "fault", "fault:implausible_rate")],
            final_level: ZoneLevel::Normal,
        },
        Nuisance {
            name: "nuisance spike: one sample at 2.0 %obs/m",
            patches: &[],
            minutes: 5,
            signal: |s, t| match s {
                SMOKE if (100.0..101.0).contains(&t) => value(2.0),
                _ => value(quiet(s, t)),
            },
            max_level: ZoneLevel::Normal,
            must_see: &[],
            final_level: ZoneLevel::Normal,
        },
        Nuisance {
            name: "frozen sensor, frozen_after off (the default): nothing to see",
            patches: &[],
            minutes: 30,
            signal: |s, t| match s {
                ROW1 => value(23.4),
                _ => value(quiet(s, t)),
            },
            max_level: ZoneLevel::Normal,
            must_see: &[],
            final_level: ZoneLevel::Normal,
        },
        Nuisance {
            name: "frozen sensor with frozen_after = 10m: a fault, a warning, no fire",
            patches: FROZEN_10M,
            minutes: 30,
            signal: |s, t| match s {
                ROW1 => value(23.4),
                _ => value(quiet(s, t)),
            },
            max_level: ZoneLevel::Warning,
            must_see: &[(ROW1, "fault", "fault:frozen")],
            final_level: ZoneLevel::Warning,
        },
        Nuisance {
            name: "dropout: Modbus silence, exceptions, MQTT silence, one 0xFFFF and one zero poll",
            patches: &[],
            minutes: 10,
            signal: |s, t| {
                let env = matches!(s, ROW1 | ROW2 | OFFGAS);
                let ups = matches!(s, ON_BATTERY | RUNTIME | BATTERY_TEMP);
                match s {
                    // 10 s of timeouts on the environment device: > 3 polls, > stale_after.
                    _ if env && (60.0..70.0).contains(&t) => None,
                    // Exceptions from the UPS for 5 s.
                    _ if ups && (120.0..125.0).contains(&t) => {
                        Some(Reading::Fault(FaultKind::ModbusException))
                    }
                    // The smoke detector's MQTT feed silent for 30 s.
                    SMOKE if (200.0..230.0).contains(&t) => None,
                    // One poll of 0xFFFF (i16 x0.1: -0.1 C) and one all-zero poll.
                    ROW1 | ROW2 if (300.0..300.25).contains(&t) => value(-0.1),
                    ROW1 | ROW2 | OFFGAS if (400.0..400.25).contains(&t) => value(0.0),
                    // What a source must send for a block it recognises as "no data".
                    OFFGAS if (300.0..300.25).contains(&t) => {
                        Some(Reading::Fault(FaultKind::NoData))
                    }
                    _ => value(quiet(s, t)),
                }
            },
            max_level: ZoneLevel::Warning,
            must_see: &[
                (ROW1, "stale", "stale"),
                (ROW1, "ok", "cleared"),
                (RUNTIME, "fault", "fault:modbus_exception"),
                (SMOKE, "stale", "stale"),
                (OFFGAS, "fault", "fault:no_data"),
            ],
            final_level: ZoneLevel::Normal,
        },
        Nuisance {
            name: "module reboot: env-b3 silent 10 s, every register 0 for 5 s, then the room",
            patches: &[],
            minutes: 5,
            signal: |s, t| match s {
                ROW1 | ROW2 | OFFGAS if (100.0..110.0).contains(&t) => None,
                ROW1 | ROW2 | OFFGAS if (110.0..115.0).contains(&t) => value(0.0),
                _ => value(quiet(s, t)),
            },
            max_level: ZoneLevel::Warning,
            must_see: &[
                (ROW1, "fault", "fault:implausible_rate"),
                (ROW2, "fault", "fault:implausible_rate"),
            ],
            final_level: ZoneLevel::Normal,
        },
        Nuisance {
            name: "gateway zero-fill: env-b3 unreachable behind a gateway, 0 on every register for 60 s",
            patches: &[],
            minutes: 5,
            signal: |s, t| match s {
                ROW1 | ROW2 | OFFGAS if (100.0..160.0).contains(&t) => value(0.0),
                _ => value(quiet(s, t)),
            },
            max_level: ZoneLevel::Warning,
            must_see: &[
                (ROW1, "fault", "fault:implausible_rate"),
                (ROW2, "fault", "fault:implausible_rate"),
            ],
            final_level: ZoneLevel::Normal,
        },
        Nuisance {
            name: "single-device EMI spike: one poll of env-b3 reads 150 C on both rows",
            patches: &[],
            minutes: 5,
            signal: |s, t| match s {
                ROW1 | ROW2 if (100.0..100.25).contains(&t) => value(150.0),
                _ => value(quiet(s, t)),
            },
            max_level: ZoneLevel::Warning,
            must_see: &[
                (ROW1, "fault", "fault:implausible_rate"),
                (ROW2, "fault", "fault:implausible_rate"),
            ],
            final_level: ZoneLevel::Normal,
        },
        Nuisance {
            // Polled every 2 s, the step back to the room (0 -> 23 C, about 700 C/min) is
            // under max_rate: both rows see the same slope and alarm at the same instant.
            // They count once (common mode): the zone is at alarm, not critical.
            name: "module reboot, env-b3 polled every 2 s: the rows alarm together and count once",
            patches: &[("poll_interval = \"250ms\"", "poll_interval = \"2s\"")],
            minutes: 5,
            signal: |s, t| match s {
                ROW1 | ROW2 | OFFGAS if (100.0..110.0).contains(&t) => None,
                ROW1 | ROW2 | OFFGAS if (110.0..130.0).contains(&t) => value(0.0),
                _ => value(quiet(s, t)),
            },
            max_level: ZoneLevel::Alarm,
            must_see: &[
                (ROW1, "alarm", "rise:rise_alarm"),
                (ROW2, "alarm", "rise:rise_alarm"),
            ],
            final_level: ZoneLevel::Normal,
        },
        Nuisance {
            name: "encoding: -5 C as i16 0xFFCE x0.1, 70,000 s runtime across two registers",
            patches: &[],
            minutes: 5,
            signal: |s, t| match s {
                ROW1 => value(encoded().0),
                RUNTIME => value(encoded().1),
                _ => value(quiet(s, t)),
            },
            max_level: ZoneLevel::Normal,
            must_see: &[],
            final_level: ZoneLevel::Normal,
        },
    ]
}

#[test]
fn nuisance_scenarios_never_go_critical_and_do_only_what_they_should() {
    for n in nuisances() {
        let config = contract_config(n.patches);
        let (d, run) = play(
            &config,
            Duration::from_secs(n.minutes * 60),
            TICK,
            &|s, t| (n.signal)(s, t),
        );
        assert_eq!(run.first_critical(), None, "{}: {:#?}", n.name, run.outputs);
        assert!(
            run.max_level() <= n.max_level,
            "{}: reached {:?}, at most {:?} allowed; {:?}",
            n.name,
            run.max_level(),
            n.max_level,
            run.sensor_changes(&config)
        );
        let changes = run.sensor_changes(&config);
        for (sensor, to, reason) in n.must_see {
            assert!(
                changes.contains(&(sensor.to_string(), *to, *reason)),
                "{}: expected {sensor} -> {to} ({reason}) among {changes:?}",
                n.name
            );
        }
        assert_eq!(d.zone_level(0), n.final_level, "{}: {changes:?}", n.name);
        if n.must_see.is_empty() && n.max_level == ZoneLevel::Normal {
            assert_eq!(run.sensor_events(), 0, "{}: {changes:?}", n.name);
        }
    }
}

/// Scenario 8's raw registers decoded with the contract's register specs:
/// (-5 C from i16 0xFFCE x0.1, 70,000 s from u32 0x0001_1170 high word first).
fn encoded() -> (f64, f64) {
    static DECODED: std::sync::OnceLock<(f64, f64)> = std::sync::OnceLock::new();
    *DECODED.get_or_init(|| {
        let config = contract_config(&[]);
        let reg = |id: &str| match &config.sensors.iter().find(|x| x.id == id).unwrap().input {
            firebreak::config::SensorInput::Register(r) => *r,
            _ => unreachable!("{id} is a Modbus sensor"),
        };
        (
            decode(&[0xFFCE], &reg(ROW1)),
            decode(&[0x0001, 0x1170], &reg(RUNTIME)),
        )
    })
}

#[test]
fn encoded_values_reach_the_core_exactly_and_are_not_faults() {
    assert_eq!(encoded(), (-5.0, 70_000.0));
    let config = contract_config(&[]);
    let (d, run) = play(&config, Duration::from_secs(10), TICK, &|s, t| match s {
        ROW1 => value(encoded().0),
        RUNTIME => value(encoded().1),
        _ => value(quiet(s, t)),
    });
    assert_eq!(run.sensor_events(), 0);
    assert_eq!(d.sensor_state(0).1, Some(-5.0));
    assert_eq!(d.sensor_state(5).1, Some(70_000.0));
}

mod device_glitches {
    use super::*;
    use proptest::prelude::*;

    /// What a rebooting or unreachable device sends for each of its registers.
    #[derive(Debug, Clone, Copy)]
    enum Fill {
        /// Zeros (a module warming up, a gateway covering for a lost device).
        Zero,
        /// A "no data" pattern or a configured sentinel: the source reports a fault.
        Sentinel,
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// For a quiet room, a device reboot anywhere in it, of any length, filled with zeros
        /// or sentinels, and polled at any rate, never makes the zone critical.
        #[test]
        fn a_device_reboot_with_zeros_or_sentinels_never_makes_a_zone_critical(
            at in 60.0f64..200.0,
            silent in 0.0f64..30.0,
            filled in 0.25f64..90.0,
            fill in prop_oneof![Just(Fill::Zero), Just(Fill::Sentinel)],
            poll in prop_oneof![Just("250ms"), Just("1s"), Just("2s"), Just("5s")],
            device in prop_oneof![Just("env"), Just("ups")],
        ) {
            let patch = format!("poll_interval = \"{poll}\"");
            let target = if device == "env" { "poll_interval = \"250ms\"" } else { "poll_interval = \"500ms\"" };
            let config = contract_config(&[(target, patch.as_str())]);
            let on_device = move |s: &str| match device {
                "env" => matches!(s, ROW1 | ROW2 | OFFGAS),
                _ => matches!(s, ON_BATTERY | RUNTIME | BATTERY_TEMP),
            };
            let signal = move |s: &str, t: f64| {
                if on_device(s) && (at..at + silent).contains(&t) {
                    return None;
                }
                if on_device(s) && (at + silent..at + silent + filled).contains(&t) {
                    return match fill {
                        Fill::Zero => value(0.0),
                        Fill::Sentinel => Some(Reading::Fault(FaultKind::OutOfRange)),
                    };
                }
                value(quiet(s, t))
            };
            let (_, run) = play(&config, Duration::from_secs(360), TICK, &signal);
            prop_assert_eq!(run.first_critical(), None, "{:?}", run.sensor_changes(&config));
        }
    }
}
