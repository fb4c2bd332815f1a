//! Thin binary: parse the command line, load and validate config, build, run.

use clap::Parser;
use firebreak::cli::{Cli, Command};
use firebreak::config::{self, ConfigError};
use std::process::ExitCode;

/// The binary's own messages to stderr (errors before exit, config problems) go through
/// `logging::stderr_lines`, which gives them journald priorities under systemd.
macro_rules! eprintln {
    ($($arg:tt)*) => {
        firebreak::logging::stderr_lines(&format!($($arg)*))
    };
}

/// clap's exit status for a command line it cannot use.
#[cfg(not(feature = "demo"))]
const EX_CLI_USAGE: u8 = 2;
/// `EX_USAGE` from sysexits.h: the configuration is wrong.
const EX_USAGE: u8 = 64;
/// `EX_DATAERR`: the replay input is malformed.
const EX_DATAERR: u8 = 65;
/// `EX_NOINPUT`: the replay input cannot be read.
const EX_NOINPUT: u8 = 66;
/// `EX_NOPERM`: refused to run as root.
const EX_NOPERM: u8 = 77;
/// `EX_SOFTWARE`: the agent failed at run time.
const EX_SOFTWARE: u8 = 70;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match cli.command {
        Command::Demo { .. } => "error,rumqttd=off",
        _ => "info",
    };
    firebreak::logging::init(cli.log.as_deref(), default, cli.log_format);

    match cli.command {
        Command::CheckConfig { config: path } => match config::load(&path) {
            Ok(loaded) => {
                let mut secrets = firebreak::agent::missing_secrets(&loaded.config);
                secrets.extend(firebreak::agent::exposed_secrets(&loaded.config));
                print!("{}", firebreak::agent::summary(&path, &loaded.config));
                for w in loaded.warnings.iter().chain(secrets.iter()) {
                    println!("warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => report(&e),
        },
        Command::Run {
            config: path,
            allow_root,
        } => {
            let euid = nix::unistd::geteuid();
            if euid.is_root() {
                if !allow_root {
                    eprintln!(
                        "error: refusing to run as root: the agent needs no privileges. Run it \
                         as an unprivileged user (the systemd unit uses `firebreak`), or pass \
                         --allow-root if you really mean it"
                    );
                    return ExitCode::from(EX_NOPERM);
                }
                tracing::warn!("running as root (--allow-root)");
            }
            let loaded = match config::load(&path) {
                Ok(l) => l,
                Err(e) => return report(&e),
            };
            for w in loaded
                .warnings
                .iter()
                .chain(&firebreak::agent::exposed_secrets(&loaded.config))
            {
                tracing::warn!(problem = %w, "config warning");
            }
            let secrets = firebreak::agent::missing_secrets(&loaded.config);
            if !secrets.is_empty() {
                for s in &secrets {
                    eprintln!("error: {s}");
                }
                eprintln!(
                    "{}: {} secret file(s) missing; the agent will not start without them",
                    path.display(),
                    secrets.len()
                );
                return ExitCode::from(EX_USAGE);
            }
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::from(EX_SOFTWARE);
                }
            };
            match rt.block_on(firebreak::agent::run(loaded.config, path)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EX_SOFTWARE)
                }
            }
        }
        Command::Drill { config: path, zone } => {
            let loaded = match config::load(&path) {
                Ok(l) => l,
                Err(e) => return report(&e),
            };
            match block_on(firebreak::ops::drill(&loaded.config, &zone)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EX_USAGE)
                }
            }
        }
        Command::Failover { config: path, zone } => remote(&path, &zone, "failover", None),
        Command::Reset {
            config: path,
            zone,
            by,
        } => remote(&path, &zone, "reset", Some(by)),
        Command::Probe { what } => probe(what),
        Command::Replay {
            config: path,
            input,
            json,
        } => {
            let loaded = match config::load(&path) {
                Ok(l) => l,
                Err(e) => return report(&e),
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            match firebreak::replay::run(&loaded.config, &input, json.as_deref(), &mut out) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    use firebreak::replay::ReplayError;
                    let _ = std::io::Write::flush(&mut out);
                    eprintln!("error: {e}");
                    ExitCode::from(match e {
                        ReplayError::Parse { .. } => EX_DATAERR,
                        ReplayError::Read { .. } => EX_NOINPUT,
                        ReplayError::Write { .. } => EX_SOFTWARE,
                    })
                }
            }
        }
        #[cfg(not(feature = "demo"))]
        Command::Demo { .. } => {
            eprintln!(
                "error: this firebreak was built without the demo (the production agent, as \
                 packaged, carries no simulator). Run the demo from the source tree: \
                 `cargo run --release -- demo`"
            );
            ExitCode::from(EX_CLI_USAGE)
        }
        #[cfg(feature = "demo")]
        Command::Demo {
            scenario,
            speed,
            no_tui,
            out,
        } => match firebreak::demo::run(firebreak::demo::DemoOptions {
            out: out.unwrap_or_else(|| firebreak::demo::default_out(&scenario)),
            scenario,
            speed,
            no_tui,
        }) {
            Ok(r) if r.passed => ExitCode::SUCCESS,
            Ok(_) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EX_SOFTWARE)
            }
        },
        Command::Reload { pid, timeout } => firebreak::systemd::reload::run(pid, &timeout),
        Command::GenerateAssets { dir } => firebreak::assets::run(&dir),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// An operator action against the running agent named by the config's `[api]`.
fn remote(path: &std::path::Path, zone: &str, action: &str, by: Option<String>) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => return report(&e),
    };
    match block_on(firebreak::ops::remote(&loaded.config, zone, action, by)) {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn probe(what: firebreak::cli::ProbeCommand) -> ExitCode {
    use firebreak::cli::ProbeCommand;
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(EX_SOFTWARE);
        }
    };
    let usage = |m: String| {
        eprintln!("error: {m}");
        ExitCode::from(EX_USAGE)
    };
    let result = match what {
        ProbeCommand::Modbus {
            url,
            unit,
            table,
            address,
            count,
            scale,
            timeout,
        } => {
            let p = firebreak::probe::ModbusProbe {
                url,
                unit,
                table: table.into(),
                address,
                count,
                scale,
                timeout,
            };
            rt.block_on(firebreak::probe::modbus(&p))
                .map(|report| print!("{report}"))
        }
        ProbeCommand::Mqtt {
            url,
            topic,
            json_pointer,
            username,
            password_file,
            ca_file,
            count,
            duration,
        } => {
            let p = firebreak::probe::MqttProbe {
                url,
                topic,
                json_pointer,
                username,
                password_file,
                ca_file,
                count,
                duration,
            };
            rt.block_on(firebreak::probe::mqtt(&p))
        }
        ProbeCommand::Bacnet {
            url,
            device,
            timeout,
        } => {
            let p = firebreak::probe::BacnetProbe {
                url,
                device,
                timeout,
            };
            rt.block_on(firebreak::probe::bacnet(&p))
                .map(|report| print!("{report}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(firebreak::probe::ProbeError::Usage(m)) => usage(m),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EX_SOFTWARE)
        }
    }
}

fn report(e: &ConfigError) -> ExitCode {
    for p in &e.errors {
        eprintln!("error: {p}");
    }
    for w in &e.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!("{e}");
    ExitCode::from(EX_USAGE)
}
