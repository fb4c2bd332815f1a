//! `pagerduty`: page the on-call through PagerDuty's Events API v2, with the incident id
//! as `dedup_key`, so that every trigger of one incident (a resumed runbook, a manual
//! re-run, a peer agent) lands on the one PagerDuty alert; resolved when the incident
//! ends. Runner: `run.rs`.

use super::{check_http_url, check_template, Refs, StepConfig, StepInfo};
use crate::config::collect::Collector;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub mod run;

/// PagerDuty's Events API v2 endpoint, when `url` is not given.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// `payload.severity` of the Events API v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }
}

/// The keys of a `pagerduty` step as written.
#[derive(Debug, Default, Deserialize)]
pub struct Raw {
    pub url: Option<String>,
    pub routing_key_file: Option<String>,
    pub severity: Option<String>,
    pub summary: Option<String>,
    pub source: Option<String>,
    pub component: Option<String>,
    pub group: Option<String>,
    pub class: Option<String>,
    pub custom_details: Option<BTreeMap<String, String>>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PagerdutyStep {
    pub url: url::Url,
    /// The integration's 32-character routing key, read at each send (it may be rotated).
    pub routing_key_file: PathBuf,
    pub severity: Severity,
    /// Templated; `None`: the agent's own summary.
    pub summary: Option<String>,
    /// Templated (default `{{zone}}`).
    pub source: String,
    /// Templated, optional.
    pub component: Option<String>,
    pub group: Option<String>,
    /// Templated (default `{{cause}}`).
    pub class: String,
    /// Templated values, over the agent's own details.
    pub custom_details: BTreeMap<String, String>,
    pub ca_file: Option<PathBuf>,
}

impl StepInfo for PagerdutyStep {
    fn describe(&self) -> String {
        format!(
            "pagerduty {} severity {} (dedup_key = the incident id)",
            self.url,
            self.severity.as_str()
        )
    }

    fn resolves_with_incident(&self) -> bool {
        true
    }

    fn secret_files(&self) -> Vec<(&'static str, PathBuf)> {
        vec![("routing_key_file", self.routing_key_file.clone())]
    }
}

impl StepConfig for PagerdutyStep {
    type Raw = Raw;

    fn validate(c: &mut Collector, path: &str, s: Raw, _refs: &Refs) -> Option<Self> {
        let url_path = format!("{path}.url");
        let url = match &s.url {
            None => url::Url::parse(DEFAULT_URL).ok(),
            Some(u) => c
                .required_str(&url_path, &s.url)
                .and_then(|_| check_http_url(c, &url_path, u)),
        };
        let routing_key_file = c
            .required_str(&format!("{path}.routing_key_file"), &s.routing_key_file)
            .map(PathBuf::from);
        let severity = match s.severity.as_deref() {
            None => Some(Severity::Critical),
            Some(v) => match crate::names::parse_or_list::<Severity>(v) {
                Ok(sev) => Some(sev),
                Err(e) => {
                    c.err(format!("{path}.severity"), e);
                    None
                }
            },
        };
        let mut text = |key: &str, v: &Option<String>| {
            if let Some(t) = v {
                if t.trim().is_empty() {
                    c.err(format!("{path}.{key}"), "must not be empty");
                }
                check_template(c, &format!("{path}.{key}"), t);
            }
            v.clone()
        };
        let summary = text("summary", &s.summary);
        let source = text("source", &s.source);
        let component = text("component", &s.component);
        let group = text("group", &s.group);
        let class = text("class", &s.class);
        for (k, v) in s.custom_details.iter().flatten() {
            check_template(c, &format!("{path}.custom_details.{k}"), v);
        }
        Some(PagerdutyStep {
            url: url?,
            routing_key_file: routing_key_file?,
            severity: severity?,
            summary,
            source: source.unwrap_or_else(|| "{{zone}}".into()),
            component,
            group,
            class: class.unwrap_or_else(|| "{{cause}}".into()),
            custom_details: s.custom_details.unwrap_or_default(),
            ca_file: s.ca_file.as_deref().map(PathBuf::from),
        })
    }
}
