//! MQTT devices: each publishes one JSON object per period (sim time) on its topic.
//!
//! The payload is built purely ([`payload`]); the publisher owns one rumqttc client per
//! device and never waits on the broker (a full request queue drops the publish, as a
//! real device with a full buffer would).

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, QoS};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::overrides::Override;
use crate::room::LiveRoom;
use crate::scenario::{asd_level, MqttDevice, MqttModel};
use crate::timeline::Fault;

/// Requests queued for one device's client before publishes are dropped.
const QUEUE: usize = 64;
/// Wait between reconnect attempts when the broker is down.
const RECONNECT: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("broker URL `{0}` is not mqtt://HOST[:PORT]")]
    Url(String),
}

/// Host and port of `mqtt://host[:port]` (default port 1883).
pub fn parse_broker(url: &str) -> Result<(String, u16), MqttError> {
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| MqttError::Url(url.to_string()))?
        .trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| MqttError::Url(url.to_string()))?,
        ),
        None => (rest, 1883),
    };
    if host.is_empty() || port == 0 {
        return Err(MqttError::Url(url.to_string()));
    }
    Ok((host.to_string(), port))
}

/// The payload of `device` at sim time `t`, or `None` when it is silent (a dropout or
/// `timeout` fault on any field).
pub fn payload(device: &MqttDevice, t: Duration) -> Option<Value> {
    payload_with(device, t, &|_| Override::default())
}

/// [`payload`] with values and faults set from outside winning over the timelines.
pub fn payload_with(
    device: &MqttDevice,
    t: Duration,
    over: &dyn Fn(&str) -> Override,
) -> Option<Value> {
    payload_live(device, t, over, None)
}

/// [`payload_with`] in a closed-loop scenario: fields that follow the room read the live
/// room (`live`) instead of their written-out timelines.
pub fn payload_live(
    device: &MqttDevice,
    t: Duration,
    over: &dyn Fn(&str) -> Override,
    live: Option<&LiveRoom>,
) -> Option<Value> {
    let mut obj = Map::new();
    for f in &device.fields {
        let o = over(&f.signal);
        if o.fault.unwrap_or_else(|| f.timeline.fault_at(t)) == Fault::Timeout {
            return None;
        }
        let value = || match (f.room, live) {
            (Some(role), Some(live)) => f.timeline.value_with(t, &|x| live.value(role, x)),
            _ => f.timeline.value_at(t),
        };
        let v = round(o.value.unwrap_or_else(value));
        obj.insert(f.signal.clone(), Value::from(v));
    }
    if device.model == Some(MqttModel::Asd) {
        let obscuration = obj
            .get("obscuration")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        obj.insert("alarm_level".into(), Value::from(asd_level(obscuration)));
    }
    Some(Value::Object(obj))
}

/// Six decimals: enough for any sensor, and no `0.30000000000000004` in payloads.
fn round(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// The first publish instant strictly after `t` on a grid of `every`.
pub fn next_publish(t: Duration, every: Duration) -> Duration {
    let n = t.as_nanos() / every.as_nanos().max(1) + 1;
    every * u32::try_from(n).unwrap_or(u32::MAX)
}

/// One device's connection to the broker.
#[derive(Debug)]
pub struct Publisher {
    client: AsyncClient,
    topic: String,
}

impl Publisher {
    /// Starts a client for `device`; the returned task drives its connection until
    /// `shutdown`.
    pub fn start(
        device: &str,
        topic: &str,
        host: &str,
        port: u16,
        mut shutdown: watch::Receiver<bool>,
    ) -> (Publisher, JoinHandle<()>) {
        // Unique per client: a broker disconnects the older of two clients with one id.
        static CLIENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("firebreak-sim-{}-{n}-{device}", std::process::id());
        let mut opts = MqttOptions::new(id, host, port);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(opts, QUEUE);
        let name = device.to_string();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            };
            tokio::pin!(stop);
            loop {
                let failed = tokio::select! {
                    () = &mut stop => return,
                    ev = eventloop.poll() => match ev {
                        Ok(Event::Incoming(p)) => {
                            debug!(device = %name, packet = ?p, "mqtt in");
                            false
                        }
                        Ok(Event::Outgoing(_)) => false,
                        Err(e) => {
                            warn!(device = %name, error = %e, "mqtt connection; retrying");
                            true
                        }
                    },
                };
                if failed {
                    tokio::select! {
                        () = &mut stop => return,
                        () = tokio::time::sleep(RECONNECT) => {}
                    }
                }
            }
        });
        (
            Publisher {
                client,
                topic: topic.to_string(),
            },
            task,
        )
    }

    /// Queues one publish (QoS 0, not retained); dropped if the queue is full.
    pub fn publish(&self, payload: &Value) {
        let bytes = payload.to_string().into_bytes();
        if let Err(e) = self
            .client
            .try_publish(&self.topic, QoS::AtMostOnce, false, bytes)
        {
            debug!(topic = %self.topic, error = %e, "publish dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn asd() -> MqttDevice {
        let s = Scenario::from_toml_str(
            r#"
[scenario]
name = "asd"
duration = "20s"
[[devices]]
name = "asd1"
protocol = "mqtt"
topic = "dc1/b3/asd1/state"
model = "asd"
[[devices.fields]]
signal = "obscuration"
timeline = [
  { at = "0s", set = 0.01 },
  { at = "5s", set = 0.2 },
  { at = "10s", silence = "2s" },
  { at = "15s", set = 2.0 },
]
"#,
        )
        .unwrap();
        s.devices[0].mqtt.clone().unwrap()
    }

    #[test]
    fn an_asd_publishes_obscuration_and_the_alarm_level_it_implies() {
        let d = asd();
        assert_eq!(
            payload(&d, Duration::from_secs(1)).unwrap(),
            serde_json::json!({"obscuration": 0.01, "alarm_level": "normal"})
        );
        assert_eq!(
            payload(&d, Duration::from_secs(6)).unwrap(),
            serde_json::json!({"obscuration": 0.2, "alarm_level": "action1"})
        );
        assert_eq!(
            payload(&d, Duration::from_secs(16)).unwrap()["alarm_level"],
            "fire2"
        );
    }

    #[test]
    fn silence_means_no_publish_for_its_span() {
        let d = asd();
        assert!(payload(&d, Duration::from_secs(11)).is_none());
        assert!(payload(&d, Duration::from_secs(12)).is_some());
    }

    #[test]
    fn publishes_fall_on_a_grid_of_the_period() {
        let s = Duration::from_secs;
        assert_eq!(next_publish(s(0), s(1)), s(1));
        assert_eq!(next_publish(Duration::from_millis(2500), s(1)), s(3));
        assert_eq!(next_publish(s(3), s(1)), s(4));
    }

    #[test]
    fn broker_urls_name_host_and_port() {
        assert_eq!(
            parse_broker("mqtt://127.0.0.1:1884").unwrap(),
            ("127.0.0.1".to_string(), 1884)
        );
        assert_eq!(
            parse_broker("mqtt://broker").unwrap(),
            ("broker".to_string(), 1883)
        );
        assert!(parse_broker("http://x:1").is_err());
        assert!(parse_broker("mqtt://:1").is_err());
    }
}
