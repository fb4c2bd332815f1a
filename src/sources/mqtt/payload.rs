//! MQTT payloads to readings: a bare number, `true`/`false`, or JSON with an RFC 6901
//! pointer to the value and optionally to the reading's own timestamp. Pure: bytes in,
//! a value or the reason it is not one out.

use crate::detect::FaultKind;

/// Payloads above this are refused unread (a sensor reading is a few bytes; a huge one
/// is a misrouted topic or an attack).
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// A reading taken from a payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parsed {
    pub value: f64,
    /// The reading's own time, Unix epoch milliseconds, when `timestamp_pointer` gave one.
    pub timestamp_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload of {0} bytes is over the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
    #[error("payload is not UTF-8")]
    NotUtf8,
    #[error("payload is empty")]
    Empty,
    #[error("payload is not a number, true/false or JSON: {0}")]
    Malformed(String),
    #[error("json_pointer `{0}` names nothing in the payload")]
    MissingField(String),
    #[error("value at `{pointer}` is {found}, not a number or true/false")]
    NotNumeric {
        pointer: String,
        found: &'static str,
    },
    #[error("timestamp at `{pointer}` is not RFC 3339 or epoch milliseconds: {found}")]
    BadTimestamp { pointer: String, found: String },
}

impl PayloadError {
    /// The fault the sensor reports (its `reason` in events).
    pub fn fault(&self) -> FaultKind {
        match self {
            PayloadError::TooLarge(_) => FaultKind::PayloadTooLarge,
            PayloadError::NotUtf8 | PayloadError::Empty | PayloadError::Malformed(_) => {
                FaultKind::BadPayload
            }
            PayloadError::MissingField(_) => FaultKind::MissingField,
            PayloadError::NotNumeric { .. } => FaultKind::NotNumeric,
            PayloadError::BadTimestamp { .. } => FaultKind::BadPayload,
        }
    }
}

/// Parses one payload for one sensor. Without a `json_pointer` the payload must be a bare
/// number or boolean (JSON or not); with one, a JSON document.
pub fn parse(
    payload: &[u8],
    json_pointer: Option<&str>,
    timestamp_pointer: Option<&str>,
) -> Result<Parsed, PayloadError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(PayloadError::TooLarge(payload.len()));
    }
    let text = std::str::from_utf8(payload).map_err(|_| PayloadError::NotUtf8)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(PayloadError::Empty);
    }
    let needs_json = json_pointer.is_some_and(|p| !p.is_empty()) || timestamp_pointer.is_some();
    if !needs_json {
        if let Some(v) = bare(text) {
            return Ok(Parsed {
                value: v,
                timestamp_ms: None,
            });
        }
    }
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| PayloadError::Malformed(short(&e.to_string())))?;
    let pointer = json_pointer.unwrap_or("");
    let at = doc
        .pointer(pointer)
        .ok_or_else(|| PayloadError::MissingField(pointer.to_string()))?;
    let value = number(at).ok_or_else(|| PayloadError::NotNumeric {
        pointer: pointer.to_string(),
        found: type_name(at),
    })?;
    let timestamp_ms = match timestamp_pointer {
        None => None,
        Some(p) => {
            let t = doc
                .pointer(p)
                .ok_or_else(|| PayloadError::MissingField(p.to_string()))?;
            Some(timestamp(t).ok_or_else(|| PayloadError::BadTimestamp {
                pointer: p.to_string(),
                found: short(&t.to_string()),
            })?)
        }
    };
    Ok(Parsed {
        value,
        timestamp_ms,
    })
}

/// A bare reading: `21.5`, `-3`, `1e3`, `true`, `false` (as sensors publish them).
fn bare(text: &str) -> Option<f64> {
    match text {
        "true" | "TRUE" | "True" => return Some(1.0),
        "false" | "FALSE" | "False" => return Some(0.0),
        _ => {}
    }
    // Only plain decimal notation: `inf`, `NaN` and hex are not readings, nor is a number
    // too large for f64 (`1e999` parses to infinity).
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        // Some gateways quote numbers ("21.5"): accept the same forms as a bare payload.
        serde_json::Value::String(s) => bare(s.trim()),
        _ => None,
    }
}

fn timestamp(v: &serde_json::Value) -> Option<i64> {
    match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        serde_json::Value::String(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .ok()?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
        }
        _ => None,
    }
}

fn type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn short(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(p: &[u8], ptr: Option<&str>) -> Result<f64, PayloadError> {
        parse(p, ptr, None).map(|x| x.value)
    }

    #[test]
    fn bare_numbers_and_booleans_are_readings() {
        assert_eq!(value(b"21.5", None), Ok(21.5));
        assert_eq!(value(b" -5\n", None), Ok(-5.0));
        assert_eq!(value(b"1e3", None), Ok(1000.0));
        assert_eq!(value(b"true", None), Ok(1.0));
        assert_eq!(value(b"false", None), Ok(0.0));
    }

    #[test]
    fn json_pointer_picks_the_value_out_of_an_object() {
        let p = br#"{"obscuration": 0.05, "status": {"on_battery": true, "temp": "23.5"}}"#;
        assert_eq!(value(p, Some("/obscuration")), Ok(0.05));
        assert_eq!(value(p, Some("/status/on_battery")), Ok(1.0));
        assert_eq!(value(p, Some("/status/temp")), Ok(23.5));
        // RFC 6901 escapes: ~1 is '/', ~0 is '~'.
        assert_eq!(
            value(br#"{"a/b": {"c~d": 7}}"#, Some("/a~1b/c~0d")),
            Ok(7.0)
        );
        assert_eq!(value(br#"[1, 2, 3]"#, Some("/2")), Ok(3.0));
    }

    #[test]
    fn a_json_number_without_pointer_is_a_reading() {
        assert_eq!(value(b"42", Some("")), Ok(42.0));
    }

    #[test]
    fn malformed_payloads_say_why() {
        assert_eq!(value(b"", None), Err(PayloadError::Empty));
        assert_eq!(value(&[0xff, 0xfe], None), Err(PayloadError::NotUtf8));
        assert!(matches!(
            value(b"hot", None),
            Err(PayloadError::Malformed(_))
        ));
        assert!(matches!(
            value(b"{\"obscuration\": ", Some("/obscuration")),
            Err(PayloadError::Malformed(_))
        ));
        assert_eq!(
            value(b"NaN", None).unwrap_err().fault(),
            FaultKind::BadPayload
        );
        assert_eq!(
            value(b"inf", None).unwrap_err().fault(),
            FaultKind::BadPayload
        );
    }

    #[test]
    fn a_number_too_large_for_f64_is_a_fault_not_infinity() {
        // Found writing the fuzz target's invariant (tests/fuzz: a reading is finite).
        for p in [&b"1e999"[..], b"-1e400"] {
            assert_eq!(value(p, None).unwrap_err().fault(), FaultKind::BadPayload);
        }
        let p = br#"{"t": 1e999}"#;
        assert_eq!(
            value(p, Some("/t")).unwrap_err().fault(),
            FaultKind::BadPayload
        );
        let p = br#"{"t": "1e999"}"#;
        assert_eq!(
            value(p, Some("/t")).unwrap_err().fault(),
            FaultKind::NotNumeric
        );
        assert_eq!(value(b"1e308", None), Ok(1e308));
    }

    #[test]
    fn a_missing_or_non_numeric_field_faults_with_its_own_reason() {
        let p = br#"{"obscuration": null, "name": "asd1", "nested": {}}"#;
        let e = value(p, Some("/nope")).unwrap_err();
        assert_eq!(e, PayloadError::MissingField("/nope".into()));
        assert_eq!(e.fault(), FaultKind::MissingField);
        let e = value(p, Some("/obscuration")).unwrap_err();
        assert_eq!(e.fault(), FaultKind::NotNumeric);
        assert_eq!(
            e.to_string(),
            "value at `/obscuration` is null, not a number or true/false"
        );
        assert_eq!(
            value(p, Some("/nested")).unwrap_err().fault(),
            FaultKind::NotNumeric
        );
        // An object with no pointer is not a reading.
        assert_eq!(
            value(br#"{"v": 1}"#, None).unwrap_err().fault(),
            FaultKind::NotNumeric
        );
    }

    #[test]
    fn oversized_payloads_are_refused_unread() {
        let big = vec![b'1'; MAX_PAYLOAD + 1];
        let e = value(&big, None).unwrap_err();
        assert_eq!(e, PayloadError::TooLarge(MAX_PAYLOAD + 1));
        assert_eq!(e.fault(), FaultKind::PayloadTooLarge);
        assert!(value(
            &vec![b' '; MAX_PAYLOAD - 2]
                .into_iter()
                .chain(*b"12")
                .collect::<Vec<_>>(),
            None
        )
        .is_ok());
    }

    #[test]
    fn timestamps_are_rfc3339_or_epoch_milliseconds() {
        let p = br#"{"v": 1.5, "ts": "2026-11-25T10:31:02.417Z", "ms": 1764066662417}"#;
        let a = parse(p, Some("/v"), Some("/ts")).unwrap();
        assert_eq!(a.value, 1.5);
        assert_eq!(a.timestamp_ms, Some(1_795_602_662_417));
        let b = parse(p, Some("/v"), Some("/ms")).unwrap();
        assert_eq!(b.timestamp_ms, Some(1_764_066_662_417));
        let e = parse(br#"{"v": 1, "ts": "yesterday"}"#, Some("/v"), Some("/ts")).unwrap_err();
        assert!(matches!(e, PayloadError::BadTimestamp { .. }), "{e:?}");
        let e = parse(br#"{"v": 1}"#, Some("/v"), Some("/ts")).unwrap_err();
        assert_eq!(e.fault(), FaultKind::MissingField);
    }
}
