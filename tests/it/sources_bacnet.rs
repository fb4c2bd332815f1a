//! The BACnet source against a bacpypes3 device (support/bacnet_device.py) on loopback: a
//! fire panel's VESDA level (analog-input), zone state (multi-state-input) and pre-alarm
//! relay (binary-input). Readings by polling and by COV, the device's own fault and
//! out-of-service judgement, an object it lacks, a device without ReadPropertyMultiple, one
//! that refuses COV, a silent device, a restarted device that lost its subscriptions, and
//! subscriptions renewed within a lifetime shorter than the test.

use crate::support;

use firebreak::clock::SystemClock;
use firebreak::config::{self, Config};
use firebreak::detect::{Cause, FaultKind, Reading, Sample, SensorState, ZoneLevel};
use firebreak::sources::bacnet;
use firebreak::sources::metrics::{ErrorKind, SourceMetrics};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use support::agent::Agent;
use support::bacnet::{BacnetDevice, Options};
use support::events::Event;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

pub const VESDA: &str = "analog-input,3";
pub const ZONE: &str = "multi-state-input,12";
pub const PREALARM: &str = "binary-input,40";

/// The panel at rest: clean air, zone normal (1), relay open.
pub fn panel_objects() -> serde_json::Value {
    json!([
        {"id": VESDA, "name": "VESDA B3", "presentValue": 0.01, "units": "percentObscurationPerMeter"},
        {"id": ZONE, "name": "Zone 3 battery room", "presentValue": 1, "numberOfStates": 3},
        {"id": PREALARM, "name": "Pre-alarm relay", "presentValue": "inactive"},
    ])
}

/// The panel's three sensors (the zone's fire state is 3).
pub const SENSORS: &str = r#"
[[sensors]]
id = "b3.vesda.1"
zone = "z"
kind = "smoke"
source = "panel"
object = "analog-input,3"

[[sensors]]
id = "b3.panel.zone3"
zone = "z"
kind = "smoke"
source = "panel"
object = "multi-state-input,12"
equals = 3

[[sensors]]
id = "b3.panel.prealarm"
zone = "z"
kind = "smoke"
source = "panel"
object = "binary-input,40"
"#;

fn config(d: &BacnetDevice, source: &str, sensors: &str) -> Config {
    let text = format!(
        r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-bacnet-test"

[[sources]]
name = "panel"
type = "bacnet"
url = "{url}"
device_instance = {instance}
timeout = "300ms"
retries = 1
reconnect_max = "500ms"
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
"#,
        url = d.url(),
        instance = d.instance,
    );
    config::load_str(&text, "test", HashMap::new())
        .unwrap_or_else(|e| panic!("config: {:?}", e.errors))
        .config
}

/// The source's task, running in the test, its samples and counters.
struct Running {
    rx: mpsc::Receiver<Sample>,
    metrics: Arc<SourceMetrics>,
    cancel: CancellationToken,
    config: Config,
}

impl Running {
    fn start(config: Config) -> Running {
        let mut pollers = bacnet::pollers(&config);
        assert_eq!(pollers.len(), 1);
        let poller = pollers.remove(0);
        let metrics = poller.metrics.clone();
        let (tx, rx) = mpsc::channel(1024);
        let cancel = CancellationToken::new();
        bacnet::spawn(poller, Arc::new(SystemClock::new()), tx, cancel.clone());
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

    /// Waits for a sample of `sensor` that satisfies `pred`.
    async fn reading(
        &mut self,
        d: &BacnetDevice,
        sensor: &str,
        pred: impl Fn(&Reading) -> bool,
    ) -> Reading {
        let index = self.sensor(sensor);
        let until = Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(until, self.rx.recv()).await {
                Ok(Some(s)) if s.sensor == index && pred(&s.reading) => return s.reading,
                Ok(Some(_)) => {}
                _ => panic!(
                    "no matching sample of `{sensor}` within {DEADLINE:?}; metrics {:?}\n{}",
                    self.metrics.snapshot(),
                    d.log_tail()
                ),
            }
        }
    }

    /// Waits until the counters satisfy `pred`.
    async fn metrics_until(
        &mut self,
        d: &BacnetDevice,
        what: &str,
        pred: impl Fn(&firebreak::sources::metrics::Snapshot) -> bool,
    ) {
        let until = Instant::now() + DEADLINE;
        while !pred(&self.metrics.snapshot()) {
            assert!(
                Instant::now() < until,
                "{what}: not within {DEADLINE:?}; metrics {:?}\n{}",
                self.metrics.snapshot(),
                d.log_tail()
            );
            // Keep the channel drained so the source never waits on it.
            while self.rx.try_recv().is_ok() {}
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Drops every sample received so far.
    fn drain(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn value(v: f64) -> impl Fn(&Reading) -> bool {
    move |r| matches!(r, Reading::Value(x) if (x - v).abs() < 1e-6)
}

fn fault(f: FaultKind) -> impl Fn(&Reading) -> bool {
    move |r| *r == Reading::Fault(f)
}

/// The panel's sensors read it at rest, then its fire once the device says so.
async fn reads_rest_then_fire(run: &mut Running, d: &mut BacnetDevice) {
    run.reading(d, "b3.vesda.1", value(0.01)).await;
    run.reading(d, "b3.panel.zone3", value(0.0)).await;
    run.reading(d, "b3.panel.prealarm", value(0.0)).await;
    d.set(VESDA, json!({"presentValue": 0.3}));
    d.set(ZONE, json!({"presentValue": 3}));
    d.set(PREALARM, json!({"presentValue": "active"}));
    run.reading(d, "b3.vesda.1", value(0.3)).await;
    run.reading(d, "b3.panel.zone3", value(1.0)).await;
    run.reading(d, "b3.panel.prealarm", value(1.0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_readings_follow_the_panel_as_it_changes() {
    let mut d = BacnetDevice::start(3101, panel_objects(), Options::default());
    let mut run = Running::start(config(&d, "poll_interval = \"200ms\"", SENSORS));
    reads_rest_then_fire(&mut run, &mut d).await;
    let m = run.metrics.snapshot();
    assert!(m.connected, "{m:?}");
    assert!(m.samples_in >= 6, "{m:?}");
    for k in ErrorKind::ALL {
        assert_eq!(m.errors_of(k), 0, "{k:?}: {m:?}");
    }
}

/// With COV and a poll every hour, a change can only arrive as a notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cov_notifications_bring_the_fire_without_waiting_for_a_poll() {
    let mut d = BacnetDevice::start(3101, panel_objects(), Options::default());
    let source = "poll_interval = \"1h\"\ncov = true\ncov_lifetime = \"60s\"";
    let mut run = Running::start(config(&d, source, SENSORS));
    run.reading(&d, "b3.panel.zone3", value(0.0)).await;
    d.wait_subscribed(&[VESDA, ZONE, PREALARM], DEADLINE);
    run.drain();
    reads_rest_then_fire_after_subscribing(&mut run, &mut d).await;
    assert!(run.metrics.snapshot().connected);
}

async fn reads_rest_then_fire_after_subscribing(run: &mut Running, d: &mut BacnetDevice) {
    d.set(ZONE, json!({"presentValue": 3}));
    run.reading(d, "b3.panel.zone3", value(1.0)).await;
    d.set(PREALARM, json!({"presentValue": "active"}));
    run.reading(d, "b3.panel.prealarm", value(1.0)).await;
    d.set(VESDA, json!({"presentValue": 0.3}));
    run.reading(d, "b3.vesda.1", value(0.3)).await;
    // And back: the zone restored is a notification too.
    d.set(ZONE, json!({"presentValue": 1}));
    run.reading(d, "b3.panel.zone3", value(0.0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_device_saying_fault_or_out_of_service_is_a_fault_never_a_reading() {
    let mut d = BacnetDevice::start(3101, panel_objects(), Options::default());
    let sensors = format!(
        r#"{SENSORS}
[[sensors]]
id = "b3.ghost"
zone = "z"
kind = "smoke"
source = "panel"
object = "analog-input,99"
"#
    );
    let mut run = Running::start(config(&d, "poll_interval = \"200ms\"", &sensors));
    run.reading(&d, "b3.vesda.1", value(0.01)).await;
    run.reading(&d, "b3.ghost", fault(FaultKind::NoSuchObject))
        .await;
    d.set(
        VESDA,
        json!({"reliability": "unreliableOther", "presentValue": 0.5}),
    );
    run.reading(&d, "b3.vesda.1", fault(FaultKind::BacnetFault))
        .await;
    d.set(ZONE, json!({"outOfService": true, "presentValue": 3}));
    run.reading(&d, "b3.panel.zone3", fault(FaultKind::BacnetOutOfService))
        .await;
    // The other sensors keep reading.
    d.set(PREALARM, json!({"presentValue": "active"}));
    run.reading(&d, "b3.panel.prealarm", value(1.0)).await;
    // Repaired and back in service: readings again.
    d.set(VESDA, json!({"reliability": "noFaultDetected"}));
    d.set(ZONE, json!({"outOfService": false}));
    run.reading(&d, "b3.vesda.1", value(0.5)).await;
    run.reading(&d, "b3.panel.zone3", value(1.0)).await;
    let m = run.metrics.snapshot();
    assert!(m.errors_of(ErrorKind::NoSuchObject) >= 1, "{m:?}");
    assert!(m.connected, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_without_read_property_multiple_is_read_one_property_at_a_time() {
    let opts = Options {
        no_rpm: true,
        ..Options::default()
    };
    let mut d = BacnetDevice::start(3101, panel_objects(), opts);
    let mut run = Running::start(config(&d, "poll_interval = \"200ms\"", SENSORS));
    reads_rest_then_fire(&mut run, &mut d).await;
    let m = run.metrics.snapshot();
    assert!(m.connected, "{m:?}");
    assert_eq!(m.errors_of(ErrorKind::Exception), 0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_refuses_cov_is_polled_and_says_so() {
    let opts = Options {
        no_cov: true,
        ..Options::default()
    };
    let mut d = BacnetDevice::start(3101, panel_objects(), opts);
    let source = "poll_interval = \"200ms\"\ncov = true";
    let mut run = Running::start(config(&d, source, SENSORS));
    run.metrics_until(&d, "three refusals", |m| {
        m.errors_of(ErrorKind::CovRefused) >= 3
    })
    .await;
    reads_rest_then_fire(&mut run, &mut d).await;
    // Refused once per object, not on every poll.
    assert_eq!(run.metrics.snapshot().errors_of(ErrorKind::CovRefused), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_goes_down_and_a_restarted_one_is_subscribed_again() {
    let mut d = BacnetDevice::start(3101, panel_objects(), Options::default());
    let source = "poll_interval = \"300ms\"\ncov = true\ncov_lifetime = \"5m\"";
    let mut run = Running::start(config(&d, source, SENSORS));
    d.wait_subscribed(&[VESDA, ZONE, PREALARM], DEADLINE);
    d.kill();
    run.metrics_until(&d, "the source noticed the device went silent", |m| {
        !m.connected
    })
    .await;
    let m = run.metrics.snapshot();
    assert!(
        m.errors_of(ErrorKind::Timeout) + m.errors_of(ErrorKind::Connect) >= 1,
        "{m:?}"
    );
    d.restart();
    assert!(d.subscriptions().is_empty(), "a fresh device");
    // Re-subscribed long before the 5-minute lifetime would have renewed them.
    d.wait_subscribed(&[VESDA, ZONE, PREALARM], DEADLINE);
    run.metrics_until(&d, "up again", |m| m.connected).await;
    run.drain();
    d.set(ZONE, json!({"presentValue": 3}));
    run.reading(&d, "b3.panel.zone3", value(1.0)).await;
}

/// A 3-second lifetime and a poll every hour: only renewals keep the subscriptions, and
/// changes keep arriving as notifications well past the first lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_renewed_before_their_lifetime_lapses() {
    let mut d = BacnetDevice::start(3101, panel_objects(), Options::default());
    let source = "poll_interval = \"1h\"\ncov = true\ncov_lifetime = \"3s\"";
    let mut run = Running::start(config(&d, source, SENSORS));
    d.wait_subscribed(&[VESDA, ZONE, PREALARM], DEADLINE);
    let watch = std::time::Instant::now();
    let mut lowest = u64::MAX;
    while watch.elapsed() < Duration::from_secs(8) {
        let subs = d.subscriptions();
        for o in [VESDA, ZONE, PREALARM] {
            lowest = lowest.min(subs.get(o).copied().unwrap_or(0));
        }
        run.drain();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        lowest,
        1,
        "a subscription lapsed within 8 s\n{}",
        d.log_tail()
    );
    reads_rest_then_fire_after_subscribing(&mut run, &mut d).await;
}

/// The real agent with the panel: the panel confirms a fire in zone 3 (its multi-state
/// zone goes to 3), and that alone makes the zone critical (confirm = 2 is not waited
/// for) and starts the runbook, whose first step writes the wall clock to a file. Returns
/// the seconds from the device applying the change to that step.
fn panel_fire_to_first_step(cov: bool) -> f64 {
    let mut d = BacnetDevice::start(3101, panel_objects(), Options::default());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let stamp = dir.path().join("step.stamp");
    let config_path = dir.path().join("firebreak.toml");
    let api_port = support::free_port();
    let how = if cov {
        "cov = true\ncov_lifetime = \"60s\"\npoll_interval = \"5s\""
    } else {
        "poll_interval = \"1s\""
    };
    std::fs::write(
        &config_path,
        format!(
            r#"
[agent]
name = "bacnet-e2e"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[api]
listen = "127.0.0.1:{api_port}"

[[sources]]
name = "panel"
type = "bacnet"
url = "{url}"
device_instance = 3101
timeout = "500ms"
{how}

[[sensors]]
id = "b3.vesda.1"
zone = "b3"
kind = "smoke"
source = "panel"
object = "analog-input,3"

[[sensors]]
id = "b3.panel.zone3"
zone = "b3"
kind = "alarm_input"
source = "panel"
object = "multi-state-input,12"
equals = 3
confirmed = true

[[sensors]]
id = "b3.panel.prealarm"
zone = "b3"
kind = "alarm_input"
source = "panel"
object = "binary-input,40"

[[zones]]
id = "b3"
runbook = "evacuate"
confirm = 2

[[runbooks]]
name = "evacuate"

[[runbooks.steps]]
name = "stamp"
type = "command"
argv = ["/bin/sh", "-c", "date +%s.%N > {stamp}"]
timeout = "5s"

[[runbooks.steps]]
name = "hold"
type = "wait"
duration = "1s"
"#,
            state = state.display(),
            url = d.url(),
            stamp = stamp.display(),
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&config_path, &state.join("events.jsonl"));
    let answering = std::time::Instant::now() + DEADLINE;
    while !std::fs::read_to_string(&agent.stderr_log)
        .unwrap_or_default()
        .contains("BACnet device answering")
    {
        assert!(
            std::time::Instant::now() < answering,
            "{}",
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    if cov {
        d.wait_subscribed(&[VESDA, ZONE, PREALARM], DEADLINE);
    }
    d.set(ZONE, json!({"presentValue": 3}));
    agent.wait_for(
        "the zone critical on the panel's word alone",
        DEADLINE,
        |e| {
            matches!(&e.event, Event::ZoneLevel { zone, to: ZoneLevel::Critical, evidence, .. }
            if zone == "b3"
                && evidence.len() == 1
                && evidence[0].sensor == "b3.panel.zone3"
                && evidence[0].state == SensorState::Critical)
        },
    );
    agent.wait_for("the runbook started", DEADLINE, |e| {
        matches!(&e.event, Event::RunbookStarted { zone, cause: Cause::Fire, .. } if zone == "b3")
    });
    let until = std::time::Instant::now() + DEADLINE;
    let step_at = loop {
        if let Some(t) = std::fs::read_to_string(&stamp)
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok())
        {
            break t;
        }
        assert!(
            std::time::Instant::now() < until,
            "no stamp\n{}",
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let applied = d.applied_at().expect("the device applied the change");
    // The source's self-metrics, as every source reports them.
    let (_, metrics) = support::agent::get(api_port, "/metrics");
    assert!(
        metrics.contains(r#"firebreak_source_up{source="panel"} 1"#),
        "{metrics}"
    );
    let samples = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"firebreak_samples_total{source="panel"} "#))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(samples >= 3.0, "{metrics}");
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
    step_at - applied
}

#[test]
fn a_confirmed_panel_fire_alone_starts_the_runbook_over_cov() {
    let s = panel_fire_to_first_step(true);
    eprintln!(
        "bacnet latency, panel state change -> first runbook step, COV: {:.0} ms",
        s * 1e3
    );
}

#[test]
fn a_confirmed_panel_fire_alone_starts_the_runbook_over_polling() {
    let s = panel_fire_to_first_step(false);
    eprintln!(
        "bacnet latency, panel state change -> first runbook step, polled every 1s: {:.0} ms",
        s * 1e3
    );
}

/// `firebreak probe bacnet` lists the panel's objects with their names, values, units and
/// status, so the sensors can be written from it.
#[test]
fn the_probe_lists_the_panels_objects() {
    let mut d = BacnetDevice::start(3101, panel_objects(), Options::default());
    d.set(VESDA, json!({"reliability": "unreliableOther"}));
    std::thread::sleep(Duration::from_millis(200));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(["probe", "bacnet", &d.url(), "--device", "3101"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |object: &str| {
        text.lines()
            .find(|l| l.starts_with(object))
            .unwrap_or_else(|| panic!("no line for {object}:\n{text}"))
            .to_string()
    };
    assert!(text.starts_with("device 3101 \"panel\""), "{text}");
    let vesda = line(VESDA);
    assert!(
        vesda.contains("\"VESDA B3\"")
            && vesda.contains("0.01")
            && vesda.contains("percent-obscuration-per-meter")
            && vesda.contains("fault"),
        "{vesda}"
    );
    let zone = line(ZONE);
    assert!(
        zone.contains("\"Zone 3 battery room\"") && zone.contains(" 1 "),
        "{zone}"
    );
    assert!(line(PREALARM).contains("0 (inactive)"), "{text}");
    // The wrong instance is a usage error naming the option.
    let wrong = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(["probe", "bacnet", &d.url(), "--device", "99"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("check --device"));
}
