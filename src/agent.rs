//! Wiring: sources -> bounded channel -> detection core -> event log and runbooks.

use crate::api::{self, ApiCommand};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Problem, SourceSpec};
use crate::detect::{Detector, Reading, Sample};
use crate::events::{Event, EventLog, EventLogError};
use crate::incident::{self, Coordinator, Shared};
use crate::journal::{Journal, JournalError};
use crate::sinks::influxdb::{
    self as influx, Sink, SinkConfig, Telemetry, TelemetryTx, WallFromMono,
};
use crate::sinks::mqtt::{StatusConfig, StatusMsg, StatusPublisher};
use crate::sources::{bacnet, modbus, mqtt, nut, snmp};

mod engine;
mod reload;
use engine::Engine;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot create state_dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    EventLog(#[from] EventLogError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Api(#[from] api::ApiError),
    #[error(transparent)]
    Telemetry(#[from] influx::InfluxError),
    #[error("telemetry.mqtt: {0}")]
    Status(#[from] crate::sources::mqtt::MqttError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// Capacity of the sample channel between sources and detection.
const SAMPLE_QUEUE: usize = 4096;
/// Samples handled per wake-up before the loop looks at ticks and shutdown again.
const SAMPLE_BATCH: usize = 1024;

/// Secret files named by the config that do not exist or cannot be read.
pub fn missing_secrets(config: &Config) -> Vec<Problem> {
    config
        .secret_files()
        .into_iter()
        .filter_map(|(path, file)| match std::fs::metadata(&file) {
            Ok(m) if m.is_file() => None,
            Ok(_) => Some(Problem::new(
                path,
                format!("secret file {} is not a regular file", file.display()),
            )),
            Err(e) => Some(Problem::new(
                path,
                format!("secret file {}: {e}", file.display()),
            )),
        })
        .collect()
}

/// Secret files that group or others may read (a warning, not an error: the operator
/// may have a reason, but should know).
pub fn exposed_secrets(config: &Config) -> Vec<Problem> {
    use std::os::unix::fs::PermissionsExt;
    config
        .secret_files()
        .into_iter()
        .filter_map(|(path, file)| {
            let mode = std::fs::metadata(&file).ok()?.permissions().mode();
            (mode & 0o077 != 0).then(|| {
                Problem::new(
                    path,
                    format!(
                        "secret file {} is readable by group or others (mode {:o}); \
                         run `chmod 600 {}`",
                        file.display(),
                        mode & 0o777,
                        file.display()
                    ),
                )
            })
        })
        .collect()
}

/// The short summary `check-config` prints.
pub fn summary(path: &Path, c: &Config) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}: valid", path.display());
    let _ = writeln!(
        s,
        "agent {} (dry_run: {}), event log {}, state in {}",
        c.agent.name,
        c.agent.dry_run,
        c.agent.event_log.display(),
        c.agent.state_dir.display()
    );
    if let Some(api) = &c.api {
        let _ = writeln!(s, "api on {}", api.listen);
    }
    let _ = writeln!(s, "sources ({}):", c.sources.len());
    for (i, src) in c.sources.iter().enumerate() {
        let n = c.sensors.iter().filter(|x| x.source == i).count();
        let mut what = src.spec.describe();
        if let SourceSpec::Modbus(_) = &src.spec {
            let reads = modbus::devices(c)
                .into_iter()
                .find(|d| d.name == src.name)
                .map(|d| d.reads.len())
                .unwrap_or(0);
            let _ = write!(what, ", {reads} read(s) per poll");
        }
        if let SourceSpec::Snmp(_) = &src.spec {
            let oids = snmp::pollers(c)
                .into_iter()
                .find(|p| p.name == src.name)
                .map_or(0, |p| p.oids.len());
            let _ = write!(what, ", {oids} OID(s) per GET");
        }
        if let SourceSpec::Bacnet(_) = &src.spec {
            let objects = bacnet::pollers(c)
                .into_iter()
                .find(|p| p.name == src.name)
                .map_or(0, |p| p.points.len());
            let _ = write!(what, ", {objects} object(s) per poll");
        }
        let _ = writeln!(s, "  {:<16} {what}; {n} sensor(s)", src.name);
    }
    let _ = writeln!(s, "zones ({}):", c.zones.len());
    for (zi, z) in c.zones.iter().enumerate() {
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for sensor in c.sensors_in_zone(zi) {
            *kinds.entry(sensor.kind.as_str()).or_default() += 1;
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let prepare = z
            .prepare_runbook
            .map(|p| {
                format!(
                    ", prepare {} (undone after {} at normal{})",
                    c.runbooks[p].name,
                    crate::config::units::format_duration(z.prepare_cooldown),
                    if z.failover_waits_for_prepare {
                        "; the failover waits for it"
                    } else {
                        ""
                    }
                )
            })
            .unwrap_or_default();
        // Another system's confirmed alarm bypasses `confirm`: say which.
        let alone: Vec<&str> = c
            .sensors_in_zone(zi)
            .filter(|x| {
                x.kind == crate::config::Kind::AlarmInput && x.detect.critical_above.is_some()
            })
            .map(|x| x.id.as_str())
            .collect();
        let alone = if alone.is_empty() {
            String::new()
        } else {
            format!(" (critical on its own: {})", alone.join(", "))
        };
        let _ = writeln!(
            s,
            "  {}: {} sensor(s) ({}), confirm {}{alone}, runbook {}{prepare}",
            z.id,
            c.sensors_in_zone(zi).count(),
            kinds.join(", "),
            z.confirm,
            c.runbooks[z.runbook].name
        );
    }
    let _ = writeln!(s, "runbooks ({}):", c.runbooks.len());
    for r in &c.runbooks {
        let budget = r
            .budget
            .map(|b| format!(", budget {}", crate::config::units::format_duration(b)))
            .unwrap_or_default();
        let _ = writeln!(s, "  {} ({} step(s){budget})", r.name, r.steps.len());
        for (i, step) in r.steps.iter().enumerate() {
            let _ = writeln!(
                s,
                "    {}. {}: {}{}",
                i + 1,
                step.name,
                step.action.describe(),
                should_mark(step)
            );
        }
        for (i, step) in r.undo_steps.iter().enumerate() {
            let _ = writeln!(
                s,
                "    undo {}. {}: {}{}",
                i + 1,
                step.name,
                step.action.describe(),
                should_mark(step)
            );
        }
    }
    if !c.feeds.is_empty() {
        let _ = writeln!(
            s,
            "feeds ({}): safe to cut once every zone on them has failed over and verified",
            c.feeds.len()
        );
        for f in &c.feeds {
            let zones: Vec<&str> = f.zones.iter().map(|&z| c.zones[z].id.as_str()).collect();
            let loads = if f.loads.is_empty() {
                String::new()
            } else {
                format!("; also {}", f.loads.join(", "))
            };
            let _ = writeln!(
                s,
                "  {} ({}): zones {}{loads}",
                f.id,
                f.description,
                zones.join(", ")
            );
        }
    }
    s.push_str(&device_writes(c));
    s
}

/// Every write to a device in the room the config can make, per zone: which stage's
/// runbook, which step, what is written where and how it is checked.
fn device_writes(c: &Config) -> String {
    use crate::incident::Stage;
    let mut s = String::new();
    let mut count = 0;
    for (zi, z) in c.zones.iter().enumerate() {
        let mut lines = Vec::new();
        for stage in [Stage::Prepare, Stage::Failover, Stage::Undo] {
            let Some((rb, steps)) = incident::stage_steps(c, zi, stage) else {
                continue;
            };
            for step in steps {
                if let Some(write) = step.action.info().device_write() {
                    lines.push(format!(
                        "    {} {} -> {}: {write}",
                        stage.as_str(),
                        rb.name,
                        step.name
                    ));
                }
            }
        }
        if !lines.is_empty() {
            count += lines.len();
            let _ = writeln!(s, "  {}:", z.id);
            for l in lines {
                let _ = writeln!(s, "{l}");
            }
        }
    }
    if count == 0 {
        return "device writes: none\n".to_string();
    }
    format!("device writes ({count}), per zone:\n{s}")
}

fn should_mark(step: &crate::config::Step) -> &'static str {
    match step.priority {
        crate::config::Priority::Should => " [should]",
        crate::config::Priority::Must => "",
    }
}

/// Runs the agent until SIGINT or SIGTERM; SIGHUP reloads the config file.
pub async fn run(config: Config, config_path: PathBuf) -> Result<(), AgentError> {
    let shutdown = CancellationToken::new();
    // Capacity 1: SIGHUPs that arrive while one is pending are one reload.
    let (reload_tx, reload_rx) = mpsc::channel::<()>(1);
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(AgentError::Signals)?;
        let token = shutdown.clone();
        tokio::spawn(async move {
            let which = loop {
                tokio::select! {
                    _ = term.recv() => break "SIGTERM",
                    _ = int.recv() => break "SIGINT",
                    _ = hup.recv() => {
                        tracing::info!(signal = "SIGHUP", "reloading the config");
                        let _ = reload_tx.try_send(());
                    }
                }
            };
            tracing::info!(signal = which, "shutting down");
            token.cancel();
        })
    };
    let result = run_until_reloadable(
        config,
        config_path,
        Arc::new(SystemClock::new()),
        shutdown,
        reload_rx,
    )
    .await;
    signals.abort();
    result
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run_until(
    config: Config,
    config_path: PathBuf,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let (_never, reload) = mpsc::channel(1);
    run_until_reloadable(config, config_path, clock, shutdown, reload).await
}

/// The sources of a config, running: their samples, tasks and counters, and the Modbus
/// links they poll on (for the runbook steps that write to those devices).
struct Sources {
    rx: mpsc::Receiver<Sample>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    metrics: Vec<Arc<crate::sources::metrics::SourceMetrics>>,
    links: std::collections::HashMap<crate::config::ModbusLink, Arc<modbus::Link>>,
}

fn spawn_sources(
    config: &Config,
    clock: &Arc<dyn Clock>,
    metrics: &crate::sinks::prometheus::Metrics,
    stop: &CancellationToken,
) -> Sources {
    let (tx, rx) = mpsc::channel::<Sample>(SAMPLE_QUEUE);
    let mut tasks = Vec::new();
    let mut source_metrics = Vec::new();
    let (devices, links) = modbus::plan_links(config);
    for device in devices {
        device
            .metrics
            .attach_poll_histogram(metrics.poll_duration.with_label_values(&[&device.name]));
        source_metrics.push(device.metrics.clone());
        tasks.push(modbus::spawn(
            device,
            clock.clone(),
            tx.clone(),
            stop.clone(),
        ));
    }
    for sub in mqtt::subscribers(config) {
        source_metrics.push(sub.metrics.clone());
        tasks.push(mqtt::spawn(sub, clock.clone(), tx.clone(), stop.clone()));
    }
    for poller in nut::pollers(config) {
        poller
            .metrics
            .attach_poll_histogram(metrics.poll_duration.with_label_values(&[&poller.name]));
        source_metrics.push(poller.metrics.clone());
        tasks.push(nut::spawn(poller, clock.clone(), tx.clone(), stop.clone()));
    }
    for poller in snmp::pollers(config) {
        poller
            .metrics
            .attach_poll_histogram(metrics.poll_duration.with_label_values(&[&poller.name]));
        source_metrics.push(poller.metrics.clone());
        tasks.push(snmp::spawn(poller, clock.clone(), tx.clone(), stop.clone()));
    }
    for poller in bacnet::pollers(config) {
        poller
            .metrics
            .attach_poll_histogram(metrics.poll_duration.with_label_values(&[&poller.name]));
        source_metrics.push(poller.metrics.clone());
        tasks.push(bacnet::spawn(
            poller,
            clock.clone(),
            tx.clone(),
            stop.clone(),
        ));
    }
    Sources {
        rx,
        tasks,
        metrics: source_metrics,
        links,
    }
}

/// Runs the agent until `shutdown` is cancelled; each message on `reload` reloads the
/// config file at `config_path` (see `agent/reload.rs`).
pub async fn run_until_reloadable(
    config: Config,
    config_path: PathBuf,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
    mut reload: mpsc::Receiver<()>,
) -> Result<(), AgentError> {
    let mut config = Arc::new(config);
    std::fs::create_dir_all(&config.agent.state_dir).map_err(|source| AgentError::StateDir {
        path: config.agent.state_dir.clone(),
        source,
    })?;
    let log = Arc::new(EventLog::open(&config.agent.event_log, &config.agent.name)?);
    let journal = Journal::open(&config.agent.state_dir)?;
    // Telemetry has its own stop: it outlives the engine to carry the last events.
    let sink_stop = CancellationToken::new();
    let sink = match SinkConfig::from_config(&config)? {
        Some(cfg) => Some(Sink::start(cfg, sink_stop.clone())?),
        None => None,
    };
    let telemetry = sink.as_ref().map(Sink::sender);
    let status_stop = CancellationToken::new();
    let status = match StatusConfig::from_config(&config) {
        Some(cfg) => Some(StatusPublisher::start(cfg, status_stop.clone())?),
        None => None,
    };
    let wall_from_mono = WallFromMono::new(clock.wall(), clock.mono());
    let metrics = Arc::new(crate::sinks::prometheus::Metrics::new());
    metrics.declare_runbooks(&config);
    let coordinator_stop = CancellationToken::new();
    let coordinator: Arc<dyn Coordinator> = match &config.cluster {
        Some(c) => {
            let zones = config.zones.iter().map(|z| z.id.clone()).collect();
            let cluster = crate::cluster::Cluster::connect(c, zones, metrics.registry()).await?;
            tracing::info!(node = %c.node, etcd = ?c.etcd, on_cluster_loss = c.on_cluster_loss.as_str(), "cluster mode: zones are coordinated through etcd");
            Arc::new(cluster)
        }
        None => Arc::new(incident::Alone),
    };
    let shared = Arc::new(Shared {
        config: config.clone(),
        metrics: metrics.clone(),
        log: log.clone(),
        journal: journal.clone(),
        clock: clock.clone(),
        telemetry: telemetry.clone(),
        status: status.as_ref().map(StatusPublisher::sender),
        power: incident::PowerBoard::new(config.zones.len()),
        coordinator,
        modbus: Arc::new(modbus::Links::default()),
    });
    shared
        .coordinator
        .clone()
        .start(shared.clone(), coordinator_stop.clone());

    // The API is bound before anything starts, so a taken port fails the start loudly.
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<ApiCommand>(32);
    let api_stop = CancellationToken::new();
    let api_task = match &config.api {
        Some(api) => {
            let token = api::read_token(api.token_file.as_deref())?;
            let (addr, task) = api::serve(
                api.listen,
                token,
                journal.clone(),
                metrics.clone(),
                cmd_tx.clone(),
                api_stop.clone(),
            )
            .await?;
            tracing::info!(%addr, "API listening");
            Some(task)
        }
        None => None,
    };

    shared.write(&Event::AgentStarted {
        version: env!("CARGO_PKG_VERSION").to_string(),
        config: config_path.display().to_string(),
        dry_run: config.agent.dry_run,
    });
    tracing::info!(agent = %config.agent.name, event_log = %log.path().display(), dry_run = config.agent.dry_run, "agent started");
    let notifier = crate::systemd::Notifier::from_env();
    notifier.ready();
    let watchdog_every = notifier.watchdog_interval().map(|d| d.as_nanos() as u64);
    let mut last_watchdog = 0u64;

    let mut sources_stop = shutdown.child_token();
    let Sources {
        mut rx,
        mut tasks,
        metrics: source_metrics,
        links,
    } = spawn_sources(&config, &clock, &metrics, &sources_stop);
    shared.modbus.replace(links);

    let mut detector = Detector::from_config(&config, clock.mono());
    let mut engine = Engine::new(
        shared.clone(),
        source_metrics,
        sink.as_ref().map(Sink::stats),
        status.as_ref().map(StatusPublisher::stats),
    );
    engine.resume_open_incidents(&mut detector);
    if let Some(s) = &shared.status {
        s.send(StatusMsg::Zones(engine.zone_statuses(&detector)));
    }

    let mut ticker = tokio::time::interval(config.agent.tick_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sources_done = false;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            // Ticks before samples: a steady flood of samples must not starve stale
            // detection, hold expiry or the watchdog.
            _ = ticker.tick() => {
                // The watchdog is pinged from the detection loop itself: if this loop hangs,
                // systemd restarts the agent.
                if let Some(every) = watchdog_every {
                    let now = clock.mono();
                    if now.saturating_sub(last_watchdog) >= every {
                        notifier.watchdog();
                        last_watchdog = now;
                    }
                }
                // Samples already waiting were taken before this tick: observe them
                // first, so that the agent's own lateness in reading its queue (CPU
                // starvation) never makes a sensor stale; stale means the device went
                // silent. Bounded by what is queued now, so a flood cannot starve ticks.
                for _ in 0..rx.len() {
                    match rx.try_recv() {
                        Ok(s) => observe(&mut detector, s, telemetry.as_ref(), wall_from_mono, config.sensors.len()),
                        Err(_) => break,
                    }
                }
                detector.tick(clock.mono());
                engine.trends.record(clock.mono(), |i| detector.sensor_state(i as u32).1);
                engine.handle(&mut detector);
                engine.tick(&detector);
                // Sources stop with the agent (their token is a child of `shutdown`): a
                // stop is not a source going down.
                if !shutdown.is_cancelled() {
                    engine.watch_sources();
                }
            }
            Some(cmd) = cmd_rx.recv() => {
                engine.command(cmd, &mut detector);
                engine.handle(&mut detector);
            }
            Some(()) = reload.recv() => {
                // RELOADING=1 here, READY=1 in reload_failed/reloaded: one task sends both,
                // so a SIGHUP queued during this reload cannot interleave its RELOADING=1.
                notifier.reloading();
                let new = match reload::load(&config_path) {
                    Ok(new) => new,
                    Err(why) => {
                        engine.reload_failed(&config_path, why, &notifier);
                        continue;
                    }
                };
                if let Some(why) = engine.reload_refusal(&new) {
                    engine.reload_failed(&config_path, why, &notifier);
                    continue;
                }
                let changed = reload::live_changes(&config, &new);
                let new = Arc::new(new);
                // The old sources stop (bounded) before the new ones connect: a Modbus
                // device may accept one client only.
                if watchdog_every.is_some() {
                    notifier.watchdog();
                    last_watchdog = clock.mono();
                }
                sources_stop.cancel();
                reload::stop_sources(std::mem::take(&mut tasks)).await;
                // The old links close with their last user: the stopped pollers are gone,
                // and the registry lets go of them here, before the new sources connect.
                shared.modbus.replace(Default::default());
                sources_stop = shutdown.child_token();
                let started = spawn_sources(&new, &clock, &metrics, &sources_stop);
                (rx, tasks) = (started.rx, started.tasks);
                shared.modbus.replace(started.links);
                sources_done = false;
                if new.agent.tick_interval != config.agent.tick_interval {
                    ticker = tokio::time::interval(new.agent.tick_interval);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
                engine.apply_reload(new.clone(), &mut detector, started.metrics);
                config = new;
                engine.reloaded(&config_path, changed, &notifier);
                engine.handle(&mut detector);
            }
            first = rx.recv(), if !sources_done => {
                let Some(first) = first else {
                    // No sources at all: keep ticking (sensors go stale) until shutdown.
                    sources_done = true;
                    continue;
                };
                observe(&mut detector, first, telemetry.as_ref(), wall_from_mono, config.sensors.len());
                for _ in 1..SAMPLE_BATCH {
                    match rx.try_recv() {
                        Ok(s) => observe(&mut detector, s, telemetry.as_ref(), wall_from_mono, config.sensors.len()),
                        Err(_) => break,
                    }
                }
                engine.handle(&mut detector);
            }
        }
    }
    notifier.stopping();
    coordinator_stop.cancel();
    sources_stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    api_stop.cancel();
    if let Some(t) = api_task {
        let _ = t.await;
    }
    let running: Vec<String> = engine
        .runs
        .iter()
        .filter(|(_, h)| !h.is_finished())
        .map(|(z, _)| config.zones[*z].id.clone())
        .collect();
    for (_, h) in engine.runs.drain() {
        h.abort();
    }
    // Bounded: an unreachable etcd must not hold the shutdown up.
    let _ = tokio::time::timeout(SINK_STOP, shared.coordinator.stop()).await;
    let reason = if running.is_empty() {
        "shutdown requested".to_string()
    } else {
        // The journal has each step's state: the next start resumes these runbooks.
        format!(
            "shutdown requested with runbooks in progress in {}; they resume at the next start",
            running.join(", ")
        )
    };
    let stopped = Event::AgentStopped { reason };
    let ts = clock.wall();
    log.write(ts, &stopped)?;
    if let Some(t) = &telemetry {
        t.event(&config.agent.name, ts, &stopped);
    }
    if let Some(s) = &shared.status {
        s.event(&config.agent.name, ts, &stopped);
    }
    if let Some(p) = status {
        // Bounded by the publisher: last events, then `offline`, then DISCONNECT.
        status_stop.cancel();
        if tokio::time::timeout(SINK_STOP, p.join()).await.is_err() {
            tracing::error!("MQTT status publisher did not stop in time");
        }
    }
    if let Some(sink) = sink {
        // Bounded: the sink sends for `shutdown_grace`, then spools what is left.
        sink_stop.cancel();
        if tokio::time::timeout(SINK_STOP, sink.join()).await.is_err() {
            tracing::error!("telemetry sink did not stop in time");
        }
    }
    tracing::info!("agent stopped");
    Ok(())
}

/// How long the InfluxDB sink may take to hand its last batches over at shutdown.
const SINK_STOP: std::time::Duration = std::time::Duration::from_secs(10);

/// Feeds one sample to the core and, when InfluxDB is configured, queues it with the
/// sensor's state (never waiting: a full queue counts a drop).
fn observe(
    detector: &mut Detector,
    sample: Sample,
    telemetry: Option<&TelemetryTx>,
    wall: WallFromMono,
    sensors: usize,
) {
    detector.observe(sample);
    let Some(t) = telemetry else { return };
    // The core ignores unknown sensor indices; sensor_state would not.
    if sample.sensor as usize >= sensors {
        return;
    }
    let (state, _) = detector.sensor_state(sample.sensor);
    t.send(Telemetry::Sensor {
        sensor: sample.sensor,
        ts_ms: wall.ms(sample.at),
        value: match sample.reading {
            Reading::Value(v) if v.is_finite() => Some(v),
            _ => None,
        },
        state,
    });
}
