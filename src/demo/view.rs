//! What the demo shows, as a pure model: event lines and status snapshots go in (each with
//! the scenario time they belong to), a text frame comes out. The same model feeds the
//! report's picture (the sensors' series and the decision marks).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// A moment worth a vertical line in the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub sim_s: f64,
    pub label: String,
    pub kind: MarkKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    /// A zone's new level (normal, warning, alarm, critical).
    Level(Level),
    RunbookStarted,
    Step {
        ok: bool,
    },
    Safe,
    NotSafe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Normal,
    Warning,
    Alarm,
    Critical,
}

impl Level {
    pub fn parse(s: &str) -> Level {
        match s {
            "warning" => Level::Warning,
            "alarm" => Level::Alarm,
            "critical" => Level::Critical,
            _ => Level::Normal,
        }
    }

    /// The level as a word and a symbol: never colour alone.
    pub fn badge(self) -> &'static str {
        match self {
            Level::Normal => "· NORMAL",
            Level::Warning => "! WARNING",
            Level::Alarm => "▲ ALARM",
            Level::Critical => "■ CRITICAL",
        }
    }
}

/// How the run ended for the zone that failed over.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub zone: String,
    pub safe: bool,
    pub sim_s: f64,
    /// `not_safe_to_cut_power` reasons, or the steps only rehearsed for a safe verdict.
    pub notes: Vec<String>,
}

/// One sensor as the agent last reported it, with what it has seen so far.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub kind: String,
    pub zone: String,
    pub state: String,
    pub value: Option<f64>,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct StepView {
    pub name: String,
    pub status: String,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct ZoneView {
    pub id: String,
    pub level: Level,
    pub since_s: Option<f64>,
    pub runbook: String,
    pub steps: Vec<StepView>,
    pub evidence: Vec<String>,
}

/// The whole demo state.
#[derive(Debug, Clone)]
pub struct View {
    pub scenario: String,
    pub description: String,
    pub speed: f64,
    pub duration_s: f64,
    pub power_cut_s: Option<f64>,
    pub sim_s: f64,
    pub zones: Vec<ZoneView>,
    pub series: BTreeMap<String, Series>,
    pub marks: Vec<Mark>,
    pub log: Vec<String>,
    pub outcome: Option<Outcome>,
    /// Steps of the demo's runbooks that only rehearse, with why.
    pub rehearsed: Vec<String>,
    /// Whether the agent's status could be read on the last try.
    pub status_ok: bool,
}

impl View {
    pub fn new(
        scenario: &str,
        description: &str,
        speed: f64,
        duration_s: f64,
        power_cut_s: Option<f64>,
    ) -> View {
        View {
            scenario: scenario.to_string(),
            description: description.to_string(),
            speed,
            duration_s,
            power_cut_s,
            sim_s: 0.0,
            zones: Vec::new(),
            series: BTreeMap::new(),
            marks: Vec::new(),
            log: Vec::new(),
            outcome: None,
            rehearsed: Vec::new(),
            status_ok: true,
        }
    }

    fn zone_mut(&mut self, id: &str) -> &mut ZoneView {
        if let Some(i) = self.zones.iter().position(|z| z.id == id) {
            return &mut self.zones[i];
        }
        self.zones.push(ZoneView {
            id: id.to_string(),
            level: Level::Normal,
            since_s: None,
            runbook: String::new(),
            steps: Vec::new(),
            evidence: Vec::new(),
        });
        self.zones.last_mut().expect("just pushed")
    }

    /// Takes one event log line (parsed) that happened at scenario time `sim_s`; returns
    /// the line to print for it, if it is one a person follows.
    pub fn apply_event(&mut self, ev: &Value, sim_s: f64) -> Option<String> {
        let s = |k: &str| ev[k].as_str().unwrap_or("").to_string();
        let at = clock(sim_s);
        let line = match ev["event"].as_str().unwrap_or("") {
            "sensor_state" => {
                let sensor = s("sensor");
                let entry = self.series.entry(sensor.clone()).or_default();
                entry.state = s("to");
                Some(format!(
                    "{at}  sensor {sensor} {} -> {} ({}{})",
                    s("from"),
                    s("to"),
                    ev["value"]
                        .as_f64()
                        .map(|v| format!("{}, ", number(v)))
                        .unwrap_or_default(),
                    s("reason")
                ))
            }
            "zone_level" => {
                let level = Level::parse(&s("to"));
                let evidence: Vec<String> = ev["evidence"]
                    .as_array()
                    .map(|list| list.iter().map(evidence_line).collect())
                    .unwrap_or_default();
                let zone = self.zone_mut(&s("zone"));
                zone.level = level;
                zone.since_s = Some(sim_s);
                if level > Level::Normal {
                    zone.evidence = evidence.clone();
                }
                self.marks.push(Mark {
                    sim_s,
                    label: s("to"),
                    kind: MarkKind::Level(level),
                });
                let mut line = format!("{at}  ZONE {} is now {}", s("zone"), level.badge());
                if level > Level::Normal && !evidence.is_empty() {
                    let _ = write!(line, ": {}", evidence.join("; "));
                }
                Some(line)
            }
            "runbook_started" => {
                let zone = self.zone_mut(&s("zone"));
                zone.runbook = s("runbook");
                self.marks.push(Mark {
                    sim_s,
                    label: format!("runbook {}", s("runbook")),
                    kind: MarkKind::RunbookStarted,
                });
                Some(format!(
                    "{at}  RUNBOOK {} started ({}, incident {}{})",
                    s("runbook"),
                    s("cause"),
                    s("incident"),
                    match ev["stage"].as_str() {
                        Some(stage) => format!(", stage {stage}"),
                        None => String::new(),
                    }
                ))
            }
            "step_finished" => {
                let ok = ev["ok"].as_bool() == Some(true);
                self.marks.push(Mark {
                    sim_s,
                    label: s("step"),
                    kind: MarkKind::Step { ok },
                });
                let detail = ev["detail"].as_str().or(ev["error"].as_str()).unwrap_or("");
                Some(format!(
                    "{at}    step `{}`: {} {detail}",
                    s("step"),
                    if ok { "✓ ok" } else { "✗ FAILED" }
                ))
            }
            "step_skipped" => Some(format!(
                "{at}    step `{}` skipped: {}",
                s("step"),
                s("reason")
            )),
            "runbook_finished" => Some(format!(
                "{at}  RUNBOOK {} finished ({}) in {:.1} s of wall time",
                s("runbook"),
                if ev["ok"].as_bool() == Some(true) {
                    "every step ok"
                } else {
                    "with failures"
                },
                ev["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0
            )),
            "safe_to_cut_power" => {
                let notes: Vec<String> = ev["dry_run_steps"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(|n| format!("`{n}` was only rehearsed (dry run)"))
                            .collect()
                    })
                    .unwrap_or_default();
                self.outcome = Some(Outcome {
                    zone: s("zone"),
                    safe: true,
                    sim_s,
                    notes,
                });
                self.marks.push(Mark {
                    sim_s,
                    label: "SAFE TO CUT POWER".into(),
                    kind: MarkKind::Safe,
                });
                Some(format!("{at}  ✓ SAFE TO CUT POWER in {}", s("zone")))
            }
            "not_safe_to_cut_power" => {
                let notes: Vec<String> = ev["reasons"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                self.outcome = Some(Outcome {
                    zone: s("zone"),
                    safe: false,
                    sim_s,
                    notes: notes.clone(),
                });
                self.marks.push(Mark {
                    sim_s,
                    label: "NOT safe".into(),
                    kind: MarkKind::NotSafe,
                });
                Some(format!(
                    "{at}  ✗ NOT SAFE TO CUT POWER in {}: {}",
                    s("zone"),
                    notes.join("; ")
                ))
            }
            "agent_started" => Some(format!("{at}  agent started")),
            _ => None,
        };
        if let Some(line) = &line {
            self.log.push(line.clone());
        }
        line
    }

    /// Takes one `/api/v1/status` document read at scenario time `sim_s`.
    pub fn apply_status(&mut self, status: &Value, sim_s: f64) {
        self.status_ok = true;
        let empty = Vec::new();
        for z in status["zones"].as_array().unwrap_or(&empty) {
            let id = z["id"].as_str().unwrap_or("").to_string();
            let zone = self.zone_mut(&id);
            zone.level = Level::parse(z["level"].as_str().unwrap_or("normal"));
            if let Some(rb) = z["runbook"].as_str() {
                zone.runbook = rb.to_string();
            }
            if let Some(steps) = z["steps"].as_array() {
                zone.steps = steps
                    .iter()
                    .map(|st| StepView {
                        name: st["name"].as_str().unwrap_or("").to_string(),
                        status: st["status"].as_str().unwrap_or("").to_string(),
                        detail: st["detail"]
                            .as_str()
                            .or(st["error"].as_str())
                            .unwrap_or("")
                            .to_string(),
                    })
                    .collect();
            }
            for sensor in z["sensors"].as_array().unwrap_or(&empty) {
                let sid = sensor["id"].as_str().unwrap_or("").to_string();
                let entry = self.series.entry(sid).or_default();
                entry.kind = sensor["kind"].as_str().unwrap_or("").to_string();
                entry.zone = id.clone();
                entry.state = sensor["state"].as_str().unwrap_or("").to_string();
                entry.value = sensor["value"].as_f64().filter(|v| v.is_finite());
                if let Some(v) = entry.value {
                    if entry.state != "stale" {
                        entry.points.push((sim_s, v));
                    }
                }
            }
        }
    }

    /// The frame of the live terminal view, `width` columns wide.
    pub fn render(&self, width: usize) -> String {
        let width = width.clamp(60, 200);
        let mut out = String::new();
        let cut = match self.power_cut_s {
            Some(c) => format!("   power cut at {}", clock(c)),
            None => String::new(),
        };
        let head = format!(
            "FIREBREAK DEMO · {} · {}× speed · scenario time {} of {}{cut}",
            self.scenario,
            number(self.speed),
            clock(self.sim_s),
            clock(self.duration_s)
        );
        let _ = writeln!(out, "{}", truncate(&head, width));
        let _ = writeln!(out, "{}", truncate(&self.description, width));
        if !self.status_ok {
            let _ = writeln!(out, "(the agent's status could not be read just now)");
        }
        for zone in &self.zones {
            let _ = writeln!(out, "{}", "─".repeat(width));
            let since = zone
                .since_s
                .map(|s| format!(" since {}", clock(s)))
                .unwrap_or_default();
            let _ = writeln!(out, "ZONE {}   {}{since}", zone.id, zone.level.badge());
            let mut sensors: Vec<(&String, &Series)> = self
                .series
                .iter()
                .filter(|(_, s)| s.zone == zone.id)
                .collect();
            sensors.sort_by_key(|(id, s)| (std::cmp::Reverse(state_rank(&s.state)), (*id).clone()));
            let spark = width.saturating_sub(60).clamp(10, 40);
            for (id, s) in sensors.iter().take(12) {
                let values: Vec<f64> = s.points.iter().map(|p| p.1).collect();
                let tail = &values[values.len().saturating_sub(spark)..];
                let _ = writeln!(
                    out,
                    "  {:<24} {:>12}  {:<9} {}",
                    truncate(id, 24),
                    s.value
                        .map(|v| with_unit(&s.kind, v))
                        .unwrap_or_else(|| "—".into()),
                    state_badge(&s.state),
                    sparkline(tail)
                );
            }
            if zone.level > Level::Normal && !zone.evidence.is_empty() {
                let _ = writeln!(out, "  evidence:");
                for e in &zone.evidence {
                    let _ = writeln!(out, "    {}", truncate(e, width - 4));
                }
            }
            if !zone.steps.is_empty() {
                let _ = writeln!(out, "  runbook {}:", zone.runbook);
                for st in &zone.steps {
                    let mark = match st.status.as_str() {
                        "succeeded" => "✓",
                        "failed" => "✗",
                        "started" => "▶",
                        "skipped" => "↷",
                        _ => "·",
                    };
                    let rehearsal = self
                        .rehearsed
                        .iter()
                        .any(|r| r.starts_with(&format!("`{}`", st.name)));
                    let status = match st.status.as_str() {
                        "succeeded" if rehearsal => "rehearsed only (dry run)",
                        other => other,
                    };
                    let mut line = format!("    {mark} {:<40} {status}", truncate(&st.name, 40));
                    if !st.detail.is_empty() {
                        let _ = write!(line, ": {}", st.detail);
                    }
                    let _ = writeln!(out, "{}", truncate(&line, width));
                }
            }
        }
        let _ = writeln!(out, "{}", "─".repeat(width));
        if let Some(o) = &self.outcome {
            for l in wrap(&self.verdict(o), width) {
                let _ = writeln!(out, "{l}");
            }
        }
        if !self.rehearsed.is_empty() {
            let _ = writeln!(
                out,
                "Rehearsed only (dry run), the demo has none of these systems:"
            );
            for r in &self.rehearsed {
                let _ = writeln!(out, "  - {}", truncate(r, width - 4));
            }
        }
        let _ = writeln!(out, "Recent events:");
        for line in self.log.iter().rev().take(8).rev() {
            let _ = writeln!(out, "  {}", truncate(line, width - 2));
        }
        out
    }

    /// The closing sentence: safe or not, and the lead before the scenario's power cut.
    pub fn verdict(&self, o: &Outcome) -> String {
        let lead = match self.power_cut_s {
            Some(cut) if cut >= o.sim_s => format!(
                ", {} before the scenario cuts the power (at {})",
                span(cut - o.sim_s),
                clock(cut)
            ),
            Some(cut) => format!(
                ", {} AFTER the scenario cut the power (at {})",
                span(o.sim_s - cut),
                clock(cut)
            ),
            None => String::new(),
        };
        if o.safe {
            format!(
                "*** SAFE TO CUT POWER in {} at {}{lead} ***",
                o.zone,
                clock(o.sim_s)
            )
        } else {
            format!(
                "*** NOT SAFE TO CUT POWER in {} at {}: {} ***",
                o.zone,
                clock(o.sim_s),
                o.notes.join("; ")
            )
        }
    }
}

fn evidence_line(e: &Value) -> String {
    format!(
        "{} {} {} ({})",
        e["sensor"].as_str().unwrap_or("?"),
        e["state"].as_str().unwrap_or("?"),
        e["value"]
            .as_f64()
            .map(number)
            .unwrap_or_else(|| "—".into()),
        e["reason"].as_str().unwrap_or("")
    )
}

fn state_rank(state: &str) -> u8 {
    match state {
        "critical" => 5,
        "alarm" => 4,
        "warn" => 3,
        "stale" | "fault" => 2,
        "ok" => 1,
        _ => 0,
    }
}

fn state_badge(state: &str) -> String {
    match state {
        "critical" => "■ CRIT".into(),
        "alarm" => "▲ ALARM".into(),
        "warn" => "! warn".into(),
        "stale" => "? stale".into(),
        "fault" => "✗ fault".into(),
        "ok" => "ok".into(),
        other => other.to_string(),
    }
}

/// A value with the unit its kind is measured in.
pub fn with_unit(kind: &str, v: f64) -> String {
    match kind {
        "temperature" => format!("{v:.1} °C"),
        "offgas" => format!("{v:.0} ppm"),
        "smoke" => format!("{v:.3} %/m"),
        "runtime" => format!("{v:.0} s"),
        "charge" | "humidity" => format!("{v:.0} %"),
        "voltage" => format!("{v:.0} V"),
        "on_battery" => if v >= 0.5 { "ON BATT" } else { "mains" }.to_string(),
        _ => number(v),
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e9 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// `mm:ss` of scenario time.
pub fn clock(sim_s: f64) -> String {
    let s = sim_s.max(0.0).round() as u64;
    format!("{:02}:{:02}", s / 60, s % 60)
}

/// A length of scenario time in words: `9 min 12 s`.
pub fn span(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match (s / 60, s % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

/// Unicode block sparkline of `values`, scaled between their own minimum and maximum.
pub fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (Some(lo), Some(hi)) = (
        finite.iter().copied().reduce(f64::min),
        finite.iter().copied().reduce(f64::max),
    ) else {
        return String::new();
    };
    finite
        .iter()
        .map(|v| {
            if hi - lo < 1e-9 {
                BARS[0]
            } else {
                BARS[(((v - lo) / (hi - lo)) * 7.0).round() as usize]
            }
        })
        .collect()
}

/// `s` in lines of at most `max` characters, broken at spaces (a longer word is cut).
fn wrap(s: &str, max: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in s.split(' ') {
        let len = cur.chars().count();
        if len > 0 && len + 1 + word.chars().count() > max {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    lines.push(cur);
    lines.into_iter().map(|l| truncate(&l, max)).collect()
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view() -> View {
        View::new("pangyo-replay", "a fire", 20.0, 1200.0, Some(1080.0))
    }

    #[test]
    fn a_sparkline_spans_its_own_range_and_ignores_nan() {
        assert_eq!(sparkline(&[1.0, 2.0, f64::NAN, 3.0]), "▁▅█");
        assert_eq!(sparkline(&[5.0, 5.0]), "▁▁");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn an_escalation_shows_the_level_in_words_and_its_evidence() {
        let mut v = view();
        let line = v
            .apply_event(
                &json!({"event": "zone_level", "zone": "b3", "from": "normal", "to": "alarm",
                        "evidence": [{"sensor": "b3.offgas.1", "state": "alarm", "value": 24.0,
                                      "reason": "above:alarm_above"}]}),
                65.0,
            )
            .unwrap();
        assert!(
            line.starts_with("01:05  ZONE b3 is now ▲ ALARM: b3.offgas.1 alarm 24"),
            "{line}"
        );
        let frame = v.render(100);
        assert!(frame.contains("ZONE b3   ▲ ALARM since 01:05"), "{frame}");
        assert!(
            frame.contains("b3.offgas.1 alarm 24 (above:alarm_above)"),
            "{frame}"
        );
        assert_eq!(v.marks[0].kind, MarkKind::Level(Level::Alarm));
    }

    #[test]
    fn status_snapshots_build_each_sensors_series_and_the_runbook_steps() {
        let mut v = view();
        v.rehearsed = vec!["`move dns` (dns_update step)".into()];
        for (t, temp) in [(0.0, 23.0), (5.0, 24.0), (10.0, 30.0)] {
            v.apply_status(
                &json!({"zones": [{"id": "b3", "level": "normal", "runbook": "evacuate",
                    "steps": [{"name": "move dns", "status": "succeeded", "detail": "dry run: would update"},
                              {"name": "flag", "status": "started"}],
                    "sensors": [{"id": "b3.temp.row1", "kind": "temperature", "state": "ok", "value": temp},
                                {"id": "b3.offgas.1", "kind": "offgas", "state": "stale", "value": 3.0}]}]}),
                t,
            );
        }
        assert_eq!(
            v.series["b3.temp.row1"].points,
            vec![(0.0, 23.0), (5.0, 24.0), (10.0, 30.0)]
        );
        assert!(
            v.series["b3.offgas.1"].points.is_empty(),
            "a stale value is not a new point"
        );
        let frame = v.render(100);
        assert!(frame.contains("30.0 °C"), "{frame}");
        assert!(frame.contains("✓ move dns"), "{frame}");
        assert!(frame.contains("rehearsed only (dry run)"), "{frame}");
        assert!(frame.contains("dry run: would update"), "{frame}");
        assert!(frame.contains("▶ flag"), "{frame}");
        assert!(frame.contains("? stale"), "{frame}");
    }

    #[test]
    fn the_verdict_gives_the_lead_before_the_power_cut_and_the_rehearsed_steps() {
        let mut v = view();
        v.apply_event(
            &json!({"event": "safe_to_cut_power", "zone": "b3", "incident": "b3-1",
                    "dry_run_steps": ["move dns"]}),
            500.0,
        );
        let o = v.outcome.clone().unwrap();
        assert!(o.safe);
        assert_eq!(o.notes, ["`move dns` was only rehearsed (dry run)"]);
        assert_eq!(
            v.verdict(&o),
            "*** SAFE TO CUT POWER in b3 at 08:20, 9 min 40 s before the scenario cuts the power (at 18:00) ***"
        );
        v.apply_event(
            &json!({"event": "not_safe_to_cut_power", "zone": "b3", "incident": "b3-1",
                    "reasons": ["step `x` failed: timeout"]}),
            1100.0,
        );
        let o = v.outcome.clone().unwrap();
        assert!(v
            .verdict(&o)
            .contains("NOT SAFE TO CUT POWER in b3 at 18:20: step `x` failed"));
    }

    #[test]
    fn a_narrow_terminal_gets_no_line_wider_than_itself_and_the_whole_verdict() {
        let mut v = view();
        v.apply_event(
            &json!({"event": "safe_to_cut_power", "zone": "b3-battery-room", "incident": "b3-1"}),
            500.0,
        );
        let frame = v.render(60);
        for l in frame.lines() {
            assert!(l.chars().count() <= 60, "{l:?} is wider than 60");
        }
        let words = frame.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words.contains("before the scenario cuts the power (at 18:00) ***"),
            "{frame}"
        );
        assert_eq!(wrap("a bb ccc", 4), ["a bb", "ccc"]);
    }

    #[test]
    fn units_follow_the_sensor_kind() {
        assert_eq!(with_unit("temperature", 31.25), "31.2 °C");
        assert_eq!(with_unit("on_battery", 1.0), "ON BATT");
        assert_eq!(with_unit("runtime", 600.4), "600 s");
        assert_eq!(span(61.0), "1 min 1 s");
        assert_eq!(clock(1080.0), "18:00");
    }
}
