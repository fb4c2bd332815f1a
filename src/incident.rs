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

mod coordinator;
pub use coordinator::{Alone, BoxFuture, Coordinator, Reopen};

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
    /// Expected power loss per zone, for skipping `should` steps.
    pub power: PowerBoard,
    /// Alone (the local journal only), or `[cluster]`'s etcd coordinator.
    pub coordinator: Arc<dyn Coordinator>,
    /// The running Modbus sources' connections, for `modbus_write` steps (the same
    /// registry across config reloads: the agent swaps its contents).
    pub modbus: Arc<crate::sources::modbus::Links>,
}

pub use crate::events::Stage;

/// The runbook and steps a stage runs for a zone (`None`: the zone has no prepare runbook).
pub fn stage_steps(
    config: &Config,
    zone: usize,
    stage: Stage,
) -> Option<(&crate::config::Runbook, &[crate::config::Step])> {
    let z = &config.zones[zone];
    match stage {
        Stage::Failover => {
            let rb = &config.runbooks[z.runbook];
            Some((rb, &rb.steps))
        }
        Stage::Prepare => {
            let rb = &config.runbooks[z.prepare_runbook?];
            Some((rb, &rb.steps))
        }
        Stage::Undo => {
            let rb = &config.runbooks[z.prepare_runbook?];
            Some((rb, &rb.undo_steps))
        }
    }
}

/// When each zone is expected to lose power: set by the engine at every tick, read by the
/// runbooks before each step.
// Design: the deadline is kept on tokio's clock, not the injected `Clock`, because that is
// the clock the runbooks time their steps with (timeouts, `wait`, elapsed); tests with
// paused tokio time then see one consistent virtual clock.
#[derive(Debug, Default)]
pub struct PowerBoard {
    deadlines: std::sync::Mutex<Vec<Option<tokio::time::Instant>>>,
}

impl PowerBoard {
    pub fn new(zones: usize) -> Self {
        PowerBoard {
            deadlines: std::sync::Mutex::new(vec![None; zones]),
        }
    }

    /// Power is expected to be lost `seconds` from now (`None`: unknown).
    pub fn set(&self, zone: usize, seconds: Option<f64>) {
        let at = seconds.map(|s| crate::clock::now() + Duration::from_secs_f64(s.clamp(0.0, 1e9)));
        let mut d = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        if zone >= d.len() {
            d.resize(zone + 1, None);
        }
        d[zone] = at;
    }

    /// Time left before the zone's expected power loss, if known.
    pub fn time_left(&self, zone: usize) -> Option<Duration> {
        let d = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        d.get(zone)
            .copied()
            .flatten()
            .map(|at| at.saturating_duration_since(crate::clock::now()))
    }
}

impl Shared {
    pub fn write(&self, event: &Event) {
        self.metrics.events.with_label_values(&[event.name()]).inc();
        let ts = self.clock.wall();
        // Looked up either way, so that the error counter of every event written is
        // exported (at 0) and a dashboard shows "0 errors", not "no data".
        let errors = self
            .metrics
            .event_log_errors
            .with_label_values(&[event.name()]);
        if let Err(e) = self.log.write(ts, event) {
            // Failover goes on; the operator must hear about it.
            errors.inc();
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
            self.metrics.journal_errors.inc();
            tracing::error!(error = %e, incident = %incident.incident, "INCIDENT JOURNAL WRITE FAILED: a restart could repeat or skip steps");
        }
    }

    /// `[cluster]`: records an incident that finished on a peer (no event of it is
    /// written here): the local journal, and the MQTT status's verdict.
    pub fn adopt(&self, incident: &Incident) {
        // Its events are the peer's to write: nothing is left to announce here.
        let mut incident = incident.clone();
        incident.verdict_unannounced = false;
        for s in &mut incident.steps {
            s.unannounced = false;
        }
        let incident = &incident;
        self.save(incident);
        if let Some(s) = &self.status {
            s.send(crate::sinks::mqtt::StatusMsg::Verdict {
                zone: incident.zone.clone(),
                incident: incident.incident.clone(),
                safe: incident.safe_to_cut_power == Some(true),
            });
        }
    }

    /// A failover's journal write: the local file, then the coordinator's record (under
    /// `[cluster]`, while this agent leads the zone, etcd, fenced by the leadership).
    /// Returns whether the run may go on: `false` when another agent has taken the zone
    /// over, or etcd is lost and the policy is `hold`.
    pub async fn persist(&self, zone: usize, incident: &Incident) -> bool {
        self.save(incident);
        self.coordinator.persist(self, zone, incident).await
    }
}

/// A new incident record for a zone's failover, every step pending.
pub fn new_incident(shared: &Shared, zone: usize, cause: Cause, seq: u32) -> Incident {
    new_stage_incident(shared, zone, cause, seq, Stage::Failover, None)
}

/// A new incident record for one stage of a zone's response, every step pending. `id`
/// continues an incident (the failover after its prepare); `None` opens a new one.
///
/// # Panics
/// When `stage` is not `Failover` and the zone has no prepare runbook.
pub fn new_stage_incident(
    shared: &Shared,
    zone: usize,
    cause: Cause,
    seq: u32,
    stage: Stage,
    id: Option<String>,
) -> Incident {
    let config = &shared.config;
    let z = &config.zones[zone];
    let (rb, steps) = stage_steps(config, zone, stage).expect("zone has a prepare runbook");
    let ts = crate::events::format_ts(shared.clock.wall());
    let compact: String = ts.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    Incident {
        incident: id.unwrap_or_else(|| format!("{}-{}-{}", z.id, compact, seq)),
        zone: z.id.clone(),
        runbook: rb.name.clone(),
        cause: cause.as_str().to_string(),
        dry_run: config.agent.dry_run || rb.dry_run,
        started_at: ts,
        steps: steps
            .iter()
            .map(|s| StepRecord {
                name: s.name.clone(),
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
    announce(&shared, &inc, Stage::Failover, false);
    (id, tokio::spawn(run(shared, zone, inc)))
}

/// A stage's run, as the engine keeps it.
pub struct Dispatched {
    pub incident: String,
    /// Returns whether every step that ran succeeded.
    pub task: tokio::task::JoinHandle<bool>,
    /// Becomes `true` when the run has ended.
    pub done: tokio::sync::watch::Receiver<bool>,
}

/// Starts one stage of a zone's response. The failover is journaled at once (a restart
/// resumes it even while it waits). A run that does not wait is announced before this
/// returns, so that event order follows decision order; one that waits for `wait_for`
/// (the prepare runbook's end) is announced when it starts. Prepare and undo runs live in
/// memory only.
pub fn dispatch_stage(
    shared: Arc<Shared>,
    zone: usize,
    cause: Cause,
    seq: u32,
    stage: Stage,
    id: Option<String>,
    wait_for: Option<tokio::sync::watch::Receiver<bool>>,
) -> Dispatched {
    let inc = new_stage_incident(&shared, zone, cause, seq, stage, id);
    let incident = inc.incident.clone();
    if stage == Stage::Failover {
        shared.save(&inc);
    }
    if wait_for.is_none() {
        announce(&shared, &inc, stage, false);
    }
    let (done_tx, done) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        if let Some(mut prepared) = wait_for {
            // An error means the prepare task is gone: nothing left to wait for.
            let _ = prepared.wait_for(|d| *d).await;
            announce(&shared, &inc, stage, false);
        }
        let ok = run_stage(shared, zone, inc, stage).await;
        let _ = done_tx.send(true);
        ok
    });
    Dispatched {
        incident,
        task,
        done,
    }
}

/// Writes `runbook_started` for a stage of an incident.
pub fn announce(shared: &Shared, inc: &Incident, stage: Stage, resumed: bool) {
    shared.write(&Event::RunbookStarted {
        runbook: inc.runbook.clone(),
        zone: inc.zone.clone(),
        incident: inc.incident.clone(),
        // A journal's cause that names no cause reads as fire, as `cause_str` has it.
        cause: Cause::parse(&inc.cause).unwrap_or(Cause::Fire),
        dry_run: inc.dry_run,
        resumed,
        stage,
    });
}

/// The cause as recorded in a journal, back to its name.
pub fn cause_str(cause: &str) -> &'static str {
    match cause {
        "power" => Cause::Power.as_str(),
        "manual" => Cause::Manual.as_str(),
        "drill" => Cause::Drill.as_str(),
        _ => Cause::Fire.as_str(),
    }
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

/// Runs (or resumes) the incident's failover runbook to its end. `runbook_started` has
/// been written by the caller.
pub async fn run(shared: Arc<Shared>, zone: usize, inc: Incident) {
    run_stage(shared, zone, inc, Stage::Failover).await;
}

/// Runs one stage's steps to their end; returns whether every step that ran succeeded.
/// Before each step, a `should` step is skipped (`step_skipped`) when the zone's expected
/// power loss comes before the remaining steps could finish. Only the failover is
/// journaled and ends in the safe-to-cut verdict.
pub async fn run_stage(shared: Arc<Shared>, zone: usize, mut inc: Incident, stage: Stage) -> bool {
    let config = shared.config.clone();
    let Some((rb, steps)) = stage_steps(&config, zone, stage) else {
        return false;
    };
    let journaled = stage == Stage::Failover;
    // Design: a macro, not a closure, because the write is async and borrows `inc`
    // mutably elsewhere; it returns early (no verdict) when the run must stop.
    macro_rules! save {
        ($inc:expr) => {
            if journaled && !shared.persist(zone, $inc).await {
                tracing::warn!(zone = %$inc.zone, incident = %$inc.incident, "runbook stopped: this agent no longer leads the zone");
                return false;
            }
        };
    }
    let vars = vars(&config, &inc, stage.level());
    let fence = if journaled {
        shared.coordinator.fence(zone)
    } else {
        None
    };
    let ctx = StepContext {
        config: &config,
        vars: &vars,
        dry_run: inc.dry_run,
        fence,
        modbus: Some(&shared.modbus),
    };
    let started = crate::clock::now();
    let mut budget_warned = false;
    for (i, step) in steps.iter().enumerate() {
        let Some(rec) = inc.steps.get(i).cloned() else {
            break;
        };
        match rec.status {
            StepStatus::Succeeded | StepStatus::Failed | StepStatus::Skipped => {
                if rec.unannounced {
                    announce_recorded(&shared, &inc, step);
                    inc.steps[i].unannounced = false;
                }
                continue;
            }
            StepStatus::Started if !step.action.is_idempotent() => {
                let err = runbook::StepError::Interrupted.to_string();
                let report = StepReport {
                    ok: false,
                    verified: false,
                    attempts: rec.attempts,
                    elapsed: Duration::ZERO,
                    error: Some(err),
                    detail: None,
                };
                record_step(&shared, &mut inc, i, step, &report);
                save!(&inc);
                shared.write(&step_event(&inc.runbook, &inc.incident, step, &report));
                inc.steps[i].unannounced = false;
                if step.on_failure == crate::config::OnFailure::Abort {
                    break;
                }
                continue;
            }
            _ => {}
        }
        if let Some(reason) = crate::staged::skip_reason(steps, i, shared.power.time_left(zone)) {
            tracing::warn!(runbook = %rb.name, incident = %inc.incident, step = %step.name, %reason, "should step skipped");
            inc.steps[i].status = StepStatus::Skipped;
            inc.steps[i].error = Some(reason.clone());
            inc.steps[i].unannounced = true;
            save!(&inc);
            shared.write(&Event::StepSkipped {
                runbook: rb.name.clone(),
                incident: inc.incident.clone(),
                step: step.name.clone(),
                reason,
            });
            inc.steps[i].unannounced = false;
            continue;
        }
        inc.steps[i].status = StepStatus::Started;
        save!(&inc);
        let report = runbook::run_step(step, &ctx).await;
        record_step(&shared, &mut inc, i, step, &report);
        save!(&inc);
        shared.write(&step_event(&inc.runbook, &inc.incident, step, &report));
        // Journaled with the next write: the event is out.
        inc.steps[i].unannounced = false;
        if let Some(budget) = rb.budget.filter(|_| stage != Stage::Undo) {
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
    let Verdict {
        ok,
        reasons,
        dry_run_steps,
    } = verdict(&inc, steps);
    shared
        .metrics
        .runbook_duration
        .with_label_values(&[&rb.name])
        .observe(started.elapsed().as_secs_f64());
    inc.finished = true;
    inc.finished_at = Some(crate::events::format_ts(shared.clock.wall()));
    if journaled {
        inc.safe_to_cut_power = Some(reasons.is_empty());
        inc.verdict_unannounced = true;
    }
    save!(&inc);
    shared.write(&Event::RunbookFinished {
        runbook: inc.runbook.clone(),
        incident: inc.incident.clone(),
        ok,
        elapsed_ms: started.elapsed().as_millis() as u64,
        zone: inc.zone.clone(),
    });
    if !journaled {
        // A prepare runbook never declares safe to cut power: the room is not evacuated.
        return ok;
    }
    write_verdict(&shared, &inc, reasons, dry_run_steps);
    // The verdict is out: a restart need not announce it (one more journal write per
    // incident).
    inc.verdict_unannounced = false;
    let _ = shared.persist(zone, &inc).await;
    ok
}

/// What an ended incident's paging steps need to resolve their pages.
#[derive(Debug, Clone)]
pub struct Ended {
    pub incident: String,
    pub cause: String,
    /// The incident ran in dry run: nothing was paged.
    pub dry_run: bool,
}

/// The incident has ended (operator reset, or its prepare undone): resolves the pages of
/// `stage`'s paging steps (`alertmanager`, `pagerduty`), each reported as `page_resolved`.
/// With `records` (the journaled failover), only the steps that ran, or began to, are
/// resolved; without (a prepare, which is not journaled), every paging step is: resolving
/// a page that was never raised changes nothing at either service. Steps configured
/// `dry_run = true` paged nobody and are left alone.
// Design: the page's identity is the incident (Alertmanager's labels, PagerDuty's
// dedup_key), not the agent: whichever agent of a cluster the operator resets the zone on
// resolves the page the leader raised.
pub async fn resolve_pages(
    shared: &Shared,
    zone: usize,
    ended: &Ended,
    stage: Stage,
    records: Option<&[StepRecord]>,
) {
    if ended.dry_run {
        return;
    }
    let config = shared.config.clone();
    let Some((rb, steps)) = stage_steps(&config, zone, stage) else {
        return;
    };
    let vars = TemplateVars {
        agent: config.agent.name.clone(),
        zone: config.zones[zone].id.clone(),
        level: stage.level().to_string(),
        incident: ended.incident.clone(),
        cause: ended.cause.clone(),
        runbook: rb.name.clone(),
    };
    let ctx = StepContext {
        config: &config,
        vars: &vars,
        dry_run: false,
        fence: None,
        modbus: Some(&shared.modbus),
    };
    for step in steps {
        let ran = records.is_none_or(|r| {
            r.iter().any(|rec| {
                rec.name == step.name
                    && matches!(
                        rec.status,
                        StepStatus::Started | StepStatus::Succeeded | StepStatus::Failed
                    )
            })
        });
        if step.dry_run || !ran {
            continue;
        }
        let Some(report) = runbook::resolve_step(step, &ctx).await else {
            continue;
        };
        if !report.ok {
            tracing::error!(zone = %vars.zone, incident = %vars.incident, step = %step.name, error = report.error.as_deref().unwrap_or(""), "PAGE NOT RESOLVED: resolve it by hand");
        }
        shared.write(&Event::PageResolved {
            zone: vars.zone.clone(),
            incident: vars.incident.clone(),
            runbook: rb.name.clone(),
            step: step.name.clone(),
            step_type: step.action.type_name().to_string(),
            ok: report.ok,
            attempts: report.attempts,
            error: report.error,
            detail: report.detail,
        });
    }
}

/// Writes `safe_to_cut_power` or `not_safe_to_cut_power`.
fn write_verdict(
    shared: &Shared,
    inc: &Incident,
    reasons: Vec<String>,
    dry_run_steps: Vec<String>,
) {
    if reasons.is_empty() {
        tracing::warn!(zone = %inc.zone, incident = %inc.incident, "SAFE TO CUT POWER");
        if !dry_run_steps.is_empty() {
            tracing::warn!(zone = %inc.zone, steps = ?dry_run_steps, "steps configured as dry run were only rehearsed and are not part of the verdict");
        }
        shared.write(&Event::SafeToCutPower {
            zone: inc.zone.clone(),
            incident: inc.incident.clone(),
            dry_run_steps,
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

/// A finished failover whose end may not have been announced: the agent stopped between
/// journaling the verdict and writing its events. Writes `runbook_finished` and the
/// verdict unless the event log has them, then journals that they are out.
pub fn announce_verdict_after_restart(shared: &Shared, zone: usize, inc: &mut Incident) {
    let config = shared.config.clone();
    let steps = &config.runbooks[config.zones[zone].runbook].steps;
    let Verdict {
        ok,
        reasons,
        dry_run_steps,
    } = verdict(inc, steps);
    let id = inc.incident.clone();
    if !shared
        .log
        .contains(&id, |e| matches!(e, Event::RunbookFinished { .. }))
    {
        tracing::info!(incident = %id, "writing the end of a runbook that finished just before a restart");
        shared.write(&Event::RunbookFinished {
            runbook: inc.runbook.clone(),
            incident: id.clone(),
            ok,
            // Not journaled; the event's time and the journal's `finished_at` tell.
            elapsed_ms: 0,
            zone: inc.zone.clone(),
        });
    }
    let announced = shared.log.contains(&id, |e| {
        matches!(
            e,
            Event::SafeToCutPower { .. } | Event::NotSafeToCutPower { .. }
        )
    });
    if !announced {
        write_verdict(shared, inc, reasons, dry_run_steps);
    }
    inc.verdict_unannounced = false;
    shared.save(inc);
}

/// What a runbook's end says: whether every step that ran succeeded, and why power may
/// not be cut (none: safe), with the steps only rehearsed (`dry_run = true`).
struct Verdict {
    ok: bool,
    reasons: Vec<String>,
    dry_run_steps: Vec<String>,
}

fn verdict(inc: &Incident, steps: &[crate::config::Step]) -> Verdict {
    let ok = inc
        .steps
        .iter()
        .all(|s| matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped));
    let mut reasons: Vec<String> = Vec::new();
    let mut dry_run_steps: Vec<String> = Vec::new();
    for (i, s) in inc.steps.iter().enumerate() {
        // A step configured `dry_run = true` is a rehearsal the operator asked for: it is
        // left out of the verdict and named in the `safe_to_cut_power` event instead.
        if s.status == StepStatus::Succeeded
            && !inc.dry_run
            && steps.get(i).is_some_and(|c| c.dry_run)
        {
            dry_run_steps.push(s.name.clone());
            continue;
        }
        match s.status {
            // A skipped step is a `should` step given up on purpose (its own event says
            // why): it does not stand in the way of cutting power.
            StepStatus::Succeeded if s.verified => {}
            StepStatus::Skipped => {}
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
    Verdict {
        ok,
        reasons,
        dry_run_steps,
    }
}

/// Records a step's outcome in the incident (the caller journals it, then writes the
/// `step_finished` event: journal first, so a restart never repeats an announced step).
/// The record stays `unannounced` until the event is written; a restart in between
/// writes it then ([`announce_recorded`]).
fn record_step(
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
    rec.unannounced = true;
    let outcome = if report.ok { "ok" } else { "failed" };
    shared
        .metrics
        .runbook_steps
        .with_label_values(&[&inc.runbook, &step.name, outcome])
        .inc();
}

/// A resumed run meets a step journaled as ended but maybe not announced: the agent
/// stopped between its journal write and its event. Writes the step's event unless the
/// event log already has it, so that every ended step is announced exactly once.
fn announce_recorded(shared: &Shared, inc: &Incident, step: &crate::config::Step) {
    let Some(rec) = inc.steps.iter().find(|r| r.name == step.name) else {
        return;
    };
    let logged = shared.log.contains(&inc.incident, |e| match e {
        Event::StepFinished { step: s, .. } | Event::StepSkipped { step: s, .. } => *s == step.name,
        _ => false,
    });
    if logged {
        return;
    }
    tracing::info!(incident = %inc.incident, step = %step.name, "writing the event of a step that ended just before a restart");
    let event = match rec.status {
        StepStatus::Skipped => Event::StepSkipped {
            runbook: inc.runbook.clone(),
            incident: inc.incident.clone(),
            step: step.name.clone(),
            reason: rec.error.clone().unwrap_or_default(),
        },
        _ => Event::StepFinished {
            runbook: inc.runbook.clone(),
            incident: inc.incident.clone(),
            step: step.name.clone(),
            step_type: step.action.type_name().to_string(),
            ok: rec.status == StepStatus::Succeeded,
            attempts: rec.attempts,
            elapsed_ms: 0,
            error: rec.error.clone(),
            verified: rec.verified,
            detail: Some(
                "written after a restart: the agent stopped between journaling this step \
                 and writing its event (elapsed unknown)"
                    .to_string(),
            ),
        },
    };
    shared.write(&event);
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
        step_type: step.action.type_name().to_string(),
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
        fence: None,
        modbus: shared.map(|s| &*s.modbus),
    };
    if let Some(s) = shared {
        s.write(&Event::RunbookStarted {
            runbook: rb.name.clone(),
            zone: z.id.clone(),
            incident: incident.to_string(),
            cause: Cause::Drill,
            dry_run: true,
            resumed: false,
            stage: Stage::Failover,
        });
    }
    let started = crate::clock::now();
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
