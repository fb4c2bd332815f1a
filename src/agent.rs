//! Wiring: sources -> bounded channel -> detection core -> event log and runbooks.

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Problem, SourceSpec};
use crate::detect::{Cause, Detector, Output, Sample};
use crate::events::{Event, EventLog, EventLogError, EvidenceItem};
use crate::runbook::{self, TemplateVars};
use crate::sources::{modbus, mqtt};
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
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
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
        let _ = writeln!(
            s,
            "  {}: {} sensor(s) ({}), confirm {}, runbook {}",
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
                "    {}. {}: {}",
                i + 1,
                step.name,
                runbook::describe(c, step)
            );
        }
    }
    s
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(config: Config, config_path: PathBuf) -> Result<(), AgentError> {
    let shutdown = CancellationToken::new();
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
        let token = shutdown.clone();
        tokio::spawn(async move {
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = which, "shutting down");
            token.cancel();
        })
    };
    let result = run_until(config, config_path, Arc::new(SystemClock::new()), shutdown).await;
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
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.agent.state_dir).map_err(|source| AgentError::StateDir {
        path: config.agent.state_dir.clone(),
        source,
    })?;
    let log = Arc::new(EventLog::open(&config.agent.event_log, &config.agent.name)?);
    log.write(
        clock.wall(),
        &Event::AgentStarted {
            version: env!("CARGO_PKG_VERSION").to_string(),
            config: config_path.display().to_string(),
            dry_run: config.agent.dry_run,
        },
    )?;
    tracing::info!(agent = %config.agent.name, event_log = %log.path().display(), dry_run = config.agent.dry_run, "agent started");

    let (tx, mut rx) = mpsc::channel::<Sample>(SAMPLE_QUEUE);
    let sources_stop = shutdown.child_token();
    let mut tasks = Vec::new();
    for device in modbus::devices(&config) {
        tasks.push(modbus::spawn(
            device,
            clock.clone(),
            tx.clone(),
            sources_stop.clone(),
        ));
    }
    for sub in mqtt::subscribers(&config) {
        tasks.push(mqtt::spawn(
            sub,
            clock.clone(),
            tx.clone(),
            sources_stop.clone(),
        ));
    }
    drop(tx);

    let mut detector = Detector::from_config(&config, clock.mono());
    let runbooks = CancellationToken::new();
    let mut engine = Engine {
        config: config.clone(),
        log: log.clone(),
        clock: clock.clone(),
        runbooks: runbooks.clone(),
        incidents: 0,
    };
    let mut ticker = tokio::time::interval(config.agent.tick_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            first = rx.recv() => {
                let Some(first) = first else {
                    // No sources at all: keep ticking (sensors go stale) until shutdown.
                    shutdown.cancelled().await;
                    break;
                };
                detector.observe(first);
                for _ in 1..SAMPLE_BATCH {
                    match rx.try_recv() {
                        Ok(s) => detector.observe(s),
                        Err(_) => break,
                    }
                }
                engine.handle(&mut detector);
            }
            _ = ticker.tick() => {
                detector.tick(clock.mono());
                engine.handle(&mut detector);
            }
        }
    }
    sources_stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    runbooks.cancel();
    log.write(
        clock.wall(),
        &Event::AgentStopped {
            reason: "shutdown requested".into(),
        },
    )?;
    tracing::info!("agent stopped");
    Ok(())
}

struct Engine {
    config: Arc<Config>,
    log: Arc<EventLog>,
    clock: Arc<dyn Clock>,
    runbooks: CancellationToken,
    incidents: u32,
}

impl Engine {
    fn write(&self, event: &Event) {
        if let Err(e) = self.log.write(self.clock.wall(), event) {
            // Detection and failover go on; the operator must hear about it.
            tracing::error!(error = %e, event = event.name(), "event log write failed");
        }
    }

    fn handle(&mut self, detector: &mut Detector) {
        let outputs: Vec<Output> = detector.drain().collect();
        for o in outputs {
            match o {
                Output::Sensor {
                    sensor,
                    from,
                    to,
                    value,
                    reason,
                } => {
                    let s = &self.config.sensors[sensor as usize];
                    self.write(&Event::SensorState {
                        sensor: s.id.clone(),
                        zone: self.config.zones[s.zone].id.clone(),
                        from: from.as_str(),
                        to: to.as_str(),
                        value,
                        reason: reason.as_str(),
                    });
                }
                Output::Zone {
                    zone,
                    from,
                    to,
                    evidence,
                } => {
                    let evidence = evidence
                        .iter()
                        .map(|e| EvidenceItem {
                            sensor: self.config.sensors[e.sensor as usize].id.clone(),
                            state: e.state.as_str(),
                            value: e.value,
                            reason: e.reason.as_str(),
                        })
                        .collect();
                    tracing::warn!(zone = %self.config.zones[zone as usize].id, from = from.as_str(), to = to.as_str(), "zone level changed");
                    self.write(&Event::ZoneLevel {
                        zone: self.config.zones[zone as usize].id.clone(),
                        from: from.as_str(),
                        to: to.as_str(),
                        evidence,
                    });
                }
                Output::Critical { zone, cause } => self.start_runbook(zone as usize, cause),
            }
        }
    }

    fn start_runbook(&mut self, zone: usize, cause: Cause) {
        self.incidents += 1;
        let z = &self.config.zones[zone];
        let ts = crate::events::format_ts(self.clock.wall());
        let compact: String = ts.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let incident = format!("{}-{}-{}", z.id, compact, self.incidents);
        let rb = &self.config.runbooks[z.runbook];
        let dry_run = self.config.agent.dry_run;
        // Written (and fsync'd) before the first step is dispatched.
        self.write(&Event::RunbookStarted {
            runbook: rb.name.clone(),
            zone: z.id.clone(),
            incident: incident.clone(),
            cause: cause.as_str(),
            dry_run,
            resumed: false,
        });
        let vars = TemplateVars {
            agent: self.config.agent.name.clone(),
            zone: z.id.clone(),
            level: "critical".into(),
            incident: incident.clone(),
            cause: cause.as_str().into(),
            runbook: rb.name.clone(),
        };
        let (config, log, clock, stop) = (
            self.config.clone(),
            self.log.clone(),
            self.clock.clone(),
            self.runbooks.clone(),
        );
        tokio::spawn(async move {
            let id = vars.incident.clone();
            tokio::select! {
                _ = stop.cancelled() => tracing::warn!(incident = %id, "agent stopping with a runbook in progress"),
                _ = run_incident(config, log, clock, zone, vars, dry_run) => {}
            }
        });
    }
}

async fn run_incident(
    config: Arc<Config>,
    log: Arc<EventLog>,
    clock: Arc<dyn Clock>,
    zone: usize,
    vars: TemplateVars,
    dry_run: bool,
) {
    let write = |e: &Event| {
        if let Err(err) = log.write(clock.wall(), e) {
            tracing::error!(error = %err, event = e.name(), "event log write failed");
        }
    };
    let z = &config.zones[zone];
    let rb = &config.runbooks[z.runbook];
    let started = tokio::time::Instant::now();
    let mut reasons = Vec::new();
    let mut all_ok = true;
    for step in &rb.steps {
        let report = runbook::run_step(step, &vars, dry_run).await;
        write(&Event::StepFinished {
            runbook: rb.name.clone(),
            incident: vars.incident.clone(),
            step: step.name.clone(),
            step_type: step.action.type_name(),
            ok: report.ok,
            attempts: report.attempts,
            elapsed_ms: report.elapsed.as_millis() as u64,
            error: report.error.clone(),
            verified: report.verified,
            detail: report.detail.clone(),
        });
        if !report.ok {
            all_ok = false;
            reasons.push(format!(
                "step `{}` failed: {}",
                step.name,
                report.error.as_deref().unwrap_or("unknown error")
            ));
        } else if !report.verified {
            reasons.push(format!(
                "step `{}` was not verified{}",
                step.name,
                if dry_run { " (dry run)" } else { "" }
            ));
        }
        if runbook::aborts(step, &report) {
            reasons.push("runbook aborted".into());
            break;
        }
    }
    let elapsed = started.elapsed();
    write(&Event::RunbookFinished {
        runbook: rb.name.clone(),
        incident: vars.incident.clone(),
        ok: all_ok,
        elapsed_ms: elapsed.as_millis() as u64,
        zone: z.id.clone(),
    });
    if let Some(budget) = rb.budget {
        if elapsed > budget {
            tracing::warn!(runbook = %rb.name, ?elapsed, ?budget, "runbook overran its budget");
        }
    }
    if reasons.is_empty() {
        tracing::warn!(zone = %z.id, incident = %vars.incident, "SAFE TO CUT POWER");
        write(&Event::SafeToCutPower {
            zone: z.id.clone(),
            incident: vars.incident.clone(),
        });
    } else {
        tracing::error!(zone = %z.id, incident = %vars.incident, reasons = ?reasons, "NOT safe to cut power");
        write(&Event::NotSafeToCutPower {
            zone: z.id.clone(),
            incident: vars.incident.clone(),
            reasons,
        });
    }
}
