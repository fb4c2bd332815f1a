//! The status document (`GET /api/v1/status`) as types: what the status page, the demo
//! and the tests read. Field names are the document's; fields with a closed set of values
//! are enums named as they are written.

use crate::cluster::Role;
use crate::config::{Kind, OnClusterLoss};
use crate::detect::{Reason, SensorState, ZoneLevel};
use crate::journal::StepRecord;
use crate::staged::Basis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// `[agent] name`.
    pub agent: String,
    pub dry_run: bool,
    /// Whether the last event log write reached the disk (`/readyz` says the same).
    pub event_log_writable: bool,
    pub zones: Vec<Zone>,
    /// The power map (`[[feeds]]`): which breakers may be opened now.
    #[serde(default)]
    pub feeds: Vec<crate::feeds::FeedState>,
    /// `[cluster]`: `null` when the agent runs alone.
    pub cluster: Option<Cluster>,
}

/// One zone: its level, its sensors, and its open incident as the journal has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Zone {
    pub id: String,
    pub level: ZoneLevel,
    /// The open incident (under `[cluster]`, possibly one a peer opened).
    pub incident: Option<String>,
    /// The zone's failover runbook.
    pub runbook: String,
    /// Its steps configured `dry_run = true`: rehearsed, never done, out of the verdict.
    #[serde(default)]
    pub rehearsed_steps: Vec<String>,
    pub runbook_running: bool,
    pub safe_to_cut_power: bool,
    /// The incident's cause as recorded in the journal (`fire`, `power`, `manual`).
    // Design: the journal keeps the cause as text, and a journal written by another
    // version must not make the whole document unreadable, so it stays a string here.
    pub cause: Option<String>,
    /// RFC 3339 wall times of the incident's runbook.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The runbook's steps as journaled; `null` without an incident.
    pub steps: Option<Vec<StepRecord>>,
    pub sensors: Vec<Sensor>,
    /// Staged response: seconds until the zone is expected to lose power, if known.
    pub seconds_to_power_loss: Option<f64>,
    pub power_loss_basis: Option<Basis>,
    /// The zone's prepare runbook in this incident, if one started.
    pub prepare: Option<Prepare>,
}

/// One sensor as the detection core has it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sensor {
    pub id: String,
    pub kind: Kind,
    pub state: SensorState,
    pub value: Option<f64>,
    /// Since the last good reading.
    pub age_ms: u64,
    pub reason: Reason,
    /// Recent values, oldest first (`null` where there was none).
    pub trend: Vec<Option<f64>>,
}

/// A zone's prepare runbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prepare {
    pub incident: String,
    pub runbook: String,
    pub running: bool,
    pub undone: bool,
    /// `[cluster]`: false on a follower (the leader ran it).
    pub ran_here: bool,
}

/// `[cluster]`: this agent's view of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub node: String,
    pub etcd: Vec<String>,
    pub namespace: String,
    pub reachable: bool,
    pub on_cluster_loss: OnClusterLoss,
    pub peers: Vec<String>,
    /// By zone id.
    pub zones: BTreeMap<String, ClusterZone>,
}

/// `[cluster]`: this agent's part in one zone's response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterZone {
    pub role: Role,
    pub leader: Option<String>,
    /// The leader key's create revision while this agent leads (the fencing token).
    pub fence: Option<i64>,
}

impl Status {
    /// Reads the document from the JSON the engine answers with.
    pub fn from_json(value: serde_json::Value) -> Result<Status, serde_json::Error> {
        serde_json::from_value(value)
    }

    /// The most severe zone level (`normal` without zones).
    pub fn worst_level(&self) -> ZoneLevel {
        self.zones
            .iter()
            .map(|z| z.level)
            .max()
            .unwrap_or(ZoneLevel::Normal)
    }
}

/// Small documents for unit tests of the readers (page, demo).
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub fn status(zones: Vec<Zone>) -> Status {
        Status {
            agent: "edge-1".into(),
            dry_run: false,
            event_log_writable: true,
            zones,
            feeds: Vec::new(),
            cluster: None,
        }
    }

    /// A zone without incident, steps or sensors.
    pub fn zone(id: &str, level: ZoneLevel, runbook: &str) -> Zone {
        Zone {
            id: id.into(),
            level,
            incident: None,
            runbook: runbook.into(),
            rehearsed_steps: Vec::new(),
            runbook_running: false,
            safe_to_cut_power: false,
            cause: None,
            started_at: None,
            finished_at: None,
            steps: None,
            sensors: Vec::new(),
            seconds_to_power_loss: None,
            power_loss_basis: None,
            prepare: None,
        }
    }

    pub fn sensor(id: &str, kind: Kind, state: SensorState, value: f64) -> Sensor {
        Sensor {
            id: id.into(),
            kind,
            state,
            value: Some(value),
            age_ms: 0,
            reason: Reason::Cleared,
            trend: Vec::new(),
        }
    }
}
