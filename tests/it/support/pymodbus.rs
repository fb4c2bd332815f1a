//! pymodbus 3.16.1 (a Modbus server we did not write) as a child process, over TCP or RTU,
//! and socat pseudo-terminal pairs to carry RTU without hardware.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MISSING: &str = "pymodbus not found: run scripts/test (it creates target/pyvenv with `pip install pymodbus[serial]==3.16.1`) or set FIREBREAK_PYMODBUS_PYTHON to a python that has it";

pub fn python() -> PathBuf {
    // An empty value counts as unset.
    if let Some(p) = std::env::var_os("FIREBREAK_PYMODBUS_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyvenv/bin/python");
    assert!(p.is_file(), "{MISSING}");
    p
}

pub struct PyModbus {
    child: Option<Child>,
    pub port: Option<u16>,
}

impl PyModbus {
    /// Serves `devices` (see tests/it/support/pymodbus_server.py) on a free loopback port.
    pub fn tcp(devices: serde_json::Value) -> PyModbus {
        let port = super::mosquitto::free_port();
        let spec = serde_json::json!({"transport": "tcp", "port": port, "devices": devices});
        let mut s = Self::spawn(&spec);
        s.port = Some(port);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "pymodbus did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// Serves `devices` as RTU slaves on the serial device `path`. `ignore_missing`: unit
    /// ids that are not served get no answer at all, like a dead unit on an RS-485 line.
    pub fn rtu(path: &Path, devices: serde_json::Value) -> PyModbus {
        let spec = serde_json::json!({"transport": "rtu", "path": path, "devices": devices});
        Self::spawn(&spec)
    }

    fn spawn(spec: &serde_json::Value) -> PyModbus {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/pymodbus_server.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(spec.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{MISSING}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) if l.trim() == "ready" => {}
            other => {
                let _ = child.kill();
                panic!("pymodbus did not start ({other:?}); {MISSING}");
            }
        }
        PyModbus {
            child: Some(child),
            port: None,
        }
    }
}

impl Drop for PyModbus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A connected pair of pseudo-terminals made by socat: what is written to one end is read
/// from the other, like the two ends of a serial cable.
pub struct PtyPair {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    pub a: PathBuf,
    pub b: PathBuf,
}

impl PtyPair {
    pub fn new() -> PtyPair {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("socat not found ({e}): install it with `apt-get install -y socat` (or run scripts/test)")
            });
        let until = Instant::now() + Duration::from_secs(10);
        while !(a.exists() && b.exists()) {
            assert!(
                Instant::now() < until,
                "socat did not create {}",
                a.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        PtyPair {
            child: Some(child),
            _dir: dir,
            a,
            b,
        }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
