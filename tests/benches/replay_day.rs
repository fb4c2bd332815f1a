//! End-to-end replay timing: one day of 1 Hz data for 1,000 sensors (86.4 M CSV rows),
//! parse included, through `firebreak::replay::run` with the events to a sink.
//! `cargo bench --bench replay_day` (env: `REPLAY_DAY_SECONDS` shortens the day,
//! `REPLAY_DAY_RUNS` repeats the timed replay; the median is printed).
//!
//! Design: the CSV (about 3 GB) is written to a temp file first rather than streamed, so
//! the figure is what `firebreak replay --input day.csv` costs, file reading included;
//! generation is not timed. The temp directory is removed at the end.
// Benches time real work and real peers (clippy.toml).
#![allow(clippy::disallowed_methods)]

use firebreak::config::load_str;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::time::Instant;

const SENSORS: u32 = 1_000;
const PER_ZONE: u32 = 100;
/// 2022-10-15T00:00:00Z in epoch milliseconds.
const T0_MS: i64 = 1_665_792_000_000;

/// Per zone: 40 temperature, 20 off-gas, 20 smoke, 5 each of on_battery, runtime, charge,
/// voltage (the mix of the detect bench).
fn kind_of(i: u32) -> &'static str {
    match i % PER_ZONE {
        0..=39 => "temperature",
        40..=59 => "offgas",
        60..=79 => "smoke",
        80..=84 => "on_battery",
        85..=89 => "runtime",
        90..=94 => "charge",
        _ => "voltage",
    }
}

fn config_text() -> String {
    let zones = SENSORS / PER_ZONE;
    let mut t = String::from(
        "[agent]\nname = \"bench\"\nstate_dir = \"/tmp/firebreak-bench\"\n\
         event_log = \"/tmp/firebreak-bench/events.jsonl\"\ndry_run = true\n\n",
    );
    for z in 0..zones {
        // 1 Hz polling, so the rise windows are sized as for this data.
        writeln!(
            t,
            "[[sources]]\nname = \"dev{z}\"\ntype = \"modbus\"\nurl = \"tcp://127.0.0.1:502\"\n\
             unit = {}\npoll_interval = \"1s\"\ntimeout = \"500ms\"\n",
            z + 1
        )
        .unwrap();
    }
    for i in 0..SENSORS {
        let z = i / PER_ZONE;
        writeln!(
            t,
            "[[sensors]]\nid = \"s{i:04}\"\nzone = \"z{z}\"\nkind = \"{}\"\nsource = \"dev{z}\"\n\
             register = {{ table = \"input\", address = {}, type = \"u16\" }}\n",
            kind_of(i),
            i % PER_ZONE
        )
        .unwrap();
    }
    for z in 0..zones {
        writeln!(
            t,
            "[[zones]]\nid = \"z{z}\"\nrunbook = \"rb{z}\"\nconfirm = 2\nstale_votes = true\n\
             power_reserve = \"5m\"\nmax_on_battery = \"10m\"\n\n\
             [[runbooks]]\nname = \"rb{z}\"\nbudget = \"90s\"\n\n\
             [[runbooks.steps]]\nname = \"noop\"\ntype = \"command\"\nargv = [\"/bin/true\"]\n"
        )
        .unwrap();
    }
    t
}

/// A quiet site: values jitter around their kind's normal level.
fn value(kind: &str, i: u32, s: u64, out: &mut Vec<u8>) {
    let mut x = (i as u64) << 32 | s;
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let j = ((x >> 40) as f64 / (1u64 << 24) as f64) - 0.5;
    let v = match kind {
        "temperature" => 23.0 + 0.4 * j,
        "offgas" => 1.0 + j,
        "smoke" => 0.01 + 0.01 * j,
        "on_battery" => 0.0,
        "runtime" => 1800.0 + 10.0 * j,
        "charge" => 100.0 + j.min(0.0),
        _ => 230.0 + 2.0 * j,
    };
    write!(out, "{v:.3}").unwrap();
}

fn main() {
    // `cargo bench` passes `--bench`; no other arguments are understood.
    let seconds: u64 = std::env::var("REPLAY_DAY_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(86_400);
    let runs: usize = std::env::var("REPLAY_DAY_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let config = load_str(&config_text(), "bench.toml", HashMap::new())
        .unwrap_or_else(|e| panic!("bench config: {e}"))
        .config;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("day.csv");
    let started = Instant::now();
    {
        let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
        w.write_all(b"ts,sensor,value\n").unwrap();
        let kinds: Vec<&str> = (0..SENSORS).map(kind_of).collect();
        let mut line = Vec::with_capacity(64);
        for s in 0..seconds {
            let ts = T0_MS + (s as i64) * 1000;
            for (i, kind) in kinds.iter().enumerate() {
                line.clear();
                write!(line, "{ts},s{i:04},").unwrap();
                value(kind, i as u32, s, &mut line);
                line.push(b'\n');
                w.write_all(&line).unwrap();
            }
        }
        w.flush().unwrap();
    }
    let rows = seconds * SENSORS as u64;
    let bytes = std::fs::metadata(&path).unwrap().len();
    println!(
        "generated {rows} rows ({:.2} GB) in {:.1} s at {}",
        bytes as f64 / 1e9,
        started.elapsed().as_secs_f64(),
        path.display()
    );

    let mut times = Vec::with_capacity(runs);
    for run in 0..runs {
        let mut sink = std::io::sink();
        let started = Instant::now();
        let report = firebreak::replay::run(&config, &path, None, &mut sink).expect("replay");
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(report.samples, rows, "every row replayed");
        assert!(report.criticals.is_empty(), "the site is quiet");
        println!(
            "run {}: {rows} rows in {secs:.2} s = {:.2} M rows/s",
            run + 1,
            rows as f64 / secs / 1e6
        );
        times.push(secs);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "replay_day: median {median:.2} s for {rows} rows ({:.2} M rows/s, {:.0} MB/s), {runs} run(s)",
        rows as f64 / median / 1e6,
        bytes as f64 / median / 1e6
    );
}
