//! The room model: a battery room's physics as pure functions of sim time, turned into
//! timeline segments for the signals that follow it (`{ at = "0s", room = "air" }`).
//!
//! The chemistry runs on *time on charge*: `offgas_at`, `venting_at` and `runaway_at` are
//! reached after that much charging. While the battery charges (from 0 s until
//! `charging_stops_at`, or until a client writes a `charging` coil to 0 in a closed-loop
//! scenario, and again after it writes 1) the abuse goes on; while it does not, it waits.
//! Played without interruption, charging time is sim time and the milestones are at the
//! times the file gives.
//!
//! - air: the HVAC holds `ambient`; the battery string adds `battery_heat`; after
//!   `hvac_fails_at` the air drifts up `hvac_drift` °C/min; at runaway it rises
//!   `runaway_air_rise` °C/min for 4 min (well past the 8.3 °C/min rate-of-rise alarm).
//! - cell (the BMS temperature): flat at ambient + heat + 2 °C until 20 s before
//!   runaway ("nothing abnormal until just before ignition"), then exponentially to 650 °C.
//!   Those 20 s are the point of no return: once reached, stopping the charge is too late.
//! - offgas (ppm electrolyte vapour): from `offgas_at` it rises `offgas_rate` ppm/min while
//!   charging; at `venting_at` it jumps by 50 ppm and rises twice as fast; while the charge
//!   is stopped it decays (τ 3 min: DNV-GL, stopping the charge avoided runaway); at
//!   runaway it goes to 1000 ppm (τ 30 s).
//! - smoke (%obs/m): 0.005 background; venting brings it to 0.04 (alert) by runaway, in step
//!   with the charging; runaway takes it to 1.65 (fire2) within 2 min, then 3.0.
//! - h2 (ppm): only at runaway (Sandia 2024): to 10 000 ppm (25 % LFL) within 1 min.
//! - charging: 1 while the battery charges, else 0. A coil that follows it is the BMS's
//!   charge-enable command: a client writing it stops or resumes the charge (closed loop,
//!   [`LiveRoom`]); a discrete input or register that follows it is the BMS's state.
//!
//! The UPS units in the room (`ups_in_room`) stop answering `ups_lost_after` the runaway.
//! Every curve is sampled every `STEP` of sim time into linear ramps.

use std::time::Duration;

/// Sampling step of the generated ramps.
pub const STEP: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub struct Room {
    pub ambient: f64,
    pub battery_heat: f64,
    pub hvac_fails_at: Option<Duration>,
    pub hvac_drift: f64,
    pub offgas_at: Option<Duration>,
    pub offgas_rate: f64,
    pub venting_at: Option<Duration>,
    pub runaway_at: Option<Duration>,
    pub charging_stops_at: Option<Duration>,
    pub runaway_air_rise: f64,
    pub ups_in_room: Vec<String>,
    pub ups_lost_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Air,
    Cell,
    Offgas,
    Smoke,
    H2,
    /// 1 while the battery charges, else 0.
    Charging,
}

impl Role {
    pub const NAMES: &'static str = "air, cell, offgas, smoke, h2, charging";

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "air" => Some(Role::Air),
            "cell" => Some(Role::Cell),
            "offgas" => Some(Role::Offgas),
            "smoke" => Some(Role::Smoke),
            "h2" => Some(Role::H2),
            "charging" => Some(Role::Charging),
            _ => None,
        }
    }
}

/// A client's charge command: at sim time `.0`, charging on (`true`) or off.
pub type Command = (Duration, bool);

/// Seconds of charging counted from when the point of no return is reached to runaway.
const NO_RETURN: f64 = 20.0;

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

impl Room {
    /// When charging switches, in time order: on at 0, off at `charging_stops_at`, then
    /// the clients' `commands` (in time order; ones that change nothing are dropped).
    fn switches(&self, commands: &[Command]) -> Vec<(f64, bool)> {
        let mut all: Vec<(f64, bool)> = vec![(0.0, true)];
        let mut given: Vec<(f64, bool)> = commands
            .iter()
            .map(|(at, on)| (at.as_secs_f64(), *on))
            .collect();
        if let Some(stop) = secs(self.charging_stops_at) {
            given.push((stop, false));
        }
        given.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (at, on) in given {
            if all.last().is_some_and(|(_, was)| *was != on) {
                all.push((at, on));
            }
        }
        all
    }

    /// Seconds on charge in `[0, t]`.
    fn dose(switches: &[(f64, bool)], t: f64) -> f64 {
        let mut total = 0.0;
        for (i, (at, on)) in switches.iter().enumerate() {
            if *at >= t {
                break;
            }
            let end = switches.get(i + 1).map_or(t, |(next, _)| next.min(t));
            if *on {
                total += end - at;
            }
        }
        total
    }

    /// The sim time at which the time on charge reaches `dose`, if it does with the
    /// switches known (the last one holding from then on).
    fn time_of_dose(switches: &[(f64, bool)], dose: f64) -> Option<f64> {
        let mut total = 0.0;
        for (i, (at, on)) in switches.iter().enumerate() {
            if !*on {
                continue;
            }
            match switches.get(i + 1) {
                Some((next, _)) if total + (next - at) < dose => total += next - at,
                _ => return Some(at + (dose - total).max(0.0)),
            }
        }
        None
    }

    /// When runaway starts: `NO_RETURN` s after the time on charge reaches `runaway_at`
    /// minus `NO_RETURN`, whatever the charge does from there.
    fn runaway(&self, switches: &[(f64, bool)]) -> Option<f64> {
        let r = secs(self.runaway_at)?;
        let no_return = (r - NO_RETURN).max(0.0);
        Room::time_of_dose(switches, no_return).map(|at| at + (r - no_return))
    }

    /// When the file's own schedule switches the charge (no client commands): on at 0,
    /// off at `charging_stops_at`.
    pub fn charge_switches(&self) -> Vec<(Duration, bool)> {
        self.switches(&[])
            .into_iter()
            .map(|(at, on)| (Duration::from_secs_f64(at), on))
            .collect()
    }

    /// Whether the battery charges at `t`.
    pub fn charging_at(&self, t: f64, commands: &[Command]) -> bool {
        self.switches(commands)
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .is_none_or(|(_, on)| *on)
    }

    /// When the UPS units in the room stop answering, if they do.
    pub fn ups_lost_at(&self) -> Option<Duration> {
        self.ups_lost_at_with(&[])
    }

    /// [`Room::ups_lost_at`] with the clients' charge commands so far.
    pub fn ups_lost_at_with(&self, commands: &[Command]) -> Option<Duration> {
        self.runaway(&self.switches(commands))
            .map(|r| Duration::from_secs_f64(r) + self.ups_lost_after)
    }

    /// The value of `role` at sim time `t` seconds.
    pub fn value(&self, role: Role, t: f64) -> f64 {
        self.value_with(role, t, &[])
    }

    /// The value of `role` at sim time `t` seconds, with the clients' charge commands so
    /// far (those after `t` change nothing before it).
    pub fn value_with(&self, role: Role, t: f64, commands: &[Command]) -> f64 {
        let switches = self.switches(commands);
        let runaway = self.runaway(&switches);
        let since = |at: Option<f64>| at.map_or(0.0, |a| (t - a).max(0.0));
        match role {
            Role::Charging => f64::from(u8::from(self.charging_at(t, commands))),
            Role::Air => {
                let hvac = self.hvac_drift * since(secs(self.hvac_fails_at)) / 60.0;
                let fire = self.runaway_air_rise * since(runaway).min(240.0) / 60.0;
                self.ambient + self.battery_heat + hvac + fire
            }
            Role::Cell => {
                let base = self.ambient + self.battery_heat + 2.0;
                match runaway {
                    Some(r) if t > r - NO_RETURN => {
                        base + (650.0 - base) * (1.0 - (-(t - (r - NO_RETURN)) / 40.0).exp())
                    }
                    _ => base,
                }
            }
            Role::Offgas => self.offgas(t, &switches, runaway),
            Role::Smoke => {
                let background = 0.005;
                match (secs(self.venting_at), runaway) {
                    (_, Some(r)) if t >= r => {
                        let x = t - r;
                        if x < 120.0 {
                            0.04 + (1.65 - 0.04) * x / 120.0
                        } else {
                            (1.65 + (3.0 - 1.65) * (x - 120.0) / 120.0).min(3.0)
                        }
                    }
                    (Some(v), _) => {
                        let Some(r) = secs(self.runaway_at).filter(|r| *r > v) else {
                            return background;
                        };
                        // Past the point of no return the runaway comes whatever the charge.
                        let dose = match runaway {
                            Some(at) if t > at - NO_RETURN => r - (at - t),
                            _ => Room::dose(&switches, t),
                        };
                        let x = ((dose - v) / (r - v)).clamp(0.0, 1.0);
                        background + (0.04 - background) * x
                    }
                    _ => background,
                }
            }
            Role::H2 => match runaway {
                Some(r) if t >= r => 10_000.0 * ((t - r) / 60.0).min(1.0),
                _ => 0.0,
            },
        }
    }

    /// Off-gas: rises with the time on charge past `offgas_at` (twice as fast, after a
    /// 50 ppm jump, past `venting_at`), decays while the charge is stopped, goes to
    /// 1000 ppm at runaway.
    fn offgas(&self, t: f64, switches: &[(f64, bool)], runaway: Option<f64>) -> f64 {
        let Some(onset) = secs(self.offgas_at) else {
            return 0.0;
        };
        let vent = secs(self.venting_at);
        let rate = self.offgas_rate / 60.0;
        // What charging up to `dose` s has added.
        let added = |dose: f64| -> f64 {
            let base = rate * (dose - onset).max(0.0);
            match vent {
                Some(v) if dose >= v => base + 50.0 + rate * (dose - v),
                _ => base,
            }
        };
        let until = runaway.map_or(t, |r| r.min(t));
        let mut level = added(0.0);
        let mut dose = 0.0;
        for (i, (at, on)) in switches.iter().enumerate() {
            if *at >= until {
                break;
            }
            let end = switches
                .get(i + 1)
                .map_or(until, |(next, _)| next.min(until));
            let span = end - at;
            if *on {
                level += added(dose + span) - added(dose);
                dose += span;
            } else {
                level *= (-span / 180.0).exp();
            }
        }
        match runaway {
            Some(r) if t >= r => 1000.0 + (level - 1000.0) * (-(t - r) / 30.0).exp(),
            _ => level,
        }
    }

    /// Breakpoints `(at, value)` every [`STEP`] from 0 to `duration`: a `set` at 0, then
    /// ramps between consecutive breakpoints.
    pub fn breakpoints(&self, role: Role, duration: Duration) -> Vec<(Duration, f64)> {
        let steps = (duration.as_secs_f64() / STEP.as_secs_f64()).ceil() as u32;
        (0..=steps)
            .map(|k| {
                let at = STEP * k;
                (at, round(self.value(role, at.as_secs_f64())))
            })
            .collect()
    }
}

/// The room of a closed-loop scenario while it plays: the model, and the charge commands
/// clients have written to a `charging` coil, stamped with the sim time they came at.
pub struct LiveRoom {
    room: Room,
    commands: std::sync::RwLock<Vec<Command>>,
    now: Box<dyn Fn() -> Duration + Send + Sync>,
}

impl std::fmt::Debug for LiveRoom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRoom")
            .field("room", &self.room)
            .field("commands", &self.commands())
            .finish_non_exhaustive()
    }
}

impl LiveRoom {
    /// `now` is the scenario's sim time.
    pub fn new(room: Room, now: impl Fn() -> Duration + Send + Sync + 'static) -> Self {
        LiveRoom {
            room,
            commands: std::sync::RwLock::new(Vec::new()),
            now: Box::new(now),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Command>> {
        self.commands
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A client asks for the charge on (`true`) or off. Returns the sim time it takes
    /// effect, or `None` when the charge already was so (writing the same value again
    /// changes nothing).
    pub fn command(&self, on: bool) -> Option<Duration> {
        let mut commands = self
            .commands
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = (self.now)();
        if self.room.charging_at(at.as_secs_f64(), &commands) == on {
            return None;
        }
        commands.push((at, on));
        Some(at)
    }

    /// The commands that changed the charge, in time order.
    pub fn commands(&self) -> Vec<Command> {
        self.read().clone()
    }

    /// Whether the battery charges now.
    pub fn charging(&self) -> bool {
        self.room
            .charging_at((self.now)().as_secs_f64(), &self.read())
    }

    /// The value of `role` at sim time `t`.
    pub fn value(&self, role: Role, t: Duration) -> f64 {
        self.room.value_with(role, t.as_secs_f64(), &self.read())
    }

    /// When the UPS units in the room stop answering, as things stand.
    pub fn ups_lost_at(&self) -> Option<Duration> {
        self.room.ups_lost_at_with(&self.read())
    }

    pub fn ups_in_room(&self) -> &[String] {
        &self.room.ups_in_room
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> Room {
        Room {
            ambient: 23.0,
            battery_heat: 1.0,
            hvac_fails_at: None,
            hvac_drift: 0.3,
            offgas_at: Some(Duration::from_secs(60)),
            offgas_rate: 30.0,
            venting_at: Some(Duration::from_secs(300)),
            runaway_at: Some(Duration::from_secs(420)),
            charging_stops_at: None,
            runaway_air_rise: 13.0,
            ups_in_room: vec!["ups".into()],
            ups_lost_after: Duration::from_secs(180),
        }
    }

    #[test]
    fn gas_comes_first_while_the_bms_stays_flat_then_everything_runs_away() {
        let r = room();
        assert_eq!(r.value(Role::Offgas, 30.0), 0.0);
        assert!((r.value(Role::Offgas, 120.0) - 30.0).abs() < 1e-9);
        assert_eq!(r.value(Role::Cell, 380.0), 26.0, "BMS flat before runaway");
        assert_eq!(r.value(Role::H2, 400.0), 0.0, "no hydrogen before runaway");
        assert!(r.value(Role::Cell, 480.0) > 150.0);
        let air_rise = (r.value(Role::Air, 480.0) - r.value(Role::Air, 420.0)) * 60.0 / 60.0;
        assert!(
            air_rise > 8.3,
            "room air past the rate-of-rise alarm: {air_rise} C/min"
        );
        assert!((r.value(Role::Smoke, 540.0) - 1.65).abs() < 1e-9);
        assert_eq!(r.value(Role::H2, 500.0), 10_000.0);
        assert_eq!(r.ups_lost_at(), Some(Duration::from_secs(600)));
    }

    #[test]
    fn stopping_the_charge_before_runaway_clears_the_gas_and_nothing_burns() {
        let r = Room {
            charging_stops_at: Some(Duration::from_secs(240)),
            venting_at: None,
            ..room()
        };
        let peak = r.value(Role::Offgas, 240.0);
        assert!(r.value(Role::Offgas, 600.0) < peak / 2.0);
        assert_eq!(r.value(Role::Cell, 900.0), 26.0);
        assert_eq!(r.value(Role::H2, 900.0), 0.0);
        assert_eq!(r.ups_lost_at(), None);
    }

    #[test]
    fn a_charge_stopped_in_time_by_a_client_clears_the_gas_and_resumed_charges_again() {
        let r = Room {
            venting_at: None,
            ..room()
        };
        let stop = [(Duration::from_secs(240), false)];
        assert_eq!(
            r.value_with(Role::Offgas, 240.0, &stop),
            r.value(Role::Offgas, 240.0),
            "the past does not change"
        );
        assert!(r.value_with(Role::Offgas, 600.0, &stop) < r.value(Role::Offgas, 240.0) / 2.0);
        assert_eq!(r.value_with(Role::Charging, 239.0, &stop), 1.0);
        assert_eq!(r.value_with(Role::Charging, 240.0, &stop), 0.0);
        assert_eq!(r.ups_lost_at_with(&stop), None);
        assert_eq!(r.value_with(Role::H2, 900.0, &stop), 0.0);
        // Resumed at 600 s: 160 s of charge were left before the point of no return
        // (420 - 20 - 240 = 160 s), so runaway comes at 600 + 160 + 20 s.
        let resumed = [stop[0], (Duration::from_secs(600), true)];
        assert_eq!(r.value_with(Role::Charging, 601.0, &resumed), 1.0);
        let decayed = r.value_with(Role::Offgas, 600.0, &resumed);
        let rising = r.value_with(Role::Offgas, 660.0, &resumed);
        assert!(
            (rising - decayed - 30.0).abs() < 1e-9,
            "{decayed} -> {rising}"
        );
        assert_eq!(
            r.ups_lost_at_with(&resumed),
            Some(Duration::from_secs(780 + 180))
        );
        assert!(r.value_with(Role::Cell, 790.0, &resumed) > 150.0);
    }

    #[test]
    fn past_the_point_of_no_return_stopping_the_charge_is_too_late() {
        let r = room();
        let late = [(Duration::from_secs(410), false)];
        assert_eq!(r.ups_lost_at_with(&late), r.ups_lost_at());
        assert_eq!(
            r.value_with(Role::H2, 500.0, &late),
            r.value(Role::H2, 500.0)
        );
    }

    #[test]
    fn a_live_room_records_only_commands_that_change_the_charge() {
        let now = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let clock = now.clone();
        let live = LiveRoom::new(room(), move || {
            Duration::from_secs(clock.load(std::sync::atomic::Ordering::Relaxed))
        });
        assert!(live.charging());
        assert_eq!(live.command(true), None, "already charging");
        now.store(100, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(live.command(false), Some(Duration::from_secs(100)));
        assert_eq!(live.command(false), None);
        assert!(!live.charging());
        assert_eq!(live.ups_lost_at(), None);
        assert_eq!(live.value(Role::Charging, Duration::from_secs(50)), 1.0);
        assert_eq!(live.commands(), [(Duration::from_secs(100), false)]);
    }

    #[test]
    fn breakpoints_cover_the_whole_scenario_on_a_fixed_step() {
        let b = room().breakpoints(Role::Air, Duration::from_secs(12));
        let ats: Vec<u64> = b.iter().map(|(at, _)| at.as_secs()).collect();
        assert_eq!(ats, [0, 5, 10, 15]);
        assert_eq!(b[0].1, 24.0);
    }
}
