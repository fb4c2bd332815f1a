//! The SNMP source against a real net-snmp `snmpd` serving UPS-MIB (RFC 1628) through
//! `pass_persist`: v2c, v3 authPriv with SHA-256 and AES-128, v3 authNoPriv with SHA-1,
//! values that change while the source polls, a wrong community, wrong v3 passwords, an
//! object the agent does not have, and an agent killed and started again (a new engine
//! boot). The real agent binary reads the UPS too and reports the source in /metrics and
//! check-config.

use crate::support;

use firebreak::clock::SystemClock;
use firebreak::config::{self, Config};
use firebreak::detect::{FaultKind, Level, Reading, Reason, Sample, SensorState};
use firebreak::sources::metrics::{ErrorKind, SourceMetrics};
use firebreak::sources::snmp;
use firebreak::sources::snmp::client::{Client, Credentials, OidFault, SnmpError, UsmUser};
use firebreak::sources::snmp::usm::{AuthProtocol, PrivProtocol};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use support::agent::Agent;
use support::events::Event;
use support::snmpd::{oids, Options, Snmpd, User};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

const AUTH_PASSWORD: &str = "auth-pass-b3";
const PRIV_PASSWORD: &str = "priv-pass-b3";

/// A UPS on mains: output source normal(3), 42 minutes of runtime.
fn on_mains() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (oids::OUTPUT_SOURCE, "integer", "3"),
        (oids::MINUTES_REMAINING, "integer", "42"),
        (oids::SECONDS_ON_BATTERY, "integer", "0"),
        (oids::CHARGE_REMAINING, "integer", "100"),
        (oids::BATTERY_TEMPERATURE, "integer", "24"),
        (oids::INPUT_VOLTAGE, "integer", "231"),
        (oids::ALARMS_PRESENT, "gauge", "0"),
    ]
}

/// The same UPS after the mains failed: on battery(5), 7 minutes left.
fn on_battery() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (oids::OUTPUT_SOURCE, "integer", "5"),
        (oids::MINUTES_REMAINING, "integer", "7"),
        (oids::SECONDS_ON_BATTERY, "integer", "12"),
        (oids::CHARGE_REMAINING, "integer", "81"),
        (oids::BATTERY_TEMPERATURE, "integer", "26"),
        (oids::INPUT_VOLTAGE, "integer", "0"),
        (oids::ALARMS_PRESENT, "gauge", "1"),
    ]
}

fn v3_user(name: &str, auth: &'static str, with_priv: bool) -> User {
    User {
        name: name.into(),
        auth,
        auth_password: AUTH_PASSWORD.into(),
        priv_password: with_priv.then(|| PRIV_PASSWORD.into()),
    }
}

/// A secret file only its owner reads.
fn secret(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// The keys of a v2c source reading `snmpd` with `community`.
fn v2c_source(d: &Snmpd, community: &str) -> String {
    let file = secret(&d.dir(), "community", community);
    format!(
        "url = \"{}\"\nversion = \"2c\"\ncommunity_file = \"{}\"",
        d.url(),
        file.display()
    )
}

/// The keys of a v3 source.
fn v3_source(d: &Snmpd, user: &str, auth: &str, auth_pw: &str, privacy: Option<&str>) -> String {
    let auth_file = secret(&d.dir(), "auth", auth_pw);
    let mut s = format!(
        "url = \"{}\"\nversion = \"3\"\nusername = \"{user}\"\nauth_protocol = \"{auth}\"\nauth_password_file = \"{}\"",
        d.url(),
        auth_file.display()
    );
    if let Some(pw) = privacy {
        let priv_file = secret(&d.dir(), "priv", pw);
        s.push_str(&format!(
            "\npriv_protocol = \"aes128\"\npriv_password_file = \"{}\"",
            priv_file.display()
        ));
    }
    s
}

const SENSORS: &str = r#"
[[sensors]]
id = "ups.on_battery"
zone = "z"
kind = "on_battery"
source = "ups"
oid = "1.3.6.1.2.1.33.1.4.1.0"
equals = 5

[[sensors]]
id = "ups.runtime"
zone = "z"
kind = "runtime"
source = "ups"
oid = ".1.3.6.1.2.1.33.1.2.3.0"
scale = 60.0

[[sensors]]
id = "ups.charge"
zone = "z"
kind = "charge"
source = "ups"
oid = "1.3.6.1.2.1.33.1.2.4.0"

[[sensors]]
id = "ups.input"
zone = "z"
kind = "voltage"
source = "ups"
oid = "1.3.6.1.2.1.33.1.3.3.1.3.1"
"#;

fn config(source: &str, sensors: &str) -> Config {
    let text = format!(
        r#"
[agent]
name = "t"
state_dir = "/tmp/firebreak-snmp-test"

[[sources]]
name = "ups"
type = "snmp"
poll_interval = "200ms"
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
"#
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
        let mut pollers = snmp::pollers(&config);
        assert_eq!(pollers.len(), 1);
        let poller = pollers.remove(0);
        let metrics = poller.metrics.clone();
        let (tx, rx) = mpsc::channel(1024);
        let cancel = CancellationToken::new();
        snmp::spawn(poller, Arc::new(SystemClock::new()), tx, cancel.clone());
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
        d: &Snmpd,
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
                    d.log_text()
                ),
            }
        }
    }

    /// Waits until the counters satisfy `pred`.
    async fn metrics_until(
        &self,
        d: &Snmpd,
        what: &str,
        pred: impl Fn(&firebreak::sources::metrics::Snapshot) -> bool,
    ) {
        let until = Instant::now() + DEADLINE;
        while !pred(&self.metrics.snapshot()) {
            assert!(
                Instant::now() < until,
                "{what}: not within {DEADLINE:?}; metrics {:?}\n{}",
                self.metrics.snapshot(),
                d.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
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

/// Every sensor of [`SENSORS`] reads the UPS on mains, then on battery once snmpd serves
/// the new values.
async fn reads_mains_then_battery(run: &mut Running, d: &Snmpd) {
    run.reading(d, "ups.on_battery", value(0.0)).await;
    run.reading(d, "ups.runtime", value(42.0 * 60.0)).await;
    run.reading(d, "ups.charge", value(100.0)).await;
    run.reading(d, "ups.input", value(231.0)).await;
    d.set_values(&on_battery());
    run.reading(d, "ups.on_battery", value(1.0)).await;
    run.reading(d, "ups.runtime", value(7.0 * 60.0)).await;
    run.reading(d, "ups.input", value(0.0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2c_readings_follow_the_ups_as_its_values_change() {
    let d = Snmpd::start(Options::default(), &on_mains());
    let mut run = Running::start(config(&v2c_source(&d, "public"), SENSORS));
    reads_mains_then_battery(&mut run, &d).await;
    let m = run.metrics.snapshot();
    assert!(m.connected, "{m:?}");
    assert!(m.samples_in >= 7, "{m:?}");
    assert_eq!(m.errors_of(ErrorKind::Timeout), 0, "{m:?}");
    assert_eq!(m.errors_of(ErrorKind::NoSuchObject), 0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_auth_priv_with_sha256_and_aes128_reads_the_ups() {
    let opts = Options {
        users: vec![v3_user("fb256", "SHA-256", true)],
        ..Options::default()
    };
    let d = Snmpd::start(opts, &on_mains());
    // net-snmp's own client agrees with the values served.
    let theirs = d
        .snmpget(
            &[
                "-v3",
                "-l",
                "authPriv",
                "-u",
                "fb256",
                "-a",
                "SHA-256",
                "-A",
                AUTH_PASSWORD,
                "-x",
                "AES",
                "-X",
                PRIV_PASSWORD,
            ],
            oids::MINUTES_REMAINING,
        )
        .unwrap();
    assert!(theirs.ends_with("INTEGER: 42"), "{theirs}");
    let source = v3_source(&d, "fb256", "sha256", AUTH_PASSWORD, Some(PRIV_PASSWORD));
    let mut run = Running::start(config(&source, SENSORS));
    reads_mains_then_battery(&mut run, &d).await;
    let m = run.metrics.snapshot();
    assert!(m.connected, "{m:?}");
    assert_eq!(m.errors_of(ErrorKind::Authentication), 0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_auth_no_priv_with_sha1_reads_the_ups() {
    let opts = Options {
        users: vec![v3_user("fbsha1", "SHA", false)],
        ..Options::default()
    };
    let d = Snmpd::start(opts, &on_mains());
    let source = v3_source(&d, "fbsha1", "sha1", AUTH_PASSWORD, None);
    let mut run = Running::start(config(&source, SENSORS));
    reads_mains_then_battery(&mut run, &d).await;
    assert!(run.metrics.snapshot().connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_community_gets_no_answer_and_counts_as_timeouts() {
    let d = Snmpd::start(Options::default(), &on_mains());
    let run = Running::start(config(&v2c_source(&d, "not-the-community"), SENSORS));
    run.metrics_until(&d, "two timeouts", |m| m.errors_of(ErrorKind::Timeout) >= 2)
        .await;
    let m = run.metrics.snapshot();
    assert!(!m.connected, "{m:?}");
    assert_eq!(m.samples_in, 0, "{m:?}");
    assert_eq!(m.errors_of(ErrorKind::Authentication), 0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_v3_passwords_are_authentication_errors() {
    let opts = Options {
        users: vec![v3_user("fb256", "SHA-256", true)],
        ..Options::default()
    };
    let d = Snmpd::start(opts, &on_mains());
    let oid = [oids::MINUTES_REMAINING.parse().unwrap()];
    let target = format!("127.0.0.1:{}", d.port);
    let client = |auth: &str, privacy: &str| {
        let user = UsmUser::new(
            "fb256",
            AuthProtocol::Sha256,
            auth.as_bytes(),
            PrivProtocol::Aes128,
            privacy.as_bytes(),
        );
        Client::new(
            target.clone(),
            Credentials::Usm(user),
            Duration::from_millis(500),
            1,
        )
    };
    // The right passwords read. A wrong auth password is refused by a report
    // (usmStatsWrongDigests); a wrong privacy password gets no answer at all from snmpd,
    // but after the agent answered discovery that silence is the key's, not an outage;
    // a user the agent does not know is refused by name.
    assert_eq!(
        client(AUTH_PASSWORD, PRIV_PASSWORD)
            .get(&oid)
            .await
            .unwrap(),
        [Ok(42.0)]
    );
    let wrong_auth = client("not-the-password", PRIV_PASSWORD)
        .get(&oid)
        .await
        .unwrap_err();
    assert!(
        matches!(wrong_auth, SnmpError::Authentication(_)),
        "{wrong_auth}"
    );
    assert_eq!(wrong_auth.kind(), ErrorKind::Authentication);
    let wrong_priv = client(AUTH_PASSWORD, "not-the-password")
        .get(&oid)
        .await
        .unwrap_err();
    assert!(
        matches!(wrong_priv, SnmpError::Authentication(_)),
        "{wrong_priv}"
    );
    let stranger = UsmUser::new(
        "nobody",
        AuthProtocol::Sha256,
        AUTH_PASSWORD.as_bytes(),
        PrivProtocol::Aes128,
        PRIV_PASSWORD.as_bytes(),
    );
    let unknown = Client::new(
        target.clone(),
        Credentials::Usm(stranger),
        Duration::from_millis(500),
        1,
    )
    .get(&oid)
    .await
    .unwrap_err();
    assert!(matches!(unknown, SnmpError::UnknownUser(_)), "{unknown}");
    assert_eq!(unknown.kind(), ErrorKind::Authentication);

    // The source with the wrong password: counted by kind, down, no samples.
    let source = v3_source(
        &d,
        "fb256",
        "sha256",
        "not-the-password",
        Some(PRIV_PASSWORD),
    );
    let run = Running::start(config(&source, SENSORS));
    run.metrics_until(&d, "authentication errors", |m| {
        m.errors_of(ErrorKind::Authentication) >= 2
    })
    .await;
    let m = run.metrics.snapshot();
    assert!(!m.connected, "{m:?}");
    assert_eq!(m.samples_in, 0, "{m:?}");
    assert_eq!(m.errors_of(ErrorKind::Timeout), 0, "{m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_the_agent_lacks_faults_its_sensor_and_the_others_keep_reading() {
    let d = Snmpd::start(Options::default(), &on_mains());
    let sensors = format!(
        r#"{SENSORS}
[[sensors]]
id = "ups.temp"
zone = "z"
kind = "temperature"
source = "ups"
oid = "1.3.6.1.2.1.33.1.2.99.0"
"#
    );
    let mut run = Running::start(config(&v2c_source(&d, "public"), &sensors));
    run.reading(&d, "ups.temp", fault(FaultKind::NoSuchObject))
        .await;
    run.reading(&d, "ups.runtime", value(42.0 * 60.0)).await;
    d.set_values(&on_battery());
    run.reading(&d, "ups.runtime", value(7.0 * 60.0)).await;
    run.reading(&d, "ups.temp", fault(FaultKind::NoSuchObject))
        .await;
    let m = run.metrics.snapshot();
    assert!(m.connected, "{m:?}");
    assert!(m.errors_of(ErrorKind::NoSuchObject) >= 2, "{m:?}");

    // The client says which: snmpd answers noSuchInstance inside a subtree it serves.
    let mut client = Client::new(
        format!("127.0.0.1:{}", d.port),
        Credentials::Community(b"public".to_vec()),
        Duration::from_millis(500),
        1,
    );
    let got = client
        .get(&[
            oids::CHARGE_REMAINING.parse().unwrap(),
            "1.3.6.1.2.1.33.1.2.99.0".parse().unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(got, [Ok(81.0), Err(OidFault::NoSuchInstance)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_value_is_out_of_range_and_numbers_in_text_read() {
    let mut values = on_mains();
    values.push((oids::BATTERY_TEMPERATURE, "string", "23.5"));
    values.retain(|(o, t, _)| *o != oids::BATTERY_TEMPERATURE || *t == "string");
    let d = Snmpd::start(Options::default(), &values);
    let sensors = r#"
[[sensors]]
id = "ups.temp"
zone = "z"
kind = "temperature"
source = "ups"
oid = "1.3.6.1.2.1.33.1.2.7.0"

[[sensors]]
id = "ups.charge"
zone = "z"
kind = "charge"
source = "ups"
oid = "1.3.6.1.2.1.33.1.2.4.0"
sentinels = [255]
"#;
    let mut run = Running::start(config(&v2c_source(&d, "public"), sensors));
    run.reading(&d, "ups.temp", value(23.5)).await;
    run.reading(&d, "ups.charge", value(100.0)).await;
    let mut values = on_mains();
    values.retain(|(o, _, _)| *o != oids::CHARGE_REMAINING);
    values.push((oids::CHARGE_REMAINING, "integer", "255"));
    d.set_values(&values);
    run.reading(&d, "ups.charge", fault(FaultKind::OutOfRange))
        .await;
    assert!(run.metrics.snapshot().errors_of(ErrorKind::BadValue) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_goes_down_when_snmpd_dies_and_reads_again_after_its_restart() {
    let opts = Options {
        users: vec![v3_user("fb256", "SHA-256", true)],
        ..Options::default()
    };
    let mut d = Snmpd::start(opts, &on_mains());
    let source = v3_source(&d, "fb256", "sha256", AUTH_PASSWORD, Some(PRIV_PASSWORD));
    let mut run = Running::start(config(&source, SENSORS));
    run.reading(&d, "ups.runtime", value(42.0 * 60.0)).await;
    d.kill();
    run.metrics_until(&d, "the source noticed snmpd died", |m| !m.connected)
        .await;
    d.set_values(&on_battery());
    d.restart();
    run.reading(&d, "ups.runtime", value(7.0 * 60.0)).await;
    let m = run.metrics.snapshot();
    assert!(m.connected, "{m:?}");
    assert!(
        m.errors_of(ErrorKind::Timeout) + m.errors_of(ErrorKind::Connect) >= 1,
        "{m:?}"
    );
    assert_eq!(m.errors_of(ErrorKind::Authentication), 0, "{m:?}");
}

/// The agent binary: readings become sensor states, the source's counters are in /metrics
/// by kind, and check-config describes the source.
#[test]
fn the_agent_reads_the_ups_over_snmp_and_reports_the_source() {
    let d = Snmpd::start(Options::default(), &on_mains());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let api_port = support::free_port();
    let config_path = dir.path().join("firebreak.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[agent]
name = "snmp-e2e"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[api]
listen = "127.0.0.1:{api_port}"

[[sources]]
name = "ups"
type = "snmp"
poll_interval = "200ms"
timeout = "300ms"
{source}

{SENSORS}

[[sensors]]
id = "ups.missing"
zone = "z"
kind = "temperature"
source = "ups"
oid = "1.3.6.1.2.1.33.1.2.99.0"

[[zones]]
id = "z"
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
            source = v2c_source(&d, "public"),
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(["check-config", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        summary.contains(&format!(
            "snmp v2c udp://127.0.0.1:{}, every 200ms, timeout 300ms x2, 5 OID(s) per GET; 5 sensor(s)",
            d.port
        )),
        "{summary}"
    );

    let mut agent = Agent::start(&config_path, &state.join("events.jsonl"));
    agent.wait_for_api(api_port);
    let metrics = || -> HashMap<String, f64> {
        let (_, text) = support::agent::get(api_port, "/metrics");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    };
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        let m = metrics();
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
        if get(r#"firebreak_source_up{source="ups"}"#) == 1.0
            && get(r#"firebreak_samples_total{source="ups"}"#) >= 10.0
            && get(r#"firebreak_source_errors_total{error="no_such_object",source="ups"}"#) >= 1.0
        {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the source's metrics: {:?}\n{}",
            m.iter()
                .filter(|(k, _)| k.contains("source"))
                .collect::<Vec<_>>(),
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.wait_for("ups.missing faults with no_such_object", DEADLINE, |e| {
        matches!(&e.event, Event::SensorState { sensor, to: SensorState::Fault, reason, .. }
            if sensor == "ups.missing" && *reason == Reason::Fault(FaultKind::NoSuchObject))
    });
    // The UPS goes on battery: the event log says so.
    d.set_values(&on_battery());
    agent.wait_for("ups.on_battery warns", DEADLINE, |e| {
        matches!(&e.event, Event::SensorState { sensor, to: SensorState::Warn, reason, .. }
            if sensor == "ups.on_battery" && *reason == Reason::Above(Level::Warn))
    });
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
}

/// A v3 client that did not see the agent go: its next request carries the old engine's
/// boots and time, and the agent's report (not a timeout) brings it back in step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v3_client_resynchronises_with_a_restarted_agent_on_its_next_request() {
    let opts = Options {
        users: vec![v3_user("fb256", "SHA-256", true)],
        ..Options::default()
    };
    let mut d = Snmpd::start(opts, &on_mains());
    let user = UsmUser::new(
        "fb256",
        AuthProtocol::Sha256,
        AUTH_PASSWORD.as_bytes(),
        PrivProtocol::Aes128,
        PRIV_PASSWORD.as_bytes(),
    );
    let mut client = Client::new(
        format!("127.0.0.1:{}", d.port),
        Credentials::Usm(user),
        Duration::from_secs(1),
        0,
    );
    let oid = [oids::MINUTES_REMAINING.parse().unwrap()];
    assert_eq!(client.get(&oid).await.unwrap(), [Ok(42.0)]);
    d.set_values(&on_battery());
    d.restart();
    assert_eq!(
        client.get(&oid).await.unwrap(),
        [Ok(7.0)],
        "{}",
        d.log_text()
    );
}
