//! The real binary under systemd's notify protocol, with a datagram socket of the test in
//! systemd's place: READY=1 once the agent runs, watchdog pings, each SIGHUP reload
//! (applied or rejected) announced with RELOADING=1 and MONOTONIC_USEC and ended with
//! READY=1 after its event is written, STOPPING=1 on SIGTERM; `firebreak reload` (the
//! unit's ExecReload=) returns only when the reload is over and fails when it was
//! rejected; and a `command` step's child inherits neither NOTIFY_SOCKET nor the watchdog
//! variables.

use crate::support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::agent::{post, Agent};
use support::events::Event;

const DEADLINE: Duration = Duration::from_secs(20);
const TOKEN: &str = "notify-test-token-0123456789";

/// The test's stand-in for systemd's notify socket.
struct Systemd {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Systemd {
    fn bind(dir: &Path) -> Systemd {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Systemd { socket, path }
    }

    /// The next message other than a watchdog ping, or a panic with the agent's log after
    /// the deadline. Returns how many pings came before it too.
    fn next(&self, agent: &Agent, what: &str) -> (Vec<String>, usize) {
        let until = Instant::now() + DEADLINE;
        let mut pings = 0;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(len) = self.socket.recv(&mut buf) {
                let text = String::from_utf8(buf[..len].to_vec()).unwrap();
                if text == "WATCHDOG=1\n" {
                    pings += 1;
                    continue;
                }
                return (text.lines().map(String::from).collect(), pings);
            }
            assert!(
                Instant::now() < until,
                "no {what} from the agent\n{}",
                agent.diagnostics()
            );
        }
    }

    /// Waits for a watchdog ping (nothing else may come first).
    fn ping(&self, agent: &Agent) {
        let until = Instant::now() + DEADLINE;
        let mut buf = [0u8; 4096];
        loop {
            if let Ok(len) = self.socket.recv(&mut buf) {
                assert_eq!(&buf[..len], b"WATCHDOG=1\n", "{}", agent.diagnostics());
                return;
            }
            assert!(
                Instant::now() < until,
                "the detection loop does not ping the watchdog\n{}",
                agent.diagnostics()
            );
        }
    }
}

struct Room {
    dir: tempfile::TempDir,
    api_port: u16,
}

impl Room {
    fn new() -> Room {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("api.token");
        std::fs::write(&token, TOKEN).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        Room {
            dir,
            api_port: support::free_port(),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("firebreak.toml")
    }

    fn event_log(&self) -> PathBuf {
        self.dir.path().join("state/events.jsonl")
    }

    /// A zone without sensors whose runbook runs `argv` (not in dry run).
    fn write(&self, argv: &[&str]) {
        let argv: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
        let text = format!(
            r#"
[agent]
name = "notify-test"
state_dir = "{state}"
event_log = "{log}"
dry_run = false

[api]
listen = "127.0.0.1:{port}"
token_file = "{token}"

[[zones]]
id = "z"
runbook = "r"

[[runbooks]]
name = "r"
[[runbooks.steps]]
name = "child"
type = "command"
argv = [{argv}]
timeout = "10s"
"#,
            state = self.dir.path().join("state").display(),
            log = self.event_log().display(),
            port = self.api_port,
            token = self.dir.path().join("api.token").display(),
            argv = argv.join(", "),
        );
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// The unit's RuntimeDirectory=, as systemd hands it to the agent and to ExecReload=.
    fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn start(&self, systemd: &Systemd) -> Agent {
        let socket = systemd.path.display().to_string();
        std::fs::create_dir_all(self.runtime_dir()).unwrap();
        let run = self.runtime_dir().display().to_string();
        let agent = Agent::start_with_env(
            &self.config_path(),
            &self.event_log(),
            &[
                ("NOTIFY_SOCKET", socket.as_str()),
                ("RUNTIME_DIRECTORY", run.as_str()),
                // A 2 s watchdog: pinged every second.
                ("WATCHDOG_USEC", "2000000"),
                ("FIREBREAK_TEST_INHERITED", "yes"),
            ],
        );
        agent.wait_for_api(self.api_port);
        agent
    }
}

fn count(agent: &Agent, pred: impl Fn(&Event) -> bool) -> usize {
    agent.events().iter().filter(|e| pred(&e.event)).count()
}

fn is_reloaded(e: &Event) -> bool {
    matches!(e, Event::ConfigReloaded { .. })
}

fn is_reload_failed(e: &Event) -> bool {
    matches!(e, Event::ConfigReloadFailed { .. })
}

#[test]
fn a_reload_applied_or_rejected_is_bracketed_by_reloading_and_ready() {
    let room = Room::new();
    room.write(&["/bin/true"]);
    let systemd = Systemd::bind(room.dir.path());
    let mut agent = room.start(&systemd);
    let (ready, _) = systemd.next(&agent, "READY=1 at start");
    assert_eq!(ready, ["READY=1", "STATUS=watching"]);

    // An unchanged file: applied.
    agent.signal("HUP");
    let (reloading, pings) = systemd.next(&agent, "RELOADING=1");
    assert_eq!(reloading[0], "RELOADING=1", "{reloading:?}");
    assert!(
        reloading.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "systemd 253 needs MONOTONIC_USEC with RELOADING=1: {reloading:?}"
    );
    let (done, more_pings) = systemd.next(&agent, "READY=1 after the reload");
    assert_eq!(done, ["READY=1", "STATUS=watching; config reloaded"]);
    assert_eq!(
        count(&agent, is_reloaded),
        1,
        "READY=1 comes after the reload's event"
    );
    if pings + more_pings == 0 {
        systemd.ping(&agent);
    }

    // A broken file: rejected, and the reload still ends with READY=1.
    std::fs::write(room.config_path(), "[agent\n").unwrap();
    agent.signal("HUP");
    let (reloading, _) = systemd.next(&agent, "RELOADING=1 (rejected reload)");
    assert_eq!(reloading[0], "RELOADING=1", "{reloading:?}");
    let (done, _) = systemd.next(&agent, "READY=1 after the rejected reload");
    assert_eq!(
        done,
        [
            "READY=1",
            "STATUS=watching; the last config reload was rejected (see the log)"
        ]
    );
    assert_eq!(count(&agent, is_reload_failed), 1);

    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
    let (stopping, _) = systemd.next(&agent, "STOPPING=1");
    assert_eq!(stopping, ["STOPPING=1", "STATUS=stopping"]);
}

/// `firebreak reload --pid PID` as the unit's ExecReload= runs it.
fn exec_reload(room: &Room, pid: u32) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_firebreak"))
        .args(["reload", "--pid", &pid.to_string(), "--timeout", "20s"])
        .env("RUNTIME_DIRECTORY", room.runtime_dir())
        .output()
        .expect("run firebreak reload")
}

#[test]
fn the_reload_command_returns_when_the_reload_is_over_and_fails_when_it_was_rejected() {
    let room = Room::new();
    room.write(&["/bin/true"]);
    let systemd = Systemd::bind(room.dir.path());
    let mut agent = room.start(&systemd);
    systemd.next(&agent, "READY=1 at start");

    let out = exec_reload(&room, agent.pid());
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.diagnostics()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "config reloaded\n");
    // Over when the command returns: the event is written and systemd has had both
    // RELOADING=1 and READY=1 (so a systemd 252 reload job ends with READY=1, not before).
    assert_eq!(count(&agent, is_reloaded), 1);
    let (reloading, _) = systemd.next(&agent, "RELOADING=1");
    assert_eq!(reloading[0], "RELOADING=1");
    let (ready, _) = systemd.next(&agent, "READY=1");
    assert_eq!(ready[0], "READY=1");

    // A rejected reload makes the command, and so `systemctl reload`, fail with the reason.
    std::fs::write(room.config_path(), "[agent\n").unwrap();
    let out = exec_reload(&room, agent.pid());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stderr}\n{}",
        agent.diagnostics()
    );
    assert!(stderr.contains("config reload rejected"), "{stderr}");
    let failed = agent
        .events()
        .into_iter()
        .find(|e| is_reload_failed(&e.event))
        .expect("config_reload_failed written before the command returned");
    let Event::ConfigReloadFailed { reason, .. } = &failed.event else {
        unreachable!()
    };
    assert!(
        stderr.contains(reason.as_str()),
        "the reason of the event: {stderr}"
    );

    let pid = agent.pid();
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
    // The agent is gone: nothing to signal, and that is a failed reload.
    let out = exec_reload(&room, pid);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_command_steps_child_inherits_neither_the_notify_socket_nor_the_watchdog() {
    let room = Room::new();
    let seen = room.dir.path().join("child.env");
    let script = format!("env > {}", seen.display());
    room.write(&["/bin/sh", "-c", &script]);
    let systemd = Systemd::bind(room.dir.path());
    let mut agent = room.start(&systemd);
    systemd.next(&agent, "READY=1 at start");

    let (code, body) = post(room.api_port, "/api/v1/zones/z/failover", Some(TOKEN));
    assert!(code < 300, "{code} {body}");
    let finished = agent.wait_for(
        "runbook_finished",
        DEADLINE,
        |e| matches!(&e.event, Event::RunbookFinished { zone, .. } if zone == "z"),
    );
    let env = std::fs::read_to_string(&seen)
        .unwrap_or_else(|e| panic!("the step did not run ({e}): {finished:?}"));
    assert!(
        env.lines().any(|l| l == "FIREBREAK_TEST_INHERITED=yes"),
        "the rest of the environment is inherited:\n{env}"
    );
    for var in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        assert!(
            !env.lines().any(|l| l.starts_with(&format!("{var}="))),
            "the child sees {var}:\n{env}"
        );
    }
    assert_eq!(agent.stop(), Some(0), "{}", agent.diagnostics());
}
