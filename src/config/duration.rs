//! The duration grammar of every Firebreak file: the agent's config and the simulator's
//! scenario files read durations the same way.
//!
//! A duration is a number and a unit (`250ms`, `5s`, `1.5s`, `10m`, `2h`, `1d`) or a sum
//! of them, largest unit first and each unit once (`1m30s`, `1h5m`). Units: ns, us (µs),
//! ms, s (sec), m (min), h, d. A bare `0` is zero. Any other bare number is refused: the
//! unit is part of the meaning, and guessing it is how "timeout = 5" becomes five
//! milliseconds somewhere. Zero is the same in every unit, so `0` guesses nothing (and
//! gives no value that `0s` did not already give).

// Design: hardware-sim compiles this file into itself (`#[path = ...] mod grammar;` in
// hardware-sim/src/scenario/duration.rs) instead of the two crates sharing a dependency.
// The production agent must not depend on the simulator (it is only the optional `demo`
// feature and a dev-dependency), the simulator cannot depend on the agent (a cycle), and
// a third crate for one function would break the fixed workspace layout. So this file
// uses std only, never `crate::` or `super::` paths, and its tests run in both crates.

use std::time::Duration;

/// Every unit with its spellings and its length in seconds, smallest first; a sum names
/// them in the opposite order.
const UNITS: [(&[&str], f64); 7] = [
    (&["ns"], 1e-9),
    (&["us", "µs"], 1e-6),
    (&["ms"], 1e-3),
    (&["s", "sec"], 1.0),
    (&["m", "min"], 60.0),
    (&["h"], 3600.0),
    (&["d"], 86_400.0),
];

const EXAMPLES: &str = r#"write e.g. "250ms", "5s", "10m""#;

/// Parses a duration of the grammar above. The error says what is wrong with the text;
/// the caller adds the key path.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err(format!("empty duration ({EXAMPLES})"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    let mut last_unit = UNITS.len();
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("`{s}` is not a duration ({EXAMPLES})"));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("`{s}` is not a duration: bad number `{}`", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = rest[..unit_len].trim();
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(format!(
                "`{s}` has no unit (write e.g. \"{number}s\" or \"{number}ms\"; only 0 goes without one)"
            ));
        }
        let Some(rank) = UNITS.iter().position(|(names, _)| names.contains(&unit)) else {
            return Err(format!(
                "`{s}` has an unknown unit `{unit}` (use ns, us, ms, s, m, h or d)"
            ));
        };
        if rank >= last_unit {
            return Err(format!(
                "`{s}` is not a duration: write a sum largest unit first, each unit once (e.g. \"1h30m\", \"2m30s\")"
            ));
        }
        last_unit = rank;
        total += number * UNITS[rank].1;
    }
    if !total.is_finite() || total > 1e12 {
        return Err(format!("`{s}` is too long a duration"));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_the_contract_forms_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn a_duration_without_unit_is_refused_with_a_hint() {
        let err = parse_duration("5").unwrap_err();
        assert!(err.contains("no unit"), "{err}");
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("abc").is_err());
    }

    #[test]
    fn a_bare_zero_is_zero_and_no_other_bare_number_is() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 0 "), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bare in ["1", "0.5", "00", "0.0", "30"] {
            let err = parse_duration(bare).unwrap_err();
            assert!(err.contains("no unit"), "{bare}: {err}");
        }
    }

    #[test]
    fn every_unit_from_nanoseconds_to_days_is_read() {
        assert_eq!(parse_duration("10ns"), Ok(Duration::from_nanos(10)));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("10µs"), Ok(Duration::from_micros(10)));
        assert_eq!(parse_duration("2sec"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1d2h"), Ok(Duration::from_secs(93_600)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn a_sum_names_its_units_largest_first_and_once() {
        let err = parse_duration("30s2m").unwrap_err();
        assert!(err.contains("largest unit first"), "{err}");
        assert!(parse_duration("2m2m").is_err());
        assert!(
            parse_duration("1m1min").is_err(),
            "two spellings of one unit"
        );
        assert_eq!(parse_duration("1h0m5s"), Ok(Duration::from_secs(3605)));
    }

    #[test]
    fn errors_quote_the_text_and_say_what_to_write() {
        assert_eq!(
            parse_duration("1 minute").unwrap_err(),
            "`1 minute` has an unknown unit `minute` (use ns, us, ms, s, m, h or d)"
        );
        assert_eq!(
            parse_duration("soon").unwrap_err(),
            r#"`soon` is not a duration (write e.g. "250ms", "5s", "10m")"#
        );
        assert_eq!(
            parse_duration("5").unwrap_err(),
            r#"`5` has no unit (write e.g. "5s" or "5ms"; only 0 goes without one)"#
        );
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("1.2.3s").unwrap_err().contains("bad number"));
        assert!(parse_duration("99999999999999d")
            .unwrap_err()
            .contains("too long"));
    }
}
