//! Staged response, the pure part: when a zone's prepare runbook starts, when its failover
//! follows, when the prepare is undone, how long until the room is expected to lose power,
//! and which `should` steps to skip so that the `must` steps finish before that.
//!
//! No I/O and no clock of its own: the detection core's outputs and the time (the caller's
//! injected clock, or a recording's timestamps) come in, effects come out, in the order
//! they are carried out (`Stager::respond`, `Stager::elapse`). The live agent and
//! `firebreak replay` both carry out the same effects, so a replay shows what the agent
//! would have done.

use crate::config::{Config, Kind, Priority, Step};
use crate::detect::rise::Nanos;
use crate::detect::{Cause, Detector, Output, SensorState, ZoneLevel};
use std::time::Duration;

/// What the agent does in answer to detection, in this order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect<'o> {
    /// Record a sensor state or zone level change (its event, its telemetry) before what
    /// it leads to.
    Record(&'o Output),
    /// Start the zone's prepare runbook: a new incident.
    Prepare { zone: u32, cause: Cause },
    /// Start the zone's failover runbook, continuing the incident of its prepare if it has
    /// one; with `wait_for_prepare` only once the prepare runbook has finished.
    Failover {
        zone: u32,
        cause: Cause,
        wait_for_prepare: bool,
    },
    /// Run the prepare runbook's `undo_steps`: the zone has been normal for its
    /// `prepare_cooldown` without going critical.
    Undo { zone: u32 },
}

impl Effect<'_> {
    fn of(d: Decision, cause: Cause) -> Effect<'static> {
        match d {
            Decision::Prepare { zone } => Effect::Prepare { zone, cause },
            Decision::Failover {
                zone,
                wait_for_prepare,
            } => Effect::Failover {
                zone,
                cause,
                wait_for_prepare,
            },
            Decision::Undo { zone } => Effect::Undo { zone },
        }
    }
}

/// What the engine should start for a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start the zone's prepare runbook (a new incident).
    Prepare { zone: u32 },
    /// Start the zone's failover runbook; with `wait_for_prepare` only once the prepare
    /// runbook has finished.
    Failover { zone: u32, wait_for_prepare: bool },
    /// Run the prepare runbook's `undo_steps`: the zone has been normal for
    /// `prepare_cooldown` without going critical.
    Undo { zone: u32 },
}

/// Where a zone is in its staged response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Nothing started.
    Idle,
    /// The prepare runbook has started (and not been undone); no failover yet.
    Prepared,
    /// The failover runbook has started (after a prepare or without one); ends at reset.
    FailedOver,
}

#[derive(Debug, Clone)]
struct ZoneStage {
    has_prepare: bool,
    waits: bool,
    cooldown: Nanos,
    phase: Phase,
    /// While prepared: since when the zone has been normal.
    normal_since: Option<Nanos>,
}

/// The staged-response state of every zone.
#[derive(Debug, Clone)]
pub struct Stager {
    zones: Vec<ZoneStage>,
}

impl Stager {
    pub fn from_config(config: &Config) -> Self {
        Stager {
            zones: config
                .zones
                .iter()
                .map(|z| ZoneStage {
                    has_prepare: z.prepare_runbook.is_some(),
                    waits: z.failover_waits_for_prepare,
                    cooldown: z.prepare_cooldown.as_nanos() as Nanos,
                    phase: Phase::Idle,
                    normal_since: None,
                })
                .collect(),
        }
    }

    /// A config reload carries a zone's prepare (started, not yet undone) over to the new
    /// stager; its cooldown starts again from `now` (later, never earlier).
    pub fn carry_prepared(&mut self, zone: u32, now: Nanos) {
        if let Some(z) = self.zones.get_mut(zone as usize) {
            if z.has_prepare && z.phase == Phase::Idle {
                z.phase = Phase::Prepared;
                z.normal_since = Some(now);
            }
        }
    }

    pub fn phase(&self, zone: u32) -> Phase {
        self.zones
            .get(zone as usize)
            .map_or(Phase::Idle, |z| z.phase)
    }

    /// The zone's level changed. Reaching alarm (or critical) starts the prepare runbook
    /// once per incident.
    pub fn level(&mut self, zone: u32, to: ZoneLevel, now: Nanos) -> Option<Decision> {
        let z = self.zones.get_mut(zone as usize)?;
        z.normal_since = (to == ZoneLevel::Normal).then_some(now);
        if z.has_prepare
            && z.phase == Phase::Idle
            && matches!(to, ZoneLevel::Alarm | ZoneLevel::Critical)
        {
            z.phase = Phase::Prepared;
            return Some(Decision::Prepare { zone });
        }
        None
    }

    /// The zone became critical (detection or a manual failover): the failover runbook
    /// starts, preceded by the prepare runbook if that has not run in this incident.
    /// Nothing when the zone has already failed over.
    pub fn critical(&mut self, zone: u32) -> Vec<Decision> {
        let Some(z) = self.zones.get_mut(zone as usize) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        match z.phase {
            Phase::FailedOver => return out,
            Phase::Idle if z.has_prepare => out.push(Decision::Prepare { zone }),
            _ => {}
        }
        out.push(Decision::Failover {
            zone,
            wait_for_prepare: z.has_prepare && z.waits,
        });
        z.phase = Phase::FailedOver;
        z.normal_since = None;
        out
    }

    /// Time passes: prepared zones that have been normal for their cooldown are undone,
    /// once the prepare runbook has finished (`running` says whether it still runs).
    pub fn tick(&mut self, now: Nanos, running: impl Fn(u32) -> bool) -> Vec<Decision> {
        let mut out = Vec::new();
        self.cooled_down(now, running, |zone| out.push(Decision::Undo { zone }));
        out
    }

    /// The zones whose prepare is undone at `now` (see `tick`), each handed to `undo`.
    fn cooled_down(
        &mut self,
        now: Nanos,
        running: impl Fn(u32) -> bool,
        mut undo: impl FnMut(u32),
    ) {
        for (i, z) in self.zones.iter_mut().enumerate() {
            let Some(since) = z.normal_since else {
                continue;
            };
            if z.phase == Phase::Prepared
                && now.saturating_sub(since) >= z.cooldown
                && !running(i as u32)
            {
                z.phase = Phase::Idle;
                z.normal_since = None;
                undo(i as u32);
            }
        }
    }

    /// What the agent does about the detection core's outputs, drained at `now`: each
    /// sensor or zone change is recorded, then what it starts. A zone reaching alarm
    /// prepares (cause `fire`, whatever raised the alarm: the prepare is a precaution); a
    /// critical zone fails over for the cause detection gave.
    pub fn respond<'o>(&mut self, outputs: &'o [Output], now: Nanos) -> Vec<Effect<'o>> {
        let mut out = Vec::new();
        for o in outputs {
            match o {
                Output::Sensor { .. } => out.push(Effect::Record(o)),
                Output::Zone { zone, to, .. } => {
                    let prepare = self.level(*zone, *to, now);
                    out.push(Effect::Record(o));
                    out.extend(prepare.map(|d| Effect::of(d, Cause::Fire)));
                }
                Output::Critical { zone, cause } => out.extend(self.fail_over(*zone, *cause)),
            }
        }
        out
    }

    /// The zone became critical, by detection or by hand (`Cause::Manual`): its prepare
    /// if that has not run in this incident, then its failover. Nothing when the zone has
    /// already failed over.
    pub fn fail_over(&mut self, zone: u32, cause: Cause) -> Vec<Effect<'static>> {
        self.critical(zone)
            .into_iter()
            .map(|d| Effect::of(d, cause))
            .collect()
    }

    /// Time passes (`now`): the prepares to undo after their cooldown. `running` says
    /// whether a zone's prepare runbook still runs (it is undone once it has finished).
    pub fn elapse(&mut self, now: Nanos, running: impl Fn(u32) -> bool) -> Vec<Effect<'static>> {
        let mut out = Vec::new();
        self.cooled_down(now, running, |zone| out.push(Effect::Undo { zone }));
        out
    }

    /// Operator reset: ends the zone's staged response. A prepare that was not followed by
    /// a failover is undone; after a failover the operator owns the way back.
    pub fn reset(&mut self, zone: u32) -> Option<Decision> {
        let z = self.zones.get_mut(zone as usize)?;
        let was = z.phase;
        z.phase = Phase::Idle;
        z.normal_since = None;
        (was == Phase::Prepared).then_some(Decision::Undo { zone })
    }
}

/// What the expected power loss is based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The UPS's own runtime estimate, while it is on battery.
    UpsRuntime,
    /// A linear projection of the zone's rising temperatures to their `critical_above`.
    TemperatureTrend,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }
}

/// Seconds until the zone is expected to lose power, and why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerLoss {
    pub seconds: f64,
    pub basis: Basis,
}

/// Slower than this (C per second) is not a rise worth projecting: 0.6 C per minute.
const MIN_RISE_PER_S: f64 = 0.01;

/// The zone's expected power loss at `now`: the UPS runtime while any of the zone's UPS
/// is on battery (each reading aged by the time since it was taken), and the linear
/// projection of each rising temperature to its `critical_above`; the sooner of the two.
/// `None` when neither applies (no skipping then). Stale and faulty sensors are ignored.
pub fn power_loss(
    config: &Config,
    detector: &Detector,
    zone: usize,
    now: Nanos,
) -> Option<PowerLoss> {
    let good = |i: usize| {
        let (state, value) = detector.sensor_state(i as u32);
        match state {
            SensorState::Stale | SensorState::Fault => None,
            _ => value,
        }
    };
    let age_s = |i: usize| now.saturating_sub(detector.last_good(i as u32)) as f64 / 1e9;
    let in_zone = || {
        config
            .sensors
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.zone == zone)
    };
    let on_battery = in_zone()
        .filter(|(_, s)| s.kind == Kind::OnBattery)
        .any(|(i, _)| good(i).is_some_and(|v| v >= 0.5));
    let mut best: Option<PowerLoss> = None;
    let mut consider = |seconds: f64, basis: Basis| {
        let seconds = seconds.max(0.0);
        if seconds.is_finite() && best.is_none_or(|b| seconds < b.seconds) {
            best = Some(PowerLoss { seconds, basis });
        }
    };
    if on_battery {
        for (i, _) in in_zone().filter(|(_, s)| s.kind == Kind::Runtime) {
            if let Some(v) = good(i) {
                consider(v - age_s(i), Basis::UpsRuntime);
            }
        }
    }
    for (i, s) in in_zone().filter(|(_, s)| s.kind == Kind::Temperature) {
        let (Some(v), Some(limit), Some(rate)) = (
            good(i),
            s.detect.critical_above,
            detector.sensor_rate(i as u32),
        ) else {
            continue;
        };
        if rate > MIN_RISE_PER_S {
            consider((limit - v) / rate - age_s(i), Basis::TemperatureTrend);
        }
    }
    best
}

/// Why step `i` of `steps` is to be skipped, if it is: it is a `should` step and the time
/// left before the expected power loss is shorter than what the steps from `i` on are
/// expected to take (`Step::expected_duration`). Steps before `i` have run or been skipped.
pub fn skip_reason(steps: &[Step], i: usize, time_left: Option<Duration>) -> Option<String> {
    let left = time_left?;
    let step = steps.get(i)?;
    if step.priority != Priority::Should {
        return None;
    }
    let needed: Duration = steps[i..].iter().map(Step::expected_duration).sum();
    (left < needed).then(|| {
        let must: Duration = steps[i..]
            .iter()
            .filter(|s| s.priority == Priority::Must)
            .map(Step::expected_duration)
            .sum();
        format!(
            "power loss expected in {:.0}s; the remaining steps need up to {:.0}s, the must steps {:.0}s",
            left.as_secs_f64(),
            needed.as_secs_f64(),
            must.as_secs_f64()
        )
    })
}

#[cfg(test)]
mod tests;
