//! A real HAProxy with its runtime API on a loopback TCP port, in a temp dir.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Haproxy {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

fn find(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Haproxy {
    /// Starts HAProxy with backend `backend` holding `servers` (all ready).
    pub fn start(backend: &str, servers: &[&str]) -> Haproxy {
        let bin = find("haproxy").unwrap_or_else(|| {
            panic!("haproxy not found: install it with `apt-get install -y haproxy` (or run scripts/test, which installs it)")
        });
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let mut cfg = format!(
            "global\n  stats socket ipv4@127.0.0.1:{port} level admin\n\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\nbackend {backend}\n"
        );
        for (i, s) in servers.iter().enumerate() {
            cfg.push_str(&format!("  server {s} 127.0.0.1:{}\n", 9 + i));
        }
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let child = Command::new(bin)
            .args(["-db", "-f"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        let mut h = Haproxy {
            child,
            port,
            _dir: dir,
        };
        let until = Instant::now() + Duration::from_secs(10);
        while h.command("show info").is_err() {
            if let Ok(Some(status)) = h.child.try_wait() {
                panic!("haproxy exited at start: {status}");
            }
            assert!(
                Instant::now() < until,
                "haproxy did not open its runtime API on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        h
    }

    pub fn socket_url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    pub fn command(&self, line: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(format!("{line}\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
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

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
