//! The engine: what the agent's loop keeps between wake-ups (open incidents, runbook and
//! prepare tasks, the staged response's state) and what it does with the detection core's
//! outputs, ticks, API commands and reloads. The decisions are made elsewhere and purely
//! (`crate::staged`'s effects, shared with replay; alone or clustered behind
//! `Shared::coordinator`); here they become runbook tasks, events, metrics and status
//! documents. Everything the engine does is in this file.

use super::reload::restart_only_changes;
use crate::api::{self, ApiCommand, Refusal};
use crate::config::{self, Config};
use crate::detect::{Cause, Detector, Output, SensorState};
use crate::events::{Event, UndoneBy};
use crate::incident::{self, PowerBoard, Shared, Stage};
use crate::journal::StepStatus;
use crate::sinks::influxdb::{self as influx, Telemetry};
use crate::sinks::mqtt::{StatusMsg, ZoneStatus};
use crate::staged::{Effect, Phase, Stager};
use crate::systemd::Notifier;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub(super) struct Engine {
    shared: Arc<Shared>,
    /// Failover runbook tasks by zone index.
    pub(super) runs: HashMap<usize, tokio::task::JoinHandle<bool>>,
    /// Open (not reset) incident id by zone index.
    open: HashMap<usize, String>,
    seq: u32,
    drills: u32,
    /// Sources' own counters, exported at scrape time.
    source_metrics: Vec<Arc<crate::sources::metrics::SourceMetrics>>,
    sink_stats: Option<Arc<influx::Stats>>,
    status_stats: Option<Arc<crate::sinks::mqtt::StatusStats>>,
    /// Short per-sensor history for the status page.
    pub(super) trends: api::trend::Trends,
    /// Staged response: prepare at alarm, failover at critical, undo after the cooldown.
    stager: Stager,
    /// Prepare runbooks by zone index (kept after their undo, for the status).
    prepares: HashMap<usize, PrepareRt>,
    /// The expected power loss last sent to the MQTT status, by zone.
    power_sent: Vec<Option<(f64, &'static str)>>,
    /// Sources' connection state as last written (`source_state`), once first connected.
    sources_up: HashMap<String, bool>,
    /// The power map's feeds already announced safe (`feed_safe_to_cut`).
    feeds: crate::feeds::Announcer,
}

/// A zone's prepare runbook in the current incident.
struct PrepareRt {
    incident: String,
    runbook: String,
    task: tokio::task::JoinHandle<bool>,
    done: tokio::sync::watch::Receiver<bool>,
    /// Its undo has been started (cooldown or reset).
    undone: bool,
    /// It ran on this agent (always without `[cluster]`; under `[cluster]` only on the
    /// zone's leader): its undo runs here too.
    ran: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Brings a Prometheus counter up to a component's own running total.
fn catch_up(counter: &prometheus::IntCounter, total: u64) {
    let have = counter.get();
    if total > have {
        counter.inc_by(total - have);
    }
}

impl Engine {
    pub(super) fn new(
        shared: Arc<Shared>,
        source_metrics: Vec<Arc<crate::sources::metrics::SourceMetrics>>,
        sink_stats: Option<Arc<influx::Stats>>,
        status_stats: Option<Arc<crate::sinks::mqtt::StatusStats>>,
    ) -> Engine {
        let config = shared.config.clone();
        Engine {
            shared,
            runs: HashMap::new(),
            open: HashMap::new(),
            seq: 0,
            drills: 0,
            source_metrics,
            sink_stats,
            status_stats,
            trends: api::trend::Trends::new(
                config.sensors.len(),
                api::trend::EVERY_NS,
                api::trend::POINTS,
            ),
            stager: Stager::from_config(&config),
            prepares: HashMap::new(),
            power_sent: vec![None; config.zones.len()],
            sources_up: HashMap::new(),
            feeds: crate::feeds::Announcer::default(),
        }
    }

    /// Whether each zone (by index) has an open incident whose failover verified: safe to
    /// cut its power. Read from the journal (under `[cluster]`, the incident a peer ran).
    fn zones_safe(&self) -> Vec<bool> {
        self.shared
            .config
            .zones
            .iter()
            .enumerate()
            .map(|(zi, z)| {
                self.open.contains_key(&zi)
                    && self
                        .shared
                        .journal
                        .load(&z.id)
                        .ok()
                        .flatten()
                        .and_then(|i| i.safe_to_cut_power)
                        .unwrap_or(false)
            })
            .collect()
    }

    /// The power map now.
    fn feed_states(&self) -> Vec<crate::feeds::FeedState> {
        crate::feeds::evaluate(&self.shared.config, &self.zones_safe())
    }

    /// Writes `feed_safe_to_cut` for each feed that became safe since the last tick.
    /// `starting`: after a restart, feeds already safe were announced before.
    fn announce_feeds(&mut self, starting: bool) {
        if self.shared.config.feeds.is_empty() {
            return;
        }
        let states = self.feed_states();
        if starting {
            self.feeds = crate::feeds::Announcer::new(&states);
            return;
        }
        let newly: Vec<crate::feeds::FeedState> = self
            .feeds
            .newly_safe(&states)
            .into_iter()
            .cloned()
            .collect();
        for f in newly {
            let incidents = f
                .zones
                .iter()
                .filter_map(|z| self.shared.journal.load(z).ok().flatten())
                .map(|i| i.incident)
                .collect();
            tracing::warn!(feed = %f.id, description = %f.description, "FEED SAFE TO CUT");
            self.write(&Event::FeedSafeToCut {
                feed: f.id,
                description: f.description,
                zones: f.zones,
                incidents,
            });
        }
    }

    fn write(&self, event: &Event) {
        self.shared.write(event);
    }

    fn zone_index(&self, id: &str) -> Option<usize> {
        self.shared.config.zones.iter().position(|z| z.id == id)
    }

    /// Incidents left open by a previous run: latch their zones, resume unfinished runbooks.
    pub(super) fn resume_open_incidents(&mut self, detector: &mut Detector) {
        let config = self.shared.config.clone();
        for (zi, z) in config.zones.iter().enumerate() {
            let inc = match self.shared.journal.load(&z.id) {
                Ok(Some(inc)) => inc,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(zone = %z.id, error = %e, "cannot read the zone's incident journal; starting without it");
                    continue;
                }
            };
            detector.latch(zi as u32);
            // The zone has failed over: no prepare or second failover in this incident.
            let _ = self.stager.critical(zi as u32);
            self.open.insert(zi, inc.incident.clone());
            if inc.steps.len() != config.runbooks[z.runbook].steps.len()
                || inc.runbook != config.runbooks[z.runbook].name
            {
                tracing::error!(zone = %z.id, incident = %inc.incident, "the zone's runbook changed since the incident started; not resuming it (reset the zone)");
                continue;
            }
            if inc.resume_point().is_none() {
                tracing::warn!(zone = %z.id, incident = %inc.incident, "zone has a finished incident; it stays critical until reset");
                if inc.verdict_unannounced {
                    let mut inc = inc;
                    crate::incident::announce_verdict_after_restart(&self.shared, zi, &mut inc);
                }
                continue;
            }
            tracing::warn!(zone = %z.id, incident = %inc.incident, "resuming an unfinished runbook");
            // Under `[cluster]` the zone's leader resumes it: this agent, or a peer that
            // took over.
            let shared = self.shared.clone();
            let run = shared.coordinator.clone().resume(shared, zi, inc, None);
            self.runs.insert(zi, run);
        }
        self.announce_feeds(true);
    }

    /// The detection core's outputs, through the staged response's decisions
    /// (`Stager::respond`, shared with replay), carried out in order.
    pub(super) fn handle(&mut self, detector: &mut Detector) {
        let outputs: Vec<Output> = detector.drain().collect();
        if outputs.is_empty() {
            return;
        }
        // A runbook started now reads the expected power loss before its first step.
        self.update_power(detector);
        let now = self.shared.clock.mono();
        for effect in self.stager.respond(&outputs, now) {
            self.apply(effect);
        }
    }

    /// Carries out one effect of the staged response; a failover returns its incident.
    fn apply(&mut self, effect: Effect<'_>) -> Option<String> {
        match effect {
            Effect::Record(o) => {
                self.record(o);
                None
            }
            Effect::Prepare { zone, cause } => {
                self.start_prepare(zone as usize, cause);
                None
            }
            Effect::Failover {
                zone,
                cause,
                wait_for_prepare,
            } => Some(self.start_failover(zone as usize, cause, wait_for_prepare)),
            Effect::Undo { zone } => {
                self.start_undo(zone as usize, UndoneBy::Cooldown);
                None
            }
        }
    }

    /// A sensor state or zone level change: its event (and the zone's level telemetry).
    fn record(&self, o: &Output) {
        if let Output::Zone { zone, from, to, .. } = o {
            tracing::warn!(zone = %self.shared.config.zones[*zone as usize].id, from = from.as_str(), to = to.as_str(), "zone level changed");
            if let Some(t) = &self.shared.telemetry {
                t.send(Telemetry::Zone {
                    zone: *zone,
                    ts_ms: influx::wall_ms(self.shared.clock.wall()),
                    level: *to,
                });
            }
        }
        if let Some(event) = crate::events::from_output(&self.shared.config, o) {
            self.write(&event);
        }
    }

    /// Manual failover: the zone's prepare runbook if it has one and that has not run in
    /// this incident, then its failover; or, when its incident is open, the steps that
    /// did not succeed (`retry_failed`).
    fn start_runbook(&mut self, zone: usize, cause: Cause) -> Result<String, Refusal> {
        if let Some(open) = self.open.get(&zone).cloned() {
            return self.retry_failed(zone, &open);
        }
        let mut id = None;
        for effect in self.stager.fail_over(zone as u32, cause) {
            id = self.apply(effect).or(id);
        }
        id.ok_or_else(|| Refusal::Conflict("the zone has already failed over".into()))
    }

    /// Manual failover of a zone whose incident is open: when its failover runbook
    /// finished without being safe to cut power (a peer was down, a step failed), the
    /// steps that did not succeed run again in the same incident; succeeded steps are not
    /// repeated. Anything else is a conflict.
    fn retry_failed(&mut self, zone: usize, open: &str) -> Result<String, Refusal> {
        let conflict = |why: String| Err(Refusal::Conflict(why));
        if self.runs.get(&zone).is_some_and(|h| !h.is_finished()) {
            return conflict(format!("the runbook of incident {open} is still running"));
        }
        let config = self.shared.config.clone();
        let z = &config.zones[zone];
        let mut inc = match self.shared.journal.load(&z.id) {
            // Under `[cluster]` the journal holds the incident the zone's leader opened,
            // which is the zone's incident for every agent.
            Ok(Some(inc)) if self.shared.coordinator.is_zone_incident(&inc, open) => {
                self.open.insert(zone, inc.incident.clone());
                inc
            }
            Ok(_) => {
                return conflict(format!(
                    "zone has an open incident {open} without a failover record; reset it first"
                ))
            }
            Err(e) => return conflict(format!("cannot read the incident journal: {e}")),
        };
        let open = inc.incident.clone();
        let open = open.as_str();
        if !inc.finished {
            return conflict(format!(
                "incident {open} has an unfinished runbook that is not running (the runbook \
                 changed since it started?); reset it first"
            ));
        }
        if inc.safe_to_cut_power == Some(true) {
            return conflict(format!(
                "zone already failed over in incident {open} (safe to cut power); reset it first"
            ));
        }
        let reopen = incident::Reopen {
            finished_at: inc.finished_at.clone(),
        };
        let retried: Vec<String> = inc
            .steps
            .iter_mut()
            .filter(|s| !matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped))
            .map(|s| {
                s.status = StepStatus::Pending;
                s.error = None;
                s.finished_at = None;
                s.name.clone()
            })
            .collect();
        inc.finished = false;
        inc.finished_at = None;
        inc.safe_to_cut_power = None;
        self.shared.save(&inc);
        tracing::warn!(zone = %z.id, incident = %open, steps = ?retried, "manual failover: running the steps that did not succeed again");
        // Under `[cluster]` the zone's leader runs them (this agent once it wins the
        // zone), once for the cluster, however many agents were asked.
        let shared = self.shared.clone();
        let run = shared
            .coordinator
            .clone()
            .resume(shared, zone, inc, Some(reopen));
        self.runs.insert(zone, run);
        Ok(open.to_string())
    }

    pub(super) fn command(&mut self, cmd: ApiCommand, detector: &mut Detector) {
        match cmd {
            ApiCommand::Status { reply } => {
                let _ = reply.send(self.status(detector));
            }
            ApiCommand::RefreshMetrics { reply } => {
                self.refresh_metrics(detector);
                let _ = reply.send(());
            }
            ApiCommand::Failover { zone, reply } => {
                let r = match self.zone_index(&zone) {
                    None => Err(Refusal::UnknownZone(zone)),
                    Some(zi) => {
                        let r = self.start_runbook(zi, Cause::Manual);
                        if r.is_ok() {
                            detector.latch(zi as u32);
                            tracing::warn!(zone = %zone, "manual failover requested");
                        }
                        r
                    }
                };
                let _ = reply.send(r);
            }
            ApiCommand::Reset { zone, by, reply } => {
                let r = match self.zone_index(&zone) {
                    None => Err(Refusal::UnknownZone(zone)),
                    Some(zi) => self.reset(zi, &by, detector),
                };
                let _ = reply.send(r);
            }
            ApiCommand::Drill { zone, reply } => match self.zone_index(&zone) {
                None => {
                    let _ = reply.send(Err(Refusal::UnknownZone(zone)));
                }
                Some(zi) => {
                    self.drills += 1;
                    let id = format!("drill-{}-{}", zone, self.drills);
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        let rows = incident::drill(&shared.config, zi, &id, Some(&shared)).await;
                        let _ = reply.send(Ok(rows));
                    });
                }
            },
        }
    }

    fn reset(&mut self, zone: usize, by: &str, detector: &mut Detector) -> Result<String, Refusal> {
        if self.runs.get(&zone).is_some_and(|h| !h.is_finished()) {
            return Err(Refusal::Conflict(
                "the zone's runbook is still running; reset when it has finished".into(),
            ));
        }
        let Some(mut id) = self.open.remove(&zone) else {
            return self.reset_prepare(zone, by);
        };
        // After a failover the operator owns the way back: the prepare is not undone.
        let _ = self.stager.reset(zone as u32);
        // A prepare of this incident ran (here or, `[cluster]`, on the zone's leader).
        let prepared = self.prepares.remove(&zone).is_some_and(|p| !p.undone);
        let zone_id = self.shared.config.zones[zone].id.clone();
        let mut ended = None;
        match self.shared.journal.load(&zone_id) {
            Ok(Some(mut inc)) => {
                // Under `[cluster]` the journal holds the incident the zone's leader opened.
                id = inc.incident.clone();
                inc.reset_by = Some(by.to_string());
                if let Err(e) = self.shared.journal.close(&inc) {
                    tracing::error!(error = %e, "INCIDENT JOURNAL WRITE FAILED on reset");
                }
                ended = Some(inc.clone());
                self.shared.coordinator.clone().close(zone, inc);
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "incident journal unreadable on reset"),
        }
        self.runs.remove(&zone);
        self.write(&Event::IncidentReset {
            zone: zone_id,
            incident: id.clone(),
            by: by.to_string(),
        });
        detector.reset(zone as u32, self.shared.clock.mono());
        if let Some(inc) = ended {
            // The incident is over: its pages are resolved (after `incident_reset`).
            let shared = self.shared.clone();
            let end = incident::Ended {
                incident: inc.incident.clone(),
                cause: inc.cause.clone(),
                dry_run: inc.dry_run,
            };
            let prepare_dry_run = incident::stage_steps(&shared.config, zone, Stage::Prepare)
                .is_some_and(|(rb, _)| rb.dry_run || shared.config.agent.dry_run);
            tokio::spawn(async move {
                if prepared {
                    let end = incident::Ended {
                        dry_run: prepare_dry_run,
                        ..end.clone()
                    };
                    incident::resolve_pages(&shared, zone, &end, Stage::Prepare, None).await;
                }
                incident::resolve_pages(&shared, zone, &end, Stage::Failover, Some(&inc.steps))
                    .await;
            });
        }
        Ok(id)
    }

    /// Writes `source_state` when a source that had connected goes down or comes back.
    pub(super) fn watch_sources(&mut self) {
        let mut changes = Vec::new();
        for sm in &self.source_metrics {
            let up = sm.is_connected();
            match self.sources_up.get_mut(&sm.source) {
                Some(prev) if *prev != up => {
                    *prev = up;
                    changes.push((sm.source.clone(), up));
                }
                Some(_) => {}
                None if up => {
                    self.sources_up.insert(sm.source.clone(), true);
                }
                None => {}
            }
        }
        let name = |up: bool| {
            use crate::events::Connection;
            if up {
                Connection::Up
            } else {
                Connection::Down
            }
        };
        for (source, up) in changes {
            self.write(&Event::SourceState {
                source,
                from: name(!up),
                to: name(up),
            });
        }
    }

    fn refresh_metrics(&self, detector: &Detector) {
        const STATES: [SensorState; 6] = [
            SensorState::Ok,
            SensorState::Warn,
            SensorState::Alarm,
            SensorState::Critical,
            SensorState::Stale,
            SensorState::Fault,
        ];
        let config = &self.shared.config;
        let m = &self.shared.metrics;
        for sm in &self.source_metrics {
            let snap = sm.snapshot();
            m.source_up
                .with_label_values(&[&sm.source])
                .set(i64::from(snap.connected));
            catch_up(&m.samples.with_label_values(&[&sm.source]), snap.samples_in);
            for (kind, n) in &snap.errors {
                catch_up(
                    &m.source_errors
                        .with_label_values(&[sm.source.as_str(), kind]),
                    *n,
                );
            }
        }
        if let Some(st) = &self.sink_stats {
            m.spool_bytes
                .set(st.spool_bytes.load(std::sync::atomic::Ordering::Relaxed) as i64);
            for r in influx::DropReason::ALL {
                catch_up(
                    &m.telemetry_dropped.with_label_values(&[r.as_str()]),
                    st.dropped_count(r),
                );
            }
        }
        if let Some(st) = &self.status_stats {
            use std::sync::atomic::Ordering::Relaxed;
            catch_up(
                &m.telemetry_dropped.with_label_values(&["mqtt_queue_full"]),
                st.queue_full.load(Relaxed),
            );
            catch_up(
                &m.telemetry_dropped
                    .with_label_values(&["mqtt_backlog_full"]),
                st.backlog_full.load(Relaxed),
            );
        }
        for (si, s) in config.sensors.iter().enumerate() {
            let zone = &config.zones[s.zone].id;
            let (state, value) = detector.sensor_state(si as u32);
            if let Some(v) = value {
                m.sensor_value
                    .with_label_values(&[&s.id, zone, s.kind.as_str()])
                    .set(v);
            }
            for st in STATES {
                m.sensor_state
                    .with_label_values(&[&s.id, zone, st.as_str()])
                    .set(i64::from(st == state));
            }
        }
        let safe = self.zones_safe();
        for f in crate::feeds::evaluate(config, &safe) {
            m.feed_safe_to_cut
                .with_label_values(&[&f.id])
                .set(i64::from(f.safe_to_cut));
        }
        for (zi, z) in config.zones.iter().enumerate() {
            m.zone_level
                .with_label_values(&[&z.id])
                .set(detector.zone_level(zi as u32) as i64);
            let open = self.open.contains_key(&zi);
            m.incident_active
                .with_label_values(&[&z.id])
                .set(i64::from(open));
            m.safe_to_cut_power
                .with_label_values(&[&z.id])
                .set(i64::from(safe[zi]));
            let now = self.shared.clock.mono();
            match crate::staged::power_loss(config, detector, zi, now) {
                Some(p) => m
                    .seconds_to_power_loss
                    .with_label_values(&[&z.id])
                    .set(p.seconds),
                None => {
                    let _ = m.seconds_to_power_loss.remove_label_values(&[&z.id]);
                }
            }
        }
    }

    /// Every zone as the MQTT status publisher starts from: level, open incident, verdict.
    pub(super) fn zone_statuses(&self, detector: &Detector) -> Vec<ZoneStatus> {
        let config = &self.shared.config;
        config
            .zones
            .iter()
            .enumerate()
            .map(|(zi, z)| {
                let incident = self.open.get(&zi).cloned();
                let safe = incident.is_some()
                    && self
                        .shared
                        .journal
                        .load(&z.id)
                        .ok()
                        .flatten()
                        .and_then(|i| i.safe_to_cut_power)
                        .unwrap_or(false);
                ZoneStatus {
                    level: detector.zone_level(zi as u32).as_str(),
                    incident,
                    safe_to_cut_power: safe,
                    ..ZoneStatus::new(&z.id)
                }
            })
            .collect()
    }

    fn status(&self, detector: &Detector) -> serde_json::Value {
        let config = &self.shared.config;
        let now = self.shared.clock.mono();
        let zones: Vec<serde_json::Value> = config
            .zones
            .iter()
            .enumerate()
            .map(|(zi, z)| {
                let sensors: Vec<serde_json::Value> = config
                    .sensors
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.zone == zi)
                    .map(|(si, s)| {
                        let (state, value) = detector.sensor_state(si as u32);
                        serde_json::json!({
                            "id": s.id,
                            "kind": s.kind.as_str(),
                            "state": state.as_str(),
                            "value": value,
                            "age_ms": now.saturating_sub(detector.last_good(si as u32)) / 1_000_000,
                            "reason": detector.sensor_reason(si as u32).as_str(),
                            "trend": self.trends.values(si),
                        })
                    })
                    .collect();
                let incident = self.open.get(&zi);
                let journal = incident.and_then(|_| self.shared.journal.load(&z.id).ok().flatten());
                let power = crate::staged::power_loss(config, detector, zi, now);
                let prepare = self.prepares.get(&zi).map(|p| {
                    serde_json::json!({
                        "incident": p.incident,
                        "runbook": p.runbook,
                        "running": !p.task.is_finished(),
                        "undone": p.undone,
                        // `[cluster]`: false on a follower (the leader ran it).
                        "ran_here": p.ran.load(std::sync::atomic::Ordering::Relaxed),
                    })
                });
                serde_json::json!({
                    "id": z.id,
                    "level": detector.zone_level(zi as u32).as_str(),
                    // The journal's id: under `[cluster]` the incident a peer opened.
                    "incident": journal.as_ref().map(|j| j.incident.clone()).or(incident.cloned()),
                    "runbook": config.runbooks[z.runbook].name,
                    // Steps configured `dry_run = true`: rehearsed, never done, and left out
                    // of the verdict.
                    "rehearsed_steps": config.runbooks[z.runbook]
                        .steps
                        .iter()
                        .filter(|s| s.dry_run)
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>(),
                    "runbook_running": self.runs.get(&zi).is_some_and(|h| !h.is_finished()),
                    "safe_to_cut_power": journal.as_ref().and_then(|j| j.safe_to_cut_power).unwrap_or(false),
                    "cause": journal.as_ref().map(|j| j.cause.clone()),
                    "started_at": journal.as_ref().map(|j| j.started_at.clone()),
                    "finished_at": journal.as_ref().and_then(|j| j.finished_at.clone()),
                    "steps": journal.map(|j| j.steps),
                    "sensors": sensors,
                    "seconds_to_power_loss": power.map(|p| p.seconds),
                    "power_loss_basis": power.map(|p| p.basis.as_str()),
                    "prepare": prepare,
                })
            })
            .collect();
        serde_json::json!({
            "agent": config.agent.name,
            "dry_run": config.agent.dry_run,
            "event_log_writable": self.shared.log.is_writable(),
            "zones": zones,
            "feeds": self.feed_states(),
            "cluster": self.shared.coordinator.status(),
        })
    }

    // The staged response: prepare, failover, undo, the expected power loss.

    fn start_prepare(&mut self, zone: usize, cause: Cause) {
        if self.shared.config.zones[zone].prepare_runbook.is_none() {
            return;
        }
        self.seq += 1;
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let shared = self.shared.clone();
        let d =
            shared
                .coordinator
                .clone()
                .dispatch_prepare(shared, zone, cause, self.seq, ran.clone());
        tracing::warn!(zone = %self.shared.config.zones[zone].id, incident = %d.incident, "prepare runbook started");
        let runbook = incident::stage_steps(&self.shared.config, zone, Stage::Prepare)
            .map(|(rb, _)| rb.name.clone())
            .unwrap_or_default();
        self.prepares.insert(
            zone,
            PrepareRt {
                incident: d.incident,
                runbook,
                task: d.task,
                done: d.done,
                undone: false,
                ran,
            },
        );
    }

    /// Journals and announces the failover (continuing the prepare's incident, if any),
    /// then dispatches it.
    fn start_failover(&mut self, zone: usize, cause: Cause, wait_for_prepare: bool) -> String {
        self.seq += 1;
        let prep = self.prepares.get(&zone).filter(|p| !p.undone);
        let id = prep.map(|p| p.incident.clone());
        let wait_for = prep
            .filter(|p| wait_for_prepare && !p.task.is_finished())
            .map(|p| p.done.clone());
        let shared = self.shared.clone();
        let d = shared
            .coordinator
            .clone()
            .dispatch_failover(shared, zone, cause, self.seq, id, wait_for);
        self.open.insert(zone, d.incident.clone());
        self.runs.insert(zone, d.task);
        d.incident
    }

    /// Runs the prepare runbook's undo steps, then writes `prepare_undone`.
    fn start_undo(&mut self, zone: usize, by: UndoneBy) {
        let Some(p) = self.prepares.get_mut(&zone) else {
            return;
        };
        if p.undone {
            return;
        }
        p.undone = true;
        let incident = p.incident.clone();
        self.seq += 1;
        let shared = self.shared.clone();
        let zone_id = shared.config.zones[zone].id.clone();
        if !p.ran.load(std::sync::atomic::Ordering::Relaxed) {
            // `[cluster]`: the zone's leader ran the prepare and undoes it.
            tracing::info!(zone = %zone_id, incident = %incident, by = by.as_str(), "the prepare ran on the zone's leader, not here: nothing to undo");
            return;
        }
        tracing::warn!(zone = %zone_id, incident = %incident, by = by.as_str(), "undoing the prepare runbook");
        let has_steps = incident::stage_steps(&shared.config, zone, Stage::Undo)
            .is_some_and(|(_, steps)| !steps.is_empty());
        // The prepare's pages end with it (its incident is over without a failover).
        let ended = incident::Ended {
            incident: incident.clone(),
            cause: Cause::Fire.as_str().to_string(),
            dry_run: incident::stage_steps(&shared.config, zone, Stage::Prepare)
                .is_some_and(|(rb, _)| rb.dry_run || shared.config.agent.dry_run),
        };
        if !has_steps {
            shared.write(&Event::PrepareUndone {
                zone: zone_id,
                incident,
                by,
                ok: true,
            });
            // `[cluster]`: once undone, the zone's leadership (won for the prepare) is free.
            tokio::spawn(async move {
                incident::resolve_pages(&shared, zone, &ended, Stage::Prepare, None).await;
                shared.coordinator.prepare_over(&shared, zone).await
            });
            return;
        }
        let d = incident::dispatch_stage(
            shared.clone(),
            zone,
            Cause::Fire,
            self.seq,
            Stage::Undo,
            Some(incident.clone()),
            None,
        );
        tokio::spawn(async move {
            let ok = d.task.await.unwrap_or(false);
            shared.write(&Event::PrepareUndone {
                zone: zone_id,
                incident,
                by,
                ok,
            });
            incident::resolve_pages(&shared, zone, &ended, Stage::Prepare, None).await;
            shared.coordinator.prepare_over(&shared, zone).await;
        });
    }

    /// Every tick: the expected power loss (for runbooks, MQTT status) and prepare
    /// cooldowns.
    pub(super) fn tick(&mut self, detector: &Detector) {
        self.update_power(detector);
        self.announce_feeds(false);
        let now = self.shared.clock.mono();
        let prepares = &self.prepares;
        let undo = self.stager.elapse(now, |z| {
            prepares
                .get(&(z as usize))
                .is_some_and(|p| !p.task.is_finished())
        });
        for effect in undo {
            self.apply(effect);
        }
    }

    /// The expected power loss of every zone, for the runbooks and the MQTT status.
    fn update_power(&mut self, detector: &Detector) {
        let config = self.shared.config.clone();
        let now = self.shared.clock.mono();
        for zi in 0..config.zones.len() {
            let p = crate::staged::power_loss(&config, detector, zi, now);
            self.shared.power.set(zi, p.map(|p| p.seconds));
            let cur = p.map(|p| (p.seconds, p.basis.as_str()));
            if power_changed(self.power_sent[zi], cur) {
                self.power_sent[zi] = cur;
                if let Some(s) = &self.shared.status {
                    s.send(StatusMsg::Power {
                        zone: config.zones[zi].id.clone(),
                        seconds: cur.map(|c| c.0.round()),
                        basis: cur.map(|c| c.1),
                    });
                }
            }
        }
    }

    /// Reset of a zone that has prepared but not failed over: its prepare is undone.
    fn reset_prepare(&mut self, zone: usize, by: &str) -> Result<String, Refusal> {
        let Some(p) = self.prepares.get(&zone).filter(|p| !p.undone) else {
            return Err(Refusal::Conflict("the zone has no open incident".into()));
        };
        if !p.task.is_finished() {
            return Err(Refusal::Conflict(
                "the zone's prepare runbook is still running; reset when it has finished".into(),
            ));
        }
        let id = p.incident.clone();
        let _ = self.stager.reset(zone as u32);
        self.start_undo(zone, UndoneBy::Reset);
        self.write(&Event::IncidentReset {
            zone: self.shared.config.zones[zone].id.clone(),
            incident: id.clone(),
            by: by.to_string(),
        });
        Ok(id)
    }

    // SIGHUP reload (what may change live is decided in reload.rs).

    /// Why `new` cannot replace the running config now, if it cannot.
    pub(super) fn reload_refusal(&self, new: &Config) -> Option<String> {
        let old = &self.shared.config;
        let restart = restart_only_changes(old, new);
        if !restart.is_empty() {
            return Some(format!(
                "{} changed: these keys apply only at a restart (systemctl restart firebreak)",
                restart.join(", ")
            ));
        }
        for (zi, z) in old.zones.iter().enumerate() {
            let running = self.runs.get(&zi).is_some_and(|h| !h.is_finished())
                || self
                    .prepares
                    .get(&zi)
                    .is_some_and(|p| !p.task.is_finished());
            if running {
                return Some(format!(
                    "a runbook is running in zone {}; the config does not change under a \
                     running runbook: reload again when it has finished",
                    z.id
                ));
            }
            let open = self.open.get(&zi);
            let prepared = self.stager.phase(zi as u32) == Phase::Prepared;
            if open.is_none() && !prepared {
                continue;
            }
            let what = match open {
                Some(id) => format!("an open incident {id}"),
                None => "a prepare runbook in effect (not yet undone)".to_string(),
            };
            let Some(nz) = new.zones.iter().find(|n| n.id == z.id) else {
                return Some(format!(
                    "zone {} has {what} and is not in the new config; reset it first",
                    z.id
                ));
            };
            let same =
                |a: &config::Runbook, b: &config::Runbook| format!("{a:?}") == format!("{b:?}");
            let failover_same = same(&old.runbooks[z.runbook], &new.runbooks[nz.runbook]);
            let prepare_same = match (z.prepare_runbook, nz.prepare_runbook) {
                (None, None) => true,
                (Some(a), Some(b)) => same(&old.runbooks[a], &new.runbooks[b]),
                _ => false,
            };
            if !failover_same || !prepare_same {
                return Some(format!(
                    "zone {} has {what}: its runbooks cannot change until it is reset",
                    z.id
                ));
            }
        }
        None
    }

    /// Replaces the running config (already checked by `reload_refusal`): new shared state
    /// for new runbooks, a new detector with the zones of open incidents latched, the
    /// staged response and per-zone state carried over by zone id.
    pub(super) fn apply_reload(
        &mut self,
        new: Arc<Config>,
        detector: &mut Detector,
        source_metrics: Vec<Arc<crate::sources::metrics::SourceMetrics>>,
    ) {
        let old = self.shared.config.clone();
        let index: HashMap<&str, usize> = new
            .zones
            .iter()
            .enumerate()
            .map(|(i, z)| (z.id.as_str(), i))
            .collect();
        let remap = |zi: usize| index.get(old.zones[zi].id.as_str()).copied();
        let now = self.shared.clock.mono();
        self.shared = Arc::new(Shared {
            config: new.clone(),
            metrics: self.shared.metrics.clone(),
            log: self.shared.log.clone(),
            journal: self.shared.journal.clone(),
            clock: self.shared.clock.clone(),
            telemetry: self.shared.telemetry.clone(),
            status: self.shared.status.clone(),
            power: PowerBoard::new(new.zones.len()),
            coordinator: self.shared.coordinator.clone(),
            modbus: self.shared.modbus.clone(),
        });
        let mut fresh = Detector::from_config(&new, now);
        let mut stager = Stager::from_config(&new);
        let mut open = HashMap::new();
        for (zi, id) in self.open.drain() {
            if let Some(ni) = remap(zi) {
                fresh.latch(ni as u32);
                let _ = stager.critical(ni as u32);
                open.insert(ni, id);
            }
        }
        for zi in 0..old.zones.len() {
            if self.stager.phase(zi as u32) == Phase::Prepared {
                if let Some(ni) = remap(zi) {
                    stager.carry_prepared(ni as u32, now);
                }
            }
        }
        self.open = open;
        self.runs = self
            .runs
            .drain()
            .filter_map(|(zi, h)| remap(zi).map(|ni| (ni, h)))
            .collect();
        self.prepares = self
            .prepares
            .drain()
            .filter_map(|(zi, p)| remap(zi).map(|ni| (ni, p)))
            .collect();
        self.stager = stager;
        self.trends = crate::api::trend::Trends::new(
            new.sensors.len(),
            crate::api::trend::EVERY_NS,
            crate::api::trend::POINTS,
        );
        self.power_sent = vec![None; new.zones.len()];
        // Counters of a source that stays (same name) keep counting up from where they were.
        for sm in &source_metrics {
            if let Some(old) = self.source_metrics.iter().find(|o| o.source == sm.source) {
                sm.carry_over(&old.snapshot());
            }
        }
        self.source_metrics = source_metrics;
        // New source instances connect afresh: no `source_state` for that.
        self.sources_up.clear();
        // Sensors and zones that are gone must not linger in the scrape.
        let m = &self.shared.metrics;
        m.sensor_value.reset();
        m.sensor_state.reset();
        m.zone_level.reset();
        m.safe_to_cut_power.reset();
        m.incident_active.reset();
        m.seconds_to_power_loss.reset();
        m.feed_safe_to_cut.reset();
        m.source_up.reset();
        m.declare_runbooks(&self.shared.config);
        *detector = fresh;
        // Feeds safe under the old map were announced; the new map starts from there.
        self.announce_feeds(true);
    }

    /// Ends a rejected reload: logged, recorded, then READY=1 and the record for
    /// `firebreak reload` (the event is in the log by the time `systemctl reload` returns).
    pub(super) fn reload_failed(&self, path: &Path, reason: String, notifier: &Notifier) {
        tracing::error!(config = %path.display(), %reason, "config reload rejected; the running config is unchanged");
        self.write(&Event::ConfigReloadFailed {
            config: path.display().to_string(),
            reason: reason.clone(),
        });
        notifier.reload_rejected(&reason);
    }

    /// Ends an applied reload, as `reload_failed` does a rejected one.
    pub(super) fn reloaded(&self, path: &Path, changed: Vec<String>, notifier: &Notifier) {
        tracing::warn!(config = %path.display(), changed = ?changed, dry_run = self.shared.config.agent.dry_run, "config reloaded; open incidents kept");
        self.write(&Event::ConfigReloaded {
            config: path.display().to_string(),
            changed,
            dry_run: self.shared.config.agent.dry_run,
        });
        notifier.reload_applied();
    }
}

/// Whether the expected power loss moved enough to publish it again: appearing,
/// disappearing, a new basis, or a change of 5 s or 10 %, whichever is more (a countdown
/// does not republish a retained document every tick).
fn power_changed(sent: Option<(f64, &'static str)>, now: Option<(f64, &'static str)>) -> bool {
    match (sent, now) {
        (None, None) => false,
        (Some((a, ba)), Some((b, bb))) => ba != bb || (a - b).abs() >= (a.abs() * 0.1).max(5.0),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::power_changed;

    #[test]
    fn the_expected_power_loss_is_republished_only_when_it_moves_enough() {
        assert!(!power_changed(None, None));
        assert!(power_changed(None, Some((100.0, "ups_runtime"))));
        assert!(power_changed(Some((100.0, "ups_runtime")), None));
        assert!(power_changed(
            Some((100.0, "ups_runtime")),
            Some((100.0, "temperature_trend"))
        ));
        // A countdown: 10 % of 100 s is 10 s.
        assert!(!power_changed(
            Some((100.0, "ups_runtime")),
            Some((91.0, "ups_runtime"))
        ));
        assert!(power_changed(
            Some((100.0, "ups_runtime")),
            Some((90.0, "ups_runtime"))
        ));
        // Near the end, at least 5 s.
        assert!(!power_changed(
            Some((20.0, "ups_runtime")),
            Some((16.0, "ups_runtime"))
        ));
        assert!(power_changed(
            Some((20.0, "ups_runtime")),
            Some((15.0, "ups_runtime"))
        ));
    }
}
