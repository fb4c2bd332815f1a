//! The incident journal: what each zone's current incident is and how far its runbook got,
//! on disk under `state_dir/incidents/`, so a restarted agent resumes the runbook at the
//! first unfinished step and never repeats a finished one.
//!
//! One JSON file per zone holds the open incident; every change is written atomically
//! (temp file, fsync, rename, fsync of the directory). A reset moves the file to
//! `incidents/closed/`.

use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("incident journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("incident journal {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    /// Dispatched; if the agent dies now, nobody knows whether it took effect.
    Started,
    Succeeded,
    Failed,
    /// A `should` step not run: power was expected to be lost first (reason in `error`).
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub status: StepStatus,
    #[serde(default)]
    pub verified: bool,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time (RFC 3339) the step ended, for the status page's timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The step's outcome is journaled but its event (`step_finished`, `step_skipped`) may
    /// not be in the event log yet: the agent journals first, writes the event, and clears
    /// this with its next journal write. A resumed run writes the event if it is missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unannounced: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub incident: String,
    pub zone: String,
    pub runbook: String,
    pub cause: String,
    pub dry_run: bool,
    pub started_at: String,
    pub steps: Vec<StepRecord>,
    /// Set once the runbook has ended: `Some(true)` = safe to cut power.
    #[serde(default)]
    pub safe_to_cut_power: Option<bool>,
    #[serde(default)]
    pub finished: bool,
    /// Wall time (RFC 3339) the runbook ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_by: Option<String>,
    /// The runbook's end is journaled but `runbook_finished` and the verdict may not be in
    /// the event log yet (the agent stopped in between); a restart writes what is missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verdict_unannounced: bool,
}

impl Incident {
    /// Index of the first step that has not succeeded, if the runbook is unfinished.
    pub fn resume_point(&self) -> Option<usize> {
        if self.finished {
            return None;
        }
        self.steps.iter().position(|s| {
            !matches!(
                s.status,
                StepStatus::Succeeded | StepStatus::Failed | StepStatus::Skipped
            )
        })
    }
}

#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

/// File-name-safe form of a zone id.
fn file_stem(zone: &str) -> String {
    zone.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Journal {
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        let dir = state_dir.join("incidents");
        for d in [dir.clone(), dir.join("closed")] {
            fs::create_dir_all(&d).map_err(|source| JournalError::Io {
                path: d.clone(),
                source,
            })?;
        }
        Ok(Journal { dir })
    }

    fn path(&self, zone: &str) -> PathBuf {
        self.dir.join(format!("{}.json", file_stem(zone)))
    }

    /// The open incident of a zone, if any.
    pub fn load(&self, zone: &str) -> Result<Option<Incident>, JournalError> {
        let path = self.path(zone);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| JournalError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(JournalError::Io { path, source }),
        }
    }

    /// Writes the incident atomically; returns once it is durable.
    pub fn save(&self, incident: &Incident) -> Result<(), JournalError> {
        let path = self.path(&incident.zone);
        let bytes = serde_json::to_vec_pretty(incident).unwrap_or_default();
        write_atomic(&path, &bytes)
    }

    /// Closes the zone's incident (operator reset): it moves to `closed/`.
    pub fn close(&self, incident: &Incident) -> Result<(), JournalError> {
        let closed = self
            .dir
            .join("closed")
            .join(format!("{}.json", file_stem(&incident.incident)));
        let bytes = serde_json::to_vec_pretty(incident).unwrap_or_default();
        write_atomic(&closed, &bytes)?;
        let open = self.path(&incident.zone);
        fs::remove_file(&open)
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|source| JournalError::Io { path: open, source })?;
        sync_dir(&self.dir)
    }

    /// Every incident, open ones first, newest first within each.
    pub fn all(&self) -> Vec<Incident> {
        let read = |dir: &Path| -> Vec<Incident> {
            let mut v: Vec<Incident> = fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .filter_map(|e| fs::read(e.path()).ok())
                .filter_map(|b| serde_json::from_slice(&b).ok())
                .collect();
            v.sort_by(|a: &Incident, b: &Incident| b.started_at.cmp(&a.started_at));
            v
        };
        let mut out = read(&self.dir);
        out.extend(read(&self.dir.join("closed")));
        out
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let io = |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    fs::rename(&tmp, path).map_err(io)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| JournalError::Io {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(zone: &str) -> Incident {
        Incident {
            incident: format!("{zone}-1"),
            zone: zone.into(),
            runbook: "rb".into(),
            cause: "fire".into(),
            dry_run: false,
            started_at: "2026-11-25T10:00:00.000Z".into(),
            steps: ["a", "b", "c"]
                .iter()
                .map(|n| StepRecord {
                    name: (*n).into(),
                    status: StepStatus::Pending,
                    verified: false,
                    attempts: 0,
                    error: None,
                    finished_at: None,
                    unannounced: false,
                })
                .collect(),
            safe_to_cut_power: None,
            finished: false,
            finished_at: None,
            reset_by: None,
            verdict_unannounced: false,
        }
    }

    #[test]
    fn saved_incident_survives_a_reopen_and_resumes_at_the_first_unfinished_step() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let mut inc = incident("b3/room");
        inc.steps[0].status = StepStatus::Succeeded;
        inc.steps[1].status = StepStatus::Started;
        j.save(&inc).unwrap();
        let again = Journal::open(dir.path())
            .unwrap()
            .load("b3/room")
            .unwrap()
            .unwrap();
        assert_eq!(again, inc);
        assert_eq!(again.resume_point(), Some(1));
    }

    #[test]
    fn closing_moves_the_incident_out_of_the_open_set() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        let inc = incident("z");
        j.save(&inc).unwrap();
        j.close(&inc).unwrap();
        assert_eq!(j.load("z").unwrap(), None);
        assert_eq!(j.all().len(), 1, "closed incidents stay listed");
    }

    #[test]
    fn a_corrupt_journal_is_an_error_not_a_silent_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        fs::write(dir.path().join("incidents/z.json"), b"{not json").unwrap();
        assert!(matches!(j.load("z"), Err(JournalError::Corrupt { .. })));
    }
}
