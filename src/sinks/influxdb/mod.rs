//! The InfluxDB v2 telemetry sink: samples, zone levels and events as line protocol, in
//! batches, with an on-disk spool so that an outage of InfluxDB (or of the network to it)
//! loses nothing.
//!
//! ```text
//! engine --try_send--> [queue: Telemetry] --> intake: format, batch, gzip
//!                                                  |  [queue: Batch] (full: to the spool)
//!                                                  v
//!                                   writer: POST /api/v2/write?precision=ms
//!                                     2xx: done | 5xx, timeout, refused, 401/403, 429:
//!                                     spool + backoff | other 4xx: drop, counted
//!                                   and, while InfluxDB answers, replay of the spool
//!                                   (alternating with live batches, oldest first)
//! ```
//!
//! Codes (also in docs/operations.md): `firebreak_sensor` `state` is ok 0, warn 1, alarm 2,
//! critical 3, stale 4, fault 5; `firebreak_zone` `level` is normal 0, warning 1,
//! alarm 2, critical 3.
//!
//! The detection path never waits here: [`TelemetryTx::send`] is a `try_send` that counts
//! a `queue_full` drop when the queue is full.

pub mod client;
pub mod config;
pub mod line;
pub mod spool;

use crate::config::Config;
use crate::detect::rise::Nanos;
use crate::detect::{SensorState, ZoneLevel};
use crate::events::Event;
use bytes::Bytes;
use client::{Client, ClientError, Outcome};
use spool::{Lane, Spool};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use line::{level_code, state_code, SensorName};

/// One thing to record, compact: names are looked up by index when it is formatted.
/// A `Sensor` record allocates nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Telemetry {
    /// One observed sample and the sensor's state after it.
    Sensor {
        sensor: u32,
        ts_ms: i64,
        value: Option<f64>,
        state: SensorState,
    },
    /// A zone's new level.
    Zone {
        zone: u32,
        ts_ms: i64,
        level: ZoneLevel,
    },
    /// One event as written to the event log.
    Event {
        name: &'static str,
        ts_ms: i64,
        /// The event log line (JSON).
        detail: String,
    },
}

/// Why telemetry was dropped: the `reason` label of `firebreak_telemetry_dropped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The queue from the engine was full.
    QueueFull = 0,
    /// `spool_max` reached: the oldest sensor data went.
    SpoolFull = 1,
    /// InfluxDB refused the batch (a 4xx other than 401, 403, 429).
    Rejected = 2,
    /// The spool could not be written (disk full, I/O error) or had a corrupt record.
    SpoolError = 3,
}

impl DropReason {
    pub const ALL: [DropReason; 4] = [
        DropReason::QueueFull,
        DropReason::SpoolFull,
        DropReason::Rejected,
        DropReason::SpoolError,
    ];
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }
}

/// Failed write requests by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Connection refused, timeout, 5xx: spooled and retried.
    Unavailable = 0,
    /// 401/403: spooled and retried; the operator has to fix the token.
    Auth = 1,
    /// 429: spooled, retried after `Retry-After` or the backoff.
    RateLimited = 2,
    /// Another 4xx: the batch is dropped.
    Rejected = 3,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 4] = [
        ErrorKind::Unavailable,
        ErrorKind::Auth,
        ErrorKind::RateLimited,
        ErrorKind::Rejected,
    ];
    pub fn as_str(self) -> &'static str {
        crate::names::name_of(&self)
    }
}

/// The sink's self-metrics, plain atomics for the Prometheus exporter to read.
/// Counters only go up; `spool_bytes`, `spool_points` and `connected` are gauges.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records taken off the queue.
    pub received: AtomicU64,
    /// Points InfluxDB accepted (live and replayed).
    pub written: AtomicU64,
    /// Of `written`, points that came from the spool.
    pub replayed: AtomicU64,
    /// Points written to the spool.
    pub spooled: AtomicU64,
    /// `firebreak_telemetry_spool_bytes`.
    pub spool_bytes: AtomicU64,
    /// Points in the spool not yet sent.
    pub spool_points: AtomicU64,
    /// The last write request got a 2xx.
    pub connected: AtomicBool,
    dropped: [AtomicU64; 4],
    errors: [AtomicU64; 4],
}

impl Stats {
    pub fn dropped(&self, reason: DropReason, points: u64) {
        self.dropped[reason as usize].fetch_add(points, Ordering::Relaxed);
    }
    /// `firebreak_telemetry_dropped_total{reason}`.
    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Ordering::Relaxed)
    }
    fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
    }
    /// Failed write requests of one kind.
    pub fn error_count(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize].load(Ordering::Relaxed)
    }
}

/// The engine's end of the queue: never blocks.
#[derive(Debug, Clone)]
pub struct TelemetryTx {
    tx: mpsc::Sender<Telemetry>,
    stats: Arc<Stats>,
}

impl TelemetryTx {
    pub fn send(&self, t: Telemetry) {
        if self.tx.try_send(t).is_err() {
            self.stats.dropped(DropReason::QueueFull, 1);
        }
    }

    /// Sends an event with the line the event log got for it.
    pub fn event(&self, agent: &str, ts: SystemTime, event: &Event) {
        self.send(Telemetry::Event {
            name: event.name(),
            ts_ms: wall_ms(ts),
            detail: crate::events::render(agent, ts, event),
        });
    }
}

/// Milliseconds since the Unix epoch (negative before it).
pub fn wall_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Turns the monotonic sample clock into wall-clock milliseconds, with the offset between
/// the two taken once at start: samples keep their spacing even if the wall clock steps.
#[derive(Debug, Clone, Copy)]
pub struct WallFromMono {
    offset_ms: i64,
}

impl WallFromMono {
    pub fn new(wall: SystemTime, mono: Nanos) -> Self {
        WallFromMono {
            offset_ms: wall_ms(wall) - (mono / 1_000_000) as i64,
        }
    }
    pub fn ms(&self, mono: Nanos) -> i64 {
        self.offset_ms + (mono / 1_000_000) as i64
    }
}

/// Knobs with defaults that suit the agent; tests shorten them.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Lines per batch before the flush interval is up.
    pub batch_lines: usize,
    /// Capacity of the queue from the engine.
    pub queue: usize,
    /// Formatted batches waiting for the writer; more go straight to the spool.
    pub batches_in_flight: usize,
    pub request_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// On shutdown, how long the sink may go on sending before it spools the rest.
    pub shutdown_grace: Duration,
    /// Size of one spool segment file; `None`: spool_max / 16, between 64 KiB and 16 MiB.
    pub segment_bytes: Option<u64>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            batch_lines: 5000,
            queue: 65_536,
            batches_in_flight: 16,
            request_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(3),
            segment_bytes: None,
        }
    }
}

/// Everything the sink needs, resolved from the config (and the token file).
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub agent: String,
    pub url: String,
    pub org: String,
    pub bucket: String,
    pub token: Option<String>,
    pub flush_interval: Duration,
    pub spool_dir: PathBuf,
    pub spool_max: u64,
    /// By sensor index.
    pub sensors: Vec<SensorName>,
    /// By zone index.
    pub zones: Vec<String>,
    pub tuning: Tuning,
}

#[derive(Debug, thiserror::Error)]
pub enum InfluxError {
    #[error("telemetry.influxdb.token_file {path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot open the telemetry spool {path}: {source}")]
    Spool {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl SinkConfig {
    /// The sink's settings from `[telemetry.influxdb]`, or `None` when it is not configured.
    /// Reads the token file.
    pub fn from_config(config: &Config) -> Result<Option<SinkConfig>, InfluxError> {
        let Some(influx) = &config.telemetry.influxdb else {
            return Ok(None);
        };
        let token = match &influx.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| InfluxError::Token {
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        Ok(Some(SinkConfig {
            agent: config.agent.name.clone(),
            url: influx.url.clone(),
            org: influx.org.clone(),
            bucket: influx.bucket.clone(),
            token,
            flush_interval: influx.flush_interval,
            spool_dir: config.agent.state_dir.join("spool"),
            spool_max: influx.spool_max,
            sensors: config
                .sensors
                .iter()
                .map(|s| SensorName {
                    id: s.id.clone(),
                    zone: config.zones[s.zone].id.clone(),
                    kind: s.kind.as_str().to_string(),
                })
                .collect(),
            zones: config.zones.iter().map(|z| z.id.clone()).collect(),
            tuning: Tuning::default(),
        }))
    }
}

/// A running sink.
pub struct Sink {
    tx: TelemetryTx,
    stats: Arc<Stats>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sink {
    /// Opens the spool (recovering what a previous run left), then spawns the sink. On
    /// `shutdown` it flushes what it holds to InfluxDB, or to the spool once
    /// `shutdown_grace` is over, and ends.
    pub fn start(cfg: SinkConfig, shutdown: CancellationToken) -> Result<Sink, InfluxError> {
        let t = &cfg.tuning;
        let segment_bytes = t
            .segment_bytes
            .unwrap_or((cfg.spool_max / 16).clamp(64 << 10, 16 << 20));
        let stats = Arc::new(Stats::default());
        let spool = Spool::open(&cfg.spool_dir, cfg.spool_max, segment_bytes, stats.clone())
            .map_err(|source| InfluxError::Spool {
                path: cfg.spool_dir.clone(),
                source,
            })?;
        let spool = Arc::new(Mutex::new(spool));
        let client = Client::new(
            &cfg.url,
            &cfg.org,
            &cfg.bucket,
            cfg.token.as_deref(),
            t.request_timeout,
        )?;
        let (tx, rx) = mpsc::channel(t.queue.max(1));
        let (batch_tx, batch_rx) = mpsc::channel(t.batches_in_flight.max(1));
        let hard_stop = CancellationToken::new();
        let grace = t.shutdown_grace;
        let timer = {
            let (shutdown, hard_stop) = (shutdown.clone(), hard_stop.clone());
            tokio::spawn(async move {
                shutdown.cancelled().await;
                crate::clock::sleep(grace).await;
                hard_stop.cancel();
            })
        };
        let intake = Intake {
            rx,
            series: line::Series::new(&cfg.agent, &cfg.sensors, &cfg.zones),
            bufs: [Buf::default(), Buf::default()],
            batch_tx,
            spool: spool.clone(),
            stats: stats.clone(),
            batch_lines: t.batch_lines.max(1),
        };
        let writer = Writer {
            client,
            rx: batch_rx,
            spool,
            stats: stats.clone(),
            shutdown: shutdown.clone(),
            hard_stop,
            backoff_min: t.backoff_min,
            backoff_max: t.backoff_max.max(t.backoff_min),
            down: None,
        };
        let flush = cfg.flush_interval.max(Duration::from_millis(10));
        let writer = tokio::spawn(writer.run());
        let intake = tokio::spawn(intake.run(flush, shutdown));
        let timer_abort = timer.abort_handle();
        let tasks = vec![
            intake,
            tokio::spawn(async move {
                let _ = writer.await;
                timer_abort.abort();
            }),
            timer,
        ];
        Ok(Sink {
            tx: TelemetryTx {
                tx,
                stats: stats.clone(),
            },
            stats,
            tasks,
        })
    }

    pub fn sender(&self) -> TelemetryTx {
        self.tx.clone()
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Waits until the sink has ended (after `shutdown`).
    pub async fn join(self) {
        drop(self.tx);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Stops the sink at once, as a crash would: what is in memory is lost, what is in
    /// the spool stays.
    pub fn abort(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One gzip-compressed batch of line protocol.
#[derive(Debug)]
struct Batch {
    lane: Lane,
    lines: u32,
    body: Bytes,
}

#[derive(Default)]
struct Buf {
    text: String,
    lines: u32,
}

struct Intake {
    rx: mpsc::Receiver<Telemetry>,
    series: line::Series,
    bufs: [Buf; 2],
    batch_tx: mpsc::Sender<Batch>,
    spool: Arc<Mutex<Spool>>,
    stats: Arc<Stats>,
    batch_lines: usize,
}

/// Records handled per wake-up before the loop looks at the timer and shutdown again.
const INTAKE_BURST: usize = 1024;

impl Intake {
    async fn run(mut self, flush: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval_at(crate::clock::now() + flush, flush);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                t = self.rx.recv() => {
                    let Some(t) = t else { break };
                    self.take(t);
                    for _ in 1..INTAKE_BURST {
                        match self.rx.try_recv() {
                            Ok(t) => self.take(t),
                            Err(_) => break,
                        }
                    }
                }
                _ = ticker.tick() => {
                    self.flush(Lane::Events);
                    self.flush(Lane::Data);
                }
            }
        }
        // What the engine sent before it stopped is still owed to InfluxDB.
        self.rx.close();
        while let Ok(t) = self.rx.try_recv() {
            self.take(t);
        }
        self.flush(Lane::Events);
        self.flush(Lane::Data);
    }

    fn take(&mut self, t: Telemetry) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let lane = match t {
            Telemetry::Event { .. } => Lane::Events,
            _ => Lane::Data,
        };
        let buf = &mut self.bufs[lane as usize];
        if self.series.write(&mut buf.text, &t) {
            buf.lines += 1;
        }
        if buf.lines as usize >= self.batch_lines {
            self.flush(lane);
        }
    }

    fn flush(&mut self, lane: Lane) {
        let buf = &mut self.bufs[lane as usize];
        if buf.lines == 0 {
            return;
        }
        let lines = std::mem::take(&mut buf.lines);
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(buf.text.len() / 4),
            flate2::Compression::fast(),
        );
        // Writing into a Vec cannot fail.
        let _ = gz.write_all(buf.text.as_bytes());
        let body = Bytes::from(gz.finish().unwrap_or_default());
        buf.text.clear();
        let batch = Batch { lane, lines, body };
        match self.batch_tx.try_send(batch) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b)) => {
                // The writer is busy (a slow or hanging InfluxDB): keep the batch on disk
                // rather than hold up the queue from the engine.
                spool_batch(&self.spool, &self.stats, b);
            }
        }
    }
}

fn spool_batch(spool: &Mutex<Spool>, stats: &Stats, b: Batch) {
    let mut spool = spool.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = spool.append(b.lane, b.lines, &b.body) {
        stats.dropped(DropReason::SpoolError, b.lines as u64);
        log_spool_error(&e, b.lines);
    }
}

/// While the disk is full every batch fails: log the first failure, then at most one line
/// every 30 s with the number of batches dropped meanwhile (the counter has them all).
fn log_spool_error(e: &std::io::Error, lines: u32) {
    static LAST: Mutex<(Option<Instant>, u64)> = Mutex::new((None, 0));
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let now = crate::clock::now();
    if last
        .0
        .is_some_and(|t| now.duration_since(t) < Duration::from_secs(30))
    {
        last.1 += 1;
        return;
    }
    let since = std::mem::take(&mut last.1);
    last.0 = Some(now);
    tracing::error!(error = %e, lines, more_batches_dropped_since_last_report = since, "cannot write the telemetry spool: batch dropped (all counted in firebreak_telemetry_dropped_total{{reason=\"spool_error\"}})");
}

struct Down {
    kind: ErrorKind,
    retry_at: Instant,
    backoff: Duration,
}

struct Writer {
    client: Client,
    rx: mpsc::Receiver<Batch>,
    spool: Arc<Mutex<Spool>>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    /// Cancelled `shutdown_grace` after `shutdown`: from then on everything goes to disk.
    hard_stop: CancellationToken,
    backoff_min: Duration,
    backoff_max: Duration,
    down: Option<Down>,
}

impl Writer {
    async fn run(mut self) {
        let mut held: Option<Batch> = None;
        let mut closed = false;
        let mut live_turn = true;
        loop {
            if held.is_none() && !closed {
                match self.rx.try_recv() {
                    Ok(b) => held = Some(b),
                    Err(mpsc::error::TryRecvError::Empty) => {}
                    Err(mpsc::error::TryRecvError::Disconnected) => closed = true,
                }
            }
            let stopping = self.shutdown.is_cancelled();
            let waiting = self
                .down
                .as_ref()
                .is_some_and(|d| d.retry_at > crate::clock::now());
            if waiting || self.hard_stop.is_cancelled() {
                // Not sending now: live batches go to disk until the next attempt.
                if let Some(b) = held.take() {
                    spool_batch(&self.spool, &self.stats, b);
                    continue;
                }
                if closed {
                    break;
                }
                let retry_at = self.down.as_ref().map(|d| d.retry_at);
                tokio::select! {
                    biased;
                    b = self.rx.recv() => match b {
                        Some(b) => held = Some(b),
                        None => closed = true,
                    },
                    _ = sleep_until_opt(retry_at), if !stopping => {}
                    _ = self.shutdown.cancelled(), if !stopping => {}
                }
                continue;
            }
            // The spool is replayed only while the agent runs; at shutdown it stays on disk.
            let replay = !stopping && {
                let s = self.spool.lock().unwrap_or_else(|p| p.into_inner());
                !s.is_empty()
            };
            if held.is_some() && (live_turn || !replay) {
                live_turn = false;
                let b = held.take().expect("held batch");
                match self.send(&b.body).await {
                    Outcome::Written => self.written(b.lines as u64, false),
                    Outcome::Retry {
                        kind,
                        after,
                        detail,
                    } => {
                        spool_batch(&self.spool, &self.stats, b);
                        self.failed(kind, after, &detail);
                    }
                    Outcome::Rejected { status, message } => {
                        self.rejected(&b.body, b.lines, status, &message)
                    }
                }
                continue;
            }
            live_turn = true;
            if replay {
                let rec = {
                    let mut s = self.spool.lock().unwrap_or_else(|p| p.into_inner());
                    match s.peek(Lane::Events) {
                        Ok(Some(r)) => Ok(Some(r)),
                        Ok(None) => s.peek(Lane::Data),
                        Err(e) => Err(e),
                    }
                };
                match rec {
                    Ok(Some(rec)) => {
                        let outcome = self.send(&rec.body).await;
                        let done = match outcome {
                            Outcome::Written => {
                                self.written(rec.lines as u64, true);
                                true
                            }
                            Outcome::Retry {
                                kind,
                                after,
                                detail,
                            } => {
                                self.failed(kind, after, &detail);
                                false
                            }
                            Outcome::Rejected { status, message } => {
                                self.rejected(&rec.body, rec.lines, status, &message);
                                true
                            }
                        };
                        if done {
                            let mut s = self.spool.lock().unwrap_or_else(|p| p.into_inner());
                            if let Err(e) = s.ack(&rec) {
                                tracing::error!(error = %e, "cannot update the telemetry spool cursor");
                            }
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the telemetry spool; retrying later");
                        self.failed(ErrorKind::Unavailable, None, "spool read error");
                        continue;
                    }
                }
            }
            if closed {
                break;
            }
            tokio::select! {
                biased;
                b = self.rx.recv() => match b {
                    Some(b) => held = Some(b),
                    None => closed = true,
                },
                _ = self.shutdown.cancelled(), if !stopping => {}
            }
        }
    }

    async fn send(&self, body: &Bytes) -> Outcome {
        tokio::select! {
            o = self.client.write(body.clone()) => o,
            _ = self.hard_stop.cancelled() => Outcome::Retry {
                kind: ErrorKind::Unavailable,
                after: None,
                detail: "shutdown grace period over".into(),
            },
        }
    }

    fn written(&mut self, lines: u64, replayed: bool) {
        self.stats.written.fetch_add(lines, Ordering::Relaxed);
        if replayed {
            self.stats.replayed.fetch_add(lines, Ordering::Relaxed);
        }
        self.stats.connected.store(true, Ordering::Relaxed);
        if let Some(d) = self.down.take() {
            let pending = self.stats.spool_points.load(Ordering::Relaxed);
            tracing::info!(
                after = d.kind.as_str(),
                spooled_points = pending,
                "InfluxDB accepts writes again; replaying the spool"
            );
        }
    }

    fn failed(&mut self, kind: ErrorKind, after: Option<Duration>, detail: &str) {
        self.stats.error(kind);
        self.stats.connected.store(false, Ordering::Relaxed);
        let backoff = match &self.down {
            None => {
                match kind {
                    ErrorKind::Auth => {
                        tracing::error!(error = %detail, "INFLUXDB REFUSED THE TOKEN: telemetry is spooled until telemetry.influxdb.token_file is fixed")
                    }
                    _ => {
                        tracing::warn!(kind = kind.as_str(), error = %detail, "InfluxDB write failed: spooling telemetry and retrying with backoff")
                    }
                }
                self.backoff_min
            }
            Some(d) => {
                tracing::debug!(kind = kind.as_str(), error = %detail, "InfluxDB write failed again");
                (d.backoff * 2).min(self.backoff_max)
            }
        };
        let wait = after.map_or(backoff, |a| a.max(backoff).min(self.backoff_max * 4));
        self.down = Some(Down {
            kind,
            retry_at: crate::clock::now() + wait,
            backoff,
        });
    }

    fn rejected(&mut self, body: &Bytes, lines: u32, status: u16, message: &str) {
        self.stats.error(ErrorKind::Rejected);
        self.stats.dropped(DropReason::Rejected, lines as u64);
        // The server answered: it is reachable.
        self.stats.connected.store(true, Ordering::Relaxed);
        self.down = None;
        let line = client::offending_line(body, message);
        tracing::error!(status, lines, error = %message, offending_line = %line, "InfluxDB refused a telemetry batch: dropped (counted in dropped{{reason=\"rejected\"}})");
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
