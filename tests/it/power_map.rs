//! The power map (`[[feeds]]`) through the real agent binary: two feeds, one powering zone
//! b3 alone and one powering b3 and b4. Failing b3 over makes the first safe to cut and
//! only the first; failing b4 over makes the second safe too; a reset takes both back.
//! Every place a verdict shows says the same: the event log, `GET /api/v1/feeds`, the
//! status document and page, the Prometheus metric, and the retained MQTT documents on a
//! real Mosquitto read with `mosquitto_sub`.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::agent::{get, post, Agent};
use support::events::{count, Event, LoggedEvent};
use support::mosquitto::{Mosquitto, Options};

const TOKEN: &str = "power-map-token";
const PREFIX: &str = "firebreak/power-map";

fn write_config(dir: &Path, broker: &Mosquitto, api_port: u16) -> (PathBuf, PathBuf) {
    let state = dir.join("state");
    let token = dir.join("api.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let text = format!(
        r#"
[agent]
name = "power-map"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[api]
listen = "127.0.0.1:{api_port}"
token_file = "{token}"

[[sources]]
name = "site-broker"
type = "mqtt"
url = "mqtt://127.0.0.1:{port}"
client_id = "firebreak-power-map"
reconnect_max = "1s"

[[zones]]
id = "b3"
runbook = "evacuate"

[[zones]]
id = "b4"
runbook = "evacuate"

[[runbooks]]
name = "evacuate"

[[runbooks.steps]]
name = "pause"
type = "wait"
duration = "200ms"

[[feeds]]
id = "pdu-a"
description = "B3 PDU A, breaker 3-14 in panel LV-B3"
zones = ["b3"]
loads = ["B3 lighting"]

[[feeds]]
id = "pdu-b"
description = "B3/B4 PDU B, breaker 4-02 in panel LV-B4"
zones = ["b3", "b4"]

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

/// `GET /api/v1/feeds` as (id, safe_to_cut, waiting_for) per feed.
fn feeds(port: u16) -> Vec<(String, bool, Vec<String>)> {
    let (code, body) = get(port, "/api/v1/feeds");
    assert_eq!(code, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    doc["feeds"]
        .as_array()
        .expect("a feeds list")
        .iter()
        .map(|f| {
            let waiting = f["waiting_for"]
                .as_array()
                .expect("waiting_for")
                .iter()
                .map(|z| z.as_str().unwrap().to_string())
                .collect();
            (
                f["id"].as_str().unwrap().to_string(),
                f["safe_to_cut"].as_bool().unwrap(),
                waiting,
            )
        })
        .collect()
}

fn metric(port: u16, feed: &str) -> Option<String> {
    let (_, text) = get(port, "/metrics");
    let key = format!("firebreak_feed_safe_to_cut{{feed=\"{feed}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key).map(str::to_string))
}

/// Waits until the broker holds retained feed documents for which `pred` holds.
fn wait_feed_docs(
    broker: &Mosquitto,
    agent: &Agent,
    what: &str,
    pred: impl Fn(&serde_json::Value, &serde_json::Value) -> bool,
) {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let held = broker.retained(&format!("{PREFIX}/feeds/#"));
        let doc = |id: &str| {
            held.iter()
                .find(|(t, _)| t == &format!("{PREFIX}/feeds/{id}"))
                .map(|(_, p)| serde_json::from_str(p).unwrap_or_default())
                .unwrap_or_default()
        };
        if pred(&doc("pdu-a"), &doc("pdu-b")) {
            return;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for retained feed documents: {what}; broker holds {held:?}\n{}",
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn feed_events(agent: &Agent, feed: &str) -> usize {
    count(
        &agent.events(),
        |e| matches!(&e.event, Event::FeedSafeToCut { feed: f, .. } if f == feed),
    )
}

#[test]
fn each_feed_becomes_safe_to_cut_only_when_every_zone_on_it_has_failed_over() {
    let broker = Mosquitto::start(Options::default());
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let (config, events) = write_config(dir.path(), &broker, port);
    let mut agent = Agent::start(&config, &events);
    agent.wait_for_api(port);

    // Nothing has failed over: no breaker may be opened.
    assert_eq!(
        feeds(port),
        [
            ("pdu-a".into(), false, vec!["b3".to_string()]),
            (
                "pdu-b".into(),
                false,
                vec!["b3".to_string(), "b4".to_string()]
            ),
        ]
    );
    wait_feed_docs(&broker, &agent, "both feeds not safe", |a, b| {
        a["safe_to_cut"] == false && b["safe_to_cut"] == false
    });

    // b3 fails over: PDU A powers nothing else that needs moving; PDU B still powers b4.
    assert_eq!(post(port, "/api/v1/zones/b3/failover", Some(TOKEN)).0, 202);
    agent.wait_for(
        "feed_safe_to_cut for pdu-a",
        Duration::from_secs(30),
        |e| matches!(&e.event, Event::FeedSafeToCut { feed, .. } if feed == "pdu-a"),
    );
    let logged: Vec<LoggedEvent> = agent.events();
    let announced = logged
        .iter()
        .find_map(|e| match &e.event {
            Event::FeedSafeToCut {
                feed,
                description,
                zones,
                incidents,
            } if feed == "pdu-a" => Some((description.clone(), zones.clone(), incidents.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(announced.0, "B3 PDU A, breaker 3-14 in panel LV-B3");
    assert_eq!(announced.1, ["b3"]);
    assert!(announced.2[0].starts_with("b3-"), "{announced:?}");
    assert_eq!(
        feeds(port),
        [
            ("pdu-a".into(), true, vec![]),
            ("pdu-b".into(), false, vec!["b4".to_string()]),
        ]
    );
    assert_eq!(metric(port, "pdu-a").as_deref(), Some("1"));
    assert_eq!(metric(port, "pdu-b").as_deref(), Some("0"));
    let status = support::agent::status(port);
    assert_eq!(status.feeds.len(), 2);
    let (_, page) = get(port, "/");
    let (_, safe_list) = page
        .split_once("You may open these breakers now:")
        .expect("the page lists the breakers that may be opened");
    let (safe_list, waiting) = safe_list
        .split_once("Do NOT open yet:")
        .expect("and the others");
    assert!(safe_list.contains("B3 PDU A, breaker 3-14 in panel LV-B3"));
    assert!(waiting.contains("B3/B4 PDU B") && waiting.contains("still powers b4"));
    wait_feed_docs(
        &broker,
        &agent,
        "pdu-a safe, pdu-b waiting for b4",
        |a, b| {
            a["safe_to_cut"] == true
                && b["safe_to_cut"] == false
                && b["waiting_for"] == serde_json::json!(["b4"])
        },
    );

    // b4 fails over too: PDU B is safe now; PDU A is not announced a second time.
    assert_eq!(post(port, "/api/v1/zones/b4/failover", Some(TOKEN)).0, 202);
    agent.wait_for(
        "feed_safe_to_cut for pdu-b",
        Duration::from_secs(30),
        |e| matches!(&e.event, Event::FeedSafeToCut { feed, .. } if feed == "pdu-b"),
    );
    assert_eq!(feed_events(&agent, "pdu-a"), 1, "announced once");
    assert!(feeds(port).iter().all(|f| f.1));
    wait_feed_docs(&broker, &agent, "both feeds safe", |a, b| {
        a["safe_to_cut"] == true && b["safe_to_cut"] == true
    });

    // An operator resets b3 (power is back, or the incident was a mistake): neither feed
    // may be opened any more.
    assert_eq!(post(port, "/api/v1/zones/b3/reset", Some(TOKEN)).0, 200);
    let f = feeds(port);
    assert_eq!(f[0], ("pdu-a".into(), false, vec!["b3".to_string()]));
    assert_eq!(f[1], ("pdu-b".into(), false, vec!["b3".to_string()]));
    assert_eq!(metric(port, "pdu-a").as_deref(), Some("0"));
    wait_feed_docs(
        &broker,
        &agent,
        "both feeds not safe after the reset",
        |a, b| a["safe_to_cut"] == false && b["safe_to_cut"] == false,
    );
}
