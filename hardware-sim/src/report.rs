//! Human-readable views of a scenario: the `check` summary and the register map.

use std::fmt::Write as _;

use crate::registers::DataType;
use crate::scenario::{format_duration, Scenario};
use crate::timeline::Presence;

/// How `registers` prints the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MapFormat {
    /// Aligned columns for a terminal.
    #[default]
    Text,
    /// A Markdown table, as pasted into the README.
    Markdown,
}

const HEADER: [&str; 9] = [
    "device",
    "unit",
    "table",
    "address",
    "type",
    "word_order",
    "scale",
    "offset",
    "signal",
];

fn rows(scenario: &Scenario) -> Vec<[String; 9]> {
    let mut rows = Vec::new();
    for d in &scenario.devices {
        let mut regs: Vec<_> = d.registers.iter().collect();
        regs.sort_by_key(|r| (r.table, r.address));
        for r in regs {
            let width = r.encoding.width();
            let address = if width == 1 {
                r.address.to_string()
            } else {
                format!(
                    "{}-{}",
                    r.address,
                    u32::from(r.address) + u32::from(width) - 1
                )
            };
            let order = match r.encoding.data_type {
                DataType::U16 | DataType::I16 => "-".to_owned(),
                _ => r.encoding.word_order.to_string(),
            };
            rows.push([
                d.name.clone(),
                d.unit.to_string(),
                r.table.to_string(),
                address,
                if r.table.is_bits() {
                    "bit".to_owned()
                } else {
                    r.encoding.data_type.to_string()
                },
                order,
                r.encoding.scale.to_string(),
                r.encoding.offset.to_string(),
                r.signal.clone(),
            ]);
        }
    }
    rows
}

/// The register map: one row per signal, by device, table, address.
pub fn register_map(scenario: &Scenario, format: MapFormat) -> String {
    let rows = rows(scenario);
    let mut out = String::new();
    match format {
        MapFormat::Markdown => {
            let _ = writeln!(out, "| {} |", HEADER.join(" | "));
            let _ = writeln!(out, "|{}", "---|".repeat(HEADER.len()));
            for row in &rows {
                let _ = writeln!(out, "| {} |", row.join(" | "));
            }
        }
        MapFormat::Text => {
            let mut widths = HEADER.map(str::len);
            for row in &rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.len());
                }
            }
            let header = HEADER.map(str::to_uppercase);
            for row in std::iter::once(&header).chain(&rows) {
                let line: Vec<String> = row
                    .iter()
                    .zip(widths)
                    .map(|(cell, w)| format!("{cell:<w$}"))
                    .collect();
                let _ = writeln!(out, "{}", line.join("  ").trim_end());
            }
        }
    }
    out
}

/// What `check` prints for a valid scenario.
pub fn summary(scenario: &Scenario) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scenario {}: ok", scenario.name);
    if !scenario.description.is_empty() {
        let _ = writeln!(out, "  {}", scenario.description);
    }
    let _ = writeln!(
        out,
        "duration {}, {} device(s), {} signal(s)",
        format_duration(scenario.duration),
        scenario.devices.len(),
        scenario.signal_count()
    );
    if scenario.is_closed_loop() {
        let coils: Vec<String> = scenario
            .devices
            .iter()
            .flat_map(|d| {
                d.registers
                    .iter()
                    .filter(|r| {
                        r.table == crate::registers::Table::Coil
                            && r.room == Some(crate::room::Role::Charging)
                    })
                    .map(move |r| format!("coil {} of {}", r.address, d.name))
            })
            .collect();
        let _ = writeln!(
            out,
            "closed loop: writing {} stops (0) and resumes (1) the charge; the UPS units in the \
             room are lost only if the run comes to a runaway",
            coils.join(", ")
        );
    }
    for d in &scenario.devices {
        if let Some(m) = &d.mqtt {
            let fields: Vec<&str> = m.fields.iter().map(|f| f.signal.as_str()).collect();
            let _ = write!(
                out,
                "  {} (mqtt {}, every {}): {}",
                d.name,
                m.topic,
                format_duration(m.every),
                fields.join(", ")
            );
        } else {
            let signals: Vec<&str> = d.registers.iter().map(|r| r.signal.as_str()).collect();
            let at = match &d.serial {
                Some((path, baud)) => format!("{} at {baud} baud", path.display()),
                None => d.listen.to_string(),
            };
            let _ = write!(
                out,
                "  {} ({} {at}, unit {}): {}",
                d.name,
                d.protocol.as_str(),
                d.unit,
                signals.join(", ")
            );
        }
        if !d.events.events().is_empty() {
            let events: Vec<String> = d
                .events
                .events()
                .iter()
                .map(|e| {
                    let what = match e.presence {
                        Presence::Present => "back",
                        Presence::Gone(_) => "gone",
                    };
                    format!("{what} at {}", format_duration(e.at))
                })
                .collect();
            let _ = write!(out, "; {}", events.join(", "));
        }
        out.push('\n');
    }
    out
}

/// What `scenarios` prints: one row per `*.toml` file of `dir` (sorted by file name) with
/// its ground truth; a file that does not validate is listed with its first problem.
pub fn library(dir: &std::path::Path) -> std::io::Result<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:<9} {:<9} {:>8} {:>8}  description",
        "file", "kind", "failover", "cut_at", "duration"
    );
    for f in files {
        let file = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match Scenario::from_file(&f) {
            Ok(s) => {
                let (kind, failover, cut) = match &s.truth {
                    Some(t) => (
                        t.kind.as_str(),
                        if t.failover_expected {
                            "expected"
                        } else {
                            "forbidden"
                        },
                        t.power_cut_at.map_or("-".to_string(), format_duration),
                    ),
                    None => ("-", "-", "-".to_string()),
                };
                let _ = writeln!(
                    out,
                    "{file:<28} {kind:<9} {failover:<9} {cut:>8} {:>8}  {}",
                    format_duration(s.duration),
                    s.description
                );
            }
            Err(e) => {
                let first = e.lines().into_iter().next().unwrap_or_default();
                let _ = writeln!(out, "{file:<28} INVALID: {first}");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[scenario]
name = "x"
duration = "2m"
[[devices]]
name = "ups"
[[devices.registers]]
signal = "runtime"
table = "holding"
address = 128
type = "u32"
timeline = [{ at = "0s", set = 900 }]
[[devices.registers]]
signal = "status"
table = "holding"
address = 0
type = "u32"
word_order = "low_first"
timeline = [{ at = "0s", set = 2 }]
[[devices.registers]]
signal = "battery_temp"
table = "holding"
address = 135
type = "i16"
scale = 0.0078125
timeline = [{ at = "0s", set = 25 }]
[[devices.events]]
at = "1m"
gone = true
"#;

    #[test]
    fn register_map_lists_signals_by_table_and_address() {
        let s = Scenario::from_toml_str(TEXT).unwrap();
        let map = register_map(&s, MapFormat::Text);
        let lines: Vec<&str> = map.lines().collect();
        assert!(lines[0].starts_with("DEVICE  UNIT  TABLE"));
        assert!(
            lines[1].contains("0-1")
                && lines[1].contains("low_first")
                && lines[1].ends_with("status")
        );
        assert!(lines[2].contains("128-129") && lines[2].contains("high_first"));
        assert!(lines[3].contains("0.0078125") && lines[3].ends_with("battery_temp"));
        let md = register_map(&s, MapFormat::Markdown);
        assert!(md.starts_with("| device | unit | table |"));
        assert!(md.contains("| ups | 1 | holding | 135 | i16 | - | 0.0078125 | 0 | battery_temp |"));
    }

    #[test]
    fn summary_names_devices_signals_and_duration() {
        let s = Scenario::from_toml_str(TEXT).unwrap();
        let text = summary(&s);
        assert!(text.contains("duration 2m, 1 device(s), 3 signal(s)"));
        assert!(text.contains(
            "ups (modbus-tcp 127.0.0.1:0, unit 1): runtime, status, battery_temp; gone at 1m"
        ));
    }
}
