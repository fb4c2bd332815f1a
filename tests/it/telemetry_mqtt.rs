//! MQTT status against a real Mosquitto, watched with `mosquitto_sub` (a client we did not
//! write): the real agent binary says `online`, publishes the zone going critical with its
//! verdict and every event, republishes its retained state after a broker restart that lost
//! it, and its last will says `offline` when it is killed.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::agent::Agent;
use support::events::{Event, LoggedEvent};
use support::mosquitto::{Mosquitto, Options};
use support::peer::Peer;

const TOKEN: &str = "mqtt-status-token";
const PREFIX: &str = "firebreak/test-b3";

fn mosquitto_sub() -> PathBuf {
    support::peer::require("mosquitto_sub", "apt-get install -y mosquitto-clients")
}

/// A `mosquitto_sub` on `<prefix>/#` writing `topic|payload` lines to a file.
struct Subscriber {
    _peer: Peer,
    out: PathBuf,
}

impl Subscriber {
    fn start(broker: &Mosquitto, dir: &Path) -> Subscriber {
        let out = dir.join(format!("sub-{}.out", next_id()));
        let mut cmd = Command::new(mosquitto_sub());
        cmd.args(["-h", "127.0.0.1", "-p", &broker.port.to_string(), "-q", "1"])
            .args(["-t", &format!("{PREFIX}/#"), "-F", "%t|%p"]);
        // Its output file is its log (stderr too: `messages` keeps only `topic|payload`).
        let mut peer = Peer::with_log("mosquitto_sub", &out);
        peer.start(cmd);
        let s = Subscriber { _peer: peer, out };
        // Listening once a probe published after it started comes through.
        let until = Instant::now() + Duration::from_secs(10);
        let probe = format!("{PREFIX}/probe|ready");
        loop {
            broker.publish(&format!("{PREFIX}/probe"), b"ready", None);
            if s.wait_quietly(Duration::from_millis(200), |l| l == probe) {
                break;
            }
            assert!(Instant::now() < until, "mosquitto_sub did not subscribe");
        }
        s
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Messages as (topic, payload), leaving out `-d` debug lines.
    fn messages(&self) -> Vec<(String, String)> {
        self.lines()
            .iter()
            .filter(|l| l.starts_with(PREFIX))
            .filter_map(|l| l.split_once('|'))
            .map(|(t, p)| (t.to_string(), p.to_string()))
            .collect()
    }

    fn wait_quietly(&self, deadline: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let until = Instant::now() + deadline;
        while !self.lines().iter().any(|l| pred(l)) {
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        true
    }

    fn wait_message(
        &self,
        what: &str,
        agent: &Agent,
        pred: impl Fn(&str, &str) -> bool,
    ) -> (String, String) {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(m) = self.messages().into_iter().find(|(t, p)| pred(t, p)) {
                return m;
            }
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}; subscriber saw:\n{}\n{}",
                self.lines().join("\n"),
                agent.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// Distinguishes the output files of several subscribers in one dir.
fn next_id() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What the broker holds retained under the prefix right now, as (topic, payload).
fn retained(broker: &Mosquitto) -> Vec<(String, String)> {
    broker.retained(&format!("{PREFIX}/#"))
}

fn wait_retained(
    broker: &Mosquitto,
    what: &str,
    agent: &Agent,
    pred: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let r = retained(broker);
        if pred(&r) {
            return r;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for retained {what}; broker holds {r:?}\n{}",
            agent.diagnostics()
        );
    }
}

fn write_config(dir: &Path, broker: &Mosquitto, api_port: u16) -> (PathBuf, PathBuf) {
    let state = dir.join("state");
    let token = dir.join("api.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let text = format!(
        r#"
[agent]
name = "test-b3"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[api]
listen = "127.0.0.1:{api_port}"
token_file = "{token}"

[[sources]]
name = "site-broker"
type = "mqtt"
url = "mqtt://127.0.0.1:{port}"
client_id = "firebreak-test-b3"
reconnect_max = "1s"

[[zones]]
id = "b3"
runbook = "evacuate-b3"

[[runbooks]]
name = "evacuate-b3"

[[runbooks.steps]]
name = "pause"
type = "wait"
duration = "200ms"

[telemetry.mqtt]
source = "site-broker"
prefix = "{PREFIX}"
"#,
        state = state.display(),
        token = token.display(),
        port = broker.port,
    );
    let path = dir.join("firebreak.toml");
    std::fs::write(&path, text).unwrap();
    (path, state.join("events.jsonl"))
}

fn post(port: u16, path: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("API reachable")
            .status()
            .as_u16()
    })
}

fn json(p: &str) -> serde_json::Value {
    serde_json::from_str(p).unwrap_or(serde_json::Value::Null)
}

/// A message of the events topic, as the event it carries.
fn event(p: &str) -> LoggedEvent {
    LoggedEvent::parse(p).unwrap_or_else(|e| panic!("not an event ({e}): {p}"))
}

fn zone_doc(msgs: &[(String, String)]) -> Option<serde_json::Value> {
    msgs.iter()
        .rev()
        .find(|(t, _)| t == &format!("{PREFIX}/zones/b3"))
        .map(|(_, p)| json(p))
}

#[test]
fn a_subscriber_sees_online_the_zone_go_critical_and_safe_events_and_offline_by_last_will() {
    let mut broker = Mosquitto::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::start(&broker, dir.path());
    let api_port = support::free_port();
    let (config, events) = write_config(dir.path(), &broker, api_port);
    let mut agent = Agent::start(&config, &events);
    let status = format!("{PREFIX}/status");

    sub.wait_message("online", &agent, |t, p| t == status && p == "online");
    let (_, first) = sub.wait_message("the zone's first document", &agent, |t, _| {
        t == format!("{PREFIX}/zones/b3")
    });
    let first = json(&first);
    assert_eq!(first["level"], "normal");
    assert_eq!(first["incident"], serde_json::Value::Null);
    sub.wait_message("agent_started on the events topic", &agent, |t, p| {
        t == format!("{PREFIX}/events") && matches!(event(p).event, Event::AgentStarted { .. })
    });

    assert_eq!(post(api_port, "/api/v1/zones/b3/failover"), 202);
    let (_, doc) = sub.wait_message("the zone critical and safe to cut", &agent, |t, p| {
        t == format!("{PREFIX}/zones/b3")
            && json(p)["level"] == "critical"
            && json(p)["safe_to_cut_power"] == true
    });
    let doc = json(&doc);
    let incident = doc["incident"].as_str().expect("incident id").to_string();
    assert!(incident.starts_with("b3-"), "{doc}");

    // Every event, in the event log's order and shape.
    sub.wait_message("safe_to_cut_power on the events topic", &agent, |t, p| {
        t == format!("{PREFIX}/events") && matches!(event(p).event, Event::SafeToCutPower { .. })
    });
    let published: Vec<LoggedEvent> = sub
        .messages()
        .iter()
        .filter(|(t, _)| t == &format!("{PREFIX}/events"))
        .map(|(_, p)| event(p))
        .collect();
    let logged = agent.events();
    assert_eq!(
        published,
        logged[..published.len()].to_vec(),
        "the events topic carries the event log's lines"
    );
    let names: Vec<&str> = published.iter().map(LoggedEvent::name).collect();
    for want in [
        "agent_started",
        "runbook_started",
        "zone_level",
        "step_finished",
        "runbook_finished",
        "safe_to_cut_power",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }

    // The broker holds the state retained.
    let held = wait_retained(&broker, "online and the critical zone", &agent, |r| {
        r.contains(&(status.clone(), "online".to_string()))
            && zone_doc(r).is_some_and(|d| d["safe_to_cut_power"] == true)
    });
    assert!(
        !held.iter().any(|(t, _)| t.ends_with("/events")),
        "events are not retained: {held:?}"
    );

    // A broker restart without persistence loses every retained message; the agent puts
    // them back when it reconnects.
    broker.restart();
    let held = wait_retained(&broker, "state after a broker restart", &agent, |r| {
        r.contains(&(status.clone(), "online".to_string())) && zone_doc(r).is_some()
    });
    let doc = zone_doc(&held).unwrap();
    assert_eq!(doc["level"], "critical", "{held:?}");
    assert_eq!(doc["safe_to_cut_power"], true);
    assert_eq!(doc["incident"], incident.as_str());

    // A crash: the broker publishes the last will.
    let sub = Subscriber::start(&broker, dir.path());
    agent.kill9();
    sub.wait_message("offline by last will", &agent, |t, p| {
        t == status && p == "offline"
    });
    let held = retained(&broker);
    assert!(
        held.contains(&(status.clone(), "offline".to_string())),
        "offline is retained: {held:?}"
    );
}

#[test]
fn a_clean_shutdown_says_offline_after_agent_stopped() {
    let broker = Mosquitto::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::start(&broker, dir.path());
    let (config, events) = write_config(dir.path(), &broker, support::free_port());
    let mut agent = Agent::start(&config, &events);
    let status = format!("{PREFIX}/status");
    sub.wait_message("online", &agent, |t, p| t == status && p == "online");
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
    sub.wait_message("offline", &agent, |t, p| t == status && p == "offline");
    let msgs = sub.messages();
    let stopped = msgs
        .iter()
        .position(|(t, p)| {
            t.ends_with("/events") && matches!(event(p).event, Event::AgentStopped { .. })
        })
        .unwrap_or_else(|| panic!("agent_stopped published: {msgs:?}"));
    let offline = msgs
        .iter()
        .position(|(t, p)| t == &status && p == "offline")
        .unwrap();
    assert!(stopped < offline, "{msgs:?}");
    assert!(retained(&broker).contains(&(status, "offline".to_string())));
}
