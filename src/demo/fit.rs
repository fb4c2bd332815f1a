//! Fitting an agent config written for a simulated room to one run of the simulator: the
//! devices' real addresses, the broker, a state dir, and every time constant rescaled for
//! the speed the scenario is played at. Pure: TOML text in, TOML text out.
//!
//! Used by `firebreak demo` and by the test that plays the whole scenario library.
//!
//! So that a rate-of-rise detector sees what it would see in real time, poll intervals,
//! `for`, `rise_window`, `stale_after`, `frozen_after` and `max_on_battery` are divided by
//! the speed and the per-minute `rise_*` thresholds and `max_rate` are multiplied by it. `stale_after` is
//! not made shorter than `stale_floor` of wall time, nor `rise_window` than the 1 s the
//! agent accepts (a longer window only smooths the slope): staleness is about a device that stopped
//! answering, and a busy machine's scheduling hiccups must not look like one.
//! `power_reserve` and budgets are compared with the UPS's runtime register, which the
//! simulator writes in scenario seconds, so they are kept as they are. `prepare_cooldown`
//! is room time (how long the room has been calm) and is divided by the speed.
//!
//! A Modbus source the scenario has no device for is dropped with its sensors, unless a
//! runbook step writes to it (`modbus_write`): then it stays, and those steps become
//! `dry_run = true`, rehearsals that contact nothing, as the demo's steps for systems it
//! does not have are.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml_edit::{value, DocumentMut, Item, Table};

#[derive(Debug, thiserror::Error)]
pub enum FitError {
    #[error("the agent config is not TOML: {0}")]
    Toml(#[from] toml_edit::TomlError),
    #[error("`{key}`: {message}")]
    Key { key: String, message: String },
}

/// What one simulator run offers the agent.
#[derive(Debug, Clone)]
pub struct Fit {
    /// Modbus devices the simulator serves, by source name. Modbus sources without a
    /// device here are dropped with their sensors (kept when a step writes to them, the
    /// step made a dry run).
    pub devices: Vec<(String, SocketAddr)>,
    /// The MQTT broker (`host`, `port`) every MQTT source is pointed at.
    pub broker: Option<(String, u16)>,
    /// Whether the scenario has MQTT devices; without them MQTT sensors are dropped (the
    /// MQTT sources stay: runbook steps may publish through them).
    pub mqtt_devices: bool,
    /// Prefix for every subscribed topic (`<prefix>/<topic>`), for runs sharing a broker.
    pub topic_prefix: Option<String>,
    pub client_id: String,
    pub speed: f64,
    pub stale_floor: Duration,
    pub state_dir: PathBuf,
    pub api_listen: Option<SocketAddr>,
    pub tick_interval: Duration,
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

fn key_error(key: &str, message: impl Into<String>) -> FitError {
    FitError::Key {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Divides the duration at `table[key]` (if present) by `speed`, not below `floor`.
fn scale_duration(
    table: &mut Table,
    path: &str,
    key: &str,
    speed: f64,
    floor: Duration,
) -> Result<(), FitError> {
    if let Some(text) = table.get(key).and_then(Item::as_str) {
        let d = crate::config::units::parse_duration(text)
            .map_err(|e| key_error(&format!("{path}.{key}"), e.to_string()))?;
        table[key] = value(ms(d.div_f64(speed).max(floor)));
    }
    Ok(())
}

fn tables_mut<'a>(
    doc: &'a mut DocumentMut,
    key: &str,
) -> Result<&'a mut toml_edit::ArrayOfTables, FitError> {
    doc.get_mut(key)
        .and_then(Item::as_array_of_tables_mut)
        .ok_or_else(|| key_error(key, "missing: the config needs [[{key}]] tables"))
}

/// The agent config `text` fitted to one simulator run.
pub fn fit(text: &str, fit: &Fit) -> Result<String, FitError> {
    if !(fit.speed.is_finite() && fit.speed > 0.0) {
        return Err(key_error(
            "speed",
            format!("{} is not a positive speed", fit.speed),
        ));
    }
    let mut doc: DocumentMut = text.parse()?;
    let speed = fit.speed;
    doc["agent"]["state_dir"] = value(fit.state_dir.display().to_string());
    doc["agent"]["event_log"] = value(fit.state_dir.join("events.jsonl").display().to_string());
    doc["agent"]["tick_interval"] = value(ms(fit.tick_interval));
    if let Some(listen) = fit.api_listen {
        doc["api"]["listen"] = value(listen.to_string());
    }

    let written = written_sources(&doc);
    let mut dropped = Vec::new();
    let mut absent = Vec::new();
    let sources = tables_mut(&mut doc, "sources")?;
    sources.retain(|s| {
        let name = s
            .get("name")
            .and_then(Item::as_str)
            .unwrap_or("")
            .to_string();
        let served = s.get("type").and_then(Item::as_str) == Some("mqtt")
            || fit.devices.iter().any(|(n, _)| *n == name);
        if served {
            return true;
        }
        let keep = written.contains(&name);
        absent.push(name.clone());
        if !keep {
            dropped.push(name);
        }
        keep
    });
    for (i, s) in sources.iter_mut().enumerate() {
        let path = format!("sources[{i}]");
        let name = s
            .get("name")
            .and_then(Item::as_str)
            .unwrap_or("")
            .to_string();
        if s.get("type").and_then(Item::as_str) == Some("mqtt") {
            if let Some((host, port)) = &fit.broker {
                s["url"] = value(format!("mqtt://{host}:{port}"));
            }
            s["client_id"] = value(fit.client_id.clone());
        } else if let Some((_, addr)) = fit.devices.iter().find(|(n, _)| *n == name) {
            s["url"] = value(format!("tcp://{addr}"));
            scale_duration(s, &path, "poll_interval", speed, Duration::from_millis(20))?;
            // Not a detection constant: only how long a dead device takes to notice.
            scale_duration(s, &path, "timeout", speed, Duration::from_millis(300))?;
        }
    }

    let sensors = tables_mut(&mut doc, "sensors")?;
    if let Some(prefix) = &fit.topic_prefix {
        for s in sensors.iter_mut() {
            if let Some(topic) = s.get("topic").and_then(Item::as_str) {
                let topic = format!("{prefix}/{topic}");
                s["topic"] = value(topic);
            }
        }
    }
    sensors.retain(|s| {
        if s.contains_key("topic") {
            fit.mqtt_devices
        } else {
            let source = s.get("source").and_then(Item::as_str).unwrap_or("");
            !absent.iter().any(|d| d == source)
        }
    });
    let kinds: BTreeSet<String> = sensors
        .iter()
        .filter_map(|s| s.get("kind").and_then(Item::as_str).map(str::to_string))
        .collect();
    for (i, s) in sensors.iter_mut().enumerate() {
        scale_detect(s, &format!("sensors[{i}]"), speed, fit.stale_floor, false)?;
    }

    if !doc.contains_key("detect") {
        doc["detect"] = Item::Table(Table::new());
    }
    let detect = doc["detect"]
        .as_table_mut()
        .ok_or_else(|| key_error("detect", "must be a table"))?;
    for kind in kinds {
        if !detect.contains_key(&kind) {
            detect.insert(&kind, Item::Table(Table::new()));
        }
        let t = detect[&kind]
            .as_table_mut()
            .ok_or_else(|| key_error(&format!("detect.{kind}"), "must be a table"))?;
        // The built-in `max_rate` is per minute of the room's time too: written out so
        // that it is rescaled with the rise thresholds.
        let builtin = crate::config::Kind::ALL
            .iter()
            .find(|k| k.as_str() == kind)
            .and_then(|k| crate::config::validate::builtin_defaults(*k).max_rate);
        if let (Some(r), false) = (builtin, t.contains_key("max_rate")) {
            t["max_rate"] = value(r);
        }
        scale_detect(t, &format!("detect.{kind}"), speed, fit.stale_floor, true)?;
    }
    for (i, zone) in tables_mut(&mut doc, "zones")?.iter_mut().enumerate() {
        for key in ["max_on_battery", "prepare_cooldown"] {
            scale_duration(
                zone,
                &format!("zones[{i}]"),
                key,
                speed,
                Duration::from_millis(1),
            )?;
        }
    }
    // Steps that write to a device the scenario does not have: rehearsals.
    if let Some(runbooks) = doc
        .get_mut("runbooks")
        .and_then(Item::as_array_of_tables_mut)
    {
        for rb in runbooks.iter_mut() {
            for list in ["steps", "undo_steps"] {
                let Some(steps) = rb.get_mut(list).and_then(Item::as_array_of_tables_mut) else {
                    continue;
                };
                for step in steps.iter_mut() {
                    let source = step.get("source").and_then(Item::as_str).unwrap_or("");
                    if step.get("type").and_then(Item::as_str) == Some("modbus_write")
                        && absent.iter().any(|a| a == source)
                    {
                        step["dry_run"] = value(true);
                    }
                }
            }
        }
    }
    Ok(doc.to_string())
}

/// The sources `modbus_write` steps write to.
fn written_sources(doc: &DocumentMut) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Some(runbooks) = doc.get("runbooks").and_then(Item::as_array_of_tables) else {
        return out;
    };
    for rb in runbooks.iter() {
        for list in ["steps", "undo_steps"] {
            let Some(steps) = rb.get(list).and_then(Item::as_array_of_tables) else {
                continue;
            };
            for step in steps.iter() {
                if step.get("type").and_then(Item::as_str) == Some("modbus_write") {
                    if let Some(source) = step.get("source").and_then(Item::as_str) {
                        out.insert(source.to_string());
                    }
                }
            }
        }
    }
    out
}

/// Rescales the detection keys of a `[detect.<kind>]` table or of one sensor's overrides.
/// `defaults` writes out the agent's built-in `for` and `stale_after` first, so that they
/// are rescaled too.
fn scale_detect(
    t: &mut Table,
    path: &str,
    speed: f64,
    stale_floor: Duration,
    defaults: bool,
) -> Result<(), FitError> {
    if defaults {
        if !t.contains_key("for") {
            t["for"] = value("2s");
        }
        if !t.contains_key("stale_after") {
            t["stale_after"] = value("5s");
        }
    }
    for key in ["for", "frozen_after"] {
        scale_duration(t, path, key, speed, Duration::from_millis(1))?;
    }
    // The agent takes no window under 1 s; a longer one only smooths the slope.
    scale_duration(t, path, "rise_window", speed, Duration::from_secs(1))?;
    scale_duration(t, path, "stale_after", speed, stale_floor)?;
    for key in ["rise_warn", "rise_alarm", "max_rate"] {
        if let Some(v) = t.get(key).and_then(Item::as_float) {
            t[key] = value(v * speed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = r#"
[agent]
name = "t"
state_dir = "/nowhere"

[[sources]]
name = "env"
type = "modbus"
url = "tcp://127.0.0.1:1"
unit = 1
poll_interval = "1s"

[[sources]]
name = "gone"
type = "modbus"
url = "tcp://127.0.0.1:2"
unit = 1

[[sources]]
name = "broker"
type = "mqtt"
url = "mqtt://127.0.0.1:1883"

[[sensors]]
id = "t1"
zone = "z"
kind = "temperature"
source = "env"
register = { table = "input", address = 0, type = "i16" }

[[sensors]]
id = "t2"
zone = "z"
kind = "temperature"
source = "gone"
register = { table = "input", address = 0, type = "i16" }

[[sensors]]
id = "smoke"
zone = "z"
kind = "smoke"
source = "broker"
topic = "room/asd"

[detect.temperature]
rise_alarm = 8.0
rise_window = "60s"
stale_after = "5s"

[[zones]]
id = "z"
runbook = "r"
max_on_battery = "10m"
prepare_runbook = "p"
prepare_cooldown = "5m"

[[runbooks]]
name = "r"

[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"

[[runbooks]]
name = "p"

[[runbooks.steps]]
name = "stop the charge"
type = "modbus_write"
source = "bms"
register = { table = "coil", address = 12 }
value = 0

[[runbooks.undo_steps]]
name = "resume the charge"
type = "modbus_write"
source = "bms"
register = { table = "coil", address = 12 }
value = 1

[[runbooks.undo_steps]]
name = "fans"
type = "modbus_write"
source = "env"
register = { table = "coil", address = 3 }
value = 0

[[sources]]
name = "bms"
type = "modbus"
url = "tcp://127.0.0.1:3"
unit = 1
"#;

    fn fit_at(speed: f64) -> Fit {
        Fit {
            devices: vec![("env".into(), "127.0.0.1:5020".parse().unwrap())],
            broker: Some(("127.0.0.1".into(), 4000)),
            mqtt_devices: true,
            topic_prefix: Some("run1".into()),
            client_id: "demo".into(),
            speed,
            stale_floor: Duration::from_secs(2),
            state_dir: "/tmp/s".into(),
            api_listen: None,
            tick_interval: Duration::from_millis(20),
        }
    }

    #[test]
    fn time_constants_shrink_and_rise_thresholds_grow_with_the_speed() {
        let out: DocumentMut = fit(ROOM, &fit_at(10.0)).unwrap().parse().unwrap();
        let t = &out["detect"]["temperature"];
        assert_eq!(t["rise_window"].as_str(), Some("6000ms"));
        assert_eq!(t["rise_alarm"].as_float(), Some(80.0));
        // The built-in 1200 C/min, written out and rescaled like the rise thresholds.
        assert_eq!(t["max_rate"].as_float(), Some(12000.0));
        assert_eq!(
            t["for"].as_str(),
            Some("200ms"),
            "the built-in default is rescaled"
        );
        // 5 s / 10 would be 500 ms: the floor keeps it at 2 s of wall time.
        assert_eq!(t["stale_after"].as_str(), Some("2000ms"));
        assert_eq!(out["zones"][0]["max_on_battery"].as_str(), Some("60000ms"));
        assert_eq!(
            out["zones"][0]["prepare_cooldown"].as_str(),
            Some("30000ms")
        );
        assert_eq!(out["sources"][0]["poll_interval"].as_str(), Some("100ms"));
    }

    #[test]
    fn sources_point_at_the_simulator_and_absent_devices_leave_with_their_sensors() {
        let out: DocumentMut = fit(ROOM, &fit_at(1.0)).unwrap().parse().unwrap();
        let sources = out["sources"].as_array_of_tables().unwrap();
        let names: Vec<_> = sources
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["env", "broker", "bms"]);
        assert_eq!(
            sources.get(0).unwrap()["url"].as_str(),
            Some("tcp://127.0.0.1:5020")
        );
        assert_eq!(
            sources.get(1).unwrap()["url"].as_str(),
            Some("mqtt://127.0.0.1:4000")
        );
        let sensors = out["sensors"].as_array_of_tables().unwrap();
        let ids: Vec<_> = sensors.iter().map(|s| s["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["t1", "smoke"]);
        assert_eq!(
            sensors.get(1).unwrap()["topic"].as_str(),
            Some("run1/room/asd")
        );
        assert_eq!(
            out["agent"]["event_log"].as_str(),
            Some("/tmp/s/events.jsonl")
        );
    }

    #[test]
    fn without_mqtt_devices_the_mqtt_sensors_go_but_the_broker_source_stays() {
        let mut f = fit_at(1.0);
        f.mqtt_devices = false;
        let out: DocumentMut = fit(ROOM, &f).unwrap().parse().unwrap();
        let ids: Vec<_> = out["sensors"]
            .as_array_of_tables()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["t1"]);
        let names: Vec<_> = out["sources"]
            .as_array_of_tables()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["env", "broker", "bms"]);
    }

    #[test]
    fn a_device_the_scenario_lacks_that_steps_write_to_stays_and_its_steps_only_rehearse() {
        let out: DocumentMut = fit(ROOM, &fit_at(1.0)).unwrap().parse().unwrap();
        let bms = out["sources"]
            .as_array_of_tables()
            .unwrap()
            .iter()
            .find(|s| s["name"].as_str() == Some("bms"))
            .expect("kept: steps write to it");
        assert_eq!(bms["url"].as_str(), Some("tcp://127.0.0.1:3"));
        let rb = &out["runbooks"][1];
        assert_eq!(rb["steps"][0]["dry_run"].as_bool(), Some(true));
        assert_eq!(rb["undo_steps"][0]["dry_run"].as_bool(), Some(true));
        // A device the scenario has: its writes are real.
        assert!(rb["undo_steps"][1].get("dry_run").is_none());
        crate::config::load_str(&out.to_string(), "fitted", Default::default())
            .unwrap_or_else(|e| panic!("{:#?}", e.errors));
    }

    #[test]
    fn a_bad_duration_or_speed_is_an_error_naming_the_key() {
        let broken = ROOM.replace("rise_window = \"60s\"", "rise_window = \"soon\"");
        let e = fit(&broken, &fit_at(2.0)).unwrap_err().to_string();
        assert!(e.contains("detect.temperature.rise_window"), "{e}");
        let e = fit(ROOM, &fit_at(0.0)).unwrap_err().to_string();
        assert!(e.contains("speed"), "{e}");
    }
}
