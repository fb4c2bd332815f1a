//! Wiring: sources -> bounded channel -> detection core -> event log and runbooks.

use crate::api::{self, ApiCommand, Refusal};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Problem, SourceSpec};
use crate::detect::{Cause, Detector, Output, Reading, Sample, SensorState};
use crate::events::{Event, EventLog, EventLogError};
use crate::incident::{self, Shared, Stage};
use crate::journal::{Journal, JournalError, StepStatus};
use crate::runbook;
use crate::sinks::influxdb::{
    self as influx, Sink, SinkConfig, Telemetry, TelemetryTx, WallFromMono,
};
use crate::sinks::mqtt::{StatusConfig, StatusMsg, StatusPublisher, ZoneStatus};
use crate::sources::{modbus, mqtt};
use crate::staged::Stager;

mod reload;
mod staged;
use staged::PrepareRt;
use std::collections::{BTreeMap, HashMap};
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
        let what = match &src.spec {
            SourceSpec::Modbus(m) => {
                let link = match &m.link {
                    crate::config::ModbusLink::Tcp { host, port } => format!("tcp://{host}:{port}"),
                    crate::config::ModbusLink::Rtu { path, baud, .. } => {
                        format!("rtu://{path} @{baud}")
                    }
                };
                let reads = modbus::devices(c)
                    .into_iter()
                    .find(|d| d.name == src.name)
                    .map(|d| d.reads.len())
                    .unwrap_or(0);
                format!(
                    "modbus {link} unit {}, every {}, {reads} read(s) per poll",
                    m.unit,
                    crate::config::units::format_duration(m.poll_interval)
                )
            }
            SourceSpec::Mqtt(m) => format!(
                "mqtt {}:{}{}",
                m.host,
                m.port,
                if m.tls { " (TLS)" } else { "" }
            ),
        };
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
        let _ = writeln!(
            s,
            "  {}: {} sensor(s) ({}), confirm {}, runbook {}{prepare}",
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
                runbook::describe(c, step),
                should_mark(step)
            );
        }
        for (i, step) in r.undo_steps.iter().enumerate() {
            let _ = writeln!(
                s,
                "    undo {}. {}: {}{}",
                i + 1,
                step.name,
                runbook::describe(c, step),
                should_mark(step)
            );
        }
    }
    s
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

/// The sources of a config, running: their samples, tasks and counters.
struct Sources {
    rx: mpsc::Receiver<Sample>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    metrics: Vec<Arc<crate::sources::metrics::SourceMetrics>>,
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
    for device in modbus::devices(config) {
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
    Sources {
        rx,
        tasks,
        metrics: source_metrics,
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
    let cluster_stop = CancellationToken::new();
    let cluster = match &config.cluster {
        Some(c) => {
            let zones = config.zones.iter().map(|z| z.id.clone()).collect();
            let cluster =
                Arc::new(crate::cluster::Cluster::connect(c, zones, metrics.registry()).await?);
            cluster.spawn_presence(cluster_stop.clone());
            tracing::info!(node = %c.node, etcd = ?c.etcd, on_cluster_loss = c.on_cluster_loss.as_str(), "cluster mode: zones are coordinated through etcd");
            Some(cluster)
        }
        None => None,
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
        cluster,
    });
    if let Some(c) = &shared.cluster {
        c.spawn_sync(shared.clone(), cluster_stop.clone());
    }

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
    } = spawn_sources(&config, &clock, &metrics, &sources_stop);

    let mut detector = Detector::from_config(&config, clock.mono());
    let mut engine = Engine {
        shared: shared.clone(),
        runs: HashMap::new(),
        open: HashMap::new(),
        seq: 0,
        drills: 0,
        source_metrics,
        sink_stats: sink.as_ref().map(Sink::stats),
        status_stats: status.as_ref().map(StatusPublisher::stats),
        trends: api::trend::Trends::new(
            config.sensors.len(),
            api::trend::EVERY_NS,
            api::trend::POINTS,
        ),
        stager: Stager::from_config(&config),
        prepares: HashMap::new(),
        power_sent: vec![None; config.zones.len()],
        sources_up: HashMap::new(),
    };
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
                engine.watch_sources();
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
                sources_stop = shutdown.child_token();
                let started = spawn_sources(&new, &clock, &metrics, &sources_stop);
                (rx, tasks) = (started.rx, started.tasks);
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
    cluster_stop.cancel();
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
    if let Some(c) = &shared.cluster {
        // Bounded: an unreachable etcd must not hold the shutdown up.
        let _ = tokio::time::timeout(SINK_STOP, c.resign_all()).await;
    }
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

struct Engine {
    shared: Arc<Shared>,
    /// Failover runbook tasks by zone index.
    runs: HashMap<usize, tokio::task::JoinHandle<bool>>,
    /// Open (not reset) incident id by zone index.
    open: HashMap<usize, String>,
    seq: u32,
    drills: u32,
    /// Sources' own counters, exported at scrape time.
    source_metrics: Vec<Arc<crate::sources::metrics::SourceMetrics>>,
    sink_stats: Option<Arc<influx::Stats>>,
    status_stats: Option<Arc<crate::sinks::mqtt::StatusStats>>,
    /// Short per-sensor history for the status page.
    trends: api::trend::Trends,
    /// Staged response: prepare at alarm, failover at critical, undo after the cooldown.
    stager: Stager,
    /// Prepare runbooks by zone index (kept after their undo, for the status).
    prepares: HashMap<usize, PrepareRt>,
    /// The expected power loss last sent to the MQTT status, by zone.
    power_sent: Vec<Option<(f64, &'static str)>>,
    /// Sources' connection state as last written (`source_state`), once first connected.
    sources_up: HashMap<String, bool>,
}

/// Brings a Prometheus counter up to a component's own running total.
fn catch_up(counter: &prometheus::IntCounter, total: u64) {
    let have = counter.get();
    if total > have {
        counter.inc_by(total - have);
    }
}

impl Engine {
    fn write(&self, event: &Event) {
        self.shared.write(event);
    }

    fn zone_index(&self, id: &str) -> Option<usize> {
        self.shared.config.zones.iter().position(|z| z.id == id)
    }

    /// Incidents left open by a previous run: latch their zones, resume unfinished runbooks.
    fn resume_open_incidents(&mut self, detector: &mut Detector) {
        let config = self.shared.config.clone();
        for (zi, z) in config.zones.iter().enumerate() {
            let inc = match self.shared.journal.load(&z.id) {
                Ok(Some(inc)) => inc,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(zone = %z.id, error = %e, "cannot read the zone's incident journal; starting without it");
                    continue;
                }
            };
            detector.latch(zi as u32);
            // The zone has failed over: no prepare or second failover in this incident.
            let _ = self.stager.critical(zi as u32);
            self.open.insert(zi, inc.incident.clone());
            if inc.steps.len() != config.runbooks[z.runbook].steps.len()
                || inc.runbook != config.runbooks[z.runbook].name
            {
                tracing::error!(zone = %z.id, incident = %inc.incident, "the zone's runbook changed since the incident started; not resuming it (reset the zone)");
                continue;
            }
            if inc.resume_point().is_none() {
                tracing::warn!(zone = %z.id, incident = %inc.incident, "zone has a finished incident; it stays critical until reset");
                continue;
            }
            tracing::warn!(zone = %z.id, incident = %inc.incident, "resuming an unfinished runbook");
            let shared = self.shared.clone();
            if let Some(cluster) = self.shared.cluster.clone() {
                // The zone's leader resumes it: this agent, or a peer that took over.
                self.runs.insert(
                    zi,
                    tokio::spawn(crate::cluster::run_failover(shared, cluster, zi, inc, None)),
                );
                continue;
            }
            incident::announce(&self.shared, &inc, Stage::Failover, true);
            self.runs.insert(
                zi,
                tokio::spawn(incident::run_stage(shared, zi, inc, Stage::Failover)),
            );
        }
    }

    fn handle(&mut self, detector: &mut Detector) {
        let outputs: Vec<Output> = detector.drain().collect();
        let config = self.shared.config.clone();
        let now = self.shared.clock.mono();
        if !outputs.is_empty() {
            // A runbook started now reads the expected power loss before its first step.
            self.update_power(detector);
        }
        for o in outputs {
            let mut staged = None;
            match &o {
                Output::Critical { zone, cause } => {
                    if let Err(r) = self.start_runbook(*zone as usize, *cause) {
                        tracing::error!(?r, "runbook not started");
                    }
                }
                Output::Zone { zone, from, to, .. } => {
                    staged = self.stager.level(*zone, *to, now);
                    tracing::warn!(zone = %config.zones[*zone as usize].id, from = from.as_str(), to = to.as_str(), "zone level changed");
                    if let Some(t) = &self.shared.telemetry {
                        t.send(Telemetry::Zone {
                            zone: *zone,
                            ts_ms: influx::wall_ms(self.shared.clock.wall()),
                            level: *to,
                        });
                    }
                }
                Output::Sensor { .. } => {}
            }
            if let Some(event) = crate::events::from_output(&config, &o) {
                self.write(&event);
            }
            // After the zone_level event that caused it.
            if let Some(d) = staged {
                self.decide(d, Cause::Fire);
            }
        }
    }

    /// The zone is critical (detection or by hand): its prepare runbook if it has one and
    /// that has not run in this incident, then its failover.
    fn start_runbook(&mut self, zone: usize, cause: Cause) -> Result<String, Refusal> {
        if let Some(open) = self.open.get(&zone).cloned() {
            return self.retry_failed(zone, &open);
        }
        let mut id = None;
        for d in self.stager.critical(zone as u32) {
            id = self.decide(d, cause).or(id);
        }
        id.ok_or_else(|| Refusal::Conflict("the zone has already failed over".into()))
    }

    /// Manual failover of a zone whose incident is open: when its failover runbook
    /// finished without being safe to cut power (a peer was down, a step failed), the
    /// steps that did not succeed run again in the same incident; succeeded steps are not
    /// repeated. Anything else is a conflict.
    fn retry_failed(&mut self, zone: usize, open: &str) -> Result<String, Refusal> {
        let conflict = |why: String| Err(Refusal::Conflict(why));
        if self.runs.get(&zone).is_some_and(|h| !h.is_finished()) {
            return conflict(format!("the runbook of incident {open} is still running"));
        }
        let config = self.shared.config.clone();
        let z = &config.zones[zone];
        let clustered = self.shared.cluster.is_some();
        let mut inc = match self.shared.journal.load(&z.id) {
            Ok(Some(inc)) if inc.incident == open => inc,
            // Under `[cluster]` the journal holds the incident the zone's leader opened,
            // which is the zone's incident for every agent.
            Ok(Some(inc)) if clustered => {
                self.open.insert(zone, inc.incident.clone());
                inc
            }
            Ok(_) => {
                return conflict(format!(
                    "zone has an open incident {open} without a failover record; reset it first"
                ))
            }
            Err(e) => return conflict(format!("cannot read the incident journal: {e}")),
        };
        let open = inc.incident.clone();
        let open = open.as_str();
        if !inc.finished {
            return conflict(format!(
                "incident {open} has an unfinished runbook that is not running (the runbook \
                 changed since it started?); reset it first"
            ));
        }
        if inc.safe_to_cut_power == Some(true) {
            return conflict(format!(
                "zone already failed over in incident {open} (safe to cut power); reset it first"
            ));
        }
        let reopen = crate::cluster::Reopen {
            finished_at: inc.finished_at.clone(),
        };
        let retried: Vec<String> = inc
            .steps
            .iter_mut()
            .filter(|s| !matches!(s.status, StepStatus::Succeeded | StepStatus::Skipped))
            .map(|s| {
                s.status = StepStatus::Pending;
                s.error = None;
                s.finished_at = None;
                s.name.clone()
            })
            .collect();
        inc.finished = false;
        inc.finished_at = None;
        inc.safe_to_cut_power = None;
        self.shared.save(&inc);
        tracing::warn!(zone = %z.id, incident = %open, steps = ?retried, "manual failover: running the steps that did not succeed again");
        let shared = self.shared.clone();
        if let Some(cluster) = self.shared.cluster.clone() {
            // The zone's leader runs them (this agent once it wins the zone), once for
            // the cluster, however many agents were asked.
            self.runs.insert(
                zone,
                tokio::spawn(crate::cluster::run_failover(
                    shared,
                    cluster,
                    zone,
                    inc,
                    Some(reopen),
                )),
            );
            return Ok(open.to_string());
        }
        incident::announce(&self.shared, &inc, Stage::Failover, true);
        self.runs.insert(
            zone,
            tokio::spawn(incident::run_stage(shared, zone, inc, Stage::Failover)),
        );
        Ok(open.to_string())
    }

    fn command(&mut self, cmd: ApiCommand, detector: &mut Detector) {
        match cmd {
            ApiCommand::Status { reply } => {
                let _ = reply.send(self.status(detector));
            }
            ApiCommand::RefreshMetrics { reply } => {
                self.refresh_metrics(detector);
                let _ = reply.send(());
            }
            ApiCommand::Failover { zone, reply } => {
                let r = match self.zone_index(&zone) {
                    None => Err(Refusal::UnknownZone(zone)),
                    Some(zi) => {
                        let r = self.start_runbook(zi, Cause::Manual);
                        if r.is_ok() {
                            detector.latch(zi as u32);
                            tracing::warn!(zone = %zone, "manual failover requested");
                        }
                        r
                    }
                };
                let _ = reply.send(r);
            }
            ApiCommand::Reset { zone, by, reply } => {
                let r = match self.zone_index(&zone) {
                    None => Err(Refusal::UnknownZone(zone)),
                    Some(zi) => self.reset(zi, &by, detector),
                };
                let _ = reply.send(r);
            }
            ApiCommand::Drill { zone, reply } => match self.zone_index(&zone) {
                None => {
                    let _ = reply.send(Err(Refusal::UnknownZone(zone)));
                }
                Some(zi) => {
                    self.drills += 1;
                    let id = format!("drill-{}-{}", zone, self.drills);
                    let shared = self.shared.clone();
                    tokio::spawn(async move {
                        let rows = incident::drill(&shared.config, zi, &id, Some(&shared)).await;
                        let _ = reply.send(Ok(rows));
                    });
                }
            },
        }
    }

    fn reset(&mut self, zone: usize, by: &str, detector: &mut Detector) -> Result<String, Refusal> {
        if self.runs.get(&zone).is_some_and(|h| !h.is_finished()) {
            return Err(Refusal::Conflict(
                "the zone's runbook is still running; reset when it has finished".into(),
            ));
        }
        let Some(mut id) = self.open.remove(&zone) else {
            return self.reset_prepare(zone, by);
        };
        // After a failover the operator owns the way back: the prepare is not undone.
        let _ = self.stager.reset(zone as u32);
        self.prepares.remove(&zone);
        let zone_id = self.shared.config.zones[zone].id.clone();
        match self.shared.journal.load(&zone_id) {
            Ok(Some(mut inc)) => {
                // Under `[cluster]` the journal holds the incident the zone's leader opened.
                id = inc.incident.clone();
                inc.reset_by = Some(by.to_string());
                if let Err(e) = self.shared.journal.close(&inc) {
                    tracing::error!(error = %e, "INCIDENT JOURNAL WRITE FAILED on reset");
                }
                if let Some(cluster) = self.shared.cluster.clone() {
                    tokio::spawn(async move {
                        if let Err(e) = cluster.close(zone, &inc).await {
                            tracing::error!(error = %e, incident = %inc.incident, "cannot close the incident in etcd; reset again when etcd is back");
                        }
                    });
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "incident journal unreadable on reset"),
        }
        self.runs.remove(&zone);
        self.write(&Event::IncidentReset {
            zone: zone_id,
            incident: id.clone(),
            by: by.to_string(),
        });
        detector.reset(zone as u32, self.shared.clock.mono());
        Ok(id)
    }

    /// Writes `source_state` when a source that had connected goes down or comes back.
    fn watch_sources(&mut self) {
        let mut changes = Vec::new();
        for sm in &self.source_metrics {
            let up = sm.is_connected();
            match self.sources_up.get_mut(&sm.source) {
                Some(prev) if *prev != up => {
                    *prev = up;
                    changes.push((sm.source.clone(), up));
                }
                Some(_) => {}
                None if up => {
                    self.sources_up.insert(sm.source.clone(), true);
                }
                None => {}
            }
        }
        let name = |up: bool| {
            use crate::events::Connection;
            if up {
                Connection::Up
            } else {
                Connection::Down
            }
        };
        for (source, up) in changes {
            self.write(&Event::SourceState {
                source,
                from: name(!up),
                to: name(up),
            });
        }
    }

    fn refresh_metrics(&self, detector: &Detector) {
        const STATES: [SensorState; 6] = [
            SensorState::Ok,
            SensorState::Warn,
            SensorState::Alarm,
            SensorState::Critical,
            SensorState::Stale,
            SensorState::Fault,
        ];
        let config = &self.shared.config;
        let m = &self.shared.metrics;
        for sm in &self.source_metrics {
            let snap = sm.snapshot();
            m.source_up
                .with_label_values(&[&sm.source])
                .set(i64::from(snap.connected));
            catch_up(&m.samples.with_label_values(&[&sm.source]), snap.samples_in);
            for (kind, n) in &snap.errors {
                catch_up(
                    &m.source_errors
                        .with_label_values(&[sm.source.as_str(), kind]),
                    *n,
                );
            }
        }
        if let Some(st) = &self.sink_stats {
            m.spool_bytes
                .set(st.spool_bytes.load(std::sync::atomic::Ordering::Relaxed) as i64);
            for r in influx::DropReason::ALL {
                catch_up(
                    &m.telemetry_dropped.with_label_values(&[r.as_str()]),
                    st.dropped_count(r),
                );
            }
        }
        if let Some(st) = &self.status_stats {
            use std::sync::atomic::Ordering::Relaxed;
            catch_up(
                &m.telemetry_dropped.with_label_values(&["mqtt_queue_full"]),
                st.queue_full.load(Relaxed),
            );
            catch_up(
                &m.telemetry_dropped
                    .with_label_values(&["mqtt_backlog_full"]),
                st.backlog_full.load(Relaxed),
            );
        }
        for (si, s) in config.sensors.iter().enumerate() {
            let zone = &config.zones[s.zone].id;
            let (state, value) = detector.sensor_state(si as u32);
            if let Some(v) = value {
                m.sensor_value
                    .with_label_values(&[&s.id, zone, s.kind.as_str()])
                    .set(v);
            }
            for st in STATES {
                m.sensor_state
                    .with_label_values(&[&s.id, zone, st.as_str()])
                    .set(i64::from(st == state));
            }
        }
        for (zi, z) in config.zones.iter().enumerate() {
            m.zone_level
                .with_label_values(&[&z.id])
                .set(detector.zone_level(zi as u32) as i64);
            let open = self.open.contains_key(&zi);
            m.incident_active
                .with_label_values(&[&z.id])
                .set(i64::from(open));
            let safe = open
                && self
                    .shared
                    .journal
                    .load(&z.id)
                    .ok()
                    .flatten()
                    .and_then(|i| i.safe_to_cut_power)
                    .unwrap_or(false);
            m.safe_to_cut_power
                .with_label_values(&[&z.id])
                .set(i64::from(safe));
            let now = self.shared.clock.mono();
            match crate::staged::power_loss(config, detector, zi, now) {
                Some(p) => m
                    .seconds_to_power_loss
                    .with_label_values(&[&z.id])
                    .set(p.seconds),
                None => {
                    let _ = m.seconds_to_power_loss.remove_label_values(&[&z.id]);
                }
            }
        }
    }

    /// Every zone as the MQTT status publisher starts from: level, open incident, verdict.
    fn zone_statuses(&self, detector: &Detector) -> Vec<ZoneStatus> {
        let config = &self.shared.config;
        config
            .zones
            .iter()
            .enumerate()
            .map(|(zi, z)| {
                let incident = self.open.get(&zi).cloned();
                let safe = incident.is_some()
                    && self
                        .shared
                        .journal
                        .load(&z.id)
                        .ok()
                        .flatten()
                        .and_then(|i| i.safe_to_cut_power)
                        .unwrap_or(false);
                ZoneStatus {
                    level: detector.zone_level(zi as u32).as_str(),
                    incident,
                    safe_to_cut_power: safe,
                    ..ZoneStatus::new(&z.id)
                }
            })
            .collect()
    }

    fn status(&self, detector: &Detector) -> serde_json::Value {
        let config = &self.shared.config;
        let now = self.shared.clock.mono();
        let zones: Vec<serde_json::Value> = config
            .zones
            .iter()
            .enumerate()
            .map(|(zi, z)| {
                let sensors: Vec<serde_json::Value> = config
                    .sensors
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.zone == zi)
                    .map(|(si, s)| {
                        let (state, value) = detector.sensor_state(si as u32);
                        serde_json::json!({
                            "id": s.id,
                            "kind": s.kind.as_str(),
                            "state": state.as_str(),
                            "value": value,
                            "age_ms": now.saturating_sub(detector.last_good(si as u32)) / 1_000_000,
                            "reason": detector.sensor_reason(si as u32).as_str(),
                            "trend": self.trends.values(si),
                        })
                    })
                    .collect();
                let incident = self.open.get(&zi);
                let journal = incident.and_then(|_| self.shared.journal.load(&z.id).ok().flatten());
                let power = crate::staged::power_loss(config, detector, zi, now);
                let prepare = self.prepares.get(&zi).map(|p| {
                    serde_json::json!({
                        "incident": p.incident,
                        "runbook": p.runbook,
                        "running": !p.task.is_finished(),
                        "undone": p.undone,
                        // `[cluster]`: false on a follower (the leader ran it).
                        "ran_here": p.ran.load(std::sync::atomic::Ordering::Relaxed),
                    })
                });
                serde_json::json!({
                    "id": z.id,
                    "level": detector.zone_level(zi as u32).as_str(),
                    // The journal's id: under `[cluster]` the incident a peer opened.
                    "incident": journal.as_ref().map(|j| j.incident.clone()).or(incident.cloned()),
                    "runbook": config.runbooks[z.runbook].name,
                    "runbook_running": self.runs.get(&zi).is_some_and(|h| !h.is_finished()),
                    "safe_to_cut_power": journal.as_ref().and_then(|j| j.safe_to_cut_power).unwrap_or(false),
                    "cause": journal.as_ref().map(|j| j.cause.clone()),
                    "started_at": journal.as_ref().map(|j| j.started_at.clone()),
                    "finished_at": journal.as_ref().and_then(|j| j.finished_at.clone()),
                    "steps": journal.map(|j| j.steps),
                    "sensors": sensors,
                    "seconds_to_power_loss": power.map(|p| p.seconds),
                    "power_loss_basis": power.map(|p| p.basis.as_str()),
                    "prepare": prepare,
                })
            })
            .collect();
        serde_json::json!({
            "agent": config.agent.name,
            "dry_run": config.agent.dry_run,
            "event_log_writable": self.shared.log.is_writable(),
            "zones": zones,
            "cluster": self.shared.cluster.as_ref().map(|c| c.status()),
        })
    }
}
