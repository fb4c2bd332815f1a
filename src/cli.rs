//! Command-line interface: what each command does, in `firebreak --help`.

use crate::logging::LogFormat;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Where the agent's config lives when neither `--config` nor `FIREBREAK_CONFIG` says
/// (the Debian package installs it there).
pub const DEFAULT_CONFIG: &str = "/etc/firebreak/firebreak.toml";

/// `firebreak --version`: the package version and the git commit it was built from
/// (src/build.rs; "unknown" when built outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("FIREBREAK_GIT_COMMIT"),
    ")"
);

/// Firebreak watches server-room battery rooms (temperature, off-gas, smoke, UPS) and, on
/// fire or power risk, runs the zone's failover runbook and declares when it is safe to cut
/// power.
#[derive(Debug, Parser)]
#[command(name = "firebreak", version = VERSION, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log filter, e.g. "info", "warn,firebreak=debug" [default: info; for `demo`, errors
    /// only, so that the log does not cover the demo's own view]. A filter that does not
    /// parse is an error.
    #[arg(long, global = true, env = "RUST_LOG", value_name = "FILTER",
          value_parser = crate::logging::parse_filter)]
    pub log: Option<String>,
    /// Log line format: text for people, json (one object per line) for log shippers.
    /// Under systemd each line also carries its journald priority (`journalctl -p err`).
    #[arg(long, global = true, env = "FIREBREAK_LOG_FORMAT", value_enum,
          default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
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
        /// Path to the config file (config/firebreak.toml documents every key).
        #[arg(long, short, value_name = "PATH", env = "FIREBREAK_CONFIG",
              default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Run even as root. The agent needs no privileges (run it as a `firebreak` user,
        /// as the systemd unit does); without this flag it refuses to start as root.
        #[arg(long)]
        allow_root: bool,
    },
    /// Parse and validate a config, print a summary; exit 0 when valid, 64 with every
    /// problem (key path and line) when not. Missing secret files are warnings here.
    CheckConfig {
        /// Path to the config file (config/firebreak.toml documents every key).
        #[arg(long, short, value_name = "PATH", env = "FIREBREAK_CONFIG",
              default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Fire drill: run a zone's runbook in dry run (every check that changes nothing: the
    /// DNS server answers for the record, HAProxy knows the servers, the webhook answers,
    /// the command exists) and print a pass/fail table. Exit 0 when every step passes, 1
    /// otherwise. Runs locally; needs no running agent.
    Drill {
        /// Path to the config file (config/firebreak.toml documents every key).
        #[arg(long, short, value_name = "PATH", env = "FIREBREAK_CONFIG",
              default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Zone id.
        #[arg(long)]
        zone: String,
    },
    /// Ask a running agent to fail a zone over now (POST /api/v1/zones/ZONE/failover,
    /// with the token from `[api] token_file`).
    Failover {
        /// Path to the config file (config/firebreak.toml documents every key).
        #[arg(long, short, value_name = "PATH", env = "FIREBREAK_CONFIG",
              default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        zone: String,
    },
    /// Ask a running agent to reset a zone's incident after the danger is over
    /// (POST /api/v1/zones/ZONE/reset).
    Reset {
        /// Path to the config file (config/firebreak.toml documents every key).
        #[arg(long, short, value_name = "PATH", env = "FIREBREAK_CONFIG",
              default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[arg(long)]
        zone: String,
        /// Who resets it (recorded in the `incident_reset` event).
        #[arg(long, default_value = "cli")]
        by: String,
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
        /// Path to the config file (config/firebreak.toml documents every key).
        #[arg(long, short, value_name = "PATH", env = "FIREBREAK_CONFIG",
              default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Recorded samples (.csv or .jsonl).
        #[arg(long, short, value_name = "FILE")]
        input: PathBuf,
        /// Also write the decisions (criticals with evidence, every event) as JSON here.
        #[arg(long, value_name = "OUT")]
        json: Option<PathBuf>,
    },
    #[cfg(feature = "demo")]
    /// Play a scenario of the simulator's library (by default the Pangyo-like fire) on a
    /// simulated room and watch the agent fail it over: simulator, embedded MQTT broker and
    /// agent in this one process, no setup, no external services. Ends with a report
    /// picture (SVG, PNG) and the event log. Exit status 0 when the scenario's expectation
    /// is met (fail over before the power cut, or not at all), 1 when not.
    #[command(after_help = DEMO_HELP)]
    Demo {
        /// The library scenario to play (`firebreak-sim scenarios` describes them).
        #[arg(long, value_name = "NAME", default_value = crate::demo::DEFAULT_SCENARIO)]
        scenario: String,
        /// Speed-up of the scenario (default: the whole scenario in about a minute).
        #[arg(long)]
        speed: Option<f64>,
        /// Plain lines for CI logs instead of the live terminal view (the default when
        /// stdout is not a terminal).
        #[arg(long)]
        no_tui: bool,
        /// Directory for report.svg, report.png and events.jsonl
        /// [default: firebreak-demo/<scenario>].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Stands in for `demo` in an agent built without it (the production package): says
    /// how to get the demo instead of "unrecognized subcommand".
    #[cfg(not(feature = "demo"))]
    #[command(hide = true)]
    Demo {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    /// Commissioning: read a device or watch a topic and print every plausible decoding,
    /// before writing the config. Read-only.
    Probe {
        #[command(subcommand)]
        what: ProbeCommand,
    },
    /// Reload a running agent's config and wait until it is applied or rejected: the
    /// systemd unit's ExecReload=, so that `systemctl reload` waits for the outcome.
    ///
    /// Sends SIGHUP to the agent, then waits for its report of that reload in
    /// $RUNTIME_DIRECTORY/reload.json (the unit's RuntimeDirectory=). Exit 0 when applied;
    /// 1 when rejected (the reason is printed), when no report came within --timeout or
    /// when the agent is gone. Without RUNTIME_DIRECTORY it only sends the signal.
    Reload {
        /// The agent's process id (the unit passes $MAINPID).
        #[arg(long)]
        pid: i32,
        /// How long to wait for the outcome, e.g. "60s".
        #[arg(long, default_value = "60s")]
        timeout: String,
    },
    /// Write the man pages and the shell completions under DIR (for packaging).
    #[command(hide = true)]
    GenerateAssets {
        /// Output directory; `man/` and `completions/` are created in it.
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProbeCommand {
    /// Read registers once; print u16, i16, bits, and u32/i32/f32 in both word orders.
    /// With --table coil or discrete, print each bit (0/1) instead.
    ///
    /// Example: firebreak probe modbus tcp://10.20.0.21:502 --unit 1 --table input --address 0 --count 4 --scale 0.1
    Modbus {
        /// tcp://host:port or rtu:///dev/ttyUSB0?baud=19200&parity=N&stop=1
        url: String,
        #[arg(long, default_value_t = 1)]
        unit: u8,
        /// The register table to read.
        #[arg(long, value_enum, default_value_t = ProbeTable::Holding)]
        table: ProbeTable,
        /// First register or bit (0-based PDU address, as in the config).
        #[arg(long, default_value_t = 0)]
        address: u16,
        #[arg(long, default_value_t = 10)]
        count: u16,
        /// Multiply every decoding by this (as the config's `scale`).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Connect and read timeout, e.g. "1s", "500ms".
        #[arg(long, default_value = "2s", value_parser = parse_duration_arg)]
        timeout: Duration,
    },
    /// Subscribe and print every message, and what a json_pointer extracts from it.
    ///
    /// Example: firebreak probe mqtt mqtt://10.20.0.5:1883 --topic 'dc1/b3/#' --json-pointer /obscuration
    Mqtt {
        /// mqtt://host:port or mqtts://host:port
        url: String,
        /// Topic filter (wildcards allowed).
        #[arg(long)]
        topic: String,
        #[arg(long)]
        json_pointer: Option<String>,
        #[arg(long)]
        username: Option<String>,
        #[arg(long, value_name = "PATH")]
        password_file: Option<PathBuf>,
        #[arg(long, value_name = "PATH")]
        ca_file: Option<PathBuf>,
        /// Exit after this many messages (0: run until Ctrl-C or --for).
        #[arg(long, default_value_t = 0)]
        count: usize,
        /// Exit after this long, e.g. "30s", "2m".
        #[arg(long = "for", value_parser = parse_duration_arg)]
        duration: Option<Duration>,
    },
    /// List a BACnet/IP device's objects: name, present value, units and status flags,
    /// and the `object` key that reads each. Read-only (ReadProperty and
    /// ReadPropertyMultiple only).
    ///
    /// Example: firebreak probe bacnet bacnet://10.20.0.60:47808 --device 3101
    Bacnet {
        /// bacnet://host or bacnet://host:47808
        url: String,
        /// The instance of the device's Device object.
        #[arg(long)]
        device: u32,
        /// One request's timeout, e.g. "2s".
        #[arg(long, default_value = "2s", value_parser = parse_duration_arg)]
        timeout: Duration,
    },
}

/// A Modbus table, as `--table` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeTable {
    /// Holding registers (function 3).
    Holding,
    /// Input registers (function 4).
    Input,
    /// Coils (function 1).
    Coil,
    /// Discrete inputs (function 2).
    Discrete,
}

impl From<ProbeTable> for crate::config::Table {
    fn from(t: ProbeTable) -> Self {
        match t {
            ProbeTable::Holding => crate::config::Table::Holding,
            ProbeTable::Input => crate::config::Table::Input,
            ProbeTable::Coil => crate::config::Table::Coil,
            ProbeTable::Discrete => crate::config::Table::Discrete,
        }
    }
}

/// A duration flag, in the config's grammar ("250ms", "5s", "2m"); a bad one is clap's
/// usage error.
fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    crate::config::units::parse_duration(text)
}

#[cfg(feature = "demo")]
const DEMO_HELP: &str =
    "Scenarios: charge-stopped-by-agent, device-reboot, dropout, emi-spike, encoding, frozen-sensor, \
gateway-zero-fill, hvac-failure, li-ion-runaway, normal-day, normal-day-full, nuisance-spike, nuisance-spikes, offgas-clears, offgas-then-heat, \
pangyo-replay, room-charge-stopped, room-runaway, utility-loss.\n\
Steps the demo has no system for (pager, DNS, load balancer) are configured `dry_run = true` \
in config/demo.toml: they say what they would do and are left out of the safe-to-cut verdict.";

#[cfg(all(test, feature = "demo"))]
mod tests {
    #[test]
    fn the_demo_help_names_every_library_scenario() {
        for name in hardware_sim::library::names() {
            assert!(
                super::DEMO_HELP.contains(&format!(" {name},"))
                    || super::DEMO_HELP.contains(&format!(" {name}.")),
                "add `{name}` to DEMO_HELP"
            );
        }
    }
}
