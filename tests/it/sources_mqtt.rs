//! The MQTT source against a real Mosquitto: payload forms, password auth, TLS with a
//! throwaway CA (with and without a client certificate), a broker that dies and comes back,
//! and malformed payloads that fault a sensor without stopping anything.

use crate::support;

use firebreak::clock::SystemClock;
use firebreak::config::{self, Config};
use firebreak::detect::{FaultKind, Level, Reading, Reason, Sample, SensorState};
use firebreak::sources::metrics::{ErrorKind, SourceMetrics};
use firebreak::sources::mqtt;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::agent::Agent;
use support::events::{Event, LoggedEvent};
use support::mosquitto::{Mosquitto, Options};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(15);

fn config(source: &str, sensors: &str) -> Config {
    let text = format!(
        r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-mqtt-test"

[[sources]]
name = "broker"
type = "mqtt"
{source}

{sensors}

[[zones]]
id = "z"
runbook = "r"
confirm = 1

[[runbooks]]
name = "r"
[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"
"#
    );
    config::load_str(&text, "test", HashMap::new())
        .unwrap_or_else(|e| panic!("config: {:?}", e.errors))
        .config
}

const SENSORS: &str = r#"
[[sensors]]
id = "smoke"
zone = "z"
kind = "smoke"
source = "broker"
topic = "dc1/b3/asd1/state"
json_pointer = "/obscuration"

[[sensors]]
id = "temp"
zone = "z"
kind = "temperature"
source = "broker"
topic = "dc1/b3/temp1"
"#;

struct Running {
    rx: mpsc::Receiver<Sample>,
    metrics: Arc<SourceMetrics>,
    cancel: CancellationToken,
    config: Config,
}

impl Running {
    fn start(config: Config) -> Running {
        let mut subs = mqtt::subscribers(&config);
        assert_eq!(subs.len(), 1);
        let sub = subs.remove(0);
        let metrics = sub.metrics.clone();
        let (tx, rx) = mpsc::channel(1024);
        let cancel = CancellationToken::new();
        mqtt::spawn(sub, Arc::new(SystemClock::new()), tx, cancel.clone());
        Running {
            rx,
            metrics,
            cancel,
            config,
        }
    }

    fn sensor(&self, id: &str) -> u32 {
        self.config.sensors.iter().position(|s| s.id == id).unwrap() as u32
    }

    /// Publishes `payload` (again every 300 ms: the subscription may not be in place yet)
    /// until a sample of `sensor` satisfies `pred`.
    async fn publish_until(
        &mut self,
        broker: &Mosquitto,
        auth: Option<(&str, &str)>,
        topic: &str,
        payload: &[u8],
        sensor: &str,
        pred: impl Fn(&Reading) -> bool,
    ) -> Sample {
        let sensor = self.sensor(sensor);
        let until = Instant::now() + DEADLINE;
        loop {
            broker.publish(topic, payload, auth);
            let round = Instant::now() + Duration::from_millis(300);
            while let Ok(Some(s)) = tokio::time::timeout_at(round, self.rx.recv()).await {
                if s.sensor == sensor && pred(&s.reading) {
                    return s;
                }
            }
            assert!(
                Instant::now() < until,
                "no matching sample for `{topic}` within {DEADLINE:?}; metrics {:?}\nbroker log:\n{}",
                self.metrics.snapshot(),
                broker.log_text()
            );
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn value(v: f64) -> impl Fn(&Reading) -> bool {
    move |r| matches!(r, Reading::Value(x) if (x - v).abs() < 1e-9)
}

fn fault(f: FaultKind) -> impl Fn(&Reading) -> bool {
    move |r| *r == Reading::Fault(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_bare_payloads_become_readings() {
    let broker = Mosquitto::start(Options::default());
    let mut run = Running::start(config(
        &format!("url = \"mqtt://127.0.0.1:{}\"", broker.port),
        SENSORS,
    ));
    run.publish_until(
        &broker,
        None,
        "dc1/b3/asd1/state",
        br#"{"obscuration": 0.05, "alarm": false}"#,
        "smoke",
        value(0.05),
    )
    .await;
    run.publish_until(&broker, None, "dc1/b3/temp1", b"23.5", "temp", value(23.5))
        .await;
    run.publish_until(&broker, None, "dc1/b3/temp1", b"-5", "temp", value(-5.0))
        .await;
    let m = run.metrics.snapshot();
    assert!(m.connected);
    assert!(m.samples_in >= 3, "{m:?}");
    assert_eq!(m.errors_of(ErrorKind::BadValue), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_wildcard_subscription_feeds_many_sensors() {
    let broker = Mosquitto::start(Options::default());
    let sensors = r#"
[[sensors]]
id = "asd1"
zone = "z"
kind = "smoke"
source = "broker"
topic = "dc1/asd1/state"
json_pointer = "/obscuration"

[[sensors]]
id = "asd2"
zone = "z"
kind = "smoke"
source = "broker"
topic = "dc1/asd2/state"
json_pointer = "/obscuration"
"#;
    let mut run = Running::start(config(
        &format!(
            "url = \"mqtt://127.0.0.1:{}\"\nsubscribe = [\"dc1/+/state\"]",
            broker.port
        ),
        sensors,
    ));
    run.publish_until(
        &broker,
        None,
        "dc1/asd1/state",
        br#"{"obscuration": 0.01}"#,
        "asd1",
        value(0.01),
    )
    .await;
    run.publish_until(
        &broker,
        None,
        "dc1/asd2/state",
        br#"{"obscuration": 0.02}"#,
        "asd2",
        value(0.02),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_payloads_fault_the_sensor_and_are_counted() {
    let broker = Mosquitto::start(Options::default());
    let mut run = Running::start(config(
        &format!("url = \"mqtt://127.0.0.1:{}\"", broker.port),
        SENSORS,
    ));
    let topic = "dc1/b3/asd1/state";
    run.publish_until(
        &broker,
        None,
        topic,
        b"{\"obscuration\": ",
        "smoke",
        fault(FaultKind::BadPayload),
    )
    .await;
    run.publish_until(
        &broker,
        None,
        topic,
        br#"{"obscuration": "n/a"}"#,
        "smoke",
        fault(FaultKind::NotNumeric),
    )
    .await;
    run.publish_until(
        &broker,
        None,
        topic,
        br#"{"other": 1}"#,
        "smoke",
        fault(FaultKind::MissingField),
    )
    .await;
    let mut big = br#"{"obscuration": 0.01, "pad": ""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 70 * 1024));
    big.extend(br#""}"#);
    run.publish_until(
        &broker,
        None,
        topic,
        &big,
        "smoke",
        fault(FaultKind::PayloadTooLarge),
    )
    .await;
    // The same connection still delivers good readings afterwards.
    run.publish_until(
        &broker,
        None,
        topic,
        br#"{"obscuration": 0.03}"#,
        "smoke",
        value(0.03),
    )
    .await;
    let m = run.metrics.snapshot();
    assert!(m.errors_of(ErrorKind::BadValue) >= 4, "{m:?}");
    assert_eq!(m.errors_of(ErrorKind::Transport), 0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_auth_admits_the_right_password_only() {
    let broker = Mosquitto::start(Options {
        users: vec![("firebreak".into(), "s3cret".into())],
        tls: false,
    });
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.password");
    std::fs::write(&good, "s3cret\n").unwrap();
    let auth = Some(("firebreak", "s3cret"));
    let source = |file: &Path| {
        format!(
            "url = \"mqtt://127.0.0.1:{}\"\nusername = \"firebreak\"\npassword_file = \"{}\"\nreconnect_max = \"500ms\"",
            broker.port,
            file.display()
        )
    };
    let mut run = Running::start(config(&source(&good), SENSORS));
    run.publish_until(&broker, auth, "dc1/b3/temp1", b"21", "temp", value(21.0))
        .await;

    let bad = dir.path().join("bad.password");
    std::fs::write(&bad, "guess\n").unwrap();
    let refused = Running::start(config(&source(&bad), SENSORS));
    let until = Instant::now() + DEADLINE;
    while refused.metrics.snapshot().errors_of(ErrorKind::Connect) < 2 {
        assert!(Instant::now() < until, "{:?}", refused.metrics.snapshot());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = refused.metrics.snapshot();
    assert!(!m.connected);
    assert_eq!(m.samples_in, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_throwaway_ca_carries_readings_with_and_without_a_client_certificate() {
    let broker = Mosquitto::start(Options {
        users: vec![],
        tls: true,
    });
    let ca = broker.ca_file();
    let mut run = Running::start(config(
        &format!(
            "url = \"mqtts://localhost:{}\"\nca_file = \"{}\"",
            broker.tls_port.unwrap(),
            ca.display()
        ),
        SENSORS,
    ));
    run.publish_until(&broker, None, "dc1/b3/temp1", b"22", "temp", value(22.0))
        .await;

    let mut mtls = Running::start(config(
        &format!(
            "url = \"mqtts://127.0.0.1:{}\"\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"",
            broker.mtls_port.unwrap(),
            ca.display(),
            broker.file("client.crt").display(),
            broker.file("client.key").display()
        ),
        SENSORS,
    ));
    mtls.publish_until(&broker, None, "dc1/b3/temp1", b"24", "temp", value(24.0))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_a_broker_signed_by_another_ca() {
    let broker = Mosquitto::start(Options {
        users: vec![],
        tls: true,
    });
    let other = tempfile::tempdir().unwrap();
    support::mosquitto::make_certs(other.path());
    let run = Running::start(config(
        &format!(
            "url = \"mqtts://localhost:{}\"\nca_file = \"{}\"\nreconnect_max = \"500ms\"",
            broker.tls_port.unwrap(),
            other.path().join("ca.crt").display()
        ),
        SENSORS,
    ));
    let until = Instant::now() + DEADLINE;
    while run.metrics.snapshot().errors_of(ErrorKind::Connect) < 2 {
        assert!(Instant::now() < until, "{:?}", run.metrics.snapshot());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!run.metrics.snapshot().connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_resume_after_the_broker_is_killed_and_restarted() {
    let mut broker = Mosquitto::start(Options::default());
    let mut run = Running::start(config(
        &format!(
            "url = \"mqtt://127.0.0.1:{}\"\nkeep_alive = \"2s\"\nreconnect_max = \"500ms\"",
            broker.port
        ),
        SENSORS,
    ));
    run.publish_until(&broker, None, "dc1/b3/temp1", b"20", "temp", value(20.0))
        .await;
    broker.kill();
    let until = Instant::now() + DEADLINE;
    while run.metrics.snapshot().connected {
        assert!(
            Instant::now() < until,
            "the source did not notice the broker died"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    broker.restart();
    // A clean session has no subscriptions: samples only come back if we resubscribed.
    run.publish_until(&broker, None, "dc1/b3/temp1", b"21", "temp", value(21.0))
        .await;
    let m = run.metrics.snapshot();
    assert!(m.connected);
    assert!(m.errors_of(ErrorKind::Transport) >= 1, "{m:?}");
}

/// The real agent binary: JSON and bare payloads change sensor states in the event log,
/// a malformed payload faults the sensor with its reason, and the agent keeps going.
#[test]
fn the_agent_turns_mqtt_payloads_into_sensor_states_and_survives_garbage() {
    let broker = Mosquitto::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config_path = dir.path().join("firebreak.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[agent]
name = "mqtt-e2e"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[[sources]]
name = "site-broker"
type = "mqtt"
url = "mqtt://127.0.0.1:{port}"
client_id = "firebreak-e2e"

[[sensors]]
id = "b3.smoke.asd1"
zone = "b3"
kind = "smoke"
source = "site-broker"
topic = "dc1/b3/asd1/state"
json_pointer = "/obscuration"
for = "0s"

[[sensors]]
id = "b3.temp.1"
zone = "b3"
kind = "temperature"
source = "site-broker"
topic = "dc1/b3/temp1"
for = "0s"

[[zones]]
id = "b3"
runbook = "r"
confirm = 2

[[runbooks]]
name = "r"
[[runbooks.steps]]
name = "w"
type = "wait"
duration = "1s"
"#,
            state = state.display(),
            port = broker.port
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&config_path, &state.join("events.jsonl"));
    let republish = |agent: &mut Agent,
                     topic: &str,
                     payload: &[u8],
                     what: &str,
                     pred: &dyn Fn(&LoggedEvent) -> bool| {
        let until = std::time::Instant::now() + DEADLINE;
        loop {
            broker.publish(topic, payload, None);
            if agent.events().iter().any(pred) {
                return;
            }
            assert!(
                std::time::Instant::now() < until,
                "{what}\n{}",
                agent.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    let is = |sensor: &'static str, to: SensorState, reason: Reason| {
        move |e: &LoggedEvent| {
            matches!(&e.event, Event::SensorState { sensor: s, to: t, reason: r, .. }
                if s == sensor && *t == to && *r == reason)
        }
    };
    republish(
        &mut agent,
        "dc1/b3/asd1/state",
        br#"{"obscuration": 0.2}"#,
        "smoke at alarm",
        &is(
            "b3.smoke.asd1",
            SensorState::Alarm,
            Reason::Above(Level::Alarm),
        ),
    );
    republish(
        &mut agent,
        "dc1/b3/temp1",
        b"40",
        "temperature at warn",
        &is("b3.temp.1", SensorState::Warn, Reason::Above(Level::Warn)),
    );
    republish(
        &mut agent,
        "dc1/b3/temp1",
        b"{not json",
        "temperature faulted",
        &is(
            "b3.temp.1",
            SensorState::Fault,
            Reason::Fault(FaultKind::BadPayload),
        ),
    );
    republish(
        &mut agent,
        "dc1/b3/temp1",
        b"22",
        "temperature back",
        &|e: &LoggedEvent| {
            matches!(&e.event, Event::SensorState {
                sensor,
                from: SensorState::Fault,
                to: SensorState::Ok,
                ..
            } if sensor == "b3.temp.1")
        },
    );
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
}
