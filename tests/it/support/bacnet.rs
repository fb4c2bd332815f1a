//! bacpypes3 0.0.110 (a BACnet/IP stack we did not write) playing a device for the tests:
//! its own temp dir, a free UDP port on 127.0.0.1, objects given as JSON, values changed
//! at run time through a control file the device script reads (support/bacnet_device.py),
//! and the COV subscriptions it holds read back from its status file.

use super::peer::{self, Peer};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MISSING: &str = "bacpypes3 not found: run scripts/test (it installs `bacpypes3==0.0.110` into target/pyvenv) or set FIREBREAK_BACPYPES3_PYTHON to a python that has it";

/// The python that has bacpypes3: `FIREBREAK_BACPYPES3_PYTHON`, else target/pyvenv's.
pub fn python() -> PathBuf {
    peer::venv_python("FIREBREAK_BACPYPES3_PYTHON").unwrap_or_else(|| panic!("{MISSING}"))
}

/// What the device does besides serving its objects.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Rejects ReadPropertyMultiple (unrecognized-service).
    pub no_rpm: bool,
    /// Refuses SubscribeCOV (services / optional-functionality-not-supported).
    pub no_cov: bool,
}

pub struct BacnetDevice {
    peer: Peer,
    pub port: u16,
    pub instance: u32,
    /// Every assignment made so far, by object (the control file holds them all).
    control: BTreeMap<String, serde_json::Map<String, Value>>,
}

/// A UDP port free on 127.0.0.1 a moment ago.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

impl BacnetDevice {
    /// A device `instance` serving `objects` (`[{"id": "analog-input,3", "presentValue":
    /// 0.01}, ...]`).
    pub fn start(instance: u32, objects: Value, opts: Options) -> BacnetDevice {
        let python = python();
        let mut peer = Peer::new("bacpypes3");
        let port = free_udp_port();
        let spec = json!({
            "port": port,
            "instance": instance,
            "dir": peer.dir(),
            "objects": objects,
            "no_rpm": opts.no_rpm,
            "no_cov": opts.no_cov,
        });
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/bacnet_device.py");
        let mut cmd = Command::new(python);
        cmd.arg(script).arg(spec.to_string());
        if let Err(e) = peer.try_start(cmd) {
            panic!("{e}; {MISSING}");
        }
        let mut d = BacnetDevice {
            peer,
            port,
            instance,
            control: BTreeMap::new(),
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let status = self.peer.dir().join("status.json");
        // `ready` is printed before the first status: wait for both, so that the restart
        // of a device is not mistaken for the old one's status file.
        let log = self.peer.log_path().to_path_buf();
        let readies = std::fs::read_to_string(&log)
            .map(|t| t.lines().filter(|l| l.trim() == "ready").count())
            .unwrap_or(0);
        let _ = std::fs::remove_file(&status);
        self.peer.wait_ready(
            &format!("`ready` on stdout and a status file; {MISSING}"),
            Duration::from_secs(30),
            || {
                std::fs::read_to_string(&log)
                    .is_ok_and(|t| t.lines().filter(|l| l.trim() == "ready").count() > readies)
                    && status.exists()
            },
        );
    }

    /// `bacnet://127.0.0.1:PORT`, the source's url.
    pub fn url(&self) -> String {
        format!("bacnet://127.0.0.1:{}", self.port)
    }

    /// Assigns `props` (bacpypes3's property names: presentValue, outOfService,
    /// reliability) of `object`; the device applies them within 20 ms.
    pub fn set(&mut self, object: &str, props: Value) {
        let entry = self.control.entry(object.to_string()).or_default();
        for (k, v) in props.as_object().expect("an object of properties") {
            entry.insert(k.clone(), v.clone());
        }
        let text = serde_json::to_string(&self.control).unwrap();
        let path = self.peer.dir().join("control.json");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    fn status(&self) -> Value {
        std::fs::read_to_string(self.peer.dir().join("status.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    /// The COV subscriptions the device holds, by object (`analog-input,3`).
    pub fn subscriptions(&self) -> BTreeMap<String, u64> {
        self.status()["subscriptions"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// When the device last applied the control file (wall clock, seconds since the
    /// epoch).
    pub fn applied_at(&self) -> Option<f64> {
        self.status()["applied_at"].as_f64()
    }

    /// Waits until each of `objects` has exactly one subscription.
    pub fn wait_subscribed(&mut self, objects: &[&str], deadline: Duration) {
        let until = Instant::now() + deadline;
        loop {
            let subs = self.subscriptions();
            if objects.iter().all(|o| subs.get(*o) == Some(&1)) {
                return;
            }
            assert!(
                Instant::now() < until,
                "the device does not hold one subscription for each of {objects:?} within {deadline:?}: {subs:?}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_tail(&self) -> String {
        self.peer.log_tail(40)
    }

    /// Kills the device (SIGKILL, as a crash or power loss would): its subscriptions go.
    pub fn kill(&mut self) {
        self.peer.stop();
    }

    /// Starts the device again: same port, objects and control file (a fresh bacpypes3
    /// with no subscriptions).
    pub fn restart(&mut self) {
        self.peer.restart();
        self.wait_ready();
    }
}
