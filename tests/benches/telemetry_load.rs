//! Telemetry load: a sustained 10,000 points/s through the InfluxDB sink to a real
//! VictoriaMetrics for ~20 s (CPU % of one core and RSS of this process, points delivered
//! vs sent), then the replay rate of a large spool left by an outage.
//!
//! `cargo bench --bench telemetry_load`. Environment: `FIREBREAK_BENCH_SECS` (default 20),
//! `FIREBREAK_BENCH_RATE` (points/s, default 10000), `FIREBREAK_BENCH_SPOOL_MIB` (on-disk
//! spool size to build and replay, default 64; the issue asks for 1024).
//! A point is one observed sample (`Telemetry::Sensor`): one line of line protocol with two
//! fields, the value and the state code.
// Benches time real work and real peers (clippy.toml).
#![allow(clippy::disallowed_methods)]

#[path = "../it/support/mod.rs"]
mod support;

use firebreak::detect::SensorState;
use firebreak::sinks::influxdb::{SensorName, Sink, SinkConfig, Telemetry, Tuning};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::victoria::Victoria;
use tokio_util::sync::CancellationToken;

const SENSORS: usize = 100;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (user + system CPU seconds, RSS KiB, peak RSS KiB) of this process.
fn usage() -> (f64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`; utime and stime are fields 14 and 15 (1-based).
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // USER_HZ is 100 on Linux.
    (ticks as f64 / 100.0, kib("VmRSS:"), kib("VmHWM:"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn config(url: &str, spool: &std::path::Path, spool_max: u64) -> SinkConfig {
    SinkConfig {
        agent: "bench".into(),
        url: url.into(),
        org: "dc-ops".into(),
        bucket: "firebreak".into(),
        token: None,
        flush_interval: Duration::from_secs(1),
        spool_dir: spool.to_path_buf(),
        spool_max,
        sensors: (0..SENSORS)
            .map(|i| SensorName {
                id: format!("b3.temp.{i:03}"),
                zone: "b3-battery-room".into(),
                kind: "temperature".into(),
            })
            .collect(),
        zones: vec!["b3-battery-room".into()],
        tuning: Tuning::default(),
    }
}

fn point(i: u64, ts_ms: i64) -> Telemetry {
    Telemetry::Sensor {
        sensor: (i % SENSORS as u64) as u32,
        ts_ms,
        value: Some(20.0 + (i % 1000) as f64 * 0.01),
        state: SensorState::Ok,
    }
}

/// Points VictoriaMetrics holds for `firebreak_sensor_value` (after a forced flush).
fn stored(vm: &Victoria) -> u64 {
    let _ = vm.get("/internal/force_flush");
    let q = "/api/v1/query?query=sum(count_over_time(firebreak_sensor_value%5B1h%5D))";
    vm.get(q)
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v["data"]["result"][0]["value"][1].as_str()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would too: run either way.
    let secs = env("FIREBREAK_BENCH_SECS", 20);
    let rate = env("FIREBREAK_BENCH_RATE", 10_000);
    let spool_mib = env("FIREBREAK_BENCH_SPOOL_MIB", 64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // 1. Sustained load.
    let mut vm = Victoria::start();
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let sink = {
        let _g = rt.enter();
        Sink::start(
            config(&vm.url(), &dir.path().join("spool"), 4 << 30),
            stop.clone(),
        )
        .expect("start the sink")
    };
    let (tx, stats) = (sink.sender(), sink.stats());
    let (cpu0, _, _) = usage();
    let t0 = Instant::now();
    let base = now_ms() - (secs as i64 + 5) * 1000;
    let tick = Duration::from_millis(10);
    let per_tick = rate / 100;
    let mut sent = 0u64;
    let mut next = t0;
    while t0.elapsed() < Duration::from_secs(secs) {
        for _ in 0..per_tick {
            // Distinct timestamps per sensor: base + i / sensors ms.
            tx.send(point(sent, base + (sent / SENSORS as u64) as i64));
            sent += 1;
        }
        next += tick;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (cpu1, rss, _) = usage();
    // Let the last batches go out.
    let until = Instant::now() + Duration::from_secs(30);
    while stats.written.load(Relaxed) < sent && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let written_lines = stats.written.load(Relaxed);
    let until = Instant::now() + Duration::from_secs(30);
    let mut in_vm = stored(&vm);
    while in_vm < sent && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        in_vm = stored(&vm);
    }
    let dropped: u64 = firebreak::sinks::influxdb::DropReason::ALL
        .iter()
        .map(|r| stats.dropped_count(*r))
        .sum();
    println!("== sustained load: {rate} points/s for {elapsed:.1} s, {SENSORS} sensors");
    println!(
        "sent {sent} points; sink wrote {written_lines}; VictoriaMetrics holds {in_vm} firebreak_sensor_value points ({:.2}% of sent); dropped {dropped}",
        100.0 * in_vm as f64 / sent as f64
    );
    println!(
        "CPU {:.1}% of one core (whole process: generator + sink; VictoriaMetrics not counted); RSS {} MiB",
        100.0 * (cpu1 - cpu0) / elapsed,
        rss / 1024
    );
    stop.cancel();
    rt.block_on(sink.join());

    // 2. Replay of a large spool: VictoriaMetrics down, the sink spools; then up again.
    vm.stop();
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let target = spool_mib << 20;
    let sink = {
        let _g = rt.enter();
        Sink::start(
            config(&vm.url(), &dir.path().join("spool"), target * 2),
            stop.clone(),
        )
        .expect("start the sink")
    };
    let (tx, stats) = (sink.sender(), sink.stats());
    let t1 = Instant::now();
    let base = now_ms() - 30 * 60 * 1000;
    let mut n = 0u64;
    while stats.spool_bytes.load(Relaxed) < target && t1.elapsed() < Duration::from_secs(600) {
        let dropped = stats.dropped_count(firebreak::sinks::influxdb::DropReason::QueueFull);
        for _ in 0..10_000 {
            tx.send(point(
                n,
                base + (n / SENSORS as u64) as i64 % (25 * 60 * 1000),
            ));
            n += 1;
        }
        if stats.dropped_count(firebreak::sinks::influxdb::DropReason::QueueFull) > dropped {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // The last batches reach the spool.
    std::thread::sleep(Duration::from_secs(2));
    let spool_bytes = stats.spool_bytes.load(Relaxed);
    let spool_points = stats.spool_points.load(Relaxed);
    println!(
        "== replay: spool built in {:.1} s: {:.1} MiB on disk, {spool_points} lines waiting",
        t1.elapsed().as_secs_f64(),
        spool_bytes as f64 / (1 << 20) as f64
    );
    let replayed0 = stats.replayed.load(Relaxed);
    vm.restart();
    let t2 = Instant::now();
    let until = t2 + Duration::from_secs(900);
    while stats.spool_points.load(Relaxed) > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = t2.elapsed().as_secs_f64();
    let replayed = stats.replayed.load(Relaxed) - replayed0;
    println!(
        "replayed {replayed} lines in {took:.1} s: {:.0} lines/s, {:.1} MiB/s of spool (gzip on disk); {} lines left",
        replayed as f64 / took,
        spool_bytes as f64 / (1 << 20) as f64 / took,
        stats.spool_points.load(Relaxed)
    );
    stop.cancel();
    rt.block_on(sink.join());
}
