//! Pure validation: raw config in, either a built `Config` or every problem found, each
//! with the key path that names it. No I/O here (secret files are checked by the caller).

use super::collect::{Collector, Problem};
use super::model::*;
use super::raw::*;
use crate::runbook::steps;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The outcome of validation: the config when there were no errors, and every problem.
pub struct Validated {
    pub config: Option<Config>,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

pub fn validate(raw: &RawConfig) -> Validated {
    let mut c = Collector::default();

    let agent = agent(&mut c, raw.agent.as_ref());
    let api = raw.api.as_ref().and_then(|a| api(&mut c, a));

    // Sources: names first so sensors and steps can refer to them.
    let mut source_index: HashMap<String, usize> = HashMap::new();
    let mut sources = Vec::new();
    for (i, s) in raw.sources.iter().enumerate() {
        let path = format!("sources[{i}]");
        let duplicate = s
            .name
            .as_ref()
            .is_some_and(|n| source_index.contains_key(n));
        if duplicate {
            c.err(
                format!("{path}.name"),
                format!(
                    "duplicate source name `{}`",
                    s.name.as_deref().unwrap_or_default()
                ),
            );
        }
        match source(&mut c, &path, s) {
            Some(src) if !duplicate => {
                source_index.insert(src.name.clone(), sources.len());
                sources.push(src);
            }
            _ => {
                if let Some(name) = &s.name {
                    // Keep the name known so references to it do not also fail.
                    source_index.entry(name.clone()).or_insert(usize::MAX);
                }
            }
        }
    }

    let kind_defaults = detect_kinds(&mut c, raw.detect.as_ref());
    let alarm_input_stale_set = raw
        .detect
        .as_ref()
        .and_then(|d| d.alarm_input.as_ref())
        .is_some_and(|a| a.stale_after.is_some());

    // Runbooks before zones (zones refer to them).
    let mut runbook_index: HashMap<String, usize> = HashMap::new();
    let mut runbooks = Vec::new();
    for (i, r) in raw.runbooks.iter().enumerate() {
        let path = format!("runbooks[{i}]");
        let name = c
            .required_str(&format!("{path}.name"), &r.name)
            .map(str::to_string);
        let rb = runbook(&mut c, &path, r, &source_index, &sources);
        if let Some(name) = name {
            if runbook_index.contains_key(&name) {
                c.err(
                    format!("{path}.name"),
                    format!("duplicate runbook name `{name}`"),
                );
                continue;
            }
            runbook_index.insert(name.clone(), runbooks.len());
            runbooks.push(Runbook {
                name,
                budget: rb.0,
                dry_run: r.dry_run.unwrap_or(false),
                steps: rb.1,
                undo_steps: rb.2,
            });
        }
    }

    let mut zone_index: HashMap<String, usize> = HashMap::new();
    let mut zones = Vec::new();
    let mut used_runbooks = HashSet::new();
    for (i, z) in raw.zones.iter().enumerate() {
        let path = format!("zones[{i}]");
        let Some(id) = c
            .required_str(&format!("{path}.id"), &z.id)
            .map(str::to_string)
        else {
            continue;
        };
        if zone_index.contains_key(&id) {
            c.err(format!("{path}.id"), format!("duplicate zone id `{id}`"));
            continue;
        }
        let runbook = match z.runbook.as_deref() {
            None => {
                c.err(
                    format!("{path}.runbook"),
                    format!("zone `{id}` has no runbook: say which runbook moves its services out"),
                );
                None
            }
            Some(name) => match runbook_index.get(name) {
                Some(&r) => Some(r),
                None => {
                    c.err(
                        format!("{path}.runbook"),
                        format!("unknown runbook `{name}`{}", known(runbook_index.keys())),
                    );
                    None
                }
            },
        };
        let confirm = c
            .int_in(&format!("{path}.confirm"), z.confirm, 1..=1000, "")
            .map_or(2, |n| n as u32);
        let power_reserve = c.duration(
            &format!("{path}.power_reserve"),
            &z.power_reserve,
            Duration::from_secs(300),
        );
        let max_on_battery = c.opt_duration(&format!("{path}.max_on_battery"), &z.max_on_battery);
        let prepare_runbook = match z.prepare_runbook.as_deref() {
            None => None,
            Some(name) => match runbook_index.get(name) {
                Some(&p) if Some(p) == runbook => {
                    c.err(
                        format!("{path}.prepare_runbook"),
                        format!("`{name}` is also the zone's failover runbook: name a runbook that only prepares"),
                    );
                    None
                }
                Some(&p) => {
                    used_runbooks.insert(p);
                    Some(p)
                }
                None => {
                    c.err(
                        format!("{path}.prepare_runbook"),
                        format!("unknown runbook `{name}`{}", known(runbook_index.keys())),
                    );
                    None
                }
            },
        };
        let prepare_cooldown = c.duration(
            &format!("{path}.prepare_cooldown"),
            &z.prepare_cooldown,
            Duration::from_secs(600),
        );
        if z.prepare_runbook.is_none() {
            for (key, set) in [
                ("prepare_cooldown", z.prepare_cooldown.is_some()),
                (
                    "failover_waits_for_prepare",
                    z.failover_waits_for_prepare.is_some(),
                ),
            ] {
                if set {
                    c.warn(
                        format!("{path}.{key}"),
                        "has no effect without prepare_runbook",
                    );
                }
            }
        }
        let confirm_across = match z.confirm_across.as_deref() {
            None | Some("sensors") => ConfirmAcross::Sensors,
            Some("sources") => ConfirmAcross::Sources,
            Some(other) => {
                c.err(
                    format!("{path}.confirm_across"),
                    format!("unknown value `{other}` (\"sensors\" or \"sources\")"),
                );
                ConfirmAcross::Sensors
            }
        };
        if let Some(r) = runbook {
            used_runbooks.insert(r);
            zone_index.insert(id.clone(), zones.len());
            zones.push(Zone {
                id,
                runbook: r,
                confirm,
                confirm_across,
                stale_votes: z.stale_votes.unwrap_or(true),
                power_reserve,
                max_on_battery,
                prepare_runbook,
                prepare_cooldown,
                failover_waits_for_prepare: z.failover_waits_for_prepare.unwrap_or(false),
            });
        } else {
            zone_index.insert(id, usize::MAX);
        }
    }
    let prepares: HashSet<usize> = zones.iter().filter_map(|z| z.prepare_runbook).collect();
    for (i, r) in runbooks.iter().enumerate() {
        if !r.undo_steps.is_empty() && !prepares.contains(&i) {
            c.warn(
                format!("runbooks[{i}].undo_steps"),
                format!(
                    "runbook `{}` is no zone's prepare_runbook: its undo_steps never run",
                    r.name
                ),
            );
        }
        if !used_runbooks.contains(&i) {
            c.warn(
                format!("runbooks[{i}]"),
                format!("runbook `{}` is used by no zone", r.name),
            );
        }
    }

    let mut sensor_ids = HashSet::new();
    let mut sensors = Vec::new();
    let mut register_owner: HashMap<(usize, Table, u16), usize> = HashMap::new();
    for (i, s) in raw.sensors.iter().enumerate() {
        let path = format!("sensors[{i}]");
        let duplicate =
            s.id.as_ref()
                .is_some_and(|id| !sensor_ids.insert(id.clone()));
        if duplicate {
            c.err(
                format!("{path}.id"),
                format!(
                    "duplicate sensor id `{}`",
                    s.id.as_deref().unwrap_or_default()
                ),
            );
        }
        let built = sensor(
            &mut c,
            &path,
            s,
            &source_index,
            &sources,
            &zone_index,
            &kind_defaults,
            alarm_input_stale_set,
        );
        if let Some(sensor) = built.filter(|_| !duplicate) {
            if let SensorInput::Register(reg) = &sensor.input {
                for a in reg.address..reg.address.saturating_add(reg.kind.width()) {
                    if let Some(&other) = register_owner.get(&(sensor.source, reg.table, a)) {
                        // Several flags from one status word are normal; say it only for
                        // value registers, where it is usually a typo.
                        if reg.bit.is_none() && sensors.get(other).is_some_and(|o: &Sensor| !matches!(&o.input, SensorInput::Register(r) if r.bit.is_some())) {
                            c.warn(
                                format!("{path}.register.address"),
                                format!("register {} {a} is also read by sensor `{}`", reg.table.as_str(), sensors[other].id),
                            );
                        }
                    } else {
                        register_owner.insert((sensor.source, reg.table, a), sensors.len());
                    }
                }
            }
            sensors.push(sensor);
        }
    }
    for (zi, z) in zones.iter().enumerate() {
        let n = sensors.iter().filter(|s| s.zone == zi).count();
        if n == 0 {
            c.warn(
                format!("zones[{zi}]"),
                format!("zone `{}` has no sensors", z.id),
            );
        } else if (n as u32) < z.confirm {
            c.warn(
                format!("zones[{zi}].confirm"),
                format!(
                    "zone `{}` has {n} sensor(s) but confirm = {}: only a sensor at critical (or the power rule) can make it critical",
                    z.id, z.confirm
                ),
            );
        }
    }

    let feeds = feeds(&mut c, &raw.feeds, &zone_index);

    let telemetry = telemetry(
        &mut c,
        raw.telemetry.as_ref(),
        &source_index,
        &sources,
        &agent,
    );

    let cluster = raw
        .cluster
        .as_ref()
        .and_then(|r| cluster(&mut c, r, &agent));

    let config = if c.errors.is_empty() {
        Some(Config {
            agent,
            api,
            sources,
            sensors,
            zones,
            runbooks,
            feeds,
            telemetry,
            cluster,
        })
    } else {
        None
    };
    Validated {
        config,
        errors: c.errors,
        warnings: c.warnings,
    }
}

/// `[[feeds]]`: ids unique and usable in MQTT topics and metric labels, zones known.
fn feeds(c: &mut Collector, raw: &[RawFeed], zone_index: &HashMap<String, usize>) -> Vec<Feed> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, f) in raw.iter().enumerate() {
        let path = format!("feeds[{i}]");
        let id = c
            .required_str(&format!("{path}.id"), &f.id)
            .map(str::to_string);
        if let Some(id) = &id {
            if id.contains(['/', '#', '+']) || id.trim().is_empty() {
                c.err(
                    format!("{path}.id"),
                    format!("`{id}` must not be empty or contain '/', '#' or '+' (it is used in MQTT topics)"),
                );
            } else if !seen.insert(id.clone()) {
                c.err(format!("{path}.id"), format!("duplicate feed id `{id}`"));
            }
        }
        let mut zones = Vec::new();
        match &f.zones {
            None => c.err(
                format!("{path}.zones"),
                "missing (required): the zones whose equipment this feed powers",
            ),
            Some(names) if names.is_empty() => c.err(
                format!("{path}.zones"),
                "is empty: a feed that powers no zone is never part of a failover (list its other loads in `loads`)",
            ),
            Some(names) => {
                for (j, n) in names.iter().enumerate() {
                    match zone_index.get(n) {
                        Some(&zi) if zi != usize::MAX => {
                            if zones.contains(&zi) {
                                c.err(format!("{path}.zones[{j}]"), format!("zone `{n}` is listed twice"));
                            }
                            zones.push(zi);
                        }
                        Some(_) => {}
                        None => c.err(
                            format!("{path}.zones[{j}]"),
                            format!("unknown zone `{n}`{}", known(zone_index.keys())),
                        ),
                    }
                }
            }
        }
        if let Some(id) = id {
            out.push(Feed {
                description: f.description.clone().unwrap_or_else(|| id.clone()),
                id,
                zones,
                loads: f.loads.clone().unwrap_or_default(),
            });
        }
    }
    out
}

fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let mut v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        return " (none are defined)".into();
    }
    v.sort_unstable();
    format!(" (known: {})", v.join(", "))
}

fn default_agent_name() -> String {
    // gethostname(2), not /proc/sys/kernel/hostname: the unit's `ProcSubset=pid` hides
    // /proc/sys.
    nix::unistd::gethostname()
        .ok()
        .map(|s| s.to_string_lossy().trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "firebreak".into())
}

fn agent(c: &mut Collector, a: Option<&RawAgent>) -> Agent {
    let default = RawAgent::default();
    let a = a.unwrap_or(&default);
    let name = match a.name.as_deref() {
        Some(n) if n.trim().is_empty() => {
            c.err("agent.name", "must not be empty");
            String::new()
        }
        Some(n) if n.contains(['/', '#', '+']) => {
            c.err(
                "agent.name",
                format!("`{n}` must not contain '/', '#' or '+' (it is used in MQTT topics)"),
            );
            n.to_string()
        }
        Some(n) => n.to_string(),
        None => default_agent_name(),
    };
    let state_dir = PathBuf::from(a.state_dir.as_deref().unwrap_or("/var/lib/firebreak"));
    let event_log = a
        .event_log
        .as_deref()
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.join("events.jsonl"));
    if a.state_dir.as_deref() == Some("") {
        c.err("agent.state_dir", "must not be empty");
    }
    if a.event_log.as_deref() == Some("") {
        c.err("agent.event_log", "must not be empty");
    }
    let tick_interval = c.duration(
        "agent.tick_interval",
        &a.tick_interval,
        Duration::from_millis(100),
    );
    if tick_interval.is_zero() || tick_interval > Duration::from_secs(5) {
        c.err("agent.tick_interval", "must be between 1ms and 5s");
    }
    Agent {
        name,
        state_dir,
        event_log,
        dry_run: a.dry_run.unwrap_or(false),
        tick_interval,
    }
}

fn api(c: &mut Collector, a: &RawApi) -> Option<Api> {
    let listen = match a.listen.as_deref() {
        None => "127.0.0.1:9410".parse().ok()?,
        Some(s) => match s.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                c.err(
                    "api.listen",
                    format!("`{s}` is not an address:port (e.g. \"127.0.0.1:9410\")"),
                );
                return None;
            }
        },
    };
    Some(Api {
        listen,
        token_file: a.token_file.as_deref().map(PathBuf::from),
    })
}

fn cluster(c: &mut Collector, r: &RawCluster, agent: &Agent) -> Option<Cluster> {
    let p = "cluster";
    let mut etcd = Vec::new();
    match &r.etcd {
        None => c.err(format!("{p}.etcd"), "missing (required): etcd client URLs"),
        Some(v) if v.is_empty() => c.err(format!("{p}.etcd"), "must list at least one URL"),
        Some(v) => {
            for (i, u) in v.iter().enumerate() {
                match url::Url::parse(u) {
                    Ok(parsed)
                        if (parsed.scheme() == "http" || parsed.scheme() == "https")
                            && parsed.host_str().is_some() =>
                    {
                        etcd.push(u.trim_end_matches('/').to_string())
                    }
                    Ok(_) => c.err(
                        format!("{p}.etcd[{i}]"),
                        format!("`{u}` must be an http:// or https:// URL with a host"),
                    ),
                    Err(e) => c.err(format!("{p}.etcd[{i}]"), format!("`{u}` is not a URL: {e}")),
                }
            }
        }
    }
    let lease_ttl = c.duration(
        &format!("{p}.lease_ttl"),
        &r.lease_ttl,
        Duration::from_secs(5),
    );
    if lease_ttl < Duration::from_secs(2)
        || lease_ttl > Duration::from_secs(300)
        || lease_ttl.subsec_nanos() != 0
    {
        c.err(
            format!("{p}.lease_ttl"),
            "must be whole seconds between 2s and 300s (etcd leases count seconds)",
        );
    }
    let on_cluster_loss = match r.on_cluster_loss.as_deref() {
        None | Some("act") => OnClusterLoss::Act,
        Some("hold") => OnClusterLoss::Hold,
        Some(other) => {
            c.err(
                format!("{p}.on_cluster_loss"),
                format!("`{other}` is not a policy (known: act, hold)"),
            );
            OnClusterLoss::Act
        }
    };
    let namespace = r.namespace.clone().unwrap_or_else(|| "/firebreak".into());
    if namespace.is_empty() || namespace.ends_with('/') {
        c.err(
            format!("{p}.namespace"),
            "must not be empty or end with '/' (e.g. \"/firebreak\")",
        );
    }
    let node = r.node.clone().unwrap_or_else(|| agent.name.clone());
    if node.trim().is_empty() || node.contains('/') {
        c.err(format!("{p}.node"), "must not be empty or contain '/'");
    }
    if r.cert_file.is_some() != r.key_file.is_some() {
        c.err(
            format!("{p}.cert_file"),
            "cert_file and key_file go together (a client certificate needs its key)",
        );
    }
    if r.username.is_some() != r.password_file.is_some() {
        c.err(
            format!("{p}.username"),
            "username and password_file go together",
        );
    }
    let tls = r.ca_file.is_some() || r.cert_file.is_some();
    if tls && etcd.iter().any(|u| u.starts_with("http://")) {
        c.err(
            format!("{p}.etcd"),
            "TLS options are set: the etcd URLs must be https://",
        );
    }
    let path = |v: &Option<String>| v.as_deref().map(PathBuf::from);
    Some(Cluster {
        etcd,
        node,
        namespace,
        lease_ttl,
        on_cluster_loss,
        ca_file: path(&r.ca_file),
        cert_file: path(&r.cert_file),
        key_file: path(&r.key_file),
        username: r.username.clone(),
        password_file: path(&r.password_file),
    })
}

fn source(c: &mut Collector, path: &str, s: &RawSource) -> Option<Source> {
    let name = c
        .required_str(&format!("{path}.name"), &s.name)
        .map(str::to_string);
    let url = c.required_str(&format!("{path}.url"), &s.url);
    let spec = crate::sources::config::validate(
        c,
        path,
        name.as_deref(),
        s.kind.as_deref(),
        url,
        s.params.clone(),
    );
    Some(Source {
        name: name?,
        spec: spec?,
    })
}

/// Built-in detection defaults per kind; `[detect.<kind>]` and sensor keys override them.
pub fn builtin_defaults(kind: Kind) -> DetectParams {
    let base = DetectParams {
        warn_above: None,
        alarm_above: None,
        critical_above: None,
        warn_below: None,
        alarm_below: None,
        critical_below: None,
        rise_warn: None,
        rise_alarm: None,
        rise_window: Duration::from_secs(60),
        hold: Duration::from_secs(2),
        hysteresis: 0.0,
        stale_after: Duration::from_secs(5),
        frozen_after: None,
        min: f64::NEG_INFINITY,
        max: f64::INFINITY,
        // Off unless the kind's physics bounds it (docs/configuration.md#max_rate).
        max_rate: None,
    };
    match kind {
        // The contract's reference values (../shared/DOMAIN.md for where they come from).
        Kind::Temperature => DetectParams {
            warn_above: Some(35.0),
            alarm_above: Some(57.0),
            critical_above: Some(90.0),
            rise_warn: Some(2.0),
            rise_alarm: Some(8.3),
            hysteresis: 1.0,
            min: -55.0,
            max: 1200.0,
            // 20 C/s: above the steepest rise a sensor reads in the room model (a cell's
            // surface at runaway onset, about 15 C/s) and 145 times the 8.3 C/min of a
            // rate-of-rise heat detector (NFPA 72). A module that reboots and reads 0, then
            // 24 C one 1-second poll later, is far above it.
            max_rate: Some(1200.0),
            ..base
        },
        Kind::Offgas => DetectParams {
            warn_above: Some(5.0),
            alarm_above: Some(20.0),
            critical_above: Some(200.0),
            rise_alarm: Some(10.0),
            rise_window: Duration::from_secs(30),
            hysteresis: 2.0,
            min: 0.0,
            max: 1_000_000.0,
            ..base
        },
        Kind::Smoke => DetectParams {
            warn_above: Some(0.04),
            alarm_above: Some(0.165),
            critical_above: Some(1.65),
            hysteresis: 0.02,
            stale_after: Duration::from_secs(10),
            min: 0.0,
            max: 100.0,
            ..base
        },
        // Power kinds act on the zone's power rule; being on battery is itself a warning.
        Kind::OnBattery => DetectParams {
            warn_above: Some(0.5),
            hold: Duration::ZERO,
            min: 0.0,
            max: 1.0,
            ..base
        },
        Kind::Runtime => DetectParams {
            hold: Duration::ZERO,
            min: 0.0,
            max: 1e7,
            ..base
        },
        Kind::Charge => DetectParams {
            hold: Duration::ZERO,
            min: 0.0,
            max: 100.0,
            ..base
        },
        Kind::Voltage => DetectParams {
            hold: Duration::ZERO,
            min: 0.0,
            max: 1000.0,
            ..base
        },
        // Another system's alarm: it has judged the room already, so no hold, no slope,
        // no warning band; anything but 0 or 1 is a misread (`equals` turns a state number
        // into 0/1). stale_after is 3 x the source's interval unless set (see `sensor`).
        Kind::AlarmInput => DetectParams {
            alarm_above: Some(0.5),
            hold: Duration::ZERO,
            min: 0.0,
            max: 1.0,
            ..base
        },
    }
}

fn detect_kinds(c: &mut Collector, raw: Option<&RawDetectKinds>) -> HashMap<Kind, DetectParams> {
    let mut out = HashMap::new();
    for kind in Kind::ALL {
        let mut p = builtin_defaults(kind);
        let r = raw.and_then(|r| match kind {
            Kind::Temperature => r.temperature.as_ref(),
            Kind::Offgas => r.offgas.as_ref(),
            Kind::Smoke => r.smoke.as_ref(),
            Kind::OnBattery => r.on_battery.as_ref(),
            Kind::Runtime => r.runtime.as_ref(),
            Kind::Charge => r.charge.as_ref(),
            Kind::Voltage => r.voltage.as_ref(),
            Kind::AlarmInput => r.alarm_input.as_ref(),
        });
        if let Some(r) = r {
            let path = format!("detect.{}", kind.as_str());
            apply_detect(c, &path, &mut p, r);
            check_detect(c, &path, kind, &p);
        }
        out.insert(kind, p);
    }
    out
}

fn apply_detect(c: &mut Collector, path: &str, p: &mut DetectParams, r: &RawDetect) {
    let finite = |c: &mut Collector, key: &str, v: Option<f64>| -> Option<f64> {
        match v {
            Some(x) if !x.is_finite() => {
                c.err(format!("{path}.{key}"), "must be a finite number");
                None
            }
            other => other,
        }
    };
    if let Some(v) = finite(c, "warn_above", r.warn_above) {
        p.warn_above = Some(v);
    }
    if let Some(v) = finite(c, "alarm_above", r.alarm_above) {
        p.alarm_above = Some(v);
    }
    if let Some(v) = finite(c, "critical_above", r.critical_above) {
        p.critical_above = Some(v);
    }
    if let Some(v) = finite(c, "warn_below", r.warn_below) {
        p.warn_below = Some(v);
    }
    if let Some(v) = finite(c, "alarm_below", r.alarm_below) {
        p.alarm_below = Some(v);
    }
    if let Some(v) = finite(c, "critical_below", r.critical_below) {
        p.critical_below = Some(v);
    }
    if let Some(v) = finite(c, "rise_warn", r.rise_warn) {
        p.rise_warn = Some(v);
    }
    if let Some(v) = finite(c, "rise_alarm", r.rise_alarm) {
        p.rise_alarm = Some(v);
    }
    if let Some(v) = finite(c, "hysteresis", r.hysteresis) {
        p.hysteresis = v;
    }
    if let Some(v) = finite(c, "min", r.min) {
        p.min = v;
    }
    if let Some(v) = finite(c, "max", r.max) {
        p.max = v;
    }
    if let Some(v) = finite(c, "max_rate", r.max_rate) {
        if v > 0.0 {
            p.max_rate = Some(v);
        } else {
            c.err(
                format!("{path}.max_rate"),
                format!("{v} must be more than 0 (per minute; leave it out to turn the check off)"),
            );
        }
    }
    p.rise_window = c.duration(
        &format!("{path}.rise_window"),
        &r.rise_window,
        p.rise_window,
    );
    p.hold = c.duration(&format!("{path}.for"), &r.hold, p.hold);
    p.stale_after = c.duration(
        &format!("{path}.stale_after"),
        &r.stale_after,
        p.stale_after,
    );
    if let Some(d) = c.opt_duration(&format!("{path}.frozen_after"), &r.frozen_after) {
        p.frozen_after = Some(d);
    }
}

fn check_detect(c: &mut Collector, path: &str, kind: Kind, p: &DetectParams) {
    let above = [
        ("warn_above", p.warn_above),
        ("alarm_above", p.alarm_above),
        ("critical_above", p.critical_above),
    ];
    let set: Vec<_> = above
        .iter()
        .filter_map(|(k, v)| v.map(|v| (*k, v)))
        .collect();
    for w in set.windows(2) {
        // An alarm input whose critical threshold is its alarm threshold is a confirmed
        // signal: it goes straight to critical.
        let confirmed = kind == Kind::AlarmInput
            && w[0].0 == "alarm_above"
            && w[1].0 == "critical_above"
            && w[0].1 == w[1].1;
        if w[0].1 >= w[1].1 && !confirmed {
            c.err(
                format!("{path}.{}", w[1].0),
                format!(
                    "must be above {} ({} >= {}): warn < alarm < critical",
                    w[0].0, w[0].1, w[1].1
                ),
            );
        }
    }
    let below = [
        ("warn_below", p.warn_below),
        ("alarm_below", p.alarm_below),
        ("critical_below", p.critical_below),
    ];
    let set: Vec<_> = below
        .iter()
        .filter_map(|(k, v)| v.map(|v| (*k, v)))
        .collect();
    for w in set.windows(2) {
        if w[0].1 <= w[1].1 {
            c.err(
                format!("{path}.{}", w[1].0),
                format!(
                    "must be below {} ({} <= {}): for low-is-bad values warn > alarm > critical",
                    w[0].0, w[0].1, w[1].1
                ),
            );
        }
    }
    if let (Some(w), Some(a)) = (p.rise_warn, p.rise_alarm) {
        if w >= a {
            c.err(
                format!("{path}.rise_alarm"),
                format!("must be above rise_warn ({a} <= {w})"),
            );
        }
    }
    for (k, v) in [("rise_warn", p.rise_warn), ("rise_alarm", p.rise_alarm)] {
        if v.is_some_and(|v| v <= 0.0) {
            c.err(
                format!("{path}.{k}"),
                "must be more than 0 (a rise per minute)",
            );
        }
    }
    if (p.rise_warn.is_some() || p.rise_alarm.is_some()) && p.rise_window < Duration::from_secs(1) {
        c.err(format!("{path}.rise_window"), "must be at least 1s");
    }
    if p.hysteresis < 0.0 {
        c.err(format!("{path}.hysteresis"), "must not be negative");
    }
    if p.stale_after.is_zero() {
        c.err(format!("{path}.stale_after"), "must be more than 0");
    }
    if let Some(f) = p.frozen_after {
        if matches!(kind, Kind::OnBattery | Kind::AlarmInput) {
            c.err(
                format!("{path}.frozen_after"),
                format!("does not apply to {}: a status flag does not jitter, it would always look frozen", kind.as_str()),
            );
        } else if f <= p.stale_after {
            c.err(
                format!("{path}.frozen_after"),
                format!(
                    "must be longer than stale_after ({}): leave it out to turn the check off",
                    super::units::format_duration(p.stale_after)
                ),
            );
        }
    }
    if p.min >= p.max {
        c.err(
            format!("{path}.max"),
            format!("must be above min ({} >= {})", p.min, p.max),
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn sensor(
    c: &mut Collector,
    path: &str,
    s: &RawSensor,
    source_index: &HashMap<String, usize>,
    sources: &[Source],
    zone_index: &HashMap<String, usize>,
    kind_defaults: &HashMap<Kind, DetectParams>,
    alarm_input_stale_set: bool,
) -> Option<Sensor> {
    let id = c
        .required_str(&format!("{path}.id"), &s.id)
        .map(str::to_string);
    let zone = c
        .required_str(&format!("{path}.zone"), &s.zone)
        .and_then(|z| match zone_index.get(z) {
            Some(&i) => Some(i),
            None => {
                c.err(
                    format!("{path}.zone"),
                    format!("unknown zone `{z}`{}", known(zone_index.keys())),
                );
                None
            }
        });
    let kind = c
        .required_str(&format!("{path}.kind"), &s.kind)
        .and_then(|k| match Kind::parse(k) {
            Some(k) => Some(k),
            None => {
                let names: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                c.err(
                    format!("{path}.kind"),
                    format!("unknown kind `{k}` (one of {})", names.join(", ")),
                );
                None
            }
        });
    let source = c
        .required_str(&format!("{path}.source"), &s.source)
        .and_then(|n| match source_index.get(n) {
            Some(&i) => Some(i),
            None => {
                c.err(
                    format!("{path}.source"),
                    format!("unknown source `{n}`{}", known(source_index.keys())),
                );
                None
            }
        });
    // Where the value is on the device: the source type's own sensor keys (in its folder
    // under `src/sources/`).
    let input = match source.and_then(|i| sources.get(i)) {
        Some(src) => src.spec.sensor_input(c, path, s.params.clone()),
        None => {
            crate::sources::config::check_sensor_keys_without_source(c, path, s.params.clone());
            None
        }
    };
    let kind = kind?;
    let mut detect = kind_defaults
        .get(&kind)
        .cloned()
        .unwrap_or_else(|| builtin_defaults(kind));
    let overrides = s.detect_overrides();
    apply_detect(c, path, &mut detect, &overrides);
    match (s.confirmed, kind) {
        (Some(_), k) if k != Kind::AlarmInput => c.err(
            format!("{path}.confirmed"),
            format!(
                "applies to kind = \"alarm_input\" only (this sensor is {})",
                k.as_str()
            ),
        ),
        (Some(_), _) if s.critical_above.is_some() => c.err(
            format!("{path}.confirmed"),
            "say it once: confirmed = true is critical_above at the alarm threshold; leave out one of them",
        ),
        (Some(true), _) => detect.critical_above = detect.alarm_above,
        _ => {}
    }
    if kind == Kind::AlarmInput && s.stale_after.is_none() && !alarm_input_stale_set {
        // Stale after three missed liveness reads of its own source.
        if let Some(src) = source.and_then(|i| sources.get(i)) {
            detect.stale_after = src.spec.expected_interval() * 3;
        }
    }
    check_detect(c, path, kind, &detect);
    let mut sentinels = Vec::new();
    for (i, v) in s.sentinels.iter().flatten().enumerate() {
        if v.is_finite() {
            sentinels.push(*v);
        } else {
            c.err(
                format!("{path}.sentinels[{i}]"),
                "must be a finite number (NaN and infinities are faults already)",
            );
        }
    }
    Some(Sensor {
        id: id?,
        zone: zone?,
        kind,
        source: source?,
        input: input?,
        detect,
        sentinels,
    })
}

/// Runbook steps; returns (budget, steps, undo steps).
fn runbook(
    c: &mut Collector,
    path: &str,
    r: &RawRunbook,
    source_index: &HashMap<String, usize>,
    sources: &[Source],
) -> (Option<Duration>, Vec<Step>, Vec<Step>) {
    let budget = c.opt_duration(&format!("{path}.budget"), &r.budget);
    if r.steps.is_empty() {
        c.err(format!("{path}.steps"), "a runbook needs at least one step");
    }
    let mut names = HashSet::new();
    let mut steps = Vec::new();
    for (i, s) in r.steps.iter().enumerate() {
        let spath = format!("{path}.steps[{i}]");
        if let Some(n) = &s.name {
            if !names.insert(n.clone()) {
                c.err(
                    format!("{spath}.name"),
                    format!("duplicate step name `{n}` in this runbook"),
                );
            }
        }
        if let Some(step) = step(c, &spath, s, source_index, sources) {
            steps.push(step);
        }
    }
    let mut undo_names = HashSet::new();
    let mut undo_steps = Vec::new();
    for (i, s) in r.undo_steps.iter().enumerate() {
        let spath = format!("{path}.undo_steps[{i}]");
        if let Some(n) = &s.name {
            if !undo_names.insert(n.clone()) {
                c.err(
                    format!("{spath}.name"),
                    format!("duplicate step name `{n}` in this runbook's undo_steps"),
                );
            }
        }
        if let Some(step) = step(c, &spath, s, source_index, sources) {
            undo_steps.push(step);
        }
    }
    (budget, steps, undo_steps)
}

fn step(
    c: &mut Collector,
    path: &str,
    s: &RawStep,
    source_index: &HashMap<String, usize>,
    sources: &[Source],
) -> Option<Step> {
    let name = c
        .required_str(&format!("{path}.name"), &s.name)
        .map(str::to_string);
    let given = c.opt_duration(&format!("{path}.timeout"), &s.timeout);
    if given.is_some_and(|t| t.is_zero()) {
        c.err(format!("{path}.timeout"), "must be more than 0");
    }
    let retries = c
        .int_in(&format!("{path}.retries"), s.retries, 0..=100, "")
        .map_or(2, |n| n as u32);
    let on_failure = match s.on_failure.as_deref() {
        None | Some("abort") => OnFailure::Abort,
        Some("continue") => OnFailure::Continue,
        Some(o) => {
            c.err(
                format!("{path}.on_failure"),
                format!("unknown value `{o}` (\"abort\" or \"continue\")"),
            );
            OnFailure::Abort
        }
    };
    let priority = match s.priority.as_deref() {
        None | Some("must") => Priority::Must,
        Some("should") => Priority::Should,
        Some(o) => {
            c.err(
                format!("{path}.priority"),
                format!("unknown value `{o}` (\"must\" or \"should\")"),
            );
            Priority::Must
        }
    };
    let kind = c.required_str(&format!("{path}.type"), &s.kind)?;
    let mqtt_source = |c: &mut Collector, path: &str, name: &Option<String>| {
        let index = mqtt_source_ref(c, path, name, source_index, sources)?;
        Some((index, sources[index].name.clone()))
    };
    let modbus_source = |c: &mut Collector, path: &str, name: &Option<String>| {
        let index = typed_source_ref(c, path, name, source_index, sources, "modbus", "a Modbus")?;
        Some((index, sources[index].name.clone()))
    };
    let nut_source = |c: &mut Collector, path: &str, name: &Option<String>| {
        let index = typed_source_ref(c, path, name, source_index, sources, "nut", "a NUT")?;
        match &sources[index].spec {
            SourceSpec::Nut(n) => Some((index, sources[index].name.clone(), n.clone())),
            _ => None,
        }
    };
    let refs = steps::Refs {
        mqtt_source: &mqtt_source,
        nut_source: &nut_source,
        modbus_source: &modbus_source,
    };
    let action = steps::validate(c, path, kind, s.params.clone(), &refs)?;
    let timeout = action.info().timeout(c, path, given);
    Some(Step {
        name: name?,
        timeout,
        retries,
        on_failure,
        priority,
        dry_run: s.dry_run.unwrap_or(false),
        action,
    })
}

/// Resolves a required reference to an MQTT source, reporting an unknown or non-MQTT one.
fn mqtt_source_ref(
    c: &mut Collector,
    path: &str,
    name: &Option<String>,
    source_index: &HashMap<String, usize>,
    sources: &[Source],
) -> Option<usize> {
    typed_source_ref(c, path, name, source_index, sources, "mqtt", "an MQTT")
}

/// Resolves a required reference to a source of type `type_name` (`what`: "an MQTT", for
/// messages), reporting an unknown source or one of another type.
fn typed_source_ref(
    c: &mut Collector,
    path: &str,
    name: &Option<String>,
    source_index: &HashMap<String, usize>,
    sources: &[Source],
    type_name: &str,
    what: &str,
) -> Option<usize> {
    let n = c.required_str(path, name)?;
    match source_index
        .get(n)
        .map(|&i| (i, sources.get(i).map(|s| &s.spec)))
    {
        Some((i, Some(spec))) if spec.type_name() == type_name => Some(i),
        Some((_, Some(spec))) => {
            c.err(
                path,
                format!(
                    "source `{n}` is not {what} source (it is type \"{}\")",
                    spec.type_name()
                ),
            );
            None
        }
        // Known but invalid: its own errors are reported already.
        Some((_, None)) => None,
        None => {
            c.err(
                path,
                format!("unknown source `{n}`{}", known(source_index.keys())),
            );
            None
        }
    }
}

fn telemetry(
    c: &mut Collector,
    raw: Option<&RawTelemetry>,
    source_index: &HashMap<String, usize>,
    sources: &[Source],
    agent: &Agent,
) -> Telemetry {
    let Some(raw) = raw else {
        return Telemetry::default();
    };
    let influxdb = raw
        .influxdb
        .as_ref()
        .and_then(|i| crate::sinks::influxdb::config::validate(c, "telemetry.influxdb", i));
    let mqtt = raw.mqtt.as_ref().and_then(|m| {
        let p = "telemetry.mqtt";
        let source = mqtt_source_ref(c, &format!("{p}.source"), &m.source, source_index, sources);
        crate::sinks::mqtt::config::validate(c, p, m, source, &agent.name)
    });
    Telemetry { influxdb, mqtt }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Detector, Output, Reading, Sample, ZoneLevel};

    /// A panel (polled every 2 s) with a VESDA, a confirmed zone signal and a pre-alarm
    /// relay in a zone that needs two votes.
    fn panel(extra_zone3: &str, detect: &str) -> Result<Config, Vec<String>> {
        let text = format!(
            r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-unit"

[[sources]]
name = "panel"
type = "bacnet"
url = "bacnet://10.20.0.60"
device_instance = 3101
poll_interval = "2s"

[[sensors]]
id = "vesda"
zone = "z"
kind = "smoke"
source = "panel"
object = "analog-input,3"

[[sensors]]
id = "zone3"
zone = "z"
kind = "alarm_input"
source = "panel"
object = "multi-state-input,12"
equals = 3
{extra_zone3}

[[sensors]]
id = "prealarm"
zone = "z"
kind = "alarm_input"
source = "panel"
object = "binary-input,40"

{detect}

[[zones]]
id = "z"
runbook = "r"
confirm = 2

[[runbooks]]
name = "r"

[[runbooks.steps]]
name = "drain"
type = "wait"
duration = "1s"
"#
        );
        crate::config::load_str(&text, "unit", Default::default())
            .map(|l| l.config)
            .map_err(|e| e.errors.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn an_alarm_input_alarms_at_one_at_once_and_goes_stale_after_three_missed_polls() {
        let c = panel("", "").unwrap();
        let p = &c.sensors[2].detect;
        assert_eq!(p.alarm_above, Some(0.5));
        assert_eq!(p.critical_above, None);
        assert_eq!(p.warn_above, None);
        assert_eq!((p.rise_warn, p.rise_alarm), (None, None));
        assert_eq!(p.hold, Duration::ZERO);
        assert_eq!(p.stale_after, Duration::from_secs(6));
        // [detect.alarm_input] or the sensor may still say otherwise.
        let c = panel(
            "stale_after = \"4s\"",
            "[detect.alarm_input]\nstale_after = \"9s\"",
        )
        .unwrap();
        assert_eq!(c.sensors[1].detect.stale_after, Duration::from_secs(4));
        assert_eq!(c.sensors[2].detect.stale_after, Duration::from_secs(9));
    }

    #[test]
    fn confirmed_is_critical_at_the_alarm_threshold_and_only_for_alarm_inputs() {
        let by_key = panel("confirmed = true", "").unwrap();
        assert_eq!(by_key.sensors[1].detect.critical_above, Some(0.5));
        let by_threshold = panel("critical_above = 0.5", "").unwrap();
        assert_eq!(by_threshold.sensors[1].detect.critical_above, Some(0.5));
        let both = panel("confirmed = true\ncritical_above = 0.5", "").unwrap_err();
        assert!(
            both.iter()
                .any(|e| e.starts_with("sensors[1].confirmed: say it once")),
            "{both:?}"
        );
    }

    fn run(config: &Config, fire: &[&str]) -> (ZoneLevel, bool) {
        let mut d = Detector::from_config(config, 0);
        let s = 1_000_000_000u64;
        let mut level = ZoneLevel::Normal;
        let mut critical = false;
        for t in 0..6u64 {
            for (i, sensor) in config.sensors.iter().enumerate() {
                let v = if t >= 2 && fire.contains(&sensor.id.as_str()) {
                    if sensor.kind == Kind::Smoke {
                        0.2
                    } else {
                        1.0
                    }
                } else if sensor.kind == Kind::Smoke {
                    0.01
                } else {
                    0.0
                };
                d.observe(Sample {
                    sensor: i as u32,
                    at: t * s,
                    reading: Reading::Value(v),
                });
            }
            d.tick(t * s + 1);
            for o in d.drain() {
                match o {
                    Output::Zone { to, .. } => level = to,
                    Output::Critical { .. } => critical = true,
                    _ => {}
                }
            }
        }
        (level, critical)
    }

    #[test]
    fn a_confirmed_panel_fire_is_critical_alone_and_a_pre_alarm_is_one_vote() {
        let confirmed = panel("confirmed = true", "").unwrap();
        assert_eq!(run(&confirmed, &["zone3"]), (ZoneLevel::Critical, true));
        // Not confirmed: one vote of two; the zone is at alarm.
        let plain = panel("", "").unwrap();
        assert_eq!(run(&plain, &["zone3"]), (ZoneLevel::Alarm, false));
        assert_eq!(run(&plain, &["prealarm"]), (ZoneLevel::Alarm, false));
        // With the VESDA above its alarm threshold, two votes: critical.
        assert_eq!(run(&plain, &["prealarm", "vesda"]).0, ZoneLevel::Critical);
    }

    #[test]
    fn confirmed_on_another_kind_is_an_error() {
        let text = r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-unit"

[[sources]]
name = "panel"
type = "bacnet"
url = "bacnet://10.20.0.60"
device_instance = 3101

[[sensors]]
id = "vesda"
zone = "z"
kind = "smoke"
source = "panel"
object = "analog-input,3"
confirmed = true

[[zones]]
id = "z"
runbook = "r"

[[runbooks]]
name = "r"

[[runbooks.steps]]
name = "drain"
type = "wait"
duration = "1s"
"#;
        let e = crate::config::load_str(text, "unit", Default::default()).unwrap_err();
        assert!(
            e.errors.iter().any(|p| p.to_string().starts_with(
                "sensors[0].confirmed: applies to kind = \"alarm_input\" only (this sensor is smoke)"
            )),
            "{:?}",
            e.errors
        );
    }
}
