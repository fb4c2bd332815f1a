//! Runs the real `firebreak` binary against a config and reads its event log and its
//! status document as the agent's types.

use super::events::{read_log, LoggedEvent};
use super::peer::Peer;
use firebreak::api::status::Status;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Agent {
    peer: Peer,
    pub event_log: PathBuf,
    pub stderr_log: PathBuf,
}

impl Agent {
    /// Starts `firebreak run --config <config>`; its stderr goes to a file next to the log.
    pub fn start(config: &Path, event_log: &Path) -> Agent {
        Agent::start_with_log_level(config, event_log, "info")
    }

    /// As `start`, with `RUST_LOG` set to `level`.
    pub fn start_with_log_level(config: &Path, event_log: &Path, level: &str) -> Agent {
        Agent::start_with_env(config, event_log, &[("RUST_LOG", level)])
    }

    /// As `start`, with more environment variables (`RUST_LOG` is `info` unless given).
    pub fn start_with_env(config: &Path, event_log: &Path, env: &[(&str, &str)]) -> Agent {
        let stderr_log = config.with_extension("stderr.log");
        // A fresh log per start, as before: the file is truncated, then appended to.
        std::fs::File::create(&stderr_log).expect("create stderr log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_firebreak"));
        // Tests may run as root (CI containers); the flag is harmless otherwise.
        cmd.args(["run", "--allow-root", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        let mut peer = Peer::with_log("firebreak", &stderr_log).stderr_only();
        peer.start(cmd);
        Agent {
            peer,
            event_log: event_log.to_path_buf(),
            stderr_log,
        }
    }

    /// Every event written so far.
    pub fn events(&self) -> Vec<LoggedEvent> {
        read_log(&self.event_log)
    }

    /// Waits until an event satisfies `pred`, or panics after `deadline` with the log so far.
    pub fn wait_for(
        &mut self,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&LoggedEvent) -> bool,
    ) -> LoggedEvent {
        let until = Instant::now() + deadline;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            if let Some(status) = self.peer.exited() {
                panic!(
                    "agent exited ({status}) before {what}\n{}",
                    self.diagnostics()
                );
            }
            if Instant::now() > until {
                panic!(
                    "timed out after {deadline:?} waiting for {what}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn diagnostics(&self) -> String {
        format!(
            "--- event log ---\n{}\n--- agent stderr ---\n{}",
            std::fs::read_to_string(&self.event_log).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
        )
    }

    /// Waits until the agent's API on `port` answers /healthz (panics after 20 s with the
    /// agent's diagnostics).
    pub fn wait_for_api(&self, port: u16) {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = rt().block_on(async {
                reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < until,
                "API did not come up\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The running agent's process id.
    pub fn pid(&self) -> u32 {
        self.peer.pid().expect("agent running")
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the running agent, as `kill -SIG` would.
    pub fn signal(&self, sig: &str) {
        let pid = self.pid();
        let signal: nix::sys::signal::Signal = format!("SIG{sig}")
            .parse()
            .unwrap_or_else(|e| panic!("no signal SIG{sig}: {e}"));
        let ok = self.peer.signal(signal).is_ok();
        assert!(ok, "kill -{sig} {pid} failed");
    }

    /// Kills the agent with SIGKILL, as a crash or power loss would.
    pub fn kill9(&mut self) {
        self.peer.stop();
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        self.peer.terminate(Duration::from_secs(10))?.code()
    }
}

/// A single-threaded runtime for blocking test code.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// GETs from an agent's API on loopback; returns (status, body).
pub fn get(port: u16, path: &str) -> (u16, String) {
    rt().block_on(async {
        let r = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .expect("API reachable");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    })
}

/// Reads an agent's status document (`/api/v1/status`) as its type, after checking that
/// the type holds the whole document: read and written back, it is the same JSON.
pub fn status_of(body: &str) -> Status {
    let raw: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("status is not JSON ({e}): {body}"));
    let status = Status::from_json(raw.clone())
        .unwrap_or_else(|e| panic!("status does not read as its type ({e}): {body}"));
    assert_eq!(
        serde_json::to_value(&status).unwrap(),
        raw,
        "the status type drops or changes part of the document"
    );
    status
}

/// GETs an agent's `/api/v1/status` as its type (see [`status_of`]).
pub fn status(port: u16) -> Status {
    let (code, body) = get(port, "/api/v1/status");
    assert_eq!(code, 200, "{body}");
    status_of(&body)
}

/// POSTs to an agent's API on loopback; returns (status, body).
pub fn post(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let (status, _, body) = post_full(port, path, token);
    (status, body)
}

/// POSTs to an agent's API on loopback; returns (status, headers, body).
pub fn post_full(
    port: u16,
    path: &str,
    token: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    rt().block_on(async {
        let mut req = reqwest::Client::new().post(format!("http://127.0.0.1:{port}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("API reachable");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.unwrap_or_default())
    })
}

/// Starts the simulator in-process (real Modbus TCP on loopback) on a shipped scenario.
pub fn start_sim(
    rt: &tokio::runtime::Runtime,
    scenario: &str,
    speed: f64,
) -> hardware_sim::PlayHandle {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("hardware-sim/scenarios")
        .join(scenario);
    let scenario = hardware_sim::Scenario::from_file(&path)
        .unwrap_or_else(|e| panic!("scenario {}: {e}", path.display()));
    rt.block_on(hardware_sim::play(
        scenario,
        hardware_sim::PlayOptions { speed, host: None },
    ))
    .expect("start the simulator")
}
