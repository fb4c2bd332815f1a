//! Durations as scenario files write them: the grammar the agent's config uses, and
//! the way `check`, `scenarios` and validation messages print them.

use std::time::Duration;

// Design: one duration grammar for the agent's config and for scenario files, so a
// duration copied from one to the other means the same. The agent's file is compiled in
// here because neither crate may depend on the other (see the note in that file).
#[path = "../../../src/config/duration.rs"]
mod grammar;

/// Parses a duration: `250ms`, `5s`, `1.5s`, `2m`, `1h`, `1d`, sums such as `2m30s`
/// (largest unit first), and a bare `0`.
pub use grammar::parse_duration;

/// Formats a duration the way scenario files write them.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_ms_s_m_and_h() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5").is_err());
        // Days came with the agent's grammar.
        assert_eq!(parse_duration("5d"), Ok(Duration::from_secs(5 * 86_400)));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("s").is_err());
        assert_eq!(parse_duration("2m30s"), Ok(Duration::from_secs(150)));
        assert_eq!(parse_duration("1h0m5s"), Ok(Duration::from_secs(3605)));
        assert!(parse_duration("30s2m").is_err(), "largest unit first");
        assert!(parse_duration("2m2m").is_err());
        assert_eq!(format_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
    }
}
