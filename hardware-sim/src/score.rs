//! Scores an agent's event log against a scenario's ground truth (pure: the events, the
//! wall-clock instant of sim time 0 and the speed come in as values).
//!
//! - detection: the first `zone_level` event to `alarm` or `critical`;
//! - failover started: the first `runbook_started` with cause `fire` or `power` of the
//!   failover stage (a staged response's `prepare` and `undo` runbooks are not failovers:
//!   stopping a battery's charge at the off-gas alarm is what should happen);
//! - failover verified: the first `safe_to_cut_power`;
//! - lead: `power_cut_at` minus failover verified (positive = in time);
//! - false failovers: failover `runbook_started` (fire/power) in a scenario that expects
//!   none.
//!
//! Times are sim time: (event `ts` - t0) × speed.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::scenario::Truth;

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("the scenario has no [truth] section: nothing to score against")]
    NoTruth,
    #[error("event line {line}: {message}")]
    BadEvent { line: usize, message: String },
    #[error("the event log is empty and no t0 was given")]
    NoEvents,
    #[error("speed must be a positive number, got {0}")]
    Speed(f64),
}

/// The result for one scenario run, in sim milliseconds from the scenario's start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub scenario: String,
    pub kind: &'static str,
    pub failover_expected: bool,
    pub power_cut_at_ms: Option<u64>,
    pub failover_by_ms: Option<u64>,
    pub detection_ms: Option<i64>,
    pub failover_started_ms: Option<i64>,
    pub failover_verified_ms: Option<i64>,
    /// `power_cut_at` minus failover verified.
    pub lead_ms: Option<i64>,
    pub false_failovers: u32,
    pub passed: bool,
    /// Why it did not pass (empty when it did).
    pub problems: Vec<String>,
}

/// Parses an event log (JSON lines); blank lines are skipped.
pub fn parse_events(text: &str) -> Result<Vec<Value>, ScoreError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| ScoreError::BadEvent {
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// Parses an RFC 3339 timestamp such as `2026-11-25T10:31:02.417Z`.
pub fn parse_ts(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("`{text}` is not RFC 3339: {e}"))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Scores `events` against `truth`. `t0` is the wall-clock time of sim time 0; `None`
/// takes the first event's `ts`.
pub fn score(
    scenario: &str,
    truth: Option<&Truth>,
    events: &[Value],
    t0: Option<OffsetDateTime>,
    speed: f64,
) -> Result<Score, ScoreError> {
    let truth = truth.ok_or(ScoreError::NoTruth)?;
    if !(speed.is_finite() && speed > 0.0) {
        return Err(ScoreError::Speed(speed));
    }
    let ts_of = |i: usize, e: &Value| -> Result<OffsetDateTime, ScoreError> {
        let text = e["ts"].as_str().ok_or_else(|| ScoreError::BadEvent {
            line: i + 1,
            message: "no `ts`".into(),
        })?;
        parse_ts(text).map_err(|message| ScoreError::BadEvent {
            line: i + 1,
            message,
        })
    };
    let t0 = match t0 {
        Some(t) => t,
        None => ts_of(0, events.first().ok_or(ScoreError::NoEvents)?)?,
    };
    let sim_ms = |ts: OffsetDateTime| -> i64 {
        let wall = (ts - t0).as_seconds_f64();
        (wall * speed * 1000.0).round() as i64
    };

    let mut detection = None;
    let mut started = None;
    let mut verified = None;
    let mut failovers = 0u32;
    for (i, e) in events.iter().enumerate() {
        let first = |slot: &mut Option<i64>| -> Result<(), ScoreError> {
            if slot.is_none() {
                *slot = Some(sim_ms(ts_of(i, e)?));
            }
            Ok(())
        };
        match e["event"].as_str() {
            Some("zone_level") if matches!(e["to"].as_str(), Some("alarm" | "critical")) => {
                first(&mut detection)?;
            }
            // An event without `stage` is from an agent before staged responses: a failover.
            Some("runbook_started")
                if matches!(e["cause"].as_str(), Some("fire" | "power"))
                    && matches!(e["stage"].as_str(), None | Some("failover")) =>
            {
                if e["resumed"] != Value::Bool(true) {
                    failovers += 1;
                }
                first(&mut started)?;
            }
            Some("safe_to_cut_power") => first(&mut verified)?,
            _ => {}
        }
    }

    let power_cut_at_ms = truth.power_cut_at.map(millis);
    let failover_by_ms = truth.failover_by.map(millis);
    let lead_ms = match (power_cut_at_ms, verified) {
        (Some(cut), Some(v)) => Some(i64::try_from(cut).unwrap_or(i64::MAX) - v),
        _ => None,
    };
    let mut problems = Vec::new();
    let false_failovers = if truth.failover_expected {
        match (verified, failover_by_ms) {
            (None, _) => problems.push("no verified failover (safe_to_cut_power)".to_string()),
            (Some(v), Some(by)) if v > i64::try_from(by).unwrap_or(i64::MAX) => {
                problems.push(format!(
                    "failover verified at {} s, after failover_by ({} s)",
                    v as f64 / 1000.0,
                    by as f64 / 1000.0
                ));
            }
            _ => {}
        }
        0
    } else {
        if failovers > 0 {
            problems.push(format!(
                "{failovers} failover(s) in a scenario that expects none"
            ));
        }
        failovers
    };
    Ok(Score {
        scenario: scenario.to_string(),
        kind: truth.kind.as_str(),
        failover_expected: truth.failover_expected,
        power_cut_at_ms,
        failover_by_ms,
        detection_ms: detection,
        failover_started_ms: started,
        failover_verified_ms: verified,
        lead_ms,
        false_failovers,
        passed: problems.is_empty(),
        problems,
    })
}

fn secs(ms: Option<i64>) -> String {
    ms.map_or("-".to_string(), |v| format!("{:.1}", v as f64 / 1000.0))
}

/// A table for people: one row per score.
pub fn table(scores: &[Score]) -> String {
    let mut out = format!(
        "{:<24} {:<9} {:<9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {}\n",
        "scenario",
        "kind",
        "failover",
        "detect_s",
        "started_s",
        "verified_s",
        "cut_s",
        "lead_s",
        "false",
        "result"
    );
    for s in scores {
        out.push_str(&format!(
            "{:<24} {:<9} {:<9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {}\n",
            s.scenario,
            s.kind,
            if s.failover_expected {
                "expected"
            } else {
                "forbidden"
            },
            secs(s.detection_ms),
            secs(s.failover_started_ms),
            secs(s.failover_verified_ms),
            secs(
                s.power_cut_at_ms
                    .map(|v| i64::try_from(v).unwrap_or(i64::MAX))
            ),
            secs(s.lead_ms),
            s.false_failovers,
            if s.passed {
                "PASS".to_string()
            } else {
                format!("FAIL: {}", s.problems.join("; "))
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::IncidentKind;
    use serde_json::json;

    fn fire() -> Truth {
        Truth {
            kind: IncidentKind::Fire,
            failover_expected: true,
            power_cut_at: Some(Duration::from_secs(600)),
            failover_by: Some(Duration::from_secs(600)),
        }
    }

    fn nuisance() -> Truth {
        Truth {
            kind: IncidentKind::Nuisance,
            failover_expected: false,
            power_cut_at: None,
            failover_by: None,
        }
    }

    fn ev(ts: &str, event: &str, extra: Value) -> Value {
        let mut v = json!({"ts": ts, "event": event, "agent": "a"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    fn fire_log() -> Vec<Value> {
        vec![
            ev("2026-11-25T10:00:00.000Z", "agent_started", json!({})),
            ev(
                "2026-11-25T10:00:30.000Z",
                "zone_level",
                json!({"zone": "z", "from": "normal", "to": "alarm"}),
            ),
            ev(
                "2026-11-25T10:00:40.000Z",
                "runbook_started",
                json!({"runbook": "r", "cause": "fire"}),
            ),
            ev(
                "2026-11-25T10:00:41.500Z",
                "safe_to_cut_power",
                json!({"zone": "z"}),
            ),
        ]
    }

    #[test]
    fn a_fire_failed_over_in_time_passes_with_its_lead_in_sim_time() {
        // Played at speed 10: 41.5 wall seconds after t0 are 415 sim seconds.
        let s = score("f", Some(&fire()), &fire_log(), None, 10.0).unwrap();
        assert_eq!(s.detection_ms, Some(300_000));
        assert_eq!(s.failover_started_ms, Some(400_000));
        assert_eq!(s.failover_verified_ms, Some(415_000));
        assert_eq!(s.lead_ms, Some(185_000));
        assert!(s.passed, "{:?}", s.problems);
    }

    #[test]
    fn a_fire_failed_over_too_late_or_never_fails() {
        let late = score("f", Some(&fire()), &fire_log(), None, 20.0).unwrap();
        assert!(!late.passed);
        assert_eq!(late.lead_ms, Some(-230_000));
        assert!(late.problems[0].contains("after failover_by"));
        let never = score("f", Some(&fire()), &fire_log()[..2], None, 10.0).unwrap();
        assert!(!never.passed);
        assert_eq!(never.failover_verified_ms, None);
    }

    #[test]
    fn a_failover_in_a_nuisance_scenario_is_a_false_failover() {
        let s = score("n", Some(&nuisance()), &fire_log(), None, 1.0).unwrap();
        assert_eq!(s.false_failovers, 1);
        assert!(!s.passed);
        let quiet = score("n", Some(&nuisance()), &fire_log()[..2], None, 1.0).unwrap();
        assert!(quiet.passed);
        assert_eq!(quiet.detection_ms, Some(30_000));
    }

    #[test]
    fn t0_can_be_given_and_drills_do_not_count() {
        let mut log = fire_log();
        log[2]["cause"] = json!("drill");
        let t0 = parse_ts("2026-11-25T09:59:50.000Z").unwrap();
        let s = score("n", Some(&nuisance()), &log, Some(t0), 1.0).unwrap();
        assert_eq!(s.false_failovers, 0);
        assert_eq!(s.detection_ms, Some(40_000));
    }

    #[test]
    fn prepare_and_undo_runbooks_are_not_failovers() {
        let mut log = fire_log()[..3].to_vec();
        log[2]["stage"] = json!("prepare");
        log.push(ev(
            "2026-11-25T10:01:40.000Z",
            "runbook_started",
            json!({"runbook": "p", "cause": "fire", "stage": "undo"}),
        ));
        let s = score("n", Some(&nuisance()), &log, None, 1.0).unwrap();
        assert_eq!(s.false_failovers, 0);
        assert_eq!(s.failover_started_ms, None);
        assert!(s.passed, "{:?}", s.problems);
        log[2]["stage"] = json!("failover");
        let s = score("n", Some(&nuisance()), &log, None, 1.0).unwrap();
        assert_eq!(s.false_failovers, 1);
    }

    #[test]
    fn a_scenario_without_truth_cannot_be_scored() {
        assert!(matches!(
            score("x", None, &fire_log(), None, 1.0),
            Err(ScoreError::NoTruth)
        ));
    }

    #[test]
    fn the_table_names_every_column_and_the_verdict() {
        let s = score("fire-1", Some(&fire()), &fire_log(), None, 10.0).unwrap();
        let t = table(&[s]);
        assert!(t.starts_with("scenario"));
        assert!(t.contains("fire-1"));
        assert!(t.contains("415.0"));
        assert!(t.contains("PASS"));
    }
}
