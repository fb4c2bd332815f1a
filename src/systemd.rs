//! systemd integration through the `sd-notify` crate: readiness, the watchdog, reloads and
//! stopping over the `NOTIFY_SOCKET` datagram socket (`READY=1`, `WATCHDOG=1`,
//! `RELOADING=1`, `STOPPING=1`, `STATUS=`). Without systemd (no `NOTIFY_SOCKET`) every call
//! does nothing. `reload` is the other side of a reload: the unit's `ExecReload=`.

pub mod reload;

use reload::{Outcome, ReloadRecord};
use sd_notify::NotifyState;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What systemd hands the agent for its own use, never meant for its children: a child
/// that inherits `NOTIFY_SOCKET` could report readiness or stopping on the agent's behalf
/// (with `NotifyAccess=all`) or confuse a child that is itself a notify-aware daemon.
/// `command` steps remove these from their children's environment.
pub const AGENT_ONLY_ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

// Design: the variables stay set in the agent's own environment. `sd_notify::notify`
// reads NOTIFY_SOCKET on every call, so unsetting it would silence every notification
// after the first; and unsetting variables once threads run is unsound. Children are
// spawned with `env_remove` instead, which does not depend on when they are spawned.

pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
    /// Where the outcome of each reload is written for `firebreak reload`
    /// (`RuntimeDirectory=`), if systemd made one.
    runtime_dir: Option<PathBuf>,
    /// CLOCK_MONOTONIC (µs) when the reload under way began.
    reload_started: AtomicU64,
}

/// CLOCK_MONOTONIC in µs, the clock of `MONOTONIC_USEC=` (0 if it cannot be read, which
/// Linux does not do).
pub fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` (set by systemd for `Type=notify`) and the watchdog
    /// (`WATCHDOG_USEC`, honoured only when `WATCHDOG_PID` is unset or names this
    /// process: the variables may have been inherited from a parent that is the one
    /// systemd watches).
    pub fn from_env() -> Self {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty()),
            watchdog: sd_notify::watchdog_enabled().filter(|w| !w.is_zero()),
            runtime_dir: reload::runtime_dir(),
            reload_started: AtomicU64::new(0),
        }
    }

    /// How often to ping the watchdog (half its timeout), if systemd asked for it.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.enabled).map(|w| w / 2)
    }

    fn send(&self, state: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(state) {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    pub fn ready(&self) {
        self.send(&[NotifyState::Ready, NotifyState::Status("watching")]);
    }

    /// Called from the detection loop: a hung loop stops pinging and systemd restarts us.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// A config reload starts. systemd >= 253 (`Type=notify-reload`) needs the monotonic
    /// time with `RELOADING=1` to tell this reload from an earlier one; older versions
    /// ignore it. Followed by `reload_applied` or `reload_rejected`.
    pub fn reloading(&self) {
        let now = monotonic_usec();
        self.reload_started.store(now, Ordering::Relaxed);
        self.send(&[
            NotifyState::Reloading,
            NotifyState::MonotonicUsec(now.into()),
            NotifyState::Status("reloading the config"),
        ]);
    }

    /// The reload is over and its config runs: READY=1, then the record that
    /// `firebreak reload` waits for.
    pub fn reload_applied(&self) {
        self.send(&[
            NotifyState::Ready,
            NotifyState::Status("watching; config reloaded"),
        ]);
        self.record(Outcome::Applied);
    }

    /// The reload is over and the running config stays: READY=1 (the agent is as ready as
    /// before), then the record with the reason.
    pub fn reload_rejected(&self, reason: &str) {
        self.send(&[
            NotifyState::Ready,
            NotifyState::Status("watching; the last config reload was rejected (see the log)"),
        ]);
        self.record(Outcome::Rejected {
            reason: reason.to_string(),
        });
    }

    fn record(&self, outcome: Outcome) {
        let Some(dir) = &self.runtime_dir else {
            return;
        };
        let record = ReloadRecord {
            started_usec: self.reload_started.load(Ordering::Relaxed),
            outcome,
        };
        if let Err(e) = reload::write(dir, &record) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot write the reload's outcome; `firebreak reload` will time out");
        }
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }
}

#[cfg(test)]
mod tests {
    //! `sd_notify` reads the agent's environment, which a test must not change while other
    //! tests run: each scenario runs in a child process of this test binary (one of the
    //! `#[ignore]`d tests below, run alone) whose environment names a real datagram socket
    //! that the test reads.

    use super::*;
    use std::os::unix::net::UnixDatagram;
    use std::process::Command;

    /// Set in the child: a scenario run any other way (`--include-ignored`) does nothing.
    const IN_CHILD: &str = "FIREBREAK_NOTIFY_SCENARIO";

    fn in_child() -> bool {
        std::env::var_os(IN_CHILD).is_some()
    }

    /// Runs the ignored test `scenario` in a child process with `NOTIFY_SOCKET` naming a
    /// fresh socket (plus `env`), and returns the datagrams it sent, in order.
    fn notifications_of(scenario: &str, env: &[(&str, String)]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let name = format!("systemd::tests::{scenario}");
        let out = Command::new(std::env::current_exe().unwrap())
            .args([name.as_str(), "--exact", "--ignored", "--test-threads=1"])
            .env("NOTIFY_SOCKET", &path)
            .env(IN_CHILD, "1")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "scenario {scenario} did not run and pass:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        socket.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while let Ok(len) = socket.recv(&mut buf) {
            got.push(String::from_utf8(buf[..len].to_vec()).unwrap());
        }
        got
    }

    fn lines(datagram: &str) -> Vec<&str> {
        datagram.lines().collect()
    }

    #[test]
    #[ignore = "a scenario, run by the test beside it with NOTIFY_SOCKET set"]
    fn scenario_start_and_ping() {
        if !in_child() {
            return;
        }
        let n = Notifier::from_env();
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(5)));
        n.ready();
        n.watchdog();
        n.stopping();
    }

    #[test]
    fn readiness_watchdog_and_stopping_reach_the_socket_systemd_names() {
        let got = notifications_of(
            "scenario_start_and_ping",
            &[("WATCHDOG_USEC", "10000000".into())],
        );
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(lines(&got[0]), ["READY=1", "STATUS=watching"]);
        assert_eq!(lines(&got[1]), ["WATCHDOG=1"]);
        assert_eq!(lines(&got[2]), ["STOPPING=1", "STATUS=stopping"]);
    }

    #[test]
    #[ignore = "a scenario, run by the test beside it with NOTIFY_SOCKET set"]
    fn scenario_watchdog_of_another_process() {
        if !in_child() {
            return;
        }
        let n = Notifier::from_env();
        assert_eq!(n.watchdog_interval(), None);
    }

    #[test]
    fn a_watchdog_meant_for_another_process_is_not_pinged() {
        // WATCHDOG_PID names this (the parent) process, not the child that reads it.
        notifications_of(
            "scenario_watchdog_of_another_process",
            &[
                ("WATCHDOG_USEC", "10000000".into()),
                ("WATCHDOG_PID", std::process::id().to_string()),
            ],
        );
    }

    #[test]
    #[ignore = "a scenario, run by the test beside it with NOTIFY_SOCKET set"]
    fn scenario_reload() {
        if !in_child() {
            return;
        }
        let n = Notifier::from_env();
        n.ready();
        n.reloading();
        n.reload_applied();
    }

    #[test]
    fn a_reload_is_announced_with_the_monotonic_time_and_ends_with_ready() {
        let run = tempfile::tempdir().unwrap();
        let got = notifications_of(
            "scenario_reload",
            &[("RUNTIME_DIRECTORY", run.path().display().to_string())],
        );
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(lines(&got[0])[0], "READY=1");
        let reloading = lines(&got[1]);
        assert_eq!(reloading[0], "RELOADING=1", "{got:?}");
        let usec: u64 = reloading
            .iter()
            .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
            .unwrap_or_else(|| panic!("no MONOTONIC_USEC with RELOADING=1: {got:?}"))
            .parse()
            .unwrap();
        assert!(usec > 0);
        assert_eq!(
            lines(&got[2]),
            ["READY=1", "STATUS=watching; config reloaded"]
        );
        // What `firebreak reload` waits for: this reload, stamped as systemd was told.
        let record: ReloadRecord =
            serde_json::from_slice(&std::fs::read(run.path().join(reload::FILE)).unwrap()).unwrap();
        assert_eq!(
            record,
            ReloadRecord {
                started_usec: usec,
                outcome: Outcome::Applied
            }
        );
    }

    #[test]
    fn without_systemd_nothing_happens() {
        let n = Notifier {
            enabled: false,
            watchdog: Some(Duration::from_secs(10)),
            runtime_dir: None,
            reload_started: AtomicU64::new(0),
        };
        assert_eq!(n.watchdog_interval(), None);
        n.ready();
        n.reloading();
        n.reload_rejected("a reason nobody reads");
    }
}
