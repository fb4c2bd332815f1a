//! Shared by the `detect_*` tests: the contract's config, sensor lookup by id, and a
//! virtual-time driver that plays per-sensor signals at each source's poll rate.
#![allow(dead_code)]

use firebreak::config::{load_str, Config, SourceSpec};
use firebreak::detect::{Cause, Detector, Output, Reading, Sample, ZoneLevel};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

pub const MS: u64 = 1_000_000;
pub const S: u64 = 1_000 * MS;

/// The contract's reference config (`config/firebreak.toml`), with text patches applied.
pub fn contract_config(patches: &[(&str, &str)]) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/firebreak.toml");
    let mut text = std::fs::read_to_string(path).expect("config/firebreak.toml");
    for (from, to) in patches {
        assert!(
            text.contains(from),
            "patch target {from:?} not in the config"
        );
        text = text.replacen(from, to, 1);
    }
    load_str(&text, "config/firebreak.toml", HashMap::new())
        .unwrap_or_else(|e| panic!("{:#?}", e.errors))
        .config
}

/// How often each sensor reports: its polled source's poll interval, 1 s over MQTT.
pub fn periods(config: &Config) -> Vec<u64> {
    config
        .sensors
        .iter()
        .map(|s| match &config.sources[s.source].spec {
            SourceSpec::Modbus(m) => m.poll_interval.as_nanos() as u64,
            SourceSpec::Mqtt(_) => S,
            SourceSpec::Nut(n) => n.poll_interval.as_nanos() as u64,
            SourceSpec::Snmp(m) => m.poll_interval.as_nanos() as u64,
            SourceSpec::Bacnet(b) => b.poll_interval.as_nanos() as u64,
        })
        .collect()
}

/// Small deterministic jitter in [-amp, amp], different per sensor and per time.
pub fn jitter(sensor: &str, t: f64, amp: f64) -> f64 {
    let seed = sensor
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    let x = (t * 12.9898 + (seed % 1000) as f64 * 78.233).sin() * 43758.5453;
    amp * (2.0 * (x - x.floor()) - 1.0)
}

/// What a scenario run produced, in virtual seconds since the start.
#[derive(Debug, Default)]
pub struct Run {
    pub outputs: Vec<(f64, Output)>,
}

impl Run {
    pub fn first_critical(&self) -> Option<(f64, Cause)> {
        self.outputs.iter().find_map(|(t, o)| match o {
            Output::Critical { cause, .. } => Some((*t, *cause)),
            _ => None,
        })
    }

    /// First time the zone reached at least `level`.
    pub fn first_level(&self, level: ZoneLevel) -> Option<f64> {
        self.outputs.iter().find_map(|(t, o)| match o {
            Output::Zone { to, .. } if *to >= level => Some(*t),
            _ => None,
        })
    }

    pub fn max_level(&self) -> ZoneLevel {
        self.outputs
            .iter()
            .filter_map(|(_, o)| match o {
                Output::Zone { to, .. } => Some(*to),
                _ => None,
            })
            .max()
            .unwrap_or(ZoneLevel::Normal)
    }

    pub fn sensor_events(&self) -> usize {
        self.outputs
            .iter()
            .filter(|(_, o)| matches!(o, Output::Sensor { .. }))
            .count()
    }

    /// `(sensor id, to, reason)` of every sensor change, in order.
    pub fn sensor_changes(&self, config: &Config) -> Vec<(String, &'static str, &'static str)> {
        self.outputs
            .iter()
            .filter_map(|(_, o)| match o {
                Output::Sensor {
                    sensor, to, reason, ..
                } => Some((
                    config.sensors[*sensor as usize].id.clone(),
                    to.as_str(),
                    reason.as_str(),
                )),
                _ => None,
            })
            .collect()
    }

    /// The evidence (sensor id, reason) of the zone's first change to critical.
    pub fn critical_evidence(&self, config: &Config) -> Vec<(String, &'static str)> {
        self.outputs
            .iter()
            .find_map(|(_, o)| match o {
                Output::Zone {
                    to: ZoneLevel::Critical,
                    evidence,
                    ..
                } => Some(
                    evidence
                        .iter()
                        .map(|e| {
                            (
                                config.sensors[e.sensor as usize].id.clone(),
                                e.reason.as_str(),
                            )
                        })
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_default()
    }
}

/// Plays `signal(sensor id, seconds) -> reading` (None: the sensor is silent) for
/// `duration`, each sensor at its own period, ticking every `tick`.
pub fn play(
    config: &Config,
    duration: Duration,
    tick: Duration,
    signal: &dyn Fn(&str, f64) -> Option<Reading>,
) -> (Detector, Run) {
    let periods = periods(config);
    let tick = tick.as_nanos() as u64;
    let end = duration.as_nanos() as u64;
    let mut d = Detector::from_config(config, 0);
    let mut run = Run::default();
    let mut next: Vec<u64> = vec![0; periods.len()];
    let mut t = 0;
    while t <= end {
        for (i, s) in config.sensors.iter().enumerate() {
            while next[i] <= t {
                let at = next[i];
                if let Some(reading) = signal(&s.id, at as f64 / S as f64) {
                    d.observe(Sample {
                        sensor: i as u32,
                        at,
                        reading,
                    });
                }
                next[i] += periods[i];
            }
        }
        d.tick(t);
        let secs = t as f64 / S as f64;
        run.outputs.extend(d.drain().map(|o| (secs, o)));
        t += tick;
    }
    (d, run)
}
