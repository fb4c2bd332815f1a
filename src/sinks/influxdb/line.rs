//! InfluxDB line protocol, formatted by hand: pure functions, no I/O.
//!
//! ```text
//! firebreak_sensor,agent=pangyo-b3,zone=b3-battery-room,sensor=b3.temp.row1,kind=temperature value=23.5,state=0i 1795689062417
//! firebreak_zone,agent=pangyo-b3,zone=b3-battery-room level=3i 1795689062417
//! firebreak_event,agent=pangyo-b3,event=zone_level count=1i,detail="{\"ts\":...}" 1795689062417
//! ```
//!
//! Timestamps are milliseconds since the Unix epoch (written with `precision=ms`).
//! Escaping follows the line protocol reference: in measurements commas and spaces; in tag
//! keys, tag values and field keys commas, equals signs and spaces; in string field values
//! double quotes and backslashes. Line protocol cannot carry a newline in a tag or a string,
//! so carriage returns and newlines become spaces (sensor ids never have them and event
//! JSON escapes its own).

use super::Telemetry;
use crate::detect::{SensorState, ZoneLevel};
use std::fmt::Write as _;

pub const SENSOR: &str = "firebreak_sensor";
pub const ZONE: &str = "firebreak_zone";
pub const EVENT: &str = "firebreak_event";

/// The `state` field of `firebreak_sensor`: ok 0, warn 1, alarm 2, critical 3, stale 4,
/// fault 5. Integers, because string fields cannot be graphed or alerted on downstream.
pub fn state_code(s: SensorState) -> u8 {
    match s {
        SensorState::Ok => 0,
        SensorState::Warn => 1,
        SensorState::Alarm => 2,
        SensorState::Critical => 3,
        SensorState::Stale => 4,
        SensorState::Fault => 5,
    }
}

/// The `level` field of `firebreak_zone`: normal 0, warning 1, alarm 2, critical 3 (the
/// same codes as the Prometheus gauge `firebreak_zone_level`).
pub fn level_code(l: ZoneLevel) -> u8 {
    match l {
        ZoneLevel::Normal => 0,
        ZoneLevel::Warning => 1,
        ZoneLevel::Alarm => 2,
        ZoneLevel::Critical => 3,
    }
}

fn escape(out: &mut String, s: &str, special: &[char]) {
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            c if special.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// A measurement name: commas and spaces escaped.
pub fn escape_measurement(out: &mut String, s: &str) {
    escape(out, s, &[',', ' ']);
}

/// A tag key, tag value or field key: commas, equals signs and spaces escaped.
pub fn escape_key(out: &mut String, s: &str) {
    escape(out, s, &[',', '=', ' ']);
}

/// The inside of a string field value (without the surrounding quotes): `"` and `\`
/// escaped.
pub fn escape_string(out: &mut String, s: &str) {
    escape(out, s, &['"', '\\']);
}

/// Appends `,key=value` unless the value is empty (line protocol has no empty tag values).
fn push_tag(out: &mut String, key: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    out.push(',');
    escape_key(out, key);
    out.push('=');
    escape_key(out, value);
}

/// The names the compact [`Telemetry`] records refer to by index, with each series' key
/// (measurement and tags, escaped) formatted once, so formatting a sample only appends
/// numbers.
#[derive(Debug, Clone)]
pub struct Series {
    sensors: Vec<String>,
    zones: Vec<String>,
    event: String,
}

/// A sensor as the sink names it.
#[derive(Debug, Clone)]
pub struct SensorName {
    pub id: String,
    pub zone: String,
    pub kind: String,
}

impl Series {
    pub fn new(agent: &str, sensors: &[SensorName], zones: &[String]) -> Series {
        let sensors = sensors
            .iter()
            .map(|s| {
                let mut k = String::new();
                escape_measurement(&mut k, SENSOR);
                push_tag(&mut k, "agent", agent);
                push_tag(&mut k, "zone", &s.zone);
                push_tag(&mut k, "sensor", &s.id);
                push_tag(&mut k, "kind", &s.kind);
                k.push(' ');
                k
            })
            .collect();
        let zones = zones
            .iter()
            .map(|z| {
                let mut k = String::new();
                escape_measurement(&mut k, ZONE);
                push_tag(&mut k, "agent", agent);
                push_tag(&mut k, "zone", z);
                k.push(' ');
                k
            })
            .collect();
        let mut event = String::new();
        escape_measurement(&mut event, EVENT);
        push_tag(&mut event, "agent", agent);
        Series {
            sensors,
            zones,
            event,
        }
    }

    /// Appends one line (with its trailing newline) for `t`. Returns false, appending
    /// nothing, for an index the config does not have.
    pub fn write(&self, out: &mut String, t: &Telemetry) -> bool {
        match *t {
            Telemetry::Sensor {
                sensor,
                ts_ms,
                value,
                state,
            } => {
                let Some(key) = self.sensors.get(sensor as usize) else {
                    return false;
                };
                out.push_str(key);
                // Line protocol has no NaN or infinity: such a value is left out.
                if let Some(v) = value.filter(|v| v.is_finite()) {
                    // `Display` for f64 is the shortest text that parses back to the same
                    // value, never in exponent form: what was measured is what is stored.
                    let _ = write!(out, "value={v},");
                }
                let _ = writeln!(out, "state={}i {ts_ms}", state_code(state));
            }
            Telemetry::Zone { zone, ts_ms, level } => {
                let Some(key) = self.zones.get(zone as usize) else {
                    return false;
                };
                out.push_str(key);
                let _ = writeln!(out, "level={}i {ts_ms}", level_code(level));
            }
            Telemetry::Event {
                name,
                ts_ms,
                ref detail,
            } => {
                out.push_str(&self.event);
                push_tag(out, "event", name);
                // `count` makes events countable (and visible in stores that keep only
                // numeric fields, such as VictoriaMetrics); `detail` is the event log line.
                out.push_str(" count=1i,detail=\"");
                escape_string(out, detail);
                let _ = writeln!(out, "\" {ts_ms}");
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Series {
        Series::new(
            "pangyo-b3",
            &[
                SensorName {
                    id: "b3.temp.row1".into(),
                    zone: "b3-battery-room".into(),
                    kind: "temperature".into(),
                },
                SensorName {
                    id: "odd id,with=all the\\things".into(),
                    zone: "zone a".into(),
                    kind: "smoke".into(),
                },
            ],
            &["b3-battery-room".into()],
        )
    }

    fn line(t: Telemetry) -> String {
        let mut s = String::new();
        assert!(series().write(&mut s, &t));
        s
    }

    #[test]
    fn a_sensor_sample_is_one_line_with_tags_value_state_and_ms_timestamp() {
        let l = line(Telemetry::Sensor {
            sensor: 0,
            ts_ms: 1_795_689_062_417,
            value: Some(23.5),
            state: SensorState::Ok,
        });
        assert_eq!(
            l,
            "firebreak_sensor,agent=pangyo-b3,zone=b3-battery-room,sensor=b3.temp.row1,kind=temperature value=23.5,state=0i 1795689062417\n"
        );
    }

    #[test]
    fn a_sample_without_a_value_carries_only_its_state() {
        let l = line(Telemetry::Sensor {
            sensor: 0,
            ts_ms: 5,
            value: None,
            state: SensorState::Stale,
        });
        assert!(l.ends_with(" state=4i 5\n"), "{l}");
        let nan = line(Telemetry::Sensor {
            sensor: 0,
            ts_ms: 5,
            value: Some(f64::NAN),
            state: SensorState::Fault,
        });
        assert!(nan.ends_with(" state=5i 5\n"), "{nan}");
    }

    #[test]
    fn float_values_round_trip_exactly_and_never_use_exponents() {
        for v in [0.1, -40.0, 1e-7, 123456789.123, 1e21, 0.0078125 * 3.0] {
            let l = line(Telemetry::Sensor {
                sensor: 0,
                ts_ms: 1,
                value: Some(v),
                state: SensorState::Ok,
            });
            let text = l.split("value=").nth(1).unwrap().split(',').next().unwrap();
            assert!(!text.contains('e'), "{text}");
            assert_eq!(text.parse::<f64>().unwrap(), v);
        }
    }

    #[test]
    fn spaces_commas_and_equals_in_tags_are_escaped_and_backslashes_kept() {
        let l = line(Telemetry::Sensor {
            sensor: 1,
            ts_ms: 7,
            value: Some(1.0),
            state: SensorState::Alarm,
        });
        assert_eq!(
            l,
            "firebreak_sensor,agent=pangyo-b3,zone=zone\\ a,sensor=odd\\ id\\,with\\=all\\ the\\things,kind=smoke value=1,state=2i 7\n"
        );
    }

    #[test]
    fn a_zone_level_is_an_integer_code() {
        let l = line(Telemetry::Zone {
            zone: 0,
            ts_ms: 9,
            level: ZoneLevel::Critical,
        });
        assert_eq!(
            l,
            "firebreak_zone,agent=pangyo-b3,zone=b3-battery-room level=3i 9\n"
        );
    }

    #[test]
    fn event_detail_escapes_quotes_and_backslashes_and_never_breaks_the_line() {
        let l = line(Telemetry::Event {
            name: "zone_level",
            ts_ms: 11,
            detail: "{\"a\":\"C:\\p\"}\nx".into(),
        });
        assert_eq!(
            l,
            r#"firebreak_event,agent=pangyo-b3,event=zone_level count=1i,detail="{\"a\":\"C:\\p\"} x" 11"#
                .to_string()
                + "\n"
        );
    }

    #[test]
    fn an_unknown_index_writes_nothing() {
        let mut s = String::new();
        assert!(!series().write(
            &mut s,
            &Telemetry::Zone {
                zone: 3,
                ts_ms: 1,
                level: ZoneLevel::Normal
            }
        ));
        assert!(s.is_empty());
    }

    #[test]
    fn codes_are_the_documented_ones() {
        let states = [
            SensorState::Ok,
            SensorState::Warn,
            SensorState::Alarm,
            SensorState::Critical,
            SensorState::Stale,
            SensorState::Fault,
        ];
        let codes: Vec<u8> = states.into_iter().map(state_code).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5]);
        let levels = [
            ZoneLevel::Normal,
            ZoneLevel::Warning,
            ZoneLevel::Alarm,
            ZoneLevel::Critical,
        ];
        let codes: Vec<u8> = levels.into_iter().map(level_code).collect();
        assert_eq!(codes, [0, 1, 2, 3]);
    }
}
