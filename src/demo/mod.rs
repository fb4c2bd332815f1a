//! `firebreak demo`: the simulator (Modbus devices and an embedded MQTT broker) and the
//! agent in one process, playing a scenario of the library sped up, with a live terminal
//! view, then a report picture and the event log. No setup and no external services.
//!
//! - [`fit`]: the demo config fitted to one simulator run (addresses, speed).
//! - [`view`]: what the terminal shows, as a pure model.
//! - [`report`]: the SVG/PNG picture.

pub mod fit;
pub mod report;
pub mod view;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, IsTerminal, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use anyhow::Context as _;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::api::status::Status;
use crate::config::{Config, Kind};
use crate::detect::SensorState;
use crate::events::LoggedEvent;
use report::Threshold;
use view::View;

/// The demo's agent config (also the one the library scenarios are scored against).
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");
/// The scenario played when none is named.
pub const DEFAULT_SCENARIO: &str = "pangyo-replay";
/// About how long (wall clock) a scenario takes when no speed is given.
const TARGET_WALL: Duration = Duration::from_secs(60);
/// How often the view reads the event log and the agent's status.
const FRAME: Duration = Duration::from_millis(250);
/// Shortest wall-clock `stale_after` given to the agent (see [`fit`]).
const STALE_FLOOR: Duration = Duration::from_secs(2);

/// What `firebreak demo` was asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub scenario: String,
    /// Speed-up; `None` plays the scenario in about a minute.
    pub speed: Option<f64>,
    /// Plain lines instead of the live view (also when stdout is not a terminal).
    pub no_tui: bool,
    /// Where the report and the event log are written.
    pub out: PathBuf,
}

/// How the demo ended.
#[derive(Debug)]
pub struct DemoResult {
    /// Whether the scenario's expectation (fail over in time, or not at all) was met.
    pub passed: bool,
    pub files: Vec<PathBuf>,
}

/// The library's scenario names, for `--help` and errors.
pub fn scenario_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = hardware_sim::library::names().collect();
    names.sort();
    names
}

pub fn run(opts: DemoOptions) -> anyhow::Result<DemoResult> {
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    rt.block_on(run_async(opts))
}

fn speed_for(duration: Duration, asked: Option<f64>) -> anyhow::Result<f64> {
    let speed = asked
        .unwrap_or_else(|| (duration.as_secs_f64() / TARGET_WALL.as_secs_f64()).clamp(1.0, 2000.0));
    if !(speed.is_finite() && speed > 0.0 && speed <= hardware_sim::runner::MAX_SPEED) {
        anyhow::bail!(
            "--speed {speed}: give a speed-up above 0 and at most {}",
            hardware_sim::runner::MAX_SPEED
        );
    }
    Ok(speed)
}

/// The thresholds drawn in the report: per kind, those of its first sensor.
fn thresholds(config: &Config) -> BTreeMap<String, Vec<Threshold>> {
    let mut out: BTreeMap<String, Vec<Threshold>> = BTreeMap::new();
    for s in &config.sensors {
        let kind = s.kind.as_str().to_string();
        if out.contains_key(&kind) {
            continue;
        }
        let d = &s.detect;
        let lines: Vec<Threshold> = [
            ("warn_above", d.warn_above),
            ("alarm_above", d.alarm_above),
            ("critical_above", d.critical_above),
            ("warn_below", d.warn_below),
            ("alarm_below", d.alarm_below),
            ("critical_below", d.critical_below),
        ]
        .into_iter()
        .filter_map(|(label, v)| {
            v.map(|value| Threshold {
                label: label.to_string(),
                value,
            })
        })
        .collect();
        if !lines.is_empty() {
            out.insert(kind, lines);
        }
    }
    out
}

/// The steps that only rehearse, with what they stand for.
fn rehearsed(config: &Config) -> Vec<String> {
    config
        .runbooks
        .iter()
        .flat_map(|rb| rb.steps.iter())
        .filter(|s| s.dry_run)
        .map(|s| format!("`{}` ({} step)", s.name, s.action.type_name()))
        .collect()
}

async fn run_async(opts: DemoOptions) -> anyhow::Result<DemoResult> {
    let Some(text) = hardware_sim::library::find(&opts.scenario) else {
        anyhow::bail!(
            "no scenario `{}` in the library; choose one of: {}",
            opts.scenario,
            scenario_names().join(", ")
        );
    };
    let scenario = hardware_sim::Scenario::from_toml_str(text)
        .map_err(|e| anyhow::anyhow!("scenario `{}`: {e}", opts.scenario))?;
    let speed = speed_for(scenario.duration, opts.speed)?;
    let tui = !opts.no_tui && std::io::stdout().is_terminal();

    let broker = tokio::task::spawn_blocking(|| {
        hardware_sim::broker::start(std::net::Ipv4Addr::LOCALHOST.into())
    })
    .await?
    .map_err(|e| anyhow::anyhow!("starting the embedded MQTT broker: {e}"))?;
    let (broker_host, broker_port) = hardware_sim::mqtt::parse_broker(&broker)
        .map_err(|e| anyhow::anyhow!("embedded broker address {broker}: {e}"))?;
    let sim = hardware_sim::play_with(
        scenario.clone(),
        hardware_sim::PlayOptions { speed, host: None },
        hardware_sim::PlayExtras {
            mqtt_broker: Some(broker.clone()),
            start_paused: true,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("starting the simulator: {e}"))?;

    let api: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port for the agent's API")?;
    let state_dir = std::env::temp_dir().join(format!("firebreak-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state_dir);
    let fitted = fit::fit(
        DEMO_CONFIG,
        &fit::Fit {
            devices: sim
                .devices()
                .iter()
                .filter(|d| d.protocol.starts_with("modbus"))
                .map(|d| (d.name.clone(), d.addr))
                .collect(),
            broker: Some((broker_host, broker_port)),
            mqtt_devices: scenario.devices.iter().any(|d| d.mqtt.is_some()),
            topic_prefix: None,
            client_id: "firebreak-demo".into(),
            speed,
            stale_floor: STALE_FLOOR,
            state_dir: state_dir.clone(),
            api_listen: Some(api),
            tick_interval: Duration::from_millis(20),
        },
    )?;
    let loaded =
        crate::config::load_str(&fitted, "config/demo.toml", HashMap::new()).map_err(|e| {
            anyhow::anyhow!(
                "demo config: {}",
                e.errors
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
    let config = loaded.config;
    let lines = thresholds(&config);
    let mut view = View::new(
        &scenario.name,
        &scenario.description,
        speed,
        scenario.duration.as_secs_f64(),
        scenario
            .truth
            .as_ref()
            .and_then(|t| t.power_cut_at)
            .map(|d| d.as_secs_f64()),
    );
    view.rehearsed = rehearsed(&config);

    let mut say = Printer::new(tui);
    say.line(&format!(
        "Firebreak demo: scenario `{}` at {speed}× speed (about {:.0} s), simulated devices:",
        scenario.name,
        scenario.duration.as_secs_f64() / speed
    ));
    for d in sim.devices() {
        say.line(&format!(
            "  {} on {} ({}, unit {})",
            d.name, d.addr, d.protocol, d.unit
        ));
    }
    say.line(&format!("  embedded MQTT broker on {broker}"));
    say.line(&format!("Agent status page: http://{api}/"));

    let shutdown = CancellationToken::new();
    let log_path = config.agent.event_log.clone();
    let mut agent = tokio::spawn(crate::agent::run_until(
        config,
        PathBuf::from("config/demo.toml"),
        Arc::new(crate::clock::SystemClock::new()),
        shutdown.clone(),
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .context("HTTP client")?;
    let status_url = format!("http://{api}/api/v1/status");

    // The scenario starts once the agent polls every device, so that it sees it all.
    let ready_by = crate::clock::now() + Duration::from_secs(30);
    loop {
        let polled = sim
            .devices()
            .iter()
            .filter(|d| d.protocol.starts_with("modbus"))
            .all(|d| sim.stats(&d.name).is_some_and(|s| s.requests > 0));
        if polled {
            break;
        }
        if agent.is_finished() {
            let r = (&mut agent).await;
            anyhow::bail!("the agent stopped before the scenario began: {r:?}");
        }
        if crate::clock::now() > ready_by {
            anyhow::bail!("the agent did not poll every simulated device within 30 s");
        }
        crate::clock::sleep(Duration::from_millis(20)).await;
    }
    sim.start();
    let t0 = time::OffsetDateTime::from(sim.started_wall().unwrap_or_else(crate::clock::wall_now));
    say.enter();

    let mut follower = Follower::new(log_path.clone());
    let limit = crate::clock::now() + scenario.duration.div_f64(speed) + Duration::from_secs(60);
    let mut ended_at: Option<Instant> = None;
    let mut next_summary = 0.0;
    let mut interrupted = false;
    let mut agent_error = None;
    loop {
        view.sim_s = sim.sim_time().as_secs_f64();
        for ev in follower.read()? {
            let sim_s = sim_seconds(&ev, t0, speed);
            if let Some(line) = view.apply_event(&ev.event, sim_s) {
                say.event(&line);
            }
        }
        match http.get(&status_url).send().await {
            Ok(r) => match r.json::<Status>().await {
                Ok(status) => view.apply_status(&status, view.sim_s),
                Err(_) => view.status_ok = false,
            },
            Err(_) => view.status_ok = false,
        }
        if view.sim_s >= next_summary {
            say.summary(&summary(&view));
            next_summary = view.sim_s + 60.0;
        }
        say.frame(&view);
        // The story goes on to the scenario's power cut, so that the picture shows what
        // the failover was ahead of; without one, it ends with the verdict.
        let story_told =
            view.outcome.is_some() && view.power_cut_s.is_none_or(|cut| view.sim_s >= cut);
        if story_told && ended_at.is_none() {
            ended_at = Some(crate::clock::now());
        }
        // A moment after that, for the lines that follow it.
        if ended_at.is_some_and(|t| t.elapsed() > Duration::from_millis(1500))
            || sim.is_finished()
            || crate::clock::now() > limit
        {
            break;
        }
        if agent.is_finished() {
            agent_error = Some(match (&mut agent).await {
                Ok(Ok(())) => "the agent stopped".to_string(),
                Ok(Err(e)) => format!("the agent stopped: {e}"),
                Err(e) => format!("the agent task failed: {e}"),
            });
            break;
        }
        tokio::select! {
            _ = crate::clock::sleep(FRAME) => {}
            _ = tokio::signal::ctrl_c() => { interrupted = true; break; }
        }
    }
    shutdown.cancel();
    if agent_error.is_none() {
        let _ = agent.await;
    }
    sim.shutdown().await;
    for ev in follower.read()? {
        let sim_s = sim_seconds(&ev, t0, speed);
        if let Some(line) = view.apply_event(&ev.event, sim_s) {
            say.event(&line);
        }
    }
    say.leave(&view);
    if let Some(e) = agent_error {
        anyhow::bail!("{e}");
    }
    if interrupted {
        anyhow::bail!("interrupted");
    }

    let events = follower.all;
    let score = hardware_sim::score::score(
        &scenario.name,
        scenario.truth.as_ref(),
        &events,
        Some(t0),
        speed,
    );
    match &view.outcome {
        Some(o) => {
            println!("\n{}", view.verdict(o));
            for note in &o.notes {
                println!("  note: {note}");
            }
        }
        None => println!(
            "\nNo failover: the zone never went critical in `{}`.",
            scenario.name
        ),
    }
    let passed = match score {
        Ok(s) if s.passed => {
            println!("The scenario's expectation was met ({}).", expectation(&s));
            true
        }
        Ok(s) => {
            println!(
                "The scenario's expectation was NOT met ({}): {}",
                expectation(&s),
                s.problems.join("; ")
            );
            false
        }
        Err(e) => {
            println!("The run could not be scored: {e}");
            false
        }
    };

    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let mut files = report::write(&view, &lines, &opts.out)?;
    let log_copy = opts.out.join("events.jsonl");
    std::fs::copy(&log_path, &log_copy)
        .with_context(|| format!("copying the event log to {}", log_copy.display()))?;
    files.push(log_copy);
    let _ = std::fs::remove_dir_all(&state_dir);
    println!("Report:");
    for f in &files {
        println!("  {}", f.display());
    }
    Ok(DemoResult { passed, files })
}

fn expectation(s: &hardware_sim::score::Score) -> String {
    if s.failover_expected {
        match s.lead_ms {
            Some(lead) => format!(
                "fail over before the power cut; lead {}",
                view::span(lead as f64 / 1000.0)
            ),
            None => "fail over before the power cut".into(),
        }
    } else {
        "no failover".into()
    }
}

/// Scenario seconds of an event (0 for events before the scenario started).
fn sim_seconds(ev: &LoggedEvent, t0: time::OffsetDateTime, speed: f64) -> f64 {
    hardware_sim::score::parse_ts(&ev.ts)
        .ok()
        .map(|ts| ((ts - t0).as_seconds_f64() * speed).max(0.0))
        .unwrap_or(0.0)
}

/// One line for the plain output: the zones' levels and the sensors in the worst states.
fn summary(view: &View) -> String {
    let zones: Vec<String> = view
        .zones
        .iter()
        .map(|z| format!("{} {}", z.id, view::badge(z.level)))
        .collect();
    let sensors: Vec<String> = view
        .series
        .iter()
        .filter_map(|(id, s)| match s.kind {
            Some(kind @ (Kind::Temperature | Kind::Offgas | Kind::Smoke | Kind::Runtime)) => {
                Some((id, s, kind))
            }
            _ => None,
        })
        .filter_map(|(id, s, kind)| {
            s.value.map(|v| match s.state {
                Some(state @ (SensorState::Stale | SensorState::Fault)) => {
                    format!("{id} {} ({state})", view::with_unit(kind, v))
                }
                _ => format!("{id} {}", view::with_unit(kind, v)),
            })
        })
        .collect();
    format!(
        "{}  {}; {}",
        view::clock(view.sim_s),
        zones.join(", "),
        sensors.join(", ")
    )
}

/// Reads the event log as it grows, whole lines only.
struct Follower {
    path: PathBuf,
    pos: u64,
    /// Every line read, as JSON: for the simulator's scorer, which is its own crate and
    /// reads the event log's contract without the agent's types.
    all: Vec<Value>,
}

impl Follower {
    fn new(path: PathBuf) -> Follower {
        Follower {
            path,
            pos: 0,
            all: Vec::new(),
        }
    }

    fn read(&mut self) -> anyhow::Result<Vec<LoggedEvent>> {
        let mut out = Vec::new();
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return Ok(out);
        };
        f.seek(SeekFrom::Start(self.pos))?;
        let mut reader = BufReader::new(f);
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 {
            if !line.ends_with('\n') {
                break;
            }
            self.pos += line.len() as u64;
            match serde_json::from_str::<Value>(line.trim()) {
                Ok(v) => {
                    self.all.push(v.clone());
                    match LoggedEvent::from_json(v) {
                        Ok(ev) => out.push(ev),
                        Err(e) => tracing::warn!(error = %e, "unreadable event log line"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "unreadable event log line"),
            }
            line.clear();
        }
        Ok(out)
    }
}

/// Prints either the live view (alternate screen, redrawn in place) or plain lines.
struct Printer {
    tui: bool,
    on_screen: bool,
}

/// The terminal's size in columns and rows: asked of the terminal on stdout each frame (so
/// a resized window is followed), else `COLUMNS`/`LINES`, else 100 × 40.
fn screen_size() -> (usize, usize) {
    if let Some((w, h)) = terminal_size::terminal_size_of(std::io::stdout()) {
        return (usize::from(w.0), usize::from(h.0));
    }
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(d)
    };
    (env("COLUMNS", 100), env("LINES", 40))
}

/// At most `rows - 1` lines of `frame`, so the screen never scrolls; the cut is said.
fn fit_rows(frame: &str, rows: usize) -> Vec<&str> {
    let lines: Vec<&str> = frame.lines().collect();
    let room = rows.saturating_sub(1).max(1);
    if lines.len() <= room {
        return lines;
    }
    let mut kept = lines[..room.saturating_sub(1)].to_vec();
    kept.push("… (enlarge the terminal to see the rest)");
    kept
}

impl Printer {
    fn new(tui: bool) -> Printer {
        Printer {
            tui,
            on_screen: false,
        }
    }

    fn line(&mut self, text: &str) {
        println!("{text}");
    }

    fn enter(&mut self) {
        if self.tui {
            // Alternate screen, cursor hidden; `leave` restores both.
            print!("\x1b[?1049h\x1b[?25l");
            self.on_screen = true;
        }
    }

    fn event(&mut self, line: &str) {
        if !self.tui {
            println!("{line}");
        }
    }

    fn summary(&mut self, line: &str) {
        if !self.tui {
            println!("{line}");
        }
    }

    fn frame(&mut self, view: &View) {
        if self.on_screen {
            let (width, rows) = screen_size();
            let frame = view.render(width);
            let mut out = String::from("\x1b[H");
            for l in fit_rows(&frame, rows) {
                out.push_str(l);
                out.push_str("\x1b[K\n");
            }
            out.push_str("\x1b[J");
            print!("{out}");
            let _ = std::io::stdout().flush();
        }
    }

    fn leave(&mut self, view: &View) {
        if self.on_screen {
            print!("\x1b[?25h\x1b[?1049l");
            self.on_screen = false;
            // The last frame stays in the scrollback.
            print!("{}", view.render(screen_size().0));
            let _ = std::io::stdout().flush();
        }
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        if self.on_screen {
            print!("\x1b[?25h\x1b[?1049l");
            let _ = std::io::stdout().flush();
        }
    }
}

/// The default report directory: `firebreak-demo/<scenario>` under the current directory.
pub fn default_out(scenario: &str) -> PathBuf {
    Path::new("firebreak-demo").join(scenario)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_taller_than_the_terminal_is_cut_and_says_so() {
        let frame = (1..=30).map(|i| format!("line {i}\n")).collect::<String>();
        let fitted = fit_rows(&frame, 10);
        assert_eq!(
            fitted.len(),
            9,
            "one row left free so the screen never scrolls"
        );
        assert_eq!(fitted[0], "line 1");
        assert_eq!(fitted[7], "line 8");
        assert!(fitted[8].contains("enlarge the terminal"));
        assert_eq!(fit_rows(&frame, 40).len(), 30, "a frame that fits is whole");
    }

    #[test]
    fn the_demo_config_fits_every_library_scenario() {
        for name in scenario_names() {
            let s =
                hardware_sim::Scenario::from_toml_str(hardware_sim::library::find(name).unwrap())
                    .unwrap();
            let devices = s
                .devices
                .iter()
                .filter(|d| d.mqtt.is_none())
                .map(|d| (d.name.clone(), "127.0.0.1:5020".parse().unwrap()))
                .collect();
            let speed = speed_for(s.duration, None).unwrap();
            let text = fit::fit(
                DEMO_CONFIG,
                &fit::Fit {
                    devices,
                    broker: Some(("127.0.0.1".into(), 1883)),
                    mqtt_devices: s.devices.iter().any(|d| d.mqtt.is_some()),
                    topic_prefix: None,
                    client_id: "t".into(),
                    speed,
                    stale_floor: STALE_FLOOR,
                    state_dir: "/tmp/x".into(),
                    api_listen: Some("127.0.0.1:9".parse().unwrap()),
                    tick_interval: Duration::from_millis(20),
                },
            )
            .unwrap();
            let loaded = crate::config::load_str(&text, name, HashMap::new())
                .unwrap_or_else(|e| panic!("{name}: {:?}", e.errors));
            assert!(!loaded.config.sensors.is_empty(), "{name}");
            // The pager, DNS and load balancer steps always rehearse; the BMS's charge stop
            // does where the scenario has no BMS.
            let bms = s.devices.iter().any(|d| d.name == "bms-b3");
            let expected = if bms { 3 } else { 4 };
            assert_eq!(rehearsed(&loaded.config).len(), expected, "{name}");
        }
    }

    #[test]
    fn a_scenario_takes_about_a_minute_unless_a_speed_is_given() {
        assert_eq!(speed_for(Duration::from_secs(1200), None).unwrap(), 20.0);
        assert_eq!(speed_for(Duration::from_secs(30), None).unwrap(), 1.0);
        assert_eq!(
            speed_for(Duration::from_secs(1200), Some(4.0)).unwrap(),
            4.0
        );
        assert!(speed_for(Duration::from_secs(1), Some(0.0)).is_err());
        assert!(speed_for(Duration::from_secs(1), Some(f64::NAN)).is_err());
    }
}
