//! `alertmanager`: page people through Prometheus Alertmanager's v2 API: one alert per
//! incident, whose labels are the same whichever agent posts it, so Alertmanager merges
//! repeats into one alert and one notification; resolved when the incident ends.
//! Runner: `run.rs`.

use super::{check_http_url, check_template, Refs, StepConfig, StepInfo};
use crate::config::collect::Collector;
use crate::config::units::format_duration;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub mod run;

/// The `alertname` label unless `labels` sets another.
pub const DEFAULT_ALERTNAME: &str = "FirebreakIncident";

/// Labels the agent sets on every alert; `labels` may not set them.
pub const AGENT_LABELS: [&str; 3] = ["zone", "incident", "level"];

/// How long a posted alert lasts when no reset resolves it, unless `expires_after` says.
pub const DEFAULT_EXPIRES_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The keys of an `alertmanager` step as written.
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    pub url: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub expires_after: Option<String>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AlertmanagerStep {
    /// Alertmanager's base URL (with its route prefix, if it has one).
    pub url: url::Url,
    /// The configured labels, `alertname` included (values templated).
    pub labels: BTreeMap<String, String>,
    /// Extra annotations (values templated), over the agent's own.
    pub annotations: BTreeMap<String, String>,
    /// The alert's `endsAt`, from the time it is posted: an agent that never gets to
    /// resolve it (a lost machine) does not leave it firing for ever.
    pub expires_after: Duration,
    pub ca_file: Option<PathBuf>,
}

impl StepInfo for AlertmanagerStep {
    fn resolves_with_incident(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "alertmanager {} {{{}}} + zone, incident, level; agent as annotation (expires after {})",
            self.url,
            labels.join(", "),
            format_duration(self.expires_after)
        )
    }
}

/// Alertmanager's label and annotation names: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl StepConfig for AlertmanagerStep {
    type Raw = Raw;

    fn validate(c: &mut Collector, path: &str, s: Raw, _refs: &Refs) -> Option<Self> {
        let url = c
            .required_str(&format!("{path}.url"), &s.url)
            .and_then(|u| check_http_url(c, &format!("{path}.url"), u));
        if let Some(u) = &url {
            if u.query().is_some() || u.fragment().is_some() {
                c.err(
                    format!("{path}.url"),
                    "is Alertmanager's base URL: no query or fragment (the step adds /api/v2/alerts)",
                );
            }
        }
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_string(), DEFAULT_ALERTNAME.to_string());
        for (k, v) in s.labels.iter().flatten() {
            let at = format!("{path}.labels.{k}");
            if !is_label_name(k) || k.starts_with("__") {
                c.err(
                    &at,
                    format!("`{k}` is not an Alertmanager label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"),
                );
            } else if AGENT_LABELS.contains(&k.as_str()) {
                c.err(&at, format!("`{k}` is set by the agent on every alert"));
            } else if k == "agent" {
                // Design: the alert's labels are its identity, so they must be the same
                // whichever agent of a cluster posts it (a successor re-running the step, a
                // peer acting alone): the agent goes in the `agent` annotation.
                c.err(
                    &at,
                    "the agent that posts is the `agent` annotation, not a label: labels must be \
                     the same whichever agent posts the incident's alert, or Alertmanager \
                     counts two alerts",
                );
            }
            if v.is_empty() {
                c.err(&at, "must not be empty (Alertmanager drops empty labels)");
            }
            if v.contains("{{agent}}") {
                c.err(
                    &at,
                    "`{{agent}}` differs between the agents of a cluster: in a label it would \
                     make their alerts for one incident two alerts (use an annotation)",
                );
            }
            check_template(c, &at, v);
            labels.insert(k.clone(), v.clone());
        }
        let mut annotations = BTreeMap::new();
        for (k, v) in s.annotations.iter().flatten() {
            let at = format!("{path}.annotations.{k}");
            if !is_label_name(k) {
                c.err(
                    &at,
                    format!("`{k}` is not an Alertmanager annotation name ([a-zA-Z_][a-zA-Z0-9_]*)"),
                );
            }
            check_template(c, &at, v);
            annotations.insert(k.clone(), v.clone());
        }
        let expires_after = c.duration(
            &format!("{path}.expires_after"),
            &s.expires_after,
            DEFAULT_EXPIRES_AFTER,
        );
        if expires_after < Duration::from_secs(60) {
            c.err(
                format!("{path}.expires_after"),
                "must be at least 1m: the alert would end before anyone reads it",
            );
        }
        Some(AlertmanagerStep {
            url: url?,
            labels,
            annotations,
            expires_after,
            ca_file: s.ca_file.as_deref().map(PathBuf::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_label_name;

    #[test]
    fn label_names_follow_alertmanagers_grammar() {
        for ok in ["team", "_x", "a1_b"] {
            assert!(is_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a.b", "é"] {
            assert!(!is_label_name(bad), "{bad}");
        }
    }
}
