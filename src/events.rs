//! The event log: append-only JSON lines (../shared/contract/events.md), each written and
//! fsync'd before the agent acts on it, and read back as [`LoggedEvent`]s.

use crate::config::OnClusterLoss;
use crate::detect::{Cause, Reason, SensorState, ZoneLevel};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Which of a zone's runbooks an incident run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The zone's `prepare_runbook`, started at alarm; never declares safe to cut power.
    Prepare,
    /// The zone's `runbook`, started at critical; journaled, ends in the verdict.
    Failover,
    /// The prepare runbook's `undo_steps`.
    Undo,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }

    /// The zone level the stage runs at (`{{level}}` in its templates).
    pub fn level(self) -> &'static str {
        match self {
            Stage::Prepare => "alarm",
            Stage::Failover => "critical",
            Stage::Undo => "normal",
        }
    }
}

/// This agent's part in a zone's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The zone is not critical (nothing to coordinate).
    Idle,
    /// Runs the zone's runbook.
    Leader,
    /// Another agent runs it; this one takes over if that one dies.
    Follower,
    /// etcd lost with `on_cluster_loss = "act"`: runs the runbook without coordination.
    Alone,
    /// etcd lost with `on_cluster_loss = "hold"`: runs nothing until etcd is back.
    Holding,
    /// The zone's incident has finished (here or on a peer).
    Done,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }
}

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

/// Why a line of the event log could not be read as an event.
#[derive(Debug, thiserror::Error)]
pub enum EventLineError {
    #[error("not JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("no `{0}` string")]
    Envelope(&'static str),
    #[error("event `{event}`: {source}")]
    Event {
        event: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvidenceItem {
    pub sensor: String,
    pub state: SensorState,
    pub value: Option<f64>,
    pub reason: Reason,
    /// Extension: counted once with the other sensors of its source, which all entered
    /// their alarm at the same instant (a device glitch; see `confirm_across`). Omitted
    /// when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub common_mode: bool,
}

/// `source_state`: whether a source answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    Up,
    Down,
}

impl Connection {
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }
}

impl std::fmt::Display for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `prepare_undone`: what undid the prepare runbook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UndoneBy {
    /// The zone stayed normal for `prepare_cooldown`.
    Cooldown,
    /// An operator reset the zone.
    Reset,
}

impl UndoneBy {
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }
}

impl std::fmt::Display for UndoneBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every event the agent writes. Field names are the contract's; fields with a closed set
/// of values are enums named as they are written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
        from: SensorState,
        to: SensorState,
        value: Option<f64>,
        reason: Reason,
    },
    ZoneLevel {
        zone: String,
        from: ZoneLevel,
        to: ZoneLevel,
        evidence: Vec<EvidenceItem>,
    },
    RunbookStarted {
        runbook: String,
        zone: String,
        incident: String,
        cause: Cause,
        dry_run: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resumed: bool,
        /// Extension (staged response): `prepare`, `failover` or `undo`.
        stage: Stage,
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
        by: UndoneBy,
        ok: bool,
    },
    StepFinished {
        runbook: String,
        incident: String,
        step: String,
        /// Extension: the step's type.
        #[serde(rename = "type")]
        step_type: String,
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
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
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
    /// Extension: a power feed (`[[feeds]]`) became safe to cut: every zone it powers has
    /// failed over and verified. Written once each time it becomes safe.
    FeedSafeToCut {
        feed: String,
        description: String,
        zones: Vec<String>,
        /// The incidents whose verdicts made it safe, one per zone, in `zones` order.
        incidents: Vec<String>,
    },
    /// Extension: the incident has ended (operator reset, or its prepare undone) and a
    /// paging step (`alertmanager`, `pagerduty`) of its runbooks had its page resolved
    /// (`ok`), or tried to (`error`).
    PageResolved {
        zone: String,
        incident: String,
        runbook: String,
        step: String,
        #[serde(rename = "type")]
        step_type: String,
        ok: bool,
        attempts: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Extension: a source that had been connected (answering) went down, or came back
    /// up after being down. Not written for the first connection after a start or reload.
    SourceState {
        source: String,
        from: Connection,
        to: Connection,
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
        role: Role,
        #[serde(skip_serializing_if = "Option::is_none")]
        leader: Option<String>,
    },
    /// Extension (`[cluster]`): etcd could not be reached while a zone needed it; `policy`
    /// is the `on_cluster_loss` applied (`act`: the runbook runs without coordination;
    /// `hold`: it does not run until etcd is back).
    ClusterLost {
        zone: String,
        node: String,
        policy: OnClusterLoss,
        error: String,
    },
}

impl Event {
    /// The event's name as written (`zone_level`, ...).
    pub fn name(&self) -> &'static str {
        crate::names::tag_of(self, "event")
    }

    /// Every event name, in declaration order.
    pub fn names() -> &'static [&'static str] {
        crate::names::tags_of::<Event>("event")
    }

    /// The zone the event is about, for the events that name one.
    pub fn zone(&self) -> Option<&str> {
        match self {
            Event::SensorState { zone, .. }
            | Event::ZoneLevel { zone, .. }
            | Event::RunbookStarted { zone, .. }
            | Event::PrepareUndone { zone, .. }
            | Event::RunbookFinished { zone, .. }
            | Event::SafeToCutPower { zone, .. }
            | Event::RunbookOverBudget { zone, .. }
            | Event::NotSafeToCutPower { zone, .. }
            | Event::IncidentReset { zone, .. }
            | Event::PageResolved { zone, .. }
            | Event::ClusterRole { zone, .. }
            | Event::ClusterLost { zone, .. } => Some(zone),
            Event::AgentStarted { .. }
            | Event::AgentStopped { .. }
            | Event::FeedSafeToCut { .. }
            | Event::StepSkipped { .. }
            | Event::StepFinished { .. }
            | Event::SourceState { .. }
            | Event::ConfigReloaded { .. }
            | Event::ConfigReloadFailed { .. } => None,
        }
    }

    /// The incident the event belongs to, for the events that name one.
    pub fn incident(&self) -> Option<&str> {
        match self {
            Event::RunbookStarted { incident, .. }
            | Event::StepSkipped { incident, .. }
            | Event::PrepareUndone { incident, .. }
            | Event::StepFinished { incident, .. }
            | Event::RunbookFinished { incident, .. }
            | Event::SafeToCutPower { incident, .. }
            | Event::RunbookOverBudget { incident, .. }
            | Event::NotSafeToCutPower { incident, .. }
            | Event::IncidentReset { incident, .. }
            | Event::PageResolved { incident, .. } => Some(incident),
            Event::AgentStarted { .. }
            | Event::AgentStopped { .. }
            | Event::SensorState { .. }
            | Event::ZoneLevel { .. }
            | Event::SourceState { .. }
            | Event::ConfigReloaded { .. }
            | Event::ConfigReloadFailed { .. }
            | Event::ClusterRole { .. }
            | Event::FeedSafeToCut { .. }
            | Event::ClusterLost { .. } => None,
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
                from: *from,
                to: *to,
                value: *value,
                reason: *reason,
            })
        }
        Output::Zone {
            zone,
            from,
            to,
            evidence,
        } => Some(Event::ZoneLevel {
            zone: config.zones[*zone as usize].id.clone(),
            from: *from,
            to: *to,
            evidence: evidence
                .iter()
                .map(|e| EvidenceItem {
                    sensor: config.sensors[e.sensor as usize].id.clone(),
                    state: e.state,
                    value: e.value,
                    reason: e.reason,
                    common_mode: e.common_mode,
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

/// One line of the event log, read back: the envelope (`ts`, `agent`) and the event.
/// Serialises as the line was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// RFC 3339 UTC with milliseconds, as written.
    pub ts: String,
    #[serde(flatten)]
    pub event: Event,
    pub agent: String,
}

impl LoggedEvent {
    /// Reads one line of the event log (without its newline).
    pub fn parse(line: &str) -> Result<LoggedEvent, EventLineError> {
        let value = serde_json::from_str(line).map_err(EventLineError::Json)?;
        LoggedEvent::from_json(value)
    }

    /// Reads one event log line already parsed as JSON.
    // Design: the envelope is taken apart by hand rather than through `#[serde(flatten)]`,
    // so that an error says which part of the line is wrong (a missing `ts`, an unknown
    // event, a bad field of a known event) instead of serde's "data did not match".
    pub fn from_json(value: serde_json::Value) -> Result<LoggedEvent, EventLineError> {
        let serde_json::Value::Object(mut map) = value else {
            return Err(EventLineError::NotAnObject);
        };
        let mut envelope = |key: &'static str| match map.remove(key) {
            Some(serde_json::Value::String(s)) => Ok(s),
            _ => Err(EventLineError::Envelope(key)),
        };
        let ts = envelope("ts")?;
        let agent = envelope("agent")?;
        let name = match map.get("event") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Err(EventLineError::Envelope("event")),
        };
        let event = serde_json::from_value(serde_json::Value::Object(map)).map_err(|source| {
            EventLineError::Event {
                event: name,
                source,
            }
        })?;
        Ok(LoggedEvent { ts, event, agent })
    }

    pub fn name(&self) -> &'static str {
        self.event.name()
    }
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

    /// Whether the log holds an event of `incident` that `pred` accepts (read from the
    /// file; used only when the agent announces, after a restart, what it may not have
    /// written before it stopped). A line that cannot be read does not count.
    pub fn contains(&self, incident: &str, pred: impl Fn(&Event) -> bool) -> bool {
        use std::io::BufRead as _;
        let Ok(file) = File::open(&self.path) else {
            return false;
        };
        std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            // Cheap filter before parsing: the id appears in the line as written.
            .filter(|line| line.contains(incident))
            .filter_map(|line| LoggedEvent::parse(&line).ok())
            .any(|e| e.event.incident() == Some(incident) && pred(&e.event))
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

    /// One event of every kind, with every optional field both ways somewhere.
    fn one_of_each() -> Vec<Event> {
        use crate::detect::{FaultKind, Level};
        vec![
            Event::AgentStarted {
                version: "0.1.0".into(),
                config: "/etc/firebreak/firebreak.toml".into(),
                dry_run: false,
            },
            Event::AgentStopped {
                reason: "SIGTERM".into(),
            },
            Event::SensorState {
                sensor: "b3.offgas.1".into(),
                zone: "b3".into(),
                from: SensorState::Ok,
                to: SensorState::Fault,
                value: Some(0.1 + 0.2),
                reason: Reason::Fault(FaultKind::NotNumeric),
            },
            Event::ZoneLevel {
                zone: "b3".into(),
                from: ZoneLevel::Alarm,
                to: ZoneLevel::Critical,
                evidence: vec![
                    EvidenceItem {
                        sensor: "b3.offgas.1".into(),
                        state: SensorState::Critical,
                        value: Some(250.0),
                        reason: Reason::Above(Level::Critical),
                        common_mode: false,
                    },
                    EvidenceItem {
                        sensor: "b3.temp.row1".into(),
                        state: SensorState::Stale,
                        value: None,
                        reason: Reason::Stale,
                        common_mode: false,
                    },
                ],
            },
            Event::RunbookStarted {
                runbook: "evacuate-b3".into(),
                zone: "b3".into(),
                incident: "b3-1".into(),
                cause: Cause::Power,
                dry_run: false,
                resumed: true,
                stage: Stage::Failover,
            },
            Event::StepSkipped {
                runbook: "evacuate-b3".into(),
                incident: "b3-1".into(),
                step: "drain".into(),
                reason: "power expected to be lost in 30 s".into(),
            },
            Event::PrepareUndone {
                zone: "b3".into(),
                incident: "b3-1".into(),
                by: UndoneBy::Reset,
                ok: true,
            },
            Event::StepFinished {
                runbook: "evacuate-b3".into(),
                incident: "b3-1".into(),
                step: "move dns".into(),
                step_type: "dns_update".into(),
                ok: false,
                attempts: 3,
                elapsed_ms: 1200,
                error: Some("timeout".into()),
                verified: false,
                detail: None,
            },
            Event::RunbookFinished {
                runbook: "evacuate-b3".into(),
                incident: "b3-1".into(),
                ok: false,
                elapsed_ms: 1300,
                zone: "b3".into(),
            },
            Event::SafeToCutPower {
                zone: "b3".into(),
                incident: "b3-1".into(),
                dry_run_steps: vec!["flag".into()],
            },
            Event::RunbookOverBudget {
                runbook: "evacuate-b3".into(),
                zone: "b3".into(),
                incident: "b3-1".into(),
                budget_ms: 1000,
                elapsed_ms: 1001,
            },
            Event::NotSafeToCutPower {
                zone: "b3".into(),
                incident: "b3-1".into(),
                reasons: vec!["step `move dns` failed: timeout".into()],
            },
            Event::IncidentReset {
                zone: "b3".into(),
                incident: "b3-1".into(),
                by: "api".into(),
            },
            Event::PageResolved {
                zone: "b3".into(),
                incident: "b3-1".into(),
                runbook: "evacuate-b3".into(),
                step: "page the on-call".into(),
                step_type: "pagerduty".into(),
                ok: true,
                attempts: 1,
                error: None,
                detail: Some("PagerDuty accepted the resolve".into()),
            },
            Event::SourceState {
                source: "env-b3".into(),
                from: Connection::Up,
                to: Connection::Down,
            },
            Event::ConfigReloaded {
                config: "a.toml".into(),
                changed: vec!["sensors".into()],
                dry_run: true,
            },
            Event::ConfigReloadFailed {
                config: "a.toml".into(),
                reason: "bad".into(),
            },
            Event::ClusterRole {
                zone: "b3".into(),
                node: "n1".into(),
                role: Role::Follower,
                leader: Some("n2".into()),
            },
            Event::ClusterLost {
                zone: "b3".into(),
                node: "n1".into(),
                policy: OnClusterLoss::Hold,
                error: "refused".into(),
            },
            Event::FeedSafeToCut {
                feed: "b3-pdu-a".into(),
                description: "B3 PDU A, breaker 3-14".into(),
                zones: vec!["b3".into()],
                incidents: vec!["b3-20261125T100000000Z-1".into()],
            },
        ]
    }

    #[test]
    fn every_event_reads_back_as_written() {
        let events = one_of_each();
        let names: Vec<&str> = events.iter().map(Event::name).collect();
        let mut all = Event::names().to_vec();
        assert_eq!(all.len(), 20);
        all.sort_unstable();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, all, "one of each event");
        for event in events {
            let line = render("pangyo-b3", UNIX_EPOCH + Duration::from_millis(417), &event);
            let read = LoggedEvent::parse(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(read.event, event);
            assert_eq!(read.agent, "pangyo-b3");
            assert_eq!(read.ts, "1970-01-01T00:00:00.417Z");
            assert_eq!(read.name(), event.name());
            // Written back, the line is the same line, byte for byte.
            assert_eq!(serde_json::to_string(&read).unwrap(), line);
            assert_eq!(serde_json::from_str::<LoggedEvent>(&line).unwrap(), read);
        }
    }

    #[test]
    fn optional_fields_may_be_absent_when_read() {
        let read = LoggedEvent::parse(
            r#"{"ts":"2026-11-25T10:31:02.417Z","event":"runbook_started","runbook":"r","zone":"z","incident":"i","cause":"fire","dry_run":false,"stage":"failover","agent":"a"}"#,
        )
        .unwrap();
        assert!(matches!(
            read.event,
            Event::RunbookStarted {
                resumed: false,
                cause: Cause::Fire,
                stage: Stage::Failover,
                ..
            }
        ));
        assert_eq!(read.event.zone(), Some("z"));
        assert_eq!(read.event.incident(), Some("i"));
    }

    #[test]
    fn a_malformed_line_says_what_is_wrong_with_it() {
        let err = |line: &str| LoggedEvent::parse(line).unwrap_err().to_string();
        assert!(err("{\"ts\": ").starts_with("not JSON"));
        assert_eq!(err("[1]"), "not a JSON object");
        assert_eq!(
            err(r#"{"event":"agent_stopped","reason":"x","agent":"a"}"#),
            "no `ts` string"
        );
        assert_eq!(
            err(r#"{"ts":"t","event":"agent_stopped","reason":"x"}"#),
            "no `agent` string"
        );
        assert_eq!(err(r#"{"ts":"t","agent":"a"}"#), "no `event` string");
        let unknown = err(r#"{"ts":"t","event":"lunch","agent":"a"}"#);
        assert!(
            unknown.starts_with("event `lunch`: unknown variant `lunch`")
                && unknown.contains("safe_to_cut_power"),
            "{unknown}"
        );
        let bad = err(
            r#"{"ts":"t","event":"sensor_state","sensor":"s","zone":"z","from":"ok","to":"toasty","value":1,"reason":"stale","agent":"a"}"#,
        );
        assert!(
            bad.starts_with("event `sensor_state`: unknown variant `toasty`"),
            "{bad}"
        );
        let missing = err(r#"{"ts":"t","event":"safe_to_cut_power","zone":"z","agent":"a"}"#);
        assert!(missing.contains("missing field `incident`"), "{missing}");
    }

    #[test]
    fn a_missing_value_is_null_not_absent() {
        let line = render(
            "a",
            UNIX_EPOCH,
            &Event::SensorState {
                sensor: "s".into(),
                zone: "z".into(),
                from: SensorState::Ok,
                to: SensorState::Stale,
                value: None,
                reason: Reason::Stale,
            },
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v.get("value").is_some_and(|x| x.is_null()));
    }
}
