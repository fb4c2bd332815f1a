//! The config file as written: every key optional so that validation can report every
//! missing or wrong key at once instead of stopping at the first one serde trips on.
//! Unknown keys are collected by the loader (see `load.rs`) and reported as errors.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    pub agent: Option<RawAgent>,
    pub api: Option<RawApi>,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    #[serde(default)]
    pub sensors: Vec<RawSensor>,
    pub detect: Option<RawDetectKinds>,
    #[serde(default)]
    pub zones: Vec<RawZone>,
    #[serde(default)]
    pub runbooks: Vec<RawRunbook>,
    /// The power map: which feeds (breakers, PDUs) power which zones.
    #[serde(default)]
    pub feeds: Vec<RawFeed>,
    pub telemetry: Option<RawTelemetry>,
    /// Redundant agents coordinating through etcd; absent: the agent runs alone.
    pub cluster: Option<RawCluster>,
}

/// `[[feeds]]`: one power feed as the electricians name it.
#[derive(Debug, Default, Deserialize)]
pub struct RawFeed {
    pub id: Option<String>,
    /// The breaker or PDU as it is labelled in the room ("B3 PDU A, breaker 3-14 in panel
    /// LV-B3").
    pub description: Option<String>,
    /// The zones whose equipment the feed powers.
    pub zones: Option<Vec<String>>,
    /// What else the feed powers that needs no moving (lighting, badge readers): shown
    /// with the feed, never holds it back.
    pub loads: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawCluster {
    /// etcd client URLs (`http://` or `https://`).
    pub etcd: Option<Vec<String>>,
    /// This agent's name among its peers. Default: `agent.name`.
    pub node: Option<String>,
    /// Key prefix in etcd. Default "/firebreak".
    pub namespace: Option<String>,
    /// Lease of a zone's leadership: how long a dead leader holds it. Default "5s".
    pub lease_ttl: Option<String>,
    /// What to do when etcd cannot be reached: "act" (default) or "hold".
    pub on_cluster_loss: Option<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAgent {
    pub name: Option<String>,
    pub state_dir: Option<String>,
    pub event_log: Option<String>,
    pub dry_run: Option<bool>,
    /// How often the detection core is ticked (stale sensors, holds). Default "100ms".
    pub tick_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawApi {
    pub listen: Option<String>,
    pub token_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSource {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub url: Option<String>,
    /// The source type's own keys, read by its folder's `config.rs` under `src/sources/`.
    #[serde(flatten)]
    pub params: BTreeMap<String, ::config::Value>,
}

/// Detection keys: the same set in `[detect.<kind>]` and, as overrides, on a sensor.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RawDetect {
    pub warn_above: Option<f64>,
    pub alarm_above: Option<f64>,
    pub critical_above: Option<f64>,
    pub warn_below: Option<f64>,
    pub alarm_below: Option<f64>,
    pub critical_below: Option<f64>,
    pub rise_warn: Option<f64>,
    pub rise_alarm: Option<f64>,
    pub rise_window: Option<String>,
    #[serde(rename = "for")]
    pub hold: Option<String>,
    pub hysteresis: Option<f64>,
    pub stale_after: Option<String>,
    /// A value that has not changed at all for this long is `fault:frozen` (off if unset).
    pub frozen_after: Option<String>,
    /// Plausible physical range; values outside are `fault:out_of_range`.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Fastest credible change per minute between two samples; a faster step is
    /// `fault:implausible_rate` (a device glitch), never a rise.
    pub max_rate: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSensor {
    pub id: Option<String>,
    pub zone: Option<String>,
    pub kind: Option<String>,
    pub source: Option<String>,
    // Per-sensor detection overrides. Design: listed here rather than `#[serde(flatten)]`,
    // because flatten defeats unknown-key detection.
    pub warn_above: Option<f64>,
    pub alarm_above: Option<f64>,
    pub critical_above: Option<f64>,
    pub warn_below: Option<f64>,
    pub alarm_below: Option<f64>,
    pub critical_below: Option<f64>,
    pub rise_warn: Option<f64>,
    pub rise_alarm: Option<f64>,
    pub rise_window: Option<String>,
    #[serde(rename = "for")]
    pub hold: Option<String>,
    pub hysteresis: Option<f64>,
    pub stale_after: Option<String>,
    pub frozen_after: Option<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub max_rate: Option<f64>,
    /// Raw values (as the device sends them, before `scale` and `offset`) that mean "no
    /// data" for this sensor (e.g. 85 and -127 from a DS18B20): `fault:out_of_range`.
    pub sentinels: Option<Vec<f64>>,
    /// Extension, `alarm_input` only: the other system has confirmed the fire already, so
    /// its alarm makes the zone critical on its own (`critical_above` at the alarm
    /// threshold).
    pub confirmed: Option<bool>,
    /// Where the value is on the device (`register`, `topic`, ...): the keys of the
    /// sensor's source type, read by its folder's `config.rs` under `src/sources/`.
    #[serde(flatten)]
    pub params: BTreeMap<String, ::config::Value>,
}

impl RawSensor {
    pub fn detect_overrides(&self) -> RawDetect {
        RawDetect {
            warn_above: self.warn_above,
            alarm_above: self.alarm_above,
            critical_above: self.critical_above,
            warn_below: self.warn_below,
            alarm_below: self.alarm_below,
            critical_below: self.critical_below,
            rise_warn: self.rise_warn,
            rise_alarm: self.rise_alarm,
            rise_window: self.rise_window.clone(),
            hold: self.hold.clone(),
            hysteresis: self.hysteresis,
            stale_after: self.stale_after.clone(),
            frozen_after: self.frozen_after.clone(),
            min: self.min,
            max: self.max,
            max_rate: self.max_rate,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDetectKinds {
    pub temperature: Option<RawDetect>,
    pub offgas: Option<RawDetect>,
    pub smoke: Option<RawDetect>,
    pub on_battery: Option<RawDetect>,
    pub runtime: Option<RawDetect>,
    pub charge: Option<RawDetect>,
    pub voltage: Option<RawDetect>,
    pub alarm_input: Option<RawDetect>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawZone {
    pub id: Option<String>,
    pub runbook: Option<String>,
    pub confirm: Option<i64>,
    /// What `confirm` counts: "sensors" (default; sensors of one device that move together
    /// count once) or "sources" (each device once).
    pub confirm_across: Option<String>,
    pub stale_votes: Option<bool>,
    pub power_reserve: Option<String>,
    pub max_on_battery: Option<String>,
    /// Staged response: a runbook started once per incident when the zone first reaches
    /// alarm (or critical), before and without the failover.
    pub prepare_runbook: Option<String>,
    /// How long the zone must stay normal before the prepare runbook is undone. Default "10m".
    pub prepare_cooldown: Option<String>,
    /// The failover runbook waits for a running prepare runbook to finish. Default false.
    pub failover_waits_for_prepare: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawRunbook {
    pub name: Option<String>,
    pub budget: Option<String>,
    /// Per-runbook dry run (the global `[agent] dry_run` applies to every runbook).
    pub dry_run: Option<bool>,
    #[serde(default)]
    pub steps: Vec<RawStep>,
    /// Steps that undo a prepare runbook (same step types).
    #[serde(default)]
    pub undo_steps: Vec<RawStep>,
}

/// One step: the keys every step type has; the rest are the step type's own, checked by
/// its folder under `src/runbook/steps/`.
#[derive(Debug, Default, Deserialize)]
pub struct RawStep {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<i64>,
    pub on_failure: Option<String>,
    /// "must" (default) or "should": a `should` step is skipped when power is expected to
    /// be lost before the remaining steps can finish.
    pub priority: Option<String>,
    /// Extension: rehearse this step only ("dry run: would ..."); it is left out of the
    /// safe-to-cut verdict and listed in the `safe_to_cut_power` event's `dry_run_steps`.
    pub dry_run: Option<bool>,
    /// The step type's own keys, read by its folder under `src/runbook/steps/`.
    #[serde(flatten)]
    pub params: BTreeMap<String, ::config::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawTelemetry {
    /// `[telemetry.influxdb]`, read by `src/sinks/influxdb/config.rs`.
    pub influxdb: Option<crate::sinks::influxdb::config::Raw>,
    /// `[telemetry.mqtt]`, read by `src/sinks/mqtt/config.rs`.
    pub mqtt: Option<crate::sinks::mqtt::config::Raw>,
}
