//! `firebreak demo`: the simulator and the agent in one process, on a scenario of a fire,
//! printing the event log as it grows. No setup and no external services.

use crate::config::{self, ModbusLink, SourceSpec};
use anyhow::Context as _;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const DEMO_CONFIG: &str = include_str!("../config/demo.toml");
const SCENARIO: &str = include_str!("../hardware-sim/scenarios/offgas-then-heat.toml");

pub fn run(speed: f64) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    rt.block_on(run_async(speed))
}

async fn run_async(speed: f64) -> anyhow::Result<()> {
    let scenario = hardware_sim::Scenario::from_toml_str(SCENARIO)
        .map_err(|e| anyhow::anyhow!("demo scenario: {e}"))?;
    let sim = hardware_sim::play(scenario, hardware_sim::PlayOptions { speed, host: None })
        .await
        .map_err(|e| anyhow::anyhow!("starting the simulator: {e}"))?;
    let mut loaded =
        config::load_str(DEMO_CONFIG, "config/demo.toml", HashMap::new()).map_err(|e| {
            anyhow::anyhow!(
                "demo config: {}",
                e.errors
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
    let state_dir = std::env::temp_dir().join(format!("firebreak-demo-{}", std::process::id()));
    std::fs::create_dir_all(&state_dir)?;
    loaded.config.agent.state_dir = state_dir.clone();
    loaded.config.agent.event_log = state_dir.join("events.jsonl");
    for source in &mut loaded.config.sources {
        if let (SourceSpec::Modbus(m), Some(addr)) = (&mut source.spec, sim.addr(&source.name)) {
            m.link = ModbusLink::Tcp {
                host: addr.ip().to_string(),
                port: addr.port(),
            };
        }
    }
    println!("Firebreak demo: scenario `offgas-then-heat` at {speed}x, simulated devices:");
    for d in sim.devices() {
        println!("  {} on {} (Modbus TCP unit {})", d.name, d.addr, d.unit);
    }
    println!("Event log: {}\n", loaded.config.agent.event_log.display());

    let shutdown = CancellationToken::new();
    let log_path = loaded.config.agent.event_log.clone();
    let agent = tokio::spawn(crate::agent::run_until(
        loaded.config,
        PathBuf::from("config/demo.toml"),
        Arc::new(crate::clock::SystemClock::new()),
        shutdown.clone(),
    ));
    let limit = Duration::from_secs_f64(120.0 / speed.max(0.1) + 30.0);
    let outcome = tokio::time::timeout(limit, follow(&log_path)).await;
    shutdown.cancel();
    let _ = agent.await;
    sim.shutdown().await;
    match outcome {
        Ok(Ok(true)) => {
            println!("\nThe zone was failed over and declared safe to cut power.");
            Ok(())
        }
        Ok(Ok(false)) => anyhow::bail!("the runbook ended but the zone was not declared safe"),
        Ok(Err(e)) => Err(e),
        Err(_) => anyhow::bail!("the demo did not reach safe_to_cut_power within {limit:?}"),
    }
}

/// Prints event lines as they are written; returns whether the zone was declared safe.
async fn follow(path: &std::path::Path) -> anyhow::Result<bool> {
    let mut pos = 0u64;
    loop {
        if let Ok(mut f) = std::fs::File::open(path) {
            f.seek(SeekFrom::Start(pos))?;
            let mut reader = BufReader::new(f);
            let mut line = String::new();
            while reader.read_line(&mut line)? > 0 {
                if !line.ends_with('\n') {
                    break;
                }
                pos += line.len() as u64;
                let v: serde_json::Value = serde_json::from_str(line.trim())?;
                println!("{}", pretty(&v));
                match v["event"].as_str() {
                    Some("safe_to_cut_power") => return Ok(true),
                    Some("not_safe_to_cut_power") => return Ok(false),
                    _ => {}
                }
                line.clear();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pretty(v: &serde_json::Value) -> String {
    let ts = v["ts"].as_str().unwrap_or("").get(11..23).unwrap_or("");
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    match v["event"].as_str().unwrap_or("") {
        "sensor_state" => format!(
            "{ts}  sensor {:<22} {:>8} -> {:<8} {:>8}  {}",
            s("sensor"),
            s("from"),
            s("to"),
            v["value"]
                .as_f64()
                .map(|x| format!("{x:.1}"))
                .unwrap_or_else(|| "-".into()),
            s("reason")
        ),
        "zone_level" => format!(
            "{ts}  ZONE {} {} -> {}",
            s("zone"),
            s("from"),
            s("to").to_uppercase()
        ),
        "runbook_started" => format!(
            "{ts}  RUNBOOK {} started for incident {} ({})",
            s("runbook"),
            s("incident"),
            s("cause")
        ),
        "step_finished" => format!(
            "{ts}    step `{}`: {} {}",
            s("step"),
            if v["ok"].as_bool() == Some(true) {
                "ok"
            } else {
                "FAILED"
            },
            v["detail"].as_str().or(v["error"].as_str()).unwrap_or("")
        ),
        "runbook_finished" => format!("{ts}  RUNBOOK {} finished, ok={}", s("runbook"), v["ok"]),
        "safe_to_cut_power" => format!("{ts}  *** SAFE TO CUT POWER in {} ***", s("zone")),
        other => format!("{ts}  {other}"),
    }
}
