//! The engine's staged response: prepare at alarm, failover at critical, undo after the
//! cooldown or an operator reset, and the expected power loss handed to the runbooks and
//! the MQTT status. The decisions themselves are `crate::staged` (pure); this is where
//! they turn into runbook tasks and events.

use super::Engine;
use crate::api::Refusal;
use crate::detect::{Cause, Detector};
use crate::events::{Event, UndoneBy};
use crate::incident::{self, Stage};
use crate::sinks::mqtt::StatusMsg;
use crate::staged::Decision;

/// A zone's prepare runbook in the current incident.
pub(super) struct PrepareRt {
    pub(super) incident: String,
    pub(super) runbook: String,
    pub(super) task: tokio::task::JoinHandle<bool>,
    pub(super) done: tokio::sync::watch::Receiver<bool>,
    /// Its undo has been started (cooldown or reset).
    pub(super) undone: bool,
    /// It ran on this agent (always without `[cluster]`; under `[cluster]` only on the
    /// zone's leader): its undo runs here too.
    pub(super) ran: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Engine {
    /// Carries out a staged-response decision.
    pub(super) fn decide(&mut self, d: Decision, cause: Cause) -> Option<String> {
        match d {
            Decision::Prepare { zone } => {
                self.start_prepare(zone as usize, cause);
                None
            }
            Decision::Failover {
                zone,
                wait_for_prepare,
            } => Some(self.start_failover(zone as usize, cause, wait_for_prepare)),
            Decision::Undo { zone } => {
                self.start_undo(zone as usize, UndoneBy::Cooldown);
                None
            }
        }
    }

    pub(super) fn start_prepare(&mut self, zone: usize, cause: Cause) {
        if self.shared.config.zones[zone].prepare_runbook.is_none() {
            return;
        }
        self.seq += 1;
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let d = match self.shared.cluster.clone() {
            Some(cluster) => {
                ran.store(false, std::sync::atomic::Ordering::Relaxed);
                crate::cluster::dispatch_prepare(
                    self.shared.clone(),
                    cluster,
                    zone,
                    cause,
                    self.seq,
                    ran.clone(),
                )
            }
            None => incident::dispatch_stage(
                self.shared.clone(),
                zone,
                cause,
                self.seq,
                Stage::Prepare,
                None,
                None,
            ),
        };
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
    pub(super) fn start_failover(
        &mut self,
        zone: usize,
        cause: Cause,
        wait_for_prepare: bool,
    ) -> String {
        self.seq += 1;
        let prep = self.prepares.get(&zone).filter(|p| !p.undone);
        let id = prep.map(|p| p.incident.clone());
        let wait_for = prep
            .filter(|p| wait_for_prepare && !p.task.is_finished())
            .map(|p| p.done.clone());
        let d = match self.shared.cluster.clone() {
            Some(cluster) => crate::cluster::dispatch_failover(
                self.shared.clone(),
                cluster,
                zone,
                cause,
                self.seq,
                id,
                wait_for,
            ),
            None => incident::dispatch_stage(
                self.shared.clone(),
                zone,
                cause,
                self.seq,
                Stage::Failover,
                id,
                wait_for,
            ),
        };
        self.open.insert(zone, d.incident.clone());
        self.runs.insert(zone, d.task);
        d.incident
    }

    /// Runs the prepare runbook's undo steps, then writes `prepare_undone`.
    pub(super) fn start_undo(&mut self, zone: usize, by: UndoneBy) {
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
        // `[cluster]`: once undone, the zone's leadership (won for the prepare) is free.
        let release = shared.cluster.clone();
        tracing::warn!(zone = %zone_id, incident = %incident, by = by.as_str(), "undoing the prepare runbook");
        let has_steps = incident::stage_steps(&shared.config, zone, Stage::Undo)
            .is_some_and(|(_, steps)| !steps.is_empty());
        if !has_steps {
            shared.write(&Event::PrepareUndone {
                zone: zone_id,
                incident,
                by,
                ok: true,
            });
            if let Some(c) = release {
                tokio::spawn(async move { c.prepare_over(&shared, zone).await });
            }
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
            if let Some(c) = release {
                c.prepare_over(&shared, zone).await;
            }
        });
    }

    /// Every tick: the expected power loss (for runbooks, MQTT status) and prepare
    /// cooldowns.
    pub(super) fn tick(&mut self, detector: &Detector) {
        self.update_power(detector);
        let now = self.shared.clock.mono();
        let prepares = &self.prepares;
        let undo = self.stager.tick(now, |z| {
            prepares
                .get(&(z as usize))
                .is_some_and(|p| !p.task.is_finished())
        });
        for d in undo {
            self.decide(d, Cause::Fire);
        }
    }

    /// The expected power loss of every zone, for the runbooks and the MQTT status.
    pub(super) fn update_power(&mut self, detector: &Detector) {
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
    pub(super) fn reset_prepare(&mut self, zone: usize, by: &str) -> Result<String, Refusal> {
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
