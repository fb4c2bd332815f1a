//! The `pagerduty` step: one Events API v2 `trigger` with `dedup_key` = the incident id,
//! `resolve` with the same key when the incident ends. PagerDuty answers 202 with
//! `{status, message, dedup_key}`; the step checks that the key it names is ours (the
//! Events API has nothing to read back). 400 is an invalid event (not retried, PagerDuty's
//! message in the error); 429 and 5xx are retried.
//!
//! Design: PagerDuty keeps one alert per open `dedup_key` and merges later triggers of the
//! same key into it. The key is the incident id, which a resumed runbook, a manual re-run
//! and a peer agent that takes the incident over all share: however often the step runs
//! for one incident, the on-call is paged once.

use super::{PagerdutyStep, Severity};
use crate::config::Step;
use crate::events::format_ts;
use crate::runbook::steps::http::run::client;
use crate::runbook::{StepContext, StepError, StepOutcome, TemplateVars};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// PagerDuty's limit on `payload.summary`, in characters.
pub const SUMMARY_MAX: usize = 1024;

/// The length of a routing (integration) key.
pub const ROUTING_KEY_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    Trigger,
    Resolve,
}

/// An Events API v2 event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub routing_key: String,
    pub event_action: EventAction,
    pub dedup_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    pub summary: String,
    pub source: String,
    pub severity: Severity,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub custom_details: BTreeMap<String, String>,
}

/// PagerDuty's answer (202, and 400 with `errors`).
#[derive(Debug, Clone, Deserialize)]
pub struct Answer {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub dedup_key: Option<String>,
    #[serde(default)]
    pub errors: Vec<String>,
}

/// Reads the routing key (the file may be rotated between incidents: read it each time).
fn routing_key(step: &PagerdutyStep) -> Result<String, StepError> {
    let file = &step.routing_key_file;
    let text = std::fs::read_to_string(file).map_err(|source| StepError::Secret {
        path: file.display().to_string(),
        source,
    })?;
    let key = text.trim();
    if key.chars().count() != ROUTING_KEY_LEN || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(StepError::Failed {
            message: format!(
                "routing_key_file {}: not a PagerDuty integration key ({ROUTING_KEY_LEN} letters \
                 and digits; the file holds {} character(s))",
                file.display(),
                key.chars().count()
            ),
            retryable: false,
        });
    }
    Ok(key.to_string())
}

/// The summary people read first, cut to PagerDuty's 1024 characters.
pub fn summary(step: &PagerdutyStep, vars: &TemplateVars) -> String {
    let text = match &step.summary {
        Some(t) => vars.render(t),
        None => format!(
            "Zone {} is {} ({}): runbook {} is running, incident {}",
            vars.zone, vars.level, vars.cause, vars.runbook, vars.incident
        ),
    };
    text.chars().take(SUMMARY_MAX).collect()
}

/// The trigger for the incident: `dedup_key` is the incident id.
pub fn trigger(
    step: &PagerdutyStep,
    step_name: &str,
    vars: &TemplateVars,
    routing_key: String,
) -> Event {
    let mut details: BTreeMap<String, String> = [
        ("agent", &vars.agent),
        ("zone", &vars.zone),
        ("incident", &vars.incident),
        ("level", &vars.level),
        ("cause", &vars.cause),
        ("runbook", &vars.runbook),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect();
    details.insert("step".into(), step_name.to_string());
    for (k, v) in &step.custom_details {
        details.insert(k.clone(), vars.render(v));
    }
    let render = |t: &Option<String>| t.as_ref().map(|t| vars.render(t));
    Event {
        routing_key,
        event_action: EventAction::Trigger,
        dedup_key: vars.incident.clone(),
        payload: Some(Payload {
            summary: summary(step, vars),
            source: vars.render(&step.source),
            severity: step.severity,
            timestamp: format_ts(crate::clock::wall_now()),
            component: render(&step.component),
            group: render(&step.group),
            class: Some(vars.render(&step.class)),
            custom_details: details,
        }),
        client: Some("Firebreak".into()),
    }
}

/// Sends one event; PagerDuty's answer when it accepted it.
async fn send(
    step: &PagerdutyStep,
    event: &Event,
    timeout: Duration,
) -> Result<Answer, StepError> {
    let client = client(step.ca_file.as_deref(), timeout)?;
    let url = step.url.as_str();
    let action = match event.event_action {
        EventAction::Trigger => "trigger",
        EventAction::Resolve => "resolve",
    };
    let resp = client
        .post(url)
        .json(event)
        .send()
        .await
        .map_err(|e| StepError::Http(format!("{action} to {url}: {e}")))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let answer: Option<Answer> = serde_json::from_str(&text).ok();
    let said = || match &answer {
        Some(a) if !a.errors.is_empty() => format!("{}: {}", a.message, a.errors.join("; ")),
        Some(a) if !a.message.is_empty() => a.message.clone(),
        _ => text.trim().chars().take(300).collect(),
    };
    match status {
        200..=299 => answer.ok_or_else(|| StepError::Failed {
            message: format!("{action} to {url} -> {status}, but the answer is not PagerDuty's: {text:.200}"),
            retryable: false,
        }),
        400 => Err(StepError::Failed {
            message: format!("PagerDuty refused the {action} as invalid (400): {}", said()),
            retryable: false,
        }),
        // 429 (rate limited) and 5xx are retried (`StepError::HttpStatus`); the rest, a
        // wrong URL or a refused key, are not.
        _ => Err(StepError::HttpStatus {
            status,
            detail: format!("{action} to {url} -> {status}: {}", said()),
        }),
    }
}

/// PagerDuty's answer must name our key: otherwise the page went somewhere we cannot
/// resolve. Not retried: a receiver that does not keep our key would open one more alert
/// per attempt.
fn check_key(answer: &Answer, ours: &str) -> Result<(), StepError> {
    match answer.dedup_key.as_deref() {
        Some(k) if k == ours => Ok(()),
        other => Err(StepError::Failed {
            message: format!(
                "not verified: PagerDuty answered dedup_key {other:?}, not the incident id {ours:?}"
            ),
            retryable: false,
        }),
    }
}

/// Triggers the incident's page.
pub async fn fire(
    step: &PagerdutyStep,
    step_name: &str,
    vars: &TemplateVars,
    timeout: Duration,
) -> Result<StepOutcome, StepError> {
    let event = trigger(step, step_name, vars, routing_key(step)?);
    let answer = send(step, &event, timeout).await?;
    check_key(&answer, &event.dedup_key)?;
    Ok(StepOutcome {
        verified: true,
        detail: format!(
            "PagerDuty accepted the trigger (dedup_key {}, severity {}): {}",
            event.dedup_key,
            step.severity.as_str(),
            answer.message
        ),
    })
}

/// Resolves the incident's page (same `dedup_key`). PagerDuty accepts a resolve of a key
/// it has no open alert for, and ignores it.
pub async fn resolve(
    step: &PagerdutyStep,
    vars: &TemplateVars,
    timeout: Duration,
) -> Result<StepOutcome, StepError> {
    let event = Event {
        routing_key: routing_key(step)?,
        event_action: EventAction::Resolve,
        dedup_key: vars.incident.clone(),
        payload: None,
        client: Some("Firebreak".into()),
    };
    let answer = send(step, &event, timeout).await?;
    check_key(&answer, &event.dedup_key)?;
    Ok(StepOutcome {
        verified: true,
        detail: format!(
            "PagerDuty accepted the resolve (dedup_key {}): {}",
            event.dedup_key, answer.message
        ),
    })
}

/// A drill: the routing key is readable and well formed, the endpoint answers HTTP. Sends
/// no event (the Events API has no way to check a key without paging).
pub async fn check(step: &PagerdutyStep, timeout: Duration) -> Result<String, StepError> {
    routing_key(step)?;
    let client = client(step.ca_file.as_deref(), timeout)?;
    let url = step.url.as_str();
    let resp = client
        .head(url)
        .send()
        .await
        .map_err(|e| StepError::Http(format!("{url} unreachable: {e}")))?;
    Ok(format!(
        "the routing key is well formed; {url} answers ({})",
        resp.status()
    ))
}

/// The step engine's entry: a drill checks, a run triggers.
pub async fn execute(
    p: &PagerdutyStep,
    step: &Step,
    ctx: &StepContext<'_>,
) -> Result<StepOutcome, StepError> {
    if ctx.dry_run {
        let checked = check(p, step.timeout).await?;
        return Ok(StepOutcome {
            verified: false,
            detail: format!(
                "dry run: would trigger dedup_key {} (severity {}); {checked}",
                ctx.vars.incident,
                p.severity.as_str()
            ),
        });
    }
    fire(p, &step.name, ctx.vars, step.timeout).await
}

/// The incident has ended: its page is resolved.
pub async fn execute_resolve(
    p: &PagerdutyStep,
    step: &Step,
    ctx: &StepContext<'_>,
) -> Result<StepOutcome, StepError> {
    resolve(p, ctx.vars, step.timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step() -> PagerdutyStep {
        PagerdutyStep {
            url: url::Url::parse(super::super::DEFAULT_URL).unwrap(),
            routing_key_file: "/nonexistent".into(),
            severity: Severity::Critical,
            summary: None,
            source: "{{zone}}".into(),
            component: Some("battery room {{zone}}".into()),
            group: None,
            class: "{{cause}}".into(),
            custom_details: [("site".to_string(), "pangyo".to_string())].into(),
            ca_file: None,
        }
    }

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

    #[test]
    fn a_trigger_carries_the_incident_as_dedup_key_and_the_evidence_in_its_payload() {
        let e = trigger(&step(), "page", &vars("a"), "k".repeat(32));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event_action"], "trigger");
        assert_eq!(v["dedup_key"], "b3-20261125T103102417Z-1");
        assert_eq!(v["payload"]["severity"], "critical");
        assert_eq!(v["payload"]["source"], "b3");
        assert_eq!(v["payload"]["component"], "battery room b3");
        assert_eq!(v["payload"]["class"], "fire");
        assert!(v["payload"].get("group").is_none());
        assert_eq!(v["payload"]["custom_details"]["agent"], "a");
        assert_eq!(v["payload"]["custom_details"]["site"], "pangyo");
        assert_eq!(v["payload"]["custom_details"]["step"], "page");
        // Two agents, one incident: one key.
        assert_eq!(
            trigger(&step(), "page", &vars("b"), "k".repeat(32)).dedup_key,
            e.dedup_key
        );
    }

    #[test]
    fn a_long_summary_is_cut_to_pagerdutys_limit() {
        let mut s = step();
        s.summary = Some("é".repeat(2000));
        assert_eq!(summary(&s, &vars("a")).chars().count(), SUMMARY_MAX);
    }

    #[test]
    fn an_answer_naming_another_key_is_not_ours() {
        let a = Answer {
            status: "success".into(),
            message: "Event processed".into(),
            dedup_key: Some("other".into()),
            errors: vec![],
        };
        assert!(check_key(&a, "b3-1").is_err());
        assert!(check_key(&a, "other").is_ok());
    }
}
