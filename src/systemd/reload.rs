//! `firebreak reload --pid PID`, the unit's `ExecReload=`: sends SIGHUP to the agent and
//! waits until the agent reports how that reload ended, so that `systemctl reload` returns
//! when the new config is applied, and fails when it was rejected.
//!
//! Design: with systemd 252 (Debian 12) and `Type=notify`, a reload job lasts as long as
//! `ExecReload=` runs, plus until READY=1 if RELOADING=1 arrived before it ended: a bare
//! `kill -HUP` ends at once and the job with it. `Type=notify-reload`, which waits by
//! itself, needs systemd 253. So the agent writes the outcome of each reload to
//! `$RUNTIME_DIRECTORY/reload.json` (after READY=1), and this command waits for a record
//! of a reload started after its signal: both sides stamp with CLOCK_MONOTONIC, the clock
//! of `MONOTONIC_USEC=`. A reload already under way when the signal comes is not the one
//! it waits for (the signal queues another).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The record's file name in the runtime directory.
pub const FILE: &str = "reload.json";

/// How a reload ended, as the agent writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadRecord {
    /// CLOCK_MONOTONIC, in µs, when the agent began the reload (its `MONOTONIC_USEC=`).
    pub started_usec: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    Rejected { reason: String },
}

/// The runtime directory systemd made for the unit (`RuntimeDirectory=`): the first of
/// `RUNTIME_DIRECTORY`'s colon-separated paths.
pub fn runtime_dir() -> Option<PathBuf> {
    let all = std::env::var_os("RUNTIME_DIRECTORY")?;
    std::env::split_paths(&all)
        .next()
        .filter(|p| !p.as_os_str().is_empty())
}

/// Writes `record` atomically (a reader never sees half of it).
pub fn write(dir: &Path, record: &ReloadRecord) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec(record)?)?;
    std::fs::rename(&tmp, dir.join(FILE))
}

fn read(dir: &Path) -> Option<ReloadRecord> {
    serde_json::from_slice(&std::fs::read(dir.join(FILE)).ok()?).ok()
}

/// How often the record is looked at while waiting.
const POLL: Duration = Duration::from_millis(50);

/// The command. Exit 0: applied (or, without a runtime directory, signalled); 1: rejected,
/// no answer within `timeout`, or the agent gone; 64: a bad `--timeout`.
pub fn run(pid: i32, timeout: &str) -> ExitCode {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let timeout = match crate::config::units::parse_duration(timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: --timeout: {e}");
            return ExitCode::from(64);
        }
    };
    let asked = super::monotonic_usec();
    let pid = Pid::from_raw(pid);
    if let Err(e) = kill(pid, Signal::SIGHUP) {
        eprintln!("error: cannot signal the agent (pid {pid}): {e}");
        return ExitCode::FAILURE;
    }
    let Some(dir) = runtime_dir() else {
        eprintln!(
            "sent SIGHUP to {pid}; no RUNTIME_DIRECTORY (not run by the unit), so not \
             waiting for the outcome: see the agent's log"
        );
        return ExitCode::SUCCESS;
    };
    let until = crate::clock::now() + timeout;
    loop {
        match read(&dir) {
            Some(r) if r.started_usec >= asked => {
                return match r.outcome {
                    Outcome::Applied => {
                        println!("config reloaded");
                        ExitCode::SUCCESS
                    }
                    Outcome::Rejected { reason } => {
                        eprintln!(
                            "config reload rejected, the running config is unchanged: {reason}"
                        );
                        ExitCode::FAILURE
                    }
                };
            }
            _ => {}
        }
        if kill(pid, None).is_err() {
            eprintln!("error: the agent (pid {pid}) exited during the reload");
            return ExitCode::FAILURE;
        }
        if crate::clock::now() >= until {
            eprintln!(
                "error: the agent (pid {pid}) did not report the reload's outcome within {} \
                 ({})",
                crate::config::units::format_duration(timeout),
                dir.join(FILE).display()
            );
            return ExitCode::FAILURE;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_with_the_outcome_named() {
        let dir = tempfile::tempdir().unwrap();
        let rejected = ReloadRecord {
            started_usec: 42,
            outcome: Outcome::Rejected {
                reason: "sensors[0].zone: no zone `x`".into(),
            },
        };
        write(dir.path(), &rejected).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(text.contains(r#""outcome":"rejected""#), "{text}");
        assert_eq!(read(dir.path()), Some(rejected));
        let applied = ReloadRecord {
            started_usec: 43,
            outcome: Outcome::Applied,
        };
        write(dir.path(), &applied).unwrap();
        assert_eq!(read(dir.path()), Some(applied));
    }
}
