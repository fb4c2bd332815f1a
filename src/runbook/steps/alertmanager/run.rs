//! The `alertmanager` step: `POST /api/v2/alerts` with one alert, read back with
//! `GET /api/v2/alerts?filter=incident="..."`; resolved by posting the same labels with
//! `endsAt` in the past. A drill reads `GET /api/v2/status` and posts nothing.
//!
//! Design: Alertmanager knows an alert by its labels (their fingerprint). The labels here
//! are the configured ones plus `zone`, `incident` and `level`: the same for every agent
//! that posts the incident's page (a successor re-running an interrupted step, a peer
//! acting alone with etcd lost, a manual re-run), so Alertmanager merges the repeats into
//! the one alert it has and notifies once. Whatever differs between agents (the agent's
//! name) is an annotation: the last post's annotations win, and annotations never make a
//! second alert.

use super::AlertmanagerStep;
use crate::config::Step;
use crate::events::format_ts;
use crate::runbook::steps::http::run::client;
use crate::runbook::{StepContext, StepError, StepOutcome, TemplateVars};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// One alert as `POST /api/v2/alerts` takes it (Alertmanager's `postableAlert`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
}

/// The fields read of an alert as `GET /api/v2/alerts` returns it (`gettableAlert`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GettableAlert {
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub fingerprint: String,
    pub ends_at: String,
    pub status: AlertStatus,
    #[serde(default)]
    pub receivers: Vec<Receiver>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    /// `active`, `suppressed` (silenced or inhibited) or `unprocessed` (not routed yet).
    pub state: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Receiver {
    pub name: String,
}

/// The incident's alert labels: the configured ones (templated), then the agent's own.
pub fn labels(step: &AlertmanagerStep, vars: &TemplateVars) -> BTreeMap<String, String> {
    let mut l: BTreeMap<String, String> = step
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), vars.render(v)))
        .collect();
    l.insert("zone".into(), vars.zone.clone());
    l.insert("incident".into(), vars.incident.clone());
    l.insert("level".into(), vars.level.clone());
    l
}

/// The evidence people read: a summary, the cause, the runbook and the agent that posted,
/// then the configured annotations (templated), which may replace them.
pub fn annotations(step: &AlertmanagerStep, vars: &TemplateVars) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(
        "summary".to_string(),
        format!(
            "Zone {} is {} ({}): runbook {} is running, incident {}",
            vars.zone, vars.level, vars.cause, vars.runbook, vars.incident
        ),
    );
    a.insert("cause".to_string(), vars.cause.clone());
    a.insert("runbook".to_string(), vars.runbook.clone());
    a.insert("agent".to_string(), vars.agent.clone());
    for (k, v) in &step.annotations {
        a.insert(k.clone(), vars.render(v));
    }
    a
}

fn endpoint(step: &AlertmanagerStep, path: &str) -> String {
    format!("{}/api/v2/{path}", step.url.as_str().trim_end_matches('/'))
}

/// `name{k="v", ...}`, for details.
fn show(labels: &BTreeMap<String, String>) -> String {
    let name = labels.get("alertname").map(String::as_str).unwrap_or("");
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

/// A matcher value in Alertmanager's filter syntax (`label="value"`).
fn quote(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The body of an answer that is a success; the status and what Alertmanager said
/// otherwise (`StepError::HttpStatus`: 5xx and 429 are retried, the rest are not).
async fn body(resp: reqwest::Response, what: &str) -> Result<String, StepError> {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        return Ok(text);
    }
    let said: String = text.trim().chars().take(300).collect();
    Err(StepError::HttpStatus {
        status: status.as_u16(),
        detail: format!("{what} -> {status}: {said}"),
    })
}

async fn post(
    client: &reqwest::Client,
    step: &AlertmanagerStep,
    alert: &PostableAlert,
) -> Result<(), StepError> {
    let url = endpoint(step, "alerts");
    let resp = client
        .post(&url)
        .json(&[alert])
        .send()
        .await
        .map_err(|e| StepError::Http(format!("POST {url}: {e}")))?;
    body(resp, &format!("POST {url}")).await.map(drop)
}

/// The alert Alertmanager holds (firing or suppressed) whose labels are exactly `labels`.
async fn find(
    client: &reqwest::Client,
    step: &AlertmanagerStep,
    labels: &BTreeMap<String, String>,
) -> Result<Option<GettableAlert>, StepError> {
    let url = endpoint(step, "alerts");
    let incident = labels.get("incident").map(String::as_str).unwrap_or("");
    let filter = format!("incident={}", quote(incident));
    let resp = client
        .get(&url)
        .query(&[
            ("filter", filter.as_str()),
            ("active", "true"),
            ("silenced", "true"),
            ("inhibited", "true"),
            ("unprocessed", "true"),
        ])
        .send()
        .await
        .map_err(|e| StepError::Http(format!("GET {url}: {e}")))?;
    let text = body(resp, &format!("GET {url}")).await?;
    let alerts: Vec<GettableAlert> = serde_json::from_str(&text).map_err(|e| {
        StepError::Http(format!("GET {url}: not a list of alerts ({e}): {text:.200}"))
    })?;
    Ok(alerts.into_iter().find(|a| &a.labels == labels))
}

/// Posts the incident's alert (firing until `expires_after` from now) and reads it back.
pub async fn fire(
    step: &AlertmanagerStep,
    vars: &TemplateVars,
    timeout: Duration,
) -> Result<StepOutcome, StepError> {
    let client = client(step.ca_file.as_deref(), timeout)?;
    let now = crate::clock::wall_now();
    let labels = labels(step, vars);
    let alert = PostableAlert {
        labels: labels.clone(),
        annotations: annotations(step, vars),
        // Without startsAt, Alertmanager takes endsAt for it: the alert would start in
        // the future.
        starts_at: Some(format_ts(now)),
        ends_at: Some(format_ts(now + step.expires_after)),
    };
    post(&client, step, &alert).await?;
    match find(&client, step, &labels).await? {
        Some(a) => {
            let receivers: Vec<&str> = a.receivers.iter().map(|r| r.name.as_str()).collect();
            Ok(StepOutcome {
                verified: true,
                detail: format!(
                    "alert {} {} at {} (fingerprint {}, receivers: {}, ends {})",
                    show(&labels),
                    a.status.state,
                    step.url,
                    a.fingerprint,
                    if receivers.is_empty() {
                        "none yet".to_string()
                    } else {
                        receivers.join(", ")
                    },
                    a.ends_at
                ),
            })
        }
        None => Err(StepError::NotVerified(format!(
            "posted alert {}, but {} does not list it",
            show(&labels),
            endpoint(step, "alerts")
        ))),
    }
}

/// Resolves the incident's alert: the same labels with `endsAt` in the past, then checks
/// that Alertmanager no longer lists it as firing. Resolving an alert that was never
/// posted is harmless: Alertmanager does not notify a group for resolved alerts alone.
pub async fn resolve(
    step: &AlertmanagerStep,
    vars: &TemplateVars,
    timeout: Duration,
) -> Result<StepOutcome, StepError> {
    let client = client(step.ca_file.as_deref(), timeout)?;
    let labels = labels(step, vars);
    let alert = PostableAlert {
        labels: labels.clone(),
        annotations: annotations(step, vars),
        starts_at: None,
        ends_at: Some(format_ts(
            crate::clock::wall_now() - Duration::from_secs(1),
        )),
    };
    post(&client, step, &alert).await?;
    match find(&client, step, &labels).await? {
        None => Ok(StepOutcome {
            verified: true,
            detail: format!("alert {} resolved at {}", show(&labels), step.url),
        }),
        Some(a) => Err(StepError::NotVerified(format!(
            "posted the end of alert {}, but Alertmanager still lists it {} until {} \
             (is its clock ahead of ours?)",
            show(&labels),
            a.status.state,
            a.ends_at
        ))),
    }
}

/// What `GET /api/v2/status` says, in short: a drill's proof that Alertmanager answers.
pub async fn check(step: &AlertmanagerStep, timeout: Duration) -> Result<String, StepError> {
    let client = client(step.ca_file.as_deref(), timeout)?;
    let url = endpoint(step, "status");
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|e| StepError::Http(format!("{url} unreachable: {e}")))?;
    let text = body(resp, &format!("GET {url}")).await?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| StepError::Http(format!("GET {url}: not Alertmanager's status ({e})")))?;
    let version = v["versionInfo"]["version"].as_str().unwrap_or("?");
    let cluster = v["cluster"]["status"].as_str().unwrap_or("?");
    let peers = v["cluster"]["peers"].as_array().map_or(0, Vec::len);
    Ok(format!(
        "Alertmanager {version} answers at {} (cluster {cluster}, {peers} peer(s))",
        step.url
    ))
}

/// The step engine's entry: a drill checks, a run fires.
pub async fn execute(
    a: &AlertmanagerStep,
    step: &Step,
    ctx: &StepContext<'_>,
) -> Result<StepOutcome, StepError> {
    if ctx.dry_run {
        let status = check(a, step.timeout).await?;
        return Ok(StepOutcome {
            verified: false,
            detail: format!(
                "dry run: would post alert {}; {status}",
                show(&labels(a, ctx.vars))
            ),
        });
    }
    fire(a, ctx.vars, step.timeout).await
}

/// The incident has ended: its alert is resolved.
pub async fn execute_resolve(
    a: &AlertmanagerStep,
    step: &Step,
    ctx: &StepContext<'_>,
) -> Result<StepOutcome, StepError> {
    resolve(a, ctx.vars, step.timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(agent: &str) -> TemplateVars {
        TemplateVars {
            agent: agent.into(),
            zone: "b3".into(),
            level: "critical".into(),
            incident: "b3-20261125T103102417Z-1".into(),
            cause: "fire".into(),
            runbook: "evacuate-b3".into(),
        }
    }

    fn step() -> AlertmanagerStep {
        AlertmanagerStep {
            url: url::Url::parse("http://127.0.0.1:9093/").unwrap(),
            labels: [
                ("alertname".to_string(), "FirebreakIncident".to_string()),
                ("team".to_string(), "dc-ops".to_string()),
                ("room".to_string(), "{{zone}}".to_string()),
            ]
            .into(),
            annotations: [("runbook_url".to_string(), "https://wiki/{{runbook}}".to_string())]
                .into(),
            expires_after: Duration::from_secs(3600),
            ca_file: None,
        }
    }

    #[test]
    fn two_agents_give_one_label_set_and_differ_only_in_the_agent_annotation() {
        let (a, b) = (vars("pangyo-b3-a"), vars("pangyo-b3-b"));
        assert_eq!(labels(&step(), &a), labels(&step(), &b));
        let l = labels(&step(), &a);
        assert_eq!(
            l.keys().map(String::as_str).collect::<Vec<_>>(),
            ["alertname", "incident", "level", "room", "team", "zone"]
        );
        assert_eq!(l["room"], "b3");
        let (na, nb) = (annotations(&step(), &a), annotations(&step(), &b));
        assert_eq!(na["agent"], "pangyo-b3-a");
        assert_eq!(nb["agent"], "pangyo-b3-b");
        assert_eq!(na["runbook_url"], "https://wiki/evacuate-b3");
        assert!(na["summary"].contains("b3-20261125T103102417Z-1"));
    }

    #[test]
    fn the_api_paths_keep_a_route_prefix() {
        let mut s = step();
        s.url = url::Url::parse("http://am.example:9093/alertmanager").unwrap();
        assert_eq!(
            endpoint(&s, "alerts"),
            "http://am.example:9093/alertmanager/api/v2/alerts"
        );
        assert_eq!(
            endpoint(&step(), "status"),
            "http://127.0.0.1:9093/api/v2/status"
        );
    }

    #[test]
    fn filter_values_are_quoted_and_escaped() {
        assert_eq!(quote("b3-1"), "\"b3-1\"");
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
