//! A real Prometheus in a throwaway directory on a free 127.0.0.1 port, scraping the given
//! targets every second. Killed on drop. Prometheus answers `/-/ready` at once but starts
//! scraping only ~6 s later (a fixed delay), so wait for data, not for readiness.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NOT_FOUND: &str =
    "prometheus not found: install it with `apt-get install -y prometheus` (or run scripts/test)";

pub struct Prometheus {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
}

fn find(prog: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"])
        .map(|d| std::path::Path::new(d).join(prog))
        .find(|p| p.is_file());
    found
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`) every second.
    pub fn start(targets: &[String]) -> Prometheus {
        let bin = find("prometheus").unwrap_or_else(|| panic!("{NOT_FOUND}"));
        let dir = tempfile::Builder::new()
            .prefix("prometheus-test-")
            .tempdir()
            .expect("temp dir for prometheus");
        let port = super::free_port();
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let conf = dir.path().join("prometheus.yml");
        std::fs::write(
            &conf,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: firebreak\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let mut p = Prometheus {
            child: Some(child),
            dir,
            port,
        };
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if matches!(p.get("/-/ready"), Some((200, _))) {
                return p;
            }
            if let Some(status) = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("prometheus exited ({status}) on start\n{}", p.log());
            }
            assert!(
                Instant::now() < until,
                "prometheus did not answer /-/ready within 20 s\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// A plain HTTP/1.0 GET on loopback: (status, body).
    pub fn get(&self, path_and_query: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
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

    /// `/api/v1/query?query=EXPR`: the `data.result` vector (empty when no series matched).
    pub fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let q: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let Some((200, body)) = self.get(&format!("/api/v1/query?query={q}")) else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// `/api/v1/targets`, for diagnostics.
    pub fn targets(&self) -> String {
        self.get("/api/v1/targets").map(|r| r.1).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
