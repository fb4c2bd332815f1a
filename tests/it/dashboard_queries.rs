//! Every PromQL expression of the Grafana dashboards (panels, the `$zone` variable's
//! query, annotations) runs on a real Prometheus that scrapes the real agent binary while
//! the simulator plays the Pangyo-like fire, and returns data at some point of the run.
//!
//! The agent runs the demo's config (config/demo.toml fitted to this run) plus an InfluxDB
//! sink whose server is down, so that the spool panels have something to show.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use firebreak::demo::fit::{fit, Fit};
use hardware_sim::{PlayExtras, PlayOptions, Scenario};
use support::agent::Agent;
use support::events::Event;
use support::prometheus::Prometheus;

const ZONE: &str = "b3-battery-room";
const SPEED: f64 = 30.0;

/// Every Prometheus expression of the dashboards, with where it comes from, `$zone`
/// replaced by the zone of the run.
fn dashboard_queries() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let d: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut add = |origin: String, expr: &str| {
            out.push((origin, expr.replace("$zone", ZONE)));
        };
        for p in d["panels"].as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    add(format!("{file} panel {} `{}`", p["id"], p["title"]), expr);
                }
            }
        }
        for a in d["annotations"]["list"].as_array().into_iter().flatten() {
            if let Some(expr) = a["expr"].as_str() {
                add(format!("{file} annotation `{}`", a["name"]), expr);
            }
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            let q = v["query"]
                .as_str()
                .or(v["query"]["query"].as_str())
                .or(v["definition"].as_str());
            if let (Some("query"), Some(q)) = (v["type"].as_str(), q) {
                add(format!("{file} variable `{}`", v["name"]), q);
            }
        }
    }
    out.sort();
    out
}

/// Runs one dashboard expression; `label_values(metric, label)` (a Grafana function) runs
/// as Prometheus's label values API. Returns how many series or values came back.
fn run(prom: &Prometheus, expr: &str) -> usize {
    if let Some(args) = expr
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        let (metric, label) = args.split_once(',').expect("label_values(metric, label)");
        let m: String = url::form_urlencoded::byte_serialize(metric.trim().as_bytes()).collect();
        let Some((200, body)) = prom.get(&format!(
            "/api/v1/label/{}/values?match[]={m}",
            label.trim()
        )) else {
            return 0;
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        return v["data"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|x| *x == ZONE).count());
    }
    prom.query(expr).len()
}

#[test]
fn every_dashboard_query_returns_data_from_a_prometheus_scraping_the_agent_during_a_fire() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = hardware_sim::broker::start(std::net::Ipv4Addr::LOCALHOST.into()).unwrap();
    let (_, broker_port) = hardware_sim::mqtt::parse_broker(&broker).unwrap();
    let scenario =
        Scenario::from_toml_str(hardware_sim::library::find("pangyo-replay").unwrap()).unwrap();
    let sim = rt
        .block_on(hardware_sim::play_with(
            scenario.clone(),
            PlayOptions {
                speed: SPEED,
                host: None,
            },
            PlayExtras {
                mqtt_broker: Some(broker),
                start_paused: true,
            },
        ))
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let api_port = support::free_port();
    let mut text = fit(
        firebreak::demo::DEMO_CONFIG,
        &Fit {
            devices: sim
                .devices()
                .iter()
                .map(|d| (d.name.clone(), d.addr))
                .collect(),
            broker: Some(("127.0.0.1".into(), broker_port)),
            mqtt_devices: true,
            topic_prefix: None,
            client_id: "firebreak-dashboards".into(),
            speed: SPEED,
            stale_floor: Duration::from_secs(2),
            state_dir: state.clone(),
            api_listen: Some(format!("127.0.0.1:{api_port}").parse().unwrap()),
            tick_interval: Duration::from_millis(20),
        },
    )
    .unwrap();
    let token = dir.path().join("influx.token");
    std::fs::write(&token, "test-token").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // InfluxDB down for the whole run: telemetry spools.
    text.push_str(&format!(
        "\n[telemetry.influxdb]\nurl = \"http://127.0.0.1:{}\"\norg = \"dc-ops\"\n\
         bucket = \"firebreak\"\ntoken_file = \"{}\"\nflush_interval = \"1s\"\n",
        support::free_port(),
        token.display()
    ));
    let config = dir.path().join("firebreak.toml");
    std::fs::write(&config, text).unwrap();

    let mut agent = Agent::start(&config, &state.join("events.jsonl"));
    agent.wait_for("agent_started", Duration::from_secs(30), |e| {
        matches!(e.event, Event::AgentStarted { .. })
    });
    let prom = Prometheus::start(&[format!("127.0.0.1:{api_port}")]);
    // Prometheus has scraped the agent before the scenario starts.
    let until = Instant::now() + Duration::from_secs(60);
    while prom.query("firebreak_build_info").is_empty() {
        assert!(
            Instant::now() < until,
            "Prometheus never scraped the agent\n{}\n{}",
            prom.targets(),
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    sim.start();

    // Each expression must return data at least once while the story unfolds (some only
    // can at a given moment: the step annotation within a minute of the steps, the UPS
    // charge before that UPS goes silent).
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let until = Instant::now() + scenario.duration.div_f64(SPEED) + Duration::from_secs(90);
    loop {
        for (_, expr) in &queries {
            if !seen.contains_key(expr.as_str()) {
                let n = run(&prom, expr);
                if n > 0 {
                    seen.insert(expr, n);
                }
            }
        }
        let missing: Vec<&(String, String)> = queries
            .iter()
            .filter(|(_, e)| !seen.contains_key(e.as_str()))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < until,
            "dashboard queries that never returned data:\n{}\n\ntargets: {}\n{}",
            missing
                .iter()
                .map(|(origin, e)| format!("  {origin}: {e}"))
                .collect::<Vec<_>>()
                .join("\n"),
            prom.targets(),
            agent.diagnostics()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The run was the fire it should be: the agent failed the zone over.
    let events = agent.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e.event, Event::SafeToCutPower { .. })),
        "{}",
        agent.diagnostics()
    );
    agent.stop();
    rt.block_on(sim.shutdown());
}
