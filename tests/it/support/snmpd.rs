//! A real net-snmp `snmpd` serving UPS-MIB (RFC 1628) for tests: its own temp dir and
//! persistent dir, a free UDP port on 127.0.0.1, a v2c community and SNMPv3 users, and a
//! `pass_persist` script (support/ups_mib.py) answering the UPS-MIB subtree from a values
//! file the test rewrites at will. Readiness is net-snmp's own `snmpget` answering.

use super::peer::{self, Peer};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const INSTALL: &str = "apt-get install -y snmpd snmp";

/// The UPS-MIB objects the tests use.
pub mod oids {
    pub const OUTPUT_SOURCE: &str = "1.3.6.1.2.1.33.1.4.1.0";
    pub const MINUTES_REMAINING: &str = "1.3.6.1.2.1.33.1.2.3.0";
    pub const SECONDS_ON_BATTERY: &str = "1.3.6.1.2.1.33.1.2.2.0";
    pub const CHARGE_REMAINING: &str = "1.3.6.1.2.1.33.1.2.4.0";
    pub const BATTERY_TEMPERATURE: &str = "1.3.6.1.2.1.33.1.2.7.0";
    pub const INPUT_VOLTAGE: &str = "1.3.6.1.2.1.33.1.3.3.1.3.1";
    pub const ALARMS_PRESENT: &str = "1.3.6.1.2.1.33.1.6.1.0";
}

/// An SNMPv3 user the agent knows.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// net-snmp's name: "SHA" (SHA-1) or "SHA-256".
    pub auth: &'static str,
    pub auth_password: String,
    /// The AES privacy password (authPriv), or none (authNoPriv).
    pub priv_password: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub community: String,
    pub users: Vec<User>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            community: "public".into(),
            users: Vec::new(),
        }
    }
}

pub struct Snmpd {
    peer: Peer,
    pub port: u16,
    values: PathBuf,
    community: String,
}

/// A UDP port free on 127.0.0.1 a moment ago.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

impl Snmpd {
    /// Starts snmpd serving `values` (`(oid, type, value)`, type as pass_persist names it:
    /// integer, gauge, counter, timeticks, string, ...).
    pub fn start(opts: Options, values: &[(&str, &str, &str)]) -> Snmpd {
        let bin = peer::require("snmpd", INSTALL);
        peer::require("snmpget", INSTALL);
        let python = peer::require("python3", "apt-get install -y python3");
        let peer = Peer::new("snmpd");
        let dir = peer.dir().to_path_buf();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/ups_mib.py");
        let values_path = dir.join("ups-values");
        let port = free_udp_port();
        let mut conf = format!(
            "rocommunity {} 127.0.0.1\npass_persist .1.3.6.1.2.1.33 {} {} {}\n",
            opts.community,
            python.display(),
            script.display(),
            values_path.display()
        );
        for u in &opts.users {
            match &u.priv_password {
                Some(p) => conf.push_str(&format!(
                    "createUser {} {} {} AES {p}\nrouser {} priv\n",
                    u.name, u.auth, u.auth_password, u.name
                )),
                None => conf.push_str(&format!(
                    "createUser {} {} {}\nrouser {} auth\n",
                    u.name, u.auth, u.auth_password, u.name
                )),
            }
        }
        std::fs::write(dir.join("snmpd.conf"), conf).unwrap();
        std::fs::create_dir_all(dir.join("persist")).unwrap();
        let mut cmd = Command::new(bin);
        cmd.env("MIBS", "")
            .env("SNMP_PERSISTENT_DIR", dir.join("persist"))
            .env("SNMPCONFPATH", &dir)
            .args(["-f", "-Lo", "-C", "-c"])
            .arg(dir.join("snmpd.conf"))
            .arg(format!("udp:127.0.0.1:{port}"));
        let mut d = Snmpd {
            peer,
            port,
            values: values_path,
            community: opts.community,
        };
        d.set_values(values);
        d.peer.start(cmd);
        d.wait_ready();
        d
    }

    /// `udp://127.0.0.1:PORT`, the source's url.
    pub fn url(&self) -> String {
        format!("udp://127.0.0.1:{}", self.port)
    }

    /// A directory of the test's own (beside snmpd's files), for secret files.
    pub fn dir(&self) -> PathBuf {
        self.peer.dir().to_path_buf()
    }

    /// Replaces every served value; the next request sees the new ones.
    pub fn set_values(&self, values: &[(&str, &str, &str)]) {
        let text: String = values
            .iter()
            .map(|(oid, t, v)| format!(".{} {t} {v}\n", oid.trim_start_matches('.')))
            .collect();
        let tmp = self.values.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.values).unwrap();
    }

    /// net-snmp's own `snmpget` (a client we did not write): the value line of `oid`.
    pub fn snmpget(&self, auth: &[&str], oid: &str) -> Result<String, String> {
        let dir = self.peer.dir();
        let out = Command::new(peer::require("snmpget", INSTALL))
            .env("MIBS", "")
            .env("SNMP_PERSISTENT_DIR", dir.join("client-persist"))
            .env("SNMPCONFPATH", dir)
            .args(["-On", "-t", "0.5", "-r", "0"])
            .args(auth)
            .arg(format!("127.0.0.1:{}", self.port))
            .arg(oid)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    fn wait_ready(&mut self) {
        let snmpget = peer::require("snmpget", INSTALL);
        let (community, port) = (self.community.clone(), self.port);
        let dir = self.peer.dir().to_path_buf();
        // sysUpTime: served by snmpd itself, whatever the values file holds.
        let answers = move || {
            Command::new(&snmpget)
                .env("MIBS", "")
                .env("SNMP_PERSISTENT_DIR", dir.join("client-persist"))
                .env("SNMPCONFPATH", &dir)
                .args(["-On", "-t", "0.3", "-r", "0", "-v2c", "-c", &community])
                .arg(format!("127.0.0.1:{port}"))
                .arg(".1.3.6.1.2.1.1.3.0")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        self.peer.wait_ready(
            &format!("snmpget answered on udp 127.0.0.1:{port}"),
            Duration::from_secs(15),
            answers,
        );
    }

    pub fn log_text(&self) -> String {
        self.peer.log_tail(40)
    }

    /// Kills the agent (SIGKILL, as a crash or power loss would).
    pub fn kill(&mut self) {
        self.peer.stop();
    }

    /// Starts the agent again: same config, port and persistent dir (a new engine boot).
    pub fn restart(&mut self) {
        self.peer.restart();
        self.wait_ready();
    }
}
