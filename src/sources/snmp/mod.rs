//! SNMP polling: one task per agent (a UPS network card speaking UPS-MIB, RFC 1628), every
//! sensor's OID in one GET per poll, v2c or v3 USM. An OID the agent does not have faults
//! that sensor only; an agent that does not answer, or refuses the credentials, fails the
//! poll and is retried with capped exponential backoff and jitter.

pub mod ber;
pub mod client;
pub mod config;
pub mod message;
pub mod usm;

use super::metrics::{ErrorKind, SourceMetrics};
use super::Jitter;
use crate::clock::Clock;
use crate::config::{Config, SensorInput, SourceSpec};
use crate::detect::rise::Nanos;
use crate::detect::{FaultKind, Reading, Sample};
use ber::Oid;
use client::{Client, Credentials, UsmUser};
use config::{Security, SnmpInput, SnmpSource};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BACKOFF_START: Duration = Duration::from_millis(250);

/// Why a source cannot start talking to its agent.
#[derive(Debug, thiserror::Error)]
pub enum SnmpSourceError {
    #[error("cannot read {key} {path}: {source}")]
    Secret {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key} {path} is empty")]
    EmptySecret { key: &'static str, path: PathBuf },
    #[error("{key} {path}: a USM password has 8 characters at least (RFC 3414)")]
    ShortPassword { key: &'static str, path: PathBuf },
}

/// One sensor read from the agent.
#[derive(Debug, Clone)]
pub struct SensorRead {
    pub sensor: u32,
    pub input: SnmpInput,
    /// Index of the sensor's OID in [`Poller::oids`].
    pub oid_index: usize,
    /// The sensor's `sentinels`: raw values meaning "no data".
    pub sentinels: Vec<f64>,
}

/// Everything one agent's poller needs.
pub struct Poller {
    pub name: String,
    pub cfg: SnmpSource,
    /// Every OID the sensors name, once each: one GET per poll asks for all of them.
    pub oids: Vec<Oid>,
    pub sensors: Vec<SensorRead>,
    pub metrics: Arc<SourceMetrics>,
}

/// The pollers of every SNMP source that has sensors.
pub fn pollers(config: &Config) -> Vec<Poller> {
    let mut out = Vec::new();
    for (si, source) in config.sources.iter().enumerate() {
        let SourceSpec::Snmp(cfg) = &source.spec else {
            continue;
        };
        let mut oids: Vec<Oid> = Vec::new();
        let mut sensors = Vec::new();
        for (i, s) in config.sensors.iter().enumerate() {
            if s.source != si {
                continue;
            }
            let SensorInput::Snmp(input) = &s.input else {
                continue;
            };
            let oid_index = match oids.iter().position(|o| *o == input.oid) {
                Some(k) => k,
                None => {
                    oids.push(input.oid.clone());
                    oids.len() - 1
                }
            };
            sensors.push(SensorRead {
                sensor: i as u32,
                input: input.clone(),
                oid_index,
                sentinels: s.sentinels.clone(),
            });
        }
        if sensors.is_empty() {
            continue;
        }
        out.push(Poller {
            name: source.name.clone(),
            cfg: cfg.clone(),
            oids,
            sensors,
            metrics: Arc::new(SourceMetrics::new(source.name.clone())),
        });
    }
    out
}

pub fn spawn(
    poller: Poller,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<Sample>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = poll_forever(&poller, clock, tx) => {}
        }
        poller.metrics.set_connected(false);
        tracing::debug!(source = %poller.name, "SNMP poller stopped");
    })
}

fn read_secret(key: &'static str, path: &Path) -> Result<Vec<u8>, SnmpSourceError> {
    let text = std::fs::read(path).map_err(|source| SnmpSourceError::Secret {
        key,
        path: path.to_path_buf(),
        source,
    })?;
    let mut text = text.as_slice();
    while let [rest @ .., b'\n' | b'\r'] = text {
        text = rest;
    }
    if text.is_empty() {
        return Err(SnmpSourceError::EmptySecret {
            key,
            path: path.to_path_buf(),
        });
    }
    Ok(text.to_vec())
}

fn read_password(key: &'static str, path: &Path) -> Result<Vec<u8>, SnmpSourceError> {
    let p = read_secret(key, path)?;
    if p.len() < 8 {
        return Err(SnmpSourceError::ShortPassword {
            key,
            path: path.to_path_buf(),
        });
    }
    Ok(p)
}

/// Reads the source's secret files and derives the v3 keys (the slow hashing runs off the
/// async threads).
pub async fn credentials(cfg: &SnmpSource) -> Result<Credentials, SnmpSourceError> {
    match &cfg.security {
        Security::V2c { community_file } => Ok(Credentials::Community(read_secret(
            "community_file",
            community_file,
        )?)),
        Security::V3 {
            username,
            auth_protocol,
            auth_password_file,
            priv_protocol,
            priv_password_file,
        } => {
            let auth = read_password("auth_password_file", auth_password_file)?;
            let privacy = match priv_password_file {
                Some(p) => read_password("priv_password_file", p)?,
                None => Vec::new(),
            };
            let (username, auth_protocol, priv_protocol) =
                (username.clone(), *auth_protocol, *priv_protocol);
            let derive =
                move || UsmUser::new(&username, auth_protocol, &auth, priv_protocol, &privacy);
            let user = match tokio::task::spawn_blocking(derive.clone()).await {
                Ok(u) => u,
                // Only when the runtime is shutting down; derive here then.
                Err(_) => derive(),
            };
            Ok(Credentials::Usm(user))
        }
    }
}

async fn poll_forever(p: &Poller, clock: Arc<dyn Clock>, tx: mpsc::Sender<Sample>) {
    let cfg = &p.cfg;
    let mut jitter = Jitter::new(clock.mono() ^ u64::from(cfg.port) << 32);
    let mut backoff = BACKOFF_START;
    let mut up: Option<bool> = None; // logged state, to log once per change
    let creds = loop {
        match credentials(cfg).await {
            Ok(c) => break c,
            Err(e) => {
                if up != Some(false) {
                    tracing::error!(source = %p.name, error = %e, "SNMP source cannot start; retrying");
                    up = Some(false);
                }
                p.metrics.error(ErrorKind::Authentication);
                crate::clock::sleep(backoff.mul_f64(jitter.next_factor())).await;
                backoff = (backoff * 2).min(cfg.reconnect_max);
            }
        }
    };
    let target = format!("{}:{}", cfg.host, cfg.port);
    let mut client = Client::new(target, creds, cfg.timeout, cfg.retries);
    let mut faulted: HashSet<usize> = HashSet::new();
    let mut ticker = tokio::time::interval(cfg.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let started = clock.mono();
        let result = client.get(&p.oids).await;
        p.metrics
            .observe_poll(clock.mono().saturating_sub(started) as f64 * 1e-9);
        let at = clock.mono();
        match result {
            Ok(values) => {
                if up != Some(true) {
                    tracing::info!(source = %p.name, agent = %client.target(), "SNMP agent answering");
                }
                up = Some(true);
                p.metrics.set_connected(true);
                backoff = BACKOFF_START;
                for s in &p.sensors {
                    let reading = match values[s.oid_index] {
                        Ok(raw) if s.sentinels.contains(&raw) => {
                            p.metrics.error(ErrorKind::BadValue);
                            Reading::Fault(FaultKind::OutOfRange)
                        }
                        Ok(raw) => {
                            faulted.remove(&s.oid_index);
                            Reading::Value(s.input.reading(raw))
                        }
                        Err(fault) => {
                            p.metrics.error(fault.kind());
                            if faulted.insert(s.oid_index) {
                                tracing::warn!(source = %p.name, oid = %s.input.oid, fault = ?fault, "SNMP object has no number");
                            }
                            Reading::Fault(fault.fault())
                        }
                    };
                    send(p, &tx, s.sensor, at, reading).await;
                }
            }
            Err(e) if e.agent_answered() => {
                // The agent is there and said no to the whole request: every sensor of
                // it faults, and the next poll asks again.
                if up != Some(true) {
                    tracing::warn!(source = %p.name, error = %e, "SNMP agent refused the request");
                }
                up = Some(true);
                p.metrics.set_connected(true);
                p.metrics.error(e.kind());
                for s in &p.sensors {
                    send(p, &tx, s.sensor, at, Reading::Fault(FaultKind::SnmpError)).await;
                }
            }
            Err(e) => {
                if up != Some(false) {
                    tracing::warn!(source = %p.name, error = %e, "SNMP agent not answering; retrying with backoff");
                }
                up = Some(false);
                p.metrics.error(e.kind());
                p.metrics.set_connected(false);
                crate::clock::sleep(backoff.mul_f64(jitter.next_factor())).await;
                backoff = (backoff * 2).min(cfg.reconnect_max);
                ticker.reset();
            }
        }
    }
}

async fn send(p: &Poller, tx: &mpsc::Sender<Sample>, sensor: u32, at: Nanos, reading: Reading) {
    p.metrics.sample();
    // Fails only when the agent is shutting down; nothing to do then.
    let _ = tx
        .send(Sample {
            sensor,
            at,
            reading,
        })
        .await;
}
