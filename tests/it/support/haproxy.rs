//! A real HAProxy with its runtime API on a loopback TCP port, in a temp dir.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use super::peer::{self, Peer};

pub struct Haproxy {
    peer: Peer,
    pub port: u16,
}

impl Haproxy {
    /// Starts HAProxy with backend `backend` holding `servers` (all ready).
    pub fn start(backend: &str, servers: &[&str]) -> Haproxy {
        let bin = peer::require("haproxy", "apt-get install -y haproxy");
        let mut peer = Peer::new("haproxy");
        let port = super::free_port();
        let mut cfg = format!(
            "global\n  stats socket ipv4@127.0.0.1:{port} level admin\n\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\nbackend {backend}\n"
        );
        for (i, s) in servers.iter().enumerate() {
            cfg.push_str(&format!("  server {s} 127.0.0.1:{}\n", 9 + i));
        }
        let path = peer.dir().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let mut cmd = Command::new(bin);
        cmd.args(["-db", "-f"]).arg(&path);
        peer.start(cmd);
        peer.wait_ready(
            &format!("runtime API `show info` on port {port}"),
            Duration::from_secs(10),
            || command(port, "show info").is_ok(),
        );
        Haproxy { peer, port }
    }

    pub fn socket_url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    pub fn command(&self, line: &str) -> std::io::Result<String> {
        command(self.port, line)
    }

    /// What HAProxy has written to stdout and stderr.
    pub fn log(&self) -> String {
        self.peer.log()
    }

    /// srv_admin_state of a server (bit 0x08 drain, 0x01 maintenance).
    pub fn admin_state(&self, backend: &str, server: &str) -> u32 {
        let out = self
            .command(&format!("show servers state {backend}"))
            .unwrap();
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|c| c.len() > 6 && c[1] == backend && c[3] == server)
            .and_then(|c| c[6].parse().ok())
            .unwrap_or_else(|| panic!("server {backend}/{server} not in:\n{out}"))
    }
}

/// One line to the runtime API on 127.0.0.1:`port`; the whole answer.
fn command(port: u16, line: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(format!("{line}\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}
