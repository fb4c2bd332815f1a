//! The event log: append-only JSON lines (../shared/contract/events.md), each written and
//! fsync'd before the agent acts on it.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("cannot open the event log {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the event log {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvidenceItem {
    pub sensor: String,
    pub state: &'static str,
    pub value: Option<f64>,
    pub reason: &'static str,
}

/// Every event the agent writes. Field names are the contract's.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    AgentStarted {
        version: String,
        config: String,
        dry_run: bool,
    },
    AgentStopped {
        reason: String,
    },
    SensorState {
        sensor: String,
        zone: String,
        from: &'static str,
        to: &'static str,
        value: Option<f64>,
        reason: &'static str,
    },
    ZoneLevel {
        zone: String,
        from: &'static str,
        to: &'static str,
        evidence: Vec<EvidenceItem>,
    },
    RunbookStarted {
        runbook: String,
        zone: String,
        incident: String,
        cause: &'static str,
        dry_run: bool,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        resumed: bool,
        /// Extension (staged response): `prepare`, `failover` or `undo`.
        stage: &'static str,
    },
    /// Extension: a `should` step not run because power is expected to be lost before the
    /// remaining steps could finish.
    StepSkipped {
        runbook: String,
        incident: String,
        step: String,
        reason: String,
    },
    /// Extension: the zone's prepare runbook was undone (back to normal for
    /// `prepare_cooldown`, or an operator reset).
    PrepareUndone {
        zone: String,
        incident: String,
        /// `cooldown` or `reset`.
        by: String,
        ok: bool,
    },
    StepFinished {
        runbook: String,
        incident: String,
        step: String,
        /// Extension: the step's type.
        #[serde(rename = "type")]
        step_type: &'static str,
        ok: bool,
        attempts: u32,
        elapsed_ms: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        verified: bool,
        /// Extension: what was done (or, in dry run, would have been done).
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    RunbookFinished {
        runbook: String,
        incident: String,
        ok: bool,
        elapsed_ms: u64,
        /// Extension.
        zone: String,
    },
    SafeToCutPower {
        zone: String,
        incident: String,
        /// Extension: steps configured `dry_run = true`, rehearsed and left out of the
        /// verdict (omitted when there are none).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        dry_run_steps: Vec<String>,
    },
    /// Extension: the runbook is still running past its `budget`.
    RunbookOverBudget {
        runbook: String,
        zone: String,
        incident: String,
        budget_ms: u64,
        elapsed_ms: u64,
    },
    /// Extension: the runbook ended but not every step succeeded and verified.
    NotSafeToCutPower {
        zone: String,
        incident: String,
        reasons: Vec<String>,
    },
    IncidentReset {
        zone: String,
        incident: String,
        by: String,
    },
    /// Extension: a source that had been connected (answering) went down, or came back
    /// up after being down. Not written for the first connection after a start or reload.
    SourceState {
        source: String,
        from: &'static str,
        to: &'static str,
    },
    /// Extension: SIGHUP reloaded the config file; `changed` names the sections that
    /// differ (`agent.dry_run`, `agent.tick_interval`, `sources`, `sensors`, `zones`,
    /// `runbooks`), empty when the file did not change.
    ConfigReloaded {
        config: String,
        changed: Vec<String>,
        dry_run: bool,
    },
    /// Extension: SIGHUP found the config file invalid, or changing keys that need a
    /// restart, or it would disturb a running runbook; nothing was applied and the
    /// running config stays.
    ConfigReloadFailed {
        config: String,
        reason: String,
    },
    /// Extension (`[cluster]`): this agent's role for a critical zone changed: `leader`
    /// (it runs the zone's runbook), `follower` (`leader` names who does), `alone` (etcd
    /// lost, `on_cluster_loss = "act"`), `holding` (etcd lost, `"hold"`), `done` (the
    /// zone's incident has finished; `leader` names who ran it).
    ClusterRole {
        zone: String,
        node: String,
        role: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        leader: Option<String>,
    },
    /// Extension (`[cluster]`): etcd could not be reached while a zone needed it; `policy`
    /// is the `on_cluster_loss` applied (`act`: the runbook runs without coordination;
    /// `hold`: it does not run until etcd is back).
    ClusterLost {
        zone: String,
        node: String,
        policy: &'static str,
        error: String,
    },
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::AgentStarted { .. } => "agent_started",
            Event::AgentStopped { .. } => "agent_stopped",
            Event::SensorState { .. } => "sensor_state",
            Event::ZoneLevel { .. } => "zone_level",
            Event::RunbookStarted { .. } => "runbook_started",
            Event::StepFinished { .. } => "step_finished",
            Event::StepSkipped { .. } => "step_skipped",
            Event::PrepareUndone { .. } => "prepare_undone",
            Event::RunbookFinished { .. } => "runbook_finished",
            Event::SafeToCutPower { .. } => "safe_to_cut_power",
            Event::RunbookOverBudget { .. } => "runbook_over_budget",
            Event::NotSafeToCutPower { .. } => "not_safe_to_cut_power",
            Event::IncidentReset { .. } => "incident_reset",
            Event::SourceState { .. } => "source_state",
            Event::ConfigReloaded { .. } => "config_reloaded",
            Event::ConfigReloadFailed { .. } => "config_reload_failed",
            Event::ClusterRole { .. } => "cluster_role",
            Event::ClusterLost { .. } => "cluster_lost",
        }
    }
}

/// The event a detection output is written as (`None` for `Critical`, which starts a
/// runbook rather than being an event itself). Shared by the agent and replay.
pub fn from_output(
    config: &crate::config::Config,
    output: &crate::detect::Output,
) -> Option<Event> {
    use crate::detect::Output;
    match output {
        Output::Sensor {
            sensor,
            from,
            to,
            value,
            reason,
        } => {
            let s = &config.sensors[*sensor as usize];
            Some(Event::SensorState {
                sensor: s.id.clone(),
                zone: config.zones[s.zone].id.clone(),
                from: from.as_str(),
                to: to.as_str(),
                value: *value,
                reason: reason.as_str(),
            })
        }
        Output::Zone {
            zone,
            from,
            to,
            evidence,
        } => Some(Event::ZoneLevel {
            zone: config.zones[*zone as usize].id.clone(),
            from: from.as_str(),
            to: to.as_str(),
            evidence: evidence
                .iter()
                .map(|e| EvidenceItem {
                    sensor: config.sensors[e.sensor as usize].id.clone(),
                    state: e.state.as_str(),
                    value: e.value,
                    reason: e.reason.as_str(),
                })
                .collect(),
        }),
        Output::Critical { .. } => None,
    }
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    #[serde(flatten)]
    event: &'a Event,
    agent: &'a str,
}

/// RFC 3339 UTC with milliseconds: `2026-11-25T10:31:02.417Z`.
pub fn format_ts(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

pub fn render(agent: &str, ts: SystemTime, event: &Event) -> String {
    let line = Line {
        ts: format_ts(ts),
        event,
        agent,
    };
    // Serialising plain data with string keys cannot fail.
    serde_json::to_string(&line).unwrap_or_default()
}

pub struct EventLog {
    agent: String,
    path: PathBuf,
    file: Mutex<File>,
    /// Whether the last write reached the disk (for `/readyz`).
    writable: std::sync::atomic::AtomicBool,
}

impl EventLog {
    pub fn open(path: &Path, agent: &str) -> Result<Self, EventLogError> {
        let open_err = |source| EventLogError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(open_err)?;
        Ok(EventLog {
            agent: agent.to_string(),
            path: path.to_path_buf(),
            file: Mutex::new(file),
            writable: std::sync::atomic::AtomicBool::new(true),
        })
    }

    /// Whether the last write reached the disk.
    pub fn is_writable(&self) -> bool {
        self.writable.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event and fsyncs it. Returns only once the line is on disk.
    pub fn write(&self, ts: SystemTime, event: &Event) -> Result<(), EventLogError> {
        let mut line = render(&self.agent, ts, event);
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let err = |source| EventLogError::Write {
            path: self.path.clone(),
            source,
        };
        let before = f.metadata().map(|m| m.len());
        let mut result = f.write_all(line.as_bytes()).and_then(|()| f.sync_data());
        if result.is_err() {
            // A line that did not fit (disk full) must not stay torn: the next line would
            // be glued to it and both lost to a reader.
            if let Ok(len) = before {
                if let Err(e) = f.set_len(len) {
                    result = Err(e);
                }
            }
        }
        self.writable
            .store(result.is_ok(), std::sync::atomic::Ordering::Relaxed);
        result.map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn lines_carry_ts_event_and_agent_as_the_contract_says() {
        let ts = UNIX_EPOCH + Duration::from_millis(1_795_689_062_417);
        let line = render(
            "pangyo-b3",
            ts,
            &Event::SafeToCutPower {
                zone: "b3".into(),
                incident: "b3-1".into(),
                dry_run_steps: Vec::new(),
            },
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "safe_to_cut_power");
        assert_eq!(v["agent"], "pangyo-b3");
        assert_eq!(v["zone"], "b3");
        assert_eq!(v["incident"], "b3-1");
        let ts = v["ts"].as_str().unwrap();
        assert!(
            ts.ends_with('Z') && ts.len() == "2026-11-25T10:31:02.417Z".len(),
            "{ts}"
        );
        assert!(ts.contains(".417Z"), "{ts}");
    }

    #[test]
    fn a_missing_value_is_null_not_absent() {
        let line = render(
            "a",
            UNIX_EPOCH,
            &Event::SensorState {
                sensor: "s".into(),
                zone: "z".into(),
                from: "ok",
                to: "stale",
                value: None,
                reason: "stale",
            },
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v.get("value").is_some_and(|x| x.is_null()));
    }
}
