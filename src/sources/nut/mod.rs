//! Network UPS Tools: UPSs read through `upsd`. One task per `nut` source (one UPS) polls
//! `LIST VAR` and turns each sensor's variable into a reading or a fault; sources on the
//! same upsd share one connection. Lost connections reconnect with capped exponential
//! backoff and jitter; meanwhile no samples are sent and the sensors go stale in the core,
//! as for Modbus.
//!
//! Design: the connection never authenticates. upsd serves `LIST VAR` to anyone its
//! `LISTEN` lets in and checks passwords only on privileged commands, so credentials would
//! prove nothing here; the source's `username` and `password_file` are for the `nut_fsd`
//! step, which opens its own connection. Nor does it `LOGIN` (see `client.rs`): a monitor
//! is not a system the UPS powers.

pub mod client;
pub mod config;
pub mod proto;

use super::metrics::{ErrorKind, SourceMetrics};
use super::Jitter;
use crate::clock::Clock;
use crate::config::{Config, NutInput, NutRead, NutSource, SensorInput, SourceSpec};
use crate::detect::{FaultKind, Reading, Sample};
use client::{Client, NutError};
use config::Upsd;
use proto::Status;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const BACKOFF_START: Duration = Duration::from_millis(250);

/// One upsd and the connection to it, shared by every source on it.
///
/// Design: as a Modbus link, the connection is held by one poll at a time, for one
/// `LIST VAR` bounded by the source's timeout: a UPS whose driver is slow delays the
/// others on the same upsd by at most that, and sources on other upsds never wait.
pub struct Link {
    pub upsd: Upsd,
    conn: tokio::sync::Mutex<Option<Client>>,
}

impl Link {
    pub fn new(upsd: Upsd) -> Self {
        Link {
            upsd,
            conn: tokio::sync::Mutex::new(None),
        }
    }
}

/// One sensor of a UPS.
#[derive(Debug, Clone)]
pub struct NutSensor {
    pub sensor: u32,
    pub input: NutInput,
    /// Raw values meaning "no data" (`sentinels`), compared before `scale` and `offset`.
    pub sentinels: Vec<f64>,
}

/// Everything one NUT source's task needs.
pub struct Poller {
    pub name: String,
    pub cfg: NutSource,
    pub sensors: Vec<NutSensor>,
    pub metrics: Arc<SourceMetrics>,
    pub link: Arc<Link>,
}

/// The pollers of every NUT source that has sensors; sources on the same upsd (same URL
/// and TLS settings) share one link.
pub fn pollers(config: &Config) -> Vec<Poller> {
    let mut links: HashMap<Upsd, Arc<Link>> = HashMap::new();
    let mut out = Vec::new();
    for (si, source) in config.sources.iter().enumerate() {
        let SourceSpec::Nut(n) = &source.spec else {
            continue;
        };
        let sensors: Vec<NutSensor> = config
            .sensors
            .iter()
            .enumerate()
            .filter(|(_, s)| s.source == si)
            .filter_map(|(i, s)| match &s.input {
                SensorInput::Nut(input) => Some(NutSensor {
                    sensor: i as u32,
                    input: input.clone(),
                    sentinels: s.sentinels.clone(),
                }),
                _ => None,
            })
            .collect();
        if sensors.is_empty() {
            continue;
        }
        let link = links
            .entry(n.upsd.clone())
            .or_insert_with(|| Arc::new(Link::new(n.upsd.clone())))
            .clone();
        out.push(Poller {
            name: source.name.clone(),
            cfg: n.clone(),
            sensors,
            metrics: Arc::new(SourceMetrics::new(source.name.clone())),
            link,
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
        tracing::debug!(source = %poller.name, "NUT poller stopped");
    })
}

/// What one poll found, for logging once per change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Up,
    /// upsd answers but has no data for the UPS (or refuses to list it).
    Refused(proto::NutCode),
    Down,
}

async fn poll_forever(p: &Poller, clock: Arc<dyn Clock>, tx: mpsc::Sender<Sample>) {
    let mut jitter = Jitter::new(clock.mono() ^ (p.sensors[0].sensor as u64) << 32);
    let mut backoff = BACKOFF_START;
    let mut health: Option<Health> = None;
    let mut ticker = tokio::time::interval(p.cfg.poll_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let started = clock.mono();
        let result = list(p).await;
        p.metrics
            .observe_poll(clock.mono().saturating_sub(started) as f64 * 1e-9);
        let at = clock.mono();
        // upsd answered (data or a refusal): the link is up before any sample says so.
        if !result.as_ref().is_err_and(NutError::breaks_connection) {
            p.metrics.set_connected(true);
        }
        let now = match result {
            Ok(vars) => {
                let vars: HashMap<&str, &str> =
                    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                for s in &p.sensors {
                    let reading = read_sensor(
                        &s.input,
                        vars.get(s.input.variable.as_str()).copied(),
                        &s.sentinels,
                    );
                    if matches!(reading, Reading::Fault(_)) {
                        p.metrics.error(ErrorKind::BadValue);
                    }
                    send(p, &tx, s.sensor, at, reading).await;
                }
                Health::Up
            }
            Err(e) if !e.breaks_connection() => {
                // upsd answered: the link is up, the UPS's data is not there. Every sensor
                // says so, rather than going stale as if upsd were silent.
                p.metrics.error(e.kind());
                let code = e.code().unwrap_or(proto::NutCode::Other);
                if health != Some(Health::Refused(code)) {
                    tracing::warn!(source = %p.name, ups = %p.cfg.ups, error = %e, "upsd has no data for the UPS; its sensors are faulty");
                }
                for s in &p.sensors {
                    send(p, &tx, s.sensor, at, Reading::Fault(FaultKind::NoData)).await;
                }
                Health::Refused(code)
            }
            Err(e) => {
                p.metrics.error(e.kind());
                p.metrics.set_connected(false);
                if health != Some(Health::Down) {
                    tracing::warn!(source = %p.name, error = %e, "upsd unreachable; retrying with backoff");
                }
                health = Some(Health::Down);
                crate::clock::sleep(backoff.mul_f64(jitter.next_factor())).await;
                backoff = (backoff * 2).min(p.cfg.reconnect_max);
                ticker.reset();
                continue;
            }
        };
        if health != Some(now) && now == Health::Up {
            tracing::info!(source = %p.name, upsd = %p.link.upsd.url(), ups = %p.cfg.ups, "upsd answering");
        }
        health = Some(now);
        backoff = BACKOFF_START;
    }
}

/// One `LIST VAR` on the shared connection, connecting first when there is none; a broken
/// connection is dropped for the next poll to replace.
async fn list(p: &Poller) -> Result<Vec<(String, String)>, NutError> {
    let mut conn = p.link.conn.lock().await;
    if conn.is_none() {
        *conn = Some(Client::connect(&p.link.upsd, p.cfg.timeout).await?);
    }
    let Some(client) = conn.as_mut() else {
        unreachable!("connected just above")
    };
    let result = client.list_vars(&p.cfg.ups).await;
    if result.as_ref().is_err_and(NutError::breaks_connection) {
        *conn = None;
    }
    result
}

/// A sensor's reading from its variable's text (`None`: not in the list): a number
/// (`raw * scale + offset`), or a status flag as 0/1; a missing variable, text that is not
/// a finite number, or a sentinel is a fault.
pub fn read_sensor(input: &NutInput, value: Option<&str>, sentinels: &[f64]) -> Reading {
    let Some(text) = value else {
        return Reading::Fault(FaultKind::MissingField);
    };
    match input.read {
        NutRead::Flag(flag) => Reading::Value(if Status::parse(text).has(flag) {
            1.0
        } else {
            0.0
        }),
        NutRead::Number { scale, offset } => match text.trim().parse::<f64>() {
            Ok(raw) if !raw.is_finite() => Reading::Fault(FaultKind::NotNumeric),
            Ok(raw) if sentinels.contains(&raw) => Reading::Fault(FaultKind::OutOfRange),
            Ok(raw) => Reading::Value(raw * scale + offset),
            Err(_) => Reading::Fault(FaultKind::NotNumeric),
        },
    }
}

async fn send(p: &Poller, tx: &mpsc::Sender<Sample>, sensor: u32, at: u64, reading: Reading) {
    p.metrics.sample();
    // Fails only when the agent is shutting down.
    let _ = tx
        .send(Sample {
            sensor,
            at,
            reading,
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::StatusFlag;

    fn number(variable: &str, scale: f64, offset: f64) -> NutInput {
        NutInput {
            variable: variable.into(),
            read: NutRead::Number { scale, offset },
        }
    }

    fn flag(flag: StatusFlag) -> NutInput {
        NutInput {
            variable: "ups.status".into(),
            read: NutRead::Flag(flag),
        }
    }

    #[test]
    fn sources_on_one_upsd_share_one_connection_and_others_have_their_own() {
        let source = |name: &str, url: &str, ups: &str| {
            format!(
                "[[sources]]\nname = \"{name}\"\ntype = \"nut\"\nurl = \"{url}\"\nups = \"{ups}\"\n\
                 [[sensors]]\nid = \"{name}.ob\"\nzone = \"z\"\nkind = \"on_battery\"\nsource = \"{name}\"\nvariable = \"ups.status\"\n"
            )
        };
        let text = format!(
            "[agent]\nname = \"t\"\nstate_dir = \"/tmp/x\"\n{}{}{}\
             [[zones]]\nid = \"z\"\nrunbook = \"r\"\n[[runbooks]]\nname = \"r\"\n\
             [[runbooks.steps]]\nname = \"w\"\ntype = \"wait\"\nduration = \"1s\"\n",
            source("a", "nut://10.0.0.1", "ups1"),
            source("b", "nut://10.0.0.1:3493", "ups2"),
            source("c", "nut://10.0.0.2", "ups1"),
        );
        let cfg = crate::config::load_str(&text, "test", HashMap::new())
            .map_err(|e| format!("{:?}", e.errors))
            .unwrap()
            .config;
        let p = pollers(&cfg);
        assert_eq!(p.len(), 3);
        assert!(Arc::ptr_eq(&p[0].link, &p[1].link), "a and b: one upsd");
        assert!(!Arc::ptr_eq(&p[0].link, &p[2].link), "c: another upsd");
        assert_eq!(p[1].sensors[0].sensor, 1);
    }

    #[test]
    fn a_numeric_variable_is_scaled_and_offset() {
        let runtime = number("battery.runtime", 1.0, 0.0);
        assert_eq!(
            read_sensor(&runtime, Some("1800"), &[]),
            Reading::Value(1800.0)
        );
        let minutes = number("battery.runtime", 1.0 / 60.0, 0.0);
        assert_eq!(
            read_sensor(&minutes, Some("600"), &[]),
            Reading::Value(10.0)
        );
        let kelvin = number("ups.temperature", 1.0, -273.15);
        assert_eq!(
            read_sensor(&kelvin, Some(" 298.15 "), &[]),
            Reading::Value(298.15 - 273.15)
        );
    }

    #[test]
    fn a_status_flag_reads_one_while_present_and_zero_otherwise() {
        assert_eq!(
            read_sensor(&flag(StatusFlag::Ob), Some("OB DISCHRG"), &[]),
            Reading::Value(1.0)
        );
        assert_eq!(
            read_sensor(&flag(StatusFlag::Ob), Some("OL CHRG"), &[]),
            Reading::Value(0.0)
        );
        assert_eq!(
            read_sensor(&flag(StatusFlag::Lb), Some("OB LB"), &[]),
            Reading::Value(1.0)
        );
        assert_eq!(
            read_sensor(&flag(StatusFlag::Fsd), Some("FSD OL"), &[]),
            Reading::Value(1.0)
        );
    }

    #[test]
    fn missing_text_and_sentinel_values_are_faults_never_values() {
        let v = number("input.voltage", 1.0, 0.0);
        assert_eq!(
            read_sensor(&v, None, &[]),
            Reading::Fault(FaultKind::MissingField)
        );
        assert_eq!(
            read_sensor(&v, Some("unknown"), &[]),
            Reading::Fault(FaultKind::NotNumeric)
        );
        assert_eq!(
            read_sensor(&v, Some("NaN"), &[]),
            Reading::Fault(FaultKind::NotNumeric)
        );
        assert_eq!(
            read_sensor(&v, Some("inf"), &[]),
            Reading::Fault(FaultKind::NotNumeric)
        );
        // The sentinel is the raw value, before scale and offset.
        let scaled = number("input.voltage", 10.0, 0.0);
        assert_eq!(
            read_sensor(&scaled, Some("-1"), &[-1.0]),
            Reading::Fault(FaultKind::OutOfRange)
        );
        assert_eq!(
            read_sensor(&scaled, Some("23"), &[-1.0]),
            Reading::Value(230.0)
        );
        // A status flag's sensor without `ups.status` in the list is missing too.
        assert_eq!(
            read_sensor(&flag(StatusFlag::Ob), None, &[]),
            Reading::Fault(FaultKind::MissingField)
        );
    }
}
