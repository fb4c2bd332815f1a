//! pymodbus 3.16.1 (a Modbus server we did not write) as a child process, over TCP or RTU,
//! and socat pseudo-terminal pairs to carry RTU without hardware.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::peer::{self, Peer};

const MISSING: &str = "pymodbus not found: run scripts/test (it creates target/pyvenv with `pip install pymodbus[serial]==3.16.1`) or set FIREBREAK_PYMODBUS_PYTHON to a python that has it";

/// The python that has pymodbus: `FIREBREAK_PYMODBUS_PYTHON` (an empty value counts as
/// unset), else target/pyvenv/bin/python; panics with the install command otherwise.
pub fn python() -> PathBuf {
    peer::venv_python("FIREBREAK_PYMODBUS_PYTHON").unwrap_or_else(|| panic!("{MISSING}"))
}

pub struct PyModbus {
    peer: Peer,
    pub port: Option<u16>,
}

impl PyModbus {
    /// Serves `devices` (see tests/it/support/pymodbus_server.py) on a free loopback port.
    pub fn tcp(devices: serde_json::Value) -> PyModbus {
        let port = super::free_port();
        let spec = serde_json::json!({"transport": "tcp", "port": port, "devices": devices});
        let mut s = Self::spawn(&spec);
        s.port = Some(port);
        s.peer.wait_ready(
            &format!("pymodbus listening on {port}"),
            Duration::from_secs(10),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        s
    }

    /// Serves `devices` as RTU slaves on the serial device `path`. `ignore_missing`: unit
    /// ids that are not served get no answer at all, like a dead unit on an RS-485 line.
    pub fn rtu(path: &Path, devices: serde_json::Value) -> PyModbus {
        let spec = serde_json::json!({"transport": "rtu", "path": path, "devices": devices});
        Self::spawn(&spec)
    }

    /// Runs the server script; it prints `ready` on stdout once it serves.
    fn spawn(spec: &serde_json::Value) -> PyModbus {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/pymodbus_server.py");
        let mut peer = Peer::new("pymodbus");
        let mut cmd = Command::new(python());
        cmd.arg(script).arg(spec.to_string());
        if let Err(e) = peer.try_start(cmd) {
            panic!("{e}; {MISSING}");
        }
        let log = peer.log_path().to_path_buf();
        peer.wait_ready(
            &format!("`ready` on stdout; {MISSING}"),
            Duration::from_secs(20),
            || std::fs::read_to_string(&log).is_ok_and(|t| t.lines().any(|l| l.trim() == "ready")),
        );
        PyModbus { peer, port: None }
    }

    /// What the server has written to stdout and stderr.
    pub fn log(&self) -> String {
        self.peer.log()
    }
}

/// A connected pair of pseudo-terminals made by socat: what is written to one end is read
/// from the other, like the two ends of a serial cable.
pub struct PtyPair {
    peer: Peer,
    pub a: PathBuf,
    pub b: PathBuf,
}

impl PtyPair {
    pub fn new() -> PtyPair {
        let socat = peer::require("socat", "apt-get install -y socat");
        let mut peer = Peer::new("socat");
        let (a, b) = (peer.dir().join("a"), peer.dir().join("b"));
        let mut cmd = Command::new(socat);
        cmd.arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()));
        peer.start(cmd);
        peer.wait_ready(
            &format!("socat creating {} and {}", a.display(), b.display()),
            Duration::from_secs(10),
            || a.exists() && b.exists(),
        );
        PtyPair { peer, a, b }
    }
}
