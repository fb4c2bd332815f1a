//! What the demo shows, as a pure model: events and status snapshots go in (each with the
//! scenario time they belong to), a text frame comes out. The same model feeds the
//! report's picture (the sensors' series and the decision marks).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::api::status::Status;
use crate::config::Kind;
use crate::detect::SensorState;
use crate::events::{Event, EvidenceItem};
use crate::journal::StepStatus;

/// A zone's level (normal, warning, alarm, critical), as the agent reports it.
pub use crate::detect::ZoneLevel as Level;

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

/// The level as a word and a symbol: never colour alone.
pub fn badge(level: Level) -> &'static str {
    match level {
        Level::Normal => "· NORMAL",
        Level::Warning => "! WARNING",
        Level::Alarm => "▲ ALARM",
        Level::Critical => "■ CRITICAL",
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
    /// `None` until a status snapshot names it.
    pub kind: Option<Kind>,
    pub zone: String,
    /// `None` until an event or a status snapshot gives it.
    pub state: Option<SensorState>,
    pub value: Option<f64>,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct StepView {
    pub name: String,
    pub status: StepStatus,
    /// The step's error, if it failed.
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

    /// Takes one event of the event log that happened at scenario time `sim_s`; returns
    /// the line to print for it, if it is one a person follows.
    pub fn apply_event(&mut self, ev: &Event, sim_s: f64) -> Option<String> {
        let at = clock(sim_s);
        let line = match ev {
            Event::SensorState {
                sensor,
                from,
                to,
                value,
                reason,
                ..
            } => {
                let entry = self.series.entry(sensor.clone()).or_default();
                entry.state = Some(*to);
                Some(format!(
                    "{at}  sensor {sensor} {from} -> {to} ({}{reason})",
                    value
                        .map(|v| format!("{}, ", number(v)))
                        .unwrap_or_default(),
                ))
            }
            Event::ZoneLevel {
                zone: id,
                to,
                evidence,
                ..
            } => {
                let level = *to;
                let evidence: Vec<String> = evidence.iter().map(evidence_line).collect();
                let zone = self.zone_mut(id);
                zone.level = level;
                zone.since_s = Some(sim_s);
                if level > Level::Normal {
                    zone.evidence = evidence.clone();
                }
                self.marks.push(Mark {
                    sim_s,
                    label: level.as_str().to_string(),
                    kind: MarkKind::Level(level),
                });
                let mut line = format!("{at}  ZONE {id} is now {}", badge(level));
                if level > Level::Normal && !evidence.is_empty() {
                    let _ = write!(line, ": {}", evidence.join("; "));
                }
                Some(line)
            }
            Event::RunbookStarted {
                runbook,
                zone,
                incident,
                cause,
                stage,
                ..
            } => {
                self.zone_mut(zone).runbook = runbook.clone();
                self.marks.push(Mark {
                    sim_s,
                    label: format!("runbook {runbook}"),
                    kind: MarkKind::RunbookStarted,
                });
                Some(format!(
                    "{at}  RUNBOOK {runbook} started ({cause}, incident {incident}, stage {})",
                    stage.as_str()
                ))
            }
            Event::StepFinished {
                step,
                ok,
                error,
                detail,
                ..
            } => {
                self.marks.push(Mark {
                    sim_s,
                    label: step.clone(),
                    kind: MarkKind::Step { ok: *ok },
                });
                let detail = detail.as_deref().or(error.as_deref()).unwrap_or("");
                Some(format!(
                    "{at}    step `{step}`: {} {detail}",
                    if *ok { "✓ ok" } else { "✗ FAILED" }
                ))
            }
            Event::StepSkipped { step, reason, .. } => {
                Some(format!("{at}    step `{step}` skipped: {reason}"))
            }
            Event::RunbookFinished {
                runbook,
                ok,
                elapsed_ms,
                ..
            } => Some(format!(
                "{at}  RUNBOOK {runbook} finished ({}) in {:.1} s of wall time",
                if *ok {
                    "every step ok"
                } else {
                    "with failures"
                },
                *elapsed_ms as f64 / 1000.0
            )),
            Event::SafeToCutPower {
                zone,
                dry_run_steps,
                ..
            } => {
                let notes: Vec<String> = dry_run_steps
                    .iter()
                    .map(|n| format!("`{n}` was only rehearsed (dry run)"))
                    .collect();
                self.outcome = Some(Outcome {
                    zone: zone.clone(),
                    safe: true,
                    sim_s,
                    notes,
                });
                self.marks.push(Mark {
                    sim_s,
                    label: "SAFE TO CUT POWER".into(),
                    kind: MarkKind::Safe,
                });
                Some(format!("{at}  ✓ SAFE TO CUT POWER in {zone}"))
            }
            Event::NotSafeToCutPower { zone, reasons, .. } => {
                self.outcome = Some(Outcome {
                    zone: zone.clone(),
                    safe: false,
                    sim_s,
                    notes: reasons.clone(),
                });
                self.marks.push(Mark {
                    sim_s,
                    label: "NOT safe".into(),
                    kind: MarkKind::NotSafe,
                });
                Some(format!(
                    "{at}  ✗ NOT SAFE TO CUT POWER in {zone}: {}",
                    reasons.join("; ")
                ))
            }
            Event::AgentStarted { .. } => Some(format!("{at}  agent started")),
            _ => None,
        };
        if let Some(line) = &line {
            self.log.push(line.clone());
        }
        line
    }

    /// Takes one `/api/v1/status` document read at scenario time `sim_s`.
    pub fn apply_status(&mut self, status: &Status, sim_s: f64) {
        self.status_ok = true;
        for z in &status.zones {
            let zone = self.zone_mut(&z.id);
            zone.level = z.level;
            zone.runbook = z.runbook.clone();
            if let Some(steps) = &z.steps {
                zone.steps = steps
                    .iter()
                    .map(|st| StepView {
                        name: st.name.clone(),
                        status: st.status,
                        detail: st.error.clone().unwrap_or_default(),
                    })
                    .collect();
            }
            for sensor in &z.sensors {
                let entry = self.series.entry(sensor.id.clone()).or_default();
                entry.kind = Some(sensor.kind);
                entry.zone = z.id.clone();
                entry.state = Some(sensor.state);
                entry.value = sensor.value.filter(|v| v.is_finite());
                if let Some(v) = entry.value {
                    if sensor.state != SensorState::Stale {
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
            let _ = writeln!(out, "ZONE {}   {}{since}", zone.id, badge(zone.level));
            let mut sensors: Vec<(&String, &Series)> = self
                .series
                .iter()
                .filter(|(_, s)| s.zone == zone.id)
                .collect();
            sensors.sort_by_key(|(id, s)| (std::cmp::Reverse(state_rank(s.state)), (*id).clone()));
            let spark = width.saturating_sub(60).clamp(10, 40);
            for (id, s) in sensors.iter().take(12) {
                let values: Vec<f64> = s.points.iter().map(|p| p.1).collect();
                let tail = &values[values.len().saturating_sub(spark)..];
                let _ = writeln!(
                    out,
                    "  {:<24} {:>12}  {:<9} {}",
                    truncate(id, 24),
                    s.value
                        .map(|v| match s.kind {
                            Some(kind) => with_unit(kind, v),
                            None => number(v),
                        })
                        .unwrap_or_else(|| "—".into()),
                    state_badge(s.state),
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
                    let mark = match st.status {
                        StepStatus::Succeeded => "✓",
                        StepStatus::Failed => "✗",
                        StepStatus::Started => "▶",
                        StepStatus::Skipped => "↷",
                        StepStatus::Pending => "·",
                    };
                    let rehearsal = self
                        .rehearsed
                        .iter()
                        .any(|r| r.starts_with(&format!("`{}`", st.name)));
                    let status = match st.status {
                        StepStatus::Succeeded if rehearsal => "rehearsed only (dry run)",
                        other => other.as_str(),
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

fn evidence_line(e: &EvidenceItem) -> String {
    format!(
        "{} {} {} ({})",
        e.sensor,
        e.state,
        e.value.map(number).unwrap_or_else(|| "—".into()),
        e.reason
    )
}

fn state_rank(state: Option<SensorState>) -> u8 {
    match state {
        Some(SensorState::Critical) => 5,
        Some(SensorState::Alarm) => 4,
        Some(SensorState::Warn) => 3,
        Some(SensorState::Stale | SensorState::Fault) => 2,
        Some(SensorState::Ok) => 1,
        None => 0,
    }
}

fn state_badge(state: Option<SensorState>) -> &'static str {
    match state {
        Some(SensorState::Critical) => "■ CRIT",
        Some(SensorState::Alarm) => "▲ ALARM",
        Some(SensorState::Warn) => "! warn",
        Some(SensorState::Stale) => "? stale",
        Some(SensorState::Fault) => "✗ fault",
        Some(SensorState::Ok) => "ok",
        None => "",
    }
}

/// A value with the unit its kind is measured in.
pub fn with_unit(kind: Kind, v: f64) -> String {
    match kind {
        Kind::Temperature => format!("{v:.1} °C"),
        Kind::Offgas => format!("{v:.0} ppm"),
        Kind::Smoke => format!("{v:.3} %/m"),
        Kind::Runtime => format!("{v:.0} s"),
        Kind::Charge => format!("{v:.0} %"),
        Kind::Voltage => format!("{v:.0} V"),
        Kind::OnBattery => if v >= 0.5 { "ON BATT" } else { "mains" }.to_string(),
        Kind::AlarmInput => if v >= 0.5 { "ALARM" } else { "quiet" }.to_string(),
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
    use crate::api::status::fixtures::{sensor, status, zone};
    use crate::detect::Reason;
    use crate::journal::StepRecord;

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
                &Event::ZoneLevel {
                    zone: "b3".into(),
                    from: Level::Normal,
                    to: Level::Alarm,
                    evidence: vec![EvidenceItem {
                        sensor: "b3.offgas.1".into(),
                        state: SensorState::Alarm,
                        value: Some(24.0),
                        reason: Reason::Above(crate::detect::Level::Alarm),
                        common_mode: false,
                    }],
                },
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
        let step = |name: &str, status: StepStatus, error: Option<&str>| StepRecord {
            name: name.into(),
            status,
            verified: false,
            attempts: 1,
            error: error.map(String::from),
            finished_at: None,
            unannounced: false,
        };
        for (t, temp) in [(0.0, 23.0), (5.0, 24.0), (10.0, 30.0)] {
            let mut z = zone("b3", Level::Normal, "evacuate");
            z.steps = Some(vec![
                step(
                    "move dns",
                    StepStatus::Succeeded,
                    Some("dry run: would update"),
                ),
                step("flag", StepStatus::Started, None),
            ]);
            z.sensors = vec![
                sensor("b3.temp.row1", Kind::Temperature, SensorState::Ok, temp),
                sensor("b3.offgas.1", Kind::Offgas, SensorState::Stale, 3.0),
            ];
            v.apply_status(&status(vec![z]), t);
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
            &Event::SafeToCutPower {
                zone: "b3".into(),
                incident: "b3-1".into(),
                dry_run_steps: vec!["move dns".into()],
            },
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
            &Event::NotSafeToCutPower {
                zone: "b3".into(),
                incident: "b3-1".into(),
                reasons: vec!["step `x` failed: timeout".into()],
            },
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
            &Event::SafeToCutPower {
                zone: "b3-battery-room".into(),
                incident: "b3-1".into(),
                dry_run_steps: Vec::new(),
            },
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
        assert_eq!(with_unit(Kind::Temperature, 31.25), "31.2 °C");
        assert_eq!(with_unit(Kind::OnBattery, 1.0), "ON BATT");
        assert_eq!(with_unit(Kind::Runtime, 600.4), "600 s");
        assert_eq!(span(61.0), "1 min 1 s");
        assert_eq!(clock(1080.0), "18:00");
    }
}
