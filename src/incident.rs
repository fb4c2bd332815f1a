//! Running a zone's runbook for one incident: steps in order, each journaled before and
//! after it runs, reported to the event log, and the verdict (safe to cut power or not).
//! Resuming after a restart skips finished steps and re-runs an interrupted step only when
//! it is idempotent.

use crate::clock::Clock;
use crate::config::Config;
use crate::detect::Cause;
use crate::events::{Event, EventLog};
use crate::journal::{Incident, Journal, StepRecord, StepStatus};
use crate::runbook::{self, StepContext, StepReport, TemplateVars};
use crate::sinks::influxdb::TelemetryTx;
use std::sync::Arc;
use std::time::Duration;

/// What incident runs share.
pub struct Shared {
    pub config: Arc<Config>,
    pub metrics: Arc<crate::sinks::prometheus::Metrics>,
    pub log: Arc<EventLog>,
    pub journal: Journal,
    pub clock: Arc<dyn Clock>,
    /// InfluxDB telemetry, when configured: every event written is also sent there.
    pub telemetry: Option<TelemetryTx>,
    /// MQTT status, when configured: every event written is also published there.
    pub status: Option<crate::sinks::mqtt::StatusTx>,
}

impl Shared {
    pub fn write(&self, event: &Event) {
        self.metrics.events.with_label_values(&[event.name()]).inc();
        let ts = self.clock.wall();
        if let Err(e) = self.log.write(ts, event) {
            // Failover goes on; the operator must hear about it.
            self.metrics
                .event_log_errors
                .with_label_values(&[event.name()])
                .inc();
            tracing::error!(error = %e, event = event.name(), "EVENT LOG WRITE FAILED");
        }
        if let Some(t) = &self.telemetry {
            t.event(&self.config.agent.name, ts, event);
        }
        if let Some(s) = &self.status {
            s.event(&self.config.agent.name, ts, event);
        }
    }

    pub fn save(&self, incident: &Incident) {
        if let Err(e) = self.journal.save(incident) {
            tracing::error!(error = %e, incident = %incident.incident, "INCIDENT JOURNAL WRITE FAILED: a restart could repeat or skip steps");
        }
    }
}

/// A new incident record for a zone, every step pending.
pub fn new_incident(shared: &Shared, zone: usize, cause: Cause, seq: u32) -> Incident {
    let config = &shared.config;
    let z = &config.zones[zone];
    let rb = &config.runbooks[z.runbook];
    let ts = crate::events::format_ts(shared.clock.wall());
    let compact: String = ts.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    Incident {
        incident: format!("{}-{}-{}", z.id, compact, seq),
        zone: z.id.clone(),
        runbook: rb.name.clone(),
        cause: cause.as_str().to_string(),
        dry_run: config.agent.dry_run || rb.dry_run,
        started_at: ts,
        steps: rb
            .steps
            .iter()
            .map(|s| StepRecord {
                name: s.name.clone(),
                status: StepStatus::Pending,
                verified: false,
                attempts: 0,
                error: None,
                finished_at: None,
            })
            .collect(),
        safe_to_cut_power: None,
        finished: false,
        finished_at: None,
        reset_by: None,
    }
}

/// Starts a new incident: journaled first, then announced (`runbook_started`, fsync'd),
/// then its runbook dispatched. Returns the incident id and the runbook's task.
pub fn dispatch(
    shared: Arc<Shared>,
    zone: usize,
    cause: Cause,
    seq: u32,
) -> (String, tokio::task::JoinHandle<()>) {
    let inc = new_incident(&shared, zone, cause, seq);
    let id = inc.incident.clone();
    shared.save(&inc);
    shared.write(&Event::RunbookStarted {
        runbook: inc.runbook.clone(),
        zone: inc.zone.clone(),
        incident: id.clone(),
        cause: cause.as_str(),
        dry_run: inc.dry_run,
        resumed: false,
    });
    (id, tokio::spawn(run(shared, zone, inc)))
}

fn vars(config: &Config, inc: &Incident, level: &str) -> TemplateVars {
    TemplateVars {
        agent: config.agent.name.clone(),
        zone: inc.zone.clone(),
        level: level.to_string(),
        incident: inc.incident.clone(),
        cause: inc.cause.clone(),
        runbook: inc.runbook.clone(),
    }
}

/// Runs (or resumes) the incident's runbook to its end. `runbook_started` has been written
/// by the caller.
pub async fn run(shared: Arc<Shared>, zone: usize, mut inc: Incident) {
    let config = shared.config.clone();
    let rb = &config.runbooks[config.zones[zone].runbook];
    let vars = vars(&config, &inc, "critical");
    let ctx = StepContext {
        config: &config,
        vars: &vars,
        dry_run: inc.dry_run,
    };
    let started = tokio::time::Instant::now();
    let mut budget_warned = false;
    for (i, step) in rb.steps.iter().enumerate() {
        let Some(rec) = inc.steps.get(i).cloned() else {
            break;
        };
        match rec.status {
            StepStatus::Succeeded | StepStatus::Failed => continue,
            StepStatus::Started if !step.action.is_idempotent() => {
                let err = runbook::StepError::Interrupted.to_string();
                finish_step(
                    &shared,
                    &mut inc,
                    i,
                    step,
                    &StepReport {
                        ok: false,
                        verified: false,
                        attempts: rec.attempts,
                        elapsed: Duration::ZERO,
                        error: Some(err),
                        detail: None,
                    },
                );
                if step.on_failure == crate::config::OnFailure::Abort {
                    break;
                }
                continue;
            }
            _ => {}
        }
        inc.steps[i].status = StepStatus::Started;
        shared.save(&inc);
        let report = runbook::run_step(step, &ctx).await;
        finish_step(&shared, &mut inc, i, step, &report);
        if let Some(budget) = rb.budget {
            if !budget_warned && started.elapsed() > budget {
                budget_warned = true;
                tracing::warn!(runbook = %rb.name, incident = %inc.incident, budget = ?budget, "runbook has overrun its budget");
                shared
                    .metrics
                    .runbook_over_budget
                    .with_label_values(&[&rb.name])
                    .inc();
                shared.write(&Event::RunbookOverBudget {
                    runbook: rb.name.clone(),
                    zone: inc.zone.clone(),
                    incident: inc.incident.clone(),
                    budget_ms: budget.as_millis() as u64,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
        if runbook::aborts(step, &report) {
            break;
        }
    }
    let ok = inc.steps.iter().all(|s| s.status == StepStatus::Succeeded);
    let mut reasons: Vec<String> = Vec::new();
    for s in &inc.steps {
        match s.status {
            StepStatus::Succeeded if s.verified => {}
            StepStatus::Succeeded => reasons.push(format!(
                "step `{}` was not verified{}",
                s.name,
                if inc.dry_run { " (dry run)" } else { "" }
            )),
            StepStatus::Failed => reasons.push(format!(
                "step `{}` failed: {}",
                s.name,
                s.error.as_deref().unwrap_or("unknown error")
            )),
            StepStatus::Pending | StepStatus::Started => {
                reasons.push(format!("step `{}` did not run (runbook aborted)", s.name))
            }
        }
    }
    shared
        .metrics
        .runbook_duration
        .with_label_values(&[&rb.name])
        .observe(started.elapsed().as_secs_f64());
    inc.finished = true;
    inc.finished_at = Some(crate::events::format_ts(shared.clock.wall()));
    inc.safe_to_cut_power = Some(reasons.is_empty());
    shared.save(&inc);
    shared.write(&Event::RunbookFinished {
        runbook: inc.runbook.clone(),
        incident: inc.incident.clone(),
        ok,
        elapsed_ms: started.elapsed().as_millis() as u64,
        zone: inc.zone.clone(),
    });
    if reasons.is_empty() {
        tracing::warn!(zone = %inc.zone, incident = %inc.incident, "SAFE TO CUT POWER");
        shared.write(&Event::SafeToCutPower {
            zone: inc.zone.clone(),
            incident: inc.incident.clone(),
        });
    } else {
        tracing::error!(zone = %inc.zone, incident = %inc.incident, ?reasons, "NOT safe to cut power");
        shared.write(&Event::NotSafeToCutPower {
            zone: inc.zone.clone(),
            incident: inc.incident.clone(),
            reasons,
        });
    }
}

fn finish_step(
    shared: &Shared,
    inc: &mut Incident,
    i: usize,
    step: &crate::config::Step,
    report: &StepReport,
) {
    let rec = &mut inc.steps[i];
    rec.status = if report.ok {
        StepStatus::Succeeded
    } else {
        StepStatus::Failed
    };
    rec.verified = report.verified;
    rec.attempts += report.attempts;
    rec.error = report.error.clone();
    rec.finished_at = Some(crate::events::format_ts(shared.clock.wall()));
    let outcome = if report.ok { "ok" } else { "failed" };
    shared
        .metrics
        .runbook_steps
        .with_label_values(&[&inc.runbook, &step.name, outcome])
        .inc();
    shared.save(inc);
    shared.write(&step_event(&inc.runbook, &inc.incident, step, report));
}

pub fn step_event(
    runbook: &str,
    incident: &str,
    step: &crate::config::Step,
    report: &StepReport,
) -> Event {
    Event::StepFinished {
        runbook: runbook.to_string(),
        incident: incident.to_string(),
        step: step.name.clone(),
        step_type: step.action.type_name(),
        ok: report.ok,
        attempts: report.attempts,
        elapsed_ms: report.elapsed.as_millis() as u64,
        error: report.error.clone(),
        verified: report.verified,
        detail: report.detail.clone(),
    }
}

/// One row of a drill's result table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DrillRow {
    pub step: String,
    #[serde(rename = "type")]
    pub step_type: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Runs the zone's runbook in dry run: every check that changes nothing. When `shared` is
/// given, the drill is also reported to the event log (cause `drill`).
pub async fn drill(
    config: &Config,
    zone: usize,
    incident: &str,
    shared: Option<&Shared>,
) -> Vec<DrillRow> {
    let z = &config.zones[zone];
    let rb = &config.runbooks[z.runbook];
    let vars = TemplateVars {
        agent: config.agent.name.clone(),
        zone: z.id.clone(),
        level: "drill".into(),
        incident: incident.to_string(),
        cause: Cause::Drill.as_str().into(),
        runbook: rb.name.clone(),
    };
    let ctx = StepContext {
        config,
        vars: &vars,
        dry_run: true,
    };
    if let Some(s) = shared {
        s.write(&Event::RunbookStarted {
            runbook: rb.name.clone(),
            zone: z.id.clone(),
            incident: incident.to_string(),
            cause: Cause::Drill.as_str(),
            dry_run: true,
            resumed: false,
        });
    }
    let started = tokio::time::Instant::now();
    let mut rows = Vec::new();
    for step in &rb.steps {
        let report = runbook::run_step(step, &ctx).await;
        if let Some(s) = shared {
            s.write(&step_event(&rb.name, incident, step, &report));
        }
        rows.push(DrillRow {
            step: step.name.clone(),
            step_type: step.action.type_name(),
            ok: report.ok,
            detail: report
                .error
                .clone()
                .or(report.detail.clone())
                .unwrap_or_default(),
        });
    }
    if let Some(s) = shared {
        s.write(&Event::RunbookFinished {
            runbook: rb.name.clone(),
            incident: incident.to_string(),
            ok: rows.iter().all(|r| r.ok),
            elapsed_ms: started.elapsed().as_millis() as u64,
            zone: z.id.clone(),
        });
    }
    rows
}

/// The drill table as text.
pub fn drill_table(zone: &str, rows: &[DrillRow]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let w = rows.iter().map(|r| r.step.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(s, "drill of zone {zone}:");
    let _ = writeln!(s, "  {:<4}  {:<w$}  {:<12}  detail", "", "step", "type");
    for r in rows {
        let _ = writeln!(
            s,
            "  {:<4}  {:<w$}  {:<12}  {}",
            if r.ok { "PASS" } else { "FAIL" },
            r.step,
            r.step_type,
            r.detail
        );
    }
    let failed = rows.iter().filter(|r| !r.ok).count();
    let _ = writeln!(s, "{} of {} step(s) pass", rows.len() - failed, rows.len());
    s
}
