//! Properties of the detection core, checked on generated inputs (proptest).

use firebreak::config::validate::builtin_defaults;
use firebreak::config::Kind;
use firebreak::detect::rise::{Nanos, RiseWindow};
use firebreak::detect::{
    Detector, Output, Params, Reading, Sample, SensorSpec, ZoneLevel, ZoneSpec,
};
use proptest::prelude::*;

const MS: Nanos = 1_000_000;
const S: Nanos = 1_000 * MS;

fn naive_slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mt = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mv = points.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = points.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mt) * (p.0 - mt)).sum();
    (points.len() >= 3 && den > 1e-9).then(|| num / den)
}

fn sensor(zone: u32, kind: Kind) -> SensorSpec {
    SensorSpec {
        zone,
        kind,
        params: Params::from_config(&builtin_defaults(kind)),
        rise_capacity: 1024,
        source: None,
    }
}

fn zone() -> ZoneSpec {
    ZoneSpec {
        confirm: 2,
        confirm_across: firebreak::config::ConfirmAcross::Sensors,
        stale_votes: true,
        runtime_floor_s: 390.0,
        max_on_battery: Some(600 * S),
    }
}

/// A value inside the kind's "ok" band: no threshold reached, inside min..max.
fn ok_value(kind: Kind) -> impl Strategy<Value = f64> {
    match kind {
        Kind::Temperature => (-50.0..34.0f64).boxed(),
        Kind::Offgas => (0.0..4.9f64).boxed(),
        Kind::Smoke => (0.0..0.039f64).boxed(),
        Kind::OnBattery | Kind::AlarmInput => Just(0.0).boxed(),
        Kind::Runtime => (0.0..1e6f64).boxed(),
        Kind::Charge => (0.0..100.0f64).boxed(),
        Kind::Voltage => (0.0..1000.0f64).boxed(),
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(Kind::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn o1_slope_equals_a_naive_least_squares_fit_on_the_same_window(
        start in 0u64..(1u64 << 50),
        window_s in 1u64..120,
        steps in prop::collection::vec((0u64..5_000, -100.0..1000.0f64, prop::bool::weighted(0.02)), 3..3000),
    ) {
        let window = window_s * S;
        let mut w = RiseWindow::new(window, 8192);
        let mut t = start;
        let mut pts: Vec<(Nanos, f64)> = Vec::new();
        for (dt_ms, v, gap) in steps {
            // Irregular sampling, repeated timestamps, and now and then a gap longer
            // than the window.
            t += dt_ms * MS + if gap { 2 * window } else { 0 };
            w.push(t, v);
            pts.push((t, v));
        }
        let inside: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| t - p.0 <= window)
            .map(|p| ((p.0 as f64 - t as f64) * 1e-9, p.1))
            .collect();
        prop_assert_eq!(w.len(), inside.len());
        if let (Some(got), Some(expected)) = (w.slope(0), naive_slope(&inside)) {
            // Rounding scales with the values over the time spread of the window (a fit
            // through nearly simultaneous points is ill-conditioned in any arithmetic).
            let n = inside.len() as f64;
            let mt = inside.iter().map(|p| p.0).sum::<f64>() / n;
            let spread = (inside.iter().map(|p| (p.0 - mt).powi(2)).sum::<f64>() / n).sqrt();
            let vmax = inside.iter().map(|p| p.1.abs()).fold(1.0, f64::max);
            let tolerance = 1e-9 * expected.abs().max(vmax / spread.max(1e-3));
            prop_assert!((got - expected).abs() <= tolerance,
                "got {} expected {} ({} points, spread {} s)", got, expected, n, spread);
        }
    }

    #[test]
    fn constant_input_never_warns(
        (kind, v) in kind().prop_flat_map(|k| (Just(k), ok_value(k))),
        gaps in prop::collection::vec(1u64..4_000, 10..600),
    ) {
        let mut d = Detector::new(vec![sensor(0, kind)], vec![zone()], 0);
        let mut t = 0;
        for dt in gaps {
            t += dt * MS;
            d.observe(Sample { sensor: 0, at: t, reading: Reading::Value(v) });
            d.tick(t);
            let out: Vec<Output> = d.drain().collect();
            prop_assert!(out.is_empty(), "{:?} at {} ({:?}): {:?}", kind, v, t, out);
        }
    }

    #[test]
    fn a_spike_shorter_than_for_never_changes_state(
        (kind, base, height) in prop::sample::select(vec![Kind::Temperature, Kind::Offgas, Kind::Smoke])
            .prop_flat_map(|k| {
                let p = builtin_defaults(k);
                (Just(k), ok_value(k), 0.0..p.max.min(2000.0))
            }),
        dts in prop::collection::vec(50u64..1_000, 400..600),
        spike_at in 150usize..300,
        spike_ms in 0u64..1_999,
    ) {
        // The hold alone: a spike faster than `max_rate` is a fault by design (the property
        // below), so that check is off here.
        let mut p = builtin_defaults(kind);
        p.max_rate = None;
        let spec = SensorSpec { params: Params::from_config(&p), ..sensor(0, kind) };
        let mut d = Detector::new(vec![spec], vec![zone()], 0);
        let mut t = 0;
        let mut spike_start = None;
        for (i, dt) in dts.iter().enumerate() {
            t += dt * MS;
            let in_spike = i >= spike_at && match spike_start {
                None => { spike_start = Some(t); true }
                Some(s) if t - s < spike_ms * MS => true,
                Some(s) => {
                    // The first sample after the spike comes no later than its end, so the
                    // spike is seen for less than `for` (2 s by default).
                    t = t.min(s + spike_ms * MS).max(t - dt * MS + 1);
                    false
                }
            };
            let v = if in_spike { height } else { base };
            d.observe(Sample { sensor: 0, at: t, reading: Reading::Value(v) });
            d.tick(t);
            let out: Vec<Output> = d.drain().collect();
            prop_assert!(out.is_empty(), "{:?} base {} spike {} for {} ms at sample {}: {:?}",
                kind, base, height, spike_ms, spike_at, out);
        }
    }

    #[test]
    fn sample_order_across_sensors_does_not_change_zone_decisions(
        series in prop::collection::vec(
            prop::collection::vec(prop::sample::select(vec![0u8, 0, 0, 1, 2, 3, 4]), 60),
            8,
        ),
        keys in prop::collection::vec(any::<u32>(), 8 * 60),
    ) {
        // Two zones of four sensors; each sensor steps through levels on a 250 ms grid.
        let kinds = [Kind::Temperature, Kind::Offgas, Kind::Smoke, Kind::OnBattery,
                     Kind::Temperature, Kind::Smoke, Kind::Runtime, Kind::OnBattery];
        let value = |k: Kind, level: u8| -> Reading {
            let table: [f64; 5] = match k {
                Kind::Temperature => [23.0, 40.0, 60.0, 95.0, f64::NAN],
                Kind::Offgas => [1.0, 10.0, 30.0, 250.0, f64::NAN],
                Kind::Smoke => [0.0, 0.05, 0.2, 2.0, f64::NAN],
                Kind::OnBattery => [0.0, 1.0, 0.0, 1.0, f64::NAN],
                _ => [1800.0, 900.0, 380.0, 100.0, f64::NAN],
            };
            Reading::Value(table[level as usize])
        };
        let mut samples: Vec<(Nanos, u32, Sample)> = Vec::new();
        for (si, levels) in series.iter().enumerate() {
            for (step, &level) in levels.iter().enumerate() {
                let at = step as Nanos * 250 * MS;
                samples.push((at, keys[si * 60 + step], Sample {
                    sensor: si as u32,
                    at,
                    reading: value(kinds[si], level),
                }));
            }
        }
        let run = |order: &[(Nanos, u32, Sample)]| -> Vec<(Nanos, String)> {
            let specs = kinds.iter().enumerate().map(|(i, &k)| sensor((i / 4) as u32, k)).collect();
            let mut d = Detector::new(specs, vec![zone(), zone()], 0);
            let mut decisions = Vec::new();
            let mut last = 0;
            for (at, _, s) in order {
                if *at != last {
                    d.tick(last);
                    decisions.extend(d.drain().filter_map(|o| zone_decision(last, o)));
                    last = *at;
                }
                d.observe(*s);
            }
            d.tick(last + 250 * MS);
            decisions.extend(d.drain().filter_map(|o| zone_decision(last, o)));
            decisions
        };
        let mut by_sensor = samples.clone();
        by_sensor.sort_by_key(|(at, _, s)| (*at, s.sensor));
        let mut shuffled = samples;
        shuffled.sort_by_key(|(at, key, _)| (*at, *key));
        prop_assert_eq!(run(&by_sensor), run(&shuffled));
    }
}

fn zone_decision(t: Nanos, o: Output) -> Option<(Nanos, String)> {
    match o {
        Output::Zone { .. } | Output::Critical { .. } => Some((t, format!("{o:?}"))),
        Output::Sensor { .. } => None,
    }
}

#[test]
fn zone_levels_are_ordered_for_the_properties_above() {
    assert!(ZoneLevel::Normal < ZoneLevel::Warning && ZoneLevel::Alarm < ZoneLevel::Critical);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A temperature spike faster than `max_rate`, of any height and length, is a fault
    /// (`fault:implausible_rate`) and never an alarm: a device glitch is not fire evidence.
    #[test]
    fn a_spike_faster_than_max_rate_is_a_fault_never_an_alarm(
        base in 15.0f64..30.0,
        jump in 30.0f64..1000.0,
        poll_ms in prop::sample::select(vec![250u64, 500, 1000]),
        samples in 1usize..4,
    ) {
        let mut d = Detector::new(vec![sensor(0, Kind::Temperature)], vec![zone()], 0);
        let mut reasons = Vec::new();
        let mut t = 0;
        for i in 0..200 {
            t += poll_ms * MS;
            let v = if (100..100 + samples).contains(&i) { (base + jump).min(1200.0) } else { base };
            d.observe(Sample { sensor: 0, at: t, reading: Reading::Value(v) });
            d.tick(t);
            for o in d.drain() {
                if let Output::Sensor { to, reason, .. } = o {
                    prop_assert!(
                        !matches!(to, firebreak::detect::SensorState::Alarm | firebreak::detect::SensorState::Critical),
                        "{:?} ({})", to, reason.as_str()
                    );
                    reasons.push(reason.as_str());
                }
            }
        }
        prop_assert!(reasons.contains(&"fault:implausible_rate"), "{:?}", reasons);
    }
}
