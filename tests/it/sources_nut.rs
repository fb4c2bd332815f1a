//! The NUT source against a real upsd serving dummy-ups: values changed with `upsrw` reach
//! the detection queue as samples, `ups.status` flags read as 0/1, variables that are not
//! readings are faults, a UPS without data faults every sensor, and a upsd killed and
//! restarted is reconnected. The agent-level case (events, /metrics, status page) is in
//! `nut_agent.rs`.

use crate::support::nut::{Nut, Options};
use firebreak::clock::SystemClock;
use firebreak::config::{self, Config};
use firebreak::detect::{FaultKind, Reading, Sample};
use firebreak::sources::metrics::{ErrorKind, SourceMetrics};
use firebreak::sources::nut;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

/// One NUT source `ups` on `url` (extra keys `source`), the given sensors in zone `z`.
fn config(url: &str, source: &str, sensors: &str) -> Config {
    let text = format!(
        r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-nut-test"

[[sources]]
name = "ups"
type = "nut"
url = "{url}"
ups = "ups"
poll_interval = "200ms"
timeout = "1s"
reconnect_max = "1s"
{source}

{sensors}

[[zones]]
id = "z"
runbook = "r"

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

fn sensor(id: &str, kind: &str, keys: &str) -> String {
    format!(
        "[[sensors]]\nid = \"{id}\"\nzone = \"z\"\nkind = \"{kind}\"\nsource = \"ups\"\n{keys}\n"
    )
}

struct Running {
    rx: mpsc::Receiver<Sample>,
    metrics: Arc<SourceMetrics>,
    cancel: CancellationToken,
    config: Config,
}

impl Running {
    fn start(config: Config) -> Running {
        let mut pollers = nut::pollers(&config);
        assert_eq!(pollers.len(), 1);
        let poller = pollers.remove(0);
        let metrics = poller.metrics.clone();
        let (tx, rx) = mpsc::channel(1024);
        let cancel = CancellationToken::new();
        nut::spawn(poller, Arc::new(SystemClock::new()), tx, cancel.clone());
        Running {
            rx,
            metrics,
            cancel,
            config,
        }
    }

    fn index(&self, id: &str) -> u32 {
        self.config.sensors.iter().position(|s| s.id == id).unwrap() as u32
    }

    /// Waits for a sample of `sensor` satisfying `pred`.
    async fn sample_until(&mut self, nut: &Nut, sensor: &str, pred: impl Fn(&Reading) -> bool) {
        let i = self.index(sensor);
        let until = Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(s)) if s.sensor == i && pred(&s.reading) => return,
                Ok(Some(_)) => {}
                _ => panic!(
                    "no matching sample of `{sensor}` within {DEADLINE:?}; metrics {:?}\nupsd log:\n{}",
                    self.metrics.snapshot(),
                    nut.upsd_log()
                ),
            }
        }
    }

    /// Waits until the source's metrics satisfy `pred` (draining samples meanwhile).
    async fn metrics_until(&mut self, what: &str, pred: impl Fn(&SourceMetrics) -> bool) {
        let until = Instant::now() + DEADLINE;
        while !pred(&self.metrics) {
            assert!(
                Instant::now() < until,
                "{what}: not within {DEADLINE:?}; metrics {:?}",
                self.metrics.snapshot()
            );
            let _ = tokio::time::timeout(Duration::from_millis(50), self.rx.recv()).await;
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
async fn values_changed_with_upsrw_reach_the_agent_as_samples() {
    let nut = Nut::start(Options::default());
    let sensors = [
        sensor("runtime", "runtime", r#"variable = "battery.runtime""#),
        sensor("charge", "charge", r#"variable = "battery.charge""#),
        sensor("temp", "temperature", r#"variable = "ups.temperature""#),
        sensor("volts", "voltage", r#"variable = "input.voltage""#),
    ]
    .concat();
    let mut run = Running::start(config(&nut.url(), "", &sensors));
    run.sample_until(&nut, "runtime", value(1800.0)).await;
    run.sample_until(&nut, "charge", value(100.0)).await;
    run.sample_until(&nut, "temp", value(25.5)).await;
    run.sample_until(&nut, "volts", value(230.0)).await;
    nut.set("battery.runtime", "300");
    run.sample_until(&nut, "runtime", value(300.0)).await;
    nut.set("battery.charge", "42");
    run.sample_until(&nut, "charge", value(42.0)).await;
    let m = run.metrics.snapshot();
    assert!(m.connected);
    assert!(m.samples_in >= 6, "{m:?}");
    assert_eq!(m.errors_of(ErrorKind::BadValue), 0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_battery_reads_one_while_ups_status_holds_ob_and_other_flags_read_as_zero_or_one() {
    let nut = Nut::start(Options::default());
    let sensors = [
        sensor("on_battery", "on_battery", r#"variable = "ups.status""#),
        sensor(
            "low",
            "on_battery",
            "variable = \"ups.status\"\nstatus_flag = \"LB\"",
        ),
        sensor(
            "online",
            "on_battery",
            "variable = \"ups.status\"\nstatus_flag = \"OL\"",
        ),
    ]
    .concat();
    let mut run = Running::start(config(&nut.url(), "", &sensors));
    run.sample_until(&nut, "on_battery", value(0.0)).await;
    run.sample_until(&nut, "online", value(1.0)).await;
    nut.set("ups.status", "OB DISCHRG");
    run.sample_until(&nut, "on_battery", value(1.0)).await;
    run.sample_until(&nut, "online", value(0.0)).await;
    run.sample_until(&nut, "low", value(0.0)).await;
    nut.set("ups.status", "OB LB");
    run.sample_until(&nut, "low", value(1.0)).await;
    nut.set("ups.status", "OL CHRG");
    run.sample_until(&nut, "on_battery", value(0.0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_variable_text_and_a_sentinel_are_faults_and_the_rest_still_reads() {
    let nut = Nut::start(Options::default());
    let sensors = [
        sensor("absent", "voltage", r#"variable = "output.voltage""#),
        sensor("text", "temperature", r#"variable = "device.model""#),
        sensor(
            "load",
            "charge",
            "variable = \"ups.load\"\nsentinels = [35]",
        ),
        sensor("runtime", "runtime", r#"variable = "battery.runtime""#),
    ]
    .concat();
    let mut run = Running::start(config(&nut.url(), "", &sensors));
    run.sample_until(&nut, "absent", fault(FaultKind::MissingField))
        .await;
    run.sample_until(&nut, "text", fault(FaultKind::NotNumeric))
        .await;
    run.sample_until(&nut, "load", fault(FaultKind::OutOfRange))
        .await;
    run.sample_until(&nut, "runtime", value(1800.0)).await;
    // Off the sentinel, the same variable is a reading again.
    nut.set("ups.load", "36");
    run.sample_until(&nut, "load", value(36.0)).await;
    let m = run.metrics.snapshot();
    assert!(m.errors_of(ErrorKind::BadValue) >= 3, "{m:?}");
    assert!(m.connected, "faulty values are not a lost link");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_driver_faults_every_sensor_of_the_ups_while_upsd_stays_up() {
    let nut = Nut::start(Options {
        maxage: Some(2),
        ..Options::default()
    });
    let sensors = [
        sensor("on_battery", "on_battery", r#"variable = "ups.status""#),
        sensor("runtime", "runtime", r#"variable = "battery.runtime""#),
    ]
    .concat();
    let mut run = Running::start(config(&nut.url(), "", &sensors));
    run.sample_until(&nut, "runtime", value(1800.0)).await;
    nut.pause_driver();
    run.sample_until(&nut, "runtime", fault(FaultKind::NoData))
        .await;
    run.sample_until(&nut, "on_battery", fault(FaultKind::NoData))
        .await;
    let m = run.metrics.snapshot();
    assert!(
        m.connected,
        "upsd answers: the link is up, the UPS has no data"
    );
    assert!(m.errors_of(ErrorKind::Exception) >= 1, "{m:?}");
    nut.resume_driver();
    run.sample_until(&nut, "runtime", value(1800.0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsd_killed_and_restarted_takes_the_source_down_and_back_up() {
    let mut nut = Nut::start(Options::default());
    let sensors = sensor("runtime", "runtime", r#"variable = "battery.runtime""#);
    let mut run = Running::start(config(&nut.url(), "", &sensors));
    run.sample_until(&nut, "runtime", value(1800.0)).await;
    assert!(run.metrics.is_connected());
    nut.kill_upsd();
    run.metrics_until("the source down", |m| !m.is_connected())
        .await;
    run.metrics_until("a reconnect refused", |m| {
        m.snapshot().errors_of(ErrorKind::Connect) >= 1
    })
    .await;
    let lost = run.metrics.snapshot();
    assert!(
        lost.errors_of(ErrorKind::Transport) + lost.errors_of(ErrorKind::Connect) >= 2,
        "{lost:?}"
    );
    nut.restart();
    nut.set("battery.runtime", "1200");
    run.sample_until(&nut, "runtime", value(1200.0)).await;
    assert!(run.metrics.is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ups_upsd_does_not_serve_faults_its_sensors_with_no_data() {
    let nut = Nut::start(Options::default());
    let text = config(
        &nut.url(),
        "",
        &sensor("runtime", "runtime", r#"variable = "battery.runtime""#),
    );
    // The same source, naming a UPS upsd does not have.
    let mut cfg = text;
    if let firebreak::config::SourceSpec::Nut(n) = &mut cfg.sources[0].spec {
        n.ups = "nosuchups".into();
    }
    let mut run = Running::start(cfg);
    run.sample_until(&nut, "runtime", fault(FaultKind::NoData))
        .await;
    let m = run.metrics.snapshot();
    assert!(m.errors_of(ErrorKind::Exception) >= 1, "{m:?}");
}

/// The agent's /metrics: the value of the line `key` (0 when absent).
fn metric(api: u16, key: &str) -> f64 {
    let (code, text) = crate::support::agent::get(api, "/metrics");
    assert_eq!(code, 200, "/metrics");
    text.lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// The value the status page shows for `sensor`.
fn shown(api: u16, sensor: &str) -> Option<f64> {
    crate::support::agent::status(api)
        .zones
        .iter()
        .flat_map(|z| &z.sensors)
        .find(|s| s.id == sensor)
        .and_then(|s| s.value)
}

fn source_to(e: &crate::support::events::LoggedEvent, to: firebreak::events::Connection) -> bool {
    matches!(&e.event, firebreak::events::Event::SourceState { source, to: t, .. } if source == "ups-b3" && *t == to)
}

/// The real agent with a NUT source: the same self-metrics as every source, its sensors on
/// the status page, and `source_state` down and up when upsd is killed and restarted.
#[test]
fn the_agent_reports_a_nut_source_like_any_other_and_follows_upsd_down_and_back() {
    use crate::support::agent::Agent;
    use firebreak::events::Connection;
    let mut nut = Nut::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let api = crate::support::free_port();
    let state = dir.path().join("state");
    let text = format!(
        r#"
[agent]
name = "nut-agent"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[api]
listen = "127.0.0.1:{api}"

[[sources]]
name = "ups-b3"
type = "nut"
url = "{url}"
ups = "ups"
poll_interval = "250ms"
reconnect_max = "1s"

{sensors}

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
        state = state.display(),
        url = nut.url(),
        sensors = [
            sensor(
                "ups-b3.on_battery",
                "on_battery",
                r#"variable = "ups.status""#
            )
            .replace("source = \"ups\"", "source = \"ups-b3\""),
            sensor(
                "ups-b3.runtime",
                "runtime",
                r#"variable = "battery.runtime""#
            )
            .replace("source = \"ups\"", "source = \"ups-b3\""),
        ]
        .concat()
    );
    let config = dir.path().join("firebreak.toml");
    std::fs::write(&config, text).unwrap();
    let mut agent = Agent::start(&config, &state.join("events.jsonl"));
    agent.wait_for_api(api);
    let wait = |what: &str, agent: &Agent, cond: &dyn Fn() -> bool| {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(
                std::time::Instant::now() < until,
                "{what}\n{}",
                agent.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("the source up with samples", &agent, &|| {
        metric(api, r#"firebreak_source_up{source="ups-b3"}"#) == 1.0
            && metric(api, r#"firebreak_samples_total{source="ups-b3"}"#) >= 4.0
    });
    wait("the sensors' values on the status page", &agent, &|| {
        shown(api, "ups-b3.runtime") == Some(1800.0) && shown(api, "ups-b3.on_battery") == Some(0.0)
    });
    assert!(
        metric(
            api,
            r#"firebreak_source_poll_duration_seconds_count{source="ups-b3"}"#
        ) >= 1.0,
        "poll durations are recorded"
    );

    nut.kill_upsd();
    agent.wait_for("source_state down", Duration::from_secs(30), |e| {
        source_to(e, Connection::Down)
    });
    // Counters are exported on the agent's metrics tick, after the event.
    wait("the outage in the source's metrics", &agent, &|| {
        let errors = metric(
            api,
            r#"firebreak_source_errors_total{error="transport",source="ups-b3"}"#,
        ) + metric(
            api,
            r#"firebreak_source_errors_total{error="connect",source="ups-b3"}"#,
        );
        metric(api, r#"firebreak_source_up{source="ups-b3"}"#) == 0.0 && errors >= 1.0
    });

    nut.restart();
    agent.wait_for("source_state up again", Duration::from_secs(30), |e| {
        source_to(e, Connection::Up)
    });
    nut.set("battery.runtime", "900");
    wait("a new value after the restart", &agent, &|| {
        shown(api, "ups-b3.runtime") == Some(900.0)
    });
    assert_eq!(agent.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nuts_source_reads_over_starttls_with_its_ca_file() {
    let nut = Nut::start(Options {
        tls: true,
        ..Options::default()
    });
    let sensors = sensor("runtime", "runtime", r#"variable = "battery.runtime""#);
    let ca = format!("ca_file = \"{}\"", nut.ca_file().display());
    let mut run = Running::start(config(&nut.tls_url(), &ca, &sensors));
    run.sample_until(&nut, "runtime", value(1800.0)).await;
    assert!(nut.upsd_log().contains("SSL handshake done successfully"));
}
