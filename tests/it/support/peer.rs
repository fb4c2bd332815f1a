//! The one harness every real peer of the tests goes through (knotd, etcd, mosquitto,
//! haproxy, prometheus, victoria-metrics, chromedriver, pymodbus, socat, the agent).
//!
//! - **Find or fail.** [`find_program`] looks on PATH, then in the sbin and lib directories
//!   a non-root PATH lacks; [`require`] panics naming the install command. A test whose
//!   peer is missing fails with that command: it never skips.
//! - **Temp dir.** A [`Peer`] owns a throwaway directory (or uses one the caller gives) for
//!   its config, data and log.
//! - **Ready deadline.** [`Peer::wait_ready`] polls a probe until it holds; when the
//!   deadline passes or the peer exits first, it panics with the peer's name and the tail
//!   of its log.
//! - **Keep the log.** stdout and stderr (or stderr alone) are appended to one log file,
//!   kept across restarts; [`Peer::log`] reads it back for diagnostics.
//! - **Kill on drop.** SIGKILL (to the whole process group when the peer was started in its
//!   own) and a wait, so no peer outlives its test. [`Peer::stop`] and [`Peer::restart`]
//!   serve the outage tests.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt as _;

/// Searched after PATH, in this order: the sbin directories a non-root PATH lacks, the
/// usual bin directories, and Debian's chromium directory (`chromium`, `chromedriver`).
const EXTRA_DIRS: &[&str] = &[
    "/usr/sbin",
    "/usr/local/sbin",
    "/sbin",
    "/usr/bin",
    "/usr/local/bin",
    "/usr/lib/chromium",
];

/// How often [`Peer::wait_ready`] asks its probe.
const POLL: Duration = Duration::from_millis(20);

/// How many log lines a readiness panic shows.
const TAIL_LINES: usize = 60;

/// An executable named `name` on PATH or in [`EXTRA_DIRS`].
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The program an environment variable names (an empty value counts as unset), else
/// `default` when it exists: pymodbus's python (`FIREBREAK_PYMODBUS_PYTHON`, else
/// target/pyvenv/bin/python).
pub fn find_with_override(var: &str, default: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    default.is_file().then(|| default.to_path_buf())
}

/// The test venv's python (target/pyvenv/bin/python, where scripts/test installs the pip
/// packages of scripts/packages.txt), or the one the environment variable `var` names:
/// pymodbus's (`FIREBREAK_PYMODBUS_PYTHON`), bacpypes3's (`FIREBREAK_BACPYPES3_PYTHON`).
pub fn venv_python(var: &str) -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyvenv/bin/python");
    find_with_override(var, &venv)
}

/// The message for a missing peer: what is missing and the command that installs it.
pub fn missing(name: &str, install: &str) -> String {
    format!("{name} not found: install it with `{install}` (or run scripts/test, which installs the test peers)")
}

/// [`find_program`], or a panic naming `install`, the command that installs `name`.
pub fn require(name: &str, install: &str) -> PathBuf {
    find_program(name).unwrap_or_else(|| panic!("{}", missing(name, install)))
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A peer process: its command (kept for [`Peer::restart`]), its directory and its log.
pub struct Peer {
    name: String,
    cmd: Option<Command>,
    child: Option<Child>,
    /// How the last process ended when it exited by itself (seen by [`Peer::exited`]).
    exit: Option<ExitStatus>,
    dir: PathBuf,
    log: PathBuf,
    group: bool,
    stdout: bool,
    // Last field: removed after the process is gone.
    _temp: Option<tempfile::TempDir>,
}

impl Peer {
    /// A peer named `name` (not started yet) with its own temp dir `<name>-test-*`; its log
    /// is `<dir>/<name>.log`.
    pub fn new(name: &str) -> Peer {
        let temp = tempfile::Builder::new()
            .prefix(&format!("{name}-test-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for {name}: {e}"));
        let dir = temp.path().to_path_buf();
        let log = dir.join(format!("{name}.log"));
        Peer::build(name, dir, log, Some(temp))
    }

    /// A peer named `name` whose log is the file `log`, in a directory the caller owns.
    pub fn with_log(name: &str, log: &Path) -> Peer {
        let dir = log.parent().unwrap_or(Path::new(".")).to_path_buf();
        Peer::build(name, dir, log.to_path_buf(), None)
    }

    fn build(name: &str, dir: PathBuf, log: PathBuf, temp: Option<tempfile::TempDir>) -> Peer {
        Peer {
            name: name.to_string(),
            cmd: None,
            child: None,
            exit: None,
            dir,
            log,
            group: false,
            stdout: true,
            _temp: temp,
        }
    }

    /// Starts the peer in its own process group, so that whatever it starts (chromedriver's
    /// browsers) is killed with it.
    pub fn own_group(mut self) -> Peer {
        self.group = true;
        self
    }

    /// Only stderr goes to the log; stdout goes nowhere.
    pub fn stderr_only(mut self) -> Peer {
        self.stdout = false;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The peer's directory (its temp dir, or the log's directory).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the peer has written to its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of the log, headed with the peer's name.
    pub fn log_tail(&self, n: usize) -> String {
        format!(
            "--- {} log (last lines, {}) ---\n{}",
            self.name,
            self.log.display(),
            tail(&self.log(), n)
        )
    }

    /// Runs `cmd` (stdin from /dev/null, output appended to the log); panics when it
    /// cannot be run.
    pub fn start(&mut self, cmd: Command) {
        if let Err(e) = self.try_start(cmd) {
            panic!("{e}");
        }
    }

    /// As [`Peer::start`], returning the problem instead of panicking.
    pub fn try_start(&mut self, mut cmd: Command) -> Result<(), String> {
        if self.group {
            cmd.process_group(0);
        }
        self.cmd = Some(cmd);
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {} log {}: {e}", self.name, self.log.display()))?;
        let out = if self.stdout {
            Stdio::from(
                log.try_clone()
                    .map_err(|e| format!("cannot clone {} log handle: {e}", self.name))?,
            )
        } else {
            Stdio::null()
        };
        let cmd = self.cmd.as_mut().expect("a command to run");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run {} ({}): {e}",
                    self.name,
                    Path::new(cmd.get_program()).display()
                )
            })?;
        self.child = Some(child);
        self.exit = None;
        Ok(())
    }

    /// Runs the same command again (after [`Peer::stop`]), same directory and log.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.exited().is_none() && self.child.is_some()
    }

    /// The exit status when the process has exited (it is reaped and forgotten).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        self.exit = Some(status);
        Some(status)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Polls `probe` every 20 ms until it returns true; an error when the peer exits first
    /// or `deadline` passes (the log is not in the error: see [`Peer::log_tail`]).
    pub fn try_wait_ready(
        &mut self,
        deadline: Duration,
        mut probe: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let until = Instant::now() + deadline;
        loop {
            if probe() {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{} exited ({status}) before it was ready",
                    self.name
                ));
            }
            if self.child.is_none() {
                return Err(format!("{} is not running", self.name));
            }
            if Instant::now() > until {
                return Err(format!("{} was not ready within {deadline:?}", self.name));
            }
            std::thread::sleep(POLL);
        }
    }

    /// As [`Peer::try_wait_ready`], panicking with `what` (the probe, for the message),
    /// the peer's name and the tail of its log.
    pub fn wait_ready(&mut self, what: &str, deadline: Duration, probe: impl FnMut() -> bool) {
        if let Err(e) = self.try_wait_ready(deadline, probe) {
            panic!("{e}: {what}\n{}", self.log_tail(TAIL_LINES));
        }
    }

    /// Sends `signal` (to the group when the peer has its own).
    pub fn signal(&self, signal: nix::sys::signal::Signal) -> nix::Result<()> {
        let Some(pid) = self.pid() else {
            return Err(nix::errno::Errno::ESRCH);
        };
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        if self.group {
            nix::sys::signal::killpg(pid, signal)
        } else {
            nix::sys::signal::kill(pid, signal)
        }
    }

    /// SIGKILL (the whole group when it has its own) and wait; a no-op when not running.
    pub fn stop(&mut self) {
        self.exit = None;
        if self.child.is_some() {
            let _ = self.signal(nix::sys::signal::Signal::SIGKILL);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then up to `grace` for the exit (SIGKILL after that, and `None`). When the
    /// process had already exited by itself, how it ended.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.child.is_none() {
            return self.exit.take();
        }
        let _ = self.signal(nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + grace;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() > until {
                self.stop();
                return None;
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1:`port`, reading for at most `read_timeout`:
/// (status, body); `None` when it cannot connect or the answer is not HTTP.
pub fn http_get(port: u16, path_and_query: &str, read_timeout: Duration) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(read_timeout)).ok()?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}
