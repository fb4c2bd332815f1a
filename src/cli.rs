//! Command-line interface: what each command does, in `firebreak --help`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Firebreak watches server-room battery rooms (temperature, off-gas, smoke, UPS) and, on
/// fire or power risk, runs the zone's failover runbook and declares when it is safe to cut
/// power.
#[derive(Debug, Parser)]
#[command(name = "firebreak", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log filter (also RUST_LOG), e.g. "info", "firebreak=debug".
    #[arg(long, global = true, default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent until SIGINT or SIGTERM: poll sensors, detect, run runbooks, log events.
    ///
    /// Exits 64 when the config is invalid (every problem is listed) or a secret file it
    /// names is missing. Environment variables FIREBREAK__SECTION__KEY override the file
    /// (e.g. FIREBREAK__AGENT__DRY_RUN=true).
    Run {
        /// Path to the config file (see config/firebreak.toml for every key).
        #[arg(long, short, value_name = "PATH")]
        config: PathBuf,
    },
    /// Parse and validate a config, print a summary; exit 0 when valid, 64 with every
    /// problem (key path and line) when not. Missing secret files are warnings here.
    CheckConfig {
        /// Path to the config file.
        #[arg(long, short, value_name = "PATH")]
        config: PathBuf,
    },
    /// Replay recorded telemetry through the detection core in virtual time (no network):
    /// print the events the agent would have written and a summary of what would have
    /// gone critical, when, and on what evidence.
    ///
    /// Input: CSV `ts,sensor,value` (header optional) or JSON lines
    /// `{"ts":..,"sensor":..,"value":..}`, told apart by extension or content. `ts` is
    /// RFC 3339 or epoch milliseconds; `value` a number, empty/null (no data), `nan`, or a
    /// fault reason such as `fault:modbus_exception`. Unknown sensor ids are counted and
    /// reported. Exits 64 on a bad config, 65 on bad input (the line is named), 66 when
    /// the input cannot be read.
    Replay {
        /// Path to the config file (sensors, zones and detection parameters).
        #[arg(long, short, value_name = "PATH")]
        config: PathBuf,
        /// Recorded samples (.csv or .jsonl).
        #[arg(long, short, value_name = "FILE")]
        input: PathBuf,
        /// Also write the decisions (criticals with evidence, every event) as JSON here.
        #[arg(long, value_name = "OUT")]
        json: Option<PathBuf>,
    },
    /// Play a fire scenario on a simulated room and watch the agent fail it over, with no
    /// setup and no external services.
    Demo {
        /// Speed-up of the simulated scenario.
        #[arg(long, default_value_t = 4.0)]
        speed: f64,
    },
}
