//! Detection core throughput: 10,000 sensors in 100 zones, a realistic mix of kinds, steady
//! state (a quiet site: values jitter, nothing changes state). `cargo bench --bench detect`.
//!
//! Design: the figures are the benchmark thread's CPU time, not wall time, so that "samples
//! per second on one core" is what is measured even when other processes share the
//! machine's cores (wall time would count the time the thread waited for a core). Set
//! `DETECT_BENCH_WALL=1` to time with the wall clock instead.
// Benches time real work and real peers (clippy.toml).
#![allow(clippy::disallowed_methods)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use firebreak::config::validate::builtin_defaults;
use firebreak::config::Kind;
use firebreak::detect::{Detector, Params, Reading, Sample, SensorSpec, ZoneSpec};
use std::hint::black_box;
use std::time::{Duration, Instant};

const S: u64 = 1_000_000_000;
const ZONES: u32 = 100;
const PER_ZONE: u32 = 100;
const SENSORS: u32 = ZONES * PER_ZONE;
/// Precomputed rounds of values (one sample per sensor each), replayed cyclically.
const ROUNDS: usize = 16;

/// Per zone: 40 temperature, 20 off-gas, 20 smoke, 5 each of on_battery, runtime, charge,
/// voltage.
fn kind_of(i: u32) -> Kind {
    match i % PER_ZONE {
        0..=39 => Kind::Temperature,
        40..=59 => Kind::Offgas,
        60..=79 => Kind::Smoke,
        80..=84 => Kind::OnBattery,
        85..=89 => Kind::Runtime,
        90..=94 => Kind::Charge,
        _ => Kind::Voltage,
    }
}

fn quiet_value(kind: Kind, i: u32, round: usize) -> f64 {
    let mut x = (i as u64) << 32 | round as u64;
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let j = ((x >> 40) as f64 / (1u64 << 24) as f64) - 0.5; // [-0.5, 0.5)
    match kind {
        Kind::Temperature => 23.0 + 0.4 * j,
        Kind::Offgas => 1.0 + j,
        Kind::Smoke => 0.01 + 0.01 * j,
        Kind::OnBattery | Kind::AlarmInput => 0.0,
        Kind::Runtime => 1800.0 + 10.0 * j,
        Kind::Charge => 100.0 + j.min(0.0),
        Kind::Voltage => 230.0 + 2.0 * j,
    }
}

fn build() -> (Detector, Vec<Vec<f64>>) {
    let sensors = (0..SENSORS)
        .map(|i| {
            let kind = kind_of(i);
            SensorSpec {
                zone: i / PER_ZONE,
                kind,
                params: Params::from_config(&builtin_defaults(kind)),
                // 1 Hz over a 60 s window, with the agent's 2x margin.
                rise_capacity: 128,
                source: None,
            }
        })
        .collect();
    let zones = (0..ZONES)
        .map(|_| ZoneSpec {
            confirm: 2,
            confirm_across: firebreak::config::ConfirmAcross::Sensors,
            stale_votes: true,
            runtime_floor_s: 390.0,
            max_on_battery: Some(600 * S),
        })
        .collect();
    let values = (0..ROUNDS)
        .map(|r| {
            (0..SENSORS)
                .map(|i| quiet_value(kind_of(i), i, r))
                .collect()
        })
        .collect();
    (Detector::new(sensors, zones, 0), values)
}

/// Feeds one round (every sensor once) at time `t`.
fn round(d: &mut Detector, values: &[f64], t: u64) {
    for (i, &v) in values.iter().enumerate() {
        d.observe(Sample {
            sensor: i as u32,
            at: t,
            reading: Reading::Value(v),
        });
    }
}

/// A clock for the timed loops: this thread's CPU time (or the wall clock, see above).
struct Clock {
    wall: bool,
}

impl Clock {
    fn from_env() -> Self {
        Clock {
            wall: std::env::var_os("DETECT_BENCH_WALL").is_some_and(|v| v == "1"),
        }
    }

    fn now(&self) -> Duration {
        if self.wall {
            return START.with(|s| s.elapsed());
        }
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
            .expect("thread CPU clock");
        Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32)
    }
}

thread_local! {
    static START: Instant = Instant::now();
}

fn bench(c: &mut Criterion) {
    let clock = Clock::from_env();
    let (mut d, values) = build();
    // Warm up to steady state: rise windows full, sums re-centred at least once.
    let mut t = 0u64;
    for r in 0..300 {
        round(&mut d, &values[r % ROUNDS], t);
        d.tick(t);
        assert_eq!(d.drain().count(), 0, "the site must be quiet");
        t += S;
    }

    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(SENSORS as u64));
    g.bench_function("observe 10k sensors (one round)", |b| {
        let mut r = 0;
        b.iter_custom(|iters| {
            let start = clock.now();
            for _ in 0..iters {
                round(&mut d, black_box(&values[r % ROUNDS]), t);
                r += 1;
                t += S;
            }
            let elapsed = clock.now() - start;
            // Outside the timing: keep stale timers and holds honest.
            d.tick(t - S);
            assert_eq!(d.drain().count(), 0);
            elapsed
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("tick over 10k sensors, nothing due", |b| {
        b.iter_custom(|iters| {
            let start = clock.now();
            for _ in 0..iters {
                d.tick(black_box(t - S));
            }
            clock.now() - start
        })
    });
    g.finish();
    assert_eq!(d.drain().count(), 0);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
