//! SIGHUP: reload the config file. The new file is loaded and validated exactly as at
//! start, then checked against the running agent (keys that only apply at a restart,
//! open incidents, running runbooks). Either all of it is applied, or nothing is and the
//! running config stays (`config_reload_failed` with the reason).
//!
//! Applying rebuilds the detection side in-process: sources, detector, staged response
//! and the shared config handed to new runbooks. Open incidents are carried over by zone
//! id (their zones stay latched critical until an operator reset), the event log, the
//! incident journal, the API, the metrics registry and the telemetry sinks are kept.

use crate::config::{self, Config};
use std::path::Path;

/// Keys whose change needs a restart: the API socket, the event log, the state directory,
/// the agent's name (in every event line) and the telemetry sinks (their connections and
/// their sensor and zone names are fixed at start).
pub(super) fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    if old.agent.name != new.agent.name {
        out.push("agent.name");
    }
    if old.agent.state_dir != new.agent.state_dir {
        out.push("agent.state_dir");
    }
    if old.agent.event_log != new.agent.event_log {
        out.push("agent.event_log");
    }
    if differs(&old.api, &new.api) {
        out.push("api");
    }
    if differs(&old.telemetry, &new.telemetry) {
        out.push("telemetry");
    }
    if differs(&old.cluster, &new.cluster) {
        out.push("cluster");
    }
    let zone_ids = |c: &Config| c.zones.iter().map(|z| z.id.clone()).collect::<Vec<_>>();
    if old.cluster.is_some() && zone_ids(old) != zone_ids(new) {
        // The coordinator keeps per-zone leadership by zone index.
        out.push("zones ids (with [cluster])");
    }
    let sinks = old.telemetry.influxdb.is_some() || old.telemetry.mqtt.is_some();
    if sinks && names(old) != names(new) {
        out.push("sensors/zones ids (with [telemetry.influxdb] or [telemetry.mqtt])");
    }
    if let Some(t) = &old.telemetry.mqtt {
        // The status publisher holds its own connection to this source.
        let a = old.sources.get(t.source).map(|s| format!("{s:?}"));
        let b = new
            .telemetry
            .mqtt
            .as_ref()
            .and_then(|t| new.sources.get(t.source))
            .map(|s| format!("{s:?}"));
        if a != b {
            out.push("the MQTT source of [telemetry.mqtt]");
        }
    }
    out
}

/// Sensor (id, zone, kind) and zone ids, in order: what the telemetry sinks were built with.
fn names(c: &Config) -> (Vec<(String, String, &'static str)>, Vec<String>) {
    (
        c.sensors
            .iter()
            .map(|s| (s.id.clone(), c.zones[s.zone].id.clone(), s.kind.as_str()))
            .collect(),
        c.zones.iter().map(|z| z.id.clone()).collect(),
    )
}

/// The sections a reload changes live, for the `config_reloaded` event.
pub(super) fn live_changes(old: &Config, new: &Config) -> Vec<String> {
    let d = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut out = Vec::new();
    if old.agent.dry_run != new.agent.dry_run {
        out.push("agent.dry_run");
    }
    if old.agent.tick_interval != new.agent.tick_interval {
        out.push("agent.tick_interval");
    }
    if d(&old.sources, &new.sources) {
        out.push("sources");
    }
    if d(&old.sensors, &new.sensors) {
        out.push("sensors");
    }
    if d(&old.zones, &new.zones) {
        out.push("zones");
    }
    if d(&old.runbooks, &new.runbooks) {
        out.push("runbooks");
    }
    out.into_iter().map(String::from).collect()
}

/// How long the old sources may take to stop when a reload replaces them (well within
/// the systemd watchdog, pinged just before).
const SOURCES_STOP: std::time::Duration = std::time::Duration::from_secs(3);

/// Waits (bounded) for the old sources, already cancelled, to end; aborts stragglers.
pub(super) async fn stop_sources(tasks: Vec<tokio::task::JoinHandle<()>>) {
    let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
    let all = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(SOURCES_STOP, all).await.is_err() {
        tracing::error!("sources did not stop in time on reload; aborted");
        aborts.iter().for_each(tokio::task::AbortHandle::abort);
    }
}

/// Loads and validates the file as `firebreak run` would (secret files included).
pub(super) fn load(path: &Path) -> Result<Config, String> {
    let loaded = config::load(path).map_err(|e| {
        let problems: Vec<String> = e.errors.iter().map(|p| p.to_string()).collect();
        format!("{e}: {}", problems.join("; "))
    })?;
    for w in &loaded.warnings {
        tracing::warn!(problem = %w, "config warning (reload)");
    }
    let missing = super::missing_secrets(&loaded.config);
    if !missing.is_empty() {
        let problems: Vec<String> = missing.iter().map(|p| p.to_string()).collect();
        return Err(format!("secret file(s) missing: {}", problems.join("; ")));
    }
    Ok(loaded.config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const BASE: &str = r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-reload-unit"
dry_run = true

[api]
listen = "127.0.0.1:9410"

[[sources]]
name = "broker"
type = "mqtt"
url = "mqtt://127.0.0.1:1883"

[[sensors]]
id = "a.temp"
zone = "a"
kind = "temperature"
source = "broker"
topic = "a/temp"
warn_above = 40.0

[[zones]]
id = "a"
runbook = "r"

[[runbooks]]
name = "r"
[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"
"#;

    fn cfg(text: &str) -> Config {
        config::load_str(text, "test", HashMap::new())
            .unwrap_or_else(|e| panic!("{:?}", e.errors))
            .config
    }

    #[test]
    fn thresholds_dry_run_and_runbooks_change_live() {
        let old = cfg(BASE);
        let new = cfg(&BASE
            .replace("dry_run = true", "dry_run = false")
            .replace("warn_above = 40.0", "warn_above = 30.0")
            .replace("duration = \"1s\"", "duration = \"2s\""));
        assert!(restart_only_changes(&old, &new).is_empty());
        assert_eq!(
            live_changes(&old, &new),
            vec!["agent.dry_run", "sensors", "runbooks"]
        );
        assert!(live_changes(&old, &old).is_empty());
    }

    #[test]
    fn the_api_the_event_log_and_the_name_need_a_restart() {
        let old = cfg(BASE);
        let new = cfg(&BASE
            .replace("127.0.0.1:9410", "127.0.0.1:9411")
            .replace("name = \"t\"", "name = \"u\""));
        assert_eq!(restart_only_changes(&old, &new), vec!["agent.name", "api"]);
    }

    #[test]
    fn with_telemetry_the_sensor_names_need_a_restart_too() {
        let with_status = format!("{BASE}\n[telemetry.mqtt]\nsource = \"broker\"\n");
        let old = cfg(&with_status);
        let renamed = cfg(&with_status.replace("a.temp", "a.temp1"));
        let changes = restart_only_changes(&old, &renamed);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].starts_with("sensors/zones ids"), "{changes:?}");
        // Without a sink, renaming a sensor is a live change.
        assert!(restart_only_changes(&cfg(BASE), &cfg(&BASE.replace("a.temp", "a.t1"))).is_empty());
    }
}
