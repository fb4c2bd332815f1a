//! The replay readers: any bytes as a CSV or JSON-lines recording run through
//! `replay_reader` (the same path as `firebreak replay`, against the demo config) and each
//! line through the line parsers; the result is a report or an error naming a line of the
//! input, never a crash.
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
    for line in String::from_utf8_lossy(input).lines() {
        if let Err(e) = parse_csv(line) {
            assert!(!e.is_empty());
        }
        if let Err(e) = parse_json(line) {
            assert!(!e.is_empty());
        }
        let _ = parse_ts(line);
        let _ = parse_value(line);
    }
});
