//! `firebreak-sim`: play, check and document simulator scenarios.

use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use hardware_sim::report::{self, MapFormat};
use hardware_sim::score;
use hardware_sim::{play_with, PlayEvent, PlayExtras, PlayOptions, Scenario};
use tracing::{error, info};

/// sysexits EX_USAGE: the scenario (the configuration) is wrong.
const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(name = "firebreak-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every device of a scenario and play its timelines; JSON lines on stdout.
    Play {
        #[arg(long, value_name = "FILE")]
        scenario: PathBuf,
        /// Sim seconds per wall second.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Listen on this IP instead of the one in each device's `listen`.
        #[arg(long)]
        host: Option<IpAddr>,
        /// Exit 0 after `finished` instead of serving the last values until SIGINT/SIGTERM.
        #[arg(long)]
        exit_at_end: bool,
        /// Broker for the scenario's MQTT devices (mqtt://HOST[:PORT]); without it a
        /// scenario with MQTT devices starts an embedded broker (rumqttd).
        #[arg(long, value_name = "URL")]
        mqtt: Option<String>,
        /// XORed into every noise seed: same scenario + same seed = same values.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Serve this many copies of every Modbus device (load tests).
        #[arg(long, default_value_t = 1)]
        devices: usize,
        /// With --devices: the Modbus devices listen on consecutive ports from this one.
        #[arg(long)]
        base_port: Option<u16>,
        /// Serve the HTTP control API here (start, pause, set a value, inject a fault).
        #[arg(long, value_name = "IP:PORT")]
        control: Option<std::net::SocketAddr>,
        /// Hold sim time 0 until POST /api/start (needs --control).
        #[arg(long, requires = "control")]
        paused: bool,
    },
    /// Score an agent's event log against the scenario's [truth]; exit 1 if it missed.
    Score {
        #[arg(long, value_name = "FILE")]
        scenario: PathBuf,
        /// The agent's event log (JSON lines, see the agent's events contract).
        #[arg(long, value_name = "FILE")]
        events: PathBuf,
        /// The speed the scenario was played at (sim seconds per wall second).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Wall-clock time of sim time 0 (RFC 3339); default: the first event's `ts`.
        #[arg(long, value_name = "TS")]
        t0: Option<String>,
        /// Print JSON (for CI) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List the scenarios of a directory (default: the shipped library).
    Scenarios {
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Validate a scenario and print a summary (exit 0), or every problem (exit 64).
    Check {
        #[arg(long, value_name = "FILE")]
        scenario: PathBuf,
    },
    /// Print the register map of a scenario's devices.
    Registers {
        #[arg(long, value_name = "FILE")]
        scenario: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Markdown,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { scenario } => match load(&scenario) {
            Ok(s) => {
                print!("{}", report::summary(&s));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Registers { scenario, format } => match load(&scenario) {
            Ok(s) => {
                let format = match format {
                    Format::Text => MapFormat::Text,
                    Format::Markdown => MapFormat::Markdown,
                };
                print!("{}", report::register_map(&s, format));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Score {
            scenario,
            events,
            speed,
            t0,
            json,
        } => run_score(&scenario, &events, speed, t0.as_deref(), json),
        Command::Scenarios { dir } => {
            let dir = dir.unwrap_or_else(default_library);
            match report::library(&dir) {
                Ok(rows) => {
                    print!("{rows}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}: {e}", dir.display());
                    ExitCode::from(EX_USAGE)
                }
            }
        }
        Command::Play {
            scenario,
            speed,
            host,
            exit_at_end,
            mqtt,
            seed,
            devices,
            base_port,
            control,
            paused,
        } => {
            let s = match load(&scenario) {
                Ok(s) => s.reseeded(seed),
                Err(code) => return code,
            };
            let s = match s.replicated(devices, base_port) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EX_USAGE);
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    error!(error = %e, "cannot start the async runtime");
                    return ExitCode::FAILURE;
                }
            };
            let has_mqtt = s.devices.iter().any(|d| d.mqtt.is_some());
            let mqtt = match mqtt {
                Some(url) => Some(url),
                None if has_mqtt => {
                    let host = host.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
                    match hardware_sim::broker::start(host) {
                        Ok(url) => {
                            let line = serde_json::json!({"event": "broker", "url": url});
                            let _ = print_json(&line);
                            Some(url)
                        }
                        Err(e) => {
                            error!(error = %e, "cannot start the embedded MQTT broker");
                            return ExitCode::FAILURE;
                        }
                    }
                }
                None => None,
            };
            let extras = PlayExtras {
                mqtt_broker: mqtt,
                start_paused: paused,
            };
            runtime.block_on(run_play(
                s,
                PlayOptions { speed, host },
                extras,
                control,
                exit_at_end,
            ))
        }
    }
}

/// Loads and validates, printing every problem to stderr.
fn load(path: &Path) -> Result<Scenario, ExitCode> {
    Scenario::from_file(path).map_err(|e| {
        let lines = e.lines();
        eprintln!("{}: {} problem(s)", path.display(), lines.len());
        for line in lines {
            eprintln!("{line}");
        }
        ExitCode::from(EX_USAGE)
    })
}

/// The shipped library next to the crate, or `./scenarios`.
fn default_library() -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    if shipped.is_dir() {
        shipped
    } else {
        PathBuf::from("scenarios")
    }
}

fn run_score(scenario: &Path, events: &Path, speed: f64, t0: Option<&str>, json: bool) -> ExitCode {
    let s = match load(scenario) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let result = std::fs::read_to_string(events)
        .map_err(|e| format!("{}: {e}", events.display()))
        .and_then(|text| score::parse_events(&text).map_err(|e| e.to_string()))
        .and_then(|evs| {
            let t0 = t0.map(score::parse_ts).transpose()?;
            score::score(&s.name, s.truth.as_ref(), &evs, t0, speed).map_err(|e| e.to_string())
        });
    match result {
        Ok(sc) => {
            if json {
                println!("{}", serde_json::to_string(&sc).unwrap_or_default());
            } else {
                print!("{}", score::table(std::slice::from_ref(&sc)));
            }
            if sc.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(EX_USAGE)
        }
    }
}

async fn run_play(
    scenario: Scenario,
    opts: PlayOptions,
    extras: PlayExtras,
    control: Option<std::net::SocketAddr>,
    exit_at_end: bool,
) -> ExitCode {
    let mut handle = match play_with(scenario, opts, extras).await {
        Ok(h) => h,
        Err(e) => {
            error!(error = %e, "cannot start the scenario");
            return match e {
                hardware_sim::RunnerError::InvalidSpeed(_) => ExitCode::from(EX_USAGE),
                hardware_sim::RunnerError::NoBroker { .. } | hardware_sim::RunnerError::Mqtt(_) => {
                    ExitCode::from(EX_USAGE)
                }
                hardware_sim::RunnerError::Bind { .. }
                | hardware_sim::RunnerError::Serial { .. } => ExitCode::FAILURE,
            };
        }
    };
    let Some(mut events) = handle.take_events() else {
        return ExitCode::FAILURE;
    };
    let _control_task = match control {
        None => None,
        Some(addr) => match hardware_sim::control::serve(addr, handle.control()).await {
            Ok((local, task)) => {
                let line = serde_json::json!({"event": "control", "addr": local.to_string()});
                if let Err(e) = print_json(&line) {
                    error!(error = %e, "stdout closed");
                }
                Some(AbortOnDrop(task))
            }
            Err(e) => {
                error!(error = %e, "cannot serve the control API");
                return ExitCode::FAILURE;
            }
        },
    };
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break };
                if let Err(e) = print_line(&event) {
                    error!(error = %e, "stdout closed; stopping");
                    break;
                }
                if event == PlayEvent::Finished && exit_at_end {
                    break;
                }
            }
            () = &mut stop => {
                info!("signal received; stopping");
                break;
            }
        }
    }
    handle.shutdown().await;
    ExitCode::SUCCESS
}

/// Stops a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn print_json(value: &serde_json::Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()
}

fn print_line(event: &PlayEvent) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, event)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
