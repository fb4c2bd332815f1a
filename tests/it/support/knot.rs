//! Test support: a real Knot DNS server (`knotd`) in a throwaway directory on a free
//! 127.0.0.1 port, plus `kdig` as an independent client to check what it serves.
//!
//! Started through [`super::peer::Peer`]; tests include the whole support tree
//! (`mod support;`) and use `support::knot`.
#![allow(dead_code)]

use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use super::peer::find_program;
use super::peer::{self, Peer};

const INSTALL: &str = "apt-get install -y knot knot-dnsutils";

/// How long one knotd start may take to answer before we give up on that attempt.
const READY_DEADLINE: Duration = Duration::from_secs(15);
/// Attempts with a fresh port when knotd cannot bind (another process took the port).
const START_ATTEMPTS: usize = 5;

/// A running knotd serving one zone. Killed (and its directory removed) on drop.
pub struct Knot {
    peer: Peer,
    port: u16,
    zone: String,
    kdig: Option<PathBuf>,
}

/// True when knotd is installed (lets a caller skip instead of panicking, if it prefers).
pub fn knotd_available() -> bool {
    find_program("knotd").is_some()
}

impl Knot {
    /// Start knotd serving `zone` with SOA, `NS ns1`, `ns1 A 127.0.0.1` and `records`
    /// (`(name, type, value)`; name relative to the zone or absolute with a trailing dot;
    /// TXT values are quoted unless they already start with `"`).
    ///
    /// With `key = Some((name, algorithm, base64))` only updates signed with that key are
    /// allowed; with `None` unsigned updates from 127.0.0.1 are allowed.
    ///
    /// Panics with a clear message if knotd is missing or does not come up.
    pub fn start(
        zone: &str,
        records: &[(&str, &str, &str)],
        key: Option<(&str, &str, &str)>,
    ) -> Knot {
        match Self::try_start(zone, records, key) {
            Ok(k) => k,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Knot::start`] but returns the problem instead of panicking.
    pub fn try_start(
        zone: &str,
        records: &[(&str, &str, &str)],
        key: Option<(&str, &str, &str)>,
    ) -> Result<Knot, String> {
        let knotd = find_program("knotd").ok_or_else(|| peer::missing("knotd", INSTALL))?;
        let kdig = find_program("kdig");
        let zone = zone.trim_end_matches('.').to_ascii_lowercase();
        let mut last_err = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let mut peer = Peer::new("knotd");
            let port = super::free_tcp_udp_port()?;
            write_files(peer.dir(), port, &zone, records, key)?;
            let mut cmd = Command::new(&knotd);
            cmd.arg("-c").arg(peer.dir().join("knot.conf"));
            peer.try_start(cmd)?;
            let mut knot = Knot {
                peer,
                port,
                zone: zone.clone(),
                kdig: kdig.clone(),
            };
            match knot.wait_ready() {
                Ok(()) => return Ok(knot),
                Err(e) => {
                    let log = knot.log();
                    let bind_problem = log.contains("cannot bind")
                        || log.contains("failed to bind")
                        || log.contains("Address already in use");
                    last_err = format!(
                        "knotd (attempt {attempt}, port {port}) did not come up: {e}\n--- knotd log ---\n{log}"
                    );
                    drop(knot);
                    if !bind_problem {
                        break;
                    }
                }
            }
        }
        Err(last_err)
    }

    /// Kills knotd (the server goes away; its directory and port are kept).
    pub fn stop(&mut self) {
        self.peer.stop();
    }

    /// Starts knotd again on the same directory and port after `stop`.
    pub fn restart(&mut self) {
        self.peer.restart();
        if let Err(e) = self.wait_ready() {
            panic!("knotd did not come back: {e}\n{}", self.log());
        }
    }

    /// UDP/TCP address knotd listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Zone name without trailing dot.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// Directory holding knot.conf, the zone file and knotd.log.
    pub fn dir(&self) -> &Path {
        self.peer.dir()
    }

    /// Everything knotd has logged so far.
    pub fn log(&self) -> String {
        self.peer.log()
    }

    /// Current SOA serial of the zone, read with kdig.
    pub fn soa_serial(&self) -> u32 {
        let lines = self.dig(&self.zone, "SOA");
        let line = lines
            .first()
            .unwrap_or_else(|| panic!("kdig returned no SOA for {}\n{}", self.zone, self.log()));
        line.split_whitespace()
            .nth(2)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("cannot read serial from SOA '{line}'"))
    }

    /// `kdig @127.0.0.1 -p PORT +short NAME TYPE` (no recursion; retried over TCP by kdig
    /// when truncated). Returns the answer lines, trimmed. Panics if kdig fails.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        self.kdig(&[name, rtype, "+short"])
    }

    /// Run kdig against this server with extra arguments; returns non-empty stdout lines.
    pub fn kdig(&self, args: &[&str]) -> Vec<String> {
        let kdig = self
            .kdig
            .as_ref()
            .unwrap_or_else(|| panic!("{}", peer::missing("kdig", INSTALL)));
        let out = Command::new(kdig)
            .arg("@127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .args(["+timeout=2", "+retry=2", "+norecurse"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run kdig: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || stdout.contains(";; ERROR") || stderr.contains("ERROR") {
            panic!(
                "kdig {args:?} against {} failed ({}):\n{stdout}\n{stderr}",
                self.addr(),
                out.status
            );
        }
        stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Poll with SOA queries until the zone is served (NOERROR with an answer).
    fn wait_ready(&mut self) -> Result<(), String> {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("cannot bind probe socket: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| format!("cannot set probe timeout: {e}"))?;
        let addr = self.addr();
        let zone = self.zone.clone();
        let mut id: u16 = 0x4b4e;
        let mut buf = [0u8; 4096];
        let mut last = String::from("no reply yet");
        let probe = || {
            id = id.wrapping_add(1);
            let query = soa_query(id, &zone);
            // Unconnected socket: a closed port gives no error, only the read timeout
            // below, which paces the loop.
            if let Err(e) = sock.send_to(&query, addr) {
                last = format!("send failed: {e}");
            }
            let until = Instant::now() + Duration::from_millis(50);
            while Instant::now() < until {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) if from == addr && n >= 12 => {
                        let rid = u16::from_be_bytes([buf[0], buf[1]]);
                        let rcode = buf[3] & 0x0f;
                        let ancount = u16::from_be_bytes([buf[6], buf[7]]);
                        if rid != id {
                            continue;
                        }
                        if rcode == 0 && ancount > 0 {
                            return true;
                        }
                        last = format!("answered rcode {rcode} with {ancount} answers");
                        break;
                    }
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
            false
        };
        self.peer
            .try_wait_ready(READY_DEADLINE, probe)
            .map_err(|e| format!("{e}: no SOA answer for {zone} on {addr} ({last})"))
    }
}

fn write_files(
    dir: &Path,
    port: u16,
    zone: &str,
    records: &[(&str, &str, &str)],
    key: Option<(&str, &str, &str)>,
) -> Result<(), String> {
    let d = dir.display();
    let zones = dir.join("zones");
    fs::create_dir_all(&zones).map_err(|e| format!("cannot create {}: {e}", zones.display()))?;
    let mut conf = format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
         database:\n    storage: \"{d}/db\"\n\
         control:\n    listen: \"{d}/knot.sock\"\n\
         log:\n  - target: stderr\n    any: info\n"
    );
    let acl = match key {
        Some((name, algorithm, secret)) => {
            conf.push_str(&format!(
                "key:\n  - id: {name}\n    algorithm: {algorithm}\n    secret: {secret}\n"
            ));
            conf.push_str(&format!(
                "acl:\n  - id: update_acl\n    key: {name}\n    action: update\n"
            ));
            "update_acl"
        }
        None => {
            conf.push_str("acl:\n  - id: update_acl\n    address: 127.0.0.1\n    action: update\n");
            "update_acl"
        }
    };
    conf.push_str(&format!(
        "zone:\n  - domain: {zone}\n    storage: \"{d}/zones\"\n    file: \"{zone}.zone\"\n    acl: {acl}\n    \
         zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n"
    ));
    fs::write(dir.join("knot.conf"), conf).map_err(|e| format!("cannot write knot.conf: {e}"))?;

    let mut z = format!(
        "$ORIGIN {zone}.\n$TTL 30\n@ IN SOA ns1 hostmaster 1 3600 900 604800 30\n@ IN NS ns1\nns1 IN A 127.0.0.1\n"
    );
    for (name, rtype, value) in records {
        let value = if rtype.eq_ignore_ascii_case("TXT") && !value.starts_with('"') {
            format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
        } else {
            value.to_string()
        };
        z.push_str(&format!("{name} IN {rtype} {value}\n"));
    }
    let mut f = fs::File::create(zones.join(format!("{zone}.zone")))
        .map_err(|e| format!("cannot write zone file: {e}"))?;
    f.write_all(z.as_bytes())
        .map_err(|e| format!("cannot write zone file: {e}"))?;
    Ok(())
}

/// A minimal DNS query for `zone` SOA, RD=0 (std only).
fn soa_query(id: u16, zone: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in zone.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 6, 0, 1]);
    q
}
