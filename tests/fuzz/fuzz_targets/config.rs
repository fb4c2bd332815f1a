//! Config text: any bytes (as lossy UTF-8) are parsed and validated by the same
//! `load_str` the agent uses; the result is a config or a list of problems, never a
//! crash. A refusal names at least one problem, each with a message, and every line it
//! cites is inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count().max(1);
    match firebreak::config::load_str(&text, "fuzz.toml", Default::default()) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                assert!(!w.message.is_empty());
                assert!(
                    w.line.is_none_or(|l| (1..=lines).contains(&l)),
                    "{w} outside 1..={lines}"
                );
            }
        }
        Err(e) => {
            assert!(!e.errors.is_empty(), "a refusal without a problem");
            for p in e.errors.iter().chain(&e.warnings) {
                assert!(!p.message.is_empty());
                assert!(
                    p.line.is_none_or(|l| (1..=lines).contains(&l)),
                    "{p} outside 1..={lines}"
                );
            }
        }
    }
});
