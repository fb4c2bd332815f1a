//! Zero allocations per sample: `observe`, `tick` and `drain` in steady state, counted by a
//! global allocator that only counts on the thread under test.
// The counting allocator is the only unsafe code in the workspace outside dependencies.
#![allow(unsafe_code)]

#[path = "it/detect_support/mod.rs"]
mod detect_support;

use detect_support::*;
use firebreak::detect::{Detector, Reading, Sample};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNT_HERE.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNT_HERE.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNT_HERE.with(|c| c.set(true));
    let r = f();
    COUNT_HERE.with(|c| c.set(false));
    (r, ALLOCATIONS.load(Ordering::Relaxed) - before)
}

/// Plausible, jittering readings for the contract's room, on mains.
fn reading(kind: usize, t: f64) -> Reading {
    let j = jitter("x", t + kind as f64, 0.2);
    Reading::Value(match kind {
        0 | 1 => 23.0 + j,
        2 => 1.0 + j.abs(),
        3 => 0.01 + j.abs() * 0.01,
        4 => 0.0,
        5 => 1800.0 - t.floor() % 5.0, // the runtime estimate wanders on mains
        _ => 24.0 + j,
    })
}

#[test]
fn observe_tick_and_drain_do_not_allocate_in_steady_state() {
    let config = contract_config(&[(
        "[detect.temperature]\n",
        "[detect.temperature]\nfrozen_after = \"10m\"\n",
    )]);
    let n = config.sensors.len() as u32;
    let mut d = Detector::from_config(&config, 0);
    let step = 250 * MS;
    let mut t = 0;
    let feed = |d: &mut Detector, until: u64, t: &mut u64| {
        let mut drained = 0;
        while *t < until {
            for s in 0..n {
                d.observe(Sample {
                    sensor: s,
                    at: *t,
                    reading: reading(s as usize, *t as f64 / S as f64),
                });
            }
            d.tick(*t);
            drained += d.drain().count();
            *t += step;
        }
        drained
    };
    let (_, one) = counted(|| Vec::<u8>::with_capacity(1));
    assert_eq!(one, 1, "the counter counts");
    // Warm up: fill every rise window, pass the sums' re-centring, settle every state.
    let warm = feed(&mut d, 600 * S, &mut t);
    assert!(warm <= 1, "a quiet room settles without events: {warm}");
    let ((), allocations) = counted(|| {
        let events = feed(&mut d, 1800 * S, &mut t);
        assert_eq!(events, 0);
    });
    let samples = (1200 * S / step) * n as u64;
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations over {samples} samples and {} ticks",
        1200 * S / step
    );

    // Sensor state changes that do not change the zone do not allocate either: a sensor
    // going to warn and back reuses the output buffer.
    let ((), allocations) = counted(|| {
        for k in 0..20u64 {
            let v = if k % 2 == 0 { 40.0 } else { 23.0 };
            for _ in 0..12 {
                d.observe(Sample {
                    sensor: 0,
                    at: t,
                    reading: Reading::Value(v + jitter("y", t as f64, 0.1)),
                });
                for s in 1..n {
                    d.observe(Sample {
                        sensor: s,
                        at: t,
                        reading: reading(s as usize, t as f64 / S as f64),
                    });
                }
                d.tick(t);
                // Zone changes (to warning and back) allocate their evidence list: drop
                // those here and count only what the sensor path did.
                d.drain().for_each(drop);
                t += step;
            }
        }
    });
    assert!(
        allocations <= 20,
        "only the zone changes' evidence lists allocate: {allocations}"
    );
}
