//! The replay readers: any bytes as a CSV or JSON-lines recording run through
//! `replay_reader` (the same path as `firebreak replay`, against the demo config) and each
//! line through the line parsers; the result is a report or an error naming a line of the
//! input, never a crash.
//!
//! The replay ticks the detector through every interval the recording spans, so its cost
//! grows with the time span, not the bytes: inputs spanning more than a day (which
//! libFuzzer would report as timeouts) only go through the line parsers. The library
//! refuses a step of more than `MAX_GAP` (7 days) between samples; a regression test in
//! tests/it/fuzz_inputs.rs covers it.
#![no_main]

use firebreak::config::Config;
use firebreak::replay::{parse_csv, parse_json, parse_ts, parse_value, replay_reader, Format};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        let text = include_str!("../../../config/demo.toml");
        firebreak::config::load_str(text, "demo.toml", Default::default())
            .expect("config/demo.toml loads")
            .config
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let format = match selector % 3 {
        0 => None,
        1 => Some(Format::Csv),
        _ => Some(Format::JsonLines),
    };
    let lines = input.split(|&b| b == b'\n').count() as u64;
    let text = String::from_utf8_lossy(input);
    let stamps = text.lines().filter_map(|l| {
        parse_csv(l)
            .ok()
            .map(|r| r.ts)
            .or_else(|| parse_json(l).ok().map(|j| j.0))
    });
    for line in text.lines() {
        if let Err(e) = parse_csv(line) {
            assert!(!e.is_empty());
        }
        if let Err(e) = parse_json(line) {
            assert!(!e.is_empty());
        }
        let _ = parse_ts(line);
        let _ = parse_value(line);
    }
    let (lo, hi) = stamps.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    if hi.saturating_sub(lo) > 86_400 * 1_000_000_000 {
        return;
    }
    let mut reader = input;
    match replay_reader(
        config(),
        &mut reader,
        "fuzz",
        format,
        false,
        &mut std::io::sink(),
    ) {
        Ok(report) => {
            let _ = report.summary();
        }
        Err(firebreak::replay::ReplayError::Parse { line, message, .. }) => {
            assert!(!message.is_empty());
            assert!(
                (1..=lines).contains(&line),
                "line {line} outside 1..={lines}"
            );
        }
        Err(e) => panic!("reading from memory into a sink failed: {e}"),
    }
});
