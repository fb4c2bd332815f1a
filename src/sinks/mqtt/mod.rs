//! MQTT status (`[telemetry.mqtt]`): what the agent sees, published on the broker of one of
//! its MQTT sources, for dashboards and building systems that only speak MQTT.
//!
//! Topics (`<prefix>` from the config):
//! - `<prefix>/status`: `online` (retained) once connected; `offline` (retained) as the last
//!   will, and published on a clean shutdown.
//! - `<prefix>/zones/<zone>`: retained JSON `{zone, level, evidence, incident,
//!   safe_to_cut_power, ts}`, on every zone level change and every verdict, and all of them
//!   again on every (re)connect, so a broker that lost its retained messages gets them back.
//! - `<prefix>/feeds/<feed>`: retained JSON `{id, description, zones, safe_to_cut,
//!   waiting_for, loads, ts}` of each `[[feeds]]` power feed, derived from the zone
//!   documents whenever a verdict changes, and again on every (re)connect.
//! - `<prefix>/events`: every event log line, QoS 1, not retained.
//!
//! Design: the publisher is fed only events (every event goes through `Shared::write`, the
//! zone level changes from `Engine::handle` included) plus one snapshot of every zone from
//! the engine after it has resumed open incidents; it derives the zone documents itself, so
//! the engine does no extra work per change. The engine's end never waits (`try_send`); a
//! full queue is counted in `firebreak_telemetry_dropped_total{reason="mqtt_queue_full"}`.
//! While the broker is away, events wait in a bounded backlog (overflow counted as
//! `mqtt_backlog_full`); zone state is never dropped, only the latest of each is kept.

pub mod config;

use crate::config::{Config, MqttSource};
use crate::detect::Cause;
use crate::events::Stage;
use crate::events::{Event, EvidenceItem};
use crate::sources::mqtt::{options, MqttError};
use crate::sources::Jitter;
use rumqttc::{AsyncClient, ClientError, Event as MqttEvent, LastWill, Outgoing, Packet, QoS};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Capacity of the queue from the engine.
pub const QUEUE: usize = 1024;
/// Events kept while the broker is unreachable.
pub const BACKLOG: usize = 1024;
/// Requests rumqttc buffers between this task and its connection.
const REQUESTS: usize = 256;
const BACKOFF_START: Duration = Duration::from_millis(250);
/// How often unsent zone documents and backlog are retried while connected.
const RETRY: Duration = Duration::from_millis(250);
/// How long a shutdown may spend handing over the last events and `offline`.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// What the publisher needs, resolved from the config.
#[derive(Debug, Clone)]
pub struct StatusConfig {
    pub agent: String,
    pub prefix: String,
    /// The MQTT source whose broker (and credentials, TLS) is used.
    pub source_name: String,
    pub source: MqttSource,
    /// Zone ids by index.
    pub zones: Vec<String>,
    /// The power map.
    pub feeds: Vec<crate::config::Feed>,
}

impl StatusConfig {
    /// `None` when `[telemetry.mqtt]` is not configured.
    pub fn from_config(config: &Config) -> Option<StatusConfig> {
        let t = config.telemetry.mqtt.as_ref()?;
        let src = config.sources.get(t.source)?;
        let crate::config::SourceSpec::Mqtt(m) = &src.spec else {
            return None;
        };
        Some(StatusConfig {
            agent: config.agent.name.clone(),
            prefix: t.prefix.clone(),
            source_name: src.name.clone(),
            source: m.clone(),
            zones: config.zones.iter().map(|z| z.id.clone()).collect(),
            feeds: config.feeds.clone(),
        })
    }

    pub fn status_topic(&self) -> String {
        format!("{}/status", self.prefix)
    }

    pub fn zone_topic(&self, zone: &str) -> String {
        format!("{}/zones/{zone}", self.prefix)
    }

    pub fn feed_topic(&self, feed: &str) -> String {
        format!("{}/feeds/{feed}", self.prefix)
    }

    pub fn events_topic(&self) -> String {
        format!("{}/events", self.prefix)
    }
}

/// One zone's retained document.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ZoneStatus {
    pub zone: String,
    pub level: &'static str,
    pub evidence: Vec<EvidenceItem>,
    /// The open incident, if any.
    pub incident: Option<String>,
    pub safe_to_cut_power: bool,
    /// When the document last changed (RFC 3339, UTC).
    pub ts: String,
    /// Staged response: seconds until the zone is expected to lose power, if known.
    pub seconds_to_power_loss: Option<f64>,
    /// `ups_runtime` or `temperature_trend` (`None` while unknown).
    pub power_loss_basis: Option<&'static str>,
    /// The zone's prepare runbook in this incident, if one started.
    pub prepare: Option<PrepareStatus>,
}

/// A zone's prepare runbook, as the status documents show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PrepareStatus {
    pub incident: String,
    pub runbook: String,
    pub running: bool,
    pub undone: bool,
}

impl ZoneStatus {
    pub fn new(zone: &str) -> ZoneStatus {
        ZoneStatus {
            zone: zone.to_string(),
            level: "normal",
            evidence: Vec::new(),
            incident: None,
            safe_to_cut_power: false,
            ts: crate::events::format_ts(crate::clock::wall_now()),
            seconds_to_power_loss: None,
            power_loss_basis: None,
            prepare: None,
        }
    }
}

/// What the engine hands over.
#[derive(Debug)]
pub enum StatusMsg {
    /// Every zone as the engine knows it (after resuming open incidents).
    Zones(Vec<ZoneStatus>),
    /// One event and its event log line.
    Event { event: Box<Event>, line: String },
    /// A zone's expected power loss changed (sent by the engine only on a real change,
    /// not on every tick).
    Power {
        zone: String,
        seconds: Option<f64>,
        basis: Option<&'static str>,
    },
    /// `[cluster]`: a zone's incident finished on a peer (this agent wrote no event for
    /// it): its id and verdict.
    Verdict {
        zone: String,
        incident: String,
        safe: bool,
    },
}

/// Applies one event to the zone documents; returns the zone it changed. Drills (incident
/// ids `drill-...`, cause `drill`) never touch a zone's incident or verdict.
pub fn apply(zones: &mut [ZoneStatus], event: &Event, ts: &str) -> Option<usize> {
    let find = |zones: &[ZoneStatus], id: &str| zones.iter().position(|z| z.zone == id);
    let zi = match event {
        Event::ZoneLevel {
            zone, to, evidence, ..
        } => {
            let zi = find(zones, zone)?;
            zones[zi].level = to.as_str();
            zones[zi].evidence = evidence.clone();
            zi
        }
        Event::RunbookStarted {
            zone,
            incident,
            runbook,
            stage,
            ..
        } if *stage == Stage::Prepare => {
            let zi = find(zones, zone)?;
            zones[zi].prepare = Some(PrepareStatus {
                incident: incident.clone(),
                runbook: runbook.clone(),
                running: true,
                undone: false,
            });
            zi
        }
        Event::RunbookFinished {
            zone,
            incident,
            runbook,
            ..
        } => {
            let zi = find(zones, zone)?;
            let p = zones[zi].prepare.as_mut()?;
            if p.incident != *incident || p.runbook != *runbook || !p.running {
                return None;
            }
            p.running = false;
            zi
        }
        Event::PrepareUndone { zone, incident, .. } => {
            let zi = find(zones, zone)?;
            let p = zones[zi].prepare.as_mut()?;
            if p.incident != *incident {
                return None;
            }
            p.undone = true;
            zi
        }
        Event::RunbookStarted {
            zone,
            incident,
            cause,
            stage,
            ..
        } if *cause != Cause::Drill && *stage == Stage::Failover => {
            let zi = find(zones, zone)?;
            zones[zi].incident = Some(incident.clone());
            zones[zi].safe_to_cut_power = false;
            zi
        }
        Event::SafeToCutPower { zone, incident, .. } => {
            let zi = find(zones, zone)?;
            zones[zi].incident = Some(incident.clone());
            zones[zi].safe_to_cut_power = true;
            zi
        }
        Event::NotSafeToCutPower { zone, incident, .. } => {
            let zi = find(zones, zone)?;
            zones[zi].incident = Some(incident.clone());
            zones[zi].safe_to_cut_power = false;
            zi
        }
        Event::IncidentReset { zone, .. } => {
            let zi = find(zones, zone)?;
            zones[zi].incident = None;
            zones[zi].prepare = None;
            zones[zi].safe_to_cut_power = false;
            zi
        }
        _ => return None,
    };
    zones[zi].ts = ts.to_string();
    Some(zi)
}

/// The publisher's self-metrics.
#[derive(Debug, Default)]
pub struct StatusStats {
    /// `firebreak_telemetry_dropped_total{reason="mqtt_queue_full"}`.
    pub queue_full: AtomicU64,
    /// `firebreak_telemetry_dropped_total{reason="mqtt_backlog_full"}`.
    pub backlog_full: AtomicU64,
    /// Messages handed to the broker connection.
    pub published: AtomicU64,
    pub connected: AtomicBool,
}

/// The engine's end of the queue: never blocks.
#[derive(Debug, Clone)]
pub struct StatusTx {
    tx: mpsc::Sender<StatusMsg>,
    stats: Arc<StatusStats>,
}

impl StatusTx {
    pub fn send(&self, msg: StatusMsg) {
        if self.tx.try_send(msg).is_err() {
            self.stats.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends an event with the line the event log got for it.
    pub fn event(&self, agent: &str, ts: SystemTime, event: &Event) {
        self.send(StatusMsg::Event {
            event: Box::new(event.clone()),
            line: crate::events::render(agent, ts, event),
        });
    }
}

/// A running publisher.
pub struct StatusPublisher {
    tx: StatusTx,
    stats: Arc<StatusStats>,
    task: JoinHandle<()>,
}

impl StatusPublisher {
    /// Builds the client options (reads the source's password and TLS files; does not
    /// connect) and spawns the publisher. On `shutdown` it sends what it holds, publishes
    /// `offline` and disconnects, within [`STOP_GRACE`].
    pub fn start(cfg: StatusConfig, shutdown: CancellationToken) -> Result<Self, MqttError> {
        let mut opts = options(&cfg.source_name, &cfg.source)?;
        // Its own client id: the source's subscription must not be taken over. The pid keeps a
        // restarted agent from taking over (and firing the will of) a session of its own.
        opts.set_client_id(format!(
            "{}-status-{}",
            cfg.source.client_id,
            std::process::id()
        ));
        opts.set_last_will(LastWill::new(
            cfg.status_topic(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut eventloop) = AsyncClient::new(opts, REQUESTS);
        let mut net = rumqttc::NetworkOptions::new();
        net.set_connection_timeout(cfg.source.timeout.as_secs().max(1));
        eventloop.set_network_options(net);
        let stats = Arc::new(StatusStats::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let (up_tx, up_rx) = watch::channel(0u64);
        let conn = {
            let (stats, name, max) = (
                stats.clone(),
                cfg.source_name.clone(),
                cfg.source.reconnect_max,
            );
            tokio::spawn(async move {
                let mut jitter = Jitter::new(std::process::id() as u64);
                let mut backoff = BACKOFF_START;
                let mut connects = 0u64;
                let mut down_logged = false;
                loop {
                    match eventloop.poll().await {
                        Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                            connects += 1;
                            backoff = BACKOFF_START;
                            down_logged = false;
                            stats.connected.store(true, Ordering::Relaxed);
                            tracing::info!(source = %name, "MQTT status publisher connected");
                            let _ = up_tx.send(connects);
                        }
                        Ok(MqttEvent::Outgoing(Outgoing::Disconnect)) => break,
                        Ok(_) => {}
                        Err(e) => {
                            stats.connected.store(false, Ordering::Relaxed);
                            if !down_logged {
                                tracing::warn!(source = %name, error = %e, "MQTT status publisher cannot reach the broker; retrying");
                                down_logged = true;
                            }
                            crate::clock::sleep(backoff.mul_f64(jitter.next_factor())).await;
                            backoff = (backoff * 2).min(max.max(BACKOFF_START));
                        }
                    }
                }
            })
        };
        let publisher = Publisher {
            zones: cfg.zones.iter().map(|z| ZoneStatus::new(z)).collect(),
            dirty: vec![false; cfg.zones.len()],
            seeded: false,
            backlog: VecDeque::new(),
            online_sent: false,
            feeds: Vec::new(),
            feeds_dirty: Vec::new(),
            cfg,
            client,
            stats: stats.clone(),
        };
        let task = tokio::spawn(publisher.run(rx, up_rx, conn, shutdown));
        Ok(StatusPublisher {
            tx: StatusTx {
                tx,
                stats: stats.clone(),
            },
            stats,
            task,
        })
    }

    pub fn sender(&self) -> StatusTx {
        self.tx.clone()
    }

    pub fn stats(&self) -> Arc<StatusStats> {
        self.stats.clone()
    }

    /// Waits until the publisher has ended (after `shutdown`).
    pub async fn join(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

struct Publisher {
    cfg: StatusConfig,
    client: AsyncClient,
    stats: Arc<StatusStats>,
    zones: Vec<ZoneStatus>,
    /// Zones whose document has not been handed to the connection since it changed.
    dirty: Vec<bool>,
    /// Zone documents are published only once the engine's snapshot has arrived.
    seeded: bool,
    /// Event lines not yet handed to the connection.
    backlog: VecDeque<String>,
    /// `online` handed over on the current connection.
    online_sent: bool,
    /// Each `[[feeds]]` power feed's document, derived from the zone documents.
    feeds: Vec<FeedDoc>,
    feeds_dirty: Vec<bool>,
}

/// One power feed's retained document.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct FeedDoc {
    #[serde(flatten)]
    state: crate::feeds::FeedState,
    ts: String,
}

impl Publisher {
    /// Re-derives the feed documents from the zone verdicts; marks those that changed.
    fn update_feeds(&mut self) {
        let zone_ids: Vec<&str> = self.cfg.zones.iter().map(String::as_str).collect();
        let safe: Vec<bool> = self
            .zones
            .iter()
            .map(|z| z.incident.is_some() && z.safe_to_cut_power)
            .collect();
        let states = crate::feeds::evaluate_feeds(&self.cfg.feeds, &zone_ids, &safe);
        for (i, state) in states.into_iter().enumerate() {
            if self.feeds.get(i).is_some_and(|d| d.state == state) {
                continue;
            }
            let doc = FeedDoc {
                state,
                ts: crate::events::format_ts(crate::clock::wall_now()),
            };
            if i < self.feeds.len() {
                self.feeds[i] = doc;
                self.feeds_dirty[i] = true;
            } else {
                self.feeds.push(doc);
                self.feeds_dirty.push(true);
            }
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<StatusMsg>,
        mut up: watch::Receiver<u64>,
        conn: JoinHandle<()>,
        shutdown: CancellationToken,
    ) {
        let mut retry = tokio::time::interval(RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                msg = rx.recv() => match msg {
                    Some(m) => {
                        self.take(m);
                        self.update_feeds();
                    }
                    None => break,
                },
                changed = up.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    // A new connection: the broker may have lost everything retained.
                    self.online_sent = false;
                    self.dirty.iter_mut().for_each(|d| *d = true);
                    self.feeds_dirty.iter_mut().for_each(|d| *d = true);
                }
                _ = retry.tick() => {}
            }
            self.flush();
        }
        // Take what is still queued (the engine's last events), then hand it over, say
        // `offline` and disconnect, bounded.
        while let Ok(m) = rx.try_recv() {
            self.take(m);
        }
        self.update_feeds();
        let stop = async {
            let until = crate::clock::now() + STOP_GRACE;
            while crate::clock::now() < until {
                if self.stats.connected.load(Ordering::Relaxed) {
                    self.flush();
                    if self.backlog.is_empty()
                        && !self.dirty.iter().any(|d| *d)
                        && !self.feeds_dirty.iter().any(|d| *d)
                    {
                        break;
                    }
                }
                crate::clock::sleep(Duration::from_millis(20)).await;
            }
            let _ = self
                .client
                .publish(self.cfg.status_topic(), QoS::AtLeastOnce, true, "offline")
                .await;
            let _ = self.client.disconnect().await;
        };
        let _ = tokio::time::timeout(STOP_GRACE, stop).await;
        // The connection ends once DISCONNECT is written; bounded in case it never is.
        let abort = conn.abort_handle();
        if tokio::time::timeout(STOP_GRACE, conn).await.is_err() {
            abort.abort();
        }
        self.stats.connected.store(false, Ordering::Relaxed);
    }

    fn take(&mut self, msg: StatusMsg) {
        match msg {
            StatusMsg::Zones(zones) => {
                for z in zones {
                    if let Some(i) = self.zones.iter().position(|x| x.zone == z.zone) {
                        self.zones[i] = z;
                        self.dirty[i] = true;
                    }
                }
                self.seeded = true;
            }
            StatusMsg::Event { event, line } => {
                let ts = crate::events::format_ts(crate::clock::wall_now());
                if let Some(zi) = apply(&mut self.zones, &event, &ts) {
                    self.dirty[zi] = true;
                }
                if self.backlog.len() >= BACKLOG {
                    self.backlog.pop_front();
                    self.stats.backlog_full.fetch_add(1, Ordering::Relaxed);
                }
                self.backlog.push_back(line);
            }
            StatusMsg::Power {
                zone,
                seconds,
                basis,
            } => {
                if let Some(zi) = self.zones.iter().position(|z| z.zone == zone) {
                    self.zones[zi].seconds_to_power_loss = seconds;
                    self.zones[zi].power_loss_basis = basis;
                    self.zones[zi].ts = crate::events::format_ts(crate::clock::wall_now());
                    self.dirty[zi] = true;
                }
            }
            StatusMsg::Verdict {
                zone,
                incident,
                safe,
            } => {
                if let Some(zi) = self.zones.iter().position(|z| z.zone == zone) {
                    self.zones[zi].incident = Some(incident);
                    self.zones[zi].safe_to_cut_power = safe;
                    self.zones[zi].ts = crate::events::format_ts(crate::clock::wall_now());
                    self.dirty[zi] = true;
                }
            }
        }
    }

    /// Hands whatever is pending to the connection, in order: `online`, zone documents,
    /// events. Stops at the first full request queue; the retry tick goes on from there.
    fn flush(&mut self) {
        if !self.stats.connected.load(Ordering::Relaxed) {
            return;
        }
        if !self.online_sent {
            if !self.publish(self.cfg.status_topic(), true, b"online".to_vec()) {
                return;
            }
            self.online_sent = true;
        }
        if self.seeded {
            for zi in 0..self.zones.len() {
                if !self.dirty[zi] {
                    continue;
                }
                let body = serde_json::to_vec(&self.zones[zi]).unwrap_or_default();
                if !self.publish(self.cfg.zone_topic(&self.zones[zi].zone), true, body) {
                    return;
                }
                self.dirty[zi] = false;
            }
            for fi in 0..self.feeds.len() {
                if !self.feeds_dirty[fi] {
                    continue;
                }
                let body = serde_json::to_vec(&self.feeds[fi]).unwrap_or_default();
                if !self.publish(self.cfg.feed_topic(&self.feeds[fi].state.id), true, body) {
                    return;
                }
                self.feeds_dirty[fi] = false;
            }
        }
        while let Some(line) = self.backlog.front() {
            let body = line.clone().into_bytes();
            if !self.publish(self.cfg.events_topic(), false, body) {
                return;
            }
            self.backlog.pop_front();
        }
    }

    fn publish(&self, topic: String, retain: bool, body: Vec<u8>) -> bool {
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, body)
        {
            Ok(()) => {
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(ClientError::TryRequest(_)) => false,
            Err(e) => {
                tracing::debug!(error = %e, "MQTT status publish not queued");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Level, Reason, SensorState, ZoneLevel};

    fn zones() -> Vec<ZoneStatus> {
        vec![ZoneStatus::new("b3"), ZoneStatus::new("b4")]
    }

    #[test]
    fn a_confirmed_fire_then_a_verdict_then_a_reset_shape_the_zone_document() {
        let mut z = zones();
        let level = Event::ZoneLevel {
            zone: "b3".into(),
            from: ZoneLevel::Alarm,
            to: ZoneLevel::Critical,
            evidence: vec![EvidenceItem {
                sensor: "b3.offgas.1".into(),
                state: SensorState::Critical,
                value: Some(250.0),
                reason: Reason::Above(Level::Critical),
                common_mode: false,
            }],
        };
        assert_eq!(apply(&mut z, &level, "t1"), Some(0));
        let started = Event::RunbookStarted {
            runbook: "r".into(),
            zone: "b3".into(),
            incident: "b3-1".into(),
            cause: Cause::Fire,
            dry_run: false,
            resumed: false,
            stage: Stage::Failover,
        };
        assert_eq!(apply(&mut z, &started, "t2"), Some(0));
        assert_eq!(z[0].incident.as_deref(), Some("b3-1"));
        assert!(!z[0].safe_to_cut_power);
        let safe = Event::SafeToCutPower {
            zone: "b3".into(),
            incident: "b3-1".into(),
            dry_run_steps: Vec::new(),
        };
        assert_eq!(apply(&mut z, &safe, "t3"), Some(0));
        let doc = serde_json::to_value(&z[0]).unwrap();
        assert_eq!(doc["level"], "critical");
        assert_eq!(doc["safe_to_cut_power"], true);
        assert_eq!(doc["incident"], "b3-1");
        assert_eq!(doc["evidence"][0]["sensor"], "b3.offgas.1");
        assert_eq!(doc["ts"], "t3");
        assert_eq!(
            z[1],
            ZoneStatus {
                ts: z[1].ts.clone(),
                ..ZoneStatus::new("b4")
            }
        );
        let reset = Event::IncidentReset {
            zone: "b3".into(),
            incident: "b3-1".into(),
            by: "op".into(),
        };
        apply(&mut z, &reset, "t4");
        assert_eq!(z[0].incident, None);
        assert!(!z[0].safe_to_cut_power);
    }

    #[test]
    fn a_prepare_shows_in_the_zone_document_until_the_incident_is_reset() {
        let mut z = zones();
        let started = Event::RunbookStarted {
            runbook: "prep".into(),
            zone: "b3".into(),
            incident: "b3-1".into(),
            cause: Cause::Fire,
            dry_run: false,
            resumed: false,
            stage: Stage::Prepare,
        };
        assert_eq!(apply(&mut z, &started, "t1"), Some(0));
        assert_eq!(
            z[0].prepare,
            Some(PrepareStatus {
                incident: "b3-1".into(),
                runbook: "prep".into(),
                running: true,
                undone: false
            })
        );
        assert_eq!(z[0].incident, None, "a prepare is not a failover");
        let finished = Event::RunbookFinished {
            runbook: "prep".into(),
            incident: "b3-1".into(),
            ok: true,
            elapsed_ms: 5,
            zone: "b3".into(),
        };
        assert_eq!(apply(&mut z, &finished, "t2"), Some(0));
        assert!(!z[0].prepare.as_ref().unwrap().running);
        let undone = Event::PrepareUndone {
            zone: "b3".into(),
            incident: "b3-1".into(),
            by: crate::events::UndoneBy::Cooldown,
            ok: true,
        };
        assert_eq!(apply(&mut z, &undone, "t3"), Some(0));
        let doc = serde_json::to_value(&z[0]).unwrap();
        assert_eq!(doc["prepare"]["undone"], true);
        assert_eq!(doc["prepare"]["incident"], "b3-1");
        assert!(doc["seconds_to_power_loss"].is_null());
        assert!(doc["power_loss_basis"].is_null());
        let reset = Event::IncidentReset {
            zone: "b3".into(),
            incident: "b3-1".into(),
            by: "op".into(),
        };
        apply(&mut z, &reset, "t4");
        assert_eq!(z[0].prepare, None);
    }

    #[test]
    fn drills_and_unrelated_events_leave_zones_alone() {
        let mut z = zones();
        let drill = Event::RunbookStarted {
            runbook: "r".into(),
            zone: "b3".into(),
            incident: "drill-b3-1".into(),
            cause: Cause::Drill,
            dry_run: true,
            resumed: false,
            stage: Stage::Failover,
        };
        assert_eq!(apply(&mut z, &drill, "t"), None);
        let other = Event::AgentStopped { reason: "x".into() };
        assert_eq!(apply(&mut z, &other, "t"), None);
        let unknown = Event::IncidentReset {
            zone: "nowhere".into(),
            incident: "i".into(),
            by: "op".into(),
        };
        assert_eq!(apply(&mut z, &unknown, "t"), None);
        assert_eq!(z[0].incident, None);
    }
}
