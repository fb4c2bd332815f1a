//! MQTT subscriptions: one client per source, QoS 1, resubscribed on every (re)connect;
//! each publish is routed by topic to its sensors and parsed into a reading or a fault.
//!
//! Design: rumqttc's `EventLoop` reconnects by itself when polled again after an error;
//! this task only paces those attempts (capped exponential backoff with jitter) and
//! subscribes again on every ConnAck, because a clean session starts with none.

pub mod config;
pub mod payload;
pub mod tls;

use super::metrics::{ErrorKind, SourceMetrics};
use super::Jitter;
use crate::clock::Clock;
use crate::config::{Config, MqttSource, SensorInput, SourceSpec};
use crate::detect::rise::Nanos;
use crate::detect::{Reading, Sample};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeFilter, Transport};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// rumqttc refuses larger packets by dropping the connection, which would hide which sensor
/// sent them; accept up to this and fault payloads over [`payload::MAX_PAYLOAD`] ourselves.
const MAX_PACKET: usize = 1024 * 1024;
const BACKOFF_START: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("cannot read password_file {path}: {source}")]
    Password {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// One sensor fed by a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub sensor: u32,
    pub json_pointer: Option<String>,
    pub timestamp_pointer: Option<String>,
    /// The sensor's "no data" values (`sentinels`), compared with the payload's number.
    pub sentinels: Vec<f64>,
}

/// Everything one MQTT source's task needs.
pub struct Subscriber {
    pub name: String,
    pub cfg: MqttSource,
    /// Topic filters to subscribe to: the source's `subscribe` list, then every sensor topic
    /// none of those covers.
    pub filters: Vec<String>,
    /// Exact topic -> the sensors it feeds (several sensors may read one JSON document).
    pub routes: HashMap<String, Vec<Route>>,
    pub metrics: Arc<SourceMetrics>,
}

/// Builds the subscriptions of every MQTT source that has sensors.
pub fn subscribers(config: &Config) -> Vec<Subscriber> {
    let mut out = Vec::new();
    for (si, source) in config.sources.iter().enumerate() {
        let SourceSpec::Mqtt(m) = &source.spec else {
            continue;
        };
        let mut routes: HashMap<String, Vec<Route>> = HashMap::new();
        for (i, s) in config.sensors.iter().enumerate() {
            if s.source != si {
                continue;
            }
            if let SensorInput::Topic {
                topic,
                json_pointer,
                timestamp_pointer,
            } = &s.input
            {
                routes.entry(topic.clone()).or_default().push(Route {
                    sensor: i as u32,
                    json_pointer: json_pointer.clone(),
                    timestamp_pointer: timestamp_pointer.clone(),
                    sentinels: s.sentinels.clone(),
                });
            }
        }
        if routes.is_empty() {
            continue;
        }
        let mut filters = m.subscribe.clone();
        let mut own: Vec<&String> = routes
            .keys()
            .filter(|t| !m.subscribe.iter().any(|f| crate::mqtt_topic::matches(f, t)))
            .collect();
        own.sort();
        filters.extend(own.into_iter().cloned());
        out.push(Subscriber {
            name: source.name.clone(),
            cfg: m.clone(),
            filters,
            routes,
            metrics: Arc::new(SourceMetrics::new(source.name.clone())),
        });
    }
    out
}

pub fn spawn(
    sub: Subscriber,
    clock: Arc<dyn Clock>,
    tx: mpsc::Sender<Sample>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = run(&sub, clock, tx) => {}
        }
        sub.metrics.set_connected(false);
        tracing::debug!(source = %sub.name, "MQTT subscriber stopped");
    })
}

/// Client options for a source; reads the password and TLS files.
pub fn options(name: &str, cfg: &MqttSource) -> Result<MqttOptions, MqttError> {
    let mut o = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
    o.set_keep_alive(cfg.keep_alive);
    o.set_clean_session(true);
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    if let Some(user) = &cfg.username {
        let password = match &cfg.password_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|source| MqttError::Password {
                    path: path.clone(),
                    source,
                })?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
            None => String::new(),
        };
        o.set_credentials(user.clone(), password);
    }
    if cfg.tls {
        let tls = tls::client_config(cfg)?;
        o.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    }
    tracing::trace!(source = %name, "MQTT options built");
    Ok(o)
}

async fn run(sub: &Subscriber, clock: Arc<dyn Clock>, tx: mpsc::Sender<Sample>) {
    let mut jitter = Jitter::new(clock.mono());
    let mut backoff = BACKOFF_START;
    let mut up: Option<bool> = None; // logged state, to log once per change
    let opts = loop {
        match options(&sub.name, &sub.cfg) {
            Ok(o) => break o,
            Err(e) => {
                if up != Some(false) {
                    tracing::error!(source = %sub.name, error = %e, "MQTT source cannot start; retrying");
                    up = Some(false);
                }
                sub.metrics.error(ErrorKind::Connect);
                crate::clock::sleep(backoff.mul_f64(jitter.next_factor())).await;
                backoff = (backoff * 2).min(sub.cfg.reconnect_max);
            }
        }
    };
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let mut net = rumqttc::NetworkOptions::new();
    net.set_connection_timeout(sub.cfg.timeout.as_secs().max(1));
    eventloop.set_network_options(net);
    let filters: Vec<SubscribeFilter> = sub
        .filters
        .iter()
        .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
        .collect();
    let mut last_at: HashMap<u32, Nanos> = HashMap::new();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if up != Some(true) {
                    tracing::info!(source = %sub.name, host = %sub.cfg.host, port = sub.cfg.port, "MQTT broker connected; subscribing");
                }
                up = Some(true);
                sub.metrics.set_connected(true);
                backoff = BACKOFF_START;
                if let Err(e) = client.try_subscribe_many(filters.clone()) {
                    tracing::error!(source = %sub.name, error = %e, "MQTT subscribe could not be queued");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(ack))) => {
                for (filter, code) in sub.filters.iter().zip(&ack.return_codes) {
                    if matches!(code, rumqttc::SubscribeReasonCode::Failure) {
                        tracing::warn!(source = %sub.name, filter = %filter, "MQTT broker refused the subscription");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                handle_publish(sub, &p.topic, &p.payload, clock.as_ref(), &tx, &mut last_at).await;
            }
            Ok(_) => {}
            Err(e) => {
                if up != Some(false) {
                    tracing::warn!(source = %sub.name, error = %e, "MQTT broker unreachable; reconnecting with backoff");
                }
                let kind = if up == Some(true) {
                    ErrorKind::Transport
                } else {
                    ErrorKind::Connect
                };
                sub.metrics.error(kind);
                up = Some(false);
                sub.metrics.set_connected(false);
                crate::clock::sleep(backoff.mul_f64(jitter.next_factor())).await;
                backoff = (backoff * 2).min(sub.cfg.reconnect_max);
            }
        }
    }
}

async fn handle_publish(
    sub: &Subscriber,
    topic: &str,
    payload: &[u8],
    clock: &dyn Clock,
    tx: &mpsc::Sender<Sample>,
    last_at: &mut HashMap<u32, Nanos>,
) {
    let Some(routes) = sub.routes.get(topic) else {
        tracing::trace!(source = %sub.name, topic, "MQTT message for no sensor");
        return;
    };
    let now = clock.mono();
    for route in routes {
        let parsed = payload::parse(
            payload,
            route.json_pointer.as_deref(),
            route.timestamp_pointer.as_deref(),
        );
        let (reading, at) = match parsed {
            Ok(p) => {
                let at = match p.timestamp_ms {
                    Some(ms) => mono_of(ms, now, clock),
                    None => now,
                };
                if route.sentinels.contains(&p.value) {
                    sub.metrics.error(ErrorKind::BadValue);
                    (Reading::Fault(crate::detect::FaultKind::OutOfRange), at)
                } else {
                    (Reading::Value(p.value), at)
                }
            }
            Err(e) => {
                sub.metrics.error(ErrorKind::BadValue);
                tracing::trace!(source = %sub.name, topic, error = %e, "MQTT payload is not a reading");
                (Reading::Fault(e.fault()), now)
            }
        };
        // Device clocks drift and messages arrive out of order: never step a sensor's
        // time backwards (rates need monotonic time).
        let last = last_at.entry(route.sensor).or_insert(0);
        let at = at.max(*last);
        *last = at;
        sub.metrics.sample();
        // Fails only when the agent is shutting down.
        let _ = tx
            .send(Sample {
                sensor: route.sensor,
                at,
                reading,
            })
            .await;
    }
}

/// Maps a device's wall-clock timestamp onto the monotonic clock: `now` minus the
/// reading's age, and never later than `now` (a device clock ahead of ours).
fn mono_of(ts_ms: i64, now: Nanos, clock: &dyn Clock) -> Nanos {
    let wall_ms = clock
        .wall()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let age_ms = wall_ms.saturating_sub(ts_ms).max(0) as u64;
    now.saturating_sub(age_ms.saturating_mul(1_000_000) as Nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    struct Fixed;
    impl Clock for Fixed {
        fn mono(&self) -> Nanos {
            10_000_000_000
        }
        fn wall(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_millis(1_000_000)
        }
    }

    #[test]
    fn device_timestamps_place_readings_in_the_past_never_the_future() {
        let now = Fixed.mono();
        assert_eq!(mono_of(1_000_000 - 2_000, now, &Fixed), now - 2_000_000_000);
        assert_eq!(mono_of(1_000_000 + 5_000, now, &Fixed), now);
        assert_eq!(mono_of(0, now, &Fixed), 0);
    }

    #[test]
    fn wildcard_subscriptions_cover_many_sensor_topics() {
        let cfg = crate::config::load_str(
            r#"
[agent]
name = "t"
state_dir = "/tmp/x"
[[sources]]
name = "b"
type = "mqtt"
url = "mqtt://127.0.0.1:1883"
subscribe = ["dc1/+/state"]
[[sensors]]
id = "a"
zone = "z"
kind = "smoke"
source = "b"
topic = "dc1/asd1/state"
json_pointer = "/obscuration"
[[sensors]]
id = "b"
zone = "z"
kind = "temperature"
source = "b"
topic = "dc1/asd1/state"
json_pointer = "/temp"
[[sensors]]
id = "c"
zone = "z"
kind = "smoke"
source = "b"
topic = "dc1/asd2/state"
[[sensors]]
id = "d"
zone = "z"
kind = "temperature"
source = "b"
topic = "dc2/t"
[[zones]]
id = "z"
runbook = "r"
[[runbooks]]
name = "r"
[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"
"#,
            "test",
            HashMap::new(),
        )
        .map_err(|e| format!("{:?}", e.errors))
        .unwrap()
        .config;
        let subs = subscribers(&cfg);
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].filters, vec!["dc1/+/state", "dc2/t"]);
        assert_eq!(subs[0].routes["dc1/asd1/state"].len(), 2);
        assert_eq!(subs[0].routes["dc2/t"][0].sensor, 3);
    }

    #[tokio::test]
    async fn a_sensors_sentinel_is_a_fault_and_other_numbers_are_readings() {
        let cfg = crate::config::load_str(
            r#"
[agent]
name = "t"
state_dir = "/tmp/x"
[[sources]]
name = "b"
type = "mqtt"
url = "mqtt://127.0.0.1:1883"
[[sensors]]
id = "probe"
zone = "z"
kind = "temperature"
source = "b"
topic = "dc1/probe"
sentinels = [85, -127]
[[zones]]
id = "z"
runbook = "r"
[[runbooks]]
name = "r"
[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"
"#,
            "test",
            HashMap::new(),
        )
        .map_err(|e| format!("{:?}", e.errors))
        .unwrap()
        .config;
        let subs = subscribers(&cfg);
        let (tx, mut rx) = mpsc::channel(8);
        let mut last_at = HashMap::new();
        for payload in ["85", "23.5", "-127"] {
            handle_publish(
                &subs[0],
                "dc1/probe",
                payload.as_bytes(),
                &Fixed,
                &tx,
                &mut last_at,
            )
            .await;
        }
        let readings: Vec<Reading> = (0..3).map(|_| rx.try_recv().unwrap().reading).collect();
        assert_eq!(
            readings,
            [
                Reading::Fault(crate::detect::FaultKind::OutOfRange),
                Reading::Value(23.5),
                Reading::Fault(crate::detect::FaultKind::OutOfRange),
            ]
        );
    }
}
