//! A real Prometheus scrapes the real agent binary while the simulator feeds it: the
//! documented metric names come back from Prometheus's own query API.

use crate::support;

use std::time::{Duration, Instant};
use support::agent::{start_sim, Agent};
use support::events::Event;
use support::prometheus::Prometheus;

#[test]
fn prometheus_scrapes_the_agent_and_answers_queries_for_the_documented_metrics() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = start_sim(&rt, "normal-day.toml", 1.0);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let api_port = support::free_port();
    let config = dir.path().join("firebreak.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
name = "test-b3"
state_dir = "{state}"
event_log = "{state}/events.jsonl"

[api]
listen = "127.0.0.1:{api_port}"

[[sources]]
name = "env-b3"
type = "modbus"
url = "tcp://{env}"
unit = 1
poll_interval = "100ms"
timeout = "500ms"

[[sensors]]
id = "b3.temp.row1"
zone = "b3-battery-room"
kind = "temperature"
source = "env-b3"
register = {{ table = "input", address = 0, type = "i16", scale = 0.1 }}

[[zones]]
id = "b3-battery-room"
runbook = "evacuate-b3"

[[runbooks]]
name = "evacuate-b3"

[[runbooks.steps]]
name = "pause"
type = "wait"
duration = "1s"
"#,
            state = state.display(),
            env = sim.addr("env-b3").unwrap(),
        ),
    )
    .unwrap();
    let mut agent = Agent::start(&config, &state.join("events.jsonl"));
    agent.wait_for("agent_started", Duration::from_secs(20), |e| {
        matches!(e.event, Event::AgentStarted { .. })
    });
    let prom = Prometheus::start(&[format!("127.0.0.1:{api_port}")]);

    let queries = [
        r#"firebreak_zone_level{zone="b3-battery-room"}"#,
        r#"firebreak_sensor_value{sensor="b3.temp.row1",zone="b3-battery-room",kind="temperature"}"#,
        r#"firebreak_samples_total{source="env-b3"}"#,
        r#"firebreak_source_up{source="env-b3"}"#,
        "firebreak_build_info",
    ];
    // Prometheus scrapes only ~6 s after it starts.
    let until = Instant::now() + Duration::from_secs(60);
    let results = loop {
        let r: Vec<Vec<serde_json::Value>> = queries.iter().map(|q| prom.query(q)).collect();
        if r.iter().all(|x| !x.is_empty()) {
            break r;
        }
        assert!(
            Instant::now() < until,
            "no data from Prometheus for {:?}\ntargets: {}\n{}\n{}",
            queries
                .iter()
                .zip(&r)
                .filter(|(_, x)| x.is_empty())
                .map(|(q, _)| *q)
                .collect::<Vec<_>>(),
            prom.targets(),
            prom.log(),
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let value = |i: usize| -> f64 {
        results[i][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    assert_eq!(value(0), 0.0, "the room is normal");
    assert!((20.0..30.0).contains(&value(1)), "{:?}", results[1]);
    assert!(value(2) > 0.0, "{:?}", results[2]);
    assert_eq!(value(3), 1.0, "{:?}", results[3]);
    assert_eq!(
        results[4][0]["metric"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{:?}",
        results[4]
    );
    assert_eq!(results[4][0]["metric"]["job"], "firebreak");
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
    rt.block_on(sim.shutdown());
}
