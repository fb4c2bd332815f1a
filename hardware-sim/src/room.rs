//! The room model: a battery room's physics as pure functions of sim time, turned into
//! timeline segments for the signals that follow it (`{ at = "0s", room = "air" }`).
//!
//! - air: the HVAC holds `ambient`; the battery string adds `battery_heat`; after
//!   `hvac_fails_at` the air drifts up `hvac_drift` °C/min; at runaway it rises
//!   `runaway_air_rise` °C/min for 4 min (well past the 8.3 °C/min rate-of-rise alarm).
//! - cell (the BMS temperature): flat at ambient + heat + 2 °C until 20 s before
//!   runaway ("nothing abnormal until just before ignition"), then exponentially to 650 °C.
//! - offgas (ppm electrolyte vapour): from `offgas_at` it rises `offgas_rate` ppm/min; at
//!   `venting_at` it jumps by 50 ppm and rises twice as fast; at runaway it goes to
//!   1000 ppm (τ 30 s). With `charging_stops_at` before runaway it decays (τ 3 min) and no
//!   runaway follows (DNV-GL: stopping the charge avoided runaway).
//! - smoke (%obs/m): 0.005 background; venting brings it to 0.04 (alert) by runaway; runaway
//!   takes it to 1.65 (fire2) within 2 min, then 3.0.
//! - h2 (ppm): only at runaway (Sandia 2024): to 10 000 ppm (25 % LFL) within 1 min.
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
}

impl Role {
    pub const NAMES: &'static str = "air, cell, offgas, smoke, h2";

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "air" => Some(Role::Air),
            "cell" => Some(Role::Cell),
            "offgas" => Some(Role::Offgas),
            "smoke" => Some(Role::Smoke),
            "h2" => Some(Role::H2),
            _ => None,
        }
    }
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

impl Room {
    /// Runaway happens unless the charge was stopped before it.
    fn runaway(&self) -> Option<f64> {
        match (secs(self.runaway_at), secs(self.charging_stops_at)) {
            (Some(r), Some(stop)) if stop < r => None,
            (r, _) => r,
        }
    }

    /// When the UPS units in the room stop answering, if they do.
    pub fn ups_lost_at(&self) -> Option<Duration> {
        self.runaway()
            .map(|r| Duration::from_secs_f64(r) + self.ups_lost_after)
    }

    /// The value of `role` at sim time `t` seconds.
    pub fn value(&self, role: Role, t: f64) -> f64 {
        let runaway = self.runaway();
        let since = |at: Option<f64>| at.map_or(0.0, |a| (t - a).max(0.0));
        match role {
            Role::Air => {
                let hvac = self.hvac_drift * since(secs(self.hvac_fails_at)) / 60.0;
                let fire = self.runaway_air_rise * since(runaway).min(240.0) / 60.0;
                self.ambient + self.battery_heat + hvac + fire
            }
            Role::Cell => {
                let base = self.ambient + self.battery_heat + 2.0;
                match runaway {
                    Some(r) if t > r - 20.0 => {
                        base + (650.0 - base) * (1.0 - (-(t - (r - 20.0)) / 40.0).exp())
                    }
                    _ => base,
                }
            }
            Role::Offgas => {
                let Some(start) = secs(self.offgas_at) else {
                    return 0.0;
                };
                let stop = secs(self.charging_stops_at);
                let rising_until = [stop, runaway].into_iter().flatten().fold(t, f64::min);
                let vent = secs(self.venting_at);
                let rate = self.offgas_rate / 60.0;
                let level_at = |x: f64| -> f64 {
                    let base = rate * (x - start).max(0.0);
                    match vent {
                        Some(v) if x >= v => base + 50.0 + rate * (x - v),
                        _ => base,
                    }
                };
                let peak = level_at(rising_until);
                match (runaway, stop) {
                    (Some(r), _) if t >= r => 1000.0 + (peak - 1000.0) * (-(t - r) / 30.0).exp(),
                    (None, Some(s)) if t >= s => peak * (-(t - s) / 180.0).exp(),
                    _ => peak,
                }
            }
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
                    (Some(v), Some(r)) if t >= v && r > v => {
                        background + (0.04 - background) * (t - v) / (r - v)
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
    fn breakpoints_cover_the_whole_scenario_on_a_fixed_step() {
        let b = room().breakpoints(Role::Air, Duration::from_secs(12));
        let ats: Vec<u64> = b.iter().map(|(at, _)| at.as_secs()).collect();
        assert_eq!(ats, [0, 5, 10, 15]);
        assert_eq!(b[0].1, 24.0);
    }
}
